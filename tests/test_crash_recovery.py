"""What the next command finds after a run was killed, failed or interrupted, through the CLI
and real processes: nothing finished is lost, leftovers are found and removed, statuses say
what happened, and exit codes tell CI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from iobench.cli import cli
from iobench.errors import ExitCode
from iobench.results import load_run
from tests.helpers import IOBENCH

SLOW_SWEEP = """
[protocol]
warmup = 0
min_reps = 60
max_reps = 60
max_case_time = "60s"

[[experiment]]
name = "rw-buffer"
mode = "copy"
file_size = "1MiB"
bs = [4096, 8192, 16384, 32768, 65536]
cache = "warm"
"""

FAILING = """
import os, sys
from iobench.experiments import register
from iobench.experiments.base import Experiment
from iobench.params import Kind, Param

@register
class Broken(Experiment):
    name = "test-broken"
    summary = "fails with EIO when n is 2"
    seed_idea = "test"
    params = (Param("n", Kind.INT, (1, 2, 3), "which", sweep=True),)

    def run_once(self):
        if self.case["n"] == 2:
            raise OSError(5, "Input/output error")
        return {"bytes": 1, "ops": 1}

from iobench.cli import main
main(sys.argv[1:])
"""


def _wait_for(path: Path, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(path):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting on {path}")


def _one_case_done(out: Path) -> bool:
    runs = list(out.glob("*/cases.jsonl")) if out.exists() else []
    return bool(runs) and runs[0].read_text().count("\n") >= 1


def test_sigkill_leaves_scratch_that_the_next_commands_find_and_remove(tmp_path: Path) -> None:
    config = tmp_path / "slow.toml"
    config.write_text(SLOW_SWEEP)
    out, scratch_dir = tmp_path / "out", tmp_path / "scratch"
    scratch_dir.mkdir()
    child = subprocess.Popen(
        [*IOBENCH, "run", "sweep", str(config), "--dir", str(scratch_dir), "--out", str(out), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(out, _one_case_done)
    finally:
        child.kill()
        child.wait(timeout=30)
    (run,) = list(out.iterdir())
    assert json.loads((run / "meta.json").read_text())["status"] == "running"
    leftover = [p for p in scratch_dir.iterdir() if p.name.startswith("iobench-")]
    assert len(leftover) == 1
    # sysinfo sees the leftover and its size; clean removes it and marks the run crashed.
    info = subprocess.run(
        [*IOBENCH, "sysinfo", "--dir", str(scratch_dir), "--json"], capture_output=True, text=True
    )
    leftovers = json.loads(info.stdout)["leftovers"]
    assert [Path(x["path"]) for x in leftovers] == leftover and leftovers[0]["size_bytes"] > 0
    assert leftovers[0]["run"] == str(run)
    cleaned = subprocess.run(
        [*IOBENCH, "clean", "--dir", str(scratch_dir), "--out", str(out)], capture_output=True, text=True
    )
    assert cleaned.returncode == 0 and f"removed {leftover[0]}" in cleaned.stdout
    assert f"marked {run} crashed" in cleaned.stdout
    assert list(scratch_dir.iterdir()) == []
    finished_before = len(load_run(run).meta["cases"])
    assert finished_before >= 1 and load_run(run).meta["status"] == "crashed"
    # Resume completes it, keeping what was finished (60 reps each: no case counted twice).
    config.write_text(SLOW_SWEEP.replace("min_reps = 60\nmax_reps = 60", "min_reps = 1\nmax_reps = 1"))
    resumed = subprocess.run(
        [*IOBENCH, "run", "sweep", "--resume", str(run), "--dir", str(scratch_dir), "-q"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    final = load_run(run)
    assert final.meta["status"] == "complete" and len(final.meta["cases"]) == 5
    assert final.frame.groupby("case").size().max() == 60  # every case ran under the run's own protocol


def test_sigint_mid_case_keeps_finished_cases_and_exits_130(tmp_path: Path) -> None:
    config = tmp_path / "slow.toml"
    config.write_text(SLOW_SWEEP)
    out = tmp_path / "out"
    child = subprocess.Popen(
        [*IOBENCH, "run", "sweep", str(config), "--dir", str(tmp_path), "--out", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(out, _one_case_done)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == ExitCode.INTERRUPTED
    assert stderr.startswith("Error: interrupted; ") and "continue with: iobench run sweep --resume" in stderr
    (run,) = list(out.iterdir())
    loaded = load_run(run)
    assert loaded.meta["status"] == "interrupted"
    assert len(loaded.frame["case"].unique()) == len(loaded.meta["cases"]) >= 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("iobench-")]


def test_two_resumes_of_one_run_never_both_run(tmp_path: Path) -> None:
    config = tmp_path / "slow.toml"
    config.write_text(SLOW_SWEEP)
    out = tmp_path / "out"
    first = subprocess.run(
        [
            *IOBENCH,
            "run",
            "sweep",
            str(config),
            "--dir",
            str(tmp_path),
            "--out",
            str(out),
            "-q",
            "--max-time",
            "1ns",
        ],
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0, first.stderr
    (run,) = list(out.iterdir())
    resume = [*IOBENCH, "run", "sweep", "--resume", str(run), "--dir", str(tmp_path), "-q"]
    one = subprocess.Popen(resume, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(run, lambda p: json.loads((p / "meta.json").read_text()).get("status") == "running")
    two = subprocess.run(resume, capture_output=True, text=True)
    one.send_signal(signal.SIGINT)
    one.communicate(timeout=60)
    assert two.returncode == ExitCode.USAGE
    assert two.stderr.startswith(f"Error: {run} is being written by another iobench (pid {one.pid} ")
    assert two.stderr.count("\n") == 1


def test_a_failed_case_does_not_stop_the_run_and_exits_3(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FAILING, "run", "test-broken", "--dir", str(tmp_path), "--out", str(tmp_path / "o"),
         "-q", "--warmup", "0", "--min-reps", "1", "--max-reps", "1"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == ExitCode.CASES_FAILED, done.stderr
    assert "1 case(s) failed" in done.stderr and "exit status 3" in done.stderr
    (run,) = list((tmp_path / "o").iterdir())
    statuses = [c["status"] for c in load_run(run).meta["cases"]]
    assert statuses == ["ok", "failed", "ok"]


def test_json_on_stdout_and_everything_else_on_stderr(tmp_path: Path) -> None:
    done = subprocess.run(
        [*IOBENCH, "run", "syscall", "--call", "getppid", "--calls", "1000", "--dir", str(tmp_path),
         "--out", str(tmp_path / "o"), "--warmup", "0", "--min-reps", "2", "--max-reps", "2", "--json", "--rows"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # nothing but JSON on stdout
    assert data["status"] == "complete" and len(data["cases"]) == 1 and len(data["rows"]) == 2
    case = data["cases"][0]
    assert case["call"] == "getppid" and case["reps"] == 2 and case["ops"] == 1000
    assert "samples" not in case and case["user_ns"] is None  # NaN -> null, not NaN
    assert "results: " in done.stderr and "syscall: " in done.stderr


def test_ctrl_c_while_the_tables_print_still_says_where_the_results_are(tmp_path: Path, monkeypatch) -> None:
    import iobench.cli as cli_module

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_print_tables", interrupted)
    result = CliRunner().invoke(
        cli,
        ["run", "syscall", "--call", "getppid", "--calls", "100", "--dir", str(tmp_path), "--out",
         str(tmp_path / "o"), "-q", "--warmup", "0", "--min-reps", "1", "--max-reps", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = list((tmp_path / "o").iterdir())
    assert f"results: {run}" in result.stdout


def test_no_arguments_prints_usage_without_an_error_prefix() -> None:
    for args in ([], ["run"]):
        done = subprocess.run([*IOBENCH, *args], capture_output=True, text=True)
        assert done.returncode == ExitCode.USAGE
        text = done.stdout + done.stderr
        assert text.startswith("Usage: iobench") and "Error" not in text, args


def test_scratch_of_a_live_run_is_never_called_a_leftover(tmp_path: Path) -> None:
    from iobench import scratch

    with scratch.private_scratch(tmp_path) as folder:
        assert folder.is_dir() and scratch.leftovers(tmp_path) == []
        os.makedirs(tmp_path / "iobench-old")  # an older version's leftover: no lock inside
        assert [x.path.name for x in scratch.leftovers(tmp_path)] == ["iobench-old"]
    assert not folder.exists()


FIRST_CASE_SLOW = """
[protocol]
warmup = 0
min_reps = 3
max_reps = 3

[[experiment]]
name = "syscall"
call = "getppid"
calls = [3000000, 1]
"""


def _run_folder_made(out: Path) -> bool:
    return bool(list(out.glob("*/meta.json"))) if out.exists() else False


def test_a_run_killed_before_its_first_case_is_recorded_leads_the_resume_to_its_scratch(
    tmp_path: Path,
) -> None:
    """torture.py found one scratch folder left after SIGKILL + resume: the run folder named
    its scratch only from the first recorded case on."""
    config = tmp_path / "slow.toml"
    config.write_text(FIRST_CASE_SLOW)
    out, scratch_dir = tmp_path / "out", tmp_path / "scratch"
    scratch_dir.mkdir()
    command = [*IOBENCH, "run", "sweep", str(config), "--dir", str(scratch_dir), "--out", str(out), "-q"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(out, _run_folder_made)
    finally:
        child.kill()
        child.wait(timeout=30)
    (run,) = list(out.iterdir())
    (leftover,) = [p for p in scratch_dir.iterdir() if p.name.startswith("iobench-")]
    assert (run / "cases.jsonl").read_text() == ""  # killed inside the first case
    assert json.loads((run / "meta.json").read_text())["scratch"] == str(leftover)
    resumed = subprocess.run(
        [*IOBENCH, "run", "sweep", "--resume", str(run), "--dir", str(scratch_dir), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not leftover.exists() and list(scratch_dir.iterdir()) == []
    assert load_run(run).meta["status"] == "complete"
