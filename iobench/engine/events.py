"""Progress as events: what happened during a run, for whoever listens.

The engine emits events; it never draws anything. Subscribers are plain callables: the CLI's
terminal renderers (``iobench.render``), a notebook's progress bar, a remote executor that
forwards them. They run in the measuring thread, between repetitions, and must not start
threads: any second thread in the process makes every read()/write() take the file-position
lock (measured: 1-byte reads 374 -> 436 ns/call with one idle thread), and each case records
``process_threads``. A subscriber that does draw from elsewhere can offer ``quiet()``; the
engine pauses it around timed sections whose counters cover the whole process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunStarted:
    """A run (or a resumed part of one) begins: ``total`` cases, ``done`` already recorded."""

    total: int
    done: int
    path: str | None


@dataclass(frozen=True)
class CaseStarted:
    """Case ``index`` of ``total`` (1-based, over the whole plan) begins."""

    index: int
    total: int
    label: str
    experiment: str
    case: str


@dataclass(frozen=True)
class RepDone:
    """A recorded repetition finished; ``ci_pct`` is the stopping rule's current half-width."""

    reps: int
    max_reps: int
    ci_pct: float


@dataclass(frozen=True)
class CaseFinished:
    """A case finished (ok, unsupported or failed); ``summary`` is its meta.json record."""

    index: int
    total: int
    label: str
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFinished:
    """The run ended with ``status`` (complete, stopped, interrupted, failed); ``run`` is the
    result object when the caller is iterating (``iobench.api.stream``)."""

    status: str
    path: str | None
    run: Any = None


Event = RunStarted | CaseStarted | RepDone | CaseFinished | RunFinished
Subscriber = Callable[[Event], None]


class Events:
    """Fans events out to subscribers; with none, emitting costs one loop over nothing."""

    def __init__(self, *subscribers: Subscriber | None) -> None:
        self.subscribers: list[Subscriber] = [s for s in subscribers if s is not None]

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        for subscriber in self.subscribers:
            subscriber(event)

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Pause subscribers that draw from a thread of their own (their ``quiet()``)."""
        with contextlib.ExitStack() as stack:
            for subscriber in self.subscribers:
                pause = getattr(subscriber, "quiet", None)
                if pause is not None:
                    stack.enter_context(pause())
            yield

    def close(self) -> None:
        """Release subscribers that hold a terminal or a thread (their ``close()``)."""
        for subscriber in self.subscribers:
            close = getattr(subscriber, "close", None)
            if close is not None:
                close()
