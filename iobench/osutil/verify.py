"""Checks that what was written is what is on disk (untimed, after a repetition)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def file_digest(path: Path) -> bytes:
    """BLAKE2b of the whole file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "blake2b").digest()


def file_matches_pattern(path: Path, pattern: bytes | bytearray, size: int) -> bool:
    """Is the file exactly ``size`` bytes of ``pattern`` repeated (the last copy cut short)?"""
    if path.stat().st_size != size:
        return False
    expected = bytes(pattern) * max(1, _CHUNK // len(pattern))
    with open(path, "rb") as handle:
        while chunk := handle.read(len(expected)):
            if chunk != expected[: len(chunk)]:
                return False
    return True
