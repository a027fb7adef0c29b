"""The file experiments on small real files: each row's claims are checked against the kernel."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from iobench.cli import cli
from iobench.engine.protocol import Protocol
from iobench.engine.runner import CaseResult, run_case
from iobench.experiments import get_experiment
from iobench.experiments.file_concurrency import count_records, make_record
from tests.helpers import ONE_REP

KIB = 1 << 10
MIB = 1 << 20


def run(name: str, folder: Path, protocol: Protocol, **case: object) -> CaseResult:
    experiment = get_experiment(name)
    full = {p.name: (p.default[0] if p.sweep else p.default) for p in experiment.params} | case
    return run_case(experiment, full, protocol, folder)


def rows(name: str, folder: Path, protocol: Protocol, **case: object) -> list[dict]:
    result = run(name, folder, protocol, **case)
    assert result.summary["status"] == "ok", result.summary
    return result.rows


# --- sync-write --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "sync_calls"),
    [
        ("buffered", 0),
        ("fsync-each", 16),
        ("fdatasync-each", 16),
        ("fsync-end", 1),
        ("O_SYNC", 0),
        ("O_DSYNC", 0),
    ],
)
def test_sync_write_makes_the_sync_calls_it_claims(
    tmp_path: Path, tiny_protocol: Protocol, mode: str, sync_calls: int
) -> None:
    for row in rows("sync-write", tmp_path, tiny_protocol, mode=mode, total=64 * KIB, bs=4096):
        assert row["sync_calls"] == sync_calls
        assert row["syscalls_write"] == 16
        assert row["integrity_ok"] is True
        assert 0 < row["lat_p50_ns"] <= row["lat_p99_ns"] <= row["lat_max_ns"]
        # The flag as the kernel holds it on the open file, read back from /proc/self/fdinfo.
        assert row["o_sync_set"] is (mode == "O_SYNC")
        assert row["o_dsync_set"] is (mode in ("O_SYNC", "O_DSYNC"))
        assert ((int(row["open_flags"], 8) & os.O_SYNC) == os.O_SYNC) is (mode == "O_SYNC")


def test_fsync_every_n_counts_the_tail(tmp_path: Path, tiny_protocol: Protocol) -> None:
    # 16 writes, a sync after writes 5, 10 and 15, and one more for the tail.
    (row, _) = rows(
        "sync-write", tmp_path, tiny_protocol, mode="fsync-every-N", total=64 * KIB, bs=4096, sync_every=5
    )
    assert row["sync_calls"] == 4


def test_o_sync_reaches_the_disk_during_the_loop(disk_dir: Path, tiny_protocol: Protocol) -> None:
    for row in rows("sync-write", disk_dir, tiny_protocol, mode="O_SYNC", total=64 * KIB, bs=4096):
        assert row["disk_write_bytes"] >= 64 * KIB


# --- mmap-read ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["read", "readinto"])
def test_read_methods_count_their_calls(tmp_path: Path, tiny_protocol: Protocol, method: str) -> None:
    for row in rows(
        "mmap-read", tmp_path, tiny_protocol, method=method, file_size=MIB, bs=65536, cache="warm"
    ):
        assert row["syscalls_read"] == 17 and row["bytes"] == MIB


@pytest.mark.parametrize("advice", ["none", "sequential", "random", "willneed", "populate"])
def test_mmap_touch_faults_instead_of_reading(tmp_path: Path, tiny_protocol: Protocol, advice: str) -> None:
    for row in rows(
        "mmap-read", tmp_path, tiny_protocol, method="mmap-touch", file_size=MIB, cache="warm", advice=advice
    ):
        assert row["syscalls_read"] == 0
        assert row["minflt"] > 0 and row["majflt"] == 0  # warm: mapped from the cache, no disk
        assert row["bytes"] == MIB


def test_mmap_cold_takes_major_faults(disk_dir: Path, tiny_protocol: Protocol) -> None:
    for row in rows(
        "mmap-read",
        disk_dir,
        tiny_protocol,
        method="mmap-touch",
        file_size=MIB,
        cache="cold",
        advice="random",
    ):
        assert row["cache_verified"] is True
        assert row["majflt"] >= 0.9 * MIB / 4096


def test_mmap_copy_moves_every_byte(tmp_path: Path, tiny_protocol: Protocol) -> None:
    for row in rows(
        "mmap-read", tmp_path, tiny_protocol, method="mmap-copy", file_size=MIB + 100, bs=4096, cache="warm"
    ):
        assert row["bytes"] == MIB + 100 and row["syscalls_read"] == 0


# --- stdio-buffer ------------------------------------------------------------------------


def test_unbuffered_is_one_write_per_record(tmp_path: Path, tiny_protocol: Protocol) -> None:
    for row in rows("stdio-buffer", tmp_path, tiny_protocol, records=1000, record_size=100, buffer_size=0):
        assert row["syscalls_write"] == 1000 and row["integrity_ok"] is True


def test_a_buffer_turns_records_into_few_writes(tmp_path: Path, tiny_protocol: Protocol) -> None:
    for row in rows("stdio-buffer", tmp_path, tiny_protocol, records=1000, record_size=100, buffer_size=4096):
        assert 100_000 // 4096 <= row["syscalls_write"] <= 100_000 // 4096 + 2
        assert row["integrity_ok"] is True


def test_flush_every_k_forces_a_write_per_flush(tmp_path: Path, tiny_protocol: Protocol) -> None:
    for row in rows(
        "stdio-buffer",
        tmp_path,
        tiny_protocol,
        records=1000,
        record_size=100,
        buffer_size=65536,
        flush_every=10,
    ):
        assert row["syscalls_write"] == 100


# --- direct-io ---------------------------------------------------------------------------


def test_direct_read_bypasses_the_page_cache(disk_dir: Path, tiny_protocol: Protocol) -> None:
    for row in rows("direct-io", disk_dir, tiny_protocol, mode="read", io="direct", file_size=MIB, bs=65536):
        assert row["disk_read_bytes"] >= MIB
        assert row["resident_after"] == 0.0  # nothing was cached on the way
        assert row["syscalls_read"] == 17
        assert row["direct_verified"] is True and row["direct_note"] == ""


@pytest.mark.parametrize("mode", ["read", "write"])
def test_o_direct_on_tmpfs_is_not_a_direct_io_number(
    shm_dir: Path, tiny_protocol: Protocol, mode: str
) -> None:
    for row in rows("direct-io", shm_dir, tiny_protocol, mode=mode, io="direct", file_size=MIB, bs=65536):
        assert row["status"] == "ok" and row["resident_after"] == 1.0  # accepted, and all in memory
        assert row["direct_verified"] is False
        assert row["direct_note"].startswith(
            "O_DIRECT not honoured on tmpfs: a file written with O_DIRECT was 100%"
        )
        assert row["direct_note"].endswith("this is a page-cache number, not a direct-IO number")


def test_buffered_rows_make_no_direct_claim(shm_dir: Path, tiny_protocol: Protocol) -> None:
    for row in rows("direct-io", shm_dir, tiny_protocol, mode="read", io="buffered", file_size=MIB, bs=65536):
        assert row.get("direct_verified") is None and row.get("direct_note") is None


def test_the_probe_sees_the_page_cache_both_ways(disk_dir: Path, shm_dir: Path) -> None:
    from iobench.engine.direct import probe_direct_io

    disk = probe_direct_io(disk_dir)
    assert disk.honoured and disk.reason() == "" and (disk.after_write, disk.after_read) == (0.0, 0.0)
    shm = probe_direct_io(shm_dir)
    assert not shm.honoured and shm.after_write == 1.0
    assert list(disk_dir.iterdir()) == [] and list(shm_dir.iterdir()) == []  # the probe file is gone


def test_buffered_read_fills_the_page_cache(disk_dir: Path, tiny_protocol: Protocol) -> None:
    for row in rows(
        "direct-io", disk_dir, tiny_protocol, mode="read", io="buffered", file_size=MIB, bs=65536
    ):
        assert row["resident_after"] == 1.0


def test_direct_write_checks_its_data(disk_dir: Path, tiny_protocol: Protocol) -> None:
    for row in rows("direct-io", disk_dir, tiny_protocol, mode="write", io="direct", file_size=MIB, bs=65536):
        assert row["integrity_ok"] is True and row["resident_after"] == 0.0


def test_misaligned_direct_io_is_unsupported_with_einval(disk_dir: Path, tiny_protocol: Protocol) -> None:
    result = run(
        "direct-io",
        disk_dir,
        tiny_protocol,
        mode="read",
        io="direct",
        align="misaligned",
        file_size=MIB,
        bs=4096,
    )
    (row,) = result.rows
    assert row["status"] == "unsupported"
    assert row["status_reason"].startswith("EINVAL: O_DIRECT refused")


def test_direct_io_rows_name_the_filesystem(shm_dir: Path) -> None:
    out = shm_dir / "out"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "direct-io",
            "--mode",
            "read",
            "--io",
            "direct",
            "--bs",
            "65536",
            "--file-size",
            "1MiB",
            "--dir",
            str(shm_dir),
            "--out",
            str(out),
            "-q",
            *ONE_REP,
        ],
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = list(out.iterdir())
    frame = pd.read_csv(run_dir / "results.csv")
    assert (frame["target_fs"] == "tmpfs").all()  # tmpfs may accept O_DIRECT yet serves from RAM
    assert (frame["direct_verified"] == False).all()  # noqa: E712 - a column of bools
    warnings = json.loads((run_dir / "meta.json").read_text())["warnings"]
    assert any("tmpfs" in w for w in warnings)
    # ... and this case says it of itself, beside the run-wide filesystem warning.
    (case_warning,) = [w for w in warnings if "O_DIRECT was not verified" in w]
    assert case_warning.startswith("direct-io ") and "in 1 of 1 repetition(s)" in case_warning
    assert "not a direct-IO number" in case_warning


# --- zero-copy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", ["read-write", "sendfile", "copy_file_range", "splice", "tcp-sendall", "tcp-sendfile"]
)
def test_every_copy_method_delivers_every_byte(tmp_path: Path, tiny_protocol: Protocol, method: str) -> None:
    result = run("zero-copy", tmp_path, tiny_protocol, method=method, file_size=MIB + 7, bs=65536)
    if result.summary["status"] == "unsupported":
        pytest.skip(result.summary["reason"])
    for row in result.rows:
        assert row["integrity_ok"] is True and row["bytes"] == MIB + 7
        if method == "read-write":
            assert (row["syscalls_read"], row["syscalls_write"]) == (18, 17)
        if method.startswith("tcp"):
            assert row["peer_cpu_ns"] > 0


#: The system calls each copy method makes for 256 KiB in 64 KiB calls (the last one returns
#: 0 at EOF), as strace sees them inside the timed window: nothing else.
ZERO_COPY_CALLS = {
    "read-write": {"readv": 5, "write": 4},
    "sendfile": {"sendfile": 5},
    "copy_file_range": {"copy_file_range": 5},
    "splice": {"splice": 9},  # file -> pipe and pipe -> file per block, then EOF
    "tcp-sendall": {"readv": 5, "sendto": 4, "shutdown": 1, "recvfrom": 1},  # + the peer's count
    "tcp-sendfile": {"sendfile": 5, "shutdown": 1, "recvfrom": 1},
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", list(ZERO_COPY_CALLS))
def test_copy_methods_make_exactly_their_system_calls(tmp_path: Path, method: str) -> None:
    """A sendfile that copied through user space would pass a byte count; strace would not."""
    from tests.straced import traced_window

    window = traced_window("zero-copy", {"method": method, "file_size": 256 * KIB, "bs": 64 * KIB}, tmp_path)
    if window.row["status"] == "unsupported":
        pytest.skip(window.row["status_reason"])
    assert window.row["status"] == "ok" and window.row["integrity_ok"] is True, window.row
    assert dict(Counter(c.name for c in window.own())) == ZERO_COPY_CALLS[method]
    if method not in ("read-write", "tcp-sendall"):
        # The data never passes through this process: no read or write of it.
        assert not [
            c for c in window.own() if c.name in ("read", "readv", "pread64", "write", "writev", "sendto")
        ]


# --- page-cache --------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["sequential", "random"])
def test_cold_reads_come_from_disk_warm_from_cache(
    disk_dir: Path, tiny_protocol: Protocol, pattern: str
) -> None:
    cold = rows(
        "page-cache", disk_dir, tiny_protocol, pattern=pattern, cache="cold", file_size=MIB, advice="random"
    )
    warm = rows("page-cache", disk_dir, tiny_protocol, pattern=pattern, cache="warm", file_size=MIB)
    for row in cold:
        assert row["resident_before"] < 0.01 and row["disk_read_bytes"] >= MIB
        assert row["syscalls_read"] == MIB // 4096 and row["bytes"] == MIB
    for row in warm:
        assert row["resident_before"] == 1.0 and row["disk_read_bytes"] == 0


# --- file-concurrency --------------------------------------------------------------------


def test_record_check_finds_intact_and_torn_records() -> None:
    size = 64
    data = make_record(0, 0, size) + make_record(1, 0, size) + b"\x00" * size + make_record(0, 0, size)
    assert count_records(data, size, writers=2, records=1) == (2, 1)


def test_racing_write_really_loses_records(tmp_path: Path, tiny_protocol: Protocol) -> None:
    for row in rows(
        "file-concurrency",
        tmp_path,
        tiny_protocol,
        mode="write-racing",
        threads=4,
        records=200,
        record_size=512,
    ):
        # Four descriptors all start at offset 0: every slot is written four times, kept once.
        assert row["records_lost"] == 3 * 200
        assert row["integrity_ok"] is None  # losing records is this case's result, not a failed check
        assert row["file_bytes"] == 200 * 512
        assert row["syscalls_write"] == 4 * 200  # all threads' writes, process-wide


@pytest.mark.parametrize("mode", ["pwrite", "append"])
def test_explicit_offsets_and_append_lose_nothing(tmp_path: Path, tiny_protocol: Protocol, mode: str) -> None:
    for row in rows(
        "file-concurrency", tmp_path, tiny_protocol, mode=mode, threads=4, records=200, record_size=512
    ):
        assert row["records_lost"] == 0 and row["records_torn"] == 0
        assert row["integrity_ok"] is True
        assert row["file_bytes"] == 4 * 200 * 512


@pytest.mark.parametrize("mode", ["pread-threads", "pread-asyncio"])
def test_concurrent_preads_read_the_whole_file(tmp_path: Path, tiny_protocol: Protocol, mode: str) -> None:
    for row in rows(
        "file-concurrency",
        tmp_path,
        tiny_protocol,
        mode=mode,
        threads=3,
        file_size=MIB,
        record_size=4096,
        cache="warm",
    ):
        assert row["bytes"] == MIB and row["ops"] == MIB // 4096
        assert row["syscalls_read"] >= MIB // 4096
        if mode == "pread-threads":
            assert row["syscalls_read"] == MIB // 4096
