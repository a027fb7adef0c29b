"""iobench as a user runs it: a real process, real signals, and without root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from iobench.errors import ExitCode
from tests.helpers import IOBENCH, ONE_REP

SWEEP = """
[protocol]
warmup = 0
min_reps = 1
max_reps = 2

[[experiment]]
name = "rw-buffer"
mode = ["read", "copy"]
file_size = "64KiB"
bs = [512, 65536]
cache = ["warm", "cold"]
"""

SLOW_SWEEP = """
[protocol]
warmup = 0
min_reps = 3
max_reps = 3

[[experiment]]
name = "rw-buffer"
mode = "copy"
file_size = ["4KiB", "2MiB"]
bs = 1
cache = "warm"
"""


def test_sweep_in_a_real_process(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(SWEEP)
    out = tmp_path / "out"
    done = subprocess.run(
        [*IOBENCH, "run", "sweep", str(config), "--dir", str(tmp_path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "[8/8] rw-buffer mode=copy" in done.stderr  # one progress line per case when not a terminal
    assert "results: " in done.stdout
    (run,) = list(out.iterdir())
    frame = pd.read_csv(run / "results.csv")
    assert frame.groupby("case").size().min() >= 1 and frame["case"].nunique() == 8
    reads = frame[(frame["mode"] == "read") & (frame["bs"] == 512)]["syscalls_read"]
    assert (reads == 129).all()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["config"]["file"] == str(config)


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "iobench", "run", "rw-buffer", "--bs", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == ExitCode.USAGE
    assert done.stderr == "Error: --bs: 0B is below the minimum 1B\n"


def interrupt_after_first_case(
    config: Path, folder: Path, out: Path, signum: int = signal.SIGINT
) -> tuple[int, str]:
    """Start a sweep, signal it once its first case is on disk; (exit status, stderr)."""
    process = subprocess.Popen(
        [*IOBENCH, "run", "sweep", str(config), "--dir", str(folder), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("*/results.csv")):  # the first (tiny) case is on disk
            assert time.monotonic() < deadline, "first case never finished"
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        time.sleep(0.3)  # inside the second case
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupt_keeps_finished_cases(tmp_path: Path, signum: int) -> None:
    config = tmp_path / "slow.toml"
    config.write_text(SLOW_SWEEP)
    out = tmp_path / "out"
    code, stderr = interrupt_after_first_case(config, tmp_path, out, signum)
    assert code == ExitCode.INTERRUPTED, stderr
    assert "interrupted; 1 of 2 finished cases kept" in stderr
    assert "Traceback" not in stderr
    (run,) = list(out.iterdir())
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    frame = pd.read_csv(run / "results.csv")
    assert set(frame["file_size"]) == {4096} and len(frame) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("iobench-")]  # scratch removed


def _as_nobody(args: list[str], dumpable: bool = True) -> tuple[int, str]:
    """Run the CLI in a forked child that dropped root for nobody; returns (exit code, stderr).

    Changing user ids makes the kernel mark a process non-dumpable, which hides its own
    /proc/self/io from it. A user who logged in normally is dumpable: ``dumpable`` restores it.
    """
    import ctypes

    from click.testing import CliRunner

    import iobench.report.tables  # noqa: F401
    from iobench.cli import cli
    from iobench.experiments import all_experiments
    from iobench.stats import ci_halfwidth_pct

    # This interpreter may live under a root-only folder (/root/.pyenv here): load every
    # module the run needs before giving up root, as an installed copy would not need.
    all_experiments()
    ci_halfwidth_pct([1.0, 2.0])
    import rich.console
    import rich.table  # noqa: F401

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            if dumpable:
                ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
            result = CliRunner().invoke(cli, args)
            unexpected = "" if isinstance(result.exception, SystemExit | None) else repr(result.exception)
            os.write(write_end, json.dumps([result.exit_code, result.stderr + unexpected]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    code, stderr = json.loads(data)
    return code, stderr


def _tiny_read(folder: Path, cache: str) -> list[str]:
    """One 64 KiB read case at bs=4096, one repetition, results under ``folder/out``."""
    return [
        "run",
        "rw-buffer",
        "--dir",
        str(folder),
        "--out",
        str(folder / "out"),
        "--mode",
        "read",
        "--bs",
        "4096",
        "--file-size",
        "64KiB",
        "--cache",
        cache,
        *ONE_REP,
        "-q",
    ]


@pytest.fixture
def shared_tmp() -> Path:
    """A folder an unprivileged user can enter (pytest's tmp_path is root-only)."""
    with tempfile.TemporaryDirectory(prefix="iobench-unpriv-") as folder:
        os.chmod(folder, 0o755)
        yield Path(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_unprivileged_user_read_only_dir_and_normal_run(shared_tmp: Path) -> None:
    read_only = shared_tmp / "ro"
    read_only.mkdir(mode=0o555)
    read_only.chmod(0o555)
    writable = shared_tmp / "rw"
    writable.mkdir()
    writable.chmod(0o777)
    # Root may write into a 0555 folder; nobody may not, and must get one clear line.
    code, stderr = _as_nobody(
        ["run", "rw-buffer", "--dir", str(read_only), "--out", str(writable / "out"), "--bs", "4096"]
    )
    assert code == ExitCode.USAGE, stderr
    assert stderr == f"Error: cannot create a scratch folder in {read_only}: Permission denied\n"
    # A normal run as nobody: counters, cold cache and results all work without privileges.
    code, stderr = _as_nobody(_tiny_read(writable, "cold"))
    assert code == 0, stderr
    (run,) = list((writable / "out").iterdir())
    frame = pd.read_csv(run / "results.csv")
    assert frame["syscalls_read"].tolist() == [17]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["host"]["euid"] == 65534 and meta["host"]["is_root"] is False
    assert meta["counter_source"] == "/proc/thread-self/io"


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_unreadable_counters_give_empty_columns_not_zeros(shared_tmp: Path) -> None:
    shared_tmp.chmod(0o777)
    code, stderr = _as_nobody(_tiny_read(shared_tmp, "warm"), dumpable=False)
    assert code == 0, stderr
    assert "warning: IO counters cannot be read (/proc/thread-self/io: Permission denied" in stderr
    (run,) = list((shared_tmp / "out").iterdir())
    frame = pd.read_csv(run / "results.csv")
    assert frame["syscalls_read"].isna().all() and frame["disk_read_bytes"].isna().all()
    assert frame["elapsed_ns"].notna().all() and (frame["ops"] == 17).all()


def _pinned_run(tmp_path: Path, *experiment_args: str) -> tuple[dict, str]:
    cpu = max(os.sched_getaffinity(0))
    tmp_path.mkdir()
    done = subprocess.run(
        [
            *IOBENCH,
            "run",
            *experiment_args,
            *ONE_REP,
            "--cpu",
            str(cpu),
            *("--out", str(tmp_path), "--dir", str(tmp_path), "-q"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (run,) = [p for p in tmp_path.iterdir() if (p / "meta.json").exists()]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["cpu_pinned"] == cpu
    return meta, done.stderr


def test_pinning_says_that_peers_share_the_cpu(tmp_path: Path) -> None:
    """--cpu is inherited by forked peers and threads: a run with such an experiment must say
    so, one without must not (real processes, so the test runner itself stays unpinned)."""
    meta, stderr = _pinned_run(
        tmp_path / "a", "context-switch", "--mode", "thread-queue", "--round-trips", "50"
    )
    assert any("forked peers and threads" in w for w in meta["warnings"])
    assert "forked peers and threads" in stderr  # warnings are printed too
    meta, stderr = _pinned_run(tmp_path / "b", "syscall", "--call", "getppid", "--calls", "1000")
    assert not any("forked peers" in w for w in meta["warnings"]) and "forked peers" not in stderr
