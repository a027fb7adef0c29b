"""What a harness does between two passes, and what it costs the next pass (paired).

One rw-buffer read case (its file, its buffer) in this process. Before each pass one kind of
between-pass work is picked at random; the pass is then timed by the same two clock reads
whatever the kind, and filed under it. Every kind thus sees the same file, buffer, page
placement and machine drift, so the medians compare like with like (a paired design; separate
runs differ by more than the effects measured here).

Kinds: ``none`` (back to back, as a C loop), ``runner`` (the engine's own work between
repetitions: before_rep/after_rep, counter snapshots around the pass, the row, the running
mean), ``cachestat`` / ``mincore`` (the residency check by either call), ``probe`` (the counter
snapshots alone, timing the pass by the probe's window), ``spinN`` (N us of busy waiting),
``sleepN`` (N us asleep: the CPU may idle).

    python benchmarks/fidelity/between.py --bs 64KiB --file-size 8MiB --kinds none,runner
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iobench import hostinfo
from iobench.engine import cache, runner
from iobench.engine.counters import CounterProbe
from iobench.experiments import get_experiment
from iobench.loops.engines import loops_for
from iobench.stats import RunningMean
from iobench.units import format_rate, format_size, parse_size


def _spin(us: int) -> None:
    end = time.perf_counter_ns() + us * 1000
    while time.perf_counter_ns() < end:
        pass


def _objects(us: int) -> None:
    """About ``us`` microseconds of interpreter work that makes and drops small objects."""
    end = time.perf_counter_ns() + us * 1000
    while time.perf_counter_ns() < end:
        [{"rep": index, "bytes": index * 2} for index in range(20)]


def _residency(call: str, path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if call == "mincore":
            cache.mincore_pages(fd, os.fstat(fd).st_size)
        else:
            from iobench.osutil import libc

            libc.cached_pages(fd)
    finally:
        os.close(fd)


def measure(args: argparse.Namespace) -> dict[str, list[int]]:
    experiment = get_experiment("rw-buffer")
    loops = loops_for(args.engine)
    timed: dict[str, list[int]] = {kind: [] for kind in args.kinds}
    for _ in range(args.files):
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="iobench-between-") as folder:
            case = {"mode": "read", "file_size": args.file_size, "bs": args.bs, "cache": "warm"}
            instance = experiment(case, Path(folder))
            instance.loops = loops
            instance.prepare()
            probe = CounterProbe("thread")
            base = runner._base_row(experiment, case, "", args.engine, "")
            running = RunningMean()
            try:
                for index in range(args.passes):
                    kind = random.choice(args.kinds)
                    elapsed = _one_pass(kind, instance, probe, base, running, index, loops)
                    if index >= 3:  # the first passes of a new file warm up the caches
                        timed[kind].append(elapsed)
            finally:
                probe.close()
                instance.teardown()
    return timed


def _one_pass(
    kind: str,
    instance: Any,
    probe: CounterProbe,
    base: dict[str, Any],
    running: RunningMean,
    index: int,
    loops: Any,
) -> int:
    if kind == "runner":
        pre = instance.before_rep()
        gc.disable()
        before = probe.before()
        work = instance.run_once()
        delta = probe.after(before)
        gc.enable()
        post = instance.after_rep()
        runner._row(base, index, delta, work, pre, post)
        running.add(delta.time_ns)
        running.ci_halfwidth_pct()
        return delta.time_ns
    if kind == "probe":
        fd = os.open(instance.source_path, os.O_RDONLY | os.O_CLOEXEC)
        before = probe.before()
        loops.read_all(fd, instance.buffer)
        elapsed = probe.after(before).time_ns
        os.close(fd)
        return elapsed
    work: dict[str, Callable[[], None]] = {
        "none": lambda: None,
        "cachestat": lambda: _residency("cachestat", instance.source_path),
        "mincore": lambda: _residency("mincore", instance.source_path),
    }
    if kind.startswith("spin"):
        _spin(int(kind[4:]))
    elif kind.startswith("objects"):
        _objects(int(kind[7:]))
    elif kind.startswith("snap"):
        for _ in range(int(kind[4:])):
            probe._raw()
    elif kind.startswith("sleep"):
        time.sleep(int(kind[5:]) / 1e6)
    else:
        work[kind]()
    fd = os.open(instance.source_path, os.O_RDONLY | os.O_CLOEXEC)
    start = time.perf_counter_ns()
    loops.read_all(fd, instance.buffer)
    elapsed = time.perf_counter_ns() - start
    os.close(fd)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="folder for the test files")
    parser.add_argument("--bs", default="64KiB")
    parser.add_argument("--file-size", default="8MiB")
    parser.add_argument("--passes", type=int, default=300, help="passes per file")
    parser.add_argument("--files", type=int, default=4, help="new case (file and buffer) this many times")
    parser.add_argument("--kinds", default="none,runner,cachestat,mincore,probe")
    parser.add_argument("--engine", default="native", choices=("native", "python"))
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args(argv)
    args.bs, args.file_size = parse_size(args.bs), parse_size(args.file_size)
    args.kinds = [kind for kind in args.kinds.split(",") if kind]
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    timed = measure(args)
    # getattr: the script also measures older checkouts (PYTHONPATH=...), before the LLC facts.
    fits = getattr(hostinfo, "working_set", lambda _: {"fits_llc": None})(args.file_size + args.bs)[
        "fits_llc"
    ]
    reference = statistics.median(timed[args.kinds[0]])
    regime = {True: "fits the LLC", False: "exceeds the LLC", None: "LLC fit unknown"}[fits]
    print(
        f"warm read, bs={format_size(args.bs)}, file={format_size(args.file_size)} ({regime}), "
        f"engine {args.engine}; ratio = throughput against '{args.kinds[0]}' (medians)"
    )
    for kind, values in timed.items():
        median = statistics.median(values)
        rate = format_rate(args.file_size / (median / 1e9))
        print(f"  {kind:10s} {rate:>12s}  {reference / median:6.3f}  (n={len(values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
