"""Executors run CaseSpecs and yield CaseResults; the session records what they yield.

``LocalExecutor`` measures in this process, one case at a time, in the order given. An
executor for other machines implements the same ``map``; experiments never know which ran them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from iobench.engine.events import CaseStarted, Events
from iobench.engine.runner import CaseResult, run_case
from iobench.peer.address import NetnsPeer
from iobench.peer.netns import NetnsLinks
from iobench.plan import CaseSpec, Lookup

if TYPE_CHECKING:
    from iobench.experiments.base import Experiment


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
        #: The virtual host of ``--peer netns`` (made at its first case, closed by ``map``).
        self.links: NetnsLinks | None = None

    def run(self, spec: CaseSpec) -> CaseResult:
        """Measure one case (CaseSpaceError propagates: the disk under --dir is full)."""
        experiment = self.lookup(spec.experiment)
        self.events.emit(CaseStarted(spec.index, spec.total, spec.label, spec.experiment, spec.case_id))
        if isinstance(spec.peer, NetnsPeer):
            return self._run_linked(spec, experiment)
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

    def _run_linked(self, spec: CaseSpec, experiment: type[Experiment]) -> CaseResult:
        """A case of a ``--peer netns`` run: over its emulated link when it has a peer (this
        thread in the client namespace), as usual otherwise; rows record the link."""
        assert isinstance(spec.peer, NetnsPeer)
        if not experiment.uses_peer(spec.params):
            result = run_case(
                experiment, spec.params, spec.protocol, self.scratch, self.events, self.target_fs,
                self.clock_origin_ns,
            )  # fmt: skip
            result.index = spec.index
            return result
        if self.links is None:
            self.links = NetnsLinks(spec.peer)
        peer = self.links.peer_for(spec.params)
        with self.links.client():
            result = run_case(
                experiment, spec.params, spec.protocol, self.scratch, self.events, self.target_fs,
                self.clock_origin_ns, peer,
            )  # fmt: skip
        columns = self.links.row_columns
        for row in result.rows:
            row.update(columns)
        if columns:
            result.summary["link"] = self.links.facts
        result.index = spec.index
        return result

    def close(self) -> None:
        """Tear down what runs around the cases (the virtual host's link)."""
        if self.links is not None:
            self.links.close()

    def map(self, specs: Sequence[CaseSpec]) -> Iterator[CaseResult]:
        try:
            for spec in specs:
                yield self.run(spec)
        finally:
            self.close()
