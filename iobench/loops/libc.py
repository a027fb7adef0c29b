"""libc calls Python's standard library does not expose: mincore, mlock/munlock, raw mmap.

One set of ctypes declarations for the whole package. Failures raise OSError with errno, like
the os module does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os

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
_libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _raise(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def map_memory(length: int, fd: int = -1, prot: int = mmap.PROT_READ | mmap.PROT_WRITE) -> int:
    """mmap(2) returning the address: anonymous private memory, or a shared map of ``fd``."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS if fd < 0 else mmap.MAP_SHARED
    address = _libc.mmap(None, length, prot, flags, fd, 0)
    if address in (None, _MAP_FAILED):
        _raise("mmap")
    return int(address)


def unmap(address: int, length: int) -> None:
    if _libc.munmap(address, length) != 0:
        _raise("munmap")


def resident_pages(address: int, length: int) -> int:
    """How many pages of the mapping are in memory now (mincore(2)); faults nothing in."""
    pages = (length + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vector = ctypes.create_string_buffer(pages)
    if _libc.mincore(address, length, vector) != 0:
        _raise("mincore")
    return sum(byte & 1 for byte in vector.raw)


def try_mlock(address: int, length: int) -> int:
    """mlock(2) that returns 0 or the errno instead of raising (nothing allocated on failure)."""
    return 0 if _libc.mlock(address, length) == 0 else ctypes.get_errno()


def munlock(address: int, length: int) -> None:
    if _libc.munlock(address, length) != 0:
        _raise("munlock")
