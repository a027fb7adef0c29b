"""``make bench-fio``: does iobench's async-io measure queue depth as fio does?

The same job for both tools: random 4 KiB reads (``rw=randread``, every block of the file once, in
random order), ``ioengine=psync|libaio|io_uring`` at ``iodepth`` 1, 4, 16, 32, 64 (psync at 1:
it has no queue), through iobench's public API (``iobench.api.run("async-io", ...)``: the session,
the repetition protocol, the C loops) and through ``fio --output-format=json`` with
``lat_percentiles=1`` (total latency, submission included, which is what iobench times: from the
submitting call to the completion). Both run fio's default loop: each IO submitted in its own
call as soon as a slot is free (fio's ``iodepth_batch_submit=1``; iobench's ``submit=each``), and
once the queue is full one completion taken per wait, its replacement submitted before the next
is taken (fio's ``iodepth_batch_complete_max``, which defaults to 1; iobench's ``reap=one``): with
iobench's own default, ``reap=all``, its p50 at depth reads 10-20% lower than fio's, because fio
counts the time a finished IO waits in the ring while fio submits. Every round makes one new file
of ``--size`` (``create_random_file``) that both tools read (iobench's case gets it as a hard
link): where a file's blocks lie, on the virtual disk and in the host's cache, moves a round by
10% and more, so the two tools are compared on the same blocks in the same minute.

Regimes: ``disk`` reads with O_DIRECT (``direct=1``) in ``--dir``: the virtual disk, whose ceiling
may hide differences between engines; ``cache`` reads the same kind of file buffered with its
pages cached (``direct=0 invalidate=0``: no device), where what each engine costs per IO shows;
``tmpfs`` reads a file in ``--tmpfs`` (/dev/shm) buffered (tmpfs has no O_DIRECT of its own: its
files are the page cache). ``busy`` is ``disk`` at queue depth 1 with the pinned CPU kept busy by a
SCHED_IDLE spinner (any runnable task preempts it at once): at QD 1 the CPU idles while every IO is
in flight, and on a virtual machine waking it costs 10-20 us that depend on how long and how often
it slept, which moves a tool that spends more CPU per IO (fio) ahead of one that spends less (a
plain C loop as much as iobench); with the CPU never idle that cost leaves both. Each row says its
regime.

Rounds are interleaved (each round runs a job with both tools, the order of the two
alternating), and a tool's figure is the median of its rounds. iobench/fio is the median of the
rounds' ratios (each round's iobench over the same round's fio) with its distribution-free 95%
interval (order statistics; with fewer than 6 rounds it is min-max and says its coverage).
Targets: IOPS >= 0.95 of fio's for libaio and io_uring at every depth, and on the disk p50 latency
within 10% (in the cache, tmpfs and busy regimes fio's own per-IO work is much of what it times);
exit status 1 when one is missed, except a disk row at QD 1 that misses by less than 15% while a
plain C loop on the same files does no better and its busy row meets the targets: the report then
says the gap is the virtual CPU's wake-up, not iobench's loop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import iobench.experiments.async_io as async_io
from iobench import api, hostinfo
from iobench.loops import histogram
from iobench.osutil.files import create_random_file
from iobench.stats import median, median_interval
from iobench.units import format_duration, format_size, parse_size

HERE = Path(__file__).resolve().parent
IOPS_TARGET = 0.95
P50_TOLERANCE = 0.10
BS = 4096
CHECKED = ("libaio", "io_uring")
#: Where p50 is checked: on the device. Without it (cache, tmpfs) an IO takes 1-30 us and fio's own
#: per-IO work (its clock reads and statistics) is a large part of what fio times, so there the
#: rows say what each engine costs, and only "iobench no slower than fio" (IOPS) is checked.
P50_CHECKED = ("disk",)
#: The busy regime: QD 1 only (at depth the CPU seldom idles), the CPU kept busy by a spinner.
BUSY_QD = 1
#: A QD 1 disk miss is excused (see idle_wakeup) only down to this IOPS ratio (and p50 up to 2 - it).
EXCUSE_FLOOR = 0.85


@dataclass(frozen=True)
class Job:
    """One row: a regime (where and how the file is read), an engine and a queue depth."""

    regime: str  # "disk" (O_DIRECT), "busy" (O_DIRECT, CPU kept busy), "cache" or "tmpfs" (buffered)
    folder: Path
    engine: str  # fio's ioengine; iobench's method of the same name
    qd: int

    @property
    def direct(self) -> bool:
        return self.regime in ("disk", "busy")


def plan(args: argparse.Namespace) -> list[Job]:
    folders = {
        "disk": Path(args.dir),
        "busy": Path(args.dir),
        "cache": Path(args.dir),
        "tmpfs": Path(args.tmpfs),
    }
    jobs = []
    for regime in args.regimes:
        for engine in args.engines:
            depths = [1] if engine == "psync" else args.qd
            for qd in [q for q in depths if q == BUSY_QD] if regime == "busy" else depths:
                jobs.append(Job(regime, folders[regime], engine, qd))
    return jobs


@contextlib.contextmanager
def busy_cpu(busy: bool) -> Iterator[int | None]:
    """While this holds (and ``busy``), a process spins on this process's CPUs at SCHED_IDLE (set
    by this process right after it starts; the tools' tasks preempt it as soon as they can run):
    the CPU never idles. Yields its pid. It dies with this process, however that ends
    (PR_SET_PDEATHSIG)."""
    if not busy:
        yield None
        return
    spin = (
        "import ctypes, os, signal\n"
        "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
        f"if os.getppid() != {os.getpid()}: raise SystemExit\n"
        "while True: pass"
    )
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", spin], os.environ)
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))  # glibc's posix_spawn cannot
        yield pid
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def fio_round(job: Job, path: Path, size: int, loops: int, runtime: int) -> dict[str, float]:
    """fio's IOPS and total-latency p50/p99 (ns) for ``loops`` passes over the file."""
    args = [
        "fio",
        "--name=bench-fio",
        f"--filename={path}",
        "--rw=randread",
        f"--bs={BS}",
        f"--size={size}",
        f"--ioengine={job.engine}",
        f"--iodepth={job.qd}",
        f"--direct={int(job.direct)}",
        "--invalidate=0",  # a buffered file stays cached, as iobench's cache=warm keeps it
        f"--loops={loops}",
        f"--runtime={runtime}",
        "--lat_percentiles=1",
        "--percentile_list=50:99",
        "--output-format=json",
    ]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=runtime * 4 + 60).stdout
    read = json.loads(out[out.index("{") :])["jobs"][0]["read"]
    percentiles = read["lat_ns"]["percentile"]
    return {
        "iops": float(read["iops"]),
        "p50": float(percentiles["50.000000"]),
        "p99": float(percentiles["99.000000"]),
        "ios": float(read["total_ios"]),
    }


def iobench_round(job: Job, size: int, reps: int, folder: Path) -> dict[str, float]:
    """iobench's IOPS (median of ``reps`` repetitions) and p50/p99 over all their IOs (their
    histograms merged), after one untimed warm-up repetition; its scratch folder in ``folder``."""
    run = api.run(
        "async-io",
        method=job.engine,
        qd=job.qd,
        rw="randread",
        bs=BS,
        direct="on" if job.direct else "off",
        cache="warm",  # buffered: cached, as fio's file is after it was written; O_DIRECT: ignored
        submit="each",  # fio's default: iodepth_batch_submit=1
        reap="one",  # fio's default: iodepth_batch_complete_max=1
        file_size=size,
        dir=folder,
        out=None,
        warmup=1,
        min_reps=reps,
        max_reps=reps,
        max_case_time="3600s",
        target_ci=0,
        engine="native",
    )
    rows = run.records()
    (case,) = run.meta["cases"]
    if case.get("status") != "ok" or not all(row.get("integrity_ok") for row in rows):
        raise RuntimeError(f"iobench {job} failed: {case.get('reason') or case}")
    merged = histogram.merge(row["lat_hist"] for row in rows)
    return {
        "iops": statistics.median(float(row["iops"]) for row in rows),
        "p50": histogram.percentile(merged, 0.50),
        "p99": histogram.percentile(merged, 0.99),
        "ios": float(sum(row["ops"] for row in rows)),
    }


@contextlib.contextmanager
def shared_file(path: Path, size: int) -> Iterator[None]:
    """A new random file at ``path`` that iobench's async-io case reads too: while this holds,
    the case's own file is a hard link to it instead of a new one (same blocks as fio's)."""
    create_random_file(path, size)
    made = async_io.create_random_file
    async_io.create_random_file = lambda target, _size: os.link(path, target)  # type: ignore[assignment]
    try:
        yield
    finally:
        async_io.create_random_file = made
        path.unlink()


#: The plain C loop (qd1_pread.c) of each engine: the yardstick at QD 1 on the disk.
C_KINDS = {"psync": "pread", "libaio": "aio", "io_uring": "uring"}


def build_c_loop(folder: Path) -> Path | None:
    """qd1_pread.c compiled into ``folder``; None without a C compiler."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    binary = folder / "qd1_pread"
    subprocess.run([compiler, "-O2", "-o", str(binary), str(HERE / "qd1_pread.c")], check=True)
    return binary


def c_loop_iops(binary: Path, path: Path, size: int, passes: int, kind: str) -> float:
    """The C loop's median IOPS of ``passes`` passes over the file (qd1_pread.c's ENGINE ``kind``:
    pread, aio, uring, uring2)."""
    args = [str(binary), str(path), str(size), str(passes), str(BS), kind]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=600).stdout
    return statistics.median(float(line) for line in out.split())


def c_round(binary: Path, job: Job, path: Path, size: int, passes: int) -> dict[str, float]:
    """The plain C loop's IOPS (median of ``passes`` passes) over the file at QD 1."""
    return {"iops": c_loop_iops(binary, path, size, passes, C_KINDS[job.engine])}


def measure(job: Job, args: argparse.Namespace) -> dict[str, Any]:
    """``args.rounds`` rounds, then two more at a time (up to ``args.max_rounds``) while an
    interval still holds a target's bound (`undecided`), so more rounds can move a row either way.
    At QD 1 on the disk a plain C loop (``args.c_loop``) runs in every round too."""
    tools = ["fio", "iobench"]
    if job.direct and job.qd == 1 and getattr(args, "c_loop", None) is not None:
        tools.append("c")
    rounds: dict[str, list[dict[str, float]]] = {tool: [] for tool in tools}
    while True:
        index = len(rounds["fio"])
        order = tools[index % len(tools) :] + tools[: index % len(tools)]  # each tool first in turn
        with tempfile.TemporaryDirectory(dir=job.folder, prefix="iobench-fio-") as folder:
            path = Path(folder) / "round.bin"
            with shared_file(path, args.size), busy_cpu(job.regime == "busy"):
                for tool in order:
                    if tool == "fio":
                        rounds["fio"].append(fio_round(job, path, args.size, args.reps, args.runtime))
                    elif tool == "iobench":
                        rounds["iobench"].append(iobench_round(job, args.size, args.reps, Path(folder)))
                    else:
                        rounds["c"].append(c_round(args.c_loop, job, path, args.size, args.reps))
        done = index + 1
        if done < args.max_rounds and (done < args.rounds or (done - args.rounds) % 2):
            continue  # added rounds come in pairs
        row = summarize(job, rounds)
        if done >= args.max_rounds or not undecided(row):
            return row


def summarize(job: Job, rounds: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Each tool's median, and iobench/fio per round: median ratio and its interval."""
    row: dict[str, Any] = {"regime": job.regime, "engine": job.engine, "qd": job.qd, "rounds": rounds}
    for tool, values in rounds.items():
        for key in ("iops", "p50", "p99"):
            if key in values[0]:  # the C loop gives IOPS only
                row[f"{tool}_{key}"] = statistics.median(v[key] for v in values)
    pairs = [(key, "fio", key) for key in ("iops", "p50", "p99")]
    if "c" in rounds:
        pairs.append(("iops", "c", "c_iops"))  # iobench over the plain C loop
    for key, other, name in pairs:
        ratios = [
            mine[key] / theirs[key] for mine, theirs in zip(rounds["iobench"], rounds[other], strict=True)
        ]
        interval = median_interval(ratios)
        row[f"{name}_ratios"] = ratios
        row[f"{name}_ratio"] = median(ratios)
        row[f"{name}_low"], row[f"{name}_high"] = interval.low, interval.high
        row[f"{name}_coverage"] = interval.confidence
    return row


def undecided(row: dict[str, Any]) -> bool:
    """A checked row whose interval still holds a target's bound, on either side of it: more
    rounds can tell (one round moves by 10%). Rows above and below the bound both get them, so
    adding rounds does not favour passing."""
    if row["engine"] not in CHECKED:
        return False
    iops_open = row["iops_low"] < IOPS_TARGET <= row["iops_high"]
    p50_open = row["regime"] in P50_CHECKED and any(
        row["p50_low"] < bound < row["p50_high"] for bound in (1 - P50_TOLERANCE, 1 + P50_TOLERANCE)
    )
    return iops_open or p50_open


def _p50_off(ratio: float | None) -> bool:
    return ratio is not None and round(abs(ratio - 1), 9) > P50_TOLERANCE


def verdict(row: dict[str, Any]) -> str:
    """ "" when the row meets the targets (or is not checked: psync), else what it missed."""
    if row["engine"] not in CHECKED:
        return ""
    missed = []
    iops = row["iops_ratio"]
    if iops is not None and iops < IOPS_TARGET:
        high = row["iops_high"]
        noise = (
            " (its interval reaches 1: not a measurable difference)" if high is not None and high >= 1 else ""
        )
        missed.append(f"IOPS {iops:.3f} of fio's{noise}")
    p50 = row["p50_ratio"]
    if row["regime"] in P50_CHECKED and _p50_off(p50):
        missed.append(f"p50 {p50:.3f}x fio's")
    return "; ".join(missed)


def idle_wakeup(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """For a disk row at QD 1 that missed: a sentence when the miss is not iobench's loop, else "".
    All must hold: a plain C loop on the same files is no faster than iobench (iobench/C >= 0.95);
    with the CPU kept busy (the busy row) iobench meets both targets; and the miss is within
    EXCUSE_FLOOR (IOPS >= 0.85 of fio's, p50 <= 1.2x), so a gross regression is never excused."""
    if row["regime"] != "disk" or row["qd"] != BUSY_QD:
        return ""
    c_ratio = row.get("c_iops_ratio")
    if c_ratio is None or c_ratio < IOPS_TARGET:
        return ""
    if row["iops_ratio"] < EXCUSE_FLOOR or (
        row["p50_ratio"] is not None and row["p50_ratio"] > 2 - EXCUSE_FLOOR
    ):
        return ""
    for other in rows:
        same = (other["regime"], other["engine"], other["qd"]) == ("busy", row["engine"], row["qd"])
        if same and other["iops_ratio"] >= IOPS_TARGET and not _p50_off(other["p50_ratio"]):
            return (
                f"a plain C loop on the same files did no better (iobench/C {c_ratio:.3f}), and with the CPU "
                f"kept busy iobench/fio is {other['iops_ratio']:.3f}, p50 {other['p50_ratio']:.3f}x: the gap is "
                "the virtual CPU's wake-up from idle, not iobench's loop"
            )
    return ""


def _ratio(row: dict[str, Any], key: str) -> str:
    ratio, low, high = row[f"{key}_ratio"], row[f"{key}_low"], row[f"{key}_high"]
    if ratio is None:
        return "-"
    if low is None or high is None or not low > 0 or high == float("inf"):
        return f"{ratio:.3f}"
    return f"{ratio:.3f} ({low:.2f}–{high:.2f})"


REGIME_NAMES = {
    "disk": "disk, O_DIRECT",
    "busy": "disk, O_DIRECT, CPU kept busy",
    "cache": "page cache, buffered",
    "tmpfs": "tmpfs, buffered",
}
HEADERS = (
    "regime",
    "engine",
    "QD",
    "fio IOPS",
    "iobench IOPS",
    "rounds",
    "iobench/fio IOPS (interval)",
    "iobench/C",
    "fio p50",
    "iobench p50",
    "p50 ratio",
    "fio p99",
    "iobench p99",
)


def cells(row: dict[str, Any]) -> list[str]:
    regime = REGIME_NAMES[row["regime"]]
    return [
        regime,
        row["engine"],
        str(row["qd"]),
        f"{row['fio_iops']:,.0f}",
        f"{row['iobench_iops']:,.0f}",
        str(len(row["iops_ratios"])),
        _ratio(row, "iops"),
        _ratio(row, "c_iops") if "c_iops_ratio" in row else "-",
        format_duration(row["fio_p50"]),
        format_duration(row["iobench_p50"]),
        _ratio(row, "p50"),
        format_duration(row["fio_p99"]),
        format_duration(row["iobench_p99"]),
    ]


def render(rows: list[dict[str, Any]]) -> tuple[Table, str]:
    table = Table(
        title=f"iobench async-io vs fio: randread {format_size(BS)} (targets: IOPS >= {IOPS_TARGET} of fio's, p50 within {P50_TOLERANCE:.0%} on the disk)"
    )
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("regime", "engine") else "right")
    markdown = ["| " + " | ".join(HEADERS) + " |", "|---|---|" + "---:|" * (len(HEADERS) - 2)]
    for row in rows:
        shown = cells(row)
        table.add_row(*shown)
        markdown.append("| " + " | ".join(shown) + " |")
    return table, "\n".join(markdown)


def facts(args: argparse.Namespace) -> dict[str, Any]:
    host = hostinfo.host_facts()
    fio = subprocess.run(["fio", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    disk = hostinfo.target_facts(Path(args.dir))
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "kernel": platform.release(),
        "cpu_model": host.get("cpu_model"),
        "cpus": host.get("cpu_count"),
        "hypervisor": host.get("hypervisor"),
        "fio": fio,
        "disk": f"{disk.get('fs_type')} on {disk.get('block_device')} (scheduler {disk.get('scheduler')})",
        "tmpfs": str(args.tmpfs),
        "size": args.size,
        "rounds": args.rounds,
        "max_rounds": args.max_rounds,
        "reps": args.reps,
        "pinned_cpu": args.cpu,
        "c_loop": getattr(args, "c_loop", None) is not None,
        "load_average_start": list(os.getloadavg()),
        "git": (hostinfo.git_facts(HERE) or {}).get("describe"),
    }


def _coverage(rounds: int) -> str:
    """The interval's coverage with this many rounds (at least 95% from 6 rounds on)."""
    return f"{median_interval([0.0] * rounds).confidence:.1%}" if rounds else "no"


def describe(info: dict[str, Any]) -> list[str]:
    return [
        f"{info['date']}, {info['cpu_model']} x{info['cpus']}"
        + (" (under a hypervisor)" if info["hypervisor"] else "")
        + f", kernel {info['kernel']}, {info['fio']}, iobench {info['git'] or '?'}",
        f"disk regime: {info['disk']}, O_DIRECT; busy: the same at QD {BUSY_QD} with a SCHED_IDLE spinner on "
        "the pinned CPU; cache regime: the same filesystem, buffered, every page "
        f"cached; tmpfs regime: {info['tmpfs']}, buffered. "
        f"File {format_size(info['size'])}, new each round, read by both tools; {info['rounds']} interleaved rounds (up to {info['max_rounds']} where a miss was within the noise) of "
        f"{info['reps']} passes per tool (iobench: one untimed warm-up pass first; fio: loops={info['reps']}).",
        f"load average at start {' '.join(f'{v:.2f}' for v in info['load_average_start'])}, at end "
        f"{' '.join(f'{v:.2f}' for v in info['load_average_end'])}; "
        + (f"pinned to CPU {info['pinned_cpu']}" if info["pinned_cpu"] is not None else "not pinned"),
        "IOPS: fio's job IOPS, iobench's median repetition; p50/p99: total latency (fio lat_percentiles=1; "
        "iobench: submitting call to completion, all repetitions' histograms merged; both with fio's loop: "
        "one IO per submitting call, one completion taken per wait). iobench/fio: median of the rounds' "
        "ratios (both tools on the same new file each round) with a distribution-free interval (order "
        f"statistics: {_coverage(info['rounds'])} coverage with {info['rounds']} rounds, at least 95% from 6 on).",
        "iobench/C: at QD 1 on the disk, iobench over a plain C loop of the same engine (qd1_pread.c: pread; "
        "io_submit + io_getevents; one io_uring_enter per IO with fio's ring flags) in the same rounds"
        + ("." if info["c_loop"] else ": not run, no C compiler."),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="folder on the disk under test (default: here)")
    parser.add_argument("--tmpfs", default="/dev/shm", help="a tmpfs folder for the buffered regime")
    parser.add_argument(
        "--regimes",
        default=None,
        help="any of disk, busy (needs --cpu), cache, tmpfs (default: all four, busy only with --cpu)",
    )
    parser.add_argument("--engines", default="psync,libaio,io_uring")
    parser.add_argument("--qd", default="1,4,16,32,64", help="queue depths (psync: 1 only)")
    parser.add_argument("--size", default="64MiB", help="file size: one pass is size / 4 KiB reads")
    parser.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="interleaved rounds per job (6 or more: an interval of 95%% or more)",
    )
    parser.add_argument(
        "--max-rounds",
        type=int,
        default=16,
        help="rounds at most, added two at a time while an interval holds a target's bound",
    )
    parser.add_argument("--reps", type=int, default=3, help="passes per tool per round")
    parser.add_argument("--runtime", type=int, default=60, help="fio's runtime cap per run, seconds")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process and fio to a CPU")
    parser.add_argument("--out", default="results/fio", help="where the JSON and Markdown land")
    args = parser.parse_args(argv)
    if args.regimes is None:
        args.regimes = "disk,busy,cache,tmpfs" if args.cpu is not None else "disk,cache,tmpfs"
    args.regimes = [r for r in args.regimes.split(",") if r]
    args.engines = [e for e in args.engines.split(",") if e]
    args.qd = [int(q) for q in args.qd.split(",") if q]
    args.size = parse_size(args.size)
    args.max_rounds = max(args.max_rounds, args.rounds)
    unknown = sorted(set(args.regimes) - set(REGIME_NAMES))
    if unknown:
        print(
            f"Error: unknown regime {', '.join(unknown)} (choose from {', '.join(REGIME_NAMES)})",
            file=sys.stderr,
        )
        return 2
    if "busy" in args.regimes and args.cpu is None:
        print("Error: the busy regime needs --cpu (the spinner must share the tools' CPU)", file=sys.stderr)
        return 2
    if "tmpfs" in args.regimes and hostinfo.target_facts(Path(args.tmpfs)).get("fs_type") != "tmpfs":
        print(f"Error: --tmpfs {args.tmpfs} is not a tmpfs", file=sys.stderr)
        return 2
    if shutil.which("fio") is None:
        print(
            "Error: fio is not installed (make bench-fio installs Debian's package as root)", file=sys.stderr
        )
        return 2
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})  # fio, iobench's cases, the C loop and the spinner inherit it
    # SIGTERM (a timeout) unwinds like Ctrl-C: temporary files go, the spinner is killed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix="iobench-fio-c-") as build:
        args.c_loop = build_c_loop(Path(build))
        return run_jobs(args)


def run_jobs(args: argparse.Namespace) -> int:
    """Every job, the table, the files; 1 when a target is missed."""
    info = facts(args)
    console = Console(stderr=True)
    rows = []
    for job in plan(args):
        started = time.perf_counter()
        row = measure(job, args)
        rows.append(row)
        console.print(
            f"{job.regime} {job.engine} qd {job.qd}: fio {row['fio_iops']:,.0f} IOPS, iobench "
            f"{row['iobench_iops']:,.0f} ({_ratio(row, 'iops')}), p50 {_ratio(row, 'p50')}"
            + (f", iobench/C {_ratio(row, 'c_iops')}" if "c_iops_ratio" in row else "")
            + " "
            f"[{time.perf_counter() - started:.0f} s]",
            highlight=False,
            soft_wrap=True,
        )
    info["load_average_end"] = list(os.getloadavg())
    table, markdown = render(rows)
    lines = describe(info)
    out_console = Console(width=220)
    for line in lines:
        out_console.print(line, highlight=False)
    out_console.print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"fio-{stamp}.md").write_text("\n\n".join(lines) + "\n\n" + markdown + "\n")
    (out / f"fio-{stamp}.json").write_text(json.dumps({"facts": info, "rows": rows}, indent=1))
    print(f"written: {out}/fio-{stamp}.md")
    missed, explained = [], []
    for row in rows:
        if missed_by := verdict(row):
            busy = idle_wakeup(row, rows)
            where = f"{row['regime']} {row['engine']} qd {row['qd']}: {missed_by}"
            (explained if busy else missed).append(where + (f" ({busy})" if busy else ""))
    if explained:
        print("missed only where the CPU idles between IOs: " + "; ".join(explained))
    if missed:
        print("targets missed at: " + "; ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
