"""Runs a plan on every host at once, one case at a time per host.

Per host, the client keeps exactly one case in flight: the next is submitted when the last
returns. That, and not Dask worker resources, is what keeps a host to one case at a time:
resources count per worker, so two workers on one host would each run a case anyway, while
the client sees every host's queue. (Tasks are also pinned to their worker's address, with
no other worker allowed.) A worker that leaves the cluster mid-case (killed, crashed, its
host gone) is noticed by polling the scheduler's worker list: that case is recorded failed
("worker lost") and the host's remaining cases are not run; other hosts go on.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from iobench.engine.runner import CaseResult
from iobench.fleet.cluster import Host, live_addresses
from iobench.plan import CaseSpec

#: How often the client looks for finished cases, and for workers that left (seconds).
POLL_S = 0.1
LIVENESS_S = 0.5


@dataclass
class HostOutcome:
    """One case of one host finished (or its worker was lost during it)."""

    host: Host
    spec: CaseSpec
    result: CaseResult
    #: Why the host stops after this case (worker lost, disk full); None: it goes on.
    stopped: str | None = None
    #: The host's cases that will not run because it stopped.
    not_run: list[CaseSpec] = field(default_factory=list)


def failed_result(spec: CaseSpec, reason: str) -> CaseResult:
    """The record of a case that produced no rows of its own."""
    row = {"experiment": spec.experiment, "case": spec.case_id, **spec.params}
    row.update(rep=0, status="failed", status_reason=reason)
    summary = {"experiment": spec.experiment, "case": spec.case_id, **spec.params}
    summary.update(status="failed", reason=reason)
    return CaseResult([row], summary, spec.index)


def _from_answer(spec: CaseSpec, answer: Any) -> tuple[CaseResult, str | None]:
    """The child's answer as a result, and why the host must stop (a full disk) or None."""
    if not isinstance(answer, dict) or "error" in answer:
        reason = answer.get("error") if isinstance(answer, dict) else f"unexpected answer {answer!r}"
        return failed_result(spec, str(reason)), None
    result = CaseResult(answer["rows"], answer["summary"], spec.index)
    return result, answer.get("space_error")


class FleetExecutor:
    """Drives every host's queue of cases on a Dask cluster; ``map`` yields HostOutcomes as
    cases complete (hosts interleave)."""

    def __init__(self, client: Any, request: Callable[[Host, CaseSpec], dict[str, Any]]) -> None:
        self.client = client
        #: The child's request for a case on a host (``iobench.fleet.child``).
        self.request = request
        self._inflight: dict[Any, tuple[Host, CaseSpec]] = {}
        self._token = uuid.uuid4().hex[:8]

    def _submit(self, host: Host, queue: deque[CaseSpec]) -> None:
        from iobench.fleet.task import run_child

        if not queue:
            return
        spec = queue.popleft()
        future = self.client.submit(
            run_child,
            self.request(host, spec),
            key=f"iobench-{self._token}-{host.name}-{spec.index}",
            workers=[host.address],
            allow_other_workers=False,
            pure=False,
            retries=0,
        )
        self._inflight[future] = (host, spec)

    def _finished(self, future: Any, host: Host, spec: CaseSpec) -> tuple[CaseResult, str | None]:
        if future.status == "finished":
            return _from_answer(spec, future.result())
        error = future.exception() if future.status == "error" else None
        if error is not None and type(error).__name__ == "KilledWorker":
            return failed_result(spec, f"worker lost ({host.address} died during the case)"), "worker lost"
        reason = f"{type(error).__name__}: {error}" if error is not None else f"task {future.status}"
        return failed_result(spec, reason), None

    def map(self, plans: Mapping[Host, Sequence[CaseSpec]]) -> Iterator[HostOutcome]:
        """Every host's cases, in plan order per host, all hosts at once."""
        queues = {host: deque(specs) for host, specs in plans.items()}
        for host, queue in queues.items():
            self._submit(host, queue)
        checked = time.monotonic()
        try:
            while self._inflight:
                done = [f for f in self._inflight if f.done()]
                if not done:
                    if time.monotonic() - checked >= LIVENESS_S:
                        checked = time.monotonic()
                        yield from self._lost(queues)
                    time.sleep(POLL_S)
                    continue
                for future in done:
                    host, spec = self._inflight.pop(future)
                    result, stopped = self._finished(future, host, spec)
                    not_run: list[CaseSpec] = []
                    if stopped:
                        not_run = list(queues[host])
                        queues[host].clear()
                    else:
                        # The host's next case starts before this one is recorded: it never idles.
                        self._submit(host, queues[host])
                    yield HostOutcome(host, spec, result, stopped, not_run)
        finally:
            self.close()

    def _lost(self, queues: Mapping[Host, deque[CaseSpec]]) -> Iterator[HostOutcome]:
        """Outcomes for the cases whose worker has left the cluster."""
        live = live_addresses(self.client)
        for future, (host, spec) in list(self._inflight.items()):
            if host.address in live:
                continue
            del self._inflight[future]
            with contextlib.suppress(Exception):
                self.client.cancel(future)
            not_run = list(queues[host])
            queues[host].clear()
            reason = f"worker lost ({host.address} left the cluster during the case)"
            yield HostOutcome(host, spec, failed_result(spec, reason), "worker lost", not_run)

    def close(self) -> None:
        """Cancel what is still in flight (a child already measuring finishes its case)."""
        if self._inflight:
            with contextlib.suppress(Exception):
                self.client.cancel(list(self._inflight))
            self._inflight.clear()
