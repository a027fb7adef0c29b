"""fio, iobench's native engine and a plain C loop (qd1_pread.c: pread, AIO, io_uring) reading the SAME
O_DIRECT file at queue depth 1, interleaved in rotating order: whether a QD1 gap to fio is the
file, iobench's harness, or something fio does that a hand-written C loop does not.

    python benchmarks/fio/same_file.py --engine psync --rounds 6 --dir . --cpu 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import bench_fio  # the C loop, its build and the shared file (this folder is on sys.path)

from iobench import api
from iobench.stats import median, median_interval


def fio(path: Path, size: int, engine: str) -> float:
    """fio's IOPS over two passes of the file."""
    args = [
        "fio", "--name=same-file", f"--filename={path}", "--rw=randread", "--bs=4k", f"--size={size}",
        f"--ioengine={engine}", "--iodepth=1", "--direct=1", "--invalidate=0", "--loops=2",
        "--output-format=json",
    ]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out[out.index("{") :])["jobs"][0]["read"]["iops"])


def build_c_loop(folder: Path) -> Path:
    """qd1_pread.c compiled into ``folder``, as bench_fio.py builds it."""
    binary = bench_fio.build_c_loop(folder)
    if binary is None:
        raise SystemExit("same_file.py: no C compiler (gcc or cc) to build qd1_pread.c")
    return binary


def c_loop(binary: Path, path: Path, size: int, kind: str) -> float:
    """The C loop's median IOPS of two passes (qd1_pread.c's ENGINE: pread, aio, uring, uring2)."""
    return bench_fio.c_loop_iops(binary, path, size, 2, kind)


def add_round_args(parser: argparse.ArgumentParser, rounds: int) -> None:
    """--rounds, --size, --dir, --cpu: what every script here that compares loops on one file takes."""
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--size", type=int, default=64 << 20)
    parser.add_argument("--dir", default=".")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process and its children")


@contextlib.contextmanager
def pinned_scratch(args: argparse.Namespace, prefix: str) -> Iterator[Path]:
    """This process pinned to --cpu (its children inherit it) and a temporary folder in --dir."""
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=prefix) as name:
        yield Path(name)


def iobench(folder: Path, size: int, engine: str) -> float:
    """iobench's median IOPS of two repetitions (after one warm-up), on the shared file."""
    run = api.run(
        "async-io", method=engine, qd=1, rw="randread", bs=4096, direct="on", file_size=size,
        dir=str(folder), out=None, warmup=1, min_reps=2, max_reps=2, target_ci=0, engine="native",
        max_case_time="3600s", submit="each",
    )  # fmt: skip
    rows = run.records()
    if not all(row["status"] == "ok" for row in rows):
        raise RuntimeError(f"iobench failed: {rows[0].get('status_reason')}")
    return statistics.median(float(row["iops"]) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("psync", "libaio", "io_uring"), default="psync")
    add_round_args(parser, rounds=6)
    args = parser.parse_args()
    with pinned_scratch(args, "iobench-same-file-") as folder:
        shared = folder / "shared.bin"
        # The case's own file becomes a link to the shared one: same blocks on the device.
        with bench_fio.shared_file(shared, args.size):
            tools = {
                "fio": lambda: fio(shared, args.size, args.engine),
                "iobench": lambda: iobench(folder, args.size, args.engine),
            }
            binary = build_c_loop(folder)
            # The C loop's calls: one per IO, and for io_uring also fio's two (submit, then wait).
            kinds = {
                "psync": {"c": "pread"},
                "libaio": {"c": "aio"},
                "io_uring": {"c": "uring", "c2": "uring2"},
            }
            for name, kind in kinds[args.engine].items():
                tools[name] = lambda kind=kind: c_loop(binary, shared, args.size, kind)
            found: dict[str, list[float]] = {name: [] for name in tools}
            order = list(tools)
            for index in range(args.rounds):
                for name in order[index % len(order) :] + order[: index % len(order)]:
                    found[name].append(tools[name]())
    medians = {name: statistics.median(values) for name, values in found.items()}
    for name, values in found.items():
        print(f"{name:8} median {medians[name]:,.0f} IOPS  rounds {[round(v) for v in values]}")
    # One ratio per round (same file, same minute), its median and a distribution-free 95% interval.
    pairs = [(name, "fio") for name in found if name != "fio"] + [("iobench", "c")]
    for name, other in pairs:
        ratios = [mine / theirs for mine, theirs in zip(found[name], found[other], strict=True)]
        interval = median_interval(ratios)
        print(
            f"{name}/{other} {median(ratios):.3f} per round ({interval.low:.3f}-{interval.high:.3f}, "
            f"{interval.confidence:.0%}); of the medians {medians[name] / medians[other]:.3f}"
        )


if __name__ == "__main__":
    main()
