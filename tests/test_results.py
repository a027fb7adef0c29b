"""Run folders: every committed case survives signals, crashes and full disks; damaged or
hand-edited runs give one clear error naming the file and the field."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from iobench import SCHEMA_VERSION
from iobench import results as results_module
from iobench.errors import ResultsError, ResultsFullError, RunLockedError
from iobench.results import (
    COMMON_COLUMNS,
    CSV,
    JOURNAL,
    META,
    RunStore,
    is_abandoned,
    latest_run,
    list_runs,
    load_run,
    read_journal,
)

CONFIG = {"entries": [{"experiment": "rw-buffer", "values": {}, "protocol": {}}]}


def row(rep: int, **extra: object) -> dict:
    base = {c: 0 for c in COMMON_COLUMNS if c != "run_id"}
    base.update(
        experiment="rw-buffer",
        case="bs=1",
        rep=rep,
        status="ok",
        status_reason="",
        engine="python",
        target_fs="ext4",
        elapsed_ns=100 + rep,
        bs=1,
    )
    base.update(extra)
    return base


def summary(case: str = "bs=1", status: str = "ok") -> dict:
    return {"experiment": "rw-buffer", "case": case, "status": status}


def new_run(tmp_path: Path, cases: int = 2) -> RunStore:
    store = RunStore.create(tmp_path, {"command": ["iobench"], "config": CONFIG})
    for index in range(1, cases + 1):
        store.commit(
            [row(1, case=f"bs={index}", bs=index), row(2, case=f"bs={index}", bs=index)],
            summary(f"bs={index}"),
        )
    return store


def test_commit_keeps_every_finished_case_on_disk(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, {"command": ["iobench"]})
    store.commit([row(1), row(2)], summary())
    # On disk before the run finishes: an interruption here loses nothing.
    loaded = load_run(store.path)
    assert len(loaded.frame) == 2 and loaded.meta["status"] == "running"
    store.commit([row(1, case="bs=2", bs=2)], summary("bs=2"))
    store.finish("complete")
    store.close()
    loaded = load_run(store.path)
    assert list(loaded.frame.columns[: len(COMMON_COLUMNS)]) == list(COMMON_COLUMNS)
    assert len(loaded.frame) == 3 and set(loaded.frame["run_id"]) == {store.run_id}
    assert loaded.meta["status"] == "complete" and loaded.meta["schema_version"] == SCHEMA_VERSION
    assert [c["case"] for c in loaded.meta["cases"]] == ["bs=1", "bs=2"]
    # The three files agree, and no temporary file is left.
    csv = pd.read_csv(store.path / CSV)
    assert len(csv) == 3
    assert [c["case"] for c in json.loads((store.path / META).read_text())["cases"]] == ["bs=1", "bs=2"]
    assert len((store.path / JOURNAL).read_text().splitlines()) == 2
    assert not [p for p in store.path.iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_concurrent_writers_never_share_a_folder(tmp_path: Path) -> None:
    stores = [RunStore.create(tmp_path, {}) for _ in range(20)]
    paths = {s.path for s in stores}
    assert len(paths) == 20
    assert latest_run(tmp_path) == sorted(paths)[-1]
    assert list_runs(tmp_path) == sorted(paths)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_commit_waits_until_the_case_is_whole(
    tmp_path: Path, monkeypatch, signum: int
) -> None:
    """The bug users hit: a signal mid-rewrite left meta listing N cases and the CSV N-1."""
    store = new_run(tmp_path, cases=1)
    real = results_module.atomic_write
    sent = []

    def signalling_write(path: Path, data: bytes) -> None:
        if not sent:  # the signal arrives in the middle of the commit, before the views
            sent.append(path.name)
            os.kill(os.getpid(), signum)
        real(path, data)

    monkeypatch.setattr(results_module, "atomic_write", signalling_write)
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with pytest.raises(KeyboardInterrupt):
            store.commit([row(1, case="bs=2", bs=2)], summary("bs=2"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sent == [CSV]
    loaded = load_run(store.path)
    assert [c["case"] for c in loaded.meta["cases"]] == ["bs=1", "bs=2"]
    assert sorted(pd.read_csv(store.path / CSV)["case"].unique()) == ["bs=1", "bs=2"]
    assert [c["case"] for c in json.loads((store.path / META).read_text())["cases"]] == ["bs=1", "bs=2"]


def test_a_full_disk_during_the_commit_leaves_no_half_record(tmp_path: Path, monkeypatch) -> None:
    store = new_run(tmp_path, cases=2)
    before = (store.path / JOURNAL).read_bytes()
    real_write = os.write

    def short_then_full(fd: int, data: bytes) -> int:
        if len(data) > 100:
            real_write(fd, data[:50])  # half a record reaches the file, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(results_module.os, "write", short_then_full)
    with pytest.raises(
        ResultsFullError, match=r"results folder .* is full .* needs .* free; everything recorded"
    ):
        store.commit([row(1, case="bs=3", bs=3)], summary("bs=3"))
    monkeypatch.undo()
    assert (store.path / JOURNAL).read_bytes() == before  # cut back to the last whole case
    store.close()
    assert [c["case"] for c in load_run(store.path).meta["cases"]] == ["bs=1", "bs=2"]
    resumed = RunStore.reopen(store.path, ["resume"])
    assert resumed.finished_cases() == {("rw-buffer", "bs=1"), ("rw-buffer", "bs=2")}


def test_a_torn_last_line_is_ignored_then_cut_on_resume(tmp_path: Path) -> None:
    store = new_run(tmp_path, cases=2)
    store.close()
    with open(store.path / JOURNAL, "ab") as journal:
        journal.write(b'{"summary": {"experiment": "rw-buffer", "case": "bs=3"')  # SIGKILL mid-write
    assert [c["case"] for c in load_run(store.path).meta["cases"]] == ["bs=1", "bs=2"]
    assert read_journal(store.path).torn_bytes > 0
    resumed = RunStore.reopen(store.path, ["resume"])
    assert read_journal(store.path).torn_bytes == 0
    assert any("unfinished case record" in w for w in resumed.meta["warnings"])
    assert resumed.finished_cases() == {("rw-buffer", "bs=1"), ("rw-buffer", "bs=2")}


def test_a_stale_or_missing_csv_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    """SIGKILL between the journal append and the CSV rewrite: the journal is the truth."""
    store = new_run(tmp_path, cases=2)
    store.close()
    (store.path / CSV).write_text((store.path / CSV).read_text().splitlines()[0] + "\n")
    assert len(load_run(store.path).frame) == 4
    (store.path / CSV).unlink()
    assert len(load_run(store.path).frame) == 4
    RunStore.reopen(store.path, ["resume"]).close()
    assert len(pd.read_csv(store.path / CSV)) == 4


def test_failed_cases_run_again_and_the_last_record_wins(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, {"config": CONFIG})
    store.commit([row(0, status="failed", status_reason="ENOSPC")], summary("bs=1", "failed"))
    store.commit([row(1, case="bs=2", bs=2)], summary("bs=2"))
    store.close()
    resumed = RunStore.reopen(store.path, ["resume"])
    assert resumed.finished_cases() == {("rw-buffer", "bs=2")}
    resumed.commit([row(1), row(2)], summary("bs=1"))
    resumed.finish("complete")
    resumed.close()
    loaded = load_run(store.path)
    assert [c["case"] for c in loaded.meta["cases"]] == ["bs=2", "bs=1"]
    assert loaded.frame["status"].tolist() == ["ok", "ok", "ok"]


def test_a_live_run_cannot_be_resumed_twice_and_a_dead_one_is_crashed(tmp_path: Path) -> None:
    store = new_run(tmp_path, cases=1)
    with pytest.raises(RunLockedError, match=r"being written by another iobench \(pid \d+"):
        RunStore.reopen(store.path, ["resume"])
    assert load_run(store.path).meta["status"] == "running"  # its owner is alive
    store.close()  # the owner is gone without finishing (as after SIGKILL)
    assert is_abandoned(store.path)
    assert load_run(store.path).meta["status"] == "crashed"
    assert json.loads((store.path / META).read_text())["status"] == "crashed"
    RunStore.reopen(store.path, ["resume"]).close()


def _v1_run(tmp_path: Path, listed: list[str], rows: list[dict]) -> Path:
    folder = tmp_path / "20260101-000000-aaaa"
    folder.mkdir()
    meta = {"schema_version": 1, "run_id": folder.name, "status": "interrupted", "config": CONFIG,
            "cases": [summary(c) for c in listed]}  # fmt: skip
    (folder / META).write_text(json.dumps(meta))
    pd.DataFrame([{"run_id": folder.name, **r} for r in rows]).to_csv(folder / CSV, index=False)
    return folder


def test_schema_1_runs_load_and_resume_reconciles_meta_against_rows(tmp_path: Path) -> None:
    folder = _v1_run(
        tmp_path,
        listed=["bs=1", "bs=2"],  # bs=2 listed as done, but its rows never reached the CSV
        rows=[row(1), row(1, case="bs=3", bs=3)],  # bs=3 rows exist, but meta never listed it
    )
    assert len(load_run(folder).frame) == 2
    store = RunStore.reopen(folder, ["resume"])
    assert store.finished_cases() == {("rw-buffer", "bs=1"), ("rw-buffer", "bs=3")}
    notes = " ".join(store.meta["warnings"])
    assert "bs=2 was listed as done without its rows; it runs again" in notes
    assert "kept 1 row(s) of rw-buffer bs=3" in notes
    store.close()
    assert (folder / JOURNAL).is_file() and load_run(folder).meta["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / META).unlink(), "no meta.json"),
        (lambda p: (p / META).write_text("{not json"), "cannot be read"),
        (lambda p: (p / META).write_text("[" * 100_000), "cannot be read"),
        (lambda p: (p / META).write_text(json.dumps({"schema_version": 99})), "schema version 99"),
        (lambda p: _edit_meta(p, host="x"), "field 'host' has the wrong type"),
        (lambda p: _edit_meta(p, cases="lots"), "field 'cases' has the wrong type"),
        (lambda p: _edit_meta(p, warnings=[1]), r"warnings\[0\] is not text"),
        (lambda p: (p / JOURNAL).write_text("garbage\n"), "line 1 is not a case record"),
        (
            lambda p: _edit_rows(p, elapsed_ns="abc"),
            "column 'elapsed_ns' row 1: 'abc' is not a finite number",
        ),
        (
            lambda p: _edit_rows(p, elapsed_ns=float("inf")),
            "column 'elapsed_ns' row 1: .* is not a finite number",
        ),
        (lambda p: _edit_rows(p, drop="bytes"), "lacks column 'bytes'"),
        (lambda p: _edit_rows(p, drop="bs"), "lacks column 'bs', a parameter of case 'bs=1'"),
    ],
)
def test_damaged_runs_give_one_clear_error(tmp_path: Path, damage, message: str) -> None:
    store = new_run(tmp_path, cases=1)
    store.finish("complete")
    store.close()
    damage(store.path)
    with pytest.raises(ResultsError, match=message):
        load_run(store.path)


def _edit_meta(path: Path, **fields: object) -> None:
    meta = json.loads((path / META).read_text())
    (path / META).write_text(json.dumps({**meta, **fields}))


def _edit_rows(path: Path, drop: str | None = None, **fields: object) -> None:
    lines = []
    for line in (path / JOURNAL).read_text().splitlines():
        record = json.loads(line)
        for r in record["rows"]:
            r.update(fields)
            r.pop(drop, None)
        lines.append(json.dumps(record))
    (path / JOURNAL).write_text("\n".join(lines) + "\n")


def test_no_runs(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no runs in"):
        latest_run(tmp_path)
