"""Page-cache state of a file: make it cold or warm, and check which it really is.

Cold is fsync (dirty pages cannot be dropped) + ``posix_fadvise(DONTNEED)``; it is then
verified with ``mincore(2)`` on a fresh read-only mapping, which reports residency without
faulting anything in. On tmpfs the advice is a no-op and the file stays resident; the
verification shows that instead of assuming.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path

PAGE_SIZE = mmap.PAGESIZE

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
_MAP_FAILED = ctypes.c_void_p(-1).value


def resident_fraction(path: Path | str) -> float:
    """Fraction (0..1) of the file's pages in the page cache right now; 1.0 for an empty file."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 1.0
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            err = ctypes.get_errno()
            raise OSError(err, f"mmap for mincore failed: {os.strerror(err)}", str(path))
        try:
            pages = (size + PAGE_SIZE - 1) // PAGE_SIZE
            vector = ctypes.create_string_buffer(pages)
            if _libc.mincore(address, size, vector) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mincore failed: {os.strerror(err)}", str(path))
            resident = sum(byte & 1 for byte in vector.raw)
            return resident / pages
        finally:
            _libc.munmap(address, size)
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


def cache_verified(state: str, resident: float) -> bool:
    """Did the file really start in the requested state? (cold: < 1% resident; warm: all)."""
    return resident < 0.01 if state == "cold" else resident >= 0.999
