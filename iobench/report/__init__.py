"""Reports: figures (PNG) and a Markdown summary of one or more runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from iobench.report.figures import throughput_figure
from iobench.report.markdown import render_markdown
from iobench.report.tables import summarize
from iobench.results import ResultSet


def build_report(runs: list[ResultSet], out_dir: Path) -> list[Path]:
    """Write ``report.md`` and one PNG per experiment with an axis; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.concat([run.frame for run in runs], ignore_index=True)
    summary = summarize(frame)
    written: list[Path] = []
    figures: dict[str, str] = {}
    if not summary.empty:
        for experiment_name in summary["experiment"].unique():
            figure_path = throughput_figure(summary, str(experiment_name), out_dir)
            if figure_path is not None:
                figures[str(experiment_name)] = figure_path.name
                written.append(figure_path)
    markdown_path = out_dir / "report.md"
    markdown_path.write_text(render_markdown(runs, summary, figures))
    written.append(markdown_path)
    return written
