"""page-lock: mlock/munlock cost, and what happens past RLIMIT_MEMLOCK (seeds 000, 001, 004)."""

from __future__ import annotations

import errno
import mmap
import os
import resource
import time
from typing import TYPE_CHECKING, Any

from iobench.errors import UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.osutil import libc
from iobench.osutil.children import run_in_child
from iobench.params import choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

PAGE = mmap.PAGESIZE


def memlock_limit() -> int | None:
    """The soft RLIMIT_MEMLOCK in bytes; None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else soft


def lock_fresh_memory(length: int) -> dict[str, Any]:
    """Map ``length`` fresh bytes, mlock them (which faults them in), munlock, unmap.

    Never raises for a refused mlock: the refusal (ENOMEM, EPERM) is the result.
    """
    address = libc.map_memory(length)
    getrusage, thread, clock = resource.getrusage, resource.RUSAGE_THREAD, time.perf_counter_ns
    try:
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
            "ran_as_uid": os.geteuid(),
        }
        if not failure:
            unlock_start = clock()
            libc.munlock(address, length)
            result["munlock_ns"] = clock() - unlock_start
        return result
    finally:
        libc.unmap(address, length)


@register
class PageLock(Experiment):
    """Lock fresh pages into RAM; then try to lock more than the limit allows."""

    name = "page-lock"
    summary = "mlock/munlock time vs size, and the refusal past RLIMIT_MEMLOCK"
    seed_idea = (
        "000/001/004: overlapped IO pins (locks) user pages; pinned memory is limited system-"
        "wide, and past the limit Windows fails with WSAENOBUFS. Linux's face of it is "
        "RLIMIT_MEMLOCK: mlock fails with ENOMEM (EPERM when the limit is 0)."
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

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """RLIMIT_MEMLOCK, what happened past it, and how Linux's limit differs from seed 001's."""
        from iobench import explain as ex
        from iobench.units import format_size

        out = []
        limit = summary["limit_bytes"].dropna() if "limit_bytes" in summary else summary.iloc[0:0]
        if not limit.empty:
            out.append(
                f"RLIMIT_MEMLOCK was {format_size(limit.iloc[0])} per process here; seed 001 describes Windows "
                "capping locked pages system-wide (about 1/8 of RAM): on Linux the limit is per process and "
                "root (CAP_IPC_LOCK) may exceed it."
            )
        over = ex.select(summary, mode="over-limit")
        if not over.empty:
            errno = over["mlock_errno"].iloc[0] if "mlock_errno" in over else None
            if over["locked"].astype(str).iloc[0] == "False":
                out.append(
                    f"Locking past the limit was refused with {errno}, recorded as a result, not a crash."
                )
            else:
                out.append("Locking past the limit succeeded.")
        privileged = ex.select(summary, mode="over-limit-privileged")
        if not privileged.empty and privileged["locked"].astype(str).iloc[0] == "True":
            out.append("With privilege the same request past the limit succeeded.")
        per_page = ex.per(summary.sort_values("size"), "mlock_ns", "pages", mode="lock")
        if per_page is not None:
            out.append(
                f"mlock of the smallest locked size cost {per_page:,.0f} ns per page (faulting pages in)."
            )
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

    def run_once(self) -> dict[str, Any]:
        if self.mode == "over-limit":
            # Root is exempt, so the limit can only be seen from an unprivileged process.
            self._result, _ = run_in_child(lambda: lock_fresh_memory(self.length), drop_root=True)
        else:
            self._result = lock_fresh_memory(self.length)
        return {"bytes": self.length, "ops": 2 if self._result["locked"] else 1}

    def after_rep(self) -> dict[str, Any]:
        return {
            **self._result,
            "pages": self.length // PAGE,
            "limit_bytes": self.limit,
            "requested_bytes": self.length,
        }
