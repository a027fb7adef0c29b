"""Book-shaped tables built from per-case summaries (``iobench.metrics.summarize``)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from iobench.experiments.base import Column
from iobench.metrics import format_param, format_value


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


def book_table(summary: pd.DataFrame, experiment: Any) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Tables in the experiment's (the class's) declared columns: one per combination of the
    parameters that are not its axis, one row per axis value (TLPI's shape for rw-buffer).
    """
    rows = summary[summary["experiment"] == experiment.name]
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
            {axis: [format_param(experiment, axis, v) for v in group[axis]]}
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


def describe_group(experiment: Any, key: dict[str, Any]) -> str:
    """``mode=copy, file_size=100MiB, cache=cold`` for a table heading."""
    return ", ".join(f"{name}={format_param(experiment, name, value)}" for name, value in key.items())
