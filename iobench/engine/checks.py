"""What a finished case tells the run's warnings: one pure function over its summary and rows.

A case that ran can still be wrong: it did not run at all (failed, unsupported), the page
cache was not in the state it asked for, its own data check failed, or O_DIRECT was accepted
and ignored. Each of those is a sentence in the run's warnings, so nobody reads such a row
as a good measurement without being told.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def is_false(value: Any) -> bool:
    """True only for an explicit False: a Python or numpy bool, or the text "False" (a CSV)."""
    if isinstance(value, bool):
        return not value
    kind = type(value)
    if kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"):  # without importing numpy
        return not bool(value)
    return isinstance(value, str) and value.strip().lower() == "false"


def _measured(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row.get("status", "ok") == "ok"]


def case_warnings(summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str]:
    """The run's warnings about one case, from its summary (experiment, case, status, reason,
    cache, process_threads) and its rows: failed or unsupported; cache state not achieved; more
    than one thread in the measuring process; integrity_ok False; direct_verified False (with
    the row's direct_note)."""
    label = f"{summary['experiment']} {summary['case']}"
    status = summary.get("status")
    if status in ("unsupported", "failed"):
        return [f"{summary['case']} ({summary['experiment']}) {status}: {summary.get('reason')}"]
    measured = _measured(rows)
    total = len(measured)
    out = []
    unverified = [row for row in measured if is_false(row.get("cache_verified"))]
    if unverified:
        worst = max(float(row.get("resident_before") or 0.0) for row in unverified)
        out.append(
            f"{label}: cache={summary.get('cache')} was not achieved in "
            f"{len(unverified)} repetition(s) (up to {worst:.0%} of the file resident before timing)"
        )
    threads = summary.get("process_threads")
    if isinstance(threads, int) and threads > 1:
        out.append(
            f"{label}: the measuring process had {threads} threads when timing began (1 expected): a "
            "shared file table makes every read()/write() take a file reference and the position "
            "lock, so per-call costs read high"
        )
    broken = [row for row in measured if is_false(row.get("integrity_ok"))]
    if broken:
        out.append(
            f"{label}: its own data check failed (integrity_ok=False) in {len(broken)} of {total} "
            "repetition(s); those repetitions did not do what the case says"
        )
    not_direct = [row for row in measured if is_false(row.get("direct_verified"))]
    if not_direct:
        note = next((str(row["direct_note"]) for row in not_direct if row.get("direct_note")), "")
        out.append(
            f"{label}: O_DIRECT was not verified in {len(not_direct)} of {total} repetition(s)"
            + (f" ({note})" if note else "; its numbers are not direct-IO numbers")
        )
    return out
