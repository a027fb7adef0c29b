"""The Markdown report: compact enough for a pull-request comment or a CI job summary."""

from __future__ import annotations

from typing import Any

import pandas as pd

from iobench.report.model import ReportModel, RunHeader, Section, not_run_summary


def frame_to_markdown(table: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency): header, separator, rows."""
    header = "| " + " | ".join(table.columns) + " |"
    separator = "|" + "|".join("---:" if i else "---" for i in range(len(table.columns))) + "|"
    body = [
        "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, separator, *body])


def _run_header(run: RunHeader) -> list[str]:
    lines = [f"## Run `{run.label}` ({run.status})", ""]
    lines += [f"- {name}: {value}" for name, value in run.facts]
    if run.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in run.warnings]
    if run.not_run:
        lines += ["", f"**{len(run.not_run)} case(s) did not run**", ""]
        lines += [
            f"- {experiment}: {count} case{'s' if count > 1 else ''} {status}, e.g. {reason}"
            for experiment, count, status, reason in not_run_summary(run.not_run)
        ]
    return [*lines, ""]


def _section(section: Section, images: dict[str, str]) -> list[str]:
    lines = [f"## {section.name}", "", f"{section.summary}. *Seed idea:* {section.seed_idea}", ""]
    if section.explanations:
        lines += ["**What this shows**", ""]
        for label, sentences in section.explanations:
            lines += [f"*{label}:*", ""] if label else []
            lines += [f"- {sentence}" for sentence in sentences] + [""]
    for figure in section.figures:
        if figure.stem in images:
            lines += [f"![{section.name} {figure.title}]({images[figure.stem]})", ""]
    for heading, table in section.tables:
        lines += [f"**{heading}**" if heading else "", "", frame_to_markdown(table), ""]
    if section.tables and section.table_notes:
        lines += [f"<sub>{note}</sub>  " for note in section.table_notes] + [""]
    if section.not_run:
        lines += ["Cases that did not run:", ""]
        lines += [f"- `{case}`: {status}: {reason}" for case, status, reason in section.not_run]
        lines.append("")
    return lines


def _fleet(fleet: Any) -> list[str]:
    lines = ["## Hosts vs fleet median", "", fleet.notes[0], ""]
    if not fleet.table.empty:
        lines += [frame_to_markdown(fleet.table), ""]
    return [*lines, *(f"<sub>{note}</sub>" for note in fleet.notes[1:]), ""]


def render_markdown(model: ReportModel, images: dict[str, str] | None = None) -> str:
    """The whole report as Markdown. ``images`` maps figure stems to image sources (a file
    written beside the report, or a data URI); figures without one are left out, so no link
    is ever broken.
    """
    images = images or {}
    lines = ["# iobench report", ""]
    if model.fleet is not None:
        lines += _fleet(model.fleet)
    for run in model.runs:
        lines += _run_header(run)
    if not model.sections:
        lines.append("No repetitions finished in these runs.")
        return "\n".join(lines) + "\n"
    lines += ["Experiments: " + ", ".join(f"[{s.name}](#{s.name})" for s in model.sections), ""]
    for section in model.sections:
        lines += _section(section, images)
    return "\n".join(lines) + "\n"
