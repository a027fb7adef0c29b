"""A fleet run: the same plan on every chosen host, recorded on the client as cases complete.

Order: connect (bounded), choose hosts, check every host's iobench version, quiet the
workers, read every host's facts (its --dir, --cpu and free space checked there) — all
before any folder is made or any case runs. Then one run folder per host inside a fleet
folder, every host's cases at once (one at a time per host), each result committed to its
host's run as it arrives, with ``host`` and ``worker`` in every row.

Events: RunStarted (cases of all hosts), a CaseFinished per case (label "host: case"),
RunFinished whose ``run`` is the FleetOutcome.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iobench.dictionary import columns, render_markdown
from iobench.engine.checks import case_warnings
from iobench.engine.events import CaseFinished, Event, RunFinished, RunStarted
from iobench.errors import ClusterError, ResultsFullError, RunInterrupted
from iobench.fleet import cluster
from iobench.fleet.executor import FleetExecutor
from iobench.fleet.folder import FleetFolder, host_runs, read_fleet
from iobench.interrupts import Terminated, termination_raises
from iobench.plan import CaseSpec, Lookup, PlanEntry, plan_cases
from iobench.record import with_context
from iobench.results import COLUMNS_DOC, RunStore


@dataclass
class FleetRequest:
    """Everything a fleet run needs."""

    cluster: str
    entries: Sequence[PlanEntry]
    lookup: Lookup
    config: dict[str, Any] = field(default_factory=dict)
    #: --hosts: worker names or patterns, comma-separated; None: every worker.
    hosts: str | None = None
    #: The scratch folder's parent on each host (a path there, not here).
    target_dir: Path = Path(".")
    out_dir: Path = Path("results")
    command: list[str] = field(default_factory=list)
    cpu: int | None = None
    timeout_s: float = cluster.DEFAULT_TIMEOUT_S
    #: Continue this fleet folder instead of making a new one.
    resume: Path | None = None


@dataclass
class FleetOutcome:
    """What a fleet run left: its folder, status and each host's run folder."""

    path: Path
    status: str
    data: dict[str, Any]
    runs: dict[str, Path]


@dataclass
class _HostRun:
    host: cluster.Host
    store: RunStore
    specs: list[CaseSpec]
    total: int
    stopped: str | None = None
    #: The case during which the host stopped, and the cases that then did not run.
    stopped_case: str = ""
    not_run: list[CaseSpec] = field(default_factory=list)


def _gather_facts(client: Any, request: FleetRequest, hosts: Sequence[cluster.Host]) -> dict[str, Any]:
    """Each host's facts from a child there; ClusterError naming the host that refuses."""
    from iobench.fleet.task import run_child

    entries = [entry.describe() for entry in request.entries]
    futures = {
        host.name: client.submit(
            run_child,
            {"mode": "facts", "entries": entries, "dir": str(request.target_dir), "cpu": request.cpu},
            workers=[host.address],
            allow_other_workers=False,
            pure=False,
        )
        for host in hosts
    }
    answers = {}
    for name, future in futures.items():
        answer = future.result()
        if "error" in answer:
            raise ClusterError(f"host {name}: {answer['error']}")
        answers[name] = answer
    return answers


def _case_request(request: FleetRequest, facts: dict[str, Any], origin_unix_ns: int) -> Any:
    def build(host: cluster.Host, spec: CaseSpec) -> dict[str, Any]:
        target_fs = (facts[host.name]["facts"].get("target") or {}).get("fs_type") or ""
        return {
            "mode": "case",
            "spec": spec,
            "dir": str(request.target_dir),
            "target_fs": target_fs,
            "clock_origin_unix_ns": origin_unix_ns,
        }

    return build


def _resumed_hosts(path: Path, available: Sequence[cluster.Host]) -> list[cluster.Host]:
    """The fleet's own hosts, found among the workers by name (their addresses may be new)."""
    names = list(read_fleet(path)["hosts"])
    by_name = {h.name: h for h in available}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ClusterError(
            f"cannot resume {path}: host{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'are' if len(missing) > 1 else 'is'} not in the cluster (workers: {', '.join(by_name) or 'none'})"
        )
    return [by_name[n] for n in names]


def fleet_events(request: FleetRequest) -> Iterator[Event]:
    """Run the fleet; yields RunStarted, CaseFinished per case, RunFinished(run=FleetOutcome)."""
    with termination_raises():
        client = cluster.connect(request.cluster, request.timeout_s)
        try:
            yield from _with_client(client, request)
        finally:
            with contextlib.suppress(Exception):
                client.close(timeout=5)


def _with_client(client: Any, request: FleetRequest) -> Iterator[Event]:
    available = cluster.workers(client)
    if request.resume is not None:
        hosts = _resumed_hosts(request.resume, available)
    else:
        hosts = cluster.choose_hosts(available, request.hosts)
    cluster.check_versions(client, hosts)
    settings = cluster.quiet(client, hosts)
    facts = _gather_facts(client, request, hosts)
    fleet, runs, origin = _open(request, hosts, facts, settings)
    try:
        yield from _measure(client, request, fleet, runs, facts, origin)
    except (KeyboardInterrupt, Terminated):
        _finish_all(fleet, runs, "interrupted", "interrupted")
        raise RunInterrupted(
            f"interrupted; finished cases kept in {fleet.path} "
            f"(continue with: iobench run sweep --resume {fleet.path} --cluster {request.cluster})"
        ) from None
    except GeneratorExit:
        _finish_all(fleet, runs, "interrupted", "the caller stopped the run")
        raise
    except BaseException as exc:
        _finish_all(fleet, runs, "failed", str(exc) or type(exc).__name__)
        raise
    finally:
        for run in runs.values():
            run.store.close()
        fleet.close()


def _open(
    request: FleetRequest,
    hosts: Sequence[cluster.Host],
    facts: dict[str, Any],
    settings: dict[str, Any],
) -> tuple[FleetFolder, dict[str, _HostRun], int]:
    """The fleet folder and each host's run store (new, or reopened to resume)."""
    warnings = cluster.shared_machines(hosts)
    if request.resume is not None:
        fleet = FleetFolder.reopen(request.resume)
        origin = int(fleet.data.get("clock_origin_unix_ns") or time.time_ns())
        stores = {}
        try:
            for name, path in host_runs(request.resume).items():
                stores[name] = RunStore.reopen(path, request.command)
        except BaseException:
            for store in stores.values():
                store.close()
            fleet.close()
            raise
    else:
        origin = time.time_ns()
        fleet = FleetFolder.create(
            request.out_dir,
            {"cluster": request.cluster, "command": request.command, "config": request.config,
             "clock_origin_unix_ns": origin, "warnings": warnings},
        )  # fmt: skip
        stores = {}
    fleet.data["dask"] = settings
    runs: dict[str, _HostRun] = {}
    try:
        for host in hosts:
            answer = facts[host.name]
            identity = {"host": host.name, "worker": host.address, "cluster": request.cluster,
                        "fleet": fleet.path.name, "dask": settings.get(host.name)}  # fmt: skip
            store = stores.get(host.name)
            if store is None:
                meta = {
                    "command": request.command,
                    "config": request.config,
                    "cpu_pinned": request.cpu,
                    "clock_origin": {
                        "unix_ns": origin,
                        "note": "t_start_ns of a row counts from this instant",
                    },
                    **answer["facts"],
                    "warnings": answer["warnings"] + warnings,
                    "fleet": identity,
                }
                store = RunStore.create(fleet.path, meta)
            else:
                store.meta.setdefault("resumed", [{}])[-1].update(answer["facts"])
                store.meta["fleet"] = identity
                store.meta.pop("not_run", None)  # they run now
                for warning in answer["warnings"]:
                    store.warn(warning)
                store.save_meta()
            done = store.finished_cases()
            specs = plan_cases(request.entries, done, request.cpu)
            total = specs[0].total if specs else len(done)
            runs[host.name] = _HostRun(host, store, specs, total)
            fleet.data["hosts"][host.name] = {"worker": host.address, "ip": host.ip, "run": store.path.name,
                                              "status": "running"}  # fmt: skip
        fleet.save()
    except BaseException:
        for run in runs.values():
            run.store.close()
        for name, store in stores.items():
            if name not in runs:
                store.close()
        fleet.close()
        raise
    return fleet, runs, origin


def _measure(
    client: Any,
    request: FleetRequest,
    fleet: FleetFolder,
    runs: dict[str, _HostRun],
    facts: dict[str, Any],
    origin: int,
) -> Iterator[Event]:
    experiments = list({e.experiment.name: e.experiment for e in request.entries}.values())
    doc = render_markdown(columns(experiments), "Columns of this run").encode()
    for run in runs.values():
        with contextlib.suppress(OSError):
            run.store.write_extra(COLUMNS_DOC, doc)
    total = sum(run.total for run in runs.values())
    done = sum(run.total - len(run.specs) for run in runs.values())
    started = RunStarted(total, done, str(fleet.path))
    yield started
    executor = FleetExecutor(client, _case_request(request, facts, origin))
    index = done
    for outcome in executor.map({run.host: run.specs for run in runs.values()}):
        run = runs[outcome.host.name]
        context = {"host": outcome.host.name, "worker": outcome.host.address}
        run.store.commit(with_context(outcome.result.rows, context), outcome.result.summary)
        for warning in case_warnings(outcome.result.summary, outcome.result.rows):
            run.store.warn(warning)
        if outcome.stopped:
            run.stopped = outcome.stopped
            run.stopped_case = outcome.spec.label
            run.not_run = outcome.not_run
            run.store.meta["not_run"] = [
                {
                    "experiment": s.experiment,
                    "case": s.case_id,
                    "reason": f"{outcome.stopped} earlier in the run",
                }
                for s in outcome.not_run
            ]
            run.store.save_meta()
        index += 1
        yield CaseFinished(index, total, f"{outcome.host.name}: {outcome.spec.label}", outcome.result.summary)
    _finish_hosts(fleet, runs, experiments)
    statuses = {run.store.meta["status"] for run in runs.values()}
    status = "complete" if statuses == {"complete"} else "failed"
    errors = [f"host {name}: {run.store.meta['error']}" for name, run in runs.items() if run.stopped]
    fleet.finish(status, "; ".join(errors) or None)
    outcome = FleetOutcome(fleet.path, status, fleet.data, {n: r.store.path for n, r in runs.items()})
    yield RunFinished(status, str(fleet.path), outcome)


def _finish_hosts(fleet: FleetFolder, runs: dict[str, _HostRun], experiments: list[Any]) -> None:
    from iobench.session import _write_parquet

    for name, run in runs.items():
        if run.stopped:
            error = (
                f"{run.stopped} during {run.stopped_case}; {len(run.not_run)} case(s) not run "
                f"(continue with --resume {fleet.path})"
            )
            run.store.finish("failed", error)
        else:
            run.store.finish("complete")
        _write_parquet(run.store, experiments)
        fleet.data["hosts"][name]["status"] = run.store.meta["status"]


def _finish_all(fleet: FleetFolder, runs: dict[str, _HostRun], status: str, error: str) -> None:
    """Mark every host's run and the fleet (finished cases are already committed)."""
    for name, run in runs.items():
        with contextlib.suppress(OSError, ResultsFullError):
            if run.store.meta.get("status") == "running":
                run.store.finish(status, error)
            fleet.data["hosts"][name]["status"] = run.store.meta.get("status")
    with contextlib.suppress(OSError):
        if fleet.data.get("status") == "running":
            fleet.finish(status, error)
