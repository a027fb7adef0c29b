"""Synthetic runs for report tests: real shapes (rows as the engine writes them), chosen numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from iobench import SCHEMA_VERSION
from iobench.results import ResultSet

FILE_SIZE = 1 << 20


def meta(
    run_id: str, hostname: str = "box", fs_type: str = "ext4", warnings: list[str] | None = None
) -> dict:
    """A meta.json as a run writes it (the fields reports read)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "complete",
        "command": ["iobench", "run", "sweep", "quick"],
        "started": "2026-11-21T10:00:00+00:00",
        "finished": "2026-11-21T10:01:00+00:00",
        "engine": "python",
        "counter_source": "/proc/thread-self/io",
        "host": {"hostname": hostname, "kernel": "6.1", "cpu_model": "CPU", "cpu_count": 2, "python": "3.11"},
        "target": {"path": "/data", "fs_type": fs_type, "block_device": "vda", "scheduler": "none"},
        "warnings": warnings or [],
    }


def rw_rows(run_id: str, speed: dict[int, float], reps: int = 5) -> list[dict[str, Any]]:
    """rw-buffer read rows, warm cache: ``speed`` maps bs to bytes/s; kernel takes 3/4 of CPU."""
    rows = []
    for bs, rate in speed.items():
        for rep in range(1, reps + 1):
            elapsed = FILE_SIZE / rate * 1e9 * (1 + 0.02 * rep)
            rows.append(
                {
                    "run_id": run_id,
                    "experiment": "rw-buffer",
                    "case": f"mode=read,file_size={FILE_SIZE},bs={bs},cache=warm",
                    "rep": rep,
                    "status": "ok",
                    "engine": "python",
                    "target_fs": "ext4",
                    "elapsed_ns": elapsed,
                    "cpu_ns": elapsed,
                    "user_ns": elapsed / 4,
                    "sys_ns": elapsed * 3 / 4,
                    "bytes": FILE_SIZE,
                    "ops": FILE_SIZE // bs + 1,
                    "syscalls_read": FILE_SIZE // bs + 1,
                    "syscalls_write": 0,
                    "mode": "read",
                    "file_size": FILE_SIZE,
                    "bs": bs,
                    "cache": "warm",
                    "resident_before": 1.0,
                }
            )
    return rows


def racing_rows(run_id: str, lost: int) -> list[dict[str, Any]]:
    """file-concurrency rows: write-racing with ``lost`` records lost, pwrite with none."""
    rows = []
    for mode, missing in (("write-racing", lost), ("pwrite", 0)):
        for rep in range(1, 6):
            rows.append(
                {
                    "run_id": run_id,
                    "experiment": "file-concurrency",
                    "case": f"mode={mode},threads=4",
                    "rep": rep,
                    "status": "ok",
                    "elapsed_ns": 1e6 * rep,
                    "cpu_ns": 1e6,
                    "user_ns": 5e5,
                    "sys_ns": 5e5,
                    "bytes": 400_000,
                    "ops": 4000,
                    "mode": mode,
                    "threads": 4,
                    "cache": "warm",
                    "records": 1000,
                    "record_size": 100,
                    "file_size": FILE_SIZE,
                    "records_written": 4000,
                    "records_lost": missing,
                    "records_torn": 0,
                    "integrity_ok": missing == 0,
                }
            )
    return rows


def unsupported_rows(run_id: str) -> list[dict[str, Any]]:
    """One direct-io case the kernel refused, as the engine records it."""
    return [
        {
            "run_id": run_id,
            "experiment": "direct-io",
            "case": "mode=read,io=direct,bs=4096,align=misaligned",
            "rep": 0,
            "status": "unsupported",
            "status_reason": "EINVAL: O_DIRECT refused a misaligned buffer",
        }
    ]


def make_run(
    run_id: str,
    speed: dict[int, float] | None = None,
    lost: int | None = None,
    unsupported: bool = False,
    **meta_args: Any,
) -> ResultSet:
    """A ResultSet with the chosen experiments' rows."""
    rows: list[dict[str, Any]] = []
    if speed is not None:
        rows += rw_rows(run_id, speed)
    if lost is not None:
        rows += racing_rows(run_id, lost)
    if unsupported:
        rows += unsupported_rows(run_id)
    frame = (
        pd.DataFrame(rows)
        if rows
        else pd.DataFrame(columns=["run_id", "experiment", "case", "rep", "status"])
    )
    return ResultSet(frame=frame, meta=meta(run_id, **meta_args))


def write_run(folder: Path, run: ResultSet) -> Path:
    """Write the run as a run folder (meta.json + results.csv) and return its path."""
    path = folder / run.run_id
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps(run.meta))
    run.frame.to_csv(path / "results.csv", index=False)
    return path


#: Throughput that keeps paying up to 64 KiB, and one that flattens after 4 KiB.
STEEP = {1: 1e6, 16: 1.6e7, 256: 2.5e8, 4096: 2e9, 65536: 8e9}
FLAT = {1: 1e6, 16: 1.6e7, 256: 2.5e8, 4096: 2e9, 65536: 2.05e9}


def spread_factors(reps: int, spread: float) -> list[float]:
    """Deterministic per-repetition factors 1-spread .. 1+spread, evenly spaced (median 1)."""
    if reps == 1:
        return [1.0]
    return [1 + spread * (2 * i / (reps - 1) - 1) for i in range(reps)]


def socket_rows(
    experiment: str, cases: list[dict[str, Any]], reps: int = 5, spread: float = 0.02
) -> list[dict[str, Any]]:
    """Rows of a socket experiment: each case's parameters and metrics as given, ``bytes_per_s``
    set through elapsed_ns (``rate``, default 1 GB/s), ``reps`` repetitions whose elapsed time
    spreads by +-``spread`` around the rate's."""
    rows = []
    for case in cases:
        case = dict(case)
        rate = case.pop("rate", 1e9)
        moved = case.setdefault("bytes", 1 << 20)
        elapsed = moved / rate * 1e9
        for rep, factor in enumerate(spread_factors(reps, spread), start=1):
            took = elapsed * factor
            base = {"elapsed_ns": took, "cpu_ns": took / 2, "user_ns": took / 4, "sys_ns": took / 4}
            rows.append(
                {
                    "run_id": "a",
                    "experiment": experiment,
                    "case": str(sorted(case.items())),
                    "rep": rep,
                    "status": "ok",
                    "engine": "python",
                    "ops": 100,
                }
                | base
                | case
            )
    return rows


def socket_summary(experiment: str, cases: list[dict[str, Any]]) -> pd.DataFrame:
    """The per-case summary of ``socket_rows`` (through a CSV round trip, as a report reads it)."""
    import io

    from iobench.metrics import summarize

    buffer = io.StringIO()
    pd.DataFrame(socket_rows(experiment, cases)).to_csv(buffer, index=False)
    buffer.seek(0)
    return summarize(pd.read_csv(buffer))


def case_rows(
    experiment: Any, cases: list[dict[str, Any]], reps: int = 5, spread: float = 0.02, run_id: str = "a"
) -> list[dict[str, Any]]:
    """Repetition rows of ``experiment`` (the class) as the engine writes them, for chosen cases.

    Each case maps parameters and metrics. Parameters not given take their declared default;
    the case id comes from ``iobench.params.case_id``. ``elapsed_ns`` (default 1 ms) spreads by
    +-``spread`` over the repetitions (``_spread`` overrides it per case), ``cpu_ns`` follows it
    unless given; a list value gives one value per repetition. ``bytes`` defaults to 1 MiB and
    ``ops`` to 1000.
    """
    from iobench.params import case_id

    rows = []
    for case in cases:
        case = dict(case)
        spread_here = case.pop("_spread", spread)
        params = {}
        for param in experiment.params:
            default = param.default[0] if isinstance(param.default, tuple) else param.default
            params[param.name] = case.pop(param.name, default)
        elapsed = case.pop("elapsed_ns", 1e6)
        cpu = case.pop("cpu_ns", None)
        for index, factor in enumerate(spread_factors(reps, spread_here)):
            took = elapsed[index] if isinstance(elapsed, list) else elapsed * factor
            row = {
                "run_id": run_id,
                "experiment": experiment.name,
                "case": case_id(experiment.params, params),
                "rep": index + 1,
                "status": "ok",
                "engine": "native",
                "target_fs": "ext4",
                "elapsed_ns": took,
                "cpu_ns": took if cpu is None else (cpu[index] if isinstance(cpu, list) else cpu * factor),
                "bytes": 1 << 20,
                "ops": 1000,
            }
            row |= params
            row |= {k: (v[index] if isinstance(v, list) else v) for k, v in case.items()}
            rows.append(row)
    return rows


def case_summary(
    experiment: Any, cases: list[dict[str, Any]], reps: int = 5, spread: float = 0.02, csv: bool = True
) -> pd.DataFrame:
    """The per-case summary of ``case_rows`` as a report makes it: through results.csv (when
    ``csv``) and ``iobench.metrics.summarize``."""
    import io

    from iobench.metrics import summarize

    frame = pd.DataFrame(case_rows(experiment, cases, reps, spread))
    if csv:
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        buffer.seek(0)
        frame = pd.read_csv(buffer)
    return summarize(frame)
