"""Cold and warm page-cache states: made, then verified by counting cached pages
(cachestat, or mincore), on disk and on tmpfs."""

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
    path = _partly_read(disk_dir)
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


def _partly_read(folder: Path) -> Path:
    """A 4 MiB file of which only the first MiB is cached."""
    path = make_file(folder, 4 << 20)
    cache.evict(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no read-ahead past what we read
        os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)
    return path


def test_cachestat_and_mincore_count_the_same_pages(disk_dir: Path) -> None:
    from iobench.osutil import libc

    path = _partly_read(disk_dir)
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            by_cachestat = libc.cached_pages(fd)
        except OSError as exc:  # kernel older than 6.5, or a seccomp filter
            import pytest

            pytest.skip(f"cachestat unavailable: {exc}")
        assert by_cachestat == cache.mincore_pages(fd, 4 << 20)
        assert 256 <= by_cachestat <= 4 * 256  # the MiB read (maybe rounded to folios), not all
    finally:
        os.close(fd)


def test_residency_falls_back_to_mincore_without_cachestat(disk_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import errno

    from iobench.osutil import libc

    def refused(fd: int) -> int:
        raise OSError(errno.ENOSYS, "cachestat: Function not implemented")

    monkeypatch.setattr(libc, "cached_pages", refused)
    monkeypatch.setattr(cache, "_cachestat_unusable", None)
    path = _partly_read(disk_dir)
    assert 0.2 <= cache.resident_fraction(path) <= 0.3
    assert cache.residency_source() == "mincore"


def test_a_warm_file_is_counted_once_per_repetition(disk_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = make_file(disk_dir)
    cache.make_warm(path)
    counts = []
    real = cache._resident_pages
    monkeypatch.setattr(cache, "_resident_pages", lambda fd, size: counts.append(size) or real(fd, size))
    assert cache.cache_metrics(path, "warm") == {"resident_before": 1.0, "cache_verified": True}
    assert len(counts) == 1


def test_an_open_file_is_counted_through_its_descriptor(disk_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Between repetitions a reader already holds the file open: the count goes through that fd
    (no second open), and sees the same pages as a count by path, cold or partly read."""
    path = _partly_read(disk_dir)
    fd = os.open(path, os.O_RDONLY)
    opened: list[object] = []
    real_open = os.open
    try:
        by_path = cache.resident_fraction(path)
        monkeypatch.setattr(
            cache.os, "open", lambda *args, **kwargs: opened.append(args) or real_open(*args, **kwargs)
        )
        assert cache.resident_fraction(path, fd) == by_path
        assert cache.cache_metrics(path, "warm", fd) == {"resident_before": 1.0, "cache_verified": True}
        assert opened == [(path, os.O_RDONLY | os.O_CLOEXEC)]  # make_warm's read; no count opened one
        assert cache.resident_fraction(path, fd) == 1.0
    finally:
        os.close(fd)
