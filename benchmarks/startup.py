"""Start-up time and memory of the command line, measured as whole processes.

    python benchmarks/startup.py [--runs N] [--dir D]

Times `iobench --help` and `iobench list` (median of N runs, interleaved with `fio --version`
when fio is installed, as a yardstick), and the peak RSS of a run that copies 1 GiB
(`run rw-buffer --mode copy --file-size 1GiB --bs 1MiB`, one repetition): as a default install
runs it (IOBENCH_PARQUET=0: no results.parquet, as without the iobench[parquet] extra) and with
results.parquet written (pyarrow, which loads pandas, after the measuring). Targets: --help and
list within 0.25 s, the default run within 120 MB; exit 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IOBENCH = str(Path(sys.executable).with_name("iobench"))
TARGET_START_S = 0.25
TARGET_RSS_MB = 120


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def peak_rss_mb(command: list[str], env: dict[str, str] | None = None) -> float:
    """Peak RSS of the child, from wait4's rusage (ru_maxrss is in KiB on Linux)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    return usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--dir", type=Path, default=Path("."), help="scratch for the 1 GiB copy (needs 2 GiB free)"
    )
    options = parser.parse_args()
    commands = {
        "iobench --help": [IOBENCH, "--help"],
        "iobench list": [IOBENCH, "list"],
        "iobench run --help": [IOBENCH, "run", "rw-buffer", "--help"],
    }
    fio = shutil.which("fio")
    if fio:
        commands["fio --version"] = [fio, "--version"]
    # Byte-compile the package first, as pip does when it installs a wheel: an editable install
    # leaves that to the first import, which never happens under PYTHONDONTWRITEBYTECODE=1
    # (set on some machines and CI images), and compiling iobench's modules at every start
    # took ~0.1 s of `iobench list` here.
    package = Path(__file__).resolve().parents[1] / "iobench"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    for command in commands.values():  # warm the page cache
        wall(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(options.runs):  # interleaved: drift hits every command alike
        for name, command in commands.items():
            times[name].append(wall(command))
    with tempfile.TemporaryDirectory(dir=options.dir) as scratch:
        run = [IOBENCH, "run", "rw-buffer", "--mode", "copy", "--file-size", "1GiB", "--bs", "1MiB",
               "--cache", "warm", "--warmup", "0", "--min-reps", "1", "--max-reps", "1", "-q",
               "--dir", scratch, "--out", str(Path(scratch) / "out")]  # fmt: skip
        plain = {**os.environ, "IOBENCH_PARQUET": "0"}
        rss = [peak_rss_mb(run, plain) for _ in range(3)]
        rss_parquet = [peak_rss_mb(run) for _ in range(3)]
        measuring = [
            json.loads(meta.read_text()).get("peak_rss_measuring_bytes", 0) / 2**20
            for meta in (Path(scratch) / "out").glob("*/meta.json")
        ]
    print("| command | median wall (s) | min | max | target |\n|---|---:|---:|---:|---|")
    failed = False
    for name, values in times.items():
        target = "" if name.startswith("fio") else f"<= {TARGET_START_S} s"
        missed = (
            not name.startswith("fio") and statistics.median(values) > TARGET_START_S and "run" not in name
        )
        failed |= missed
        print(
            f"| `{name}` | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} | {target}{' MISSED' if missed else ''} |"
        )
    peak = statistics.median(rss)
    failed |= peak > TARGET_RSS_MB
    print(
        f"\npeak RSS of a 1 GiB copy run (median of 3): {peak:.0f} MB (runs: {', '.join(f'{r:.0f}' for r in rss)}); "
        f"target <= {TARGET_RSS_MB} MB{' MISSED' if peak > TARGET_RSS_MB else ''}"
    )
    print(
        f"with results.parquet (pyarrow, loaded after the measuring): {statistics.median(rss_parquet):.0f} MB; "
        f"peak while measuring (meta's peak_rss_measuring_bytes): {statistics.median(measuring):.0f} MB"
    )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"(this script's own peak: {own:.0f} MB; {options.runs} interleaved runs per command; "
        f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')}, package byte-compiled first)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
