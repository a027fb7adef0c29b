"""What a pause between two passes costs the next warm pass, and what iobench's engine costs.

Each round makes one new file (``create_random_file``); then, in rotating order, each kind makes
``--passes`` read passes of it with the native loop into a new page-aligned buffer, doing its
between-pass work before every pass, and keeps the median of the last ``--keep``. Kinds:

- ``none``: back to back (open, read to EOF, close), as a C loop does;
- ``spinN`` / ``sleepN``: N microseconds of busy waiting / of sleep before each pass;
- ``engine``: the engine's own protocol (``run_case`` of rw-buffer reading the round's file),
  whatever it does between repetitions.

The ratio is each kind's throughput over ``none``'s, one per round (same file, same minutes),
summarised by its median and quartiles. On this project's VM the last-level cache is shared with
other machines' work, so a file that fits it leaves it while a pass waits (README.md here).

    python benchmarks/fidelity/pause.py --cpu 1 --kinds none,spin30,spin100,spin300,sleep300,engine
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fidelity import run_round_case  # the engine's path as bench-fidelity takes it

from iobench.engine import cache
from iobench.engine.counters import CounterProbe
from iobench.loops.buffers import page_aligned_buffer
from iobench.loops.engines import loops_for
from iobench.osutil.files import create_random_file
from iobench.units import format_size, parse_size

PROBE = CounterProbe("thread")
#: The engine's time from the end of one timed pass to the start of the next, every round's.
GAPS_NS: list[int] = []


def _wait(kind: str, path: Path) -> None:
    if kind.startswith("spin"):
        end = time.perf_counter_ns() + int(kind[4:]) * 1000
        while time.perf_counter_ns() < end:
            pass
    elif kind.startswith("sleep"):
        time.sleep(int(kind[5:]) / 1e6)
    elif kind.startswith("objects"):
        end = time.perf_counter_ns() + int(kind[7:]) * 1000
        while time.perf_counter_ns() < end:
            [{"rep": index, "bytes": index * 2} for index in range(20)]
    elif kind == "probe":
        PROBE.after(PROBE.before())
    elif kind == "cachestat":
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        cache.resident_fraction(path, fd)
        os.close(fd)
    elif kind != "none":
        raise SystemExit(f"unknown kind {kind!r} (none, spinN, sleepN, objectsN, probe, cachestat, engine)")


def passes(kind: str, path: Path, args: argparse.Namespace, scratch: Path) -> list[int]:
    """Elapsed ns of each pass of one kind over the round's file."""
    if kind == "engine":
        result = run_round_case("native", "read", args.file_size, args.bs, 0, args.passes, scratch, path)
        rows = result.rows
        GAPS_NS.extend(
            later["t_start_ns"] - row["t_start_ns"] - row["elapsed_ns"]
            for row, later in itertools.pairwise(rows)
        )
        return [int(row["elapsed_ns"]) for row in rows]
    native = loops_for("native")
    buffer = page_aligned_buffer(args.bs)
    elapsed = []
    for _ in range(args.passes):
        _wait(kind, path)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        start = time.perf_counter_ns()
        native.read_all(fd, buffer)
        elapsed.append(time.perf_counter_ns() - start)
        os.close(fd)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="folder for the test file")
    parser.add_argument("--bs", default="256KiB")
    parser.add_argument("--file-size", default="8MiB")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--passes", type=int, default=20, help="passes per kind and round")
    parser.add_argument("--keep", type=int, default=10, help="the last this many are the kind's")
    parser.add_argument("--kinds", default="none,spin30,spin100,spin300,sleep300,engine")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args(argv)
    args.bs, args.file_size = parse_size(args.bs), parse_size(args.file_size)
    kinds = [kind for kind in args.kinds.split(",") if kind]
    if kinds[0] != "none" or not 0 < args.keep <= args.passes:
        parser.error("--kinds must start with none; 0 < --keep <= --passes")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    medians: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="iobench-pause-") as folder:
        work = Path(folder)
        path = work / "round.bin"
        for round_index in range(args.rounds):
            path.unlink(missing_ok=True)
            create_random_file(path, args.file_size)
            turn = round_index % len(kinds)
            for kind in kinds[turn:] + kinds[:turn]:
                medians[kind].append(statistics.median(passes(kind, path, args, work)[-args.keep :]))
    print(
        f"warm read of a new {format_size(args.file_size)} file per round, bs={format_size(args.bs)}, "
        f"{args.rounds} rounds, median of the last {args.keep} of {args.passes} passes; "
        "throughput against 'none' (back to back), per round: median [quartiles]"
    )
    for kind in kinds[1:]:
        ratios = sorted(none / mine for none, mine in zip(medians["none"], medians[kind], strict=True))
        quarter = len(ratios) // 4
        print(
            f"  {kind:10s} {statistics.median(ratios):.3f} [{ratios[quarter]:.3f}-{ratios[-1 - quarter]:.3f}]"
        )
    if GAPS_NS:
        print(
            f"  the engine's time between two timed passes: median {statistics.median(GAPS_NS) / 1e3:.0f} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
