"""io_uring instances and Linux AIO contexts from the native module, or why this host has none.

A refusal is a result, not a crash: every way the kernel (or the build) can say no becomes an
``UnsupportedCase`` whose reason names the call, the errno and what is missing, e.g.
``io_uring_setup: EPERM (Operation not permitted) with kernel.io_uring_disabled=2: io_uring is
disabled on this host``. The experiments only call ``open_uring``, ``open_aio``,
``register_buffers``, ``register_files`` and ``require_ops``.
"""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path
from types import ModuleType
from typing import Any

from iobench.errors import UnsupportedCase
from iobench.loops.engines import native_unavailable_reason

IO_URING_DISABLED = Path("/proc/sys/kernel/io_uring_disabled")

#: Opcodes the socket strategies need, by the name a refusal prints (linux/io_uring.h values).
OPCODES = {
    "IORING_OP_READ": 22,
    "IORING_OP_WRITE": 23,
    "IORING_OP_SEND": 26,
    "IORING_OP_RECV": 27,
    "IORING_OP_SEND_ZC": 47,
}
#: IORING_SETUP_SQPOLL; IORING_FEAT_SQPOLL_NONFIXED (SQPOLL without registered files, 5.11).
SETUP_SQPOLL = 1 << 1
#: Errors that say this process ran out of something, not that the kernel lacks a feature.
_RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE)
FEAT_SQPOLL_NONFIXED = 1 << 7


def errno_text(code: int) -> str:
    """``EPERM (Operation not permitted)``."""
    return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


def _native(loops: ModuleType, kind: str) -> Any:
    """The loop module when it has ``kind`` ("Uring" or "Aio"), else the reason it has not."""
    if not hasattr(loops, "uring_support"):  # the pure-Python loops: no rings there
        why = native_unavailable_reason() or "the python engine was asked for (--engine python)"
        raise UnsupportedCase(f"{'io_uring' if kind == 'Uring' else 'libaio'} needs the native engine: {why}")
    support = loops.uring_support() if kind == "Uring" else loops.libaio_support()
    if support or not hasattr(loops, kind):
        raise UnsupportedCase(support or f"built without {kind}")
    return getattr(loops, kind)


def _disabled_sysctl() -> str | None:
    try:
        return IO_URING_DISABLED.read_text().strip()
    except OSError:
        return None


def setup_refusal(code: int, sqpoll: bool = False, sysctl: str | None = None) -> str:
    """Why io_uring_setup failed, in words: the errno and what it means on this host.

    ``sysctl`` is kernel.io_uring_disabled as read (None: the kernel has no such knob)."""
    call = "io_uring_setup" + (" (SQPOLL)" if sqpoll else "")
    head = f"{call}: {errno_text(code)}"
    if code == errno.ENOSYS:
        return f"{head}: this kernel has no io_uring (CONFIG_IO_URING off), or a seccomp filter hides it"
    if code == errno.EPERM:
        if sysctl == "2":
            return f"{head} with kernel.io_uring_disabled=2: io_uring is disabled on this host"
        if sysctl == "1":
            return (
                f"{head} with kernel.io_uring_disabled=1: only members of kernel.io_uring_group "
                "(or CAP_SYS_ADMIN) may create rings"
            )
        knob = (
            f"kernel.io_uring_disabled={sysctl}" if sysctl is not None else "no kernel.io_uring_disabled knob"
        )
        if sqpoll:
            return f"{head} ({knob}): SQPOLL needs CAP_SYS_NICE before Linux 5.11, or a filter refused it"
        return (
            f"{head} although {knob}: a seccomp filter or security module refused it (container "
            "runtimes block io_uring by default)"
        )
    if code == errno.ENOMEM:
        return f"{head}: the rings did not fit in locked memory (RLIMIT_MEMLOCK, {_memlock()})"
    if code == errno.EINVAL and sqpoll:
        return f"{head}: this kernel's io_uring has no SQPOLL"
    return head


def _memlock() -> str:
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return "unlimited" if soft == resource.RLIM_INFINITY else f"{soft:,} bytes"


def open_uring(loops: ModuleType, entries: int, sqpoll: bool = False, cq_entries: int = 0) -> Any:
    """A ring of ``entries`` (rounded up to a power of two by the kernel), or UnsupportedCase."""
    uring = _native(loops, "Uring")
    try:
        return uring(entries, sqpoll=sqpoll, cq_entries=cq_entries)
    except OSError as exc:
        if exc.errno in _RESOURCE_ERRNOS:
            raise  # out of descriptors: a failed case, not a missing feature
        raise UnsupportedCase(setup_refusal(exc.errno or 0, sqpoll, _disabled_sysctl())) from None


def open_aio(loops: ModuleType, nr: int) -> Any:
    """A Linux AIO context for ``nr`` events, or UnsupportedCase (io_setup's errno)."""
    aio = _native(loops, "Aio")
    try:
        return aio(nr)
    except OSError as exc:
        if exc.errno in _RESOURCE_ERRNOS:
            raise
        code = exc.errno or 0
        why = {
            errno.ENOSYS: "this kernel has no AIO (CONFIG_AIO off), or a seccomp filter hides it",
            errno.EPERM: "a seccomp filter or security module refused it",
            errno.EAGAIN: "the system-wide AIO limit is reached (fs.aio-max-nr)",
        }.get(code)
        raise UnsupportedCase(f"io_setup: {errno_text(code)}" + (f": {why}" if why else "")) from None


def register_buffers(ring: Any, buffer: Any) -> None:
    """Register ``buffer`` as fixed buffer 0, or UnsupportedCase naming the missing feature."""
    try:
        ring.register_buffers(buffer)
    except OSError as exc:
        code = exc.errno or 0
        why = {
            errno.ENOMEM: f"pinning {len(buffer):,} bytes exceeds RLIMIT_MEMLOCK ({_memlock()})",
            errno.EINVAL: "this kernel's io_uring has no registered buffers",
            errno.EPERM: "a seccomp filter refused io_uring_register",
        }.get(code)
        raise UnsupportedCase(
            f"registered buffers: io_uring_register(IORING_REGISTER_BUFFERS): {errno_text(code)}"
            + (f": {why}" if why else "")
        ) from None


def register_files(ring: Any, fds: list[int]) -> None:
    """Register ``fds`` as fixed files, or UnsupportedCase."""
    try:
        ring.register_files(fds)
    except OSError as exc:
        raise UnsupportedCase(
            f"registered files: io_uring_register(IORING_REGISTER_FILES): {errno_text(exc.errno or 0)}"
        ) from None


def require_ops(ring: Any, names: tuple[str, ...]) -> None:
    """UnsupportedCase unless the kernel's probe lists every opcode in ``names``."""
    try:
        supported = ring.probe()
    except OSError as exc:
        raise UnsupportedCase(
            f"io_uring_register(IORING_REGISTER_PROBE): {errno_text(exc.errno or 0)}: cannot tell whether "
            f"this kernel has {', '.join(names)}"
        ) from None
    missing = [name for name in names if OPCODES[name] >= len(supported) or not supported[OPCODES[name]]]
    if missing:
        raise UnsupportedCase(f"this kernel's io_uring lacks {', '.join(missing)} (IORING_REGISTER_PROBE)")
