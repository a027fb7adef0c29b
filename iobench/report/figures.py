"""Figures drawn from an experiment's FigureSpecs. Matplotlib's Agg backend: no display needed.

Every figure is computed from the repetitions themselves (not only the medians), so each
point carries its spread: the marker is the median, the bar spans the slowest to the fastest
repetition.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
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
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from iobench.experiments.base import FigureSpec
from iobench.metrics import format_param, rep_values
from iobench.params import Kind
from iobench.units import format_size

MIB = 1 << 20
#: Inches; small enough that a report page shows a figure and its text together.
WIDTH, HEIGHT, DPI = 7.0, 3.6, 100
#: Small multiples (stacked CPU per series) stop here: more panels are unreadable.
MAX_PANELS = 9
_LINESTYLES = ("-", "--", ":", "-.")


@dataclass
class RenderedFigure:
    """One drawn figure: ``stem`` names its files (``rw-buffer-throughput``)."""

    stem: str
    title: str
    figure: Figure

    def png(self) -> bytes:
        """The figure as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()

    def svg(self) -> str:
        """The figure as SVG text (fonts as paths: no font needed where it is shown)."""
        buffer = io.StringIO()
        self.figure.savefig(buffer, format="svg", bbox_inches="tight")
        return buffer.getvalue()

    def close(self) -> None:
        """Free matplotlib's memory for this figure."""
        plt.close(self.figure)


# ---------------------------------------------------------------- per-repetition values


def _values(rows: pd.DataFrame, metric: str, per: str | None, scale: float) -> pd.Series | None:
    """The per-repetition value of ``metric`` (divided by ``per``, times ``scale``)."""
    return rep_values(rows, metric, per, scale)


def _aggregate(rows: pd.DataFrame, keys: list[str], values: pd.Series) -> pd.DataFrame:
    """Median, min and max per case (keys = run + parameters)."""
    frame = rows[keys].copy()
    frame["_v"] = values
    frame = frame.dropna(subset=["_v"])
    if frame.empty:
        return pd.DataFrame(columns=[*keys, "median", "low", "high"])
    grouped = frame.groupby(keys, sort=False, dropna=False)["_v"]
    out = grouped.median().rename("median").to_frame()
    out["low"], out["high"] = grouped.min(), grouped.max()
    return out.reset_index()


# ---------------------------------------------------------------- axes and labels


def _unit_scale(unit: str, values: pd.Series) -> tuple[float, str]:
    """A divisor and a unit label so the axis reads 1..1000 of something humans know."""
    peak = float(values.abs().max()) if not values.dropna().empty else 0.0
    if unit == "duration":
        for divisor, label in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
            if peak >= divisor:
                return divisor, label
        return 1.0, "ns"
    if unit in ("size", "rate"):
        suffix = "/s" if unit == "rate" else ""
        for power, label in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
            if peak >= 1 << power:
                return float(1 << power), label + suffix
        return 1.0, "B" + suffix
    if unit == "percent":
        return 0.01, "%"
    return 1.0, ""


def _param(experiment: Any, name: str) -> Any:
    return next((p for p in experiment.params if p.name == name), None)


def _numeric_axis(experiment: Any, x: str | None, rows: pd.DataFrame) -> bool:
    """True when x is a number that varies (drawn as a log2 axis), False for categories."""
    param = _param(experiment, x) if x else None
    if param is None or param.kind not in (Kind.SIZE, Kind.INT) or x not in rows:
        return False
    return rows[x].nunique() > 1


def _log2_axis(ax: Any, experiment: Any, x: str, ticks: list[float]) -> None:
    """Log2 x axis with the declared spelling on each tick (4KiB, not 4096)."""
    if ticks[0] <= 0:
        # 0 (e.g. an unbuffered writer) has no place on a log axis: symlog keeps it visible.
        positive = [t for t in ticks if t > 0]
        ax.set_xscale("symlog", base=2, linthresh=min(positive) if positive else 1)
    else:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    param = _param(experiment, x)
    spell = format_size if param.kind is Kind.SIZE else (lambda v: f"{v:g}")
    ax.set_xticklabels([spell(int(t)) for t in ticks], rotation=30 if len(ticks) > 6 else 0)
    ax.set_xlabel(f"{x} (log2 scale{'; linear near 0' if ticks[0] <= 0 else ''})")


def _series_keys(experiment: Any, rows: pd.DataFrame, x: str | None) -> list[str]:
    """Parameters that get one line each: declared series that vary, then run when several."""
    keys = [k for k in experiment.series_params if k != x and k in rows and rows[k].nunique() > 1]
    if rows["run_id"].nunique() > 1:
        keys = ["run_id", *keys]
    if x is not None and x in rows:
        # A line must never join different cases at one x (a zigzag with error bars spanning
        # cases): while some do, give the next varying parameter its own lines too.
        params = [p.name for p in experiment.params if p.name in rows]
        cases = rows.drop_duplicates(subset=["run_id", *params])
        for name in params:
            if not cases.duplicated(subset=[*keys, x]).any():
                break
            if name not in keys and name != x and cases[name].nunique() > 1:
                keys.append(name)
    return keys


def _label(experiment: Any, keys: list[str], key: tuple[Any, ...]) -> str:
    parts = []
    for name, value in zip(keys, key, strict=True):
        parts.append(str(value) if name == "run_id" else f"{name}={format_param(experiment, name, value)}")
    return " ".join(parts) or experiment.name


def _fixed_context(experiment: Any, rows: pd.DataFrame, used: list[str]) -> str:
    """Parameters held constant in the figure, for its title."""
    parts = []
    for param in experiment.params:
        if param.name in rows and param.name not in used and rows[param.name].nunique() == 1:
            parts.append(f"{param.name}={format_param(experiment, param.name, rows[param.name].iloc[0])}")
    return ", ".join(parts)


def _category_labels(experiment: Any, frame: pd.DataFrame, names: list[str]) -> list[str]:
    """One label per row from the parameters that vary (``mode=read cache=cold``)."""
    if not names:
        return [experiment.name] * len(frame)
    # One line per label: stacked multi-line labels collide once they must be rotated.
    return [" ".join(format_param(experiment, n, row[n]) for n in names) for _, row in frame.iterrows()]


def _category_ticks(ax: Any, labels: list[str], fontsize: str = "small") -> None:
    """Category labels that never overlap: flat when short and few, else rotated and right-aligned."""
    ax.set_xticks(np.arange(len(labels)))
    crowded = len(labels) > 4 or max((len(label) for label in labels), default=0) * len(labels) > 60
    if crowded:
        ax.set_xticklabels(labels, fontsize=fontsize, rotation=35, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(labels, fontsize=fontsize)


def _plain_log_y(ax: Any) -> None:
    """Log y axis labelled 0.5, 2, 300 (not 2x10^0); minor labels only when under a decade is shown."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    low, high = ax.get_ylim()
    if low > 0 and high / low < 10:
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _declared_sort(experiment: Any, frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Rows in the parameters' declared order (choices as declared, numbers ascending)."""
    if not names or frame.empty:
        return frame

    def key_for(name: str) -> Callable[[pd.Series], pd.Series]:
        param = _param(experiment, name)
        if param is not None and param.choices:
            order = {c: i for i, c in enumerate(param.choices)}
            return lambda s: s.map(lambda v: order.get(str(v), len(order)))
        return lambda s: s

    frame = frame.copy()
    sort_cols = []
    for name in names:
        frame[f"_k_{name}"] = key_for(name)(frame[name]) if name != "run_id" else frame[name]
        sort_cols.append(f"_k_{name}")
    return frame.sort_values(sort_cols, kind="stable").drop(columns=sort_cols)


# ---------------------------------------------------------------- the figure kinds


def _new_figure(height: float = HEIGHT) -> tuple[Figure, Any]:
    # Figure(), not pyplot: no global registry holding every figure of a long report.
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    ax = fig.subplots()
    return fig, ax


def _finish(fig: Figure, ax: Any, title: str, legend: bool) -> None:
    """Title, grid and a legend placed where it hides nothing."""
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)
    if legend:
        handles, labels = ax.get_legend_handles_labels()
        if handles and max(len(label) for label in labels) > 28:
            # Long labels (several runs) beside the plot would squeeze it to a sliver: below it.
            ax.legend(
                fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False
            )
        elif handles:
            # Outside the plot: a legend over the lines hides exactly what the reader wants.
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()


def _line_or_bars(
    experiment: Any,
    rows: pd.DataFrame,
    spec: FigureSpec,
    metrics: list[tuple[str, str]],
    unit: str,
    title: str,
) -> Figure | None:
    """Lines against a numeric x, else grouped bars per case. ``metrics`` = (metric, label)."""
    x = spec.x or experiment.x_param
    numeric = _numeric_axis(experiment, x, rows)
    series = _series_keys(experiment, rows, x if numeric else None)
    params = [p.name for p in experiment.params if p.name in rows]
    keys = ["run_id", *params]
    aggregated = []
    for metric, label in metrics:
        values = _values(rows, metric, spec.per, spec.scale)
        if values is not None:
            aggregated.append((label, _aggregate(rows, keys, values)))
    aggregated = [(label, agg) for label, agg in aggregated if not agg.empty]
    if not aggregated:
        return None
    everything = pd.concat([agg["high"] for _, agg in aggregated])
    divisor, unit_label = _unit_scale(unit, everything)
    if spec.log_y and unit == "size":
        divisor, unit_label = 1.0, "B"  # spelled per tick instead (see below)
    y_label = spec.y_label or (spec.title or metrics[0][1])
    y_label = f"{y_label}, {unit_label}" if unit_label else y_label
    long_labels = rows["run_id"].nunique() > 1 and bool(series)
    fig, ax = _new_figure(HEIGHT + 1.2 if long_labels else HEIGHT)
    if numeric:
        assert x is not None
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for index, (label, agg) in enumerate(aggregated):
            groups = agg.groupby(series, sort=False) if series else [((), agg)]
            for colour_index, (key, group) in enumerate(groups):
                key = key if isinstance(key, tuple) else (key,)
                group = group.sort_values(x)
                median = group["median"] / divisor
                name = _label(experiment, series, key)
                if len(aggregated) > 1:
                    name = f"{name} {label}" if series else label
                ax.errorbar(
                    group[x], median,
                    yerr=[median - group["low"] / divisor, group["high"] / divisor - median],
                    marker="o", markersize=4, capsize=3, label=name,
                    color=colours[colour_index % len(colours)], linestyle=_LINESTYLES[index % 4],
                )  # fmt: skip
        _log2_axis(ax, experiment, x, sorted(float(v) for v in rows[x].unique()))
        used = [x, *series]
    else:
        # One bar per case: the varying parameters label it, one bar colour per metric/run.
        varying = [p for p in params if rows[p].nunique() > 1]
        runs = list(dict.fromkeys(rows["run_id"]))
        cases = _declared_sort(experiment, aggregated[0][1][varying].drop_duplicates(), varying)
        labels = _category_labels(experiment, cases, varying)
        bars = [(label, run) for label, _ in aggregated for run in runs]
        width = 0.8 / len(bars)
        positions = np.arange(len(cases))
        for index, (label, run) in enumerate(bars):
            agg = dict(aggregated)[label]
            agg = agg[agg["run_id"] == run]
            merged = cases.merge(agg, on=varying, how="left") if varying else agg.head(1)
            median = merged["median"].to_numpy(dtype=float) / divisor
            low = median - merged["low"].to_numpy(dtype=float) / divisor
            high = merged["high"].to_numpy(dtype=float) / divisor - median
            name = " ".join(
                part for part in (run if len(runs) > 1 else "", label if len(metrics) > 1 else "") if part
            )
            ax.bar(positions + (index - (len(bars) - 1) / 2) * width, median, width, yerr=[low, high],
                   capsize=2, label=name or None)  # fmt: skip
        _category_ticks(ax, labels)
        ax.set_xlabel(" / ".join(varying))
        used = varying
    if spec.log_y and unit == "size" and divisor == 1.0 and unit_label == "B":
        # Sizes on a log axis: ticks at powers of two spelled as sizes (2 KiB, 128 KiB, 2 MiB).
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_locator(LogLocator(base=4))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_size(int(v)) if v >= 1 else ""))
        ax.yaxis.set_minor_formatter(NullFormatter())
        y_label = y_label.removesuffix(", B") + " (log scale)"
    elif spec.log_y:
        _plain_log_y(ax)
        y_label += " (log scale)"
    ax.set_ylabel(y_label)
    context = _fixed_context(experiment, rows, used)
    _finish(fig, ax, title + (f"\n{context}" if context else ""), legend=True)
    return fig


def _stacked_cpu(experiment: Any, rows: pd.DataFrame, spec: FigureSpec, title: str) -> Figure | None:
    """User and system CPU stacked per case, one small panel per series."""
    user = _values(rows, "user_ns", spec.per, spec.scale)
    system = _values(rows, "sys_ns", spec.per, spec.scale)
    if user is None or system is None:
        return None
    x = spec.x or experiment.x_param
    params = [p.name for p in experiment.params if p.name in rows]
    keys = ["run_id", *params]
    users = _aggregate(rows, keys, user)
    systems = _aggregate(rows, keys, system)
    totals = _aggregate(rows, keys, user + system)
    merged = users.merge(systems, on=keys, suffixes=("_user", "_sys")).merge(totals, on=keys)
    if merged.empty:
        return None
    x_axis = x if x in params and rows[x].nunique() > 1 else None
    series = _series_keys(experiment, rows, x_axis)
    if x_axis is None:
        # No axis: every varying non-series parameter goes on the bars.
        bar_names = [p for p in params if rows[p].nunique() > 1 and p not in series]
    else:
        bar_names = [x_axis]
    if not bar_names:
        # Nothing left to put on the bars (zero-copy: only the method varies): the series go
        # on the bars of one panel instead of one bar per panel.
        bar_names = [k for k in series if k != "run_id"]
        series = [k for k in series if k == "run_id"]
    groups = list(merged.groupby(series, sort=False)) if series else [((), merged)]
    groups = groups[:MAX_PANELS]
    columns = min(3, len(groups))
    lines = math.ceil(len(groups) / columns)
    divisor, unit_label = _unit_scale("duration", merged["high"])
    fig = Figure(figsize=(WIDTH, 0.6 + 2.4 * lines), dpi=DPI)
    axes = fig.subplots(lines, columns, sharey=True, squeeze=False)
    for ax in axes.flat[len(groups) :]:
        ax.set_visible(False)
    for ax, (key, group) in zip(axes.flat, groups, strict=False):
        key = key if isinstance(key, tuple) else (key,)
        group = _declared_sort(experiment, group, bar_names)
        positions = np.arange(len(group))
        u = group["median_user"].to_numpy(dtype=float) / divisor
        s = group["median_sys"].to_numpy(dtype=float) / divisor
        ax.bar(positions, u, 0.7, label="user", color="#4c72b0")
        ax.bar(positions, s, 0.7, bottom=u, label="system (kernel)", color="#dd8452")
        total = group["median"].to_numpy(dtype=float) / divisor
        ax.errorbar(positions, total, yerr=[total - group["low"] / divisor, group["high"] / divisor - total],
                    fmt="none", ecolor="black", capsize=2, linewidth=0.8)  # fmt: skip
        _category_ticks(ax, _category_labels(experiment, group, bar_names), "x-small")
        ax.set_title(_label(experiment, series, key), fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
    per = spec.y_label or ("CPU" if spec.per is None else f"CPU per {spec.per}")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{per}, {unit_label}", fontsize="small")
    axes.flat[0].legend(fontsize="x-small", loc="upper right")
    context = _fixed_context(experiment, rows, [*bar_names, *series])
    fig.suptitle(title + (f" ({context})" if context else ""), fontsize="medium")
    fig.tight_layout()
    return fig


def _where(rows: pd.DataFrame, spec: FigureSpec) -> pd.DataFrame:
    """The rows the spec's ``where`` allows (values compared as text: CSV reads 0 as 0.0)."""
    for name, allowed in spec.where:
        if name not in rows:
            return rows.iloc[0:0]
        wanted = {str(v) for v in allowed}
        values = rows[name].map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
        rows = rows[values.isin(wanted)]
    return rows


def render_figure(experiment: Any, rows: pd.DataFrame, spec: FigureSpec) -> Figure | None:
    """One figure from the ok repetitions of one experiment (the class; any number of runs),
    or None when the run lacks what the spec needs (its metrics, or at least one case).
    """
    rows = _where(rows, spec)
    if rows.empty:
        return None
    if spec.kind == "throughput":
        if rows["bytes"].fillna(0).le(0).all():
            return None
        spec = FigureSpec("throughput", title=spec.title or "Throughput", metric="bytes_per_s", unit="rate",
                          x=spec.x, log_y=True, y_label=spec.y_label or "throughput")  # fmt: skip
        return _line_or_bars(experiment, rows, spec, [("bytes_per_s", "throughput")], "rate", spec.title)
    if spec.kind == "stacked_cpu":
        return _stacked_cpu(experiment, rows, spec, spec.title or "CPU time: user vs system")
    if spec.kind == "percentiles":
        metrics = [(m, m.removeprefix("lat_").removesuffix("_ns")) for m in spec.metrics if m in rows]
        metrics = [
            (m, label) for m, label in metrics if not pd.to_numeric(rows[m], errors="coerce").isna().all()
        ]
        if not metrics:
            return None
        return _line_or_bars(experiment, rows, spec, metrics, spec.unit, spec.title or "Latency percentiles")
    if spec.kind == "metric":
        names = spec.metrics or (spec.metric,)
        titles = {c.metric: c.title for c in experiment.columns if c.per is None}
        metrics = [
            (m, titles.get(m, m))
            for m in names
            if m in rows and not pd.to_numeric(rows[m], errors="coerce").isna().all()
        ]
        if not metrics:
            return None
        title = spec.title or spec.metric
        return _line_or_bars(experiment, rows, spec, metrics, spec.unit, title)
    raise ValueError(f"unknown figure kind {spec.kind!r}")


def experiment_figures(experiment: Any, rows: pd.DataFrame) -> list[RenderedFigure]:
    """All figures the experiment (the class) declares that this run can draw, in order."""
    experiment_name = experiment.name
    drawn = []
    for index, spec in enumerate(experiment.report_figures()):
        figure = render_figure(experiment, rows, spec)
        if figure is None:
            continue
        suffix = spec.kind if spec.kind != "metric" else (spec.metric or str(index))
        stem = f"{experiment_name}-{suffix}".replace("_", "-")
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
