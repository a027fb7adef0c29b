"""Cold and warm page-cache states: made, then verified with mincore, on disk and on tmpfs."""

from __future__ import annotations

import os
from pathlib import Path

from iobench.engine import cache


def make_file(folder: Path, size: int = 2 << 20) -> Path:
    path = folder / "data.bin"
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())
    return path


def test_cold_then_warm_on_disk(disk_dir: Path) -> None:
    path = make_file(disk_dir)
    assert cache.set_cache_state(path, "cold") < 0.01
    assert cache.set_cache_state(path, "warm") == 1.0


def test_resident_fraction_sees_a_partial_read(disk_dir: Path) -> None:
    path = make_file(disk_dir, 4 << 20)
    cache.evict(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no read-ahead past what we read
        os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)
    fraction = cache.resident_fraction(path)
    assert 0.2 <= fraction <= 0.3


def test_tmpfs_cannot_be_made_cold_and_says_so(shm_dir: Path) -> None:
    path = make_file(shm_dir)
    resident = cache.set_cache_state(path, "cold")
    assert resident == 1.0
    assert cache.cache_verified("cold", resident) is False


def test_empty_file_counts_as_resident(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.touch()
    assert cache.resident_fraction(path) == 1.0
