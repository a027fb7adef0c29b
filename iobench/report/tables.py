"""Per-case summaries of the tidy rows, and the tables built from them.

Derived rates are computed here from stored base units; nothing here is written back.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from iobench.experiments import get_experiment
from iobench.experiments.base import Column
from iobench.units import format_duration, format_rate, format_size

#: Row columns that identify a case rather than measure it.
_IDENTITY = {"run_id", "experiment", "case", "rep", "status", "status_reason", "engine", "target_fs"}


def _combine(series: pd.Series) -> Any:
    """Median of numbers; all() of booleans; the value itself when all agree, else 'mixed'."""
    values = series.dropna()
    if values.empty:
        return math.nan
    if values.map(lambda v: isinstance(v, bool)).all():
        return bool(values.all())
    if pd.api.types.is_numeric_dtype(values):
        return values.median()
    unique = values.astype(str).unique()
    return unique[0] if len(unique) == 1 else "mixed"


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, experiment, case): medians and checks over its repetitions."""
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    keys = [c for c in ("run_id", "experiment", "case") if c in ok.columns]
    records = []
    for key, group in ok.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        record: dict[str, Any] = dict(zip(keys, key, strict=True))
        experiment = get_experiment(record["experiment"])
        params = {p.name for p in experiment.params}
        for name in params:
            record[name] = group[name].iloc[0]
        record["reps"] = len(group)
        if "engine" in group.columns:  # which loops measured it: native C or Python
            record["engine"] = _combine(group["engine"])
        for column in group.columns:
            if column not in _IDENTITY and column not in params:
                record[column] = _combine(group[column])
        rates = group["bytes"] / (group["elapsed_ns"] / 1e9)
        record["bytes_per_s"] = rates.median()
        record["bytes_per_s_low"] = rates.min()
        record["bytes_per_s_high"] = rates.max()
        records.append(record)
    return pd.DataFrame.from_records(records)


def format_value(value: Any, unit: str) -> str:
    """Human form of one summary value in the column's unit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "text" or isinstance(value, str | bool):
        return str(value)
    if unit == "duration":
        return format_duration(value)
    if unit == "size":
        return format_size(value)
    if unit == "rate":
        return format_rate(value)
    if unit == "percent":
        return f"{value:.0%}"
    if unit == "ratio":
        return f"{value:.3g}"
    return f"{round(value):,}"


def _raw_cell(record: pd.Series, column: Column) -> Any:
    value = record.get(column.metric, math.nan)
    if column.per is not None:
        divisor = record.get(column.per, math.nan)
        if isinstance(value, str | bool) or not divisor or divisor != divisor:
            return math.nan
        value = value / divisor * column.scale
    return value


def _column_values(group: pd.DataFrame, column: Column) -> list[str]:
    values = [_raw_cell(record, column) for _, record in group.iterrows()]
    if column.relative_to is not None:
        name, reference = column.relative_to
        matches = [v for v, (_, r) in zip(values, group.iterrows(), strict=True) if str(r[name]) == reference]
        base = matches[0] if matches else math.nan
        values = [v / base if base and base == base and not isinstance(v, str) else math.nan for v in values]
    return [format_value(v, column.unit) for v in values]


def book_table(summary: pd.DataFrame, experiment_name: str) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Tables in the experiment's declared columns: one per combination of the parameters
    that are not its axis, one row per axis value (TLPI's shape for rw-buffer).
    """
    experiment = get_experiment(experiment_name)
    rows = summary[summary["experiment"] == experiment_name]
    if rows.empty:
        return []
    names = [p.name for p in experiment.params]
    varying = [name for name in names if rows[name].nunique() > 1]
    # The declared axis when it varies, else the first parameter that does: one table with
    # several rows reads better than several tables of one row.
    if experiment.table_axis in varying:
        axis = experiment.table_axis
    elif experiment.x_param in varying or not varying:
        axis = experiment.x_param or names[0]
    else:
        axis = varying[0]
    group_keys = [name for name in varying if name != axis]
    constant = {name: rows[name].iloc[0] for name in names if name not in varying and name != axis}
    if "run_id" in rows and rows["run_id"].nunique() > 1:
        group_keys = ["run_id", *group_keys]
    tables = []
    grouped = rows.groupby(group_keys, sort=False) if group_keys else [((), rows)]
    for key, group in grouped:
        key = key if isinstance(key, tuple) else (key,)
        if axis in (experiment.x_param, experiment.table_axis):
            group = group.sort_values(axis, key=_declared_order(experiment, axis))
        table = pd.DataFrame(
            {axis: [format_param(experiment_name, axis, v) for v in group[axis]]}
            | {c.title: _column_values(group, c) for c in experiment.columns}
            | {"Reps": group["reps"].astype(int).astype(str).tolist()}
        )
        tables.append((constant | dict(zip(group_keys, key, strict=True)), table))
    return tables


def _declared_order(experiment: Any, axis: str) -> Any:
    """Sort key: numbers as numbers, choices in the order the parameter declares them."""
    param = next(p for p in experiment.params if p.name == axis)
    if param.choices:
        order = {choice: index for index, choice in enumerate(param.choices)}
        return lambda series: series.map(lambda v: order.get(str(v), len(order)))
    return None


def describe_group(experiment_name: str, key: dict[str, Any]) -> str:
    """``mode=copy, file_size=100MiB, cache=cold`` for a table heading."""
    return ", ".join(f"{name}={format_param(experiment_name, name, value)}" for name, value in key.items())


def format_param(experiment_name: str, name: str, value: Any) -> str:
    """A parameter value as its declaration spells it (pandas turns ints into floats)."""
    for param in get_experiment(experiment_name).params:
        if param.name == name:
            return param.format(int(value) if isinstance(value, float) and value.is_integer() else value)
    return str(value)
