"""Terminal renderers of run events (``iobench.engine.events``): a live bar on a terminal,
one line per case otherwise.

The live bar is redrawn by a ticker thread of its own, started only when a terminal shows it.
Its terminal writes would land in process-wide counters, so it offers ``quiet()``: the engine
pauses it around timed sections that measure the whole process (thread-scoped sections read
per-thread counters and need no pause).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
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
    """A rich progress bar redrawn once a second by a pausable ticker thread.

    Once a second, not faster: each redraw takes the GIL for a moment from the measuring
    thread, which waits for it when its syscall returns.
    """

    def __init__(self) -> None:
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
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="iobench-progress", daemon=True)

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self.bar.refresh()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.bar.update(self.task, total=event.total, completed=event.done)
            self.bar.start()
            if not self._ticker.is_alive():
                self._ticker.start()
        elif isinstance(event, CaseStarted):
            self.label = event.label
            with self._lock:
                self.bar.update(self.task, description=f"{event.label} warming up")
                self.bar.refresh()
        elif isinstance(event, RepDone):
            ci_text = f" ±{event.ci_pct:.1f}%" if event.ci_pct != float("inf") else ""
            with self._lock:
                self.bar.update(
                    self.task, description=f"{self.label} rep {event.reps}/{event.max_reps}{ci_text}"
                )
        elif isinstance(event, CaseFinished):
            with self._lock:
                self.bar.console.print(case_line(event.label, event.summary), highlight=False)
                self.bar.advance(self.task)
                self.bar.refresh()

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        with self._lock:
            yield

    def close(self) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        self.bar.stop()


def make_renderer(quiet: bool = False) -> Any:
    """Live bar on a terminal, plain lines otherwise, nothing (None) with ``quiet``."""
    if quiet:
        return None
    if sys.stderr.isatty():
        return LiveBar()
    return LineLog()
