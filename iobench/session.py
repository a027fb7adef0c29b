"""A whole run: plan -> execute -> record, with host facts, a time budget and signals.

``execute_events`` is the core every front end drives (the CLI, ``iobench.api``): it checks the
target, records host facts, makes the run's sink (a crash-safe run folder, or memory), plans
the cases still to run, hands them to an executor, records each result as it arrives, and
yields case events. SIGINT, SIGTERM and SIGHUP end the run between (or inside) cases: the run
is marked interrupted, scratch files are removed, and RunInterrupted (exit 130) is raised.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iobench import hostinfo
from iobench.dictionary import columns, render_markdown
from iobench.engine.checks import case_warnings
from iobench.engine.counters import CounterProbe
from iobench.engine.events import CaseFinished, Event, Events, RunFinished, RunStarted, Subscriber
from iobench.engine.runner import CaseSpaceError
from iobench.errors import InsufficientSpaceError, ParamError, ResultsFullError, RunInterrupted
from iobench.execute import Executor, LocalExecutor
from iobench.interrupts import Terminated, termination_raises
from iobench.loops.engines import native_available, native_unavailable_reason
from iobench.peer.address import NetnsPeer, PeerAddress, parse_peer
from iobench.peer.client import RemotePeer
from iobench.peer.netns import link_problem, link_requested
from iobench.plan import CaseSpec, Lookup, PlanEntry, plan_cases
from iobench.record import MemorySink, Sink, with_context
from iobench.results import COLUMNS_DOC, RunStore
from iobench.scratch import check_target_dir, note_run, private_scratch, restore_left_settings
from iobench.units import format_size


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


@dataclass
class RunRequest:
    """Everything a run needs; front ends build one and call ``execute``."""

    entries: Sequence[PlanEntry]
    lookup: Lookup
    target_dir: Path = Path(".")
    #: Where the run folder goes; None keeps everything in memory.
    out_dir: Path | None = Path("results")
    #: What meta.json records as the run's config (file, description, entries).
    config: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    cpu: int | None = None
    time_budget_ns: int | None = None
    subscribers: list[Subscriber] = field(default_factory=list)
    #: Continue this run (its store is open and locked) instead of making a new one.
    resume: RunStore | None = None
    #: Builds the executor (default: LocalExecutor in this process).
    executor: Callable[..., Executor] | None = None
    #: ``--peer``: where socket experiments run their peer ("HOST[:PORT]" of an ``iobench
    #: serve``); None forks it on this host as always.
    peer: str | None = None
    #: ``--peer-token``: the token that server wants.
    peer_token: str | None = None
    #: Run-wide constant columns merged into every row before it is recorded (a fleet run's
    #: host and worker; declare each in iobench/metrics.py).
    row_context: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutcome:
    """What a finished (or stopped) run left: its sink and final status."""

    sink: Sink
    status: str

    @property
    def path(self) -> Path | None:
        return self.sink.path

    @property
    def meta(self) -> dict[str, Any]:
        return self.sink.meta

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.sink.rows

    @property
    def failed_cases(self) -> list[dict[str, Any]]:
        """Summaries of cases that failed (not merely unsupported here)."""
        return [c for c in self.meta.get("cases", []) if c.get("status") == "failed"]


def _facts(
    entries: Sequence[PlanEntry], target_dir: Path, cpu: int | None
) -> tuple[dict[str, Any], list[str]]:
    host = hostinfo.host_facts()
    host["cpu_tick_ns"], host["cpu_tick_source"] = hostinfo.cpu_tick_ns()
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
        "git": hostinfo.git_facts(),
    }
    warnings = hostinfo.warnings_for(host, target)
    if counters_unavailable:
        warnings.append(
            f"IO counters cannot be read ({counters_unavailable}): syscall and disk-byte columns are empty"
        )
    if cpu is not None and any(entry.experiment.has_peers for entry in entries):
        # Affinity is inherited: a forked receiver or a worker thread shares the one CPU.
        warnings.append(
            f"pinned to CPU {cpu}: forked peers and threads (socket experiments, "
            "context-switch, file-concurrency) share that CPU, so they measure a one-CPU machine"
        )
    return facts, warnings


def _check_space(specs: Sequence[CaseSpec], lookup: Lookup, target_dir: Path) -> None:
    """Refuse, before any folder is made, a case that cannot fit in --dir's free space."""
    free = shutil.disk_usage(target_dir).free
    for spec in specs:
        experiment = lookup(spec.experiment)
        needed = experiment(spec.params, target_dir).space_needed()
        if needed > free:
            raise InsufficientSpaceError(
                f"{spec.label} needs {format_size(needed)} of scratch space; --dir {target_dir} has "
                f"{format_size(free)} free"
            )


def _open_sink(
    request: RunRequest, meta: dict[str, Any], facts: dict[str, Any], warnings: list[str], scratch: Path
) -> Sink:
    """The run's sink; its meta on disk names the scratch folder from the start, so that a
    run killed before its first case is recorded still leads the next command to it."""
    if request.resume is not None:
        store = request.resume
        store.meta.setdefault("resumed", [{}])[-1].update(facts)
        for warning in warnings:
            store.warn(warning)
        store.meta["scratch"] = str(scratch)
        store.save_meta()
        return store
    full = {**meta, **facts, "warnings": warnings, "scratch": str(scratch)}
    if request.out_dir is None:
        return MemorySink(full)
    return RunStore.create(Path(request.out_dir), full)


@dataclass
class _Prepared:
    """What a run knows before its first case: the cases, facts and meta, its clock."""

    specs: list[CaseSpec]
    done: int
    total: int
    target_dir: Path
    facts: dict[str, Any]
    warnings: list[str]
    meta: dict[str, Any]
    clock_origin: int
    experiments: list[Any]


@contextlib.contextmanager
def open_peer(
    value: str | None, token: str | None = None
) -> Iterator[tuple[PeerAddress | NetnsPeer | None, dict[str, Any]]]:
    """The peer every case of the run uses, and what the run records about it (meta "peer").

    None/"" -> (None, {}): peers are forked here. ``HOST[:PORT]`` -> its address, after one
    handshake that fails the run before anything is made when the server cannot be reached,
    runs another version, wants another token or is busy (PeerRefused, one line). ``netns``
    -> the virtual host: the executor builds each case's link (``peer.netns.NetnsLinks``);
    where it cannot (not root...), the cases that need it are unsupported with the reason.
    """
    address = parse_peer(value, token)
    if address is None:
        yield None, {}
        return
    if isinstance(address, NetnsPeer):
        from iobench.errors import LinkUnsupported
        from iobench.netemu import check_support

        try:
            check_support()
        except LinkUnsupported as exc:
            yield address, {"address": "netns", "unsupported": str(exc)}
        else:
            yield address, {"address": "netns"}
        return
    peer = RemotePeer(address)
    try:
        host = peer.connect()
    finally:
        peer.close()
    yield address, {"address": str(address), "host": host}


def _prepare(request: RunRequest, peer: PeerAddress | NetnsPeer | None = None) -> _Prepared:
    """Check the target, pin, plan the cases still to run, check space, read host facts."""
    target_dir = check_target_dir(request.target_dir)
    cpu = pin_cpu(request.cpu)
    done = request.resume.finished_cases() if request.resume is not None else set()
    specs = plan_cases(request.entries, done, cpu, peer)
    for spec in specs:
        problem = link_problem(spec.params)
        if problem:
            raise ParamError(f"{spec.label}: {problem}")
    if not isinstance(peer, NetnsPeer):
        linked = next((spec for spec in specs if link_requested(spec.params)), None)
        if linked is not None:
            raise ParamError(
                f"{linked.label}: --rtt, --rate and --loss describe an emulated link; they need --peer netns"
            )
    _check_space(specs, request.lookup, target_dir)
    # Settings a killed run changed (read_ahead_kb, THP mode...) go back before facts are read.
    restored = restore_left_settings()
    facts, warnings = _facts(request.entries, target_dir, cpu)
    warnings += restored
    clock_origin = time.perf_counter_ns()
    meta = {
        "command": request.command,
        "config": request.config,
        "cpu_pinned": cpu,
        "clock_origin": {"unix_ns": time.time_ns(), "note": "t_start_ns of a row counts from this instant"},
    }
    if request.resume is not None:
        # Rows of a resumed run keep counting from the run's first start.
        origin = (request.resume.meta.get("clock_origin") or {}).get("unix_ns")
        if isinstance(origin, int):
            clock_origin -= time.time_ns() - origin
    experiments = list({entry.experiment.name: entry.experiment for entry in request.entries}.values())
    total = specs[0].total if specs else len(done)
    return _Prepared(specs, len(done), total, target_dir, facts, warnings, meta, clock_origin, experiments)


def execute_events(request: RunRequest) -> Iterator[Event]:
    """Run the request, yielding RunStarted, a CaseFinished per case and RunFinished (whose
    ``run`` is the RunOutcome). Subscribers get every event, RepDone included, as it happens."""
    events = Events(*request.subscribers)
    # From the first check to the last file: a signal anywhere in between ends the run
    # with its message (and the scratch folder removed), never a silent death by default.
    with termination_raises(), open_peer(request.peer, request.peer_token) as (peer, peer_facts):
        ready = _prepare(request, peer)
        if peer_facts:
            ready.meta["peer"] = peer_facts
        # The scratch folder first: when --dir is unusable, no run folder is left behind.
        with private_scratch(ready.target_dir) as scratch:
            sink = _open_sink(request, ready.meta, ready.facts, ready.warnings, scratch)
            try:
                outcome = yield from _measure(request, ready, sink, scratch, events)
            except GeneratorExit:
                _finish_quietly(sink, "interrupted", "the caller stopped the run")
                raise
            except (KeyboardInterrupt, Terminated):
                raise _interrupted(sink, ready.total) from None
            except BaseException as exc:
                if sink.meta.get("status") == "running":
                    _finish_quietly(sink, "failed", str(exc) or type(exc).__name__)
                raise
            finally:
                sink.close()
    finished_event = RunFinished(outcome.status, str(sink.path) if sink.path else None, outcome)
    events.emit(finished_event)
    yield finished_event


def _measure(
    request: RunRequest, ready: _Prepared, sink: Sink, scratch: Path, events: Events
) -> Generator[Event, None, RunOutcome]:
    """Every case into the sink, then the run's status and its derived files."""
    if sink.path is not None:
        note_run(scratch, sink.path)
    with contextlib.suppress(OSError):
        sink.write_extra(
            COLUMNS_DOC, render_markdown(columns(ready.experiments), "Columns of this run").encode()
        )
    factory = request.executor or LocalExecutor
    fs_type = ready.facts["target"].get("fs_type") or ""
    executor = factory(request.lookup, scratch, events, fs_type, ready.clock_origin)
    started = RunStarted(ready.total, ready.done, str(sink.path) if sink.path else None)
    events.emit(started)
    yield started
    try:
        status, error = yield from _run_cases(request, ready.specs, executor, sink, events, ready.total)
    finally:
        links = getattr(executor, "links", None)
        if links is not None and links.history:
            sink.meta["links"] = links.history  # each emulated link and its relay counters
    # The measuring process's own footprint, before any post-processing loads libraries.
    sink.meta["peak_rss_measuring_bytes"] = hostinfo.peak_rss_bytes()
    sink.finish(status, error)
    _write_parquet(sink, ready.experiments)
    return RunOutcome(sink, status)


def _interrupted(sink: Sink, total: int) -> RunInterrupted:
    """Mark the run interrupted (keeping every finished case) and say where it is."""
    finished = len(sink.meta.get("cases", []))
    where = sink.path or "memory"
    if sink.meta.get("status") not in (None, "running"):
        # Every case was recorded and the run marked; only a derived file was being written.
        return RunInterrupted(
            f"interrupted after the run ended ({sink.meta.get('status')}): its {finished} cases are kept "
            f"in {where}; results.parquet may be missing (results.csv and cases.jsonl hold every row)"
        )
    _finish_quietly(sink, "interrupted", f"interrupted after {finished} of {total} cases")
    return interrupted_mid_run(finished, total, sink.path)


def interrupted_mid_run(finished: int, total: int, path: Path | str | None) -> RunInterrupted:
    """The one-line error of a run stopped by a signal with ``finished`` of ``total`` cases
    recorded in ``path`` (None: kept in memory only), and how to continue it."""
    resume = f" (continue with: iobench run sweep --resume {path})" if path else ""
    return RunInterrupted(
        f"interrupted; {finished} of {total} finished cases kept in {path or 'memory'}{resume}"
    )


def _run_cases(
    request: RunRequest,
    specs: Sequence[CaseSpec],
    executor: Executor,
    sink: Sink,
    events: Events,
    total: int,
) -> Iterator[Event]:
    """Records each result the executor yields; returns (status, error) via StopIteration."""
    started = time.perf_counter_ns()
    results = executor.map(specs)
    labels = {spec.index: spec.label for spec in specs}
    ran = 0
    while True:
        # At least one case per invocation, so resuming under a budget progresses.
        budget = request.time_budget_ns
        if ran and budget is not None and time.perf_counter_ns() - started >= budget:
            close = getattr(results, "close", None)
            if close is not None:
                close()
            return "stopped", f"time budget reached after {len(sink.meta['cases'])} of {total} cases"
        try:
            result = next(results)
        except StopIteration:
            return "complete", None
        except CaseSpaceError as exc:
            sink.commit(with_context(exc.result.rows, request.row_context), exc.result.summary)
            sink.finish("failed", str(exc))
            raise
        sink.commit(with_context(result.rows, request.row_context), result.summary)
        ran += 1
        for warning in case_warnings(result.summary, result.rows):
            sink.warn(warning)
        label = labels.get(result.index, f"{result.summary.get('experiment')} {result.summary.get('case')}")
        finished = CaseFinished(result.index, total, label, result.summary)
        events.emit(finished)
        yield finished


def _write_parquet(sink: Sink, experiments: Sequence[Any]) -> None:
    """results.parquet with typed columns, when pyarrow is installed (after all measuring;
    IOBENCH_PARQUET=0 skips it: pyarrow, and the pandas it loads, add ~100 MB to the process)."""
    from iobench import parquet
    from iobench.results import PARQUET, ordered_columns

    rows = sink.rows
    if sink.path is None or not rows or os.environ.get("IOBENCH_PARQUET") == "0" or not parquet.available():
        return
    try:
        sink.write_extra(PARQUET, parquet.to_parquet(rows, columns(experiments), ordered_columns(rows)))
    except (OSError, ValueError, TypeError) as exc:
        sink.warn(f"results.parquet not written: {exc}")


def _finish_quietly(sink: Sink, status: str, error: str) -> None:
    """Mark the run's end, unless the disk is too full even for that (the cases are kept)."""
    with contextlib.suppress(OSError, ResultsFullError):
        if sink.meta.get("status") == "running":
            sink.finish(status, error)


def execute(request: RunRequest) -> RunOutcome:
    """Run the request to the end (or the budget) and return what it left."""
    outcome = None
    for event in execute_events(request):
        if isinstance(event, RunFinished):
            outcome = event.run
    assert outcome is not None
    return outcome
