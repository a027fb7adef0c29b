"""Forked helper processes: run a function in a child, get its result and its rusage back.

The child does only what the function does and leaves with ``os._exit`` (no atexit, no
flushing of the parent's buffers). Its return value comes back pickled over a pipe; the
kernel's accounting of the child (faults, context switches, CPU) comes from ``wait4``.
Every wait has a deadline: a child that does not finish in time is killed and reported.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import pickle
import pwd
import resource
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_PR_SET_DUMPABLE = 4


class ChildError(RuntimeError):
    """The child raised, died, or ran past its deadline."""


def unprivileged_ids() -> tuple[int, int]:
    """(uid, gid) of the ``nobody`` account, the usual target for dropping root."""
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def drop_privileges() -> None:
    """Become ``nobody`` (no supplementary groups), keeping /proc/self readable."""
    uid, gid = unprivileged_ids()
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    # Changing uid makes the process non-dumpable, which hides its own /proc/self/io.
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)


@dataclass
class Child:
    """A forked child whose result is waiting on ``result_fd``."""

    pid: int
    result_fd: int
    _reaped: bool = False
    _fd_closed: bool = False
    #: The result, when it was collected early (the child ended before it was ready).
    _early: tuple[Any, resource.struct_rusage] | None = None

    def _close_result_fd(self) -> None:
        # Once only: a second close could hit another file that reused the number.
        if not self._fd_closed:
            self._fd_closed = True
            os.close(self.result_fd)

    def wait(self, timeout_s: float = 60.0) -> tuple[Any, resource.struct_rusage]:
        """The child's return value and rusage; ChildError if it failed or timed out."""
        if self._early is not None:
            return self._early
        try:
            data, ended = read_until(self.result_fd, time.monotonic() + timeout_s)
            if not ended:
                self.kill()
                raise ChildError(f"child {self.pid} did not finish within {timeout_s:g} s")
        finally:
            self._close_result_fd()
        _, status, usage = os.wait4(self.pid, 0)
        self._reaped = True
        if not data:
            raise ChildError(f"child {self.pid} exited without a result ({_describe(status)})")
        ok, value = pickle.loads(data)
        if not ok:
            raise ChildError(f"child {self.pid} failed: {value}")
        return value, usage

    def kill(self) -> None:
        """Stop the child now, reap it and close its result pipe (idempotent)."""
        self._close_result_fd()
        if self._reaped:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self._reaped = True


def read_until(fd: int, deadline: float, stop: bytes | None = None) -> tuple[bytes, bool]:
    """Read ``fd`` until end of file (or until what was read holds ``stop``) or until the
    monotonic ``deadline``: (what was read, True) when it ended, (what was read, False) when
    the time ran out first."""
    chunks: list[bytes] = []
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        if stop is not None and stop in chunk:
            return b"".join(chunks), True
    return b"".join(chunks), False


def _exception_text(exc: BaseException) -> str:
    """``OSError: [Errno 24] Too many open files (EMFILE)``: the errno's name too."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        text += f" ({errno.errorcode[exc.errno]})"
    return text


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"


#: In a child forked with ``wait_ready``: where ``ready()`` tells the parent it is parked.
_ready_fd: int | None = None
#: How long ``fork_child(wait_ready=True)`` waits for the child's ``ready()``.
READY_TIMEOUT_S = 60.0
#: What ``ready()`` writes; end of file instead means the child ended before it was ready.
READY_BYTE = b"r"


def ready() -> None:
    """In a forked child: tell the parent that set-up is done and the child now only waits (for
    data, a go byte, a signal). A parent that forked with ``wait_ready`` returns only then, so
    the child's start-up never runs inside a timed window. Elsewhere it does nothing."""
    global _ready_fd
    if _ready_fd is not None:
        fd, _ready_fd = _ready_fd, None
        os.write(fd, READY_BYTE)  # the parent's read returns: nothing of ours runs after it
        os.close(fd)


def _await_ready(child: Child, fd: int, timeout_s: float) -> None:
    try:
        waiting, _, _ = select.select([fd], [], [], timeout_s)
        if not waiting:
            child.kill()
            raise ChildError(f"child {child.pid} was not ready within {timeout_s:g} s")
        said = os.read(fd, 1)
    finally:
        os.close(fd)
    if said != READY_BYTE:
        # It ended before it was ready: a failed set-up (no descriptor left, no permission)
        # is the caller's error now, not a broken pipe later.
        child._early = child.wait(READY_TIMEOUT_S)


def fork_child(work: Callable[[], Any], drop_root: bool = False, wait_ready: bool = False) -> Child:
    """Run ``work()`` in a forked child; ``drop_root`` first makes it ``nobody`` if we are root.

    The child inherits every open descriptor, so pipes made before the call connect the two.
    ``wait_ready``: return only once the child called ``ready()`` (or ended), so that its
    start-up (dropping root, allocating, connecting) is over before the caller times anything.
    """
    global _ready_fd
    read_end, write_end = os.pipe()
    try:
        ready_read, ready_write = os.pipe() if wait_ready else (-1, -1)
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    try:
        pid = os.fork()
    except BaseException:
        for fd in (read_end, write_end, ready_read, ready_write):
            if fd >= 0:
                os.close(fd)
        raise
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(read_end)
            if wait_ready:
                os.close(ready_read)
                _ready_fd = ready_write
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills us
            if drop_root and os.geteuid() == 0:
                drop_privileges()
            try:
                payload = (True, work())
            except BaseException as exc:
                payload = (False, _exception_text(exc))
            data = memoryview(pickle.dumps(payload))
            while data:
                data = data[os.write(write_end, data) :]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    child = Child(pid, read_end)
    if wait_ready:
        os.close(ready_write)
        _await_ready(child, ready_read, READY_TIMEOUT_S)
    return child


def run_in_child(
    work: Callable[[], Any], drop_root: bool = False, timeout_s: float = 60.0
) -> tuple[Any, resource.struct_rusage]:
    """Fork, run ``work()``, wait: its result and the child's rusage."""
    child = fork_child(work, drop_root=drop_root)
    try:
        return child.wait(timeout_s)
    finally:
        child.kill()
