"""Metrics: what each column means, how a case's repetitions become one summary row, and
how a value is shown to a person. One home for all three.

The registry maps a column name to its title, unit, meaning and direction (higher is
better, lower is better, or neither). Common columns are declared here; an experiment
declares its own in ``Experiment.metrics``. Tables, figures, compare, explanations and the
data dictionary (``iobench columns``) all read it.

``summarize`` turns the tidy repetition rows into one row per case. Derived rates have one
definition here: throughput = bytes / median elapsed time, with the interval that the median's
interval gives. Each summary row also keeps its repetitions' values (``samples``), so a
sentence that says "A is faster than B" can test it (``iobench.stats.difference``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from iobench import stats
from iobench.units import format_duration, format_rate, format_size

if TYPE_CHECKING:
    import pandas as pd

Unit = Literal["duration", "size", "rate", "count", "ratio", "percent", "fraction", "flag", "text"]
Direction = Literal["higher", "lower", "neither"]


@dataclass(frozen=True)
class Metric:
    """One column of the results: what it is, in which unit, and which way is better."""

    name: str
    title: str
    unit: Unit
    meaning: str
    #: "lower" for costs (time, syscalls), "higher" for rates, "neither" for facts.
    better: Direction = "neither"
    #: "identity" names a row, "param" a case parameter, "measured" comes from the run,
    #: "check" is a verdict the experiment computed, "derived" is computed, never stored.
    kind: Literal["identity", "param", "measured", "check", "derived"] = "measured"

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"


def _m(
    name: str, title: str, unit: Unit, meaning: str, better: Direction = "neither", kind: Any = "measured"
) -> Metric:
    return Metric(name, title, unit, meaning, better, kind)


#: Columns every run has, in the order results.csv writes them.
COMMON_METRICS: tuple[Metric, ...] = (
    _m("run_id", "Run", "text", "The run this row belongs to (folder name under results/).", kind="identity"),
    _m("experiment", "Experiment", "text", "The experiment's name.", kind="identity"),
    _m(
        "case",
        "Case",
        "text",
        "The case id: every parameter in base units (name=value,...).",
        kind="identity",
    ),
    _m(
        "rep",
        "Repetition",
        "count",
        "1-based repetition number within the case (0: the case did not run).",
        kind="identity",
    ),
    _m("status", "Status", "text", "ok, unsupported (this host cannot run it) or failed.", kind="identity"),
    _m(
        "status_reason",
        "Reason",
        "text",
        "Why a case is unsupported or failed (errno and message).",
        kind="identity",
    ),
    _m(
        "engine",
        "Engine",
        "text",
        "Which inner loops ran: native (the C extension) or python.",
        kind="identity",
    ),
    _m(
        "target_fs",
        "Target filesystem",
        "text",
        "Filesystem type of --dir, from /proc/self/mountinfo.",
        kind="identity",
    ),
    _m(
        "peer",
        "Peer",
        "text",
        "Socket experiments: where the peer ran: fork (a child on this host), HOST:PORT of "
        "an 'iobench serve' (--peer), or netns (the virtual host of --peer netns); empty for a "
        "case without a peer.",
        kind="identity",
    ),
    _m(
        "link_emulator",
        "Link emulator",
        "text",
        "--peer netns: what emulated the link: netem (the kernel's qdisc on a veth pair) or "
        "tun-relay (iobench's packet-level delay line between two TUN devices).",
        kind="identity",
    ),
    _m(
        "link_rtt_ns",
        "Link RTT set",
        "duration",
        "--peer netns: the round-trip time the emulated link adds (--rtt).",
    ),
    _m(
        "link_rate_bps",
        "Link rate set",
        "count",
        "--peer netns: the emulated link's rate in bits per second (--rate; 0: no limit).",
    ),
    _m(
        "link_loss",
        "Link loss set",
        "percent",
        "--peer netns: packets dropped at random per direction (--loss).",
    ),
    _m(
        "link_rtt_measured_ns",
        "Link RTT measured",
        "duration",
        "--peer netns: median round trip of 20 one-byte TCP_NODELAY ping-pongs over the link, "
        "measured before its first case (what the link really was).",
        "lower",
    ),
    _m(
        "link_rtt_min_ns",
        "Link RTT min",
        "duration",
        "--peer netns: the shortest of those ping-pong round trips.",
        "lower",
    ),
    _m(
        "link_bulk_bytes_per_s",
        "Link bulk rate",
        "rate",
        "--peer netns: one second of autotuned bulk TCP over the link, measured before its first case.",
        "higher",
    ),
    _m(
        "host",
        "Host",
        "text",
        "Fleet runs: the host that measured the row (its Dask worker's name); empty in a local run.",
        kind="identity",
    ),
    _m(
        "worker",
        "Worker",
        "text",
        "Fleet runs: the address of the Dask worker that ran the case (tcp://IP:PORT); empty in a local run.",
        kind="identity",
    ),
    _m(
        "t_start_ns",
        "Start",
        "duration",
        "Monotonic clock at the start of the repetition, relative to meta.json's clock_origin.",
        kind="identity",
    ),
    _m(
        "elapsed_ns",
        "Elapsed",
        "duration",
        "Wall-clock time of the timed section (perf_counter_ns).",
        "lower",
    ),
    _m(
        "cpu_ns",
        "Total CPU",
        "duration",
        "CPU time of the timed section from the thread (or process) CPU clock: exact, plus at most "
        "one read of that clock (~1 us on a VM), which is kept out of Elapsed; one thread's is "
        "capped at Elapsed.",
        "lower",
    ),
    _m(
        "user_ns",
        "User CPU",
        "duration",
        "User CPU from getrusage: the kernel splits user/system by tick sampling, so one repetition's split is coarse.",
        "lower",
    ),
    _m(
        "sys_ns",
        "System CPU",
        "duration",
        "System (kernel) CPU from getrusage; tick-sampled like user_ns.",
        "lower",
    ),
    _m("bytes", "Bytes", "size", "Bytes the timed loop moved (its own count).", "neither"),
    _m(
        "ops",
        "Operations",
        "count",
        "Calls the timed loop made (its own count; compare with the kernel's syscalls_*).",
        "neither",
    ),
    _m(
        "syscalls_read",
        "read()s",
        "count",
        "Read-type syscalls the kernel counted for the measuring thread (syscr in /proc/thread-self/io).",
        "lower",
    ),
    _m("syscalls_write", "write()s", "count", "Write-type syscalls the kernel counted (syscw).", "lower"),
    _m(
        "disk_read_bytes",
        "Disk read",
        "size",
        "Bytes that reached the block layer for reading (read_bytes): 0 on a warm read.",
        "neither",
    ),
    _m(
        "disk_write_bytes",
        "Disk written",
        "size",
        "Bytes sent to the block layer for writing (write_bytes).",
        "neither",
    ),
    _m("ctx_vol", "Voluntary switches", "count", "Voluntary context switches (the thread blocked).", "lower"),
    _m(
        "ctx_invol",
        "Involuntary switches",
        "count",
        "Involuntary context switches (the scheduler preempted the thread).",
        "lower",
    ),
    _m("minflt", "Minor faults", "count", "Page faults served without IO.", "lower"),
    _m("majflt", "Major faults", "count", "Page faults that waited for IO.", "lower"),
)

#: Columns computed by ``summarize``, never stored in results.csv.
DERIVED_METRICS: tuple[Metric, ...] = (
    _m("bytes_per_s", "Throughput", "rate", "bytes / median elapsed time.", "higher", "derived"),
    _m("reps", "Reps", "count", "Repetitions recorded for the case.", kind="derived"),
    _m(
        "elapsed_low_ns",
        "Elapsed (low)",
        "duration",
        "Lower end of the median's interval (order statistics).",
        kind="derived",
    ),
    _m(
        "elapsed_high_ns", "Elapsed (high)", "duration", "Upper end of the median's interval.", kind="derived"
    ),
    _m(
        "elapsed_confidence",
        "Interval coverage",
        "fraction",
        "Coverage of elapsed_low_ns..elapsed_high_ns: 0.95, or less with fewer than 6 repetitions.",
        kind="derived",
    ),
    _m(
        "cpu_split_ticks",
        "CPU ticks",
        "count",
        "Scheduler ticks behind the case's user/system split (all repetitions together).",
        kind="derived",
    ),
)

# Columns several experiments fill; an experiment lists the ones it fills in ``metrics``.
INTEGRITY_OK = _m(
    "integrity_ok",
    "Integrity",
    "flag",
    "The data read back or received matched what was written or sent (checked after the timed loop).",
    kind="check",
)
#: The peer process's own rusage for one repetition (wait4 of the forked child, or the report
#: of an 'iobench serve' role child): its whole life, set-up included.
PEER_USER_NS = _m(
    "peer_user_ns",
    "Peer user CPU",
    "duration",
    "User CPU of the peer process over its whole life (wait4 rusage; set-up included).",
    "lower",
)
PEER_SYS_NS = _m(
    "peer_sys_ns",
    "Peer system CPU",
    "duration",
    "System CPU of the peer process over its whole life (wait4 rusage; set-up included).",
    "lower",
)
RESIDENT_BEFORE = _m(
    "resident_before",
    "Resident before",
    "fraction",
    "Fraction (0..1) of the file in the page cache just before timing, from cachestat(2) "
    "(mincore(2) on kernels before 6.5).",
)
CACHE_VERIFIED = _m(
    "cache_verified",
    "Cache verified",
    "flag",
    "The requested cache state (warm/cold) was checked and achieved before timing.",
    kind="check",
)
WORKING_SET = _m(
    "working_set_bytes",
    "Working set",
    "size",
    "Bytes one repetition touches: the file pages it reads or writes (both files for a copy) plus "
    "its user buffer. Compare with the host's llc_bytes (meta.json).",
)
FITS_LLC = _m(
    "fits_llc",
    "Fits LLC",
    "flag",
    "The working set is no larger than the last-level cache of the CPU the run used (host "
    "llc_bytes, from sysfs): a warm pass over it can be served from that cache, so it measures the "
    "cache, not DRAM. Near the cache's size the two regimes blend. Empty when the size is unknown.",
)
LAT_P50 = _m(
    "lat_p50_ns", "p50", "duration", "Median latency of one operation within the repetition.", "lower"
)
LAT_P99 = _m(
    "lat_p99_ns",
    "p99",
    "duration",
    "99th-percentile latency of one operation within the repetition.",
    "lower",
)
LAT_MAX = _m(
    "lat_max_ns", "max", "duration", "Largest latency of one operation within the repetition.", "lower"
)
DIRECT_VERIFIED = _m(
    "direct_verified",
    "Direct verified",
    "flag",
    "O_DIRECT was honoured: a probe read bypassed the page cache (its residency counted after).",
    kind="check",
)
DIRECT_NOTE = _m(
    "direct_note",
    "Direct note",
    "text",
    "Why O_DIRECT could not be verified (e.g. tmpfs serves it from RAM).",
)
SHARED_METRICS = (
    INTEGRITY_OK,
    RESIDENT_BEFORE,
    CACHE_VERIFIED,
    WORKING_SET,
    FITS_LLC,
    LAT_P50,
    LAT_P99,
    LAT_MAX,
    DIRECT_VERIFIED,
    DIRECT_NOTE,
)

_COMMON_BY_NAME = {m.name: m for m in (*COMMON_METRICS, *DERIVED_METRICS, *SHARED_METRICS)}

#: Row columns that identify a case rather than measure it.
IDENTITY_COLUMNS = frozenset(m.name for m in COMMON_METRICS if m.kind == "identity")
#: Identity columns a case's summary keeps (each case has one value; "mixed" otherwise).
_SUMMARY_IDENTITY = ("engine", "peer", "link_emulator")

#: Kernel tick assumed for the user/system split when the host's is unknown (HZ=100).
DEFAULT_TICK_NS = 10_000_000
#: A case's user/system split is shown only when its repetitions span this many ticks.
MIN_SPLIT_TICKS = 50


def metric(name: str, experiment: Any = None) -> Metric | None:
    """The declaration of column ``name``: the experiment's own first, then the common ones."""
    if experiment is not None:
        for declared in getattr(experiment, "metrics", ()):
            if declared.name == name:
                return declared
    return _COMMON_BY_NAME.get(name)


def higher_is_better(name: str, experiment: Any = None) -> bool:
    """Whether a larger value of this column is the better outcome."""
    declared = metric(name, experiment)
    return bool(declared and declared.higher_is_better)


# ------------------------------------------------------------------ formatting


def format_value(value: Any, unit: str) -> str:
    """Human form of one value in the column's unit; "-" for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "text" or isinstance(value, str | bool):
        return str(value)
    if unit == "duration":
        return format_duration(value)
    if unit == "size":
        return format_size(value)
    if unit == "rate":
        return format_rate(value)
    if unit in ("percent", "fraction"):
        return f"{value:.0%}"
    if unit == "ratio":
        return f"{value:.3g}"
    if unit == "flag":
        return "yes" if value else "no"
    return f"{round(value):,}"


def param_named(experiment: Any, name: str) -> Any:
    """The experiment's Param called ``name``, or None."""
    return next((p for p in experiment.params if p.name == name), None)


def format_param(experiment: Any, name: str, value: Any) -> str:
    """A parameter value as the experiment's declaration spells it (4KiB, O_SYNC).

    ``experiment`` is the class. pandas turns whole numbers into floats; they are turned back.
    """
    param = param_named(experiment, name)
    if param is None:
        return str(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return param.format(value)


def case_params(case: str) -> list[tuple[str, str]]:
    """(name, value) pairs of a case id ``mode=copy,file_size=1048576,bs=4096``."""
    pairs = []
    for part in str(case).split(","):
        name, sep, value = part.partition("=")
        if sep:
            pairs.append((name, value))
    return pairs


# ------------------------------------------------------------------ summaries


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return True  # pd.NA: its comparisons are themselves NA


def is_flag(value: Any) -> bool:
    """A Python or numpy boolean."""
    kind = type(value)
    return isinstance(value, bool) or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"))


def is_number(value: Any) -> bool:
    """An int or float (Python or numpy), not a boolean."""
    return isinstance(value, numbers.Number) and not is_flag(value) and not isinstance(value, complex)


def _combine(values: list[Any]) -> Any:
    """Median of numbers; all() of flags; the value itself when all agree, else 'mixed'."""
    present = [v for v in values if not is_missing(v)]
    if not present:
        return math.nan
    if all(is_flag(v) for v in present):
        return all(bool(v) for v in present)
    if all(is_number(v) for v in present):
        return stats.median([float(v) for v in present])
    unique = list(dict.fromkeys(str(v) for v in present))
    return unique[0] if len(unique) == 1 else "mixed"


def _failed_check(row: Mapping[str, Any]) -> bool:
    value = row.get("integrity_ok")
    return (is_flag(value) and not bool(value)) or (isinstance(value, str) and value.strip() == "False")


def _cpu_split(group: list[Mapping[str, Any]], median_cpu: float, tick_ns: int) -> dict[str, float]:
    """User and system CPU of a typical repetition, from the case's accumulated ticks.

    getrusage splits CPU time by sampling which mode each tick found the thread in, so the
    split of one short repetition is noise (its parts can exceed the exact total). Summed
    over every repetition the ticks accumulate; the share they give is applied to the exact
    median CPU time, so User + System = Total CPU always. Below MIN_SPLIT_TICKS the split
    is not shown (NaN).
    """

    def total(name: str) -> float:
        return sum(float(r[name]) for r in group if is_number(r.get(name)) and not is_missing(r.get(name)))

    user, system = total("user_ns"), total("sys_ns")
    ticks = (user + system) / tick_ns if tick_ns else 0.0
    out = {"cpu_split_ticks": float(ticks)}
    if (
        ticks < MIN_SPLIT_TICKS
        or not (user + system)
        or not is_number(median_cpu)
        or not math.isfinite(median_cpu)
    ):
        out.update(user_ns=math.nan, sys_ns=math.nan)
    else:
        share = user / (user + system)
        out.update(user_ns=share * median_cpu, sys_ns=(1 - share) * median_cpu)
    return out


#: A column whose value is one repetition's time series (JSON text): a summary keeps the series
#: of the repetition with the median elapsed time, since series cannot be averaged.
SERIES_SUFFIX = "_series"


def _median_repetition(group: list[Mapping[str, Any]], column: str) -> Any:
    """``column`` of the repetition whose elapsed time is the (lower) median among those that
    have it; NaN when none has."""
    having = [row for row in group if not is_missing(row.get(column))]
    if not having:
        return math.nan
    timed = sorted(having, key=lambda row: float(row.get("elapsed_ns") or 0))
    return timed[(len(timed) - 1) // 2][column]


def summarize_records(
    rows: Iterable[Mapping[str, Any]],
    cases: Iterable[Mapping[str, Any]] | None = None,
    tick_ns: int = DEFAULT_TICK_NS,
) -> list[dict[str, Any]]:
    """One summary record per (run, experiment, case) from the rows that ran; plain Python,
    so a run can print its tables without loading pandas (``summarize`` is the DataFrame form).

    Numbers are medians over the repetitions; flags are all(); text that agrees is kept; a
    ``*_series`` column keeps the series of the repetition of median elapsed time.
    Repetitions whose own data check failed (``integrity_ok`` False) are left out of the
    medians while good ones exist (``reps_failed_check`` counts them). ``cases`` are meta.json's
    case records: their stop reason and CI half-width join the rows. ``samples`` holds each
    numeric column's per-repetition values (for tests of differences).
    """
    ok = [row for row in rows if row.get("status") == "ok"]
    if not ok:
        return []
    columns = list(dict.fromkeys(name for row in ok for name in row))
    keys = [c for c in ("run_id", "experiment", "case") if c in columns]
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in ok:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    by_case = {(str(c.get("experiment")), str(c.get("case"))): c for c in cases or ()}
    records = []
    for key, group in groups.items():
        record: dict[str, Any] = dict(zip(keys, key, strict=True))
        params = [name for name, _ in case_params(record["case"])]
        for name in params:
            if name in columns:
                record[name] = group[0].get(name, math.nan)
        failed = [_failed_check(row) for row in group]
        record["reps"] = len(group)
        record["reps_failed_check"] = sum(failed)
        counted = (
            [r for r, bad in zip(group, failed, strict=True) if not bad]
            if 0 < sum(failed) < len(group)
            else group
        )
        samples: dict[str, tuple[float, ...]] = {}
        for column in columns:
            if (column in IDENTITY_COLUMNS and column not in _SUMMARY_IDENTITY) or column in params:
                continue
            if column.endswith(SERIES_SUFFIX):
                record[column] = _median_repetition(counted, column)
                continue
            source = group if column in (*_SUMMARY_IDENTITY, "integrity_ok") else counted
            values = [row.get(column) for row in source]
            record[column] = _combine(values)
            present = [v for v in values if not is_missing(v)]
            if column not in _SUMMARY_IDENTITY and present and all(is_number(v) for v in present):
                samples[column] = tuple(math.nan if is_missing(v) else float(v) for v in values)
        _add_elapsed(record, samples)
        record.update(_cpu_split(counted, record.get("cpu_ns", math.nan), tick_ns))
        record["samples"] = samples
        meta_case = by_case.get((str(record["experiment"]), str(record["case"])))
        if meta_case:
            record["stop_reason"] = meta_case.get("stop_reason", "")
            record["ci_halfwidth_pct"] = meta_case.get("ci_halfwidth_pct")
        records.append(record)
    return records


def summarize(
    frame: pd.DataFrame,
    cases: Iterable[Mapping[str, Any]] | None = None,
    tick_ns: int = DEFAULT_TICK_NS,
) -> pd.DataFrame:
    """``summarize_records`` as a DataFrame, from a DataFrame of repetition rows."""
    import pandas as pd

    if "status" not in frame:
        return pd.DataFrame()
    records = summarize_records(frame.to_dict("records"), cases, tick_ns)
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def _add_elapsed(record: dict[str, Any], samples: dict[str, tuple[float, ...]]) -> None:
    """The median's interval and the throughput derived from it (bytes / median elapsed)."""
    elapsed = samples.get("elapsed_ns", ())
    interval = stats.median_interval(elapsed)
    record["elapsed_low_ns"], record["elapsed_high_ns"] = interval.low, interval.high
    record["elapsed_confidence"] = interval.confidence
    moved = record.get("bytes", math.nan)
    median_elapsed = record.get("elapsed_ns", math.nan)
    if (
        elapsed
        and is_number(moved)
        and moved == moved
        and moved > 0
        and is_number(median_elapsed)
        and median_elapsed > 0
    ):
        record["bytes_per_s"] = moved / (median_elapsed / 1e9)
        record["bytes_per_s_low"] = moved / (interval.high / 1e9) if interval.high > 0 else math.nan
        record["bytes_per_s_high"] = moved / (interval.low / 1e9) if interval.low > 0 else math.nan
        byte_samples = samples.get("bytes", ())
        if len(byte_samples) == len(elapsed):
            samples["bytes_per_s"] = tuple(
                b / (e / 1e9) if e > 0 else math.nan for b, e in zip(byte_samples, elapsed, strict=True)
            )
    else:
        record["bytes_per_s"] = record["bytes_per_s_low"] = record["bytes_per_s_high"] = math.nan


def rep_values(
    frame: pd.DataFrame, name: str, per: str | None = None, scale: float = 1.0
) -> pd.Series | None:
    """Per-repetition values of a column (``bytes_per_s`` derived), optionally per another
    column and scaled; None when the columns are absent or empty."""
    import pandas as pd

    if name == "bytes_per_s":
        if "bytes" not in frame or "elapsed_ns" not in frame:
            return None
        values = pd.to_numeric(frame["bytes"], errors="coerce") / (
            pd.to_numeric(frame["elapsed_ns"], errors="coerce") / 1e9
        )
    elif name not in frame:
        return None
    else:
        values = pd.to_numeric(frame[name], errors="coerce")
    if per is not None:
        if per not in frame:
            return None
        values = values / pd.to_numeric(frame[per], errors="coerce").replace(0, math.nan)
    values = (values * scale).replace([math.inf, -math.inf], math.nan)
    return None if values.dropna().empty else values
