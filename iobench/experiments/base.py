"""What an experiment is: a typed class that owns only its loop, never its timing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from iobench.engine.counters import Scope
from iobench.loops import pyloops
from iobench.metrics import Metric, Unit
from iobench.params import Param, choice_param
from iobench.peer.client import LOCAL_PEER, LocalPeer, RemotePeer

if TYPE_CHECKING:  # pandas is only needed by reports; experiments must import fast
    import pandas as pd


@dataclass(frozen=True)
class Column:
    """One column of an experiment's summary table: a per-case median, optionally per unit.

    ``per`` divides by another summary metric (``ns per call`` = elapsed_ns per ops), then
    ``scale`` multiplies (faults per MiB: per="bytes", scale=2**20). ``relative_to`` =
    (param, value) divides by the same column of the table row where param == value
    (sync-write's slowdown against ``mode=buffered``). ``where`` = ((param, values), ...)
    limits the column to the cases that match (others show "-": it does not apply there).
    """

    title: str
    metric: str
    unit: Unit = "count"
    per: str | None = None
    scale: float = 1.0
    relative_to: tuple[str, str] | None = None
    where: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def applies(self, record: Any) -> bool:
        """Whether this column has a value for the case (its ``where`` matches)."""
        return all(str(record.get(name)) in {str(v) for v in values} for name, values in self.where)


FigureKind = Literal["throughput", "stacked_cpu", "percentiles", "metric", "series"]


@dataclass(frozen=True)
class FigureSpec:
    """One report figure, drawn by ``iobench.report.figures`` from the per-case summary.

    Kinds: ``throughput`` (bytes/s against ``x``, log2 axis), ``stacked_cpu`` (user and
    system CPU stacked, per ``per``/``scale`` when given), ``percentiles`` (one line per
    metric in ``metrics``, e.g. lat_p50_ns/lat_p99_ns), ``metric`` (``metric`` against ``x``,
    divided by ``per`` and multiplied by ``scale`` like a Column), ``series`` (one repetition's
    time series per case: ``metric`` names a ``*_series`` JSON column holding ``t_ns`` and
    lists of the same length, ``metrics`` the lists drawn against time). ``x`` defaults to the
    experiment's x_param; with no axis at all the figure has one bar per case. A figure whose
    metrics are absent from the run is skipped, so a default may name optional metrics.
    ``where`` keeps only the cases whose parameter is one of the given values, e.g.
    ``(("mode", ("echo-threads", "echo-asyncio")),)``: a figure about some modes only.
    """

    kind: FigureKind
    title: str = ""
    metric: str = ""
    metrics: tuple[str, ...] = ()
    unit: Unit = "count"
    per: str | None = None
    scale: float = 1.0
    x: str | None = None
    log_y: bool = False
    #: Words after the value on the y axis, e.g. "per MiB" (the unit itself is added).
    y_label: str = ""
    #: (parameter, allowed values) pairs: the figure draws only the cases that match all.
    where: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    #: A flag column that says the operation succeeded (page-lock's ``locked``): where it is
    #: False the case is drawn as a refusal mark with ``refusal_reason``'s value, never a value.
    succeeded: str = ""
    refusal_reason: str = ""
    #: Draw only when ``x`` takes several values among the cases (sock-buffer's RTT figure: a
    #: loopback run has one RTT, and a figure against it would say nothing).
    only_if_varies: bool = False


#: TLPI Table 13-1's columns plus the counters that prove what happened.
BOOK_COLUMNS = (
    Column("Elapsed", "elapsed_ns", "duration"),
    Column("Total CPU", "cpu_ns", "duration"),
    Column("User CPU", "user_ns", "duration"),
    Column("System CPU", "sys_ns", "duration"),
    Column("read()s", "syscalls_read"),
    Column("write()s", "syscalls_write"),
    Column("Throughput", "bytes_per_s", "rate"),
    Column("Disk read", "disk_read_bytes", "size"),
    Column("Resident before", "resident_before", "percent"),
)


def cache_param(default: tuple[str, ...], help_text: str = "") -> Param:
    """The ``cache`` parameter several experiments share: the file's page-cache state."""
    return choice_param(
        "cache",
        ("warm", "cold"),
        help_text
        or "Page-cache state of the file before timing: cold = fsync + fadvise(DONTNEED), "
        "verified by counting its cached pages (resident_before, cache_verified).",
        default=default,
    )


class Experiment:
    """Base class for one experiment; one instance measures one case.

    The engine calls, in order: ``prepare`` (untimed, once), then per repetition
    ``before_rep`` (untimed; returns metrics recorded in the row, e.g. the resident fraction),
    ``run_once`` (timed, and holding only what the case names: see its docstring; returns at
    least ``bytes`` and ``ops``), ``after_rep`` (untimed;
    returns checks such as ``integrity_ok``), and finally ``teardown`` (always).
    Raise ``iobench.errors.UnsupportedCase`` from ``prepare`` when this host cannot run it.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    seed_idea: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    #: "thread": counters of the measuring thread only; "process": whole process + children.
    counter_scope: ClassVar[Scope] = "thread"
    #: The parameter a report puts on its x axis (None: no natural axis).
    x_param: ClassVar[str | None] = None
    #: The parameter a summary table puts in its rows (default: x_param, if it varies).
    table_axis: ClassVar[str | None] = None
    #: The parameters that give one line per value in a report figure.
    series_params: ClassVar[tuple[str, ...]] = ()
    #: Work also happens in forked children or other threads (a receiver, a ping-pong partner):
    #: pinning the run to one CPU (--cpu) puts them on that CPU too, and the run says so.
    has_peers: ClassVar[bool] = False
    #: Its peer can run on another host (``iobench serve``, ``--peer``): the engine then gives
    #: the instance a RemotePeer as ``peer`` and its rows a ``peer`` column (``fork`` locally).
    remote_peer: ClassVar[bool] = False
    #: Where the peer runs: LOCAL_PEER (fork it here, as always) or a RemotePeer (``--peer``).
    peer: LocalPeer | RemotePeer = LOCAL_PEER
    #: Draw throughput (bytes/s) against x_param in reports (only where bytes/s means something).
    throughput_figure: ClassVar[bool] = False
    #: Columns of the summary table printed after a run and in reports.
    columns: ClassVar[tuple[Column, ...]] = BOOK_COLUMNS
    #: Report figures that answer this experiment's question (empty: ``default_figures``).
    figures: ClassVar[tuple[FigureSpec, ...]] = ()
    #: The experiment's own result columns (beyond the common ones): title, unit, meaning,
    #: direction. The data dictionary (``iobench columns``) and reports read them.
    metrics: ClassVar[tuple[Metric, ...]] = ()

    #: The inner loops to time with: the engine sets the native module or pyloops (same API).
    loops: ModuleType = pyloops

    def __init__(self, case: dict[str, Any], scratch: Path) -> None:
        self.case = case
        self.scratch = scratch

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        """Whether this case's timed loop goes through ``self.loops`` (so it has a native twin).

        False (the default) means the case runs in Python whatever engine was asked for, and
        its rows say ``engine=python``.
        """
        return False

    @classmethod
    def report_figures(cls) -> tuple[FigureSpec, ...]:
        """The figures a report draws: ``figures`` if declared, else generic ones.

        Generic: throughput when ``throughput_figure`` is set, else the first numeric table
        column; plus latency percentiles when the run recorded lat_p50_ns/lat_p99_ns.
        """
        if cls.figures:
            return cls.figures
        specs: list[FigureSpec] = []
        if cls.throughput_figure:
            specs.append(FigureSpec("throughput"))
        else:
            first = next((c for c in cls.columns if c.unit != "text" and c.relative_to is None), None)
            if first is not None:
                specs.append(
                    FigureSpec(
                        "metric",
                        title=first.title,
                        metric=first.metric,
                        unit=first.unit,
                        per=first.per,
                        scale=first.scale,
                    )
                )
        specs.append(
            FigureSpec(
                "percentiles",
                title="Latency percentiles",
                metrics=("lat_p50_ns", "lat_p99_ns"),
                unit="duration",
                log_y=True,
            )
        )
        return tuple(specs)

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Sentences for "what this shows", computed from one run's summary rows of this
        experiment (``iobench.metrics.summarize``). Return [] when the cases needed are
        absent. The default compares the cases on the first numeric table column.
        """
        from iobench.explain import generic_sentences

        return generic_sentences(cls, summary)

    @classmethod
    def uses_peer(cls, case: dict[str, Any]) -> bool:
        """Whether this case has a peer at all (zero-copy's file-to-file methods have none):
        only then does ``--peer`` move it, and its ``peer`` column is empty otherwise."""
        return cls.remote_peer

    @classmethod
    def check_case(cls, case: dict[str, Any]) -> None:
        """Reject parameter combinations that make no sense (raise ParamError)."""

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        """Parameters that do not change what this case measures (rw-buffer: cache in write mode).

        A sweep keeps only the first of several cases that differ only in these.
        """
        return frozenset()

    def space_needed(self) -> int:
        """Bytes this case writes under its scratch folder at its peak."""
        return 0

    def prepare(self) -> None:
        """Untimed set-up for the whole case: files, buffers (allocated and touched)."""

    def before_rep(self) -> dict[str, Any]:
        """Untimed set-up before each repetition; returns metrics for the row."""
        return {}

    def run_once(self) -> dict[str, Any]:
        """The timed window; returns ``bytes`` and ``ops`` and any experiment metrics.

        The rule for every experiment: the window holds the operations the case names and
        nothing else. Set-up happens before it, in ``prepare``/``before_rep``: files opened or
        created, buffers and mappings made and touched, connections accepted, pipes made,
        threads started and parked, processes forked, event loops and pools created. Tear-down
        happens after it, in ``after_rep``/``teardown``: unmapping, closing, joining threads,
        reaping children (exit, pickled results, wait4), verifying data. What the case names
        may include what it needs to start and end: a byte that releases threads or a forked
        peer already waiting, the peer's reply that says the data arrived (the socket
        experiments), a lock or barrier hand-off between the case's own threads. Work that
        happens in another process is timed there and reported in its own column; the
        window then holds the hand-off too, and the experiment's help says so. No experiment is
        about creating processes, threads or event loops, so no window creates any
        (tests/test_timed_windows.py checks every mode of every experiment).
        """
        raise NotImplementedError

    def after_rep(self) -> dict[str, Any]:
        """Untimed checks after each repetition (data integrity); returns metrics for the row."""
        return {}

    def teardown(self) -> None:
        """Release everything the case opened; called even when it failed."""
