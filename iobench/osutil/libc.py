"""libc calls Python's standard library does not expose: mincore, cachestat, mlock/munlock,
raw mmap and madvise, a zero-length recv that really reaches the kernel, and readahead(2).

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
_libc.recv.restype = ctypes.c_ssize_t
_libc.recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.readahead.restype = ctypes.c_ssize_t
_libc.readahead.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
#: cachestat(2) (Linux 6.5): the same number on every architecture (the new unified table).
_SYS_CACHESTAT = 451


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


def madvise(address: int, length: int, advice: int) -> None:
    """madvise(2) on a mapping made by ``map_memory``."""
    if _libc.madvise(address, length, advice) != 0:
        _raise("madvise")


def unmap(address: int, length: int) -> None:
    if _libc.munmap(address, length) != 0:
        _raise("munmap")


_LOW_BIT = bytes(value & 1 for value in range(256))


def residency(address: int, length: int) -> bytes:
    """mincore(2)'s vector: one byte per page of the mapping, bit 0 set when it is in memory."""
    pages = (length + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vector = ctypes.create_string_buffer(pages)
    if _libc.mincore(address, length, vector) != 0:
        _raise("mincore")
    return vector.raw[:pages]


def resident_pages(address: int, length: int) -> int:
    """How many pages of the mapping are in memory now (mincore(2)); faults nothing in."""
    # Only the low bit of each byte means "resident"; counted in C, not in a Python loop.
    return residency(address, length).translate(_LOW_BIT).count(1)


class _CachestatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Cachestat(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")
    ]


def cached_pages(fd: int) -> int:
    """Pages of the whole file in the page cache now (cachestat(2), Linux >= 6.5).

    Unlike mincore it needs no mapping and takes no reference on each page: it walks the
    page-cache index under RCU, so it costs microseconds where mincore costs ~75 ns per page.
    Raises OSError (ENOSYS on older kernels, EPERM under some seccomp filters).
    """
    whole = _CachestatRange(0, 0)  # len 0: to the end of the file
    stat = _Cachestat()
    if _libc.syscall(
        _SYS_CACHESTAT, ctypes.c_int(fd), ctypes.byref(whole), ctypes.byref(stat), ctypes.c_uint(0)
    ):
        _raise("cachestat")
    return int(stat.nr_cache)


def try_mlock(address: int, length: int) -> int:
    """mlock(2) that returns 0 or the errno instead of raising (nothing allocated on failure)."""
    return 0 if _libc.mlock(address, length) == 0 else ctypes.get_errno()


def munlock(address: int, length: int) -> None:
    if _libc.munlock(address, length) != 0:
        _raise("munlock")


def recv_zero(fd: int, flags: int = 0) -> int:
    """recv(fd, NULL, 0, flags): a real zero-length receive (returns 0; OSError on failure).

    CPython's ``sock.recv(0)`` returns b"" without a syscall and ``recv_into(buf, 0)`` means
    the whole buffer, so this goes through libc. On Linux a blocking zero-length recv on a
    stream socket waits until data (or EOF) is there and leaves the data queued.
    """
    result = _libc.recv(fd, None, 0, flags)
    if result < 0:
        _raise("recv")
    return int(result)


def readahead(fd: int, offset: int, count: int) -> None:
    """readahead(2): start reading the range into the page cache (blocks until the reads are
    submitted, not until they complete)."""
    if _libc.readahead(fd, offset, count) != 0:
        _raise("readahead")
