"""Helpers for "what this shows": sentences computed from one run's per-case summary.

Experiments call these from their ``explain`` classmethod; nothing here knows a particular
experiment. Every helper copes with missing cases by returning None (the sentence is skipped).

The noise rule: a sentence may call one case faster, slower, larger or smaller than another
only when ``difference`` finds the gap measurable (the 95% Hodges-Lehmann interval of the pair
excludes "no difference"); otherwise it says "no measurable difference" with the interval.
``contrast`` words both outcomes, so an explanation cannot forget the second one; ``compare``,
``rank`` and ``tested_plateau`` apply the rule to a pair, a list and a sweep of cases.

A number taken from a book or a manual is labelled as a citation (``cite``), never blended into
the measured ones; ``against_reference`` says whether a measured factor's interval lies above,
below or around a published one.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from iobench import stats
from iobench.metrics import MIN_SPLIT_TICKS, format_param, format_value

#: A larger buffer "stops paying" when the next step gains less than this.
PLATEAU_GAIN = 0.05


def finite(value: Any) -> bool:
    """True for a real number (not NaN, not text, not a bool); numpy's integers count too (a
    summary's integer columns hold them)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


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


def distinct(summary: pd.DataFrame, name: str, **params: Any) -> list[Any]:
    """The distinct values of a parameter among the rows matching params, sorted: numbers as
    numbers (CSV may hold them as floats), text as text; [] when the column is absent."""
    rows = select(summary, **params)
    if name not in rows:
        return []
    values = rows[name].dropna()
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return sorted(float(v) if not float(v).is_integer() else int(v) for v in numbers.unique())
    return sorted(str(v) for v in values.unique())


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


#: The emulated link's case parameters (``--peer netns``), as ``peer.netns.LINK_PARAMS``.
LINK_PARAMS = ("rtt", "rate", "loss")


def by_link(experiment: Any, summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The summary split by emulated link (``--rtt/--rate/--loss``), each part with its label
    (``RTT 10ms, rate 1gbit``; "" for a run without a link): sentences that compare cases must
    compare them over the same link."""
    names = [name for name in LINK_PARAMS if name in summary]
    linked = [name for name in names if any(finite(v) and v for v in summary[name])]
    if not linked:
        return [("", summary)]
    parts = []
    for key, part in summary.groupby(names, sort=True, dropna=False):
        values = dict(zip(names, key if isinstance(key, tuple) else (key,), strict=True))
        label = ", ".join(
            f"{'RTT' if name == 'rtt' else name} {fmt(experiment, name, values[name])}"
            for name in names
            if name == "rtt" or values[name]
        )
        parts.append((f"Over the emulated link ({label})", part))
    return parts


def fmt(experiment: Any, name: str, value: Any) -> str:
    """A parameter value as the experiment (the class) spells it (4KiB, O_SYNC)."""
    return format_param(experiment, name, value)


def times(ratio: float) -> str:
    """``12x`` / ``1.4x`` / ``0.31x``: a factor with sensible precision."""
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2g}x" if ratio < 1 else f"{ratio:.1f}x"


#: Columns whose per-repetition values are tick noise (getrusage's user/system split): only the
#: summary's accumulated split (NaN when too few ticks) may be used, never one repetition's.
SPLIT_METRICS = frozenset({"user_ns", "sys_ns"})


def _raw_samples(summary: pd.DataFrame, metric: str, **params: Any) -> tuple[Any, ...] | None:
    """The case's per-repetition values of ``metric`` as summarize kept them (NaN included,
    aligned with every other metric of the same case). None for the tick-sampled CPU split."""
    if metric in SPLIT_METRICS:
        return None
    rows = select(summary, **params)
    if rows.empty or "samples" not in rows:
        return None
    found = rows["samples"].iloc[0]
    if not isinstance(found, dict) or metric not in found:
        return None
    return tuple(found[metric])


def samples(
    summary: pd.DataFrame, metric: str, per: str | None = None, scale: float = 1.0, **params: Any
) -> tuple[float, ...] | None:
    """Per-repetition values of ``metric`` for the single case matching params, or None.

    With ``per``, each repetition's metric is divided by the same repetition's ``per`` and
    multiplied by ``scale`` (time per call: metric="elapsed_ns", per="ops").
    """
    values = _raw_samples(summary, metric, **params)
    if values is None:
        return None
    if per is not None:
        divisors = _raw_samples(summary, per, **params)
        if divisors is None or len(divisors) != len(values):
            return None
        values = tuple(
            v / d * scale if finite(v) and finite(d) and d else math.nan
            for v, d in zip(values, divisors, strict=True)
        )
    elif scale != 1.0:
        values = tuple(v * scale if finite(v) else math.nan for v in values)
    kept = tuple(float(v) for v in values if finite(v))
    return kept or None


def value(
    summary: pd.DataFrame, metric: str, per: str | None = None, scale: float = 1.0, **params: Any
) -> float | None:
    """The case's typical ``metric`` (per ``per``, times ``scale``): the summary's median, or the
    median of the per-repetition ratios when ``per`` is given. None when absent (or, for the
    user/system split, below the tick resolution)."""
    if per is None:
        found = one(summary, metric, **params)
        return None if found is None else found * scale
    ratios = samples(summary, metric, per=per, scale=scale, **params)
    if ratios:
        return stats.median(ratios)
    top, bottom = one(summary, metric, **params), one(summary, per, **params)
    return top / bottom * scale if top is not None and bottom else None


def difference(
    summary: pd.DataFrame,
    metric: str,
    a: dict[str, Any],
    b: dict[str, Any],
    per: str | None = None,
) -> stats.Difference | None:
    """How case ``b`` differs from case ``a`` in ``metric`` (b / a with its 95% interval),
    optionally per ``per`` of each repetition; None when either case or its repetitions are
    missing."""
    left, right = samples(summary, metric, per=per, **a), samples(summary, metric, per=per, **b)
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


def compare(
    summary: pd.DataFrame,
    metric: str,
    a: dict[str, Any],
    b: dict[str, Any],
    per: str | None = None,
    higher_is_better: bool = False,
    words: tuple[str, str] = ("faster", "slower"),
) -> str:
    """``contrast(difference(...))``: how case b compares with case a, worded for people."""
    return contrast(difference(summary, metric, a, b, per=per), higher_is_better, words)


def direction(found: stats.Difference | None) -> int | None:
    """+1 when b is measurably larger than a, -1 when measurably smaller, 0 when the interval
    includes "no difference", None when the pair is missing or too small to decide."""
    if found is None or not found.decided:
        return None
    if not found.measurable:
        return 0
    return 1 if found.ratio > 1 else -1


def interval_text(found: stats.Difference) -> str:
    """``12x (95% interval 10x-14x)``: a measured factor b/a with its interval."""
    return f"{found.ratio:.3g}x (95% interval {found.low:.3g}x-{found.high:.3g}x)"


def against_reference(found: stats.Difference | None, reference: float) -> str | None:
    """Where a measured factor lies against a published one: ``"above"``, ``"below"`` or
    ``"consistent with"`` (its interval contains it); None when undecided."""
    if found is None or not found.decided:
        return None
    if found.low > reference:
        return "above"
    if found.high < reference:
        return "below"
    return "consistent with"


# ------------------------------------------------------------------ several cases


@dataclass(frozen=True)
class Ranked:
    """One case in a ranking: its label, its typical value and its parameters."""

    label: str
    value: float
    params: dict[str, Any]


@dataclass(frozen=True)
class Ranking:
    """Cases best first, in tiers: within a tier no case differs measurably from the first.

    ``gaps[i]`` is how tier i+1's first case compares with tier i's first (measurable by
    construction). ``decided`` is False when some pair had too few repetitions to tell.
    """

    tiers: tuple[tuple[Ranked, ...], ...]
    gaps: tuple[stats.Difference, ...]
    decided: bool
    #: The widest "within +-x" of the ties (the noise that the ties hide).
    tie_within: float


def rank(
    summary: pd.DataFrame,
    metric: str,
    cases: Sequence[tuple[str, dict[str, Any]]],
    per: str | None = None,
    scale: float = 1.0,
    higher_is_better: bool = True,
) -> Ranking | None:
    """Rank ``cases`` (label, params) by ``metric``, putting together the cases whose gap to
    their tier's leader is not measurable; None with fewer than two cases present."""
    present = []
    for label, params in cases:
        typical = value(summary, metric, per=per, scale=scale, **params)
        if typical is not None and samples(summary, metric, per=per, **params):
            present.append(Ranked(label, typical, dict(params)))
    if len(present) < 2:
        return None
    present.sort(key=lambda r: r.value, reverse=higher_is_better)
    tiers: list[list[Ranked]] = [[present[0]]]
    gaps: list[stats.Difference] = []
    decided, tie_within = True, 0.0
    for case in present[1:]:
        leader = tiers[-1][0]
        found = difference(summary, metric, leader.params, case.params, per=per)
        if found is None or not found.decided:
            decided = False
            tiers[-1].append(case)
        elif found.measurable:
            tiers.append([case])
            gaps.append(found)
        else:
            tie_within = max(tie_within, found.within)
            tiers[-1].append(case)
    return Ranking(tuple(tuple(t) for t in tiers), tuple(gaps), decided, tie_within)


def ranking_sentence(
    ranking: Ranking,
    show: Callable[[float], str],
    order: str = "fastest first",
    words: tuple[str, str] = ("faster", "slower"),
    higher_is_better: bool = True,
) -> str:
    """``fastest first: A 5 GiB/s and B 4.9 GiB/s (no measurable difference), then C 2 GiB/s
    (2.4x slower than A)``; only measurable gaps are ranked."""

    def listed(tier: Sequence[Ranked]) -> str:
        names = [f"{r.label} {show(r.value)}" for r in tier]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    everyone = [r for tier in ranking.tiers for r in tier]
    if not ranking.decided:
        return f"too few repetitions to rank {listed(everyone)} ({stats.min_reps_for_significance()} a side are needed)"
    if len(ranking.tiers) == 1:
        return f"no measurable difference between {listed(everyone)} (within ±{ranking.tie_within:.0%})"
    parts = []
    for index, tier in enumerate(ranking.tiers):
        text = listed(tier) + (" (no measurable difference)" if len(tier) > 1 else "")
        if index:
            gap = ranking.gaps[index - 1]
            text = f"then {text} ({contrast(gap, higher_is_better, words)} than {ranking.tiers[index - 1][0].label})"
        parts.append(text)
    return f"{order}: " + ", ".join(parts)


@dataclass(frozen=True)
class Plateau:
    """Where a sweep stops paying: ``stop`` is the x after which the next step did not gain
    measurably by at least the threshold (None: every step paid). ``decided`` is False when a
    step had too few repetitions to tell."""

    stop: Any
    decided: bool
    first: Any
    last: Any


def tested_plateau(
    summary: pd.DataFrame,
    x: str,
    metric: str = "bytes_per_s",
    gain: float = PLATEAU_GAIN,
    higher_is_better: bool = True,
    **params: Any,
) -> Plateau | None:
    """``plateau`` under the noise rule: a step from one x to the next pays only when the
    gain is measurable and at least ``gain``. None with fewer than two x values."""
    rows = select(summary, **params)
    if x not in rows or metric not in rows:
        return None
    xs = sorted(v for v in pd.to_numeric(rows[x], errors="coerce").dropna().unique())
    xs = [v for v in xs if samples(summary, metric, **(params | {x: v}))]
    if len(xs) < 2:
        return None
    for x0, x1 in itertools.pairwise(xs):
        found = difference(summary, metric, params | {x: x0}, params | {x: x1})
        if found is None or not found.decided:
            return Plateau(None, False, xs[0], xs[-1])
        ratio = found.ratio if higher_is_better else 1 / found.ratio
        better = found.low > 1 if higher_is_better else found.high < 1
        if not (better and ratio >= 1 + gain):
            return Plateau(x0, True, xs[0], xs[-1])
    return Plateau(None, True, xs[0], xs[-1])


# ------------------------------------------------------------------ CPU split, flags


def system_share(summary: pd.DataFrame, **params: Any) -> float | None:
    """The kernel's share of the case's CPU time (system / (user + system)), or None when the
    split is missing or below the tick resolution (summarize leaves it NaN then)."""
    user, system = one(summary, "user_ns", **params), one(summary, "sys_ns", **params)
    if user is None or system is None or user + system <= 0:
        return None
    return system / (user + system)


def cpu_split_text(summary: pd.DataFrame, **params: Any) -> str | None:
    """``the kernel took 75% of its CPU time``, or why the split cannot be told (too few scheduler
    ticks accumulated); None when the case is absent."""
    if select(summary, **params).empty:
        return None
    share = system_share(summary, **params)
    if share is not None:
        return f"the kernel took {share:.0%} of its CPU time"
    ticks = one(summary, "cpu_split_ticks", **params)
    counted = (
        f" ({ticks:.0f} ticks over all repetitions, {MIN_SPLIT_TICKS} needed)" if ticks is not None else ""
    )
    return f"its user/system CPU split is below the tick resolution{counted}"


def flag(summary: pd.DataFrame, metric: str, **params: Any) -> bool | None:
    """A True/False column of the case (CSV may give text or 1.0/0.0); None when absent."""
    rows = select(summary, **params)
    if rows.empty or metric not in rows:
        return None
    return truth(rows[metric].iloc[0])


def truth(found: Any) -> bool | None:
    """True/False from a summary cell (a bool, or text/1.0/0.0 after a CSV); None otherwise."""
    if isinstance(found, bool):
        return found
    return {"true": True, "false": False, "1.0": True, "0.0": False, "1": True, "0": False}.get(
        str(found).strip().lower()
    )


# ------------------------------------------------------------------ citations

#: Michael Kerrisk, The Linux Programming Interface (No Starch Press, 2010): "TLPI".
TLPI = "Kerrisk 2010"
#: Anthony Jones and Jim Ohlund, Network Programming for Microsoft Windows, 2nd ed.
#: (Microsoft Press, 2002); chapter 6 is "Scalable Winsock Applications".
WINSOCK_BOOK = "Jones & Ohlund 2002"
#: Where in it the ideas about locked pages, zero-byte receives and SO_RCVBUF=0 are.
WINSOCK_CHAPTER = "Network Programming for Microsoft Windows, ch. 6"
#: The Linux man-pages project (socket(7), tcp(7), posix_fadvise(2), vdso(7), ...).
MAN_PAGES = "Linux man-pages"
#: Microsoft's Win32 API reference (learn.microsoft.com).
WIN32_DOCS = "Microsoft Win32 API reference"


def cite(where: str, source: str, claim: str) -> str:
    """A published statement, labelled as such: ``TLPI Table 13-3 (Kerrisk 2010): claim``."""
    return f"{where} ({source}): {claim}"


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
