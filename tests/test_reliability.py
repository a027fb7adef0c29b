"""Reliability: full disks, time budgets, resume, concurrent runs, hostile input."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iobench.cli import cli
from iobench.config import load_config
from iobench.engine.protocol import Protocol
from iobench.errors import ConfigError, ExitCode, InsufficientSpaceError
from iobench.experiments import all_experiments
from iobench.experiments.base import Experiment
from iobench.params import Kind, Param
from iobench.plan import PlanEntry
from iobench.session import RunRequest, execute
from tests.helpers import IOBENCH

TWO_CASES = """
[protocol]
warmup = 0
min_reps = 1
max_reps = 1

[[experiment]]
name = "rw-buffer"
mode = "read"
file_size = ["64KiB", "128KiB"]
bs = 4096
cache = "warm"
"""


# --- a full disk -------------------------------------------------------------------------


class Filler(Experiment):
    """Writes until the filesystem is full (and says it needs nothing, so no pre-check stops it)."""

    name = "test-filler"
    summary = "fills the disk"
    seed_idea = "test"
    params = (Param("chunk", Kind.SIZE, 65536, "bytes per write"),)

    def run_once(self) -> dict[str, Any]:
        fd = os.open(self.scratch / "fill.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            block = b"x" * self.case["chunk"]
            while True:
                os.write(fd, block)
        finally:
            os.close(fd)


class Small(Filler):
    name = "test-small"

    def run_once(self) -> dict[str, Any]:
        (self.scratch / "small.bin").write_bytes(b"y" * self.case["chunk"])
        return {"bytes": self.case["chunk"], "ops": 1}


@pytest.fixture
def tiny_tmpfs() -> Path:
    """A 1 MiB tmpfs mounted for this test (root only)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    folder = Path(tempfile.mkdtemp(prefix="iobench-full-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
        folder.rmdir()


def test_disk_full_mid_run_keeps_finished_cases(tiny_tmpfs: Path, tmp_path: Path) -> None:
    protocol = Protocol(warmup=0, min_reps=1, max_reps=1, max_case_time=10**10, target_ci=100.0)
    entries = [PlanEntry(Small, {"chunk": 4096}, protocol), PlanEntry(Filler, {"chunk": 65536}, protocol)]
    out = tmp_path / "out"
    with pytest.raises(InsufficientSpaceError, match="disk full during chunk=65536"):
        lookup = {Small.name: Small, Filler.name: Filler}.__getitem__
        execute(RunRequest(entries, lookup, tiny_tmpfs, out, command=["test"]))
    (run,) = list(out.iterdir())
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "failed"
    assert [c["status"] for c in meta["cases"]] == ["ok", "failed"]
    frame = pd.read_csv(run / "results.csv")
    assert frame["status"].tolist() == ["ok", "failed"]
    assert "ENOSPC" in frame["status_reason"].iloc[1]
    assert list(tiny_tmpfs.iterdir()) == []  # scratch removed, the disk is empty again
    assert shutil.disk_usage(tiny_tmpfs).free > 900 << 10


def test_space_is_checked_before_writing(tiny_tmpfs: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "rw-buffer",
            "--mode",
            "copy",
            "--file-size",
            "768KiB",
            "--bs",
            "65536",
            "--dir",
            str(tiny_tmpfs),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith(
        "Error: rw-buffer mode=copy file_size=768KiB bs=64KiB cache=warm needs 1.5 MiB"
    )
    assert f"--dir {tiny_tmpfs} has " in result.stderr and result.stderr.count("\n") == 1
    assert list(tiny_tmpfs.iterdir()) == []
    assert not (tmp_path / "out").exists()  # refused before any run folder was made


# --- time budget and resume --------------------------------------------------------------


def test_time_budget_stops_at_a_case_boundary_then_resume_finishes(tmp_path: Path) -> None:
    config = tmp_path / "two.toml"
    config.write_text(TWO_CASES)
    out = tmp_path / "out"
    runner = CliRunner()
    stopped = runner.invoke(
        cli,
        ["run", "sweep", str(config), "--dir", str(tmp_path), "--out", str(out), "-q", "--max-time", "1ns"],
    )
    assert stopped.exit_code == 0, stopped.output
    (run,) = list(out.iterdir())
    assert (
        "stopped: time budget reached after 1 of 2 cases; continue with: iobench run sweep --resume"
        in stopped.stderr
    )
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "stopped" and len(meta["cases"]) == 1
    first = pd.read_csv(run / "results.csv")

    resumed = runner.invoke(
        cli, ["run", "sweep", "--resume", run.name, "--dir", str(tmp_path), "--out", str(out), "-q"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert list(out.iterdir()) == [run]  # the same run folder, continued
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "complete" and len(meta["resumed"]) == 1
    frame = pd.read_csv(run / "results.csv")
    assert sorted(frame["file_size"]) == [65536, 131072]
    # The finished case was not redone: its row is exactly what the first run wrote.
    pd.testing.assert_frame_equal(frame.iloc[:1].reset_index(drop=True), first, check_dtype=False)


def test_resume_refuses_a_config_and_a_missing_run(tmp_path: Path) -> None:
    runner = CliRunner()
    both = runner.invoke(cli, ["run", "sweep", "quick", "--resume", "x"])
    assert both.exit_code == ExitCode.USAGE and "give no CONFIG or --only" in both.stderr
    missing = runner.invoke(cli, ["run", "sweep", "--resume", str(tmp_path / "nope")])
    assert missing.exit_code == ExitCode.USAGE
    assert missing.stderr == f"Error: {tmp_path / 'nope'} is not a run folder\n"


def test_interrupted_sweep_resumes_in_a_real_process(tmp_path: Path) -> None:
    from tests.test_subprocess import SLOW_SWEEP, interrupt_after_first_case

    config = tmp_path / "slow.toml"
    config.write_text(SLOW_SWEEP.replace('"2MiB"', '"512KiB"'))
    out = tmp_path / "out"
    code, stderr = interrupt_after_first_case(config, tmp_path, out)
    assert code == ExitCode.INTERRUPTED and "continue with: iobench run sweep --resume" in stderr
    (run,) = list(out.iterdir())
    before = pd.read_csv(run / "results.csv")
    done = subprocess.run(
        [*IOBENCH, "run", "sweep", "--resume", str(run), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(run / "results.csv")
    assert sorted(set(frame["file_size"])) == [4096, 524288]
    pd.testing.assert_frame_equal(frame.iloc[: len(before)].reset_index(drop=True), before, check_dtype=False)
    assert json.loads((run / "meta.json").read_text())["status"] == "complete"


# --- two runs at once --------------------------------------------------------------------


def test_two_runs_at_once_never_clobber(tmp_path: Path) -> None:
    config = tmp_path / "two.toml"
    config.write_text(TWO_CASES)
    out = tmp_path / "out"
    command = [*IOBENCH, "run", "sweep", str(config), "--dir", str(tmp_path), "--out", str(out), "-q"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for process in processes:
        process.communicate(timeout=120)
        assert process.returncode == 0
    runs = list(out.iterdir())
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "meta.json").read_text())["status"] == "complete"
        assert len(pd.read_csv(run / "results.csv")) == 2


# --- hostile input -----------------------------------------------------------------------


def test_damaged_results_and_bad_out_are_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    run = tmp_path / "results" / "20260101-000000-abcd"
    run.mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"schema_version": 1, "run_id": run.name}))
    (run / "results.csv").write_text("garbage\n\x00\x01")
    result = runner.invoke(cli, ["report", "--results", str(tmp_path / "results")])
    assert (
        result.exit_code == ExitCode.USAGE
        and result.stderr.startswith("Error: ")
        and "lacks column" in result.stderr
    )
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = runner.invoke(
        cli, ["run", "rw-buffer", "--bs", "4096", "--dir", str(tmp_path), "--out", str(a_file)]
    )
    assert result.exit_code == ExitCode.USAGE
    assert (
        result.stderr.startswith(f"Error: cannot create results folder {a_file}")
        and result.stderr.count("\n") == 1
    )


_NAMES = [e.name for e in all_experiments()] + ["nope", ""]
_KEYS = [*sorted({p.name for e in all_experiments() for p in e.params}), "name", "protocol", "x"]
_SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["4KiB", "1M", "0", "-1", "4Q", "read", "cold", "1e9", "5%", "10s", "1,2,3"]),
)
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=4))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(_NAMES),
    fields=st.dictionaries(st.sampled_from(_KEYS[:-3]), _VALUES, max_size=4),
    protocol=st.dictionaries(
        st.sampled_from(["warmup", "min_reps", "max_reps", "max_case_time", "target_ci", "x"]),
        _SCALARS,
        max_size=3,
    ),
)
def test_config_loading_never_tracebacks(tmp_path: Path, name: str, fields: dict, protocol: dict) -> None:
    lines = [
        "[protocol]",
        *(f"{k} = {_toml_value(v)}" for k, v in protocol.items()),
        "[[experiment]]",
        f"name = {json.dumps(name)}",
        *(f"{k} = {_toml_value(v)}" for k, v in fields.items()),
    ]
    path = tmp_path / "fuzz.toml"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        plan = load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc).strip() or "invalid TOML" in str(exc)
        return
    for entry in plan.entries:  # whatever loaded is valid and expands into cases
        assert entry.cases()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_config_give_config_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "junk.toml"
    path.write_bytes(data)
    with contextlib.suppress(ConfigError):
        load_config(path)


def test_errno_names_are_known() -> None:
    assert errno.errorcode[errno.ENOSPC] == "ENOSPC"
