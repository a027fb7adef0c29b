"""The page-cache experiments' instruments, checked against known actions (issue 18): folio
sizes from /proc/kpageflags, the disk's request counters, and the record that puts a changed
system setting back, also after the process that changed it was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from iobench.engine import cache
from iobench.osutil import kpageflags, sysfs, tuning
from iobench.osutil.children import run_in_child
from iobench.osutil.files import create_random_file
from tests.helpers import IOBENCH

MIB = 1 << 20
ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
HEAD, TAIL = kpageflags.KPF_COMPOUND_HEAD, kpageflags.KPF_COMPOUND_TAIL


# ------------------------------------------------------------------ folio sizes


def test_folio_sizes_join_a_head_and_its_consecutive_tails_only() -> None:
    pages = [(0, 100), (1, 101), (2, 102), (3, 103), (4, 500), (5, 600), (6, 601), (7, 700)]
    flags = {100: HEAD, 101: TAIL, 102: TAIL, 103: TAIL, 500: 0, 600: TAIL, 601: TAIL, 700: HEAD}
    # A folio of 4; a page; a tail whose head is not mapped starts its own (600, 601); a head alone.
    assert kpageflags.folio_sizes(pages, flags) == {4: 1, 1: 2, 2: 1}
    # A tail in a frame that does not follow its neighbour's is another folio.
    assert kpageflags.folio_sizes([(0, 10), (1, 12)], {10: HEAD, 12: TAIL}) == {1: 2}


def test_p50_is_byte_weighted_and_share_counts_pages() -> None:
    layout = kpageflags.FolioLayout({1: 100, 256: 1}, pages_seen=356)
    assert layout.pages_p50() == 256.0  # 256 of the 356 pages sit in the big folio
    assert layout.share_in_large() == pytest.approx(256 / 356)
    assert layout.folios == 101
    assert layout.histogram_json() == '{"1": 100, "256": 1}'
    assert (
        kpageflags.FolioLayout(unknown="why").pages_p50() != kpageflags.FolioLayout(unknown="why").pages_p50()
    )


@ROOT
def test_writes_decide_the_folios_the_instrument_sees(disk_dir: Path) -> None:
    large, small = disk_dir / "large.bin", disk_dir / "small.bin"
    create_random_file(large, MIB, write_bs=MIB)
    create_random_file(small, MIB, write_bs=4096)
    big, little = kpageflags.file_folio_layout(large), kpageflags.file_folio_layout(small)
    assert big.pages_seen == little.pages_seen == MIB // 4096
    assert little.histogram == {1: 256}  # a page per write, a folio per page
    if big.histogram == {1: 256}:
        pytest.skip("filesystem without large folios: 1 MiB writes also made single pages (the fallback)")
    assert big.pages_p50() > 1 and big.share_in_large() == 1.0


@ROOT
def test_an_evicted_file_is_unknown_and_is_not_read_back_in(disk_dir: Path) -> None:
    path = disk_dir / "cold.bin"
    create_random_file(path, MIB)
    cache.evict(path)
    if cache.resident_fraction(path) > 0:
        pytest.skip("the page cache kept the file")
    assert kpageflags.file_folio_layout(path).unknown == "no page of the file is in the page cache"
    assert cache.resident_fraction(path) == 0.0  # measuring it faulted nothing in from the disk


def _layout_as_nobody() -> tuple[int, str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.bin"
        create_random_file(path, 64 << 10)
        layout = kpageflags.file_folio_layout(path)
        return os.geteuid(), layout.unknown, layout.pages_p50()


@ROOT
def test_unprivileged_the_histogram_is_unknown_with_the_reason() -> None:
    (uid, reason, p50), _ = run_in_child(_layout_as_nobody, drop_root=True)
    assert uid != 0
    assert reason == "/proc/kpageflags: Permission denied (reading page flags needs root: CAP_SYS_ADMIN)"
    assert p50 != p50  # NaN, never a number


# ------------------------------------------------------------------ sysfs


def test_selected_reads_the_bracketed_choice() -> None:
    assert sysfs.selected("always [madvise] never") == "madvise"
    assert sysfs.selected("8192") == "8192"
    assert sysfs.selected(None) is None


def test_a_disk_folder_has_a_device_and_tmpfs_has_none(disk_dir: Path, shm_dir: Path) -> None:
    device = sysfs.block_device(disk_dir)
    assert device is not None and device.read_ahead_kb() is not None
    assert device.read_ahead_path == Path(f"/sys/block/{device.disk.name}/queue/read_ahead_kb")
    assert sysfs.block_device(shm_dir) is None


def test_the_disk_counts_a_cold_read(disk_dir: Path) -> None:
    path = disk_dir / "cold.bin"
    create_random_file(path, MIB)
    cache.evict(path)
    device = sysfs.block_device(disk_dir)
    assert device is not None
    before = device.stat()
    cache.make_warm(path)
    delta = device.stat() - before
    # The whole disk's counters: at least our megabyte, in at least one request.
    assert delta.read_bytes >= MIB and delta.reads >= 1


# ------------------------------------------------------------------ changing a setting, putting it back


@pytest.fixture
def setting(tmp_path: Path) -> Path:
    """A plain file standing in for a sysfs setting (it holds "1")."""
    path = tmp_path / "setting"
    path.write_text("1\n")
    return path


def test_a_change_is_recorded_before_it_is_made_and_restore_puts_it_back(
    tmp_path: Path, setting: Path
) -> None:
    records = tmp_path / "records"
    tuned = tuning.Tuning(records)
    assert tuned.set(setting, "2") is True
    assert setting.read_text() == "2"
    (folder,) = records.iterdir()
    body = json.loads((folder / tuning.RECORD).read_text())
    assert body["changes"] == [
        {"path": str(setting), "value": "2", "restore_path": str(setting), "restore_value": "1"}
    ]
    assert tuning.abandoned(records) == []  # held by this live Tuning
    assert tuned.restore() == []
    assert setting.read_text() == "1"
    assert list(records.iterdir()) == []


def test_a_setting_already_in_force_is_not_changed(tmp_path: Path, setting: Path) -> None:
    tuned = tuning.Tuning(tmp_path / "records")
    assert tuned.set(setting, "1") is False
    assert tuned.changes == [] and not (tmp_path / "records").exists()


def test_restore_can_write_another_file(tmp_path: Path, setting: Path) -> None:
    ratio = tmp_path / "ratio"
    ratio.write_text("0")
    tuned = tuning.Tuning(tmp_path / "records")
    tuned.set(setting, "8388608", restore_path=ratio, restore_value="20")  # as vm.dirty_bytes does
    tuned.restore()
    assert (setting.read_text(), ratio.read_text()) == ("8388608", "20")


def test_a_restore_that_fails_keeps_the_record_for_later(tmp_path: Path, setting: Path) -> None:
    records = tmp_path / "records"
    tuned = tuning.Tuning(records)
    tuned.set(setting, "2", restore_path=tmp_path / "gone" / "x", restore_value="1")
    (error,) = tuned.restore()
    assert error.startswith(f"could not restore {tmp_path}/gone/x = 1: ")
    (record,) = tuning.abandoned(records)  # its lock is released: the next run tries again
    assert record.changes[0].path == str(setting)


def _change_then_die(records: Path, setting: Path) -> None:
    tuning.Tuning(records).set(setting, "2")
    os.kill(os.getpid(), signal.SIGKILL)


def test_after_sigkill_the_next_run_restores(tmp_path: Path, setting: Path) -> None:
    records = tmp_path / "records"
    pid = os.fork()
    if pid == 0:
        try:
            _change_then_die(records, setting)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert setting.read_text() == "2"
    (record,) = tuning.abandoned(records)
    assert record.same_boot and [c.restore_value for c in record.changes] == ["1"]
    lines = tuning.restore_abandoned(records)
    assert lines == [f"restored {setting} = 1 (changed by a run that was killed)"]
    assert setting.read_text() == "1"
    assert list(records.iterdir()) == []


def test_a_record_from_before_a_reboot_is_only_removed(tmp_path: Path, setting: Path) -> None:
    records = tmp_path / "records"
    folder = records / "settings-old"
    folder.mkdir(parents=True)
    change = {"path": str(setting), "value": "2", "restore_path": str(setting), "restore_value": "7"}
    (folder / tuning.RECORD).write_text(
        json.dumps({"pid": 1, "boot_id": "another boot", "changes": [change]})
    )
    assert tuning.restore_abandoned(records) == [
        f"{setting}: left by a run before the last reboot; already reset"
    ]
    assert setting.read_text() == "1\n" and not folder.exists()


def _left_record(records: Path, setting: Path) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            _change_then_die(records, setting)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)


@ROOT
def test_sysinfo_lists_and_clean_restores_a_killed_runs_setting(tmp_path: Path, setting: Path) -> None:
    records = tmp_path / "records"
    _left_record(records, setting)
    env = {**os.environ, "IOBENCH_SETTINGS_DIR": str(records)}
    common = ["--dir", str(tmp_path)]
    info = subprocess.run([*IOBENCH, "sysinfo", *common], capture_output=True, text=True, env=env, timeout=60)
    assert (
        f"warning: {setting} left at 2 by a killed run (it was 1): restore it with: iobench clean"
        in info.stdout
    )
    dry = subprocess.run(
        [*IOBENCH, "clean", *common, "--out", str(tmp_path / "out"), "--dry-run"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert f"would restore: {setting} left at 2 by a killed run (it was 1)" in dry.stdout
    assert setting.read_text() == "2"
    done = subprocess.run(
        [*IOBENCH, "clean", *common, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"restored {setting} = 1 (changed by a run that was killed)" in done.stdout
    assert setting.read_text() == "1"


@ROOT
def test_the_next_run_restores_and_says_so(
    tmp_path: Path, setting: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import iobench

    records = tmp_path / "records"
    _left_record(records, setting)
    monkeypatch.setenv("IOBENCH_SETTINGS_DIR", str(records))
    run = iobench.run(
        "syscall", call="getppid", calls=10, dir=tmp_path, out=None, warmup=0, min_reps=1, max_reps=1
    )
    assert setting.read_text() == "1"
    assert f"restored {setting} = 1 (changed by a run that was killed)" in run.meta["warnings"]
