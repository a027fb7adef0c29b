"""Executors run CaseSpecs and yield CaseResults; the session records what they yield.

``LocalExecutor`` measures in this process, one case at a time, in the order given. An
executor for other machines implements the same ``map``; experiments never know which ran them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from iobench.engine.events import CaseStarted, Events
from iobench.engine.runner import CaseResult, run_case
from iobench.plan import CaseSpec, Lookup


class Executor(Protocol):
    """Runs cases; yields each result as it completes (any order for parallel executors)."""

    def map(self, specs: Sequence[CaseSpec]) -> Iterator[CaseResult]: ...


class LocalExecutor:
    """Measures each case here, in plan order; the next starts when the caller asks for it."""

    def __init__(
        self,
        lookup: Lookup,
        scratch: Path,
        events: Events | None = None,
        target_fs: str = "",
        clock_origin_ns: int | None = None,
    ) -> None:
        self.lookup = lookup
        self.scratch = scratch
        self.events = events or Events()
        self.target_fs = target_fs
        self.clock_origin_ns = clock_origin_ns

    def run(self, spec: CaseSpec) -> CaseResult:
        """Measure one case (CaseSpaceError propagates: the disk under --dir is full)."""
        experiment = self.lookup(spec.experiment)
        self.events.emit(CaseStarted(spec.index, spec.total, spec.label, spec.experiment, spec.case_id))
        result = run_case(
            experiment,
            spec.params,
            spec.protocol,
            self.scratch,
            self.events,
            self.target_fs,
            self.clock_origin_ns,
            spec.peer,
        )
        result.index = spec.index
        return result

    def map(self, specs: Sequence[CaseSpec]) -> Iterator[CaseResult]:
        for spec in specs:
            yield self.run(spec)
