"""Progress display on stderr: a live bar on a terminal, one line per case otherwise.

The live bar is redrawn by a ticker thread. Its terminal writes would land in process-wide
counters, so the engine pauses it (``quiet()``) around timed sections that measure the whole
process; thread-scoped sections read per-thread counters and need no pause.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from iobench.units import format_duration


class Progress:
    """Silent progress (tests, --quiet); the base the others extend."""

    def start(self, total_cases: int) -> None:
        """A sweep of ``total_cases`` cases begins."""

    def case_started(self, index: int, label: str) -> None:
        """Case ``index`` (1-based) begins."""

    def rep_done(self, reps: int, max_reps: int, ci_pct: float) -> None:
        """A recorded repetition finished."""

    def case_done(self, label: str, summary: dict) -> None:
        """A case finished (or was unsupported / failed)."""

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """No output while inside (timed sections measuring the whole process)."""
        yield

    def close(self) -> None:
        """The sweep is over; release the terminal."""


def _case_line(label: str, summary: dict) -> str:
    status = summary.get("status", "ok")
    if status != "ok":
        return f"{label}: {status}: {summary.get('reason', '')}"
    ci = summary.get("ci_halfwidth_pct")
    ci_text = f"±{ci:.1f}%" if ci is not None and ci == ci and ci != float("inf") else "±?"
    return (
        f"{label}: {summary['reps']} reps, median {format_duration(summary['median_elapsed_ns'])} "
        f"{ci_text} (stopped: {summary['stop_reason']})"
    )


class LineProgress(Progress):
    """One line per finished case: readable in CI logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = 0
        self.index = 0

    def start(self, total_cases: int) -> None:
        self.total = total_cases

    def case_started(self, index: int, label: str) -> None:
        self.index = index

    def case_done(self, label: str, summary: dict) -> None:
        print(
            f"[{self.index}/{self.total}] {_case_line(label, summary)}",
            file=self.stream,
            flush=True,
        )


class LiveProgress(Progress):
    """A rich progress bar redrawn once a second by a pausable ticker thread.

    Once a second, not faster: each redraw takes the GIL for a moment from the measuring
    thread, which waits for it when its syscall returns.
    """

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self.bar = Progress(
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

    def start(self, total_cases: int) -> None:
        self.bar.update(self.task, total=total_cases)
        self.bar.start()
        self._ticker.start()

    def case_started(self, index: int, label: str) -> None:
        self.label = label
        with self._lock:
            self.bar.update(self.task, description=f"{label} warming up")
            self.bar.refresh()

    def rep_done(self, reps: int, max_reps: int, ci_pct: float) -> None:
        ci_text = f" ±{ci_pct:.1f}%" if ci_pct != float("inf") else ""
        with self._lock:
            self.bar.update(self.task, description=f"{self.label} rep {reps}/{max_reps}{ci_text}")

    def case_done(self, label: str, summary: dict) -> None:
        with self._lock:
            self.bar.console.print(_case_line(label, summary), highlight=False)
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


def make_progress(quiet: bool = False) -> Progress:
    """Live bar on a terminal, plain lines otherwise, nothing with ``quiet``."""
    if quiet:
        return Progress()
    if sys.stderr.isatty():
        return LiveProgress()
    return LineProgress()
