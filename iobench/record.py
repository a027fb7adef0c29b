"""Where finished cases go: a run folder on disk (crash-safe) or memory.

Both sinks offer the same calls, so the session never knows which it has: ``commit`` one
case's rows and summary, ``warn``, ``finish`` with a status, ``close``.
"""

from __future__ import annotations

from typing import Any, Protocol

from iobench.engine.runner import CaseResult
from iobench.results import CaseRecords, RunStore, now_iso


class Sink(Protocol):
    """What the session records into."""

    meta: dict[str, Any]

    @property
    def path(self) -> Any: ...

    @property
    def rows(self) -> list[dict[str, Any]]: ...

    def finished_cases(self) -> set[tuple[str, str]]: ...

    def commit(self, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None: ...

    def warn(self, message: str) -> None: ...

    def write_extra(self, name: str, data: bytes) -> None: ...

    def finish(self, status: str, error: str | None = None) -> None: ...

    def close(self) -> None: ...


class MemorySink(CaseRecords):
    """Keeps everything in memory (``iobench.run(..., out=None)``): nothing is written."""

    path = None

    def __init__(self, meta: dict[str, Any]) -> None:
        from iobench import SCHEMA_VERSION, __version__
        from iobench.results import new_run_id

        self.meta = {
            **meta,
            "schema_version": SCHEMA_VERSION,
            "iobench_version": __version__,
            "run_id": new_run_id(),
            "started": now_iso(),
            "status": "running",
            "cases": [],
        }
        self.run_id = self.meta["run_id"]
        self._records: list[dict[str, Any]] = []
        self.extras: dict[str, bytes] = {}

    def commit(self, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        self._records.append({"summary": summary, "rows": list(rows)})
        self.meta["cases"].append(summary)

    def write_extra(self, name: str, data: bytes) -> None:
        self.extras[name] = data

    def finish(self, status: str, error: str | None = None) -> None:
        self.meta["status"] = status
        self.meta["finished"] = now_iso()
        if error:
            self.meta["error"] = error

    def close(self) -> None:
        """Nothing to release."""


def with_context(rows: list[dict[str, Any]], context: dict[str, Any]) -> list[dict[str, Any]]:
    """``rows`` with the run-wide constant columns of ``context`` in each (a row's own value
    of the same name wins: the engine's identity columns are never overwritten)."""
    if not context:
        return rows
    return [{**context, **row} for row in rows]


def record(sink: Sink, result: CaseResult) -> None:
    """Put one finished case into the sink (a run folder commits it crash-safely)."""
    sink.commit(result.rows, result.summary)


__all__ = ["MemorySink", "RunStore", "Sink", "record", "with_context"]
