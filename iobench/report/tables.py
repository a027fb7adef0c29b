"""Per-case summaries of the tidy rows, and the book-shaped tables built from them.

Derived rates are computed here from stored base units; nothing here is written back.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from iobench.experiments import get_experiment
from iobench.units import format_duration, format_rate, format_size

#: Metrics summarised by their median over a case's repetitions.
MEDIAN_METRICS = (
    "elapsed_ns",
    "cpu_ns",
    "user_ns",
    "sys_ns",
    "bytes",
    "ops",
    "syscalls_read",
    "syscalls_write",
    "disk_read_bytes",
    "disk_write_bytes",
    "minflt",
    "majflt",
    "ctx_vol",
    "ctx_invol",
    "resident_before",
)


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, experiment, case): medians, spread and checks over its repetitions."""
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    keys = [c for c in ("run_id", "experiment", "case") if c in ok.columns]
    records = []
    for key, group in ok.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        record: dict[str, Any] = dict(zip(keys, key, strict=True))
        experiment = get_experiment(record["experiment"])
        for param in experiment.params:
            record[param.name] = group[param.name].iloc[0]
        record["reps"] = len(group)
        for metric in MEDIAN_METRICS:
            if metric in group:
                record[metric] = group[metric].median()
        rates = group["bytes"] / (group["elapsed_ns"] / 1e9)
        record["bytes_per_s"] = rates.median()
        record["bytes_per_s_low"] = rates.min()
        record["bytes_per_s_high"] = rates.max()
        for check in ("cache_verified", "integrity_ok"):
            if check in group and group[check].notna().any():
                record[check] = bool(group[check].dropna().astype(bool).all())
        records.append(record)
    return pd.DataFrame.from_records(records)


def book_table(summary: pd.DataFrame, experiment_name: str) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """TLPI-shaped tables: one per combination of the non-axis parameters, one row per axis value.

    Columns: the axis (e.g. bs), Elapsed, Total CPU, User CPU, System CPU (medians), then the
    syscalls actually made, throughput, block-layer reads, resident fraction and repetitions.
    """
    experiment = get_experiment(experiment_name)
    rows = summary[summary["experiment"] == experiment_name]
    if rows.empty:
        return []
    axis = experiment.x_param
    group_keys = [p.name for p in experiment.params if p.name != axis]
    if "run_id" in rows and rows["run_id"].nunique() > 1:
        group_keys = ["run_id", *group_keys]
    tables = []
    for key, group in rows.groupby(group_keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        if axis:
            group = group.sort_values(axis)
        table = pd.DataFrame(
            {
                (axis or "case"): [_format_param(experiment_name, axis, v) for v in group[axis or "case"]],
                "Elapsed": group["elapsed_ns"].map(format_duration),
                "Total CPU": group["cpu_ns"].map(format_duration),
                "User CPU": group["user_ns"].map(format_duration),
                "System CPU": group["sys_ns"].map(format_duration),
                "read()s": group["syscalls_read"].map(_count),
                "write()s": group["syscalls_write"].map(_count),
                "Throughput": group["bytes_per_s"].map(format_rate),
                "Disk read": group["disk_read_bytes"].map(format_size),
                "Resident before": group.get("resident_before", pd.Series(math.nan, index=group.index)).map(
                    _percent
                ),
                "Reps": group["reps"].astype(int).astype(str),
            }
        )
        tables.append((dict(zip(group_keys, key, strict=True)), table))
    return tables


def describe_group(experiment_name: str, key: dict[str, Any]) -> str:
    """``mode=copy, file_size=100 MiB, cache=cold`` for a table heading."""
    return ", ".join(f"{name}={_format_param(experiment_name, name, value)}" for name, value in key.items())


def _format_param(experiment_name: str, name: str | None, value: Any) -> str:
    if name is None:
        return str(value)
    for param in get_experiment(experiment_name).params:
        if param.name == name:
            return param.format(int(value) if isinstance(value, float) and value.is_integer() else value)
    return str(value)


def _count(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{round(value):,}"


def _percent(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.0%}"
