"""The HTML report: one self-contained file (figures as base64 PNG, inline CSS, no script,
no external resource), so it opens from disk or as a CI artifact.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any

import pandas as pd

from iobench.report.model import ReportModel, RunHeader, Section, not_run_summary

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       max-width: 1100px; margin: 0 auto; padding: 0 24px 48px; }
h1 { margin: 24px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { margin: 18px 0 6px; font-size: 15px; }
.muted { color: #666; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.warnings { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 14px; margin: 10px 0; }
.warnings ul { margin: 4px 0; padding-left: 20px; }
nav ol { columns: 3; margin: 6px 0; }
figure { margin: 12px 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.shows { background: #eef5ff; border-left: 4px solid #3b78d8; padding: 6px 14px; margin: 12px 0; }
.shows p { margin: 4px 0; } .shows ul { margin: 4px 0; padding-left: 20px; }
.table-wrap { overflow-x: auto; margin: 6px 0 14px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 9px; border-bottom: 1px solid #e5e5e5; text-align: right; white-space: nowrap; }
th { background: #f6f6f6; position: sticky; top: 0; }
th:first-child, td:first-child { text-align: left; }
td.reason { white-space: normal; text-align: left; }
.warnings td, .warnings th { text-align: left; }
ul.legend { font-size: 12px; color: #555; margin: 0 0 14px; padding-left: 18px; }
td[title] { cursor: help; }
code { font-size: 13px; background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
"""


def _td(value: object) -> str:
    """A cell; a ``Cell``'s detail (its interval, or why it has none) becomes the hover title."""
    detail = getattr(value, "detail", "")
    title = f' title="{escape(detail)}"' if detail else ""
    return f"<td{title}>{escape(str(value))}</td>"


def _table(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in table.itertuples(index=False))
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _not_run_table(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="reason">{escape(v)}</td>'
            if i == len(row) - 1
            else f"<td><code>{escape(v)}</code></td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _run_header(run: RunHeader) -> str:
    facts = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in run.facts)
    parts = [
        f'<section class="run" id="run-{escape(run.run_id)}">',
        f'<h2>Run <code>{escape(run.label)}</code> <span class="muted">({escape(run.status)})</span></h2>',
        *(
            [f'<p class="muted">run id <code>{escape(run.run_id)}</code></p>']
            if run.label != run.run_id
            else []
        ),
        f'<dl class="facts">{facts}</dl>',
    ]
    if run.warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in run.warnings)
        parts.append(f'<div class="warnings"><strong>Warnings</strong><ul>{items}</ul></div>')
    if run.not_run:
        grouped = [
            (f'<a href="#exp-{escape(exp)}">{escape(exp)}</a>', count, status, reason)
            for exp, count, status, reason in not_run_summary(run.not_run)
        ]
        items = "".join(
            f"<li>{link}: {count} case{'s' if count > 1 else ''} {escape(status)}, e.g. {escape(reason)}</li>"
            for link, count, status, reason in grouped
        )
        parts.append(
            f'<div class="warnings"><strong>{len(run.not_run)} case(s) did not run</strong> '
            f"(each experiment's section lists them)<ul>{items}</ul></div>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _section(section: Section) -> str:
    parts = [
        f'<section class="experiment" id="{escape(section.anchor)}">',
        f"<h2>{escape(section.name)}</h2>",
        f'<p>{escape(section.summary)}. <span class="muted">Seed idea: {escape(section.seed_idea)}</span></p>',
    ]
    if section.explanations:
        blocks = "".join(
            (f"<p><strong>{escape(label)}</strong></p>" if label else "")
            + "<ul>"
            + "".join(f"<li>{escape(sentence)}</li>" for sentence in sentences)
            + "</ul>"
            for label, sentences in section.explanations
        )
        parts.append(f'<div class="shows"><strong>What this shows</strong>{blocks}</div>')
    for figure in section.figures:
        data = base64.b64encode(figure.png()).decode("ascii")
        parts.append(
            f'<figure><img alt="{escape(section.name)}: {escape(figure.title)}" '
            f'src="data:image/png;base64,{data}"></figure>'
        )
    for heading, table in section.tables:
        if heading:
            parts.append(f"<h3>{escape(heading)}</h3>")
        parts.append(_table(table))
    if section.tables and section.table_notes:
        notes = [*section.table_notes, "Hover a cell for its interval."]
        parts.append('<ul class="legend">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    if section.not_run:
        parts.append("<h3>Cases that did not run</h3>")
        parts.append(_not_run_table(section.not_run, ("case", "status", "reason")))
    if not (section.figures or section.tables or section.not_run):
        parts.append('<p class="muted">No repetition of this experiment finished.</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _fleet(fleet: Any) -> str:
    """The host vs fleet median table, outliers first."""
    parts = ['<h2 id="fleet">Hosts vs fleet median</h2>', f"<p>{escape(fleet.notes[0])}</p>"]
    if not fleet.table.empty:
        parts.append(_table(fleet.table))
    parts += [f'<p class="muted">{escape(note)}</p>' for note in fleet.notes[1:]]
    return "\n".join(parts)


def render_html(model: ReportModel) -> str:
    """The whole report as one HTML document."""
    title = "iobench report: " + ", ".join(run.label for run in model.runs)
    toc = "".join(f'<li><a href="#{escape(s.anchor)}">{escape(s.name)}</a></li>' for s in model.sections)
    body = ["<h1>iobench report</h1>"]
    if model.fleet is not None:
        body.append(_fleet(model.fleet))
    body += [_run_header(run) for run in model.runs]
    if model.sections:
        body.append(f"<nav><h2>Experiments</h2><ol>{toc}</ol></nav>")
        body += [_section(section) for section in model.sections]
    else:
        body.append("<p>No repetitions finished in these runs.</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
