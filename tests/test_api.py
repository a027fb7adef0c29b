"""The Python API without click: every CLI command has an equivalent here, same errors."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pandas as pd
import pytest

import iobench
from iobench import api
from iobench.engine.events import CaseFinished, CaseStarted, RepDone, RunFinished, RunStarted
from iobench.errors import ParamError, ResultsError, RunLockedError, UnknownExperimentError
from iobench.results import RunStore, load_run

TINY = {"warmup": 0, "min_reps": 2, "max_reps": 2}


def test_the_module_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert tried >= 3 and failures == 0


def test_run_in_memory_gives_typed_rows_and_a_summary(tmp_path: Path) -> None:
    res = iobench.run("rw-buffer", mode="read", bs=["4KiB", 65536], file_size="256KiB", cache="warm",
                      dir=tmp_path, out=None, **TINY)  # fmt: skip
    assert res.path is None and res.status == "complete"
    assert not [p for p in tmp_path.iterdir()]  # scratch removed, nothing written
    frame = res.frame
    assert len(frame) == 4
    assert str(frame["syscalls_read"].dtype) == "Int64" and str(frame["mode"].dtype) == "category"
    assert str(frame["integrity_ok"].dtype) == "boolean" and frame["integrity_ok"].all()
    # The kernel's count: 256 KiB at 4 KiB is 64 reads plus the one that returns 0.
    assert set(frame.loc[frame["bs"] == 4096, "syscalls_read"]) == {65}
    assert (frame["t_start_ns"].diff().dropna() > 0).all()  # repetitions in time order
    summary = res.summary
    assert list(summary["bs"]) == [4096, 65536] and set(summary["reps"]) == {2}
    assert {"elapsed_low_ns", "elapsed_high_ns", "stop_reason", "bytes_per_s", "status"} <= set(
        summary.columns
    )
    assert res.meta.host["kernel"] and res.meta.target["fs_type"] and res.meta.versions["iobench"]
    assert res.meta.protocols[0].max_reps == 2


def test_run_to_a_folder_is_the_same_run_the_cli_writes(tmp_path: Path) -> None:
    res = iobench.run("syscall", call="getppid", calls=2000, dir=tmp_path, out=tmp_path / "out", **TINY)
    assert res.path is not None and res.path.parent == tmp_path / "out"
    for name in ("meta.json", "cases.jsonl", "results.csv", "columns.md", "results.parquet"):
        assert (res.path / name).is_file(), name
    parquet = pd.read_parquet(res.path / "results.parquet", dtype_backend="numpy_nullable")
    assert str(parquet["ops"].dtype) == "Int64" and list(parquet["ops"]) == [2000, 2000]
    assert str(parquet["call"].dtype) == "category" and str(parquet["elapsed_ns"].dtype) == "Float64"
    loaded = iobench.load(res.path)
    assert isinstance(loaded, api.Run) and loaded.run_id == res.run_id and len(loaded.frame) == 2
    assert "| `syscalls_read` |" in (res.path / "columns.md").read_text()


def test_load_a_folder_of_runs_concatenates(tmp_path: Path) -> None:
    for _ in range(2):
        iobench.run("syscall", call="getppid", calls=500, dir=tmp_path, out=tmp_path / "out", **TINY)
    runs = iobench.load(tmp_path / "out")
    assert isinstance(runs, api.Runs) and len(runs) == 2
    assert len(runs.frame) == 4 and runs.frame["run_id"].nunique() == 2
    assert len(runs.summary) == 2


def test_progress_callback_sees_every_event_and_iteration_yields_cases(tmp_path: Path) -> None:
    seen: list = []
    iobench.run("syscall", call="getppid,vdso-clock", calls=500, dir=tmp_path, progress=seen.append, **TINY)
    kinds = [type(e) for e in seen]
    assert kinds[0] is RunStarted and kinds[-1] is RunFinished
    assert kinds.count(CaseStarted) == 2 and kinds.count(CaseFinished) == 2 and kinds.count(RepDone) == 4
    events = list(iobench.run_iter("syscall", call="getppid", calls=500, dir=tmp_path, **TINY))
    assert [type(e) for e in events] == [RunStarted, CaseFinished, RunFinished]
    assert isinstance(events[-1].run, api.Run) and events[1].summary["status"] == "ok"


def test_no_thread_is_started_by_a_run(tmp_path: Path, monkeypatch) -> None:
    import threading

    started = []
    real_start = threading.Thread.start
    monkeypatch.setattr(
        threading.Thread, "start", lambda self: (started.append(self.name), real_start(self))[1]
    )
    iobench.run("rw-buffer", mode="read", bs=4096, file_size="64KiB", cache="warm", dir=tmp_path, **TINY)
    assert started == []


def test_sweep_and_resume(tmp_path: Path) -> None:
    config = tmp_path / "two.toml"
    config.write_text(
        "[protocol]\nwarmup = 0\nmin_reps = 1\nmax_reps = 1\n"
        '[[experiment]]\nname = "syscall"\ncall = ["getppid", "vdso-clock"]\ncalls = 200\n'
        '[[experiment]]\nname = "page-fault"\nmode = "anon"\nsize = "64KiB"\n'
    )
    out = tmp_path / "out"
    stopped = iobench.sweep(config, dir=tmp_path, out=out, max_time="1ns")
    assert stopped.status == "stopped" and len(stopped.meta["cases"]) == 1
    resumed = iobench.resume(stopped.path, dir=tmp_path)
    assert resumed.status == "complete" and len(resumed.meta["cases"]) == 3
    assert resumed.meta["resumed"][0]["previous_status"] == "stopped"
    only = iobench.sweep(config, only=["page-fault"], dir=tmp_path, out=out)
    assert [c["experiment"] for c in only.meta["cases"]] == ["page-fault"]


def test_experiments_lists_parameters_with_defaults() -> None:
    known = iobench.experiments()
    assert len(known) >= 16 and "rw-buffer" in known
    info = known["rw-buffer"]
    assert info.defaults["bs"] == (1, 16, 256, 4096, 65536)
    assert {p.name for p in info.params} == {"mode", "file_size", "bs", "cache", "source_write_bs"}


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda d: iobench.run("nope", dir=d), UnknownExperimentError, "unknown experiment 'nope'"),
        (lambda d: iobench.run("rw-buffer", bs="4Q", dir=d), ParamError, "bs: '4Q' is not a size"),
        (lambda d: iobench.run("rw-buffer", colour="red", dir=d), ParamError, "unknown parameter 'colour'"),
        (lambda d: iobench.run("syscall", dir=d, out=""), ParamError, "--out: give a folder"),
        (lambda d: iobench.sweep("no-such-config", dir=d), Exception, "does not exist"),
        (lambda d: iobench.load(d / "missing"), ResultsError, "neither an iobench run"),
        (lambda d: iobench.resume(d / "missing"), ResultsError, "is not a run folder"),
    ],
)
def test_errors_are_exceptions_with_the_cli_s_message(tmp_path: Path, call, error, message: str) -> None:
    with pytest.raises(error, match=message):
        call(tmp_path)


def test_resume_of_a_live_run_is_refused(tmp_path: Path) -> None:
    res = iobench.run("syscall", call="getppid", calls=100, dir=tmp_path, out=tmp_path / "out", **TINY)
    meta = json.loads((res.path / "meta.json").read_text())
    (res.path / "meta.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    holder = RunStore.reopen(res.path, ["holder"])
    try:
        with pytest.raises(RunLockedError, match="being written by another iobench"):
            iobench.resume(res.path, dir=tmp_path)
    finally:
        holder.close()
    assert load_run(res.path).meta["status"] == "crashed"  # the holder let go without finishing


def test_import_iobench_stays_light() -> None:
    import subprocess
    import sys

    code = "import iobench, sys; print(sorted(m for m in ('pandas', 'numpy', 'scipy', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
