"""Checks that what was written is what is on disk (untimed, after a repetition)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20


def file_digest(path: Path) -> bytes:
    """BLAKE2b of the whole file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "blake2b").digest()


class PatternCheck:
    """Is a file ``size`` bytes of ``pattern`` repeated (the last copy cut short)?

    Made once per case and used after every repetition: the expected bytes and the read buffer
    are allocated here, once. Fresh megabyte-sized objects per check (as ``read()`` makes) cost the
    next write pass ~5% at bs=1 MiB (benchmarks/fidelity/README.md).
    """

    def __init__(self, pattern: bytes | bytearray | memoryview) -> None:
        if not len(pattern):
            raise ValueError("the pattern is empty")
        self._expected = memoryview(bytes(pattern) * max(1, _CHUNK // len(pattern)))
        self._buffer = bytearray(len(self._expected))

    def matches(self, path: Path, size: int) -> bool:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size != size:
                return False
            while got := _fill(fd, memoryview(self._buffer)):
                # bytearray.startswith compares with memcmp; a memoryview == compares item by item
                if not self._buffer.startswith(self._expected[:got]):
                    return False
            return True
        finally:
            os.close(fd)


def _fill(fd: int, view: memoryview) -> int:
    """Read until ``view`` is full or the file ends (chunks stay aligned to the pattern)."""
    done = 0
    while done < len(view):
        got = os.readv(fd, [view[done:]])
        if got == 0:
            break
        done += got
    return done


def file_matches_pattern(path: Path, pattern: bytes | bytearray, size: int) -> bool:
    """Is the file exactly ``size`` bytes of ``pattern`` repeated (the last copy cut short)?"""
    return PatternCheck(pattern).matches(path, size)
