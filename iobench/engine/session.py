"""A whole run: scratch folder, host facts, every case of every entry, results on disk.

Finished cases are on disk before the next one starts. SIGINT, SIGTERM and SIGHUP stop the run
between (or inside) cases: the run is marked interrupted, scratch files are removed, and
RunInterrupted carries the exit status 130 to the CLI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from iobench import hostinfo
from iobench.engine.checks import case_warnings
from iobench.engine.counters import CounterProbe
from iobench.engine.progress import Progress
from iobench.engine.runner import (
    CaseSpaceError,
    PlanEntry,
    case_label,
    count_cases,
    run_case,
)
from iobench.errors import ParamError, RunInterrupted, TargetDirError
from iobench.loops.engines import native_available, native_unavailable_reason
from iobench.params import Kind, Param, case_id
from iobench.results import RunWriter

#: The whole run's time budget (per-case budgets are the protocol's max_case_time).
TIME_BUDGET = Param(
    "max_time",
    Kind.DURATION,
    None,
    "Time budget of the whole run: once used, stop at the next case boundary "
    "(the run is kept as 'stopped'; continue it with run sweep --resume).",
    minimum=1,
    maximum=366 * 24 * 3600 * 10**9,
)


def pin_cpu(cpu: int | None) -> int | None:
    """Restrict this process (and what it forks) to one CPU; None leaves it free."""
    if cpu is None:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if cpu not in allowed:
        raise ParamError(
            f"--cpu: {cpu} is not one of the CPUs this process may use ({', '.join(map(str, allowed))})"
        )
    os.sched_setaffinity(0, {cpu})
    return cpu


def check_target_dir(directory: Path) -> Path:
    """The folder scratch files go in must exist, be a folder, and accept a new sub-folder."""
    directory = Path(directory)
    if not directory.exists():
        raise TargetDirError(f"--dir {directory} does not exist")
    if not directory.is_dir():
        raise TargetDirError(f"--dir {directory} is not a folder")
    return directory


@contextlib.contextmanager
def private_scratch(directory: Path) -> Iterator[Path]:
    """A private (0700) folder made with mkdtemp under ``directory``, removed on exit."""
    try:
        scratch = Path(tempfile.mkdtemp(prefix="iobench-", dir=directory))
    except OSError as exc:
        raise TargetDirError(f"cannot create a scratch folder in {directory}: {exc.strerror}") from None
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread like KeyboardInterrupt."""


_TERMINATING = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _termination_raises() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal, a dropped ssh session) end the run like Ctrl-C:
    finished cases kept, scratch removed. Left to their default, they kill the process on
    the spot and leave both behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = {signum: signal.signal(signum, handler) for signum in _TERMINATING}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def run_plan(
    entries: Sequence[PlanEntry],
    target_dir: Path,
    out_dir: Path,
    progress: Progress,
    meta: dict[str, Any],
    time_budget_ns: int | None = None,
    resume: RunWriter | None = None,
) -> RunWriter:
    """Run every case of every entry; returns the writer of the run folder.

    ``resume`` continues an existing run: cases it already recorded are skipped.
    ``time_budget_ns`` stops cleanly at a case boundary once the run has used it (after at
    least one case); the run is then marked "stopped" and can be resumed.
    """
    target_dir = check_target_dir(target_dir)
    host = hostinfo.host_facts()
    target = hostinfo.target_facts(target_dir)
    with CounterProbe("thread") as probe:
        counter_source = probe.source
        counters_unavailable = probe.unavailable
    facts = {
        "engine": ",".join(sorted({entry.protocol.engine for entry in entries})) or "auto",
        "native_engine": "built" if native_available() else f"not built: {native_unavailable_reason()}",
        "counter_source": counter_source,
        "host": host,
        "target": target,
    }
    warnings = hostinfo.warnings_for(host, target)
    if counters_unavailable:
        warnings.append(
            f"IO counters cannot be read ({counters_unavailable}): syscall and disk-byte columns are empty"
        )
    if meta.get("cpu_pinned") is not None and any(entry.experiment.has_peers for entry in entries):
        # Affinity is inherited: a forked receiver or a worker thread shares the one CPU.
        warnings.append(
            f"pinned to CPU {meta['cpu_pinned']}: forked peers and threads (socket experiments, "
            "context-switch, file-concurrency) share that CPU, so they measure a one-CPU machine"
        )
    started = time.perf_counter_ns()
    with private_scratch(target_dir) as scratch:
        if resume is None:
            writer = RunWriter.create(Path(out_dir), {**meta, **facts, "warnings": warnings})
        else:
            writer = resume
            writer.meta["resumed"][-1].update(facts)
            for warning in warnings:
                writer.warn(warning)
        done = writer.finished_cases()
        total = count_cases(entries)
        progress.start(total)
        index = ran = 0
        stopped = ""
        try:
            with _termination_raises():
                for entry in entries:
                    for case in entry.cases():
                        index += 1
                        key = (entry.experiment.name, case_id(entry.experiment.params, case))
                        if key in done:
                            continue
                        # At least one case per invocation, so resuming under a budget progresses.
                        over_budget = (
                            time_budget_ns is not None and time.perf_counter_ns() - started >= time_budget_ns
                        )
                        if ran and over_budget:
                            stopped = (
                                f"time budget reached after {len(writer.meta['cases'])} of {total} cases"
                            )
                            break
                        label = case_label(entry.experiment, case)
                        progress.case_started(index, label)
                        try:
                            result = run_case(
                                entry.experiment,
                                case,
                                entry.protocol,
                                scratch,
                                progress,
                                target.get("fs_type") or "",
                            )
                        except CaseSpaceError as exc:
                            writer.add_case(exc.result.rows, exc.result.summary)
                            writer.finish("failed", str(exc))
                            raise
                        writer.add_case(result.rows, result.summary)
                        ran += 1
                        _note_case_warnings(writer, result.summary, result.rows)
                        progress.case_done(label, result.summary)
                    if stopped:
                        break
        except (KeyboardInterrupt, _Terminated):
            finished = len(writer.meta["cases"])
            writer.finish("interrupted", f"interrupted after {finished} of {total} cases")
            raise RunInterrupted(
                f"interrupted; {finished} of {total} finished cases kept in {writer.path} "
                f"(continue with: iobench run sweep --resume {writer.path})"
            ) from None
        except BaseException as exc:
            if writer.meta.get("status") == "running":
                writer.finish("failed", str(exc) or type(exc).__name__)
            raise
        finally:
            progress.close()
        writer.finish("stopped" if stopped else "complete", stopped or None)
    return writer


def _note_case_warnings(writer: RunWriter, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    for warning in case_warnings(summary, rows):
        writer.warn(warning)
