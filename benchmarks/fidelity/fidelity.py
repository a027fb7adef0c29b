"""``make bench-fidelity``: does iobench report what a plain C loop measures?

For each buffer size from 1 B to 1 MiB, warm sequential read and write: the same work timed by a
plain C loop (cloop.c, gcc -O2), by iobench's rw-buffer experiment through the engine's
``run_case`` (the repetition protocol, counters and checks: what ``iobench run`` and
``iobench.api.run`` call for every case) with each engine, and by ``fio --ioengine=psync`` when
fio is installed.
The target: native >= 0.95 of the C loop at every size (exit status 1 if missed).

Like with like (see benchmarks/fidelity/README.md for the measurements behind each point):

- Files: each round makes one new file with iobench's own ``create_random_file`` (1 MiB writes
  of random bytes, then fsync) and every tool reads that file (iobench's case through a hard
  link: the same page-cache pages). Where a file's pages land moves a warm pass by tens of
  percent from file to file; reading one file per round takes that out of the ratio. How a file was written decides the size of its
  page-cache folios (one 32 MiB write: 2 MiB folios; 1 MiB writes: 1 MiB; 4 KiB writes: 4 KiB,
  and 64 KiB reads of those ran at a third of the speed here), and a file just written without
  fsync is being written back while it is read.
- Buffers: a page-aligned private anonymous mapping filled with random bytes (loops/buffers.py;
  cloop.c makes the same).
- Passes: untimed warm-up passes (1 below 4 KiB; 5 from 4 KiB up, as a file that fits the
  last-level cache gets faster for ~5 passes after it was written), then back-to-back timed
  passes, each opening and closing the file untimed (writes: a new file each pass, fsync untimed). Between passes iobench does its own
  work (residency check, counters, the row); the C loop does none: that work is what is tested.
- Working set: file + buffer, against the CPU's last-level cache. Rows up to ``--file-cap`` fit it
  (a warm pass is served from the cache, the regime most sensitive to work between passes); the
  DRAM rows read a file 4x the cache. Each row says which.
- Order: the tools take turns within each round, rotating who goes first; each tool's figure is
  the median of all its passes; native/C is the median over rounds of the round's ratio (C's
  median elapsed over native's: one file, one moment), with a distribution-free 95% interval
  (order statistics). The target is on the ratio itself; the interval says whether a miss is a
  measurable difference or this run's noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from iobench import hostinfo
from iobench.engine.protocol import Protocol
from iobench.engine.runner import CaseResult, run_case
from iobench.experiments.rw_buffer import RwBuffer
from iobench.hostinfo import working_set
from iobench.loops.buffers import page_aligned_buffer
from iobench.loops.engines import native_available
from iobench.osutil.files import create_random_file
from iobench.params import expand_cases, resolve
from iobench.stats import median, median_interval
from iobench.units import format_rate, format_size, parse_size

HERE = Path(__file__).resolve().parent
TARGET = 0.95
CALLS = 1 << 17  # calls per pass at small sizes: ~50 ms in C at 1 B, ~65 ms in Python


@dataclass(frozen=True)
class Spec:
    """One row of the table: a mode, a buffer size, a file size and how many rounds."""

    mode: str
    bs: int
    file_size: int
    rounds: int
    regime: str  # "LLC" (the working set fits the last-level cache) or "DRAM"
    warmup: int  # untimed passes before the timed ones, the same for every tool


def plan(args: argparse.Namespace, llc: int | None) -> list[Spec]:
    specs = []
    for mode in args.modes:
        for bs in args.bs:
            size = min(args.file_cap, bs * CALLS)
            # Many short rounds rather than a few long ones: what else the machine does comes and
            # goes within seconds, and each tool should meet it alike. From a few KiB up a pass is
            # a memory copy whose speed moves with where each file's pages land (one new file per
            # tool and round): more rounds again, and warm-up passes until an LLC-sized file is
            # as fast as it gets (it takes ~5 passes here).
            rounds = args.rounds * (8 if bs >= 4096 else 3)
            warmup = args.warmup if bs >= 4096 else 1
            specs.append(Spec(mode, bs, size, rounds, _regime(size + bs, llc), warmup))
    for bs in args.dram_bs:
        regime = _regime(args.dram_file + bs, llc)
        specs.append(Spec("read", bs, args.dram_file, args.rounds * 2, regime, args.warmup))
    return specs


def _regime(working_set: int, llc: int | None) -> str:
    fits = hostinfo.fits_llc(working_set, llc)
    return "?" if fits is None else "LLC" if fits else "DRAM"


def build_cloop(workdir: Path) -> Path:
    binary = workdir / "cloop"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "cloop.c")], check=True)
    return binary


def c_loop(binary: Path, spec: Spec, path: Path, reps: int) -> list[int]:
    """Elapsed ns per timed pass of the C loop (after the spec's untimed warm-up passes)."""
    size = [str(spec.file_size)] if spec.mode == "write" else []
    args = [str(binary), spec.mode, str(path), str(spec.bs), *size, str(reps), str(spec.warmup)]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=600).stdout
    lines = [line.split() for line in out.splitlines()]
    if len(lines) != reps or any(int(moved) != spec.file_size for _, moved in lines):
        raise RuntimeError(f"C loop moved the wrong byte count: {out!r}")
    return [int(elapsed) for elapsed, _ in lines]


class _RoundFile(RwBuffer):
    """rw-buffer as iobench runs it, reading the round's file instead of a file of its own.

    ``prepare`` is the only change: the case's source is a hard link to the round's file (one
    inode, so the very page-cache pages the C loop reads), made in place of writing a new one.
    Everything timed and everything between repetitions is the engine's and the experiment's own.
    """

    round_file: Path | None = None

    def prepare(self) -> None:
        if not self.reads_source or self.round_file is None:
            super().prepare()
            return
        self.buffer = page_aligned_buffer(self.block)
        self._working_set = working_set(self.space_needed() + self.block)
        os.link(self.round_file, self.source_path)


def run_round_case(
    engine: str,
    mode: str,
    file_size: int,
    bs: int,
    warmup: int,
    reps: int,
    scratch: Path,
    round_file: Path | None,
) -> CaseResult:
    """One warm rw-buffer case through the engine's ``run_case`` (what ``iobench run`` and
    ``iobench.api.run`` call for every case, in this process: the session around it times
    nothing), exactly ``reps`` repetitions after ``warmup``; read mode reads ``round_file``.
    Raises RuntimeError if the case did not finish ok."""
    given = {"mode": mode, "file_size": file_size, "bs": bs, "cache": "warm"}
    (case,) = expand_cases(RwBuffer.params, resolve(RwBuffer.params, given))
    protocol = Protocol(
        warmup=warmup,
        min_reps=reps,
        max_reps=reps,
        max_case_time=3600 * 10**9,
        target_ci=0,
        engine=engine,
    )
    experiment = type("_RoundFile", (_RoundFile,), {"round_file": round_file})
    result = run_case(experiment, case, protocol, scratch)
    if result.summary.get("status") != "ok":
        raise RuntimeError(f"iobench {engine} case failed: {result.summary}")
    return result


def iobench_loop(
    engine: str, spec: Spec, reps: int, scratch: Path, round_file: Path | None
) -> tuple[list[int], Any]:
    """Elapsed ns per repetition as iobench records them (rw-buffer, warm; read mode: of
    ``round_file``), and the threads the measuring process had when timing began (the case
    record's ``process_threads``)."""
    result = run_round_case(
        engine, spec.mode, spec.file_size, spec.bs, spec.warmup, reps, scratch, round_file
    )
    rows = result.rows
    if not all(row.get("integrity_ok") for row in rows):
        raise RuntimeError(f"iobench {engine} case failed its integrity check: {result.summary}")
    if any(row["engine"] != engine for row in rows):
        raise RuntimeError(f"asked for {engine}, rows say {rows[0]['engine']}")
    if spec.mode == "read" and not all(row.get("cache_verified") for row in rows):
        raise RuntimeError(f"iobench {engine}: the round's file was not all in the page cache")
    return [int(row["elapsed_ns"]) for row in rows], result.summary.get("process_threads")


def fio_loop(spec: Spec, path: Path, reps: int) -> float | None:
    """fio's bandwidth (bytes/s) for the same work, or None without fio.

    invalidate=0 keeps the page cache warm (fio drops it by default). For writes fio
    overwrites its file each loop instead of creating a new one, and has no warm-up passes
    (its bandwidth averages over all its loops): close, not identical.
    """
    if shutil.which("fio") is None:
        return None
    args = [
        "fio",
        "--name=fidelity",
        f"--filename={path}",
        f"--rw={spec.mode}",
        f"--bs={spec.bs}",
        f"--size={spec.file_size}",
        "--ioengine=psync",
        "--invalidate=0",
        f"--loops={reps}",
        "--output-format=json",
    ]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=600).stdout
    job = json.loads(out[out.index("{") :])["jobs"][0][spec.mode]
    return float(job["bw_bytes"])


def _new_file(folder: Path, spec: Spec, name: str) -> Path:
    """A new file per tool and round, made as iobench makes its own (read), or a free path (write)."""
    path = folder / name
    path.unlink(missing_ok=True)
    if spec.mode == "read":
        create_random_file(path, spec.file_size)
    return path


def measure_spec(spec: Spec, args: argparse.Namespace, work: Path, binary: Path) -> dict[str, Any]:
    engines = ["native", "python"] if native_available() else ["python"]
    tools = ["c", *engines, "fio"]
    samples: dict[str, list[int]] = {tool: [] for tool in tools if tool != "fio"}
    fio_rates: list[float] = []
    threads: set[Any] = set()
    for round_index in range(spec.rounds):
        # Reads: one new file per round, read by every tool (the same inode, so the same page-cache
        # pages): where a file's pages land moves a warm pass by tens of percent from file to file,
        # and pairing by file takes that out of the ratio. Writes: each tool writes files of its own.
        shared = _new_file(work, spec, "round.bin") if spec.mode == "read" else None
        turn = round_index % len(tools)
        for tool in tools[turn:] + tools[:turn]:
            if tool == "c":
                path = shared or _new_file(work, spec, "c.bin")
                samples["c"] += c_loop(binary, spec, path, args.reps)
            elif tool == "fio":
                if shutil.which("fio") is not None:
                    path = shared or _new_file(work, spec, "fio.bin")
                    rate = fio_loop(spec, path, args.reps)
                    if rate is not None:
                        fio_rates.append(rate)
            else:
                times, seen = iobench_loop(tool, spec, args.reps, work, shared)
                samples[tool] += times
                threads.add(seen)
        for name in ("round.bin", "c.bin", "fio.bin"):
            (work / name).unlink(missing_ok=True)
    row: dict[str, Any] = {
        "mode": spec.mode,
        "bs": spec.bs,
        "file_size": spec.file_size,
        "working_set_bytes": spec.file_size + spec.bs,
        "regime": spec.regime,
        "rounds": spec.rounds,
        "warmup": spec.warmup,
        "reps_per_round": args.reps,
        "process_threads": sorted(threads, key=str),
    }
    for tool, times in samples.items():
        row[f"{tool}_bytes_per_s"] = spec.file_size / (statistics.median(times) / 1e9)
        row[f"{tool}_elapsed_ns"] = times
        if tool != "c":
            # Throughput ratio tool/C = C's elapsed over the tool's, one per round (each side's
            # median pass): the tools of one round read one file at one moment, so the round is the
            # pair. Its median over the rounds, with a distribution-free 95% interval.
            ratios = [
                c / mine
                for c, mine in zip(
                    _round_medians(samples["c"], args.reps), _round_medians(times, args.reps), strict=True
                )
            ]
            interval = median_interval(ratios)
            row[f"{tool}_ratio"] = median(ratios)
            row[f"{tool}_ratio_low"] = interval.low
            row[f"{tool}_ratio_high"] = interval.high
            row[f"{tool}_ratio_confidence"] = interval.confidence
    row["fio_bytes_per_s"] = statistics.median(fio_rates) if fio_rates else None
    row["fio_ratio"] = row["fio_bytes_per_s"] / row["c_bytes_per_s"] if fio_rates else None
    return row


def _round_medians(times: list[int], per_round: int) -> list[float]:
    return [statistics.median(times[i : i + per_round]) for i in range(0, len(times), per_round)]


def facts(args: argparse.Namespace, llc: dict[str, Any]) -> dict[str, Any]:
    host = hostinfo.host_facts()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "kernel": platform.release(),
        "cpu_model": host.get("cpu_model"),
        "cpus": host.get("cpu_count"),
        "hypervisor": host.get("hypervisor"),
        "llc": hostinfo.llc_text(llc) if llc.get("llc_bytes") else "not readable",
        "llc_bytes": llc.get("llc_bytes"),
        "pinned_cpu": args.cpu,
        "warmup": args.warmup,
        "load_average_start": list(os.getloadavg()),
        "fio": shutil.which("fio") is not None,
        "git": (hostinfo.git_facts(HERE) or {}).get("describe"),
    }


def _ratio_text(row: dict[str, Any], tool: str, interval: bool = False) -> str:
    ratio = row.get(f"{tool}_ratio")
    if ratio is None:
        return "-"
    low, high = row.get(f"{tool}_ratio_low"), row.get(f"{tool}_ratio_high")
    if not interval or low is None or high is None:
        return f"{ratio:.3f}"
    confidence = row.get(f"{tool}_ratio_confidence", 0.95)
    if confidence < 0.95:
        return f"{ratio:.3f} ({low:.2f}–{high:.2f}, only {confidence:.0%}: few rounds)"
    return f"{ratio:.3f} ({low:.2f}–{high:.2f})"


def render(rows: list[dict[str, Any]]) -> tuple[Table, str, list[str]]:
    """A rich table, the same as Markdown, and the rows where native missed the target."""
    headers = [
        "mode",
        "bs",
        "file",
        "working set",
        "C loop",
        "native",
        "python",
        "fio psync",
        "native/C (95% CI)",
        "python/C",
        "fio/C",
    ]
    table = Table(title=f"iobench fidelity: throughput vs a plain C loop (target native/C >= {TARGET})")
    for header in headers:
        table.add_column(header, justify="left" if header == "mode" else "right")
    markdown = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    missed = []
    for row in rows:
        rates = [
            "-" if row.get(f"{tool}_bytes_per_s") is None else format_rate(row[f"{tool}_bytes_per_s"])
            for tool in ("c", "native", "python", "fio")
        ]
        cells = [
            row["mode"],
            format_size(row["bs"]),
            format_size(row["file_size"]),
            f"{format_size(row['working_set_bytes'])} ({row['regime']})",
            *rates,
            _ratio_text(row, "native", interval=True),
            _ratio_text(row, "python"),
            _ratio_text(row, "fio"),
        ]
        native = row.get("native_ratio")
        if native is not None and native < TARGET:
            high = row.get("native_ratio_high")
            verdict = (
                "its interval includes 1: no measurable difference from C in this run"
                if high is not None and high >= 1
                else "measurably slower than C"
            )
            missed.append(
                f"{row['mode']} bs={format_size(row['bs'])} ({row['regime']}): "
                f"{_ratio_text(row, 'native', interval=True)}, {verdict}"
            )
        table.add_row(*cells)
        markdown.append("| " + " | ".join(cells) + " |")
    return table, "\n".join(markdown), missed


def describe(info: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """What was measured where, for the top of the output and the Markdown file."""
    threads = sorted({str(t) for row in rows for t in row["process_threads"]})
    return [
        f"{info['date']}, {info['cpu_model']} x{info['cpus']}"
        + (" (under a hypervisor)" if info["hypervisor"] else "")
        + f", kernel {info['kernel']}, LLC {info['llc']}, iobench {info['git'] or '?'}",
        f"load average at start {' '.join(f'{v:.2f}' for v in info['load_average_start'])}, at end "
        f"{' '.join(f'{v:.2f}' for v in info['load_average_end'])}; "
        + (f"pinned to CPU {info['pinned_cpu']}" if info["pinned_cpu"] is not None else "not pinned"),
        "Each round's tools read one new file, writes make their own (iobench's create_random_file: "
        "1 MiB writes + fsync), into a page-aligned random-filled buffer; untimed warm-up passes (1 below "
        f"4 KiB, {info['warmup']} from 4 KiB up; fio: none), then back-to-back timed "
        "passes. working set = file + buffer: (LLC) fits the last-level cache, (DRAM) does not. native/C: "
        "median over rounds of C's median elapsed / native's (both read the round's file), 95% interval.",
        f"threads in the measuring process when timing began (iobench's process_threads): {', '.join(threads)}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="folder for the test files (default: here)")
    parser.add_argument("--out", default="results/fidelity", help="where the JSON and Markdown land")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds per size: x3 below 4 KiB, x8 from it, x2 DRAM",
    )
    parser.add_argument("--reps", type=int, default=5, help="timed passes per tool per round")
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed passes before them from 4 KiB up (1 below)"
    )
    parser.add_argument("--cpu", type=int, default=None, help="pin this process, the C loop and fio to a CPU")
    parser.add_argument("--modes", default="read,write", help="read, write or both")
    parser.add_argument(
        "--bs", default="1,4,16,64,256,1KiB,4KiB,16KiB,64KiB,256KiB,1MiB", help="buffer sizes (comma list)"
    )
    parser.add_argument(
        "--file-cap",
        default=None,
        help="largest file of the main rows (default: a quarter of the LLC, a power of two; 8 MiB if unknown)",
    )
    parser.add_argument(
        "--dram-bs", default="64KiB,1MiB", help="buffer sizes of the DRAM read rows ('' for none)"
    )
    parser.add_argument("--dram-file", default=None, help="file of the DRAM rows (default: 4x the LLC)")
    args = parser.parse_args(argv)
    args.bs = [parse_size(part) for part in args.bs.split(",") if part]
    args.dram_bs = [parse_size(part) for part in args.dram_bs.split(",") if part]
    args.modes = [m for m in args.modes.split(",") if m]
    if shutil.which("gcc") is None:
        print("Error: gcc is needed to build the C loop", file=sys.stderr)
        return 2
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})  # the C loop, fio and iobench's cases inherit it
    llc = hostinfo.llc_facts()
    llc_bytes = llc.get("llc_bytes")
    default_cap = 1 << max(12, ((llc_bytes or 32 << 20) // 4).bit_length() - 1)
    args.file_cap = parse_size(args.file_cap) if args.file_cap else default_cap
    args.dram_file = parse_size(args.dram_file) if args.dram_file else 4 * (llc_bytes or 32 << 20)
    info = facts(args, llc)
    console = Console(stderr=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="iobench-fidelity-") as folder:
        work = Path(folder)
        binary = build_cloop(work)
        for spec in plan(args, llc_bytes):
            started = time.perf_counter()
            row = measure_spec(spec, args, work, binary)
            rows.append(row)
            console.print(
                f"{spec.mode} {format_size(spec.bs)} ({format_size(spec.file_size)}, {spec.regime}): "
                f"native/C {_ratio_text(row, 'native', interval=True)}, python/C {_ratio_text(row, 'python')} "
                f"[{time.perf_counter() - started:.0f} s]",
                highlight=False,
                soft_wrap=True,
            )
    info["load_average_end"] = list(os.getloadavg())
    table, markdown, missed = render(rows)
    lines = describe(info, rows)
    out_console = Console(width=200)
    for line in lines:
        out_console.print(line, highlight=False)
    out_console.print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"fidelity-{stamp}.md").write_text("\n\n".join(lines) + "\n\n" + markdown + "\n")
    (out / f"fidelity-{stamp}.json").write_text(json.dumps({"facts": info, "rows": rows}, indent=1))
    print(f"written: {out}/fidelity-{stamp}.md")
    if any(row["process_threads"] != [1] for row in rows):
        print("iobench measured with more than one thread in the process: its small-bs numbers read high")
    if missed:
        print(f"native below {TARGET} of the C loop at: {'; '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
