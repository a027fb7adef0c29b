"""Page-cache state of a file: make it cold or warm, and check which it really is.

Cold is fsync (dirty pages cannot be dropped) + ``posix_fadvise(DONTNEED)``; it is then
verified by counting the file's cached pages, which faults nothing in. On tmpfs the advice is a
no-op and the file stays resident; the verification shows that instead of assuming.

The count runs before every repetition, so it must stay out of the measurement's way:
``cachestat(2)`` (Linux >= 6.5) answers in a few microseconds whatever the file size. The
fallback, ``mincore(2)`` on a fresh read-only mapping, took ~200 us for an 8 MiB file and
~1.6 ms for 64 MiB here, taking and dropping a reference on every page between repetitions
(it measurably slowed the next warm read of an LLC-sized file; see benchmarks/fidelity).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from iobench.osutil import libc

PAGE_SIZE = mmap.PAGESIZE


#: Why cachestat(2) cannot be used here (None until tried, "" when it works).
_cachestat_unusable: str | None = None


def resident_fraction(path: Path | str, fd: int | None = None) -> float:
    """Fraction (0..1) of the file's pages in the page cache right now; 1.0 for an empty file.

    ``fd``: the file already open (read access), counted through it instead of opening ``path``
    again: between repetitions every microsecond counts (see the module docstring).
    """
    if fd is not None:
        return _fraction(fd)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _fraction(fd)
    finally:
        os.close(fd)


def _fraction(fd: int) -> float:
    size = os.fstat(fd).st_size
    if size == 0:
        return 1.0
    pages = (size + PAGE_SIZE - 1) // PAGE_SIZE
    return min(1.0, _resident_pages(fd, size) / pages)


def _resident_pages(fd: int, size: int) -> int:
    global _cachestat_unusable
    if not _cachestat_unusable:
        try:
            pages = libc.cached_pages(fd)
        except OSError as exc:  # an older kernel (ENOSYS) or a seccomp filter (EPERM)
            _cachestat_unusable = str(exc)
        else:
            _cachestat_unusable = ""
            return pages
    return mincore_pages(fd, size)


def mincore_pages(fd: int, size: int) -> int:
    """Resident pages of the file's first ``size`` bytes, by mincore on a read-only mapping."""
    address = libc.map_memory(size, fd=fd, prot=mmap.PROT_READ)
    try:
        return libc.resident_pages(address, size)
    finally:
        libc.unmap(address, size)


def residency_source() -> str:
    """The call that counts cached pages here: ``cachestat`` or ``mincore``."""
    return "mincore" if _cachestat_unusable else "cachestat"


def evict(path: Path | str) -> None:
    """Write back and drop the file's cached pages (best effort: the kernel decides)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def make_warm(path: Path | str, chunk: int = 1 << 20) -> None:
    """Read the whole file so its pages are cached."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        while os.read(fd, chunk):
            pass
    finally:
        os.close(fd)


def set_cache_state(path: Path | str, state: str, fd: int | None = None) -> float:
    """Make the file ``warm`` or ``cold`` and return its measured resident fraction
    (``fd``: the file already open, see ``resident_fraction``)."""
    if state == "cold":
        evict(path)
    elif state == "warm":
        resident = resident_fraction(path, fd)
        if resident >= 1.0:
            return resident  # already warm: one count, not two, between repetitions
        make_warm(path)
    else:
        raise ValueError(f"unknown cache state {state!r}")
    return resident_fraction(path, fd)


def cache_metrics(path: Path | str, state: str, fd: int | None = None) -> dict[str, float | bool]:
    """Set the state, then the row's evidence: ``resident_before`` and ``cache_verified``."""
    resident = set_cache_state(path, state, fd)
    return {"resident_before": resident, "cache_verified": cache_verified(state, resident)}


def cache_verified(state: str, resident: float) -> bool:
    """Did the file really start in the requested state? (cold: < 1% resident; warm: all)."""
    return resident < 0.01 if state == "cold" else resident >= 0.999
