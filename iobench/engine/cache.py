"""Page-cache state of a file: make it cold or warm, and check which it really is.

Cold is fsync (dirty pages cannot be dropped) + ``posix_fadvise(DONTNEED)``; it is then
verified with ``mincore(2)`` on a fresh read-only mapping, which reports residency without
faulting anything in. On tmpfs the advice is a no-op and the file stays resident; the
verification shows that instead of assuming.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from iobench.osutil import libc

PAGE_SIZE = mmap.PAGESIZE


def resident_fraction(path: Path | str) -> float:
    """Fraction (0..1) of the file's pages in the page cache right now; 1.0 for an empty file."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 1.0
        address = libc.map_memory(size, fd=fd, prot=mmap.PROT_READ)
        try:
            return libc.resident_pages(address, size) / ((size + PAGE_SIZE - 1) // PAGE_SIZE)
        finally:
            libc.unmap(address, size)
    finally:
        os.close(fd)


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


def set_cache_state(path: Path | str, state: str) -> float:
    """Make the file ``warm`` or ``cold`` and return its measured resident fraction."""
    if state == "cold":
        evict(path)
    elif state == "warm":
        if resident_fraction(path) < 1.0:
            make_warm(path)
    else:
        raise ValueError(f"unknown cache state {state!r}")
    return resident_fraction(path)


def cache_metrics(path: Path | str, state: str) -> dict[str, float | bool]:
    """Set the state, then the row's evidence: ``resident_before`` and ``cache_verified``."""
    resident = set_cache_state(path, state)
    return {"resident_before": resident, "cache_verified": cache_verified(state, resident)}


def cache_verified(state: str, resident: float) -> bool:
    """Did the file really start in the requested state? (cold: < 1% resident; warm: all)."""
    return resident < 0.01 if state == "cold" else resident >= 0.999
