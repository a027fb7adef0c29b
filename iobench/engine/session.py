"""A whole run: scratch folder, host facts, every case of every entry, results on disk.

Finished cases are on disk before the next one starts. SIGINT and SIGTERM stop the run
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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from iobench import hostinfo
from iobench.engine.counters import CounterProbe
from iobench.engine.progress import Progress
from iobench.engine.runner import (
    ENGINE_NAME,
    CaseSpaceError,
    PlanEntry,
    case_label,
    count_cases,
    run_case,
)
from iobench.errors import RunInterrupted, TargetDirError
from iobench.results import RunWriter


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
    """SIGTERM, raised in the main thread like KeyboardInterrupt."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_plan(
    entries: Sequence[PlanEntry],
    target_dir: Path,
    out_dir: Path,
    progress: Progress,
    meta: dict[str, Any],
) -> RunWriter:
    """Run every case of every entry; returns the writer of the finished run folder."""
    target_dir = check_target_dir(target_dir)
    host = hostinfo.host_facts()
    target = hostinfo.target_facts(target_dir)
    with CounterProbe("thread") as probe:
        counter_source = probe.source
        counters_unavailable = probe.unavailable
    meta = {
        **meta,
        "engine": ENGINE_NAME,
        "counter_source": counter_source,
        "host": host,
        "target": target,
        "warnings": hostinfo.warnings_for(host, target),
    }
    if counters_unavailable:
        meta["warnings"].append(
            f"IO counters cannot be read ({counters_unavailable}): syscall and disk-byte columns are empty"
        )
    with private_scratch(target_dir) as scratch:
        writer = RunWriter(Path(out_dir), meta)
        total = count_cases(entries)
        progress.start(total)
        index = 0
        try:
            with _sigterm_raises():
                for entry in entries:
                    for case in entry.cases():
                        index += 1
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
                        _note_case_warnings(writer, result.summary, result.rows)
                        progress.case_done(label, result.summary)
        except (KeyboardInterrupt, _Terminated):
            writer.finish("interrupted", f"interrupted after {len(writer.meta['cases'])} of {total} cases")
            raise RunInterrupted(
                f"interrupted; {len(writer.meta['cases'])} of {total} finished cases kept in {writer.path}"
            ) from None
        except BaseException as exc:
            if writer.meta.get("status") == "running":
                writer.finish("failed", str(exc) or type(exc).__name__)
            raise
        finally:
            progress.close()
        writer.finish("complete")
    return writer


def _note_case_warnings(writer: RunWriter, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    if summary.get("status") in ("unsupported", "failed"):
        writer.warn(
            f"{summary['case']} ({summary['experiment']}) {summary['status']}: {summary.get('reason')}"
        )
    unverified = [r for r in rows if r.get("cache_verified") is False]
    if unverified:
        worst = max(r.get("resident_before", 0) for r in unverified)
        writer.warn(
            f"{summary['experiment']} {summary['case']}: cache={summary.get('cache')} was not achieved in "
            f"{len(unverified)} repetition(s) (up to {worst:.0%} of the file resident before timing)"
        )


def process_description() -> dict[str, Any]:
    """Who started the run, for meta.json."""
    return {"pid": os.getpid(), "cwd": os.getcwd()}
