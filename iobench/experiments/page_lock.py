"""page-lock: mlock/munlock cost, and what happens past RLIMIT_MEMLOCK (seeds 000, 001, 004)."""

from __future__ import annotations

import errno
import mmap
import os
import resource
import select
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iobench.errors import UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.metrics import Metric as M
from iobench.osutil import libc
from iobench.osutil.children import Child, ChildError, fork_child, ready
from iobench.params import choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

PAGE = mmap.PAGESIZE
_CHILD_WAIT_S = 60.0


def memlock_limit() -> int | None:
    """The soft RLIMIT_MEMLOCK in bytes; None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else soft


def lock_and_unlock(address: int, length: int) -> dict[str, Any]:
    """mlock ``length`` bytes at ``address`` (which faults them in), then munlock them.

    Never raises for a refused mlock: the refusal (ENOMEM, EPERM) is the result. mlock and
    munlock are timed apart (mlock_ns, munlock_ns).
    """
    getrusage, thread, clock = resource.getrusage, resource.RUSAGE_THREAD, time.perf_counter_ns
    faults_before = getrusage(thread).ru_minflt
    start = clock()
    failure = libc.try_mlock(address, length)
    locked_at = clock()
    # mlock faults every page in: these faults are the "populate" half of its cost.
    mlock_minflt = getrusage(thread).ru_minflt - faults_before
    result = {
        "locked": not failure,
        "mlock_errno": errno.errorcode.get(failure, str(failure)) if failure else None,
        "mlock_ns": locked_at - start,  # on failure: the time until the refusal
        "munlock_ns": None,
        "mlock_minflt": mlock_minflt,
    }
    if not failure:
        unlock_start = clock()
        libc.munlock(address, length)
        result["munlock_ns"] = clock() - unlock_start
    return result


@dataclass
class _Locker:
    """A forked child (unprivileged when we are root) with fresh memory mapped, waiting for
    one byte on ``go`` to lock it; it answers on ``done`` as soon as the attempt is over."""

    child: Child
    go: int
    done: int


def _start_locker(length: int) -> _Locker:
    go_read, go_write = os.pipe()
    done_read, done_write = os.pipe()

    def locker() -> dict[str, Any]:
        os.close(go_write)
        os.close(done_read)
        address = libc.map_memory(length)
        try:
            ready()  # mapped and unprivileged: the parent may start timing
            if os.read(go_read, 1) != b"g":
                raise RuntimeError("the parent went away before the go")
            result = lock_and_unlock(address, length)
            os.write(done_write, b"d")
            os.read(go_read, 1)  # EOF in the parent's after_rep: unmap only once the window is over
            return {**result, "ran_as_uid": os.geteuid()}
        finally:
            libc.unmap(address, length)

    try:
        child = fork_child(locker, drop_root=True, wait_ready=True)
    except BaseException:
        os.close(go_write)
        os.close(done_read)
        raise
    finally:
        os.close(go_read)
        os.close(done_write)
    return _Locker(child, go_write, done_read)


def _expect(fd: int, byte: bytes, failure: str) -> None:
    ready, _, _ = select.select([fd], [], [], _CHILD_WAIT_S)
    if not ready or os.read(fd, 1) != byte:
        raise ChildError(failure)


def _stop_locker(locker: _Locker) -> None:
    for fd in (locker.go, locker.done):
        if fd >= 0:
            os.close(fd)
    locker.go = locker.done = -1
    locker.child.kill()


@register
class PageLock(Experiment):
    """Lock fresh pages into RAM; then try to lock more than the limit allows."""

    name = "page-lock"
    summary = "mlock/munlock time vs size, and the refusal past RLIMIT_MEMLOCK"
    seed_idea = (
        "overlapped IO pins (locks) user pages; pinned memory is limited, and past the limit "
        "Windows fails with WSAENOBUFS (Jones & Ohlund 2002, ch. 6). Linux's face of it is "
        "RLIMIT_MEMLOCK: mlock fails with ENOMEM (EPERM when the limit is 0; mlock(2))."
    )
    params = (
        choice_param(
            "mode",
            ("lock", "over-limit", "over-limit-privileged"),
            "lock: mlock+munlock SIZE bytes of fresh memory; over-limit: lock one page more "
            "than RLIMIT_MEMLOCK as an unprivileged user (as root, in a child that drops to "
            "nobody, since CAP_IPC_LOCK ignores the limit); over-limit-privileged: the same "
            "as root, to show the exemption.",
        ),
        size_param(
            "size",
            (64 << 10, 1 << 20, 4 << 20),
            "Bytes locked in lock mode.",
            minimum=PAGE,
        ),
    )
    x_param = "size"
    series_params = ("mode",)
    columns = (
        Column("Requested", "requested_bytes", "size"),
        Column("Locked", "locked", "text"),
        Column("Error", "mlock_errno", "text"),
        Column("RLIMIT_MEMLOCK", "limit_bytes", "size"),
        Column("mlock", "mlock_ns", "duration"),
        Column("munlock", "munlock_ns", "duration"),
        Column("mlock/page", "mlock_ns", "duration", per="pages"),
        Column("Faults in mlock", "mlock_minflt"),
        Column("As uid", "ran_as_uid"),
    )

    figures = (
        FigureSpec(
            "metric",
            title="mlock time per page",
            metric="mlock_ns",
            per="pages",
            unit="duration",
            succeeded="locked",
            refusal_reason="mlock_errno",
        ),
    )

    metrics = (
        M("pages", "Pages", "count", "Pages of the mapping locked."),
        M("locked", "Locked", "flag", "mlock succeeded."),
        M(
            "mlock_errno",
            "mlock error",
            "text",
            "The errno mlock failed with (ENOMEM, EPERM), empty when it succeeded.",
        ),
        M("mlock_ns", "mlock time", "duration", "Time of the mlock call.", "lower"),
        M("munlock_ns", "munlock time", "duration", "Time of the munlock call.", "lower"),
        M("mlock_minflt", "mlock faults", "count", "Minor faults during mlock (it populates what it locks)."),
        M("ran_as_uid", "uid", "count", "The user id the mlock ran as (root is exempt from RLIMIT_MEMLOCK)."),
        M("limit_bytes", "RLIMIT_MEMLOCK", "size", "The soft RLIMIT_MEMLOCK in force."),
        M("requested_bytes", "Requested", "size", "Bytes mlock was asked to lock."),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """RLIMIT_MEMLOCK, what happened past it (as whom), how Linux's limit differs from the
        Windows one (cited), and mlock's cost per page across sizes."""
        from iobench import explain as ex
        from iobench.units import format_size

        out = []
        limit = summary["limit_bytes"].dropna() if "limit_bytes" in summary else summary.iloc[0:0]
        if not limit.empty:
            out.append(
                f"RLIMIT_MEMLOCK was {format_size(limit.iloc[0])} per process here. "
                + ex.cite(
                    ex.WINSOCK_CHAPTER,
                    ex.WINSOCK_BOOK,
                    "on Windows, overlapped sends and receives lock their buffers' pages and the pages that "
                    "may be locked are limited; past the limit, operations fail (WSAENOBUFS)",
                )
                + ". "
                + ex.cite(
                    "mlock(2)",
                    ex.MAN_PAGES,
                    "on Linux the limit is per process (RLIMIT_MEMLOCK), and a process with CAP_IPC_LOCK "
                    "(root) is not bound by it",
                )
                + "."
            )
        for mode, who in (("over-limit", "unprivileged"), ("over-limit-privileged", "as root")):
            sentence = _over_limit(summary, mode, who)
            if sentence:
                out.append(sentence)
        sentence = _mlock_cost(cls, summary)
        if sentence:
            out.append(sentence)
        return out

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        return frozenset() if case["mode"] == "lock" else frozenset({"size"})

    def prepare(self) -> None:
        self.mode: str = self.case["mode"]
        self.limit = memlock_limit()
        if self.mode == "lock":
            self.length = -(-self.case["size"] // PAGE) * PAGE
            return
        if self.limit is None:
            raise UnsupportedCase("RLIMIT_MEMLOCK is unlimited here: there is no limit to pass")
        if self.mode == "over-limit-privileged" and os.geteuid() != 0:
            raise UnsupportedCase("needs root (CAP_IPC_LOCK) to show the exemption from the limit")
        self.length = self.limit + PAGE

    _locker: _Locker | None = None
    _address: int | None = None

    @property
    def _in_child(self) -> bool:
        # Root is exempt (CAP_IPC_LOCK), so the limit can only be seen from an unprivileged process.
        return self.mode == "over-limit" and os.geteuid() == 0

    def before_rep(self) -> dict[str, Any]:
        self._result: dict[str, Any] = {}
        if self._in_child:
            self._locker = _start_locker(self.length)
        else:
            self._address = libc.map_memory(self.length)  # fresh memory, mapped before the clock
        return {}

    def run_once(self) -> dict[str, Any]:
        if self._locker is not None:
            # Start the waiting child's attempt; its answer ends the window (the child's own
            # mlock_ns times the attempt alone).
            os.write(self._locker.go, b"g")
            _expect(self._locker.done, b"d", "the unprivileged locker did not answer")
            return {"bytes": self.length, "ops": 1}
        assert self._address is not None
        self._result = lock_and_unlock(self._address, self.length)
        return {"bytes": self.length, "ops": 2 if self._result["locked"] else 1}

    def after_rep(self) -> dict[str, Any]:
        if self._locker is not None:
            locker, self._locker = self._locker, None
            os.close(locker.go)  # the child's EOF: it unmaps and reports
            locker.go = -1
            try:
                self._result, _ = locker.child.wait(_CHILD_WAIT_S)
            finally:
                _stop_locker(locker)
        else:
            self._result["ran_as_uid"] = os.geteuid()
        if self._address is not None:
            libc.unmap(self._address, self.length)
            self._address = None
        return {
            **self._result,
            "pages": self.length // PAGE,
            "limit_bytes": self.limit,
            "requested_bytes": self.length,
        }

    def teardown(self) -> None:
        if self._locker is not None:
            _stop_locker(self._locker)
            self._locker = None
        if self._address is not None:
            libc.unmap(self._address, self.length)
            self._address = None


def _over_limit(summary: pd.DataFrame, mode: str, who: str) -> str | None:
    """What locking one page past the limit did in this mode: refused (with which error) or not."""
    from iobench import explain as ex
    from iobench.units import format_size

    rows = ex.select(summary, mode=mode)
    if rows.empty:
        return None
    locked = ex.truth(rows["locked"].iloc[0]) if "locked" in rows else None
    if locked is None:
        return None
    uid = ex.one(summary, "ran_as_uid", mode=mode)
    as_whom = f"as uid {uid:.0f}" if uid is not None else who
    requested = ex.one(summary, "requested_bytes", mode=mode)
    what = (
        f"Locking {format_size(requested)}, one page past the limit,"
        if requested
        else "Locking past the limit"
    )
    if locked:
        exempt = ": root is exempt (CAP_IPC_LOCK)" if uid == 0 else ""
        return f"{what} {as_whom} succeeded{exempt}."
    error = rows["mlock_errno"].iloc[0] if "mlock_errno" in rows else None
    with_error = f" with {error}" if isinstance(error, str) and error else ""
    return f"{what} {as_whom} was refused{with_error}, recorded as a result, not a crash."


def _mlock_cost(experiment: Any, summary: pd.DataFrame) -> str | None:
    """mlock time per page at the smallest locked size, whether it faulted the pages in, and the
    smallest against the largest size per page."""
    from iobench import explain as ex
    from iobench.units import format_duration

    sizes = [
        s
        for s in ex.distinct(summary, "size", mode="lock")
        if ex.value(summary, "mlock_ns", per="pages", mode="lock", size=s)
    ]
    if not sizes:
        return None
    small = {"mode": "lock", "size": sizes[0]}
    per_page = ex.value(summary, "mlock_ns", per="pages", **small)
    faults = ex.value(summary, "mlock_minflt", per="pages", **small)
    sentence = f"mlock of {ex.fmt(experiment, 'size', sizes[0])} took {format_duration(per_page)} per page"
    if faults is not None and 0.9 <= faults <= 1.1:
        sentence += " and faulted every page in (mlock populates what it locks)"
    elif faults is not None:
        sentence += f" with {faults:.2f} faults per page"
    if len(sizes) > 1:
        large = {"mode": "lock", "size": sizes[-1]}
        found = ex.difference(summary, "mlock_ns", small, large, per="pages")
        sentence += (
            f"; per page, {ex.fmt(experiment, 'size', sizes[-1])} against {ex.fmt(experiment, 'size', sizes[0])}: "
            f"{ex.contrast(found)}"
        )
    return sentence + "."
