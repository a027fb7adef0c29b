from __future__ import annotations

import json
from pathlib import Path

import pytest

from iobench import SCHEMA_VERSION
from iobench.errors import ResultsError
from iobench.results import COMMON_COLUMNS, RunWriter, latest_run, list_runs, load_run


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


def test_writer_keeps_every_finished_case_on_disk(tmp_path: Path) -> None:
    writer = RunWriter.create(tmp_path, {"command": ["iobench"]})
    writer.add_case([row(1), row(2)], {"case": "bs=1"})
    # Visible on disk before the run finishes: an interruption here loses nothing.
    loaded = load_run(writer.path)
    assert len(loaded.frame) == 2
    assert loaded.meta["status"] == "running"
    writer.add_case([row(1, case="bs=2", bs=2)], {"case": "bs=2"})
    writer.finish("complete")
    loaded = load_run(writer.path)
    assert list(loaded.frame.columns[: len(COMMON_COLUMNS)]) == list(COMMON_COLUMNS)
    assert len(loaded.frame) == 3 and set(loaded.frame["run_id"]) == {writer.run_id}
    assert loaded.meta["status"] == "complete" and loaded.meta["schema_version"] == SCHEMA_VERSION
    assert [c["case"] for c in loaded.meta["cases"]] == ["bs=1", "bs=2"]
    assert not [p for p in writer.path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_concurrent_writers_never_share_a_folder(tmp_path: Path) -> None:
    paths = {RunWriter.create(tmp_path, {}).path for _ in range(20)}
    assert len(paths) == 20
    assert latest_run(tmp_path) == sorted(paths)[-1]
    assert list_runs(tmp_path) == sorted(paths)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "meta.json").unlink(), "no meta.json"),
        (lambda p: (p / "meta.json").write_text("{not json"), "cannot be read"),
        (lambda p: (p / "meta.json").write_text(json.dumps({"schema_version": 99})), "schema version 99"),
        (lambda p: (p / "results.csv").write_text("a,b\n1,2\n"), "lacks column"),
        (lambda p: (p / "results.csv").write_bytes(b'"unterminated\n'), "cannot be read|lacks column"),
    ],
)
def test_damaged_runs_give_one_clear_error(tmp_path: Path, damage, message: str) -> None:
    writer = RunWriter.create(tmp_path, {})
    writer.add_case([row(1)], {"case": "bs=1"})
    writer.finish("complete")
    damage(writer.path)
    with pytest.raises(ResultsError, match=message):
        load_run(writer.path)


def test_no_runs(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no runs in"):
        latest_run(tmp_path)
