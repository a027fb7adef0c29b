"""The engine: runs one case under the repetition protocol and turns counters into rows.

An experiment owns only its loop. This module owns the order of calls, warmup, the
stopping rule, GC, the counters around the timed section, and what goes into each row. It
takes the experiment class it is given: it never looks experiments up (the registry lives
above the engine).
"""

from __future__ import annotations

import errno
import gc
import math
import os
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iobench.engine.counters import CounterProbe
from iobench.engine.events import Events, RepDone
from iobench.engine.protocol import Protocol
from iobench.errors import InsufficientSpaceError, IobenchError, UnsupportedCase
from iobench.loops.engines import engine_for, loops_for
from iobench.params import case_id
from iobench.peer.address import PeerAddress, PeerUnavailable
from iobench.peer.client import peer_for
from iobench.stats import RunningMean
from iobench.units import format_size

if TYPE_CHECKING:  # the engine takes the class it is given; it never imports the registry
    from iobench.experiments.base import Experiment

#: Errors that mean the disk is full: the case is recorded as failed and the run stops.
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


@dataclass
class CaseResult:
    """Rows of one case plus its summary for meta.json; picklable (plain dicts)."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    #: Where the case ran: 1-based position in the plan (0 when run on its own).
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def check_space(directory: Path, needed: int) -> None:
    """Stop before a case that cannot fit, with what it needs and what there is."""
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise InsufficientSpaceError(
            f"needs {format_size(needed)}, has {format_size(free)} free on {directory}"
        )


def _base_row(
    experiment: type[Experiment], case: dict[str, Any], target_fs: str, engine: str, peer: str
) -> dict[str, Any]:
    row = {
        "experiment": experiment.name,
        "case": case_id(experiment.params, case),
        "engine": engine,
        "target_fs": target_fs,
    }
    if experiment.remote_peer:
        row["peer"] = peer
    return {**row, **case}


def run_case(
    experiment: type[Experiment],
    case: dict[str, Any],
    protocol: Protocol,
    scratch: Path,
    events: Events | None = None,
    target_fs: str = "",
    clock_origin_ns: int | None = None,
    peer: PeerAddress | PeerUnavailable | None = None,
) -> CaseResult:
    """Measure one case: prepare, warm up, repeat until the protocol says stop, tear down.

    ``scratch`` must be an existing private folder; the case works in a sub-folder of it
    that is removed afterwards whatever happens. ``events`` receives a RepDone per recorded
    repetition. Each row's ``t_start_ns`` is its start on the monotonic clock, counted from
    ``clock_origin_ns`` (a perf_counter_ns value; default: the start of this case). ``peer``:
    where an experiment with ``remote_peer`` runs its peer (None: forked here, as always).
    """
    events = events or Events()
    experiment.check_case(case)
    engine = engine_for(protocol.engine, experiment.uses_loops(case))
    has_peer = experiment.uses_peer(case)
    peer_object = peer_for(peer if has_peer else None)
    base = _base_row(experiment, case, target_fs, engine, peer_object.name if has_peer else "")
    summary: dict[str, Any] = {"experiment": experiment.name, "case": base["case"], "engine": engine, **case}
    case_dir = Path(scratch) / f"case-{time.monotonic_ns()}"
    case_dir.mkdir(mode=0o700)
    instance = experiment(case, case_dir)
    instance.loops = loops_for(engine)
    instance.peer = peer_object
    rows: list[dict[str, Any]] = []
    origin = time.perf_counter_ns() if clock_origin_ns is None else clock_origin_ns
    probe = CounterProbe(experiment.counter_scope)
    try:
        peer_object.check()
        check_space(case_dir, instance.space_needed())
        instance.prepare()
        started = time.perf_counter_ns()
        for _ in range(protocol.warmup):
            instance.before_rep()
            instance.run_once()
            instance.after_rep()
        measured: list[tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any], int]] = []
        running = RunningMean()
        # Only whole-process counters see a display thread's writes; pause it for those.
        pause = experiment.counter_scope == "process"
        while True:
            pre = instance.before_rep()
            if not measured and not experiment.has_peers:
                # Threads of the measuring process when timing starts. An experiment without peers
                # should have exactly one: any other thread (a display ticker, a BLAS pool an import
                # started) shares the file table, and then every read()/write() takes a file
                # reference and the f_pos lock (+16% per 1-byte read measured here).
                summary["process_threads"] = process_threads()
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                if pause:
                    with events.quiet():
                        before = probe.before()
                        work = instance.run_once()
                        delta = probe.after(before)
                else:
                    before = probe.before()
                    work = instance.run_once()
                    delta = probe.after(before)
            finally:
                if gc_was_enabled:
                    gc.enable()
            post = instance.after_rep()
            running.add(delta.time_ns)
            # Rows are built after the last repetition: time between two passes is time in which a
            # warm file's lines leave a last-level cache that other machines share (a 300 us pause
            # cost the next pass 10-20% here, benchmarks/fidelity/README.md), so keep it short.
            measured.append((delta, work, pre, post, before.time_ns - origin))
            ci = running.ci_halfwidth_pct()
            events.emit(RepDone(len(measured), protocol.max_reps, ci))
            stop_reason = _stop_reason(protocol, len(measured), time.perf_counter_ns() - started, ci)
            if stop_reason:
                break
        io_known = probe.unavailable is None
        for rep, (delta, work, pre, post, t_start_ns) in enumerate(measured, start=1):
            rows.append({**_row(base, rep, delta, work, pre, post, io_known), "t_start_ns": t_start_ns})
        summary.update(
            status="ok",
            reps=len(measured),
            stop_reason=stop_reason,
            ci_halfwidth_pct=None if ci == float("inf") else round(ci, 3),
            median_elapsed_ns=int(statistics.median(delta.time_ns for delta, *_ in measured)),
        )
    except UnsupportedCase as exc:
        rows = [{**base, "rep": 0, "status": "unsupported", "status_reason": str(exc)}]
        summary.update(status="unsupported", reason=str(exc))
    except OSError as exc:
        reason = f"{exc.strerror or exc} ({errno.errorcode.get(exc.errno or 0, '?')})"
        rows = [{**base, "rep": 0, "status": "failed", "status_reason": reason}]
        summary.update(status="failed", reason=reason)
        if exc.errno in _SPACE_ERRNOS:
            raise CaseSpaceError(CaseResult(rows, summary), reason) from exc
    except IobenchError:
        raise  # the run's own verdicts (no space for this case): the session decides
    except Exception as exc:  # an experiment bug or a dead child: record it, keep the other cases
        reason = f"{type(exc).__name__}: {exc}"
        rows = [{**base, "rep": 0, "status": "failed", "status_reason": reason}]
        summary.update(status="failed", reason=reason)
    finally:
        try:
            instance.teardown()
        finally:
            peer_object.close()
            probe.close()
            shutil.rmtree(case_dir, ignore_errors=True)
    return CaseResult(rows, summary)


class CaseSpaceError(InsufficientSpaceError):
    """The disk filled during a case; carries the failed case's record."""

    def __init__(self, result: CaseResult, reason: str) -> None:
        super().__init__(f"disk full during {result.summary['case']}: {reason}")
        self.result = result


def process_threads() -> int:
    """Threads (kernel tasks) of this process now: /proc/self/task, which also sees threads
    that native libraries start; ``threading.active_count()`` where /proc is missing."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _stop_reason(protocol: Protocol, reps: int, elapsed_ns: int, ci_pct: float) -> str:
    if reps >= protocol.max_reps:
        return "max_reps"
    if elapsed_ns >= protocol.max_case_time:
        return "max_case_time"
    if reps >= protocol.min_reps and ci_pct <= protocol.target_ci:
        return "ci_target"
    return ""


def _row(
    base: dict[str, Any],
    rep: int,
    delta: Any,
    work: dict[str, Any],
    pre: dict[str, Any],
    post: dict[str, Any],
    io_known: bool = True,
) -> dict[str, Any]:
    unknown = math.nan
    return {
        **base,
        "rep": rep,
        "status": "ok",
        "status_reason": "",
        "elapsed_ns": delta.time_ns,
        "cpu_ns": delta.cpu_ns,
        "user_ns": delta.user_ns,
        "sys_ns": delta.sys_ns,
        "bytes": work.get("bytes", 0),
        "ops": work.get("ops", 0),
        "syscalls_read": delta.syscalls_read if io_known else unknown,
        "syscalls_write": delta.syscalls_write if io_known else unknown,
        "disk_read_bytes": delta.disk_read_bytes if io_known else unknown,
        "disk_write_bytes": delta.disk_write_bytes if io_known else unknown,
        "ctx_vol": delta.ctx_vol,
        "ctx_invol": delta.ctx_invol,
        "minflt": delta.minflt,
        "majflt": delta.majflt,
        **pre,
        **{k: v for k, v in work.items() if k not in ("bytes", "ops")},
        **post,
    }
