"""``make bench-fidelity``: is iobench as exact as a C loop?

For each buffer size from 1 B to 1 MiB, warm sequential read and write of one file size:
the same work measured by a plain C loop (cloop.c, built here with gcc -O2), by iobench's
rw-buffer experiment with each engine, and by ``fio --ioengine=psync`` when fio is
installed. Prints throughput per tool and each tool's ratio to the C loop; the target is
native >= 0.95 at every size (exit status 1 if missed).

Interleaved rounds (C, native, python, fio, then again) so that a machine drifting during
the run moves every tool alike; each tool's figure is the median over all its repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from iobench.engine.protocol import Protocol
from iobench.engine.runner import run_case
from iobench.experiments import get_experiment
from iobench.loops.engines import native_available
from iobench.units import format_rate, format_size, parse_size

HERE = Path(__file__).resolve().parent
TARGET = 0.95
MAX_FILE = 32 << 20
CALLS = 1 << 19  # calls per repetition at small sizes: ~0.1 s in C at 1 B, ~0.3 s in Python


def file_size(block: int) -> int:
    """Bytes per repetition: enough calls to time well, capped so large sizes stay quick."""
    return min(MAX_FILE, block * CALLS)


def build_cloop(workdir: Path) -> Path:
    binary = workdir / "cloop"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "cloop.c")], check=True)
    return binary


def c_loop(binary: Path, mode: str, path: Path, block: int, size: int, reps: int) -> list[int]:
    """Elapsed ns per repetition of the C loop."""
    args = [str(binary), mode, str(path), str(block)] + ([str(size)] if mode == "write" else []) + [str(reps)]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=600).stdout
    lines = [line.split() for line in out.splitlines()]
    if any(int(moved) != size for _, moved in lines):
        raise RuntimeError(f"C loop moved the wrong byte count: {out!r}")
    return [int(elapsed) for elapsed, _ in lines]


def iobench_loop(engine: str, mode: str, block: int, size: int, reps: int, scratch: Path) -> list[int]:
    """Elapsed ns per repetition as iobench records them (rw-buffer, warm)."""
    experiment = get_experiment("rw-buffer")
    protocol = Protocol(
        warmup=1, min_reps=reps, max_reps=reps, max_case_time=3600 * 10**9, target_ci=0.0, engine=engine
    )
    case = {"mode": mode, "file_size": size, "bs": block, "cache": "warm"}
    result = run_case(experiment, case, protocol, scratch)
    rows = result.rows
    if result.summary.get("status") != "ok" or not all(row.get("integrity_ok") for row in rows):
        raise RuntimeError(f"iobench {engine} case failed: {result.summary}")
    if any(row["engine"] != engine for row in rows):
        raise RuntimeError(f"asked for {engine}, rows say {rows[0]['engine']}")
    return [int(row["elapsed_ns"]) for row in rows]


def fio_loop(mode: str, path: Path, block: int, size: int, reps: int) -> float | None:
    """fio's bandwidth (bytes/s) for the same work, or None without fio.

    invalidate=0 keeps the page cache warm (fio drops it by default). For writes fio
    overwrites its file each loop instead of creating a new one: close, not identical.
    """
    if shutil.which("fio") is None:
        return None
    target = path if mode == "read" else path.with_name("fio-write.bin")
    args = [
        "fio",
        "--name=fidelity",
        f"--filename={target}",
        f"--rw={mode}",
        f"--bs={block}",
        f"--size={size}",
        "--ioengine=psync",
        "--invalidate=0",
        f"--loops={reps}",
        "--output-format=json",
    ]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=600).stdout
    job = json.loads(out[out.index("{") :])["jobs"][0][mode]
    return float(job["bw_bytes"])


def measure(args: argparse.Namespace) -> list[dict]:
    engines = ["native", "python"] if native_available() else ["python"]
    rows = []
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="iobench-fidelity-") as folder:
        work = Path(folder)
        binary = build_cloop(work)
        for mode in args.modes:
            for block in args.bs:
                size = file_size(block)
                source = work / "source.bin"
                samples: dict[str, list[int]] = {"c": [], **{e: [] for e in engines}}
                fio_rates: list[float] = []
                started = time.perf_counter()
                # From a few KiB up a warm read/write is a memory copy: its speed moves ±10% with
                # where each case's file and buffer pages sit, and a repetition is milliseconds.
                # More, finer-interleaved rounds (each a new case) average that out.
                rounds = args.rounds * (4 if block >= 4096 else 1)
                for _ in range(rounds):
                    if mode == "read":
                        # A new file each round, as each iobench case makes its own: at large bs a
                        # warm read is a memory copy whose speed depends on where the file's pages
                        # and the buffer sit (±10% from case to case here); all tools get that.
                        source.unlink(missing_ok=True)
                        source.write_bytes(os.urandom(size))
                        source.read_bytes()  # warm
                    target = source if mode == "read" else work / "c-write.bin"
                    samples["c"] += c_loop(binary, mode, target, block, size, args.reps)
                    for engine in engines:
                        samples[engine] += iobench_loop(engine, mode, block, size, args.reps, work)
                    rate = fio_loop(mode, source, block, size, args.reps)
                    if rate is not None:
                        fio_rates.append(rate)
                row = {"mode": mode, "bs": block, "file_size": size}
                for tool, times in samples.items():
                    row[f"{tool}_bytes_per_s"] = size / (statistics.median(times) / 1e9)
                row["fio_bytes_per_s"] = statistics.median(fio_rates) if fio_rates else None
                rows.append(row)
                console.print(
                    f"{mode} bs={format_size(block)}: C {format_rate(row['c_bytes_per_s'])}, "
                    + ", ".join(f"{e} {row[f'{e}_bytes_per_s'] / row['c_bytes_per_s']:.3f}" for e in engines)
                    + f" ({time.perf_counter() - started:.1f} s)"
                )
    return rows


def _cell(value: float | None, show) -> str:  # type: ignore[no-untyped-def]
    return "-" if value is None else show(value)


def render(rows: list[dict]) -> tuple[Table, str, list[str]]:
    """A rich table, the same as Markdown, and the sizes where native missed the target."""
    headers = [
        "mode",
        "bs",
        "file",
        "C loop",
        "native",
        "python",
        "fio psync",
        "native/C",
        "python/C",
        "fio/C",
    ]
    table = Table(title=f"iobench fidelity: throughput vs a plain C loop (target native >= {TARGET})")
    for header in headers:
        table.add_column(header, justify="left" if header in ("mode",) else "right")
    markdown = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    missed = []
    for row in rows:
        c_rate = row["c_bytes_per_s"]
        tools = ("c", "native", "python", "fio")
        rates = [_cell(row.get(f"{tool}_bytes_per_s"), format_rate) for tool in tools]
        ratios = [
            _cell(row.get(f"{tool}_bytes_per_s"), lambda v, c=c_rate: f"{v / c:.3f}") for tool in tools[1:]
        ]
        cells = [row["mode"], format_size(row["bs"]), format_size(row["file_size"]), *rates, *ratios]
        native = row.get("native_bytes_per_s")
        if native is not None and native / c_rate < TARGET:
            missed.append(f"{row['mode']} bs={format_size(row['bs'])}: {native / c_rate:.3f}")
        table.add_row(*cells)
        markdown.append("| " + " | ".join(cells) + " |")
    return table, "\n".join(markdown), missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="folder for the test files (default: here)")
    parser.add_argument("--out", default="results/fidelity", help="where the CSV and Markdown land")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per tool per round")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process and the C loop to a CPU")
    parser.add_argument("--modes", default="read,write", help="read, write or both")
    parser.add_argument(
        "--bs", default="1,4,16,64,256,1KiB,4KiB,16KiB,64KiB,256KiB,1MiB", help="buffer sizes (comma list)"
    )
    args = parser.parse_args(argv)
    args.bs = [parse_size(part) for part in args.bs.split(",")]
    args.modes = [m for m in args.modes.split(",") if m]
    if shutil.which("gcc") is None:
        print("Error: gcc is needed to build the C loop", file=sys.stderr)
        return 2
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})  # the C loop and fio inherit it
    rows = measure(args)
    table, markdown, missed = render(rows)
    Console(width=200).print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"fidelity-{stamp}.md").write_text(markdown + "\n")
    (out / f"fidelity-{stamp}.json").write_text(json.dumps(rows, indent=1))
    print(f"written: {out}/fidelity-{stamp}.md")
    if missed:
        print(f"native below {TARGET} of the C loop at: {'; '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
