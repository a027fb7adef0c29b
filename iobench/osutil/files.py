"""Scratch files: created new (never an existing file, never through a symlink), filled, synced."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20
NEW_FILE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_new(path: Path, flags: int = os.O_WRONLY) -> int:
    """Create ``path`` (mode 0600) and open it; fails if anything already exists there."""
    return os.open(path, flags | NEW_FILE_FLAGS, 0o600)


def create_random_file(path: Path, size: int, write_bs: int = _CHUNK) -> bytes:
    """A new file of ``size`` random bytes written ``write_bs`` bytes per write() (which
    decides the page cache's folio sizes), synced to disk; returns its BLAKE2b digest."""
    hasher = hashlib.blake2b()
    fd = open_new(path)
    try:
        for start in range(0, size, write_bs):
            chunk = os.urandom(min(write_bs, size - start))
            hasher.update(chunk)
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return hasher.digest()
