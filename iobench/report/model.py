"""What a report says, independent of its format: run headers and one section per experiment.

``build_model`` does all the computing (summaries, figures, explanations, tables); the HTML
and Markdown writers only lay it out, so both say the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from iobench import hostinfo
from iobench.experiments import get_experiment
from iobench.metrics import DEFAULT_TICK_NS, summarize
from iobench.report.figures import RenderedFigure, experiment_figures
from iobench.report.tables import book_table, describe_group, failed_checks, table_legend
from iobench.results import ResultSet


@dataclass
class RunHeader:
    """One run's identity, host facts and warnings."""

    label: str
    run_id: str
    status: str
    facts: list[tuple[str, str]]
    warnings: list[str]
    #: (experiment, case, status, reason) of cases that did not run.
    not_run: list[tuple[str, str, str, str]]


@dataclass
class Section:
    """One experiment: its question, figures, explanation and book-shaped tables."""

    name: str
    summary: str
    seed_idea: str
    figures: list[RenderedFigure] = field(default_factory=list)
    #: (run label or "", sentences) per run.
    explanations: list[tuple[str, list[str]]] = field(default_factory=list)
    #: (heading, table of ``Cell``s) per parameter combination.
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    #: What the tables' cells and marks mean (``iobench.report.tables.table_legend``).
    table_notes: list[str] = field(default_factory=list)
    not_run: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """The HTML id of the section."""
        return f"exp-{self.name}"


@dataclass
class ReportModel:
    """Everything a report shows."""

    runs: list[RunHeader]
    sections: list[Section]
    #: A fleet run's host vs fleet median table (``iobench.report.fleet``); None otherwise.
    fleet: Any = None


def _git(run: ResultSet) -> str | None:
    git = run.meta.get("git")
    described = git.get("describe") if isinstance(git, dict) else run.meta.get("git_describe")
    return str(described) if described else None


def _started(run: ResultSet) -> str | None:
    started = str(run.meta.get("started") or "")
    # ISO 8601 "2026-11-21T10:00:00+00:00" -> "11-21 10:00"
    return f"{started[5:10]} {started[11:16]}" if len(started) >= 16 else None


def run_labels(runs: list[ResultSet]) -> dict[str, str]:
    """Short series names that tell the runs apart: the host, the commit (git describe) and
    the start time, as many of them as differ; the run id's last 4 characters when they do not.

    One run keeps its run id. Labels are short so that legends and panel titles fit; each
    run's header pairs its label with its run id.
    """
    if len(runs) == 1:
        return {runs[0].run_id: runs[0].run_id}
    hosts = [fleet_host(run) for run in runs]
    if all(hosts) and len(set(hosts)) == len(runs):
        return {run.run_id: str(host) for run, host in zip(runs, hosts, strict=True)}
    facts: list[Any] = [
        lambda run: run.meta.get("host", {}).get("hostname"),
        _git,
        _started,
    ]
    parts: dict[str, list[str]] = {run.run_id: [] for run in runs}
    for fact in facts:
        values = [fact(run) for run in runs]
        if len(set(values)) > 1:
            for run, value in zip(runs, values, strict=True):
                parts[run.run_id].append(str(value) if value else "?")
        labels = [" ".join(parts[run.run_id]) for run in runs]
        if len(set(labels)) == len(runs):
            break
    labels = {run.run_id: " ".join(parts[run.run_id]) for run in runs}
    if len(set(labels.values())) < len(runs):
        labels = {rid: f"{label} {rid[-4:]}".strip() for rid, label in labels.items()}
    return labels


def fleet_host(run: ResultSet) -> str | None:
    """The host a fleet run's run was measured on (its worker's name); None for a local run."""
    fleet = run.meta.get("fleet")
    return str(fleet["host"]) if isinstance(fleet, dict) and fleet.get("host") is not None else None


def _facts(run: ResultSet) -> list[tuple[str, str]]:
    meta = run.meta
    host = meta.get("host", {})
    target = meta.get("target", {})
    pinned = meta.get("cpu_pinned")
    return [
        *_fleet_facts(meta),
        ("command", " ".join(meta.get("command", []))),
        ("time", f"{meta.get('started')} to {meta.get('finished', '-')}"),
        ("host", hostinfo.host_line(host)),
        ("target", hostinfo.target_line(target)),
        (
            "engine",
            f"{meta.get('engine')} (C extension {meta.get('native_engine', 'not recorded')}); "
            f"syscall counts from {meta.get('counter_source')}"
            f"{f'; pinned to CPU {pinned}' if pinned is not None else ''}",
        ),
    ]


def _fleet_facts(meta: dict[str, Any]) -> list[tuple[str, str]]:
    fleet = meta.get("fleet")
    if not isinstance(fleet, dict):
        return []
    dask = fleet.get("dask") or {}
    stopped = ", ".join(dask.get("stopped") or []) or "nothing"
    return [
        (
            "fleet",
            f"host {fleet.get('host')}, worker {fleet.get('worker')}, scheduler {fleet.get('cluster')}",
        ),
        ("dask", f"distributed {dask.get('distributed', '?')}; stopped on the worker: {stopped}"),
    ]


def _not_run(run: ResultSet) -> list[tuple[str, str, str, str]]:
    frame = run.frame
    if frame.empty or "status" not in frame:
        return []
    bad = frame[frame["status"] != "ok"].drop_duplicates(subset=["experiment", "case"])
    reasons = bad["status_reason"] if "status_reason" in bad else pd.Series([""] * len(bad), index=bad.index)
    listed = [
        (str(r["experiment"]), str(r["case"]), str(r["status"]), str(reason) if reason == reason else "")
        for (_, r), reason in zip(bad.iterrows(), reasons, strict=True)
    ]
    # A fleet host that stopped (its worker lost) lists the cases it then did not run.
    listed += [
        (str(c.get("experiment")), str(c.get("case")), "not run", str(c.get("reason", "")))
        for c in run.meta.get("not_run") or []
        if isinstance(c, dict)
    ]
    return listed


def _shape(reason: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "#", reason)


def not_run_summary(not_run: list[tuple[str, str, str, str]]) -> list[tuple[str, int, str, str]]:
    """(experiment, cases, status, reason) per distinct reason: the header's short form.

    A sweep can refuse dozens of cases for one reason (every misaligned O_DIRECT size); the
    header says it once with a count, and each experiment's section lists the cases.
    """
    # Reasons differ only by the numbers of each case ("a buffer of 4096 bytes"): group on the
    # reason's words, show the first reason as it was. Dicts keep first-seen order.
    groups: dict[tuple[str, str, str], list] = {}
    for experiment, _, status, reason in not_run:
        group = groups.setdefault((experiment, status, _shape(reason)), [0, reason])
        group[0] += 1
    return [(exp, count, status, reason) for (exp, status, _), (count, reason) in groups.items()]


def check_warnings(summary: pd.DataFrame) -> list[str]:
    """One warning per case whose own data check (integrity_ok) failed in some repetitions."""
    if summary.empty:
        return []
    warnings = []
    for _, record in summary.iterrows():
        failed = failed_checks(record)
        if failed:
            kept = (
                "left out of the medians"
                if failed < record["reps"]
                else "the medians include them: none passed"
            )
            warnings.append(
                f"{record['experiment']} {record['case']}: the data check failed in {failed} of "
                f"{int(record['reps'])} repetitions ({kept})"
            )
    return warnings


def _header(run: ResultSet, label: str, summary: pd.DataFrame) -> RunHeader:
    not_run = _not_run(run)
    # Case warnings repeat what the not-run table says, one long line each: keep the table.
    cases = {case for _, case, _, _ in not_run}
    warnings = [
        str(w)
        for w in run.meta.get("warnings") or []
        if not any(str(w).startswith(f"{case} (") for case in cases)
    ]
    warnings += check_warnings(summary)
    return RunHeader(label, run.run_id, str(run.meta.get("status")), _facts(run), warnings, not_run)


def _experiment_names(runs: list[ResultSet]) -> list[str]:
    names: dict[str, None] = {}
    for run in runs:
        if "experiment" in run.frame:
            names.update(dict.fromkeys(str(n) for n in run.frame["experiment"].dropna().unique()))
    return list(names)


def _explanations(name: str, summary: pd.DataFrame, labels: list[str]) -> list[tuple[str, list[str]]]:
    experiment = get_experiment(name)
    out = []
    for label in labels:
        rows = (
            summary[(summary["experiment"] == name) & (summary["run_id"] == label)]
            if not summary.empty
            else summary
        )
        if rows.empty:
            continue
        sentences = experiment.explain(rows.reset_index(drop=True))
        if sentences:
            out.append((label if len(labels) > 1 else "", sentences))
    return out


def run_tick(run: ResultSet) -> tuple[int, str]:
    """The scheduler tick the run recorded (meta.json host.cpu_tick_ns) and its source;
    10 ms, said to be assumed, for a run that did not record it."""
    host = run.meta.get("host") or {}
    tick = host.get("cpu_tick_ns")
    if isinstance(tick, int | float) and tick > 0:
        return int(tick), str(host.get("cpu_tick_source") or "recorded in meta.json")
    return DEFAULT_TICK_NS, "assumed: the run did not record its kernel's tick"


def run_summary(run: ResultSet, label: str) -> pd.DataFrame:
    """The run's per-case summary: its cases' stop reasons and its host's tick joined in."""
    if run.frame.empty:
        return pd.DataFrame()
    frame = run.frame.assign(run_id=label)
    return summarize(frame, cases=run.meta.get("cases") or (), tick_ns=run_tick(run)[0])


def build_model(runs: list[ResultSet], draw: bool = True) -> ReportModel:
    """Summaries, figures (when ``draw``), explanations and tables for these runs."""
    labels = run_labels(runs)
    summaries = [run_summary(run, labels[run.run_id]) for run in runs]
    headers = [_header(run, labels[run.run_id], s) for run, s in zip(runs, summaries, strict=True)]
    frames = [run.frame.assign(run_id=labels[run.run_id]) for run in runs if not run.frame.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    summaries = [s for s in summaries if not s.empty]
    summary = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    ticks = [run_tick(run) for run in runs]
    not_ok = frame[frame["status"] != "ok"] if "status" in frame else frame.iloc[0:0]
    sections = []
    for name in _experiment_names(runs):
        experiment = get_experiment(name)
        section = Section(name, experiment.summary, experiment.seed_idea)
        rows = summary[summary["experiment"] == name] if not summary.empty else summary
        if draw and not rows.empty:
            refused = not_ok[not_ok["experiment"] == name].drop_duplicates(subset=["run_id", "case"])
            section.figures = experiment_figures(experiment, rows.dropna(axis=1, how="all"), refused)
        if not rows.empty:
            section.explanations = _explanations(name, summary, list(labels.values()))
            section.tables = [
                (describe_group(experiment, key), table) for key, table in book_table(summary, experiment)
            ]
            section.table_notes = table_legend(rows, experiment, ticks)
        section.not_run = [
            (f"{header.label}: {case}" if len(runs) > 1 else case, status, reason)
            for header in headers
            for experiment_name, case, status, reason in header.not_run
            if experiment_name == name
        ]
        sections.append(section)
    return ReportModel(headers, sections)
