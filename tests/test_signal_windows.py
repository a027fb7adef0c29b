"""A signal at every phase of a run ends it with one line and a state the next command
repairs: before the first case, while the CLI renders an event (between two of the run's
events), while results.parquet is written after the run ended, and while the tables print.

Each test sends the signal to this process from a hook at that phase, so the moment is
exact (torture.py hits the same windows at random moments in real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from iobench import cli as cli_module
from iobench import render, session
from iobench.cli import cli
from iobench.engine.events import CaseFinished
from iobench.errors import ExitCode
from iobench.results import load_run

SWEEP = """
[protocol]
warmup = 0
min_reps = 3
max_reps = 3

[[experiment]]
name = "syscall"
call = "getppid"
calls = [1, 2, 3]
"""

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


def _run(tmp_path: Path, *extra: str) -> Any:
    config = tmp_path / "sweep.toml"
    config.write_text(SWEEP)
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    args = ["run", "sweep", str(config), "--dir", str(scratch), "--out", str(tmp_path / "out"), *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _scratch_left(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "scratch").iterdir() if p.name.startswith("iobench-")]


def _handlers() -> dict[int, Any]:
    return {signum: signal.getsignal(signum) for signum in SIGNALS}


@pytest.fixture(autouse=True)
def handlers_restored() -> Any:
    """Whatever a run installs, the process's own handlers come back afterwards."""
    before = _handlers()
    yield
    assert _handlers() == before


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_before_the_first_case_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    real = session.hostinfo.target_facts

    def facts(*args: Any) -> Any:
        os.kill(os.getpid(), signum)
        return real(*args)

    monkeypatch.setattr(session.hostinfo, "target_facts", facts)
    result = _run(tmp_path)
    assert result.exit_code == ExitCode.INTERRUPTED, result.output
    assert result.stderr.strip() == "Error: interrupted before the first case; nothing was measured"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert not _scratch_left(tmp_path)


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_while_the_cli_renders_an_event_keeps_the_finished_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    def renderer(event: Any) -> None:
        if isinstance(event, CaseFinished):
            os.kill(os.getpid(), signum)  # lands in the CLI's frame, the run suspended at a yield

    monkeypatch.setattr(render, "make_renderer", lambda quiet=False: renderer)
    result = _run(tmp_path)
    assert result.exit_code == ExitCode.INTERRUPTED, result.output
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("Error: interrupted; 1 of 3 finished cases kept in ")
    assert "continue with: iobench run sweep --resume" in line
    (run,) = list((tmp_path / "out").iterdir())
    assert load_run(run).meta["status"] == "interrupted" and len(load_run(run).meta["cases"]) == 1
    assert not _scratch_left(tmp_path)
    monkeypatch.undo()
    resumed = CliRunner().invoke(cli, ["run", "sweep", "--resume", str(run), "-q", "--dir", str(tmp_path)])
    assert resumed.exit_code == 0, resumed.output
    final = load_run(run)
    assert final.meta["status"] == "complete" and len(final.meta["cases"]) == 3
    assert final.frame.groupby("case").size().tolist() == [3, 3, 3]


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_after_the_run_ended_says_every_case_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    def parquet(sink: Any, experiments: Any) -> None:
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(session, "_write_parquet", parquet)
    result = _run(tmp_path, "-q")
    assert result.exit_code == ExitCode.INTERRUPTED, result.output
    assert result.stderr.strip().startswith("Error: interrupted after the run ended (complete): its 3 cases")
    (run,) = list((tmp_path / "out").iterdir())
    loaded = load_run(run)
    assert loaded.meta["status"] == "complete" and len(loaded.meta["cases"]) == 3
    assert not _scratch_left(tmp_path)


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_while_the_tables_print_still_names_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    def tables(run: Any, err: bool = False) -> None:
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(cli_module, "_print_tables", tables)
    result = _run(tmp_path, "-q")
    (run,) = list((tmp_path / "out").iterdir())
    assert result.exit_code == 0, result.output  # the run is complete on disk
    assert f"results: {run}" in result.output
    assert load_run(run).meta["status"] == "complete"


def test_the_console_script_ignores_termination_once_the_command_is_done() -> None:
    """A SIGINT, SIGTERM or SIGHUP during interpreter shutdown, after results were written and
    the exit status chosen, would turn a finished command into a silent kill: torture.py met
    SIGTERM once in 18 trials; SIGINT at 60 moments spread over the last 250 ms of a 0.8 s
    `iobench run syscall` gave exit -2 (no message) 27 times, as the interpreter tears down."""
    code = (
        "import signal, sys\n"
        "from iobench.cli import main\n"
        "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "try:\n    main(['--version'])\nexcept SystemExit as exc:\n    status = exc.code\n"
        "print(status, *(signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "0 True True True", done.stderr
