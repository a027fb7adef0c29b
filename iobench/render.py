"""Terminal renderers of run events (``iobench.engine.events``): a live bar on a terminal,
one line per case otherwise.

Both draw from the thread that emits the events, between repetitions, never from a thread of
their own: a second thread in the measuring process, even an idle one, shares its file table,
so the kernel takes a file reference and the file-position lock on every read()/write()
(fdget_pos). That made 1-byte reads ~16% slower here (benchmarks/fidelity). The price: the
bar does not move during one long repetition.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from iobench.engine.events import CaseFinished, CaseStarted, Event, RepDone, RunStarted
from iobench.units import format_duration


def case_line(label: str, summary: dict[str, Any]) -> str:
    """``rw-buffer mode=read ...: 5 reps, median 1.2 ms ±3.1% (stopped: ci_target)``."""
    status = summary.get("status", "ok")
    if status != "ok":
        return f"{label}: {status}: {summary.get('reason', '')}"
    ci = summary.get("ci_halfwidth_pct")
    ci_text = f"±{ci:.1f}%" if ci is not None and ci == ci and ci != float("inf") else "±?"
    return (
        f"{label}: {summary['reps']} reps, median {format_duration(summary['median_elapsed_ns'])} "
        f"{ci_text} (stopped: {summary['stop_reason']})"
    )


class LineLog:
    """One line per finished case: readable in CI logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: Event) -> None:
        if isinstance(event, CaseFinished):
            print(
                f"[{event.index}/{event.total}] {case_line(event.label, event.summary)}",
                file=self.stream,
                flush=True,
            )


class LiveBar:
    """A rich progress bar, redrawn when an event arrives (repetitions: at most every
    ``min_interval_s``, so a case of many short repetitions is not slowed by drawing)."""

    def __init__(self, min_interval_s: float = 0.5) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as RichProgress

        self.console = Console(stderr=True)
        # auto_refresh=False: rich starts no refresh thread (see the module docstring).
        self.bar = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            auto_refresh=False,
            transient=True,
        )
        self.task = self.bar.add_task("starting", total=1)
        self.label = ""
        self.min_interval_s = min_interval_s
        self._drawn_at = 0.0

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._drawn_at >= self.min_interval_s:
            self._drawn_at = now
            self.bar.refresh()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.bar.update(self.task, total=event.total, completed=event.done)
            self.bar.start()
        elif isinstance(event, CaseStarted):
            self.label = event.label
            self.bar.update(self.task, description=f"{event.label} warming up")
            self._refresh(force=True)
        elif isinstance(event, RepDone):
            ci_text = f" ±{event.ci_pct:.1f}%" if event.ci_pct != float("inf") else ""
            self.bar.update(self.task, description=f"{self.label} rep {event.reps}/{event.max_reps}{ci_text}")
            self._refresh()
        elif isinstance(event, CaseFinished):
            self.bar.console.print(case_line(event.label, event.summary), highlight=False)
            self.bar.advance(self.task)
            self._refresh(force=True)

    def close(self) -> None:
        self.bar.stop()


def make_renderer(quiet: bool = False) -> Any:
    """Live bar on a terminal, plain lines otherwise, nothing (None) with ``quiet``."""
    if quiet:
        return None
    if sys.stderr.isatty():
        return LiveBar()
    return LineLog()
