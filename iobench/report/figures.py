"""Figures drawn from an experiment's FigureSpecs. Matplotlib's Agg backend: no display needed.

Every point is a case's summary value (``iobench.report.estimates``: the same number its table
cell shows) with its 95% interval as whiskers. Rules that keep a figure from misleading:

- Log axes carry at least two labelled ticks, and show points, never bars (a bar's length on
  a log axis depends on where the axis happens to start).
- The unit is chosen from the typical value, so one large maximum does not squash the rest.
- Series that would be drawn exactly over one another are named in a note ("Identical at this
  scale") and the hidden one gets hollow markers.
- A refused operation (``FigureSpec.succeeded`` False) or a case that did not run is a marked
  point (×) with its reason, never a value.
- A case for which the x parameter does not apply (sock-buffer's "unset" has no size) is a
  horizontal reference line, not a point at x = 0.
- A time series (``series``) is one repetition, the one of median elapsed time, and says so.
"""

from __future__ import annotations

import io
import json
import math
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

# First: a private MPLCONFIGDIR and no chatter, set before matplotlib loads.
from iobench.report import mplsetup  # noqa: F401

# isort: split
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from iobench.experiments.base import FigureSpec
from iobench.metrics import MIN_SPLIT_TICKS, format_param, param_named
from iobench.params import Kind
from iobench.report.axes import category_ticks, log2_x, set_log_y, size_spelling, unit_scale
from iobench.report.estimates import Estimate, estimate

#: Inches; small enough that a report page shows a figure and its text together.
WIDTH, HEIGHT, DPI = 7.0, 3.6, 100
#: Small multiples (stacked CPU per series) stop here: more panels are unreadable.
MAX_PANELS = 9
#: Two series closer than this share of the axis height at every x are drawn as one.
COINCIDE = 0.01
#: Stacked CPU bars become points on a log axis when the totals span more than this factor.
STACK_RANGE = 30.0
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")
_USER_COLOUR, _SYSTEM_COLOUR = "#4c72b0", "#dd8452"
REFUSED_LABEL = "× refused / not run (no value)"
CAPTION = "Points: the median of the repetitions; whiskers: its 95% interval (min–max below 6 reps)."
BAR_CAPTION = "Bars: the median of the repetitions; whiskers: its 95% interval (min–max below 6 reps)."
THROUGHPUT_CAPTION = (
    "Throughput = bytes / median elapsed; whiskers: from elapsed's 95% interval (min–max below 6 reps)."
)


@dataclass
class RenderedFigure:
    """One drawn figure: ``stem`` names its files (``rw-buffer-throughput``)."""

    stem: str
    title: str
    figure: Figure
    _png: bytes | None = field(default=None, repr=False)

    def png(self) -> bytes:
        """The figure as PNG bytes (drawn once: the file, the HTML and the Markdown share them)."""
        if self._png is None:
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png", bbox_inches="tight")
            self._png = buffer.getvalue()
        return self._png

    def svg(self) -> str:
        """The figure as SVG text (fonts as paths: no font needed where it is shown)."""
        buffer = io.StringIO()
        self.figure.savefig(buffer, format="svg", bbox_inches="tight")
        return buffer.getvalue()

    def close(self) -> None:
        """Free matplotlib's memory for this figure."""
        plt.close(self.figure)


# ---------------------------------------------------------------- cases and their values


def _irrelevant(experiment: Any, record: Mapping[str, Any]) -> frozenset[str]:
    """Parameters that do not apply to this case (the experiment says which)."""
    case = {p.name: record.get(p.name) for p in experiment.params}
    try:
        return frozenset(experiment.irrelevant_params(case))
    except (KeyError, TypeError, ValueError, AttributeError):
        return frozenset()


def _params(experiment: Any, rows: pd.DataFrame) -> list[str]:
    return [p.name for p in experiment.params if p.name in rows]


def _points(experiment: Any, rows: pd.DataFrame, metric: str, per: str | None, scale: float) -> pd.DataFrame:
    """One row per case: its parameters, run and estimate (value, low, high) of the metric."""
    keys = ["run_id", *_params(experiment, rows)]
    records = []
    for _, record in rows.iterrows():
        value = estimate(record, metric, per, scale)
        if not math.isfinite(value.value):
            continue
        low, high = _bounds(value)
        records.append({k: record[k] for k in keys} | {"value": value.value, "low": low, "high": high})
    return pd.DataFrame(records, columns=[*keys, "value", "low", "high"])


def _bounds(value: Estimate) -> tuple[float, float]:
    """The interval to draw as whiskers: none (the value itself) where it is unknown."""
    low = value.low if math.isfinite(value.low) else value.value
    high = value.high if math.isfinite(value.high) else value.value
    return low, high


@dataclass(frozen=True)
class Refusal:
    """A case drawn as a mark, not a value: its operation was refused, or it did not run."""

    record: Mapping[str, Any]
    words: str


def _is_false(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def _split_refused(rows: pd.DataFrame, spec: FigureSpec) -> tuple[pd.DataFrame, list[Refusal]]:
    """The cases whose operation succeeded, and the refused ones as marks."""
    if not spec.succeeded or spec.succeeded not in rows:
        return rows, []
    refused = rows[spec.succeeded].map(_is_false)
    marks = []
    for _, record in rows[refused].iterrows():
        reason = record.get(spec.refusal_reason) if spec.refusal_reason else None
        marks.append(
            Refusal(record, f"refused ({reason})" if isinstance(reason, str) and reason else "refused")
        )
    return rows[~refused], marks


def _not_run_marks(not_run: pd.DataFrame | None, spec: FigureSpec) -> list[Refusal]:
    if not_run is None or not_run.empty:
        return []
    marks = []
    for _, record in _where(not_run, spec).iterrows():
        reason = record.get("status_reason")
        reason = reason if isinstance(reason, str) else ""
        marks.append(
            Refusal(record, f"{record.get('status', 'not run')}" + (f": {reason}" if reason else ""))
        )
    return marks


def _where(rows: pd.DataFrame, spec: FigureSpec) -> pd.DataFrame:
    """The rows the spec's ``where`` allows (values compared as text: CSV reads 0 as 0.0)."""
    for name, allowed in spec.where:
        if name not in rows:
            return rows.iloc[0:0]
        wanted = {str(v) for v in allowed}
        values = rows[name].map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
        rows = rows[values.isin(wanted)]
    return rows


# ---------------------------------------------------------------- labels


def _key(record: Mapping[str, Any], names: list[str]) -> tuple[Any, ...]:
    """The record's values of ``names``: what tells its series, panel or category apart."""
    return tuple(record[n] for n in names)


def _label(experiment: Any, keys: list[str], key: tuple[Any, ...]) -> str:
    parts = []
    for name, value in zip(keys, key, strict=True):
        parts.append(str(value) if name == "run_id" else f"{name}={format_param(experiment, name, value)}")
    return " ".join(parts) or experiment.name


def _case_words(experiment: Any, record: Mapping[str, Any], names: list[str]) -> str:
    """``mode=over-limit size=64KiB`` for the parameters that apply to the case."""
    skip = _irrelevant(experiment, record)
    parts = [f"{n}={format_param(experiment, n, record[n])}" for n in names if n in record and n not in skip]
    return " ".join(parts) or experiment.name


def _category_label(experiment: Any, record: Mapping[str, Any], names: list[str]) -> str:
    """One line from the parameters that vary and apply (``mode=read cache=cold`` -> ``read cold``)."""
    if not names:
        return experiment.name
    skip = _irrelevant(experiment, record)
    parts = [format_param(experiment, n, record[n]) for n in names if n not in skip]
    return " ".join(parts) if parts else "any " + "/".join(names)


def _fixed_context(experiment: Any, rows: pd.DataFrame, used: list[str]) -> str:
    """Parameters held constant in the figure, for its title."""
    parts = []
    for param in experiment.params:
        if param.name in rows and param.name not in used and rows[param.name].nunique() == 1:
            parts.append(f"{param.name}={format_param(experiment, param.name, rows[param.name].iloc[0])}")
    return ", ".join(parts)


def _declared_key(experiment: Any, name: str) -> Callable[[Any], Any]:
    param = param_named(experiment, name)
    if param is not None and param.choices:
        order = {c: i for i, c in enumerate(param.choices)}
        return lambda v: (0, order.get(str(v), len(order)), "")
    return lambda v: (1, float(v), "") if isinstance(v, int | float) else (2, 0, str(v))


def _sorted_keys(experiment: Any, names: list[str], keys: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Distinct keys in the parameters' declared order (runs in the order given)."""
    unique = list(dict.fromkeys(keys))
    if not names:
        return unique
    sorters = [(_declared_key(experiment, n) if n != "run_id" else None) for n in names]
    run_order = {k: i for i, k in enumerate(unique)}

    def sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            (0, run_order[key], "") if sorter is None else sorter(value)
            for sorter, value in zip(sorters, key, strict=True)
        )

    return sorted(unique, key=sort_key)


def _series_keys(experiment: Any, rows: pd.DataFrame, x: str | None) -> list[str]:
    """Parameters that get one line each: declared series that vary, then run when several."""
    keys = [k for k in experiment.series_params if k != x and k in rows and rows[k].nunique() > 1]
    if "run_id" in rows and rows["run_id"].nunique() > 1:
        keys = ["run_id", *keys]
    if x is not None and x in rows:
        # A line must never join different cases at one x (a zigzag with error bars spanning
        # cases): while some do, give the next varying parameter its own lines too.
        params = _params(experiment, rows)
        cases = rows.drop_duplicates(subset=["run_id", *params] if "run_id" in rows else params)
        for name in params:
            if not cases.duplicated(subset=[*keys, x]).any():
                break
            if name not in keys and name != x and cases[name].nunique() > 1:
                keys.append(name)
    return keys


def _wrap(label: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


# ---------------------------------------------------------------- notes and layout


def _finish(fig: Figure, ax: Any, title: str, notes: list[str]) -> None:
    """Title, grid, a legend beside the plot (it hides nothing there) and the notes below."""
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            [_wrap(label) for label in labels],
            fontsize="small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
        )
    fig.tight_layout()
    _add_notes(fig, notes)


def _add_notes(fig: Figure, notes: list[str]) -> None:
    """Notes under the figure (saved with bbox_inches="tight", so nothing is cut)."""
    if notes:
        text = "\n".join(textwrap.fill(note, 120, subsequent_indent="  ") for note in notes)
        fig.text(0.01, 0.0, text, fontsize="x-small", ha="left", va="top", color="#333333")


def _with_marks(rows: pd.DataFrame, marks: list[Refusal]) -> pd.DataFrame:
    """The figure's cases, drawn or marked: what its title and notes describe."""
    if not marks:
        return rows
    return pd.concat([rows, pd.DataFrame([dict(m.record) for m in marks])], ignore_index=True)


def _refusal_notes(experiment: Any, marks: list[Refusal], cases: pd.DataFrame) -> list[str]:
    """Each refused or not-run case, named by the parameters that vary among the figure's
    cases, grouped by reason (dozens of O_DIRECT refusals share one)."""
    if not marks:
        return []
    names = [p for p in _params(experiment, cases) if cases[p].astype(str).nunique() > 1]
    by_reason: dict[str, list[str]] = {}
    for mark in marks:
        shape = re.sub(r"\d+(\.\d+)?", "#", mark.words)
        by_reason.setdefault(shape, [mark.words]).append(_case_words(experiment, mark.record, names))
    parts = [f"{', '.join(words[1:])}: {textwrap.shorten(words[0], 90)}" for words in by_reason.values()]
    return [f"No value (× where the case has a place on the x axis): {'; '.join(parts)}."]


def _mark(ax: Any, x: float, label: str | None) -> None:
    """A refusal: an × on the bottom edge of the plot at data position x."""
    transform = blended_transform_factory(ax.transData, ax.transAxes)
    ax.plot(
        [x],
        [0.04],
        marker="x",
        markersize=9,
        markeredgewidth=2,
        color="#c0392b",
        linestyle="none",
        transform=transform,
        clip_on=False,
        label=label,
        zorder=5,
    )


# ---------------------------------------------------------------- lines against a numeric x


@dataclass
class _Series:
    label: str
    x: np.ndarray
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    colour: str
    linestyle: Any


def _coincident(series: list[_Series], log: bool) -> list[list[int]]:
    """Groups of series drawn over one another: same x, every y within COINCIDE of the axis."""

    def scale(values: np.ndarray) -> np.ndarray:
        return np.log10(values) if log else values

    everything = np.concatenate([scale(s.value) for s in series]) if series else np.array([])
    span = float(everything.max() - everything.min()) if everything.size else 0.0
    tolerance = COINCIDE * span if span > 0 else 1e-12

    def over(a: _Series, b: _Series) -> bool:
        same_x = a.x.shape == b.x.shape and np.array_equal(a.x, b.x)
        return same_x and bool(np.all(np.abs(scale(a.value) - scale(b.value)) <= tolerance))

    groups: list[list[int]] = []
    for index, candidate in enumerate(series):
        group = next((g for g in groups if over(series[g[0]], candidate)), None)
        if group is None:
            groups.append([index])
        else:
            group.append(index)
    return [g for g in groups if len(g) > 1]


def _series_colours(
    experiment: Any, series_keys: list[str], points: list[tuple[str, pd.DataFrame]]
) -> dict[tuple[Any, ...], str]:
    """One colour per series whatever the metric (p50 and p99 of a mode share it)."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    every_key = [_key(r, series_keys) for _, frame in points for _, r in frame.iterrows()]
    return {
        key: colours[i % len(colours)]
        for i, key in enumerate(_sorted_keys(experiment, series_keys, every_key))
    }


def _series_of(
    label: str, x: np.ndarray, frame: pd.DataFrame, divisor: float, colour: str, style: Any
) -> _Series:
    """A series from estimate rows (value, low, high), in the axis unit."""
    value, low, high = (frame[k].to_numpy() / divisor for k in ("value", "low", "high"))
    return _Series(label, x, value, low, high, colour, style)


def _numeric_series(
    experiment: Any, x: str, points: list[tuple[str, pd.DataFrame]], series_keys: list[str], divisor: float
) -> tuple[list[_Series], list[_Series]]:
    """The lines against x (one per metric and series), and a horizontal reference line per
    case to which x does not apply."""
    colour_of = _series_colours(experiment, series_keys, points)
    drawn: list[_Series] = []
    references: list[_Series] = []
    for metric_index, (metric_label, frame) in enumerate(points):
        linestyle = _LINESTYLES[metric_index % len(_LINESTYLES)]
        frame = frame.assign(_no_x=[x in _irrelevant(experiment, r) for _, r in frame.iterrows()])
        for key in _sorted_keys(experiment, series_keys, [_key(r, series_keys) for _, r in frame.iterrows()]):
            group = frame[[_key(r, series_keys) == key for _, r in frame.iterrows()]]
            name = _label(experiment, series_keys, key)
            if len(points) > 1:
                name = f"{name} {metric_label}" if series_keys else metric_label
            no_x = group[group["_no_x"]]
            dashed = linestyle if linestyle != "-" else (0, (6, 3))  # a reference never looks like data
            label = f"{name} ({x} does not apply)"
            references += [
                _series_of(label, np.array([]), no_x.iloc[[row]], divisor, colour_of[key], dashed)
                for row in range(len(no_x))
            ]
            on_axis = group[~group["_no_x"]].sort_values(x)
            if not on_axis.empty:
                x_values = on_axis[x].to_numpy(dtype=float)
                drawn.append(_series_of(name, x_values, on_axis, divisor, colour_of[key], linestyle))
    return drawn, references


def _hidden_ranks(lines: list[_Series], log: bool) -> tuple[dict[int, int], list[str]]:
    """For each line drawn over an earlier one, its rank among them (1, 2, ...), and the notes
    naming the groups."""
    hidden: dict[int, int] = {}
    notes = []
    for group in _coincident(lines, log):
        for rank, index in enumerate(group[1:], start=1):
            hidden[index] = rank
        notes.append(
            "Identical at this scale: "
            + ", ".join(lines[i].label for i in group)
            + " (drawn over each other; the hidden ones have hollow markers or wider lines)."
        )
    return hidden, notes


def _draw_lines(ax: Any, drawn: list[_Series], hidden: dict[int, int]) -> None:
    """Lines with whiskers; hidden ones get hollow, larger markers so they show around the top one."""
    for index, series in enumerate(drawn):
        rank = hidden.get(index, 0)
        ax.errorbar(
            series.x,
            series.value,
            yerr=[series.value - series.low, series.high - series.value],
            marker=_MARKERS[rank % len(_MARKERS)],
            markersize=4 + 3 * min(rank, 2),
            capsize=3,
            label=series.label,
            color=series.colour,
            linestyle=series.linestyle,
            markerfacecolor="none" if rank else series.colour,
            markeredgewidth=1.5 if rank else 1.0,
        )


def _draw_references(ax: Any, references: list[_Series], hidden: dict[int, int], first: int) -> None:
    """Horizontal lines with their interval as a band; ``first`` is the index of the first one
    among all lines (the keys of ``hidden``)."""
    for index, line in enumerate(references, start=first):
        value, low, high = line.value[0], line.low[0], line.high[0]
        rank = hidden.get(index, 0)
        ax.axhline(
            value,
            color=line.colour,
            linestyle=line.linestyle,
            linewidth=1.5 + 2 * rank,
            alpha=0.6 if rank else 1.0,
            label=line.label,
            zorder=2 - rank,
        )
        if high > low:
            ax.axhspan(low, high, color=line.colour, alpha=0.12, linewidth=0)


def _mark_on_x(ax: Any, experiment: Any, x: str, marks: list[Refusal]) -> list[float]:
    """An × at each refused or not-run case's x (the first one labelled); returns those x."""
    xs = []
    for mark in marks:
        if x in _irrelevant(experiment, mark.record) or x not in mark.record:
            continue
        xs.append(float(mark.record[x]))
        _mark(ax, xs[-1], None if len(xs) > 1 else REFUSED_LABEL)
    return xs


def _numeric(
    ax: Any,
    experiment: Any,
    x: str,
    points: list[tuple[str, pd.DataFrame]],
    series_keys: list[str],
    marks: list[Refusal],
    divisor: float,
    log: bool,
) -> list[str]:
    """Lines against x; returns the notes the figure needs."""
    drawn, references = _numeric_series(experiment, x, points, series_keys, divisor)
    hidden, notes = _hidden_ranks([*drawn, *references], log)
    _draw_lines(ax, drawn, hidden)
    _draw_references(ax, references, hidden, len(drawn))
    if references:
        notes.append(
            f"Horizontal lines: cases to which {x} does not apply, with their 95% interval as a band."
        )
    xs = {float(v) for s in drawn for v in s.x} | set(_mark_on_x(ax, experiment, x, marks))
    log2_x(ax, experiment, x, sorted(xs))
    return notes


# ---------------------------------------------------------------- points or bars per case


@dataclass
class _Slots:
    """Where a categorical figure puts each case: a position per category (the values of
    ``categories_by``), an offset within it per series (the values of ``series_by``)."""

    categories_by: list[str]
    series_by: list[str]
    #: A case of each category, for its tick label.
    records: dict[tuple[Any, ...], Mapping[str, Any]]
    categories: list[tuple[Any, ...]]
    series: list[tuple[Any, ...]]

    @cached_property
    def position(self) -> dict[tuple[Any, ...], int]:
        """Each category's place on the x axis."""
        return {key: i for i, key in enumerate(self.categories)}


def _slots(experiment: Any, spec: FigureSpec, rows: pd.DataFrame, marks: list[Refusal]) -> _Slots:
    """Categories from the parameters that vary (or the spec's x alone, the others then being
    series), over the drawn and the marked cases; runs are series when there are several."""
    params = _params(experiment, rows)
    columns = [*params, "run_id"]
    marked = [pd.DataFrame([dict(m.record)]).reindex(columns=columns) for m in marks]
    everything = pd.concat([rows[columns], *marked], ignore_index=True)
    varying = [p for p in params if everything[p].astype(str).nunique() > 1]
    explicit = spec.x if spec.x in varying else None
    categories_by = [explicit] if explicit else varying
    series_by = [p for p in varying if p != explicit] if explicit else []
    if everything["run_id"].nunique() > 1:
        series_by = ["run_id", *series_by]
    records = {_key(r, categories_by): r for _, r in everything.iterrows()}
    categories = _sorted_keys(experiment, categories_by, list(records))
    series = _sorted_keys(experiment, series_by, [_key(r, series_by) for _, r in everything.iterrows()])
    return _Slots(categories_by, series_by, records, categories, series)


def _draw_cases(
    ax: Any,
    at: np.ndarray,
    cases: pd.DataFrame,
    divisor: float,
    log: bool,
    index: int,
    width: float,
    label: str,
) -> None:
    """Estimates at positions ``at`` in the ``index``-th group's colour: points with whiskers on
    a log axis, else bars of ``width`` with whiskers."""
    value = cases["value"].to_numpy() / divisor
    yerr = [value - cases["low"].to_numpy() / divisor, cases["high"].to_numpy() / divisor - value]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = colours[index % len(colours)]
    if log:
        ax.errorbar(
            at,
            value,
            yerr=yerr,
            marker=_MARKERS[index % len(_MARKERS)],
            linestyle="none",
            markersize=6,
            capsize=3,
            color=colour,
            label=label or None,
        )
    else:
        ax.bar(at, value, width, yerr=yerr, capsize=2, color=colour, label=label or None)


def _mark_in_slots(
    ax: Any, slots: _Slots, marks: list[Refusal], key: tuple[Any, ...], offset: float, labelled: bool
) -> bool:
    """An × for each refused or not-run case of series ``key``; returns whether an × now
    carries the legend label (only the first one does)."""
    for mark in marks:
        if _key(mark.record, slots.series_by) != key:
            continue
        position = slots.position.get(_key(mark.record, slots.categories_by))
        if position is not None:
            _mark(ax, position + offset, None if labelled else REFUSED_LABEL)
            labelled = True
    return labelled


def _categorical(
    ax: Any,
    experiment: Any,
    spec: FigureSpec,
    rows: pd.DataFrame,
    points: list[tuple[str, pd.DataFrame]],
    marks: list[Refusal],
    divisor: float,
    log: bool,
) -> tuple[list[str], list[str]]:
    """One position per case (or per value of an explicit categorical x), one bar (linear axis)
    or point (log axis) per metric and series at it. Returns (the parameters used, notes)."""
    slots = _slots(experiment, spec, rows, marks)
    groups = [(label, frame, key) for label, frame in points for key in slots.series]
    width = 0.8 / max(1, len(groups))
    labelled = False
    for index, (metric_label, frame, key) in enumerate(groups):
        offset = (index - (len(groups) - 1) / 2) * width
        mine = (
            frame[frame.apply(lambda r, k=key: _key(r, slots.series_by) == k, axis=1)]
            if len(frame)
            else frame
        )
        if not mine.empty:
            series_name = _label(experiment, slots.series_by, key) if slots.series_by else ""
            name = " ".join(part for part in (series_name, metric_label if len(points) > 1 else "") if part)
            at = np.array(
                [slots.position[_key(r, slots.categories_by)] for _, r in mine.iterrows()], dtype=float
            )
            _draw_cases(ax, at + offset, mine, divisor, log, index, width, name)
        labelled = _mark_in_slots(ax, slots, marks, key, offset, labelled)
    labels = [
        _category_label(experiment, slots.records[key], slots.categories_by) for key in slots.categories
    ]
    category_ticks(ax, labels)
    ax.set_xlim(-0.6, len(slots.categories) - 0.4)
    ax.set_xlabel(" / ".join(slots.categories_by))
    return [*slots.categories_by, *slots.series_by], []


# ---------------------------------------------------------------- the figure kinds


def _new_figure(height: float = HEIGHT) -> tuple[Figure, Any]:
    # Figure(), not pyplot: no global registry holding every figure of a long report.
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    ax = fig.subplots()
    return fig, ax


def _positive_only(
    experiment: Any, rows: pd.DataFrame, points: list[tuple[str, pd.DataFrame]]
) -> tuple[list[tuple[str, pd.DataFrame]], list[str]]:
    """The points a log axis can show (value > 0), and a note naming the ones it cannot."""
    # Zero or negative values have no place on a log axis: say so instead of dropping them silently.
    dropped = []
    for label, frame in points:
        for _, record in frame[frame["value"] <= 0].iterrows():
            dropped.append(f"{_case_words(experiment, record, _params(experiment, rows))} {label}".strip())
    points = [(label, frame[frame["value"] > 0]) for label, frame in points]
    points = [(label, frame) for label, frame in points if not frame.empty]
    notes = ["Not drawn (0 has no place on a log axis): " + "; ".join(dropped[:6]) + "."] if dropped else []
    return points, notes


def _numeric_axis(experiment: Any, rows: pd.DataFrame, x: str | None) -> str | None:
    """``x`` when it is a size or count that takes several values among the cases it applies
    to (lines against it), else None (a position per case)."""
    if x is None or x not in rows:
        return None
    relevant = rows[~rows.apply(lambda r: x in _irrelevant(experiment, r), axis=1)]
    kind = getattr(param_named(experiment, x), "kind", None)
    return x if kind in (Kind.SIZE, Kind.INT, Kind.DURATION) and relevant[x].nunique() > 1 else None


def _y_label(spec: FigureSpec, metrics: list[tuple[str, str]], unit_label: str) -> str:
    """The quantity and its unit, short (the title is the figure's question, and a long axis
    label wraps)."""
    quantity = "latency" if spec.kind == "percentiles" else metrics[0][1]
    y_label = spec.y_label or (spec.title if spec.title and len(spec.title) <= 30 else quantity)
    return f"{y_label}, {unit_label}" if unit_label else y_label


def _set_y_axis(ax: Any, log: bool, unit: str, y_label: str) -> None:
    """The y label; on a log axis, ticks that label at least two values (sizes in powers of 2)."""
    if log:
        if unit == "size":
            set_log_y(ax, base=2, spell=size_spelling)
        else:
            set_log_y(ax)
        y_label += " (log scale)"
    ax.set_ylabel(y_label)


def _values_figure(
    experiment: Any,
    rows: pd.DataFrame,
    spec: FigureSpec,
    metrics: list[tuple[str, str]],
    unit: str,
    title: str,
    marks: list[Refusal],
    caption: str,
) -> Figure | None:
    """Lines against a numeric x, else points or bars per case. ``metrics`` = (metric, label)."""
    points = [(label, _points(experiment, rows, metric, spec.per, spec.scale)) for metric, label in metrics]
    points = [(label, frame) for label, frame in points if not frame.empty]
    notes: list[str] = []
    log = spec.log_y
    if log:
        points, notes = _positive_only(experiment, rows, points)
    if not points:
        return None
    values = pd.concat([frame["value"] for _, frame in points])
    divisor, unit_label = (1.0, "") if (log and unit == "size") else unit_scale(unit, values, log)
    fig, ax = _new_figure()
    x = _numeric_axis(experiment, rows, spec.x or experiment.x_param)
    if x is not None:
        series = _series_keys(experiment, rows, x)
        notes += _numeric(ax, experiment, x, points, series, marks, divisor, log)
        used = [x, *series]
    else:
        used, extra = _categorical(ax, experiment, spec, rows, points, marks, divisor, log)
        notes += extra
        if caption == CAPTION and not log:
            caption = BAR_CAPTION
    notes.insert(0, caption)
    _set_y_axis(ax, log, unit, _y_label(spec, metrics, unit_label))
    notes += _refusal_notes(experiment, marks, _with_marks(rows, marks))
    context = _fixed_context(experiment, _with_marks(rows, marks), used)
    _finish(fig, ax, title + (f"\n{context}" if context else ""), notes)
    return fig


# ---------------------------------------------------------------- stacked CPU, small multiples


class _CpuCase(NamedTuple):
    """One bar of a stacked-CPU figure: the total with its interval and the user share of it
    (NaN: the split is not measurable; all NaN: a case drawn as a mark)."""

    record: Mapping[str, Any]
    total: float
    low: float
    high: float
    share: float


def _cpu_cases(rows: pd.DataFrame, spec: FigureSpec) -> list[_CpuCase]:
    """Each case's total CPU and user share (the summary's split); cases without a total are left out."""
    cases = []
    for _, record in rows.iterrows():
        total = estimate(record, "cpu_ns", spec.per, spec.scale)
        if not math.isfinite(total.value):
            continue
        user = estimate(record, "user_ns", spec.per, spec.scale).value
        system = estimate(record, "sys_ns", spec.per, spec.scale).value
        known = math.isfinite(user) and math.isfinite(system) and user + system > 0
        cases.append(
            _CpuCase(record, total.value, *_bounds(total), user / (user + system) if known else math.nan)
        )
    return cases


def _cpu_layout(experiment: Any, rows: pd.DataFrame, spec: FigureSpec) -> tuple[list[str], list[str]]:
    """(the parameters that get a panel each, the parameters that tell a panel's bars apart)."""
    x = spec.x or experiment.x_param
    params = _params(experiment, rows)
    x_axis = x if x in params and rows[x].nunique() > 1 else None
    series = _series_keys(experiment, rows, x_axis)
    bar_names = [x_axis] if x_axis else [p for p in params if rows[p].nunique() > 1 and p not in series]
    if not bar_names:
        # Nothing left to put on the bars (zero-copy: only the method varies): the series go on
        # the bars of one panel instead of one bar per panel.
        bar_names = [k for k in series if k != "run_id"]
        series = [k for k in series if k == "run_id"]
    return series, bar_names


def _cpu_panels(
    cases: list[_CpuCase], marks: list[Refusal], series: list[str], bar_names: list[str]
) -> tuple[dict[tuple[Any, ...], list[_CpuCase]], list[str], list[str]]:
    """The cases (and marks) grouped into panels by series; returns the panels and the
    series and bar parameters after panels of a single bar were folded onto the bars."""
    series, bar_names = list(series), list(bar_names)
    while True:
        panels: dict[tuple[Any, ...], list[_CpuCase]] = {}
        for case in cases:
            panels.setdefault(_key(case.record, series), []).append(case)
        folding = [k for k in series if k != "run_id"]
        if not folding or all(len(panel) > 1 for panel in panels.values()):
            break
        # A panel of one bar (sock-buffer's "unset", which has no size) reads as nothing: its
        # series parameter moves onto the bars, beside the cases it is compared with.
        series.remove(folding[-1])
        bar_names.insert(0, folding[-1])
    for mark in marks:
        # A case that did not run keeps its place in its panel, as an × instead of a bar.
        panel = panels.get(tuple(mark.record.get(k) for k in series))
        if panel is not None:
            panel.append(_CpuCase(mark.record, math.nan, math.nan, math.nan, math.nan))
    return panels, series, bar_names


def _panel_grid(count: int) -> tuple[Figure, np.ndarray]:
    """A figure of ``count`` panels, three a line, sharing their y axis; spare ones hidden."""
    columns = min(3, count)
    lines = math.ceil(count / columns)
    fig = Figure(figsize=(WIDTH, 0.9 + 2.5 * lines), dpi=DPI)
    axes = fig.subplots(lines, columns, sharey=True, squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes


def _whiskers(ax: Any, position: float, total: float, low: float, high: float, **style: Any) -> None:
    """The total's interval at a bar's position."""
    ax.errorbar([position], [total], yerr=[[total - low], [high - total]], capsize=2, **style)


def _cpu_points(ax: Any, position: float, total: float, low: float, high: float, share: float) -> None:
    """Log axis: the total as a point with whiskers, user and system as points beside it."""
    known = math.isfinite(share)
    _whiskers(
        ax,
        position,
        total,
        low,
        high,
        marker="o",
        color="black",
        linestyle="none",
        markersize=5,
        label="total",
    )
    if known and share > 0:
        ax.plot(
            [position - 0.15], [total * share], marker="v", color=_USER_COLOUR, linestyle="none", label="user"
        )
    if known and share < 1:
        system = total * (1 - share)
        ax.plot(
            [position + 0.15],
            [system],
            marker="^",
            color=_SYSTEM_COLOUR,
            linestyle="none",
            label="system (kernel)",
        )


def _cpu_stack(ax: Any, position: float, total: float, low: float, high: float, share: float) -> None:
    """Linear axis: user and system stacked to the total, or the total alone (hatched) when
    the split is not measurable; the total's whiskers on top."""
    if math.isfinite(share):
        ax.bar(position, total * share, 0.7, color=_USER_COLOUR, label="user")
        ax.bar(
            position,
            total * (1 - share),
            0.7,
            bottom=total * share,
            color=_SYSTEM_COLOUR,
            label="system (kernel)",
        )
    else:
        ax.bar(
            position,
            total,
            0.7,
            color="#bbbbbb",
            hatch="//",
            edgecolor="#888888",
            label="total only (split not measurable)",
        )
    _whiskers(ax, position, total, low, high, fmt="none", ecolor="black", linewidth=0.8)


def _cpu_panel(
    ax: Any, experiment: Any, group: list[_CpuCase], bar_names: list[str], divisor: float, log: bool
) -> bool:
    """One panel's bars in declared order (marks for cases without a value); returns whether
    a bar's split was not measurable."""
    order = _sorted_keys(experiment, bar_names, [_key(c.record, bar_names) for c in group])
    by_bar = {_key(c.record, bar_names): c for c in group}
    split_missing = False
    for position, bar in enumerate(order):
        case = by_bar[bar]
        if not math.isfinite(case.total):
            _mark(ax, position, REFUSED_LABEL)
            continue
        split_missing |= not math.isfinite(case.share)
        draw = _cpu_points if log else _cpu_stack
        draw(ax, position, case.total / divisor, case.low / divisor, case.high / divisor, case.share)
    category_ticks(
        ax, [_category_label(experiment, by_bar[bar].record, bar_names) for bar in order], "x-small"
    )
    ax.set_xlim(-0.6, len(order) - 0.4)
    return split_missing


def _cpu_y_axes(axes: np.ndarray, count: int, y_label: str, log: bool) -> None:
    """One y range for all panels (log: the union of theirs), labelled on the first column."""
    if log:
        for ax in axes.flat[:count]:
            ax.set_yscale("log")
        low_all = min(ax.get_ylim()[0] for ax in axes.flat[:count])
        high_all = max(ax.get_ylim()[1] for ax in axes.flat[:count])
        axes.flat[0].set_ylim(low_all, high_all)
        set_log_y(axes.flat[0])
    for ax in axes[:, 0]:
        ax.set_ylabel(y_label + (" (log scale)" if log else ""), fontsize="small")


def _panels_legend(fig: Figure, axes: np.ndarray, count: int, title: str) -> None:
    """The title and one legend for all panels above them (each label once)."""
    handles: dict[str, Any] = {}
    for ax in axes.flat[:count]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.suptitle(title, fontsize="medium")
    fig.legend(
        list(handles.values()),
        list(handles),
        fontsize="x-small",
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.4 / fig.get_figheight()),
        ncol=4,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()))


def _cpu_notes(split_missing: bool, refusals: list[str], log: bool, totals: list[float]) -> list[str]:
    """What the panels show, the cases without a split or a value, and why the axis is logarithmic."""
    notes = [
        "User and system: the split of the ticks of all a case's repetitions, applied to its exact total CPU "
        "(user + system = total); whiskers: the total's 95% interval (min–max below 6 reps)."
    ]
    if split_missing:
        notes.append(f"Total only where the case accumulated fewer than {MIN_SPLIT_TICKS} scheduler ticks.")
    notes += refusals
    if log:
        notes.append(
            f"Log axis (totals span {max(totals) / min(totals):.0f}x): user, system and total are points, "
            "since stacked bars cannot be read on a log axis."
        )
    return notes


def _stacked_cpu(
    experiment: Any, rows: pd.DataFrame, spec: FigureSpec, title: str, marks: list[Refusal]
) -> Figure | None:
    """User and system CPU per case, one small panel per series.

    The split is the summary's (ticks of all repetitions together, applied to the exact total),
    so user + system = total always; where too few ticks accumulated only the total is drawn.
    When the totals span more than STACK_RANGE, stacked bars would hide the small cases: the
    axis turns logarithmic and user, system and total become points.
    """
    cases = _cpu_cases(rows, spec)
    if not cases:
        return None
    panels, series, bar_names = _cpu_panels(cases, marks, *_cpu_layout(experiment, rows, spec))
    keys = _sorted_keys(experiment, series, list(panels))[:MAX_PANELS]
    totals = [c.total for c in cases if c.total > 0]
    log = bool(totals) and max(totals) / min(totals) > STACK_RANGE
    divisor, unit_label = unit_scale("duration", [c.total for c in cases], log)
    fig, axes = _panel_grid(len(keys))
    split_missing = False
    for ax, key in zip(axes.flat, keys, strict=False):
        split_missing |= _cpu_panel(ax, experiment, panels[key], bar_names, divisor, log)
        if series:
            width = 30 if axes.shape[1] == 3 else 45
            ax.set_title(_wrap(_label(experiment, series, key), width), fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
    per = spec.y_label or ("CPU" if spec.per is None else f"CPU per {spec.per}")
    _cpu_y_axes(axes, len(keys), f"{per}, {unit_label}", log)
    context = _fixed_context(experiment, _with_marks(rows, marks), [*bar_names, *series])
    _panels_legend(fig, axes, len(keys), title + (f" ({context})" if context else ""))
    refusals = _refusal_notes(experiment, marks, _with_marks(rows, marks))
    _add_notes(fig, _cpu_notes(split_missing, refusals, log, totals))
    return fig


# ---------------------------------------------------------------- time series of one repetition

SERIES_CAPTION = (
    "Each line: one repetition of the case (the one of median elapsed time), one point per sample."
)


def _parse_series(raw: Any) -> dict[str, Any] | None:
    """A ``*_series`` cell as a dict of lists, or None (missing, "mixed", not JSON)."""
    if not isinstance(raw, str) or not raw.startswith("{"):
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("t_ns"), list) else None


class _TimeLine(NamedTuple):
    label: str
    case: int
    key: int
    seconds: np.ndarray
    values: np.ndarray


def _time_lines(experiment: Any, rows: pd.DataFrame, spec: FigureSpec) -> list[_TimeLine]:
    """Each case's lists named by the spec, against seconds since the window started."""
    names = [p for p in _params(experiment, rows) if rows[p].astype(str).nunique() > 1]
    if "run_id" in rows and rows["run_id"].nunique() > 1:
        names = ["run_id", *names]
    lines = []
    for case, (_, record) in enumerate(rows.iterrows()):
        data = _parse_series(record.get(spec.metric))
        if data is None:
            continue
        seconds = np.asarray(data["t_ns"], dtype=float) / 1e9
        words = _case_words(experiment, record, names) if names else ""
        for key, name in enumerate(spec.metrics):
            values = data.get(name)
            if not isinstance(values, list) or len(values) != len(seconds) or not len(seconds):
                continue
            label = " ".join(part for part in (words, name.replace("_", " ")) if part)
            lines.append(_TimeLine(label, case, key, seconds, np.asarray(values, dtype=float)))
    return lines


def _series_figure(
    experiment: Any, rows: pd.DataFrame, spec: FigureSpec, marks: list[Refusal]
) -> Figure | None:
    """The spec's keys of each case's ``*_series`` column against time (linear axes): one
    colour per case, one line style per key."""
    lines = _time_lines(experiment, rows, spec)
    if not lines:
        return None
    divisor, unit_label = unit_scale(spec.unit, np.concatenate([line.values for line in lines]), False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = [
        _Series(line.label, line.seconds, line.values / divisor, line.values / divisor, line.values / divisor,
                colours[line.case % len(colours)], _LINESTYLES[line.key % len(_LINESTYLES)])
        for line in lines
    ]  # fmt: skip
    hidden, notes = _hidden_ranks(drawn, False)
    fig, ax = _new_figure()
    for index, line in enumerate(drawn):
        rank = hidden.get(index, 0)
        ax.plot(line.x, line.value, label=line.label, color=line.colour, linestyle=line.linestyle,
                linewidth=1.5 + 2 * rank, alpha=0.6 if rank else 1.0, zorder=2 - rank)  # fmt: skip
    ax.set_xlabel("time since the timed window started, s")
    ax.set_ylabel(f"{spec.y_label or spec.title}, {unit_label}" if unit_label else spec.y_label or spec.title)
    ax.set_ylim(bottom=0)
    notes.insert(0, SERIES_CAPTION)
    notes += _refusal_notes(experiment, marks, _with_marks(rows, marks))
    context = _fixed_context(experiment, _with_marks(rows, marks), [])
    _finish(fig, ax, spec.title + (f"\n{context}" if context else ""), notes)
    return fig


def render_figure(
    experiment: Any, rows: pd.DataFrame, spec: FigureSpec, not_run: pd.DataFrame | None = None
) -> Figure | None:
    """One figure from one experiment's summary rows (``iobench.metrics.summarize``; any number
    of runs) and the cases that did not run, or None when the run lacks what the spec needs
    (its metrics, or at least one case)."""
    rows = _where(rows, spec)
    if rows.empty:
        return None
    rows, marks = _split_refused(rows, spec)
    marks += _not_run_marks(not_run, spec)
    if rows.empty:
        return None
    if spec.only_if_varies and (spec.x not in rows or rows[spec.x].nunique() < 2):
        return None  # a figure against x says nothing where x took one value
    if spec.kind == "throughput":
        if "bytes_per_s" not in rows or rows["bytes_per_s"].isna().all():
            return None
        spec = FigureSpec(
            "throughput",
            title=spec.title or "Throughput",
            x=spec.x,
            log_y=True,
            y_label=spec.y_label or "throughput",
        )
        return _values_figure(
            experiment,
            rows,
            spec,
            [("bytes_per_s", "throughput")],
            "rate",
            spec.title,
            marks,
            THROUGHPUT_CAPTION,
        )
    if spec.kind == "series":
        return _series_figure(experiment, rows, spec, marks)
    if spec.kind == "stacked_cpu":
        if "cpu_ns" not in rows:
            return None
        return _stacked_cpu(experiment, rows, spec, spec.title or "CPU time: user vs system", marks)
    caption = CAPTION
    if spec.kind == "percentiles":
        metrics = [(m, m.removeprefix("lat_").removesuffix("_ns")) for m in spec.metrics if _has(rows, m)]
        if not metrics:
            return None
        return _values_figure(
            experiment, rows, spec, metrics, spec.unit, spec.title or "Latency percentiles", marks, caption
        )
    if spec.kind == "metric":
        names = spec.metrics or (spec.metric,)
        titles = {c.metric: c.title for c in experiment.columns if c.per is None}
        metrics = [(m, titles.get(m, m)) for m in names if _has(rows, m)]
        if not metrics:
            return None
        return _values_figure(
            experiment, rows, spec, metrics, spec.unit, spec.title or spec.metric, marks, caption
        )
    raise ValueError(f"unknown figure kind {spec.kind!r}")


def _has(rows: pd.DataFrame, metric: str) -> bool:
    return metric in rows and not pd.to_numeric(rows[metric], errors="coerce").isna().all()


def experiment_figures(
    experiment: Any, rows: pd.DataFrame, not_run: pd.DataFrame | None = None
) -> list[RenderedFigure]:
    """All figures the experiment (the class) declares that these summary rows can draw, in order."""
    drawn = []
    for index, spec in enumerate(experiment.report_figures()):
        figure = render_figure(experiment, rows, spec, not_run)
        if figure is None:
            continue
        suffix = spec.kind if spec.kind != "metric" else (spec.metric or str(index))
        stem = f"{experiment.name}-{suffix}".replace("_", "-")
        if any(d.stem == stem for d in drawn):
            stem = f"{stem}-{index}"
        drawn.append(RenderedFigure(stem, spec.title or spec.kind.replace("_", " "), figure))
    return drawn


def save_figure(figure: RenderedFigure, out_dir: Path, fmt: str) -> Path:
    """Write the figure as ``<stem>.<fmt>`` (png or svg) and return the path."""
    path = out_dir / f"{figure.stem}.{fmt}"
    if fmt == "png":
        path.write_bytes(figure.png())
    else:
        path.write_text(figure.svg())
    return path
