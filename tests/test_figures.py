"""Figure lint: every figure of every experiment, drawn from synthetic runs shaped like the quick
sweep (bench_configs/quick.toml), must be readable and honest:

- every axis shows at least two labelled ticks;
- no two series are drawn exactly over one another unless a note says so;
- no refused or not-run case is plotted as a value (it is a mark with its reason).

Then one test per defect found by looking at a real quick-sweep report (issue 13 §5).
"""

from __future__ import annotations

import json
import math
import random
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from iobench.errors import IobenchError
from iobench.experiments import all_experiments, get_experiment
from iobench.metrics import SERIES_SUFFIX, metric, summarize
from iobench.params import case_id, expand_cases, resolve
from iobench.report.axes import log_ticks, unit_scale
from iobench.report.figures import REFUSED_LABEL, _where, render_figure

QUICK = Path(__file__).resolve().parent.parent / "bench_configs" / "quick.toml"
#: What a refused or not-run case "measured": if any figure plots it, the lint sees this number.
SENTINEL = 7.77e13
#: Every divisor a figure may use for its unit (ns..s, B..GiB, percent).
DIVISORS = (1.0, 1e3, 1e6, 1e9, 2.0**10, 2.0**20, 2.0**30, 0.01)
REPS = 5


def _quick_cases(experiment: Any) -> list[dict[str, Any]]:
    """The cases a quick sweep runs for this experiment (all its entries), deduplicated as
    the engine does (parameters that do not apply)."""
    config = tomllib.loads(QUICK.read_text())
    cases: dict[tuple, dict[str, Any]] = {}
    for entry in config["experiment"]:
        if entry["name"] != experiment.name:
            continue
        values = resolve(experiment.params, {k: v for k, v in entry.items() if k != "name"})
        for case in expand_cases(experiment.params, values):
            try:
                experiment.check_case(case)
            except IobenchError:
                continue
            ignored = experiment.irrelevant_params(case)
            cases.setdefault(tuple((k, v) for k, v in case.items() if k not in ignored), case)
    return list(cases.values())


def _metric_names(experiment: Any) -> tuple[set[str], set[str], set[str]]:
    """(values, divisors, success flags) the experiment's tables and figures read."""
    values = {"elapsed_ns", "cpu_ns", "user_ns", "sys_ns", "bytes", "ops"}
    divisors = {"bytes", "ops"}
    flags = set()
    for column in experiment.columns:
        values.add(column.metric)
        if column.per:
            divisors.add(column.per)
    for spec in experiment.report_figures():
        values.update(m for m in (spec.metric, *spec.metrics) if m)
        if spec.per:
            divisors.add(spec.per)
        if spec.succeeded:
            flags.add(spec.succeeded)
    return values - divisors - flags, divisors, flags


def _series_value(name: str, experiment: Any, rng: random.Random, scale: float) -> str:
    """One repetition's time series (a ``*_series`` JSON column): 50 samples of every key the
    experiment's series figures draw, a ramp with noise."""
    keys = {key for spec in experiment.report_figures() if spec.metric == name for key in spec.metrics}
    samples = 50
    series: dict[str, list[float]] = {"t_ns": [i * 2e7 for i in range(samples)]}
    for key in sorted(keys):
        level = scale * rng.uniform(0.5, 2.0)
        series[key] = [level * (1 + i / samples) * rng.uniform(0.9, 1.1) for i in range(samples)]
    return json.dumps(series)


def _value(name: str, experiment: Any, rng: random.Random, scale: float) -> Any:
    declared = metric(name, experiment)
    unit = declared.unit if declared else "count"
    if name.endswith(SERIES_SUFFIX):
        return _series_value(name, experiment, rng, scale)
    if unit in ("text", "flag"):
        return "ok"
    if unit == "count":
        # Small counts with zeros: the shape of records lost, torn messages, ENOBUFS.
        return rng.choice((0, 0, 1, 3, 40, 1200))
    if unit in ("percent", "fraction"):
        return rng.uniform(0.05, 1.0)
    if unit == "ratio":
        return rng.uniform(0.01, 3.0)
    return scale * rng.lognormvariate(0, 0.15)


def synthetic_rows(experiment: Any, spread: float = 2.0, seed: int = 7) -> pd.DataFrame:
    """Five repetitions per quick-sweep case with plausible random values (cases' magnitudes
    spanning ``spread`` decades), the last case not run (status unsupported, its would-be
    values SENTINEL), and every third case's operation refused where a figure declares a
    success flag (its value SENTINEL)."""
    rng = random.Random(seed)
    values, divisors, flags = _metric_names(experiment)
    cases = _quick_cases(experiment)
    rows = []
    for index, case in enumerate(cases):
        base = {"run_id": "r", "experiment": experiment.name, "case": case_id(experiment.params, case)} | case
        magnitude = 10 ** rng.uniform(5, 5 + spread)
        if index == len(cases) - 1 and len(cases) > 2:
            rows.append(
                base
                | {"rep": 0, "status": "unsupported", "status_reason": "EINVAL: synthetic refusal"}
                | dict.fromkeys(values, SENTINEL)
                | dict.fromkeys(divisors, 1)
            )
            continue
        refused = bool(flags) and index % 3 == 0
        for rep in range(1, REPS + 1):
            row = base | {"rep": rep, "status": "ok", "engine": "python", "integrity_ok": True}
            for name in sorted(values):
                row[name] = _value(name, experiment, rng, magnitude)
            for name in divisors:
                row[name] = float(rng.choice((1, 4, 16, 256))) if name not in ("bytes", "ops") else 1 << 20
            cpu = magnitude * rng.uniform(0.5, 1.0)
            # Tick-sampled user and system that add up to more than the exact total, as getrusage can.
            row |= {"elapsed_ns": magnitude, "cpu_ns": cpu, "user_ns": 0.6 * cpu, "sys_ns": 0.7 * cpu}
            for flag in flags:
                row[flag] = not refused
            if refused:
                row |= {name: SENTINEL for name in values if name not in ("elapsed_ns", "cpu_ns")}
                row |= dict.fromkeys(divisors, 1)
                row["mlock_errno"] = "ENOMEM"
            rows.append(row)
    return pd.DataFrame(rows)


def _figures(experiment: Any, frame: pd.DataFrame) -> list[tuple[Any, Figure]]:
    summary = summarize(frame)
    not_run = frame[frame["status"] != "ok"]
    drawn = []
    for spec in experiment.report_figures():
        figure = render_figure(experiment, summary, spec, not_run)
        if figure is not None:
            FigureCanvasAgg(figure).draw()
            drawn.append((spec, figure))
    return drawn


# ---------------------------------------------------------------- what the lint reads


def _labels_shown(axis: Any) -> list[str]:
    """Tick labels the reader sees on an axis: drawn, visible, non-empty, inside the view."""
    low, high = sorted(axis.get_view_interval())
    shown = []
    for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
        label = tick.label1
        inside = low - 1e-9 * abs(low) <= tick.get_loc() <= high + 1e-9 * abs(high)
        if inside and tick.get_visible() and label.get_visible() and label.get_text().strip():
            shown.append(label.get_text())
    return shown


def _texts(figure: Figure) -> str:
    return " ".join(t.get_text() for t in figure.texts).replace("\n", " ")


def _series(ax: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, x, y) of every labelled line: error-bar series and reference lines."""
    found = []
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer) and container.lines[0] is not None:
            line = container.lines[0]
            found.append(
                (
                    container.get_label(),
                    np.asarray(line.get_xdata(), float),
                    np.asarray(line.get_ydata(), float),
                )
            )
    for line in ax.lines:
        label = line.get_label()
        if not label.startswith("_") and label != REFUSED_LABEL:
            found.append((label, np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)))
    return found


def _plotted_values(ax: Any) -> list[float]:
    values = []
    for line in ax.lines:
        if line.get_label() != REFUSED_LABEL:
            values += [float(v) for v in np.asarray(line.get_ydata(), float)]
    for patch in ax.patches:
        if hasattr(patch, "get_height"):
            values += [float(patch.get_height()), float(patch.get_y() + patch.get_height())]
    return [v for v in values if math.isfinite(v)]


def lint(spec: Any, figure: Figure, refused_expected: bool) -> list[str]:
    """Everything wrong with one drawn figure."""
    problems = []
    axes = [ax for ax in figure.axes if ax.get_visible()]
    texts = _texts(figure)
    for ax in axes:
        siblings = [ax, *ax.get_shared_y_axes().get_siblings(ax)]
        if not any(len(_labels_shown(other.yaxis)) >= 2 for other in siblings):
            problems.append(f"y axis with labels {_labels_shown(ax.yaxis)} ({spec.title})")
        if len(_labels_shown(ax.xaxis)) < 2:
            problems.append(f"x axis with labels {_labels_shown(ax.xaxis)} ({spec.title})")
        series = _series(ax)
        for i, (label_a, x_a, y_a) in enumerate(series):
            for label_b, x_b, y_b in series[i + 1 :]:
                same = (
                    x_a.shape == x_b.shape and np.array_equal(x_a, x_b) and np.allclose(y_a, y_b, rtol=1e-9)
                )
                noted = "Identical" in texts and label_a in texts and label_b in texts
                if same and not noted:
                    problems.append(f"{label_a!r} and {label_b!r} coincide without a note ({spec.title})")
        scale = spec.scale if spec.per else 1.0
        for value in _plotted_values(ax):
            for divisor in DIVISORS:
                for sentinel in (SENTINEL, SENTINEL * scale):
                    if math.isclose(value, sentinel / divisor, rel_tol=1e-6):
                        problems.append(f"a refused or not-run case is plotted as {value:g} ({spec.title})")
    if refused_expected and "No value" not in texts:
        problems.append(f"a refused or not-run case is not marked ({spec.title})")
    return problems


EXPERIMENTS = [e for e in all_experiments() if _quick_cases(e)]


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda e: e.name)
def test_figure_lint(experiment: Any) -> None:
    """Cases spanning two decades: wide enough for log axes and log-scaled CPU panels, narrow
    enough that some log axes hold a single decade (one label on the old axes)."""
    frame = synthetic_rows(experiment)
    figures = _figures(experiment, frame)
    assert figures, f"{experiment.name} draws no figure from a quick-sweep-shaped run"
    not_run = frame[frame["status"] != "ok"]
    problems = []
    for spec, figure in figures:
        refused = frame[frame[spec.succeeded] == False] if spec.succeeded else frame.iloc[0:0]  # noqa: E712
        expected = not _where(not_run, spec).empty or not _where(refused, spec).empty
        problems += lint(spec, figure, expected)
    assert not problems, "\n".join(problems)


def test_every_experiment_is_linted() -> None:
    assert {e.name for e in EXPERIMENTS} == {e.name for e in all_experiments()}


# ---------------------------------------------------------------- the defects, one test each


def _rows(experiment: Any, cases: list[dict[str, Any]], reps: int = 5, run_id: str = "r") -> pd.DataFrame:
    """Rows of ``reps`` repetitions per case: each case's parameters (the rest at their first
    default) and metrics as given; a metric given as a list has one value per repetition."""
    rows = []
    defaults = {
        p.name: (p.default[0] if isinstance(p.default, tuple) else p.default) for p in experiment.params
    }
    for given in cases:
        case = defaults | {k: v for k, v in given.items() if k in defaults}
        metrics = {k: v for k, v in given.items() if k not in defaults}
        for rep in range(1, reps + 1):
            row = {"run_id": run_id, "experiment": experiment.name, "case": case_id(experiment.params, case)}
            row |= case | {"rep": rep, "status": "ok", "engine": "python"}
            row |= {k: (v[rep - 1] if isinstance(v, list) else v) for k, v in metrics.items()}
            rows.append(row)
    return pd.DataFrame(rows)


def _one(name: str, frame: pd.DataFrame, title: str) -> Figure:
    experiment = get_experiment(name)
    spec = next(s for s in experiment.report_figures() if s.title.startswith(title))
    figure = render_figure(experiment, summarize(frame), spec, frame[frame["status"] != "ok"])
    assert figure is not None
    FigureCanvasAgg(figure).draw()
    return figure


def test_log_ticks_label_at_least_two_values_on_any_range() -> None:
    for low, high in ((22.0, 28.0), (1.3, 3.9), (0.35, 0.95), (0.001, 1e4), (180.0, 220.0)):
        ticks = log_ticks(low, high)
        assert len(ticks) >= 2 and all(low <= t <= high for t in ticks), (low, high, ticks)
    sizes = log_ticks(3000.0, 5000.0, base=2)
    assert len(sizes) >= 2 and all(3000 <= t <= 5000 for t in sizes)


def test_a_narrow_throughput_range_still_has_two_labelled_ticks() -> None:
    """zero-byte-recv's two strategies at 22..28 MiB/s: the log axis had a single label."""
    frame = _rows(get_experiment("zero-byte-recv"), [
        {"strategy": "prepost", "bytes": 1 << 20, "elapsed_ns": [3.6e7, 3.7e7, 3.75e7, 3.8e7, 3.9e7]},
        {"strategy": "zero-byte", "bytes": 1 << 20, "elapsed_ns": [3.9e7, 4.0e7, 4.1e7, 4.3e7, 4.5e7]},
    ])  # fmt: skip
    figure = _one("zero-byte-recv", frame, "Throughput")
    ax = figure.axes[0]
    assert len(_labels_shown(ax.yaxis)) >= 2
    assert not ax.patches, "a log axis draws points, never bars from wherever the axis starts"


def test_units_follow_the_typical_value_not_the_largest() -> None:
    """context-switch: p50 and p99 of tens of µs were drawn on an ms axis because of one max."""
    assert unit_scale("duration", [2e4, 4e4, 6e4, 1.3e6]) == (1e3, "µs")
    assert unit_scale("rate", [3 << 30, 5 << 30, 100]) == (float(1 << 30), "GiB/s")
    assert unit_scale("size", [256 << 10, 16 << 20], log=False) == (float(1 << 20), "MiB")  # 0..peak
    spec = next(s for s in get_experiment("context-switch").report_figures() if s.kind == "percentiles")
    assert "lat_max_ns" not in spec.metrics  # one sample's max in a figure of medians dominated it


def test_series_drawn_over_each_other_are_named_in_a_note() -> None:
    """file-concurrency: pwrite's zero records lost were hidden exactly under append's."""
    cases = [
        {"mode": mode, "threads": threads, "records_lost": lost, "elapsed_ns": 1e6, "bytes": 1 << 20}
        for mode, lost in (("write-racing", 1500), ("pwrite", 0), ("append", 0))
        for threads in (1, 4)
    ]
    figure = _one("file-concurrency", _rows(get_experiment("file-concurrency"), cases), "Records lost")
    texts = _texts(figure)
    assert "Identical at this scale: mode=pwrite, mode=append" in texts
    hollow = [c.lines[0] for c in figure.axes[0].containers if c.lines[0].get_markerfacecolor() == "none"]
    assert len(hollow) == 1 and lint(get_experiment("file-concurrency").figures[0], figure, False) == []


def test_a_refused_mlock_is_a_mark_not_a_value() -> None:
    """page-lock plotted the time until mlock's refusal as ~0 µs per page."""
    experiment = get_experiment("page-lock")
    cases = [
        {"mode": "lock", "size": size, "pages": size // 4096, "mlock_ns": size / 2, "locked": True}
        for size in (64 << 10, 1 << 20, 4 << 20)
    ] + [{"mode": "over-limit", "pages": 2049, "mlock_ns": 1234.0, "locked": False, "mlock_errno": "ENOMEM"}]
    figure = _one("page-lock", _rows(experiment, cases), "mlock time per page")
    plotted = _plotted_values(figure.axes[0])
    assert not any(math.isclose(v, 1234.0 / 2049 / d) for v in plotted for d in DIVISORS)
    assert "mode=over-limit: refused (ENOMEM)" in _texts(figure)


def test_a_size_that_does_not_apply_is_a_line_not_a_point_at_zero() -> None:
    """sock-buffer drew "unset" (no size requested) at 0 B, beside a real request of 0 bytes."""
    experiment = get_experiment("sock-buffer")
    cases = [{"transport": "tcp", "buffers": "unset", "bufsize": 0, "bytes": 1 << 20, "elapsed_ns": 1e6}] + [
        {"transport": "tcp", "buffers": "both", "bufsize": size, "bytes": 1 << 20, "elapsed_ns": e}
        for size, e in ((0, 1e8), (65536, 2e6))
    ]
    figure = _one("sock-buffer", _rows(experiment, cases), "TCP throughput")
    ax = figure.axes[0]
    points = {c.get_label(): list(c.lines[0].get_xdata()) for c in ax.containers}
    assert points == {"buffers=both": [0.0, 65536.0]}  # only the cases that requested a size
    references = [line for line in ax.lines if "does not apply" in line.get_label()]
    # 1 MiB in 1 ms: 1000 MiB/s (the unit follows the typical value: MiB/s here).
    assert len(references) == 1 and list(references[0].get_ydata()) == [1000.0, 1000.0]


def test_sync_write_percentiles_are_a_handful_of_series_per_mode() -> None:
    """14 series (7 modes x p50/p99) over two x points were unreadable."""
    experiment = get_experiment("sync-write")
    modes = experiment.params[0].choices
    cases = [
        {"mode": mode, "bs": bs, "lat_p50_ns": 1e4 * (i + 1), "lat_p99_ns": 3e4 * (i + 1), "elapsed_ns": 1e6}
        for i, mode in enumerate(modes)
        for bs in (4096, 65536)
    ]
    figure = _one("sync-write", _rows(experiment, cases), "Per-write latency")
    ax = figure.axes[0]
    assert len(ax.get_legend_handles_labels()[1]) == 4  # bs x percentile
    assert [t.get_text() for t in ax.get_xticklabels()] == list(modes)


def _cpu_rows(run_id: str, started_hour: int) -> Any:
    from tests.report_data import make_run

    run = make_run(f"2026010{started_hour}-000000-{run_id}", speed={1: 1e6, 4096: 2e9, 65536: 8e9})
    run.meta["started"] = f"2026-01-0{started_hour}T0{started_hour}:00:00+00:00"
    return run


def test_two_runs_name_series_by_what_differs_and_titles_do_not_overlap() -> None:
    from iobench.report.model import build_model

    model = build_model([_cpu_rows("aaaa", 1), _cpu_rows("bbbb", 2)])
    figures = {f.stem: f.figure for f in model.sections[0].figures}
    legend = figures["rw-buffer-throughput"].axes[0].get_legend_handles_labels()[1]
    assert legend == ["01-01 01:00", "01-02 02:00"]
    cpu = figures["rw-buffer-stacked-cpu"]
    canvas = FigureCanvasAgg(cpu)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in cpu.axes if ax.get_visible() and ax.get_title()]
    assert len(boxes) >= 2
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), "panel titles overlap"


@pytest.mark.parametrize("small_cpu", [2e7, 1e6], ids=["stacked-bars", "log-points"])
def test_stacked_cpu_never_shows_user_plus_system_above_total(small_cpu: float) -> None:
    """Tick-sampled user + system of each repetition exceed the exact total; the figure draws
    the split of the accumulated ticks applied to the total, as bars, or as points on a log
    axis when the totals span more than 30x."""
    experiment = get_experiment("syscall")
    cases = [
        # 5 reps x 0.2 s of CPU = 100 ticks of 10 ms: enough for a split.
        {"call": "getppid", "elapsed_ns": 2e8, "cpu_ns": 2e8, "user_ns": 0.5e8, "sys_ns": 2.0e8, "ops": 10**6},
        {"call": "read0", "elapsed_ns": 3e8, "cpu_ns": 3e8, "user_ns": 1.0e8, "sys_ns": 2.5e8, "ops": 10**6},
        # Under 50 ticks: no split, the total only.
        {"call": "python", "elapsed_ns": small_cpu, "cpu_ns": small_cpu, "user_ns": small_cpu,
         "sys_ns": small_cpu, "ops": 10**6},
    ]  # fmt: skip
    figure = _one("syscall", _rows(experiment, cases), "CPU per call")
    ax = figure.axes[0]
    totals = [200.0, 300.0, small_cpu / 1e6]  # ns per call
    if small_cpu == 2e7:
        tops: dict[int, float] = {}
        for patch in ax.patches:
            centre = round(patch.get_x() + patch.get_width() / 2)
            tops[centre] = max(tops.get(centre, 0.0), patch.get_y() + patch.get_height())
        assert [tops[i] for i in range(3)] == pytest.approx(totals)
        assert len(ax.patches) == 5  # user + system twice, the total alone once
    else:
        assert not ax.patches
        points: dict[str, list[float]] = {}
        for line in ax.lines:
            points.setdefault(line.get_label(), []).extend(line.get_ydata())
        total = [c.lines[0].get_ydata()[0] for c in ax.containers]
        assert total == pytest.approx(totals)
        assert points["user"] == pytest.approx([40.0, 300 / 3.5])
        assert points["system (kernel)"] == pytest.approx([160.0, 300 * 2.5 / 3.5])
    assert "fewer than 50 scheduler ticks" in _texts(figure)


def test_the_throughput_drawn_is_bytes_over_median_elapsed() -> None:
    """With an even number of repetitions the median of per-rep rates is not bytes / median
    elapsed; figures and tables show the latter (the summary's value)."""
    experiment = get_experiment("zero-copy")
    elapsed = [1e6, 2e6, 4e6, 8e6]
    cases = [{"method": m, "bytes": 1 << 30, "elapsed_ns": elapsed} for m in ("read-write", "sendfile")]
    frame = _rows(experiment, cases, reps=4)
    figure = _one("zero-copy", frame, "Throughput per method")
    drawn = figure.axes[0].containers[0].lines[0].get_ydata()
    expected = (1 << 30) / (3e6 / 1e9) / (1 << 30)  # GiB/s at the median elapsed, 3 ms
    assert list(drawn) == pytest.approx([expected, expected])
    assert "Throughput = bytes / median elapsed" in _texts(figure)


def test_a_linear_size_axis_reads_plain_numbers_in_the_unit_of_its_label() -> None:
    """zero-byte-recv's memory figure spelled its KiB-scaled ticks as sizes again (14.65 KiB
    for 15 MiB)."""
    experiment = get_experiment("zero-byte-recv")
    cases = [
        {
            "strategy": "prepost",
            "buffer_bytes_held": 16 << 20,
            "rss_buffers_bytes": 1 << 20,
            "elapsed_ns": 1e6,
        },
        {
            "strategy": "zero-byte",
            "buffer_bytes_held": 256 << 10,
            "rss_buffers_bytes": 8 << 10,
            "elapsed_ns": 1e6,
        },
    ]
    figure = _one("zero-byte-recv", _rows(experiment, cases), "Receive buffers")
    ax = figure.axes[0]
    assert ax.get_ylabel() == "memory held, MiB"
    labels = _labels_shown(ax.yaxis)
    assert len(labels) >= 2 and all(float(label) >= 0 for label in labels)
    assert max(bar.get_height() for bar in ax.patches) == pytest.approx(16.0)


def test_mmap_touch_is_not_ranked_by_bytes_per_second() -> None:
    """It touches one byte per page: its "GiB/s" was drawn as the fastest method (issue 13 §2)."""
    spec = next(s for s in get_experiment("mmap-read").report_figures() if s.kind == "throughput")
    methods = dict(spec.where)["method"]
    assert "mmap-touch" not in methods and {"mmap-copy", "read", "readinto"} <= set(methods)


def test_sock_buffer_draws_throughput_against_rtt_only_when_the_run_swept_it() -> None:
    """The bandwidth-delay figure: x is the emulated link's RTT, spelled as durations; a loopback
    run (one RTT: 0) has no such figure at all."""
    experiment = get_experiment("sock-buffer")
    spec = next(s for s in experiment.report_figures() if s.x == "rtt")
    cases = [
        {"transport": "tcp", "buffers": "rcvbuf", "bufsize": 65536, "rtt": rtt, "bytes": 4 << 20,
         "elapsed_ns": [elapsed] * 5}
        for rtt, elapsed in ((1_000_000, 3.5e8), (10_000_000, 6.0e8), (50_000_000, 2.8e9))
    ]  # fmt: skip
    frame = _rows(experiment, cases)
    figure = render_figure(experiment, summarize(frame), spec)
    assert figure is not None
    FigureCanvasAgg(figure).draw()
    ax = figure.axes[0]
    assert _labels_shown(ax.xaxis) == ["1 ms", "10 ms", "50 ms"]
    assert ax.get_xlabel() == "rtt (log2 scale)"
    loopback = _rows(experiment, [{**cases[0], "rtt": 0}])
    assert render_figure(experiment, summarize(loopback), spec) is None
