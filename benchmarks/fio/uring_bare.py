"""iobench's io_uring loop without the experiment around it, against the plain C loop, QD 1.

Same O_DIRECT file, alternating order: ``Uring.run_file`` called from this bare process (the
async-io experiment's offsets, buffer and ring size 1) and ``qd1_pread.c uring`` (raw
io_uring with fio's ring flags, one io_uring_enter per IO). Separates the native loop from
what the async-io case does around it (see the README's QD 1 paragraph).

    python benchmarks/fio/uring_bare.py --rounds 12 --cpu 1
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from same_file import add_round_args, build_c_loop, c_loop, pinned_scratch  # same loop, same build

from iobench.experiments.async_io import io_pattern
from iobench.loops import histogram
from iobench.loops.buffers import page_aligned_buffer
from iobench.loops.engines import native_module
from iobench.osutil.files import create_random_file
from iobench.stats import median, median_interval


def bare(path: Path, size: int) -> float:
    """Median IOPS of two passes of the native loop over the file."""
    native = native_module()
    assert native is not None, "the C extension is not built"
    offsets, writes = io_pattern("randread", size, 4096, 100)
    view = memoryview(page_aligned_buffer(4096))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    ring = native.Uring(1, sqpoll=False, cq_entries=0)
    try:
        found = []
        for _ in range(2):
            result = ring.run_file(fd, view, 4096, offsets, writes, 1, histogram.new(), batch=1)
            found.append(result["ios"] / result["loop_ns"] * 1e9)
        return statistics.median(found)
    finally:
        ring.close()
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_round_args(parser, rounds=12)
    args = parser.parse_args()
    with pinned_scratch(args, "iobench-uring-bare-") as folder:
        path = folder / "shared.bin"
        create_random_file(path, args.size)
        binary = build_c_loop(folder)
        found: dict[str, list[float]] = {"bare": [], "c": []}
        for index in range(args.rounds):
            for tool in ("bare", "c") if index % 2 == 0 else ("c", "bare"):
                found[tool].append(
                    bare(path, args.size) if tool == "bare" else c_loop(binary, path, args.size, "uring")
                )
    ratios = [mine / theirs for mine, theirs in zip(found["bare"], found["c"], strict=True)]
    interval = median_interval(ratios)
    print(
        f"bare run_file / C io_uring loop: {median(ratios):.3f} per round ({interval.low:.3f}-{interval.high:.3f}, "
        f"{interval.confidence:.0%}); medians {statistics.median(found['bare']):,.0f} vs "
        f"{statistics.median(found['c']):,.0f} IOPS"
    )


if __name__ == "__main__":
    main()
