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
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from iobench.metrics import format_param, param_named
from iobench.params import Kind
from iobench.report.axes import category_ticks, log2_x, set_log_y, size_spelling, unit_scale
from iobench.report.estimates import estimate

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
        low = value.low if math.isfinite(value.low) else value.value
        high = value.high if math.isfinite(value.high) else value.value
        records.append({k: record[k] for k in keys} | {"value": value.value, "low": low, "high": high})
    return pd.DataFrame(records, columns=[*keys, "value", "low", "high"])


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
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn: list[_Series] = []
    references: list[_Series] = []
    several = len(points) > 1

    def key_of(record: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(record[k] for k in series_keys)

    # One colour per series whatever the metric (p50 and p99 of a mode share it).
    every_key = [key_of(r) for _, frame in points for _, r in frame.iterrows()]
    colour_of = {
        key: colours[i % len(colours)]
        for i, key in enumerate(_sorted_keys(experiment, series_keys, every_key))
    }
    for metric_index, (metric_label, frame) in enumerate(points):
        linestyle = _LINESTYLES[metric_index % len(_LINESTYLES)]
        frame = frame.assign(_no_x=[x in _irrelevant(experiment, r) for _, r in frame.iterrows()])
        for key in _sorted_keys(experiment, series_keys, [key_of(r) for _, r in frame.iterrows()]):
            group = frame[[key_of(r) == key for _, r in frame.iterrows()]]
            name = _label(experiment, series_keys, key)
            name = (f"{name} {metric_label}" if series_keys else metric_label) if several else name
            for _, record in group[group["_no_x"]].iterrows():
                references.append(
                    _Series(
                        f"{name} ({x} does not apply)",
                        np.array([]),
                        np.array([record["value"] / divisor]),
                        np.array([record["low"] / divisor]),
                        np.array([record["high"] / divisor]),
                        colour_of[key],
                        linestyle if linestyle != "-" else (0, (6, 3)),
                    )
                )
            on_axis = group[~group["_no_x"]].sort_values(x)
            if not on_axis.empty:
                drawn.append(
                    _Series(
                        name,
                        on_axis[x].to_numpy(dtype=float),
                        on_axis["value"].to_numpy() / divisor,
                        on_axis["low"].to_numpy() / divisor,
                        on_axis["high"].to_numpy() / divisor,
                        colour_of[key],
                        linestyle,
                    )
                )
    notes = []
    hidden: dict[int, int] = {}
    lines = [*drawn, *references]
    for group in _coincident(lines, log):
        for rank, index in enumerate(group[1:], start=1):
            hidden[index] = rank
        notes.append(
            "Identical at this scale: "
            + ", ".join(lines[i].label for i in group)
            + " (drawn over each other; the hidden ones have hollow markers or wider lines)."
        )
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
    for index, line in enumerate(references, start=len(drawn)):
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
    if references:
        notes.append(
            f"Horizontal lines: cases to which {x} does not apply, with their 95% interval as a band."
        )
    xs = sorted({float(v) for s in drawn for v in s.x})
    labelled = False
    for mark in marks:
        if x in _irrelevant(experiment, mark.record) or x not in mark.record:
            continue
        xs.append(float(mark.record[x]))
        _mark(ax, float(mark.record[x]), None if labelled else REFUSED_LABEL)
        labelled = True
    log2_x(ax, experiment, x, sorted(set(xs)))
    return notes


# ---------------------------------------------------------------- points or bars per case


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

    def key_of(record: Mapping[str, Any], names: list[str]) -> tuple[Any, ...]:
        return tuple(record[n] for n in names)

    cat_records = {key_of(r, categories_by): r for _, r in everything.iterrows()}
    categories = _sorted_keys(experiment, categories_by, list(cat_records))
    position = {key: i for i, key in enumerate(categories)}
    series = _sorted_keys(experiment, series_by, [key_of(r, series_by) for _, r in everything.iterrows()])
    groups = [(label, frame, key) for label, frame in points for key in series]
    width = 0.8 / max(1, len(groups))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labelled = False
    for index, (metric_label, frame, key) in enumerate(groups):
        offset = (index - (len(groups) - 1) / 2) * width
        mine = frame[frame.apply(lambda r, k=key: key_of(r, series_by) == k, axis=1)] if len(frame) else frame
        name = " ".join(
            part
            for part in (
                _label(experiment, series_by, key) if series_by else "",
                metric_label if len(points) > 1 else "",
            )
            if part
        )
        if not mine.empty:
            at = (
                np.array([position[key_of(r, categories_by)] for _, r in mine.iterrows()], dtype=float)
                + offset
            )
            value = mine["value"].to_numpy() / divisor
            yerr = [value - mine["low"].to_numpy() / divisor, mine["high"].to_numpy() / divisor - value]
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
                    label=name or None,
                )
            else:
                ax.bar(at, value, width, yerr=yerr, capsize=2, color=colour, label=name or None)
        for mark in marks:
            if key_of(mark.record, series_by) == key and key_of(mark.record, categories_by) in position:
                _mark(
                    ax,
                    position[key_of(mark.record, categories_by)] + offset,
                    None if labelled else REFUSED_LABEL,
                )
                labelled = True
    labels = [_category_label(experiment, cat_records[key], categories_by) for key in categories]
    category_ticks(ax, labels)
    ax.set_xlim(-0.6, len(categories) - 0.4)
    ax.set_xlabel(" / ".join(categories_by))
    return [*categories_by, *series_by], []


# ---------------------------------------------------------------- the figure kinds


def _new_figure(height: float = HEIGHT) -> tuple[Figure, Any]:
    # Figure(), not pyplot: no global registry holding every figure of a long report.
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    ax = fig.subplots()
    return fig, ax


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
    if not points:
        return None
    notes: list[str] = []
    log = spec.log_y
    if log:
        # Zero or negative values have no place on a log axis: say so instead of dropping them silently.
        dropped = []
        for label, frame in points:
            for _, record in frame[frame["value"] <= 0].iterrows():
                dropped.append(
                    f"{_case_words(experiment, record, _params(experiment, rows))} {label}".strip()
                )
        points = [(label, frame[frame["value"] > 0]) for label, frame in points]
        points = [(label, frame) for label, frame in points if not frame.empty]
        if dropped:
            notes.append("Not drawn (0 has no place on a log axis): " + "; ".join(dropped[:6]) + ".")
        if not points:
            return None
    values = pd.concat([frame["value"] for _, frame in points])
    divisor, unit_label = (1.0, "") if (log and unit == "size") else unit_scale(unit, values, log)
    # The title is the figure's question; the axis names the quantity (short, or it wraps).
    quantity = "latency" if spec.kind == "percentiles" else metrics[0][1]
    y_label = spec.y_label or (spec.title if spec.title and len(spec.title) <= 30 else quantity)
    y_label = f"{y_label}, {unit_label}" if unit_label else y_label
    fig, ax = _new_figure()
    x = spec.x or experiment.x_param
    relevant = rows[~rows.apply(lambda r: x in _irrelevant(experiment, r), axis=1)] if x in rows else rows
    numeric = (
        x is not None
        and x in rows
        and getattr(param_named(experiment, x), "kind", None) in (Kind.SIZE, Kind.INT)
        and relevant[x].nunique() > 1
    )
    if numeric:
        assert x is not None
        series = _series_keys(experiment, rows, x)
        notes += _numeric(ax, experiment, x, points, series, marks, divisor, log)
        used = [x, *series]
    else:
        used, extra = _categorical(ax, experiment, spec, rows, points, marks, divisor, log)
        notes += extra
    if caption == CAPTION and not numeric and not log:
        caption = BAR_CAPTION
    notes.insert(0, caption)
    if log:
        if unit == "size":
            set_log_y(ax, base=2, spell=size_spelling)
        else:
            set_log_y(ax)
        y_label += " (log scale)"
    ax.set_ylabel(y_label)
    notes += _refusal_notes(experiment, marks, _with_marks(rows, marks))
    context = _fixed_context(experiment, _with_marks(rows, marks), used)
    _finish(fig, ax, title + (f"\n{context}" if context else ""), notes)
    return fig


def _stacked_cpu(
    experiment: Any, rows: pd.DataFrame, spec: FigureSpec, title: str, marks: list[Refusal]
) -> Figure | None:
    """User and system CPU per case, one small panel per series.

    The split is the summary's (ticks of all repetitions together, applied to the exact total),
    so user + system = total always; where too few ticks accumulated only the total is drawn.
    When the totals span more than STACK_RANGE, stacked bars would hide the small cases: the
    axis turns logarithmic and user, system and total become points.
    """
    cases = []
    for _, record in rows.iterrows():
        total = estimate(record, "cpu_ns", spec.per, spec.scale)
        if not math.isfinite(total.value):
            continue
        user = estimate(record, "user_ns", spec.per, spec.scale).value
        system = estimate(record, "sys_ns", spec.per, spec.scale).value
        share = (
            user / (user + system)
            if math.isfinite(user) and math.isfinite(system) and user + system > 0
            else math.nan
        )
        low = total.low if math.isfinite(total.low) else total.value
        high = total.high if math.isfinite(total.high) else total.value
        cases.append((record, total.value, low, high, share))
    if not cases:
        return None
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
    while True:
        panels: dict[tuple[Any, ...], list] = {}
        for case in cases:
            panels.setdefault(tuple(case[0][k] for k in series), []).append(case)
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
            panel.append((mark.record, math.nan, math.nan, math.nan, math.nan))
    keys = _sorted_keys(experiment, series, list(panels))[:MAX_PANELS]
    totals = [c[1] for c in cases if c[1] > 0]
    log = bool(totals) and max(totals) / min(totals) > STACK_RANGE
    divisor, unit_label = unit_scale("duration", [c[1] for c in cases], log)
    columns = min(3, len(keys))
    lines = math.ceil(len(keys) / columns)
    fig = Figure(figsize=(WIDTH, 0.9 + 2.5 * lines), dpi=DPI)
    axes = fig.subplots(lines, columns, sharey=True, squeeze=False)
    for ax in axes.flat[len(keys) :]:
        ax.set_visible(False)
    split_missing = False
    for ax, key in zip(axes.flat, keys, strict=False):
        group = panels[key]
        order = _sorted_keys(experiment, bar_names, [tuple(c[0][n] for n in bar_names) for c in group])
        by_bar = {tuple(c[0][n] for n in bar_names): c for c in group}
        for position, bar in enumerate(order):
            record, total, low, high, share = by_bar[bar]
            if not math.isfinite(total):
                _mark(ax, position, REFUSED_LABEL)
                continue
            total, low, high = total / divisor, low / divisor, high / divisor
            known = math.isfinite(share)
            split_missing |= not known
            if log:
                ax.errorbar(
                    [position],
                    [total],
                    yerr=[[total - low], [high - total]],
                    marker="o",
                    color="black",
                    capsize=2,
                    linestyle="none",
                    markersize=5,
                    label="total",
                )
                if known and share > 0:
                    ax.plot(
                        [position - 0.15],
                        [total * share],
                        marker="v",
                        color="#4c72b0",
                        linestyle="none",
                        label="user",
                    )
                if known and share < 1:
                    ax.plot(
                        [position + 0.15],
                        [total * (1 - share)],
                        marker="^",
                        color="#dd8452",
                        linestyle="none",
                        label="system (kernel)",
                    )
            else:
                if known:
                    ax.bar(position, total * share, 0.7, color="#4c72b0", label="user")
                    ax.bar(
                        position,
                        total * (1 - share),
                        0.7,
                        bottom=total * share,
                        color="#dd8452",
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
                ax.errorbar(
                    [position],
                    [total],
                    yerr=[[total - low], [high - total]],
                    fmt="none",
                    ecolor="black",
                    capsize=2,
                    linewidth=0.8,
                )
        category_ticks(
            ax, [_category_label(experiment, by_bar[bar][0], bar_names) for bar in order], "x-small"
        )
        ax.set_xlim(-0.6, len(order) - 0.4)
        if series:
            ax.set_title(_wrap(_label(experiment, series, key), 30 if columns == 3 else 45), fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
    per = spec.y_label or ("CPU" if spec.per is None else f"CPU per {spec.per}")
    if log:
        for ax in axes.flat[: len(keys)]:
            ax.set_yscale("log")
        low_all = min(ax.get_ylim()[0] for ax in axes.flat[: len(keys)])
        high_all = max(ax.get_ylim()[1] for ax in axes.flat[: len(keys)])
        axes.flat[0].set_ylim(low_all, high_all)
        set_log_y(axes.flat[0])
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{per}, {unit_label}" + (" (log scale)" if log else ""), fontsize="small")
    handles: dict[str, Any] = {}
    for ax in axes.flat[: len(keys)]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    context = _fixed_context(experiment, _with_marks(rows, marks), [*bar_names, *series])
    fig.suptitle(title + (f" ({context})" if context else ""), fontsize="medium")
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
    from iobench.metrics import MIN_SPLIT_TICKS

    notes = [
        "User and system: the split of the ticks of all a case's repetitions, applied to its exact total CPU "
        "(user + system = total); whiskers: the total's 95% interval (min–max below 6 reps)."
    ]
    if split_missing:
        notes.append(f"Total only where the case accumulated fewer than {MIN_SPLIT_TICKS} scheduler ticks.")
    notes += _refusal_notes(experiment, marks, _with_marks(rows, marks))
    if log:
        notes.append(
            f"Log axis (totals span {max(totals) / min(totals):.0f}x): user, system and total are points, "
            "since stacked bars cannot be read on a log axis."
        )
    _add_notes(fig, notes)
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
