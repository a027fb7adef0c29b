"""folio-layout, readahead, dirty-throttle and huge-pages on small sizes (issue 18): each
instrument against an action whose result is known, the settings in force in every row, and
every setting a case changes put back, after a failure, Ctrl-C, and a kill."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iobench.engine.protocol import Protocol
from iobench.engine.runner import CaseResult, run_case
from iobench.experiments import get_experiment
from iobench.experiments.dirty_throttle import SAMPLED, Sampler, build_series, cliff, planned_size
from iobench.osutil import sysfs
from iobench.osutil.children import run_in_child
from tests.helpers import IOBENCH

MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
TWO = Protocol(warmup=0, min_reps=2, max_reps=2, max_case_time=30 * 10**9, target_ci=100.0)
ONE = Protocol(warmup=0, min_reps=1, max_reps=1, max_case_time=30 * 10**9, target_ci=100.0)
SETTINGS = {
    "setting_read_ahead_bytes",
    "setting_dirty_background_ratio",
    "setting_dirty_ratio",
    "setting_dirty_background_bytes",
    "setting_dirty_bytes",
    "setting_thp",
    "settings_changed",
}


@pytest.fixture(autouse=True)
def private_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Records of changed settings go to the test's own folder, never /run/iobench."""
    records = tmp_path / "records"
    monkeypatch.setenv("IOBENCH_SETTINGS_DIR", str(records))
    return records


def run(name: str, folder: Path, protocol: Protocol = TWO, **case: Any) -> CaseResult:
    experiment = get_experiment(name)
    full = {p.name: (p.default[0] if p.sweep else p.default) for p in experiment.params} | case
    scratch = folder / "scratch"
    scratch.mkdir(exist_ok=True)
    return run_case(experiment, full, protocol, scratch)


def ok_rows(result: CaseResult) -> list[dict[str, Any]]:
    assert result.summary["status"] == "ok", result.summary
    return result.rows


# ------------------------------------------------------------------ folio-layout


@ROOT
def test_folio_layout_rows_carry_the_histogram_that_the_writes_made(disk_dir: Path) -> None:
    small = ok_rows(run("folio-layout", disk_dir, write_bs=4096, read_bs=65536, file_size=MIB))
    large = ok_rows(run("folio-layout", disk_dir, write_bs=MIB, read_bs=65536, file_size=MIB))
    for row in small + large:
        assert set(row) >= SETTINGS and row["settings_changed"] == ""
        assert row["bytes"] == MIB and row["integrity_ok"] is True and row["cache_verified"] is True
        assert row["folio_unknown_reason"] == ""
    assert {json.dumps(json.loads(r["folio_histogram"])) for r in small} == {'{"1": 256}'}
    assert small[0]["folio_pages_p50"] == 1.0 and small[0]["folios"] == 256
    if large[0]["folio_histogram"] == '{"1": 256}':
        pytest.skip("filesystem without large folios (the fallback: 1 MiB writes made single pages too)")
    assert large[0]["folio_pages_p50"] > 1 and large[0]["folio_large_share"] == 1.0


@ROOT
def test_folio_layout_cold_readahead_ignores_write_bs_in_planning() -> None:
    experiment = get_experiment("folio-layout")
    case = {"layout": "cold-readahead", "write_bs": 4096, "read_bs": 4096, "file_size": MIB}
    assert experiment.irrelevant_params(case) == {"write_bs"}
    assert experiment.irrelevant_params(case | {"layout": "written"}) == frozenset()


def _folio_layout_as_nobody() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        experiment = get_experiment("folio-layout")
        case = {"layout": "written", "write_bs": 65536, "read_bs": 65536, "file_size": 256 << 10}
        result = run_case(experiment, case, ONE, Path(folder))
        return {"uid": os.geteuid(), "status": result.summary["status"], "row": result.rows[0]}


@ROOT
def test_folio_layout_unprivileged_runs_and_says_why_the_histogram_is_unknown() -> None:
    get_experiment("folio-layout")  # modules loaded before root is given up
    result, _ = run_in_child(_folio_layout_as_nobody, drop_root=True)
    assert result["uid"] != 0 and result["status"] == "ok"
    row = result["row"]
    assert math.isnan(row["folio_pages_p50"]) and row["folio_histogram"] == ""
    assert row["folio_unknown_reason"].startswith("/proc/kpageflags: Permission denied")
    assert row["bytes"] == 256 << 10  # the read itself was measured


# ------------------------------------------------------------------ readahead


def test_readahead_disk_counters_see_the_requests(disk_dir: Path) -> None:
    plain = ok_rows(run("readahead", disk_dir, method="plain", file_size=MIB))
    single = ok_rows(run("readahead", disk_dir, method="fadvise-random", file_size=MIB))
    for row in plain + single:
        assert row["cache_verified"] is True and row["bytes"] == MIB
        assert (
            set(row) >= SETTINGS and row["setting_read_ahead_bytes"] == _disk(disk_dir).read_ahead_kb() * 1024
        )
        # The whole disk's counters: at least what this read needed.
        assert row["dev_read_bytes"] >= MIB and row["pgpgin_bytes"] >= MIB
    # Without read-ahead every 4 KiB pread is its own request; with it, a few large ones do.
    assert all(row["dev_reads"] >= MIB // 4096 for row in single)
    assert min(row["dev_reads"] for row in plain) < MIB // 4096


def test_readahead_on_tmpfs_is_unsupported_with_why(shm_dir: Path) -> None:
    result = run("readahead", shm_dir, file_size=64 << 10)
    assert result.summary["status"] == "unsupported"
    assert "no block device of its own" in result.summary["reason"]


def test_readahead_tuning_needs_the_opt_in(disk_dir: Path) -> None:
    result = run("readahead", disk_dir, read_ahead="128KiB", file_size=64 << 10)
    assert result.summary["status"] == "unsupported"
    assert "read_ahead_kb, a system setting: it needs allow_tuning=yes" in result.summary["reason"]


def _tuning_as_nobody() -> str:
    with tempfile.TemporaryDirectory() as folder:
        experiment = get_experiment("readahead")
        full = {p.name: (p.default[0] if p.sweep else p.default) for p in experiment.params}
        case = full | {"read_ahead": "128KiB", "allow_tuning": "yes", "file_size": 64 << 10}
        return run_case(experiment, case, ONE, Path(folder)).summary.get("reason", "")


@ROOT
def test_readahead_tuning_unprivileged_is_refused_with_why() -> None:
    get_experiment("readahead")
    reason, _ = run_in_child(_tuning_as_nobody, drop_root=True)
    assert reason.startswith("changing /sys/block/") and "read_ahead_kb needs root" in reason


def _disk(folder: Path) -> sysfs.BlockDevice:
    device = sysfs.block_device(folder)
    assert device is not None
    return device


@ROOT
def test_readahead_tuned_case_records_and_restores_the_setting(disk_dir: Path, private_records: Path) -> None:
    device = _disk(disk_dir)
    found = device.read_ahead_kb()
    rows = ok_rows(run("readahead", disk_dir, read_ahead="16KiB", allow_tuning="yes", file_size=MIB))
    assert device.read_ahead_kb() == found
    assert list(private_records.iterdir()) == []
    for row in rows:
        assert row["setting_read_ahead_bytes"] == 16 << 10
        assert row["settings_changed"] == f"{device.read_ahead_path}=16"
        assert (
            row["dev_read_bytes"] / row["dev_reads"] <= 64 << 10
        )  # requests no larger than read-ahead allows


@ROOT
def test_readahead_setting_comes_back_after_a_failed_case(
    disk_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iobench.experiments.readahead import Readahead

    def broken(self: Any) -> dict[str, Any]:
        assert _disk(disk_dir).read_ahead_kb() == 16  # in force while it runs
        raise RuntimeError("the timed loop broke")

    found = _disk(disk_dir).read_ahead_kb()
    monkeypatch.setattr(Readahead, "run_once", broken)
    result = run("readahead", disk_dir, read_ahead="16KiB", allow_tuning="yes", file_size=64 << 10)
    assert (result.summary["status"], result.summary["reason"]) == (
        "failed",
        "RuntimeError: the timed loop broke",
    )
    assert _disk(disk_dir).read_ahead_kb() == found


@ROOT
def test_readahead_setting_comes_back_after_ctrl_c(
    disk_dir: Path, monkeypatch: pytest.MonkeyPatch, private_records: Path
) -> None:
    from iobench.experiments.readahead import Readahead

    def interrupted(self: Any) -> dict[str, Any]:
        raise KeyboardInterrupt

    found = _disk(disk_dir).read_ahead_kb()
    monkeypatch.setattr(Readahead, "run_once", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("readahead", disk_dir, read_ahead="16KiB", allow_tuning="yes", file_size=64 << 10)
    assert _disk(disk_dir).read_ahead_kb() == found
    assert list(private_records.iterdir()) == []


@contextlib.contextmanager
def _tuned_run(folder: Path, records: Path) -> Iterator[tuple[subprocess.Popen, sysfs.BlockDevice, int]]:
    """An `iobench run` in a real process, returned once it has set the disk's read_ahead_kb to
    16; whatever happens, the process is gone and the setting is back afterwards."""
    device = _disk(folder)
    found = device.read_ahead_kb()
    assert found is not None and found != 16
    env = {**os.environ, "IOBENCH_SETTINGS_DIR": str(records)}
    argv = [*IOBENCH, "run", "readahead", "--read-ahead", "16KiB", "--allow-tuning", "yes", "--method",
            "fadvise-random", "--file-size", "16MiB", "--min-reps", "50", "--max-reps", "50",
            "--dir", str(folder), "--out", str(folder / "out"), "-q"]  # fmt: skip
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while device.read_ahead_kb() != 16 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        assert device.read_ahead_kb() == 16, "the run never changed the setting"
        yield process, device, found
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if device.read_ahead_kb() != found:  # never leave the machine changed, whatever failed
            device.read_ahead_path.write_text(str(found))


@ROOT
@pytest.mark.timeout(60)
def test_readahead_setting_comes_back_after_sigint_to_a_real_run(
    disk_dir: Path, private_records: Path
) -> None:
    with _tuned_run(disk_dir, private_records) as (process, device, found):
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert device.read_ahead_kb() == found
        assert list(private_records.iterdir()) == []


@ROOT
@pytest.mark.timeout(60)
def test_readahead_setting_left_by_a_killed_run_is_restored_by_clean(
    disk_dir: Path, private_records: Path
) -> None:
    with _tuned_run(disk_dir, private_records) as (process, device, found):
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert device.read_ahead_kb() == 16  # nobody put it back: the process was killed
        env = {**os.environ, "IOBENCH_SETTINGS_DIR": str(private_records)}
        done = subprocess.run(
            [*IOBENCH, "clean", "--dir", str(disk_dir), "--out", str(disk_dir / "out")],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (
            f"restored {device.read_ahead_path} = {found} (changed by a run that was killed)" in done.stdout
        )
        assert device.read_ahead_kb() == found
        assert list(private_records.iterdir()) == []


# ------------------------------------------------------------------ dirty-throttle


def test_sampler_series_is_well_formed() -> None:
    sampler = Sampler(5_000_000)
    try:
        start = time.monotonic_ns()
        sampler.go()
        time.sleep(0.06)
        samples = sampler.stop()
    finally:
        sampler.close()
    assert len(samples) >= 6  # 60 ms at 5 ms, plus the last sample at stop
    times = [s[0] for s in samples]
    assert times == sorted(times) and times[0] >= start
    assert all(len(s) == 1 + len(SAMPLED) and all(isinstance(v, int) for v in s) for s in samples)
    threshold = SAMPLED.index("nr_dirty_threshold") + 1
    assert all(s[threshold] > 0 for s in samples)


def test_series_and_cliff_from_known_samples() -> None:
    def sample(t: int, dirty: int) -> tuple[int, ...]:
        # nr_dirty, nr_writeback, nr_dirtied, nr_written, thresholds (pages)
        return (t, dirty, 0, 1000 + dirty, 500, 100, 50)

    block = MIB
    # The writer finished one MiB every 100 ms from t=1000; the sampler looked every 200 ms.
    stamps = [1000 + 100_000_000 * (i + 1) for i in range(8)]
    samples = [sample(1000 + 200_000_000 * k, dirty) for k, dirty in enumerate((0, 20, 60, 80, 90))]
    series = build_series(samples, stamps, block, 1000, 8 * MIB)
    assert series["t_ns"] == [0, 200_000_000, 400_000_000, 600_000_000, 800_000_000]
    assert series["written_bytes"] == [0, 2 * MIB, 4 * MIB, 6 * MIB, 8 * MIB]
    assert series["write_rate"][1:] == [10 * MIB] * 4  # 2 MiB per 200 ms
    assert series["dirty_bytes"][2] == 60 * PAGE and series["freerun_bytes"][0] == 75 * PAGE
    found = cliff(series, 800_000_000)
    # dirty + write-back first reached the freerun point (75 pages) at the fourth sample.
    assert (found["cliff_ns"], found["cliff_written_bytes"]) == (600_000_000, 6 * MIB)
    assert found["rate_before_cliff"] == pytest.approx(6 * MIB / 0.6)
    assert found["rate_after_cliff"] == pytest.approx(2 * MIB / 0.2)
    assert found["dirty_threshold_bytes"] == 100 * PAGE and found["peak_dirty_bytes"] == 90 * PAGE
    never = cliff(build_series(samples[:2], stamps, block, 1000, 8 * MIB), 800_000_000)
    assert math.isnan(never["cliff_ns"]) and math.isnan(never["rate_after_cliff"])


def test_size_is_scaled_from_the_threshold_and_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = {"threshold_multiple": 3, "max_bytes": 1 << 40, "dirty_limit": "8MiB", "write_bs": MIB}
    assert planned_size(case, tmp_path) == (24 * MIB, "")
    assert planned_size(case | {"max_bytes": 16 * MIB}, tmp_path) == (16 * MIB, "max_bytes")

    class Usage:
        free = 20 * MIB

    monkeypatch.setattr("shutil.disk_usage", lambda _: Usage)
    assert planned_size(case, tmp_path) == (10 * MIB, "free_disk")  # half the free space at most
    found = case | {"dirty_limit": "found", "threshold_multiple": 1, "max_bytes": 1 << 40}
    threshold = sysfs.vmstat(("nr_dirty_threshold",))["nr_dirty_threshold"] * PAGE
    assert planned_size(found, tmp_path)[0] == min(threshold, 10 * MIB)


def test_dirty_throttle_row_holds_a_series_and_the_thresholds(disk_dir: Path) -> None:
    rows = ok_rows(run("dirty-throttle", disk_dir, max_bytes=8 * MIB, samples_per_second=500))
    for row in rows:
        assert row["bytes"] == 8 * MIB and row["integrity_ok"] is True
        assert row["size_capped_by"] == "max_bytes" and set(row) >= SETTINGS
        series = json.loads(row["throttle_series"])
        lengths = {len(values) for values in series.values()}
        assert lengths == {row["samples_taken"]} and row["samples_taken"] >= 2
        assert series["t_ns"] == sorted(series["t_ns"]) and series["written_bytes"][-1] == 8 * MIB
        assert row["dirty_threshold_bytes"] == series["dirty_threshold_bytes"][0] > 0
        assert 0 < row["fsync_ns"] < row["elapsed_ns"] and row["write_ns"] < row["elapsed_ns"]
        assert row["ops"] == 9  # eight 1 MiB writes and the fsync
    assert not list((disk_dir / "scratch").iterdir())


@ROOT
def test_dirty_throttle_tuned_limit_is_in_force_and_restored(disk_dir: Path) -> None:
    before = sysfs.dirty_settings()
    rows = ok_rows(
        run("dirty-throttle", disk_dir, ONE, dirty_limit="8MiB", allow_tuning="yes", threshold_multiple=2)
    )
    assert sysfs.dirty_settings() == before
    (row,) = rows
    assert row["setting_dirty_bytes"] == 8 * MIB and row["dirty_threshold_bytes"] == 8 * MIB
    assert row["bytes"] == 16 * MIB and row["size_capped_by"] == ""
    assert row["settings_changed"] == "/proc/sys/vm/dirty_bytes=8388608"


def test_dirty_throttle_tuning_needs_the_opt_in(disk_dir: Path) -> None:
    result = run("dirty-throttle", disk_dir, dirty_limit="8MiB")
    assert result.summary["status"] == "unsupported"
    assert (
        result.summary["reason"]
        == "this case changes vm.dirty_bytes, a system setting: it needs allow_tuning=yes"
    )


# ------------------------------------------------------------------ huge-pages


def test_huge_pages_anon_faults_per_page_or_per_huge_page(tmp_path: Path) -> None:
    size = 4 * MIB
    never = ok_rows(run("huge-pages", tmp_path, memory="anon", thp="never", size=size))
    for row in never:
        assert row["faults"] >= size // PAGE and row["anon_huge_bytes"] == 0 and set(row) >= SETTINGS
    if sysfs.thp_mode() not in ("madvise", "always"):
        return
    asked = ok_rows(run("huge-pages", tmp_path, memory="anon", thp="madvise", size=size))
    if not any(row["anon_huge_bytes"] for row in asked):
        pytest.skip("no huge page could be allocated (fragmented memory, or 2 MiB THP disabled)")
    for row in asked:
        if row["anon_huge_bytes"] == size and row["aligned_2m"]:
            assert row["faults"] <= size // (2 * MIB) + 2 and row["thp_fault_alloc"] >= size // (2 * MIB)


def test_huge_pages_mode_the_system_does_not_allow_is_refused(tmp_path: Path) -> None:
    mode = sysfs.thp_mode()
    if mode in (None, "always"):
        pytest.skip(f"THP mode {mode}: nothing to refuse")
    result = run("huge-pages", tmp_path, memory="anon", thp="always", size=2 * MIB)
    assert result.summary["status"] == "unsupported"
    assert result.summary["reason"] == (
        f"this case changes /sys/kernel/mm/transparent_hugepage/enabled (it is {mode}), a system setting: "
        "it needs allow_tuning=yes"
    )


@ROOT
def test_huge_pages_tuned_mode_is_in_force_and_restored(tmp_path: Path) -> None:
    mode = sysfs.thp_mode()
    if mode in (None, "always"):
        pytest.skip(f"THP mode {mode}: nothing to change")
    (row,) = ok_rows(
        run("huge-pages", tmp_path, ONE, memory="anon", thp="always", size=2 * MIB, allow_tuning="yes")
    )
    assert sysfs.thp_mode() == mode
    assert row["setting_thp"] == "always"
    assert row["settings_changed"] == "/sys/kernel/mm/transparent_hugepage/enabled=always"


@pytest.mark.timeout(60)
def test_dirty_throttle_window_is_the_writes_the_fsync_and_the_go_byte(tmp_path: Path) -> None:
    from tests.straced import traced_window

    case = {"max_bytes": 4 * MIB, "threshold_multiple": 1, "samples_per_second": 200}
    window = traced_window("dirty-throttle", case, tmp_path)
    assert window.row["status"] == "ok", window.row
    # Ours: the byte that releases the parked sampler, four 1 MiB writes, the fsync.
    assert [c.name for c in window.own()] == ["write"] * 5 + ["fsync"]
    sampler = {c.name for c in window.calls if c.pid != window.pid}
    assert "read" in sampler  # it samples /proc/vmstat while we write...
    assert not sampler & {
        "clone",
        "clone3",
        "fork",
        "vfork",
        "wait4",
        "execve",
    }  # ...started before the window
