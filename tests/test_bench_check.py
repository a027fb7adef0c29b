"""`make bench-check`: compare's 0/1/2 survive the recipe, and its messages reach the user.

The recipe's measuring runs (`iobench run sweep ci`, ~15 s each) are replaced by a copy of a
prepared run folder: what is tested here is the Makefile's plumbing around the real
`iobench compare` (status, stdout/stderr, the hint to record a baseline on this machine).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_compare import MACHINE, samples, write_run

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def fake_bin(tmp_path: Path, new_run: Path, run_status: int = 0) -> Path:
    """A BIN folder whose `iobench run` copies ``new_run`` into --out; other commands are real."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "iobench"
    script.write_text(
        f"""#!/bin/sh
if [ "$1" = run ]; then
  while [ $# -gt 0 ]; do [ "$1" = --out ] && out="$2"; shift; done
  [ {run_status} = 0 ] || {{ echo "Error: simulated failure" >&2; exit {run_status}; }}
  mkdir -p "$out" && cp -r "{new_run}" "$out/$(basename "{new_run}")-$(ls "$out" | wc -l)"
  exit 0
fi
exec "{sys.executable}" -m iobench "$@"
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def bench_check(
    tmp_path: Path, bin_dir: Path, baseline: Path
) -> tuple[subprocess.CompletedProcess[str], str]:
    status_file = tmp_path / "status"
    done = subprocess.run(
        [
            "make",
            "-s",
            "-o",
            "install",  # the venv is already installed; do not rebuild it
            "bench-check",
            f"BIN={bin_dir}",
            f"BASELINE={baseline}",
            "NEW_RUNS=2",
            f"NEW_OUT={tmp_path / 'new'}",
            f"BENCH_STATUS={status_file}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=outside_make(),
    )
    return done, status_file.read_text().strip() if status_file.exists() else ""


def outside_make() -> dict[str, str]:
    """The environment without make's own variables: under `make test` the
    inner make would otherwise run as a sub-make (`make[1]: ...`) with the
    outer one's flags."""
    env = {key: value for key, value in os.environ.items() if key not in {"MAKELEVEL", "MAKEFLAGS", "MFLAGS"}}
    return {**env, "PYTHONPATH": str(REPO)}


def runs(tmp_path: Path, factor: float, new_meta: dict | None = None) -> tuple[Path, Path]:
    rng = np.random.default_rng(17)
    for drift in (1.0, 1.005, 0.995):
        write_run(tmp_path / "baseline", {"call=a": samples(rng, 1e6 * drift, 0.01, 10)})
    new = write_run(tmp_path / "made", {"call=a": samples(rng, 1e6 * factor, 0.01, 10)}, new_meta)
    return tmp_path / "baseline", new


def test_a_regression_is_status_1_and_the_markdown_is_on_stdout(tmp_path: Path) -> None:
    baseline, new = runs(tmp_path, 1.3)
    done, status = bench_check(tmp_path, fake_bin(tmp_path, new), baseline)
    assert status == "1"
    assert done.stdout.startswith("### iobench compare: 1 slower, 0 missing")
    assert re.search(r"^make(\[\d+\])?: \*\*\* \[Makefile:\d+: bench-check\] Error 1$", done.stderr, re.M), (
        done.stderr
    )
    assert len(list((tmp_path / "new").iterdir())) == 2  # NEW_RUNS runs, compared as one side


def test_no_regression_is_status_0(tmp_path: Path) -> None:
    baseline, new = runs(tmp_path, 1.0)
    done, status = bench_check(tmp_path, fake_bin(tmp_path, new), baseline)
    assert (done.returncode, status) == (0, "0"), done.stderr
    assert "- **Gate**: passes" in done.stdout


def test_a_baseline_from_another_machine_says_to_record_one_here(tmp_path: Path) -> None:
    baseline, new = runs(tmp_path, 1.0, {"host": {**MACHINE["host"], "kernel": "7"}})
    done, status = bench_check(tmp_path, fake_bin(tmp_path, new), baseline)
    assert status == "2" and done.stdout == ""
    assert "Error: the runs come from different machines (kernel 6 (base) vs 7 (new))" in done.stderr
    assert (
        f"bench-check: the baseline in {baseline} was recorded on another machine: "
        "run `make baseline` on this machine first" in done.stderr
    )


def test_a_failed_run_or_no_baseline_is_status_2(tmp_path: Path) -> None:
    baseline, new = runs(tmp_path, 1.3)
    done, status = bench_check(tmp_path, fake_bin(tmp_path, new, run_status=1), baseline)
    assert status == "2" and "bench-check: run 1 of 2 of ci.toml failed (exit 1)" in done.stderr
    done, status = bench_check(tmp_path, tmp_path / "bin", tmp_path / "nowhere")
    assert status == "2"
    assert (
        f"bench-check: no baseline in {tmp_path / 'nowhere'}: run `make baseline` on this machine first"
        in done.stderr
    )
