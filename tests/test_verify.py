"""The write checks: a file must be exactly the pattern repeated, whatever the pattern's length."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iobench.osutil import verify
from iobench.osutil.verify import PatternCheck, file_matches_pattern


@pytest.mark.parametrize("pattern_size", [1, 3, 4096, 100_000, 1 << 20, (1 << 20) + 7])
def test_a_file_of_the_pattern_repeated_matches_and_one_changed_byte_does_not(
    tmp_path: Path, pattern_size: int
) -> None:
    pattern = os.urandom(pattern_size)
    size = 3 * (1 << 20) + 12_345  # several chunks, the last copy cut short
    data = bytearray((pattern * (size // pattern_size + 1))[:size])
    path = tmp_path / "written.bin"
    path.write_bytes(data)
    check = PatternCheck(pattern)
    assert check.matches(path, size) and file_matches_pattern(path, pattern, size)
    assert not check.matches(path, size + 1)  # the size is part of the check
    for offset in (0, size // 2, size - 1):  # first, middle, last byte
        data[offset] ^= 0xFF
        path.write_bytes(data)
        assert not check.matches(path, size), offset
        data[offset] ^= 0xFF
    path.write_bytes(data)
    assert check.matches(path, size)  # the same object again: its buffers are reused


def test_short_reads_keep_the_chunks_aligned_to_the_pattern(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pattern = bytes(range(251))  # a prime length: any misalignment shows
    size = 2 * (1 << 20)
    path = tmp_path / "written.bin"
    path.write_bytes((pattern * (size // len(pattern) + 1))[:size])
    real_readv = os.readv
    monkeypatch.setattr(verify.os, "readv", lambda fd, views: real_readv(fd, [views[0][:4093]]))
    assert PatternCheck(pattern).matches(path, size)


def test_an_empty_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        PatternCheck(b"")
