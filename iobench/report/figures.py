"""Figures. Matplotlib's Agg backend: no display needed, same pixels everywhere."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FixedLocator, NullLocator

from iobench.experiments import get_experiment
from iobench.report.tables import format_param
from iobench.units import format_size

MIB = 1 << 20


def throughput_figure(summary: pd.DataFrame, experiment_name: str, out_dir: Path) -> Path | None:
    """Throughput against the experiment's axis (log2, human labels), one line per series.

    Error bars span the slowest to the fastest repetition. Returns None when the experiment
    has no axis or did not ask for this figure.
    """
    experiment = get_experiment(experiment_name)
    axis = experiment.x_param
    rows = summary[summary["experiment"] == experiment_name]
    if axis is None or rows.empty or not experiment.throughput_figure:
        return None
    series_keys = list(experiment.series_params)
    if rows["run_id"].nunique() > 1:
        series_keys = ["run_id", *series_keys]
    fixed = [p.name for p in experiment.params if p.name != axis and p.name not in series_keys]
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for key, group in rows.groupby(series_keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        group = group.sort_values(axis)
        median = group["bytes_per_s"] / MIB
        low = median - group["bytes_per_s_low"] / MIB
        high = group["bytes_per_s_high"] / MIB - median
        label = " ".join(
            f"{k}={format_param(experiment_name, k, v)}" for k, v in zip(series_keys, key, strict=True)
        )
        ax.errorbar(group[axis], median, yerr=[low, high], marker="o", capsize=3, label=label)
    ticks = sorted(rows[axis].unique())
    if ticks[0] <= 0:
        # 0 (e.g. an unbuffered writer) has no place on a log axis: symlog keeps it visible.
        ax.set_xscale("symlog", base=2, linthresh=min(t for t in ticks if t > 0) if ticks[-1] > 0 else 1)
    else:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([format_size(t) for t in ticks], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_xlabel(f"{axis} (log2 scale{'; linear near 0' if ticks[0] <= 0 else ''})")
    ax.set_ylabel("throughput, MiB/s (log scale)")
    context = ", ".join(f"{name}={format_param(experiment_name, name, rows[name].iloc[0])}" for name in fixed)
    ax.set_title(f"{experiment_name}: throughput vs {axis}" + (f" ({context})" if context else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = out_dir / f"{experiment_name}-throughput.png"
    fig.savefig(path)
    plt.close(fig)
    return path
