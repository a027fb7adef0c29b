"""Helpers for "what this shows": sentences computed from one run's per-case summary.

Experiments call these from their ``explain`` classmethod; nothing here knows a particular
experiment. Every helper copes with missing cases by returning None (the sentence is skipped).

The noise rule: a sentence may call one case faster, slower, larger or smaller than another
only when ``difference`` finds the gap measurable (the 95% Hodges-Lehmann interval of the pair
excludes "no difference"); otherwise it says "no measurable difference" with the interval.
``contrast`` words both outcomes, so an explanation cannot forget the second one.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pandas as pd

from iobench import stats
from iobench.metrics import format_param, format_value

#: A larger buffer "stops paying" when the next step gains less than this.
PLATEAU_GAIN = 0.05


def finite(value: Any) -> bool:
    """True for a real number (not NaN, not text, not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def select(summary: pd.DataFrame, **params: Any) -> pd.DataFrame:
    """Rows whose parameters equal the given values: numbers as numbers (CSV turns 0 into
    0.0), anything else as text.
    """
    rows = summary
    for name, value in params.items():
        if name not in rows:
            return rows.iloc[0:0]
        if finite(value):
            rows = rows[pd.to_numeric(rows[name], errors="coerce") == value]
        else:
            rows = rows[rows[name].astype(str) == str(value)]
    return rows


def one(summary: pd.DataFrame, metric: str, **params: Any) -> float | None:
    """The metric of the single case matching params (first if several), or None."""
    rows = select(summary, **params)
    if rows.empty or metric not in rows:
        return None
    value = rows[metric].iloc[0]
    return float(value) if finite(value) else None


def per(summary: pd.DataFrame, metric: str, divisor: str, **params: Any) -> float | None:
    """metric / divisor of the case matching params, or None."""
    top, bottom = one(summary, metric, **params), one(summary, divisor, **params)
    if top is None or not bottom:
        return None
    return top / bottom


def plateau(rows: pd.DataFrame, x: str, metric: str = "bytes_per_s", gain: float = PLATEAU_GAIN) -> Any:
    """The first x value after which the next larger x improves ``metric`` by less than
    ``gain`` (higher is better); None with fewer than two points or when it never flattens.
    """
    points = rows[[x, metric]].dropna().sort_values(x)
    values = list(points.itertuples(index=False, name=None))
    for (x0, y0), (_, y1) in itertools.pairwise(values):
        if y0 > 0 and (y1 - y0) / y0 < gain:
            return x0
    return None


def fmt(experiment: Any, name: str, value: Any) -> str:
    """A parameter value as the experiment (the class) spells it (4KiB, O_SYNC)."""
    return format_param(experiment, name, value)


def times(ratio: float) -> str:
    """``12x`` / ``1.4x`` / ``0.31x``: a factor with sensible precision."""
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2g}x" if ratio < 1 else f"{ratio:.1f}x"


def samples(summary: pd.DataFrame, metric: str, **params: Any) -> tuple[float, ...] | None:
    """Per-repetition values of ``metric`` for the single case matching params, or None."""
    rows = select(summary, **params)
    if rows.empty or "samples" not in rows:
        return None
    found = rows["samples"].iloc[0]
    if not isinstance(found, dict) or metric not in found:
        return None
    values = tuple(v for v in found[metric] if finite(v))
    return values or None


def difference(
    summary: pd.DataFrame, metric: str, a: dict[str, Any], b: dict[str, Any]
) -> stats.Difference | None:
    """How case ``b`` differs from case ``a`` in ``metric`` (b / a with its 95% interval);
    None when either case or its repetitions are missing."""
    left, right = samples(summary, metric, **a), samples(summary, metric, **b)
    if left is None or right is None:
        return None
    return stats.difference(left, right)


def contrast(
    found: stats.Difference | None,
    higher_is_better: bool = False,
    words: tuple[str, str] = ("faster", "slower"),
) -> str:
    """How b compares with a, worded for people: ``2.1x faster``, ``1.3x slower``, or ``no
    measurable difference (within ±7%)`` / ``too few repetitions to tell (3 and 3)``.

    ``higher_is_better`` says which direction of the metric is ``words[0]`` (a time: lower
    is better, so b/a = 0.5 is "2x faster"). ``words`` may be e.g. ("larger", "smaller")
    for a quantity that is neither better nor worse (then higher_is_better picks words[0]).
    """
    if found is None:
        return "not measured"
    if not found.decided:
        return f"too few repetitions to tell ({found.n_a} and {found.n_b}; {stats.min_reps_for_significance()} a side are needed)"
    if not found.measurable:
        return f"no measurable difference (within ±{found.within:.0%})"
    better = found.ratio > 1 if higher_is_better else found.ratio < 1
    factor = found.ratio if found.ratio >= 1 else 1 / found.ratio
    return f"{times(factor)} {words[0] if better else words[1]}"


def versus(ratio: float) -> str:
    """``24x slower`` / ``1.3x faster`` / ``about as fast`` for a speed ratio new/old.

    Point estimates only: prefer ``contrast(difference(...))``, which tests the gap.
    """
    if 0.95 <= ratio <= 1.05:
        return "about as fast"
    return f"{times(ratio)} faster" if ratio > 1 else f"{times(1 / ratio)} slower"


def case_label(experiment: Any, row: pd.Series) -> str:
    """``mode=read bs=4KiB``: the parameters that distinguish this case, compact."""
    names = [p.name for p in experiment.params]
    return " ".join(f"{n}={format_param(experiment, n, row[n])}" for n in names if n in row)


def varying_label(experiment: Any, summary: pd.DataFrame, row: pd.Series) -> str:
    """Like case_label, but only the parameters that vary in this summary."""
    names = [p.name for p in experiment.params if p.name in summary and summary[p.name].nunique() > 1]
    if not names:
        return "the only case"
    return " ".join(f"{n}={format_param(experiment, n, row[n])}" for n in names)


def generic_sentences(experiment: Any, summary: pd.DataFrame) -> list[str]:
    """The default explanation: the extremes of the first numeric table column."""
    column = next((c for c in experiment.columns if c.unit != "text" and c.relative_to is None), None)
    if column is None or summary.empty or column.metric not in summary:
        return []
    values = summary[column.metric].astype(float)
    if column.per is not None:
        if column.per not in summary:
            return []
        values = values / summary[column.per].astype(float) * column.scale
    values = values.replace([math.inf, -math.inf], math.nan).dropna()
    if values.empty:
        return []
    if len(values) == 1:
        row = summary.loc[values.index[0]]
        return [
            f"{column.title}: {format_value(values.iloc[0], column.unit)} ({varying_label(experiment, summary, row)})."
        ]
    low, high = values.idxmin(), values.idxmax()
    sentence = (
        f"{column.title} ranges from {format_value(values[low], column.unit)} "
        f"({varying_label(experiment, summary, summary.loc[low])}) to "
        f"{format_value(values[high], column.unit)} ({varying_label(experiment, summary, summary.loc[high])})"
    )
    if values[low] > 0:
        sentence += f", {times(values[high] / values[low])} apart"
    return [sentence + f", over {len(values)} cases."]
