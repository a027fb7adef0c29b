"""The Markdown summary: host facts, warnings, and the book-shaped table per experiment."""

from __future__ import annotations

import pandas as pd

from iobench.experiments import get_experiment
from iobench.report.tables import book_table, describe_group
from iobench.results import ResultSet
from iobench.units import format_size


def frame_to_markdown(table: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency): header, separator, rows."""
    header = "| " + " | ".join(table.columns) + " |"
    separator = "|" + "|".join("---:" if i else "---" for i in range(len(table.columns))) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, separator, *body])


def _run_header(run: ResultSet) -> list[str]:
    meta = run.meta
    host = meta.get("host", {})
    target = meta.get("target", {})
    lines = [
        f"## Run `{run.run_id}` ({meta.get('status')})",
        "",
        f"- command: `{' '.join(meta.get('command', []))}`",
        f"- started {meta.get('started')}, finished {meta.get('finished', '-')}",
        f"- host: {host.get('hostname')}, kernel {host.get('kernel')}, {host.get('cpu_model')} "
        f"x{host.get('cpu_count')}, {format_size(host.get('memory_total_bytes') or 0)} RAM, "
        f"Python {host.get('python')}",
        f"- target: `{target.get('path')}` on {target.get('fs_type')} ({target.get('mount_source')}, "
        f"device {target.get('block_device')}, scheduler {target.get('scheduler')}, "
        f"rotational {target.get('rotational')})",
        f"- engine: {meta.get('engine')}; syscall counters from `{meta.get('counter_source')}`",
    ]
    warnings = meta.get("warnings") or []
    if warnings:
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in warnings]
    return [*lines, ""]


def render_markdown(runs: list[ResultSet], summary: pd.DataFrame, figures: dict[str, str]) -> str:
    """The whole report as Markdown text."""
    lines = ["# iobench report", ""]
    for run in runs:
        lines += _run_header(run)
    if summary.empty:
        lines.append("No repetitions finished in these runs.")
        return "\n".join(lines) + "\n"
    for experiment_name in summary["experiment"].unique():
        experiment = get_experiment(str(experiment_name))
        lines += [
            f"## {experiment.name}",
            "",
            f"{experiment.summary}. Seed idea: {experiment.seed_idea}",
            "",
        ]
        if experiment.name in figures:
            lines += [f"![{experiment.name} throughput]({figures[experiment.name]})", ""]
        for key, table in book_table(summary, experiment.name):
            lines += [
                f"**{describe_group(experiment.name, key)}**",
                "",
                frame_to_markdown(table),
                "",
            ]
    return "\n".join(lines) + "\n"
