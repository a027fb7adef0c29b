"""Two pieces of plumbing issue 18 added: a parameter added later stays out of case ids at its
default (rw-buffer's source_write_bs: the committed CI baseline keeps matching), and a
repetition's time series survives the summary and becomes a figure."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from iobench.engine.protocol import Protocol
from iobench.experiments import get_experiment
from iobench.experiments.base import FigureSpec
from iobench.metrics import summarize
from iobench.params import Kind, Param, case_id, resolve
from iobench.plan import PlanEntry, case_label
from iobench.report.figures import SERIES_CAPTION, render_figure

MIB = 1 << 20


def test_a_later_parameter_is_in_the_id_only_away_from_its_default() -> None:
    params = (
        Param("bs", Kind.SIZE, (4096,), "b", sweep=True, maximum=1 << 30),
        Param("extra", Kind.SIZE, (MIB,), "e", sweep=True, maximum=1 << 30, in_id_at_default=False),
    )
    assert case_id(params, {"bs": 4096, "extra": MIB}) == "bs=4096"
    assert case_id(params, {"bs": 4096}) == "bs=4096"  # a case made before the parameter existed
    assert case_id(params, {"bs": 4096, "extra": 4096}) == "bs=4096,extra=4096"


def test_rw_buffer_ids_are_the_baselines_and_a_new_write_size_gets_its_own() -> None:
    rw = get_experiment("rw-buffer")
    default = {"mode": "read", "file_size": MIB, "bs": 4096, "cache": "warm", "source_write_bs": MIB}
    assert case_id(rw.params, default) == "mode=read,file_size=1048576,bs=4096,cache=warm"
    assert case_label(rw, default) == "rw-buffer mode=read file_size=1MiB bs=4KiB cache=warm"
    small = default | {"source_write_bs": 4096}
    assert case_id(rw.params, small) == "mode=read,file_size=1048576,bs=4096,cache=warm,source_write_bs=4096"
    assert case_label(rw, small).endswith("cache=warm source_write_bs=4KiB")


def test_the_ci_baseline_case_ids_are_what_ci_toml_plans_today() -> None:
    from iobench.config import load_config

    root = Path(__file__).resolve().parent.parent
    planned = {
        (entry.experiment.name, case_id(entry.experiment.params, case))
        for entry in load_config(root / "bench_configs" / "ci.toml").entries
        for case in entry.cases()
    }
    baseline = set()
    for run in (root / "results" / "baselines" / "ci").iterdir():
        frame = pd.read_csv(run / "results.csv", usecols=["experiment", "case"])
        baseline |= set(frame.itertuples(index=False, name=None))
    assert planned == baseline


def test_write_mode_does_not_repeat_for_source_write_sizes() -> None:
    rw = get_experiment("rw-buffer")
    values = resolve(
        rw.params,
        {"mode": ["read", "write"], "bs": 4096, "cache": "warm", "source_write_bs": ["4KiB", "1MiB"]},
    )
    cases = PlanEntry(rw, values, Protocol()).cases()
    assert [(c["mode"], c["source_write_bs"]) for c in cases] == [
        ("read", 4096),
        ("read", MIB),
        ("write", 4096),
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="reading folio sizes needs root")
def test_source_write_bs_decides_the_source_files_folios(disk_dir: Path) -> None:
    from iobench.osutil.kpageflags import file_folio_layout

    rw = get_experiment("rw-buffer")
    case = {"mode": "read", "file_size": MIB, "bs": 4096, "cache": "warm", "source_write_bs": 4096}
    instance = rw(case, disk_dir)
    instance.prepare()
    try:
        assert file_folio_layout(instance.source_path).histogram == {1: MIB // 4096}
    finally:
        instance.teardown()


# ------------------------------------------------------------------ series


def _series(level: float, samples: int = 4) -> str:
    return json.dumps(
        {"t_ns": [i * 10**8 for i in range(samples)], "rate": [level] * samples, "other": [1.0] * samples}
    )


def _rows(experiment: Any, cases: dict[str, list[tuple[float, str]]]) -> pd.DataFrame:
    """Repetition rows of dirty-throttle: per dirty_limit, (elapsed, series) for each repetition."""
    defaults = {p.name: p.default[0] for p in experiment.params}
    rows = []
    for limit, reps in cases.items():
        case = defaults | {"dirty_limit": limit}
        for rep, (elapsed, series) in enumerate(reps, start=1):
            rows.append(
                {"run_id": "r", "experiment": experiment.name, "case": case_id(experiment.params, case), "rep": rep,
                 "status": "ok", "elapsed_ns": elapsed, "bytes": MIB, "throttle_series": series} | case
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_the_summary_keeps_the_series_of_the_median_repetition() -> None:
    experiment = get_experiment("dirty-throttle")
    reps = [(5e6, _series(5)), (1e6, _series(1)), (3e6, _series(3)), (2e6, _series(2)), (4e6, _series(4))]
    summary = summarize(_rows(experiment, {"found": reps}))
    assert summary["throttle_series"].iloc[0] == _series(3)
    four = summarize(_rows(experiment, {"found": reps[:4]}))  # even: the lower median (2 ms of 1, 2, 3, 5)
    assert four["throttle_series"].iloc[0] == _series(2)


def test_a_series_figure_draws_each_case_and_key_against_time() -> None:
    experiment = get_experiment("dirty-throttle")
    summary = summarize(
        _rows(experiment, {"found": [(1e6, _series(2 * MIB))] * 3, "8MiB": [(1e6, _series(MIB))] * 3})
    )
    spec = FigureSpec("series", title="Rate", metric="throttle_series", metrics=("rate",), unit="rate")
    figure = render_figure(experiment, summary, spec)
    assert figure is not None
    FigureCanvasAgg(figure).draw()
    (ax,) = figure.axes
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.lines}
    assert lines == {"dirty_limit=found rate": [2.0] * 4, "dirty_limit=8MiB rate": [1.0] * 4}  # MiB/s
    assert list(ax.lines[0].get_xdata()) == pytest.approx([0.0, 0.1, 0.2, 0.3])  # seconds
    assert ax.get_ylabel() == "Rate, MiB/s" and "seconds" not in ax.get_xlabel()
    assert SERIES_CAPTION in " ".join(t.get_text() for t in figure.texts)
    broken = summary.assign(throttle_series="mixed")
    assert render_figure(experiment, broken, spec) is None  # nothing to draw: no figure, not an empty one
