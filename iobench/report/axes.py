"""Axis helpers for report figures: units people read, log axes with at least two labelled
ticks, x axes that spell parameter values as declared, category labels that never overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator

from iobench.metrics import param_named
from iobench.params import Kind
from iobench.units import format_duration, format_size

#: Log axes get tick marks from the first of these ladders that labels at least two values.
_LADDERS = ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0))
#: More labelled ticks than this crowd a 3.6-inch axis.
MAX_TICKS = 8


def unit_scale(unit: str, values: Iterable[float], log: bool = True) -> tuple[float, str]:
    """A divisor and a unit label for an axis. On a log axis the *typical* value (the median
    of the values drawn) decides, so the bulk of the points read 1..1000 and one large outlier
    (a max) does not put microseconds on a millisecond axis; a linear axis runs from 0 to its
    largest value, which decides there."""
    finite = [abs(v) for v in values if v == v and math.isfinite(v) and v != 0]
    typical = (float(np.median(finite)) if log else max(finite)) if finite else 0.0
    if unit == "duration":
        for divisor, label in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
            if typical >= divisor:
                return divisor, label
        return 1.0, "ns"
    if unit in ("size", "rate"):
        suffix = "/s" if unit == "rate" else ""
        for power, label in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
            if typical >= 1 << power:
                return float(1 << power), label + suffix
        return 1.0, "B" + suffix
    if unit == "percent":
        return 0.01, "%"
    return 1.0, ""


def plain_number(value: float) -> str:
    """0.5, 2, 300, 1.5e+06: short and exact enough for a tick."""
    return f"{value:g}"


def log_ticks(low: float, high: float, base: int = 10) -> list[float]:
    """Tick values for a log axis spanning low..high: at least two inside the range.

    Decades (or powers of 2 for sizes) when the range holds two, then 1-2-5 (or 1-1.5
    sub-steps), then plain evenly spaced values for a range narrower than a factor of 2.
    """
    if not (low > 0 and high > low):
        return []
    if base == 2:
        first, last = math.floor(math.log2(low)), math.ceil(math.log2(high))
        powers = [2.0**k for k in range(first, last + 1) if low <= 2.0**k <= high]
        if len(powers) >= 2:
            step = max(1, math.ceil(len(powers) / MAX_TICKS))
            return powers[::step]
        halves = sorted(
            {m * 2.0**k for k in range(first, last + 1) for m in (1.0, 1.5) if low <= m * 2.0**k <= high}
        )
        if len(halves) >= 2:
            return halves
    else:
        first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
        for ladder in _LADDERS:
            ticks = sorted(
                {m * 10.0**k for k in range(first, last + 1) for m in ladder if low <= m * 10.0**k <= high}
            )
            if len(ticks) >= 2:
                step = max(1, math.ceil(len(ticks) / MAX_TICKS))
                return ticks[::step]
    return [t for t in MaxNLocator(nbins=4).tick_values(low, high) if low <= t <= high]


def set_log_y(ax: Any, base: int = 10, spell: Callable[[float], str] = plain_number) -> None:
    """Make the y axis logarithmic with at least two labelled ticks inside its current range."""
    ax.set_yscale("log", base=base)
    low, high = ax.get_ylim()
    ticks = log_ticks(low, high, base)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: spell(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(low, high)


def size_spelling(value: float) -> str:
    """A size tick: ``4 KiB``; fractions of a byte are not sizes."""
    return format_size(int(value)) if value >= 1 else ""


def log2_x(ax: Any, experiment: Any, x: str, ticks: list[float]) -> None:
    """Log2 x axis with the declared spelling on each tick (4 KiB, not 4096)."""
    if ticks[0] <= 0:
        # 0 (e.g. an unbuffered writer) has no place on a log axis: symlog keeps it visible.
        positive = [t for t in ticks if t > 0]
        ax.set_xscale("symlog", base=2, linthresh=min(positive) if positive else 1)
    else:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    param = param_named(experiment, x)
    if param is not None and param.kind is Kind.SIZE:
        spell: Any = format_size
    elif param is not None and param.kind is Kind.DURATION:
        spell = format_duration
    else:
        spell = lambda v: f"{v:g}"  # noqa: E731
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: spell(int(v)) if v == int(v) else spell(v)))
    if len(ticks) > 6:
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_xlabel(f"{x} (log2 scale{'; linear near 0' if ticks[0] <= 0 else ''})")


def category_ticks(ax: Any, labels: list[str], fontsize: str = "small") -> None:
    """Category labels that never overlap: flat when short and few, else rotated and right-aligned."""
    ax.set_xticks(np.arange(len(labels)))
    crowded = len(labels) > 4 or max((len(label) for label in labels), default=0) * len(labels) > 60
    if crowded:
        ax.set_xticklabels(labels, fontsize=fontsize, rotation=35, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(labels, fontsize=fontsize)
