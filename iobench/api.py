"""The Python API: everything the command line does, callable from a script or a notebook.

>>> import iobench
>>> res = iobench.run("syscall", call="getppid", calls=1000, min_reps=5, max_reps=5, warmup=0)
>>> res.status, len(res.frame), int(res.summary["reps"].iloc[0])
('complete', 5, 5)
>>> sorted(iobench.experiments())[:2]
['async-io', 'async-send']

``run`` measures one experiment, ``sweep`` a config, ``resume`` continues a run folder,
``load`` reads one or many. With ``out=None`` nothing is written: the rows stay in memory.
``progress`` takes a callable that receives every event (``iobench.engine.events``);
``run_iter``/``sweep_iter`` yield the case events instead. Errors are ``iobench.errors``
exceptions carrying the one-line message the CLI prints.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iobench.engine.events import Event, RunFinished
from iobench.engine.protocol import PROTOCOL_PARAMS, TIME_BUDGET, Protocol
from iobench.errors import ParamError, ResultsError
from iobench.params import Param, resolve
from iobench.plan import PlanEntry
from iobench.session import RunOutcome, RunRequest, execute_events

if TYPE_CHECKING:
    import pandas as pd

    from iobench.experiments import ExperimentInfo
    from iobench.experiments.base import Experiment

Progress = Callable[[Event], None]
_PROTOCOL_NAMES = {p.name for p in PROTOCOL_PARAMS}


# ------------------------------------------------------------------ results


class Meta(Mapping[str, Any]):
    """A run's meta.json as an object: ``meta.host``, ``meta.target``, ``meta.status``... and
    still a mapping (``meta["host"]``) for everything else."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Meta(run_id={self.run_id!r}, status={self.status!r}, host={self.host.get('hostname')!r})"

    @property
    def run_id(self) -> str:
        return str(self._data.get("run_id", ""))

    @property
    def status(self) -> str:
        return str(self._data.get("status", ""))

    @property
    def host(self) -> dict[str, Any]:
        return dict(self._data.get("host") or {})

    @property
    def target(self) -> dict[str, Any]:
        return dict(self._data.get("target") or {})

    @property
    def protocols(self) -> list[Protocol]:
        """The repetition protocol of each plan entry."""
        entries = (self._data.get("config") or {}).get("entries") or []
        return [Protocol.from_record(e.get("protocol", {})) for e in entries if isinstance(e, dict)]

    @property
    def versions(self) -> dict[str, Any]:
        host = self.host
        return {
            "iobench": self._data.get("iobench_version"),
            "schema": self._data.get("schema_version"),
            "python": host.get("python"),
            "kernel": host.get("kernel"),
        }

    @property
    def warnings(self) -> list[str]:
        return list(self._data.get("warnings") or [])

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)


class Run:
    """One run: its rows (``frame``), per-case ``summary`` and ``meta``; ``path`` when on disk.

    Built from a DataFrame (a loaded run) or from plain row dicts (a run just measured): the
    latter needs no pandas until ``frame`` or ``summary`` is asked for.
    """

    def __init__(
        self,
        rows_frame: pd.DataFrame | None,
        meta: Mapping[str, Any],
        path: Path | None = None,
        rows: list[dict[str, Any]] | None = None,
    ) -> None:
        self._given_frame = rows_frame
        self._rows = rows
        self.meta = Meta(meta)
        self.path = path

    @classmethod
    def _from_outcome(cls, outcome: RunOutcome) -> Run:
        return cls(None, outcome.meta, outcome.path, rows=outcome.rows)

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "in memory"
        return f"<Run {self.meta.run_id} {self.status}: {len(self.meta.get('cases', []))} cases, {where}>"

    @property
    def run_id(self) -> str:
        return self.meta.run_id

    @property
    def status(self) -> str:
        return self.meta.status

    @cached_property
    def _raw(self) -> pd.DataFrame:
        if self._given_frame is not None:
            return self._given_frame
        import io

        import pandas as pd

        from iobench.results import rows_to_csv

        if not self._rows:
            return pd.DataFrame(columns=["run_id", "experiment", "case", "rep", "status"])
        return pd.read_csv(io.BytesIO(rows_to_csv(self._rows)))

    def records(self) -> list[dict[str, Any]]:
        """The repetition rows as plain dicts."""
        if self._rows is not None:
            return self._rows
        return self._raw.to_dict("records")

    @cached_property
    def frame(self) -> pd.DataFrame:
        """One row per repetition with declared dtypes (Int64 counts, boolean flags,
        category for choice parameters)."""
        from iobench.dictionary import columns, typed_frame

        return typed_frame(self._raw, columns(_experiments_in(self._raw)))

    def case_summaries(self) -> list[dict[str, Any]]:
        """One record per case that ran (``iobench.metrics.summarize_records``), without pandas."""
        from iobench.metrics import DEFAULT_TICK_NS, summarize_records

        tick = self.meta.host.get("cpu_tick_ns") or DEFAULT_TICK_NS
        return summarize_records(self.records(), self.meta.get("cases", []), int(tick))

    @cached_property
    def summary(self) -> pd.DataFrame:
        """One row per case: medians, the median's 95% interval, reps, stop reason, status.
        Cases that did not run are rows too (status unsupported/failed, with the reason)."""
        import pandas as pd

        records = [{**r, "status": "ok"} for r in self.case_summaries()]
        records += self._not_run()
        return pd.DataFrame.from_records(records) if records else pd.DataFrame()

    def _not_run(self) -> list[dict[str, Any]]:
        return [
            {"run_id": self.run_id, "experiment": c.get("experiment"), "case": c.get("case"),
             "status": c.get("status"), "reason": c.get("reason", "")}
            for c in self.meta.get("cases", []) if c.get("status") != "ok"
        ]  # fmt: skip

    @property
    def failed_cases(self) -> list[dict[str, Any]]:
        return [c for c in self.meta.get("cases", []) if c.get("status") == "failed"]

    def summary_records(self, with_rows: bool = False) -> dict[str, Any]:
        """The run as plain JSON-able data: meta essentials, per-case summaries (and rows)."""
        cases = [
            {k: v for k, v in r.items() if k != "samples"} | {"status": "ok"} for r in self.case_summaries()
        ]
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "status": self.status,
            "path": str(self.path) if self.path else None,
            "cases": json_safe(cases + self._not_run()),
            "warnings": self.meta.warnings,
        }
        if with_rows:
            data["rows"] = json_safe(self.records())
        return data


def json_safe(value: Any) -> Any:
    """Plain JSON: NaN and infinities become null, numpy scalars plain numbers."""
    from iobench.metrics import is_flag, is_missing, is_number

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, str) or value is None:
        return value
    if is_flag(value):
        return bool(value)
    if is_number(value):
        number = float(value)
        if not math.isfinite(number):
            return None
        return (
            int(number)
            if isinstance(value, int) or (hasattr(value, "dtype") and "int" in str(value.dtype))
            else number
        )
    if is_missing(value):
        return None
    return str(value)


class Runs(list[Run]):
    """Several runs (a folder of runs); ``frame`` concatenates their rows."""

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd

        frames = [run.frame for run in self if len(run.frame)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @property
    def summary(self) -> pd.DataFrame:
        import pandas as pd

        frames = [run.summary for run in self if len(run.summary)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class Fleet(Runs):
    """A fleet run: one Run per host (``hosts``: name -> Run), in a fleet folder (``path``)
    whose fleet.json is ``meta``."""

    def __init__(self, path: Path, data: Mapping[str, Any], hosts: Mapping[str, Run]) -> None:
        super().__init__(hosts.values())
        self.path = path
        self.meta = Meta(data)
        self.hosts = dict(hosts)

    def __repr__(self) -> str:
        return f"<Fleet {self.path.name} {self.status}: hosts {', '.join(self.hosts)}>"

    @property
    def status(self) -> str:
        return self.meta.status

    @property
    def failed_cases(self) -> list[dict[str, Any]]:
        """Failed cases of every host, each with its ``host``."""
        return [{**case, "host": name} for name, run in self.hosts.items() for case in run.failed_cases]

    @property
    def not_run(self) -> list[dict[str, Any]]:
        """Cases a host did not run because it stopped (its worker was lost), with ``host``."""
        return [
            {**case, "host": name} for name, run in self.hosts.items() for case in run.meta.get("not_run", [])
        ]

    @classmethod
    def _read(cls, path: Path, lazy: bool) -> Fleet:
        """The fleet folder: host runs from their journals (``lazy``: no pandas until asked)."""
        from iobench.fleet.folder import host_runs, read_fleet
        from iobench.results import load_run, read_journal, read_meta

        hosts: dict[str, Run] = {}
        for name, run_path in host_runs(path).items():
            if lazy:
                meta = read_meta(run_path)
                journal = read_journal(run_path)
                records = journal.records if journal is not None else []
                meta["cases"] = [r["summary"] for r in records]
                rows = [{"run_id": meta.get("run_id"), **row} for r in records for row in r["rows"]]
                hosts[name] = Run(None, meta, run_path, rows=rows)
            else:
                loaded = load_run(run_path)
                hosts[name] = Run(loaded.frame, loaded.meta, loaded.path)
        return cls(Path(path), read_fleet(path), hosts)


def _experiments_in(frame: pd.DataFrame) -> list[type[Experiment]]:
    from iobench.errors import UnknownExperimentError
    from iobench.experiments import get_experiment

    found = []
    names = frame["experiment"].dropna().unique() if "experiment" in frame else []
    for name in names:
        try:
            found.append(get_experiment(str(name)))
        except UnknownExperimentError:
            continue  # a plugin not installed here: its columns stay untyped
    return found


# ------------------------------------------------------------------ discovery


def experiments() -> dict[str, ExperimentInfo]:
    """Every registered experiment by name, with parameters, defaults, units and help."""
    from iobench.experiments import describe_all

    return describe_all()


def protocol_params() -> tuple[Param, ...]:
    """The repetition protocol's settings (warmup, min_reps, ...), shared by every run."""
    return PROTOCOL_PARAMS


# ------------------------------------------------------------------ running


def _split_protocol(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    protocol = {k: v for k, v in values.items() if k in _PROTOCOL_NAMES and v is not None}
    rest = {k: v for k, v in values.items() if k not in _PROTOCOL_NAMES and v is not None}
    return protocol, rest


def _budget(max_time: Any) -> int | None:
    return None if max_time is None else TIME_BUDGET.parse(max_time, "max_time")


def _request(
    entries: Sequence[PlanEntry],
    config: dict[str, Any],
    dir: str | Path,
    out: str | Path | None,
    progress: Progress | None,
    cpu: int | None,
    max_time: Any,
    command: list[str] | None,
    peer: str | None = None,
    peer_token: str | None = None,
) -> RunRequest:
    from iobench.experiments import get_experiment

    return RunRequest(
        entries=list(entries),
        lookup=get_experiment,
        target_dir=Path(dir),
        out_dir=None if out is None else _out_path(out),
        config=config,
        command=command if command is not None else ["python", "iobench.api"],
        cpu=cpu,
        time_budget_ns=_budget(max_time),
        subscribers=[progress] if progress else [],
        peer=peer,
        peer_token=peer_token,
    )


def _out_path(out: str | Path) -> Path:
    text = str(out)
    if not text.strip():
        raise ParamError("--out: give a folder (an empty path would write into the current folder)")
    return Path(out)


def _drive(request: RunRequest) -> Iterator[Event]:
    """Events of the run; the last one is RunFinished whose ``run`` is a Run."""
    # closing(): when the caller stops early (a signal in its own code), the run is closed
    # at once, marked interrupted, its scratch removed, not whenever it is collected.
    with contextlib.closing(execute_events(request)) as events:
        for event in events:
            if isinstance(event, RunFinished):
                yield RunFinished(event.status, event.path, Run._from_outcome(event.run))
            else:
                yield event


def _finish(events: Iterator[Event]) -> Run:
    run = None
    for event in events:
        if isinstance(event, RunFinished):
            run = event.run
    assert run is not None
    return run


def experiment_entry(experiment: str, params: Mapping[str, Any], protocol: Mapping[str, Any]) -> PlanEntry:
    """One plan entry from an experiment name, parameter values (raw: "4KiB" or 4096, lists
    for sweeps) and protocol settings."""
    from iobench.experiments import get_experiment

    cls = get_experiment(experiment)
    values = resolve(cls.params, dict(params), "")
    return PlanEntry(cls, values, Protocol.from_values(dict(protocol)))


def _fleet_iter(
    entries: Sequence[PlanEntry],
    config: dict[str, Any],
    *,
    cluster: str,
    hosts: str | None,
    cluster_timeout: float | None,
    dir: str | Path,
    out: str | Path | None,
    progress: Progress | None,
    cpu: int | None,
    max_time: Any,
    command: list[str] | None,
    resume: Path | None = None,
) -> Iterator[Event]:
    """A fleet run's events; the last is RunFinished whose ``run`` is a Fleet."""
    from iobench.experiments import get_experiment
    from iobench.fleet.cluster import DEFAULT_TIMEOUT_S
    from iobench.fleet.run import FleetRequest, fleet_events

    if max_time is not None:
        raise ParamError("--max-time is not supported by fleet runs (--cluster) yet")
    if out is None:
        raise ParamError("a fleet run (--cluster) writes a fleet folder: give out= a folder")
    request = FleetRequest(
        cluster=cluster,
        entries=list(entries),
        lookup=get_experiment,
        config=config,
        hosts=hosts,
        target_dir=Path(dir),
        out_dir=_out_path(out),
        command=command if command is not None else ["python", "iobench.api"],
        cpu=cpu,
        timeout_s=DEFAULT_TIMEOUT_S if cluster_timeout is None else float(cluster_timeout),
        resume=resume,
    )
    with contextlib.closing(fleet_events(request)) as events:
        for event in events:
            if progress is not None:
                progress(event)
            if isinstance(event, RunFinished):
                yield RunFinished(event.status, event.path, Fleet._read(event.run.path, lazy=True))
            else:
                yield event


def run_iter(
    experiment: str,
    *,
    dir: str | Path = ".",
    out: str | Path | None = None,
    progress: Progress | None = None,
    cpu: int | None = None,
    max_time: Any = None,
    command: list[str] | None = None,
    peer: str | None = None,
    peer_token: str | None = None,
    cluster: str | None = None,
    hosts: str | None = None,
    cluster_timeout: float | None = None,
    **values: Any,
) -> Iterator[Event]:
    """``run``, as an iterator of events (RunStarted, CaseFinished..., RunFinished(run=Run));
    with ``cluster`` ("tcp://SCHEDULER:8786") a fleet run whose RunFinished carries a Fleet."""
    protocol, params = _split_protocol(values)
    entry = experiment_entry(experiment, params, protocol)
    config = {"file": None, "entries": [entry.describe()]}
    if cluster:
        _no_peer_on_fleet(peer)
        return _fleet_iter(
            [entry], config, cluster=cluster, hosts=hosts, cluster_timeout=cluster_timeout, dir=dir,
            out="results" if out is None else out, progress=progress, cpu=cpu, max_time=max_time, command=command,
        )  # fmt: skip
    return _drive(_request([entry], config, dir, out, progress, cpu, max_time, command, peer, peer_token))


def _no_peer_on_fleet(peer: str | None) -> None:
    """A fleet run measures every host on its own; pairing hosts as peers is not built yet."""
    if peer:
        raise ParamError("--peer with --cluster: pairing fleet hosts as socket peers is not supported yet")


def run(experiment: str, **kwargs: Any) -> Run:
    """Measure one experiment; parameters and protocol settings as keyword arguments.

    ``iobench.run("rw-buffer", mode="read", bs=["4KiB", 65536], file_size="8MiB",
    cache="warm", dir="/mnt/fast", out=None)``. ``out=None`` (the default) keeps the rows in
    memory; give a folder to write a run folder there (crash-safe, resumable).
    ``peer="HOST[:PORT]"`` runs the socket experiments' peer on an ``iobench serve`` there
    (``peer_token`` when it wants one); without it the peer is forked here.
    """
    return _finish(run_iter(experiment, **kwargs))


def sweep_iter(
    config: str | Path | None = None,
    *,
    only: Sequence[str] | None = None,
    dir: str | Path = ".",
    out: str | Path | None = "results",
    progress: Progress | None = None,
    cpu: int | None = None,
    max_time: Any = None,
    command: list[str] | None = None,
    peer: str | None = None,
    peer_token: str | None = None,
    cluster: str | None = None,
    hosts: str | None = None,
    cluster_timeout: float | None = None,
    **protocol: Any,
) -> Iterator[Event]:
    """``sweep``, as an iterator of events (with ``cluster``: a fleet run's)."""
    from iobench.config import find_config, load_config

    unknown = sorted(set(protocol) - _PROTOCOL_NAMES)
    if unknown:
        raise ParamError(
            f"unknown protocol setting {unknown[0]!r} (allowed: {', '.join(sorted(_PROTOCOL_NAMES))})"
        )
    plan = load_config(find_config(None if config is None else str(config)), protocol, only=only)
    peer = plan.peer if peer is None else peer  # the command line wins over the file
    description = {
        "file": str(plan.source),
        "description": plan.description,
        "entries": [entry.describe() for entry in plan.entries],
    }
    if cluster:
        _no_peer_on_fleet(peer)
        return _fleet_iter(
            plan.entries, description, cluster=cluster, hosts=hosts, cluster_timeout=cluster_timeout,
            dir=dir, out=out, progress=progress, cpu=cpu, max_time=max_time, command=command,
        )  # fmt: skip
    return _drive(
        _request(plan.entries, description, dir, out, progress, cpu, max_time, command, peer, peer_token)
    )


def sweep(config: str | Path | None = None, **kwargs: Any) -> Run:
    """Run every entry of a TOML config (a path or a name in bench_configs: "quick")."""
    return _finish(sweep_iter(config, **kwargs))


def resume_iter(
    path: str | Path,
    *,
    dir: str | Path = ".",
    progress: Progress | None = None,
    cpu: int | None = None,
    max_time: Any = None,
    command: list[str] | None = None,
    peer: str | None = None,
    peer_token: str | None = None,
    cluster: str | None = None,
    cluster_timeout: float | None = None,
) -> Iterator[Event]:
    """``resume``, as an iterator of events. A fleet folder resumes on its cluster (``cluster``,
    default: the address it recorded): each host runs only the cases it is missing."""
    from iobench.experiments import get_experiment
    from iobench.fleet.folder import is_fleet, read_fleet
    from iobench.results import RunStore

    if is_fleet(Path(path)):
        data = read_fleet(Path(path))
        entries = [PlanEntry.from_description(e, get_experiment) for e in data["config"]["entries"]]
        return _fleet_iter(
            entries, data["config"], cluster=cluster or str(data.get("cluster")), hosts=None,
            cluster_timeout=cluster_timeout, dir=dir, out=Path(path).parent, progress=progress, cpu=cpu,
            max_time=max_time, command=command, resume=Path(path),
        )  # fmt: skip
    if cluster:
        raise ParamError(f"{path} is not a fleet run: resume it without --cluster")

    store = RunStore.reopen(Path(path), command or ["python", "iobench.resume"])
    try:
        entries = [PlanEntry.from_description(e, get_experiment) for e in store.meta["config"]["entries"]]
        if peer is None:  # the peer the run started with (its token is never recorded)
            peer = (store.meta.get("peer") or {}).get("address")
        request = _request(
            entries, store.meta["config"], dir, None, progress, cpu, max_time, command, peer, peer_token
        )
        request.resume = store
        request.out_dir = store.path.parent
        _remove_leftover_scratch(store.meta.get("scratch"))
    except BaseException:
        store.close()
        raise
    return _drive(request)


def resume(path: str | Path, **kwargs: Any) -> Run:
    """Continue an interrupted, stopped or crashed run folder: finished cases are kept."""
    return _finish(resume_iter(path, **kwargs))


def _remove_leftover_scratch(scratch: Any) -> None:
    """A crashed run's scratch folder, if nobody holds it any more."""
    from iobench import scratch as scratch_folders

    if isinstance(scratch, str) and Path(scratch).name.startswith(scratch_folders.PREFIX):
        path = Path(scratch)
        if path.is_dir():
            scratch_folders.remove(scratch_folders.Leftover(path, 0, None))


def load(path: str | Path) -> Run | Runs:
    """A run folder (-> Run), a fleet folder (-> Fleet: one Run per host) or a folder of runs
    (-> Runs)."""
    from iobench.fleet.folder import is_fleet
    from iobench.results import META, load_run, load_runs

    path = Path(path)
    if is_fleet(path):
        return Fleet._read(path, lazy=False)
    if (path / META).is_file():
        loaded = load_run(path)
        return Run(loaded.frame, loaded.meta, loaded.path)
    try:
        return Runs(Run(r.frame, r.meta, r.path) for r in load_runs(path))
    except ResultsError:
        raise


def current_command() -> list[str]:
    """How this process was started, for meta.json."""
    return ["iobench", *sys.argv[1:]]
