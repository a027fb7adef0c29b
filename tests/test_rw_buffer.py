"""rw-buffer on small real files: exact syscall counts, cold-cache evidence, data integrity."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from iobench.engine.protocol import Protocol
from iobench.engine.runner import run_case
from iobench.experiments import get_experiment

RW = get_experiment("rw-buffer")
MIB = 1 << 20


def run(folder: Path, protocol: Protocol, **case: object) -> list[dict]:
    full = {"mode": "read", "file_size": MIB, "bs": 4096, "cache": "warm", **case}
    return run_case(RW, full, protocol, folder).rows


@pytest.mark.parametrize(
    ("mode", "size", "bs", "reads", "writes"),
    [
        ("read", MIB, 4096, 257, 0),  # 256 full reads + the read that returns 0 (EOF)
        ("write", MIB, 4096, 0, 256),
        ("copy", MIB, 4096, 257, 256),
        ("read", 1000, 300, 5, 0),  # ceil(1000/300) = 4, + EOF
        ("write", 1000, 300, 0, 4),  # 3 full writes + a 100-byte tail
        ("copy", 1000, 300, 5, 4),
        ("copy", 4096, 1, 4097, 4096),
    ],
)
def test_exact_syscall_counts(
    tmp_path: Path, tiny_protocol: Protocol, mode: str, size: int, bs: int, reads: int, writes: int
) -> None:
    rows = run(tmp_path, tiny_protocol, mode=mode, file_size=size, bs=bs)
    assert len(rows) == 2
    for row in rows:
        assert row["syscalls_read"] == reads
        assert row["syscalls_write"] == writes
        assert row["ops"] == reads + writes  # the loop's own count agrees with the kernel's
        assert row["bytes"] == size
        assert row["integrity_ok"] is True
        assert row["user_ns"] >= 0 and row["sys_ns"] >= 0 and row["elapsed_ns"] > 0
        assert 0 < row["cpu_ns"] <= row["elapsed_ns"]  # one thread cannot use more CPU than wall time


def test_cold_read_comes_from_disk(disk_dir: Path, tiny_protocol: Protocol) -> None:
    rows = run(disk_dir, tiny_protocol, cache="cold", file_size=2 * MIB, bs=65536)
    for row in rows:
        assert row["resident_before"] < 0.01
        assert row["cache_verified"] is True
        assert row["disk_read_bytes"] >= 2 * MIB  # the block layer really served it


def test_warm_read_comes_from_page_cache(disk_dir: Path, tiny_protocol: Protocol) -> None:
    rows = run(disk_dir, tiny_protocol, cache="warm", file_size=2 * MIB, bs=65536)
    for row in rows:
        assert row["resident_before"] == 1.0
        assert row["cache_verified"] is True
        assert row["disk_read_bytes"] == 0


def test_cold_on_tmpfs_is_flagged_in_the_row(shm_dir: Path, tiny_protocol: Protocol) -> None:
    rows = run(shm_dir, tiny_protocol, cache="cold")
    for row in rows:
        assert row["resident_before"] == 1.0
        assert row["cache_verified"] is False
        assert row["disk_read_bytes"] == 0


def test_write_mode_has_no_cache_state(tmp_path: Path, tiny_protocol: Protocol) -> None:
    (row, _) = run(tmp_path, tiny_protocol, mode="write", cache="cold")
    assert math.isnan(row["resident_before"])
    assert row["cache_verified"] is None


def test_integrity_check_catches_a_corrupted_copy(tmp_path: Path) -> None:
    instance = RW({"mode": "copy", "file_size": 8192, "bs": 4096, "cache": "warm"}, tmp_path)
    instance.prepare()
    try:
        instance.before_rep()
        instance.run_once()
        with open(instance.dest_path, "r+b") as handle:
            handle.seek(5000)
            handle.write(b"\x00\x01\x02")
        assert instance.after_rep()["integrity_ok"] is False
    finally:
        instance.teardown()
    assert not instance.source_path.exists() and not instance.dest_path.exists()


def test_scratch_files_are_exclusive(tmp_path: Path) -> None:
    (tmp_path / "source.bin").symlink_to("/etc/hostname")
    instance = RW({"mode": "read", "file_size": 4096, "bs": 4096, "cache": "warm"}, tmp_path)
    with pytest.raises(FileExistsError):
        instance.prepare()


@pytest.mark.parametrize(
    ("mode", "touched"),
    [("read", 64 * 1024 + 4096), ("write", 64 * 1024 + 4096), ("copy", 2 * 64 * 1024 + 4096)],
)
def test_rows_say_whether_the_working_set_fits_the_llc(
    tmp_path: Path, tiny_protocol: Protocol, monkeypatch: pytest.MonkeyPatch, mode: str, touched: int
) -> None:
    from iobench import hostinfo

    # An LLC between the read/write working set (68 KiB) and the copy's (132 KiB).
    monkeypatch.setattr(hostinfo, "_llc_bytes", lambda cpu: 100 * 1024)
    rows = run(tmp_path, tiny_protocol, mode=mode, file_size=64 * 1024, bs=4096)
    assert [row["working_set_bytes"] for row in rows] == [touched, touched]
    assert [row["fits_llc"] for row in rows] == [mode != "copy"] * 2


def test_fits_llc_is_empty_when_the_llc_is_unknown(
    tmp_path: Path, tiny_protocol: Protocol, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iobench import hostinfo

    monkeypatch.setattr(hostinfo, "_llc_bytes", lambda cpu: None)
    rows = run(tmp_path, tiny_protocol, file_size=4096, bs=4096)
    assert {row["fits_llc"] for row in rows} == {None}
    assert {row["working_set_bytes"] for row in rows} == {8192}
