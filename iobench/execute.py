"""Executors run CaseSpecs and yield CaseResults; the session records what they yield.

``LocalExecutor`` measures in this process, one case at a time, in the order given. An
executor for other machines implements the same ``map``; experiments never know which ran them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from iobench.engine.events import CaseStarted, Events
from iobench.engine.runner import CaseResult, run_case
from iobench.peer.address import NetnsPeer
from iobench.peer.netns import NetnsLinks
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
        #: The virtual host of ``--peer netns`` (made at its first case, closed by ``map``).
        self.links: NetnsLinks | None = None

    def run(self, spec: CaseSpec) -> CaseResult:
        """Measure one case (CaseSpaceError propagates: the disk under --dir is full). A peer
        case of a ``--peer netns`` run runs over its emulated link, this thread in the client
        namespace, and its rows record the link."""
        experiment = self.lookup(spec.experiment)
        self.events.emit(CaseStarted(spec.index, spec.total, spec.label, spec.experiment, spec.case_id))
        peer = spec.peer
        links = None
        if isinstance(peer, NetnsPeer):
            peer = None  # a case without a peer runs as usual, here
            if experiment.uses_peer(spec.params):
                links = self.links = self.links or NetnsLinks(spec.peer)
                peer = links.peer_for(spec.params)
        with links.client() if links is not None else contextlib.nullcontext():
            result = run_case(
                experiment, spec.params, spec.protocol, self.scratch, self.events, self.target_fs,
                self.clock_origin_ns, peer,
            )  # fmt: skip
        if links is not None and (columns := links.row_columns):
            for row in result.rows:
                row.update(columns)
            result.summary["link"] = links.facts
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
