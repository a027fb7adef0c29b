"""Book-shaped tables built from per-case summaries (``iobench.metrics.summarize``).

Every numeric cell is the median of the case's repetitions with the larger side of its 95%
interval as a percentage (``12.3 ms ±4%``); the full interval is the cell's ``detail`` (the
HTML report shows it on hover). The Reps column marks what a reader must know before trusting
a row: fewer than 6 repetitions (no interval reaches 95% coverage), a case that stopped before
its CI target, and a case whose own data check failed. ``table_legend`` says what the marks
mean, for the tables it is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iobench.experiments.base import Column
from iobench.metrics import MIN_SPLIT_TICKS, format_param, format_value, is_missing
from iobench.report.estimates import CPU_SPLIT, FULL_COVERAGE_REPS, Estimate, counted_reps, estimate, relative
from iobench.units import format_duration

if TYPE_CHECKING:  # tables are built from plain records: a run prints them without pandas
    pass

Records = list[Mapping[str, Any]]


class Table:
    """A book table: column titles and rows of Cells (what pandas' DataFrame offered the
    writers: ``columns``, ``itertuples``, a column by title)."""

    def __init__(self, columns: dict[str, list[Cell]]) -> None:
        self._columns = columns
        self.columns = list(columns)

    def __len__(self) -> int:
        return len(next(iter(self._columns.values()), []))

    def __getitem__(self, title: str) -> list[Cell]:
        return self._columns[title]

    def itertuples(self, index: bool = False) -> list[tuple[Cell, ...]]:
        return list(zip(*self._columns.values(), strict=True))


def as_records(summary: Any) -> Records:
    """Summary rows as dicts, from a DataFrame or a list already (``summarize_records``)."""
    if isinstance(summary, list):
        return summary
    if getattr(summary, "empty", True):
        return []
    return summary.to_dict("records")


#: Fewer than 6 repetitions: the interval is min..max, covering the median with < 95%.
FEW_REPS = "†"
#: The case stopped at its repetition or time limit before reaching the CI target.
STOPPED_EARLY = "‡"
#: The case's own data check (integrity_ok) failed in some repetitions.
FAILED_CHECK = "✗"
#: A user/system split that too few ticks accumulated to mean anything.
NOT_MEASURABLE = "–"
#: Stop reasons of the engine that mean "the CI target was not reached".
EARLY_STOPS = frozenset({"max_reps", "max_case_time"})


@dataclass(frozen=True)
class Cell:
    """One table cell: the short text every format shows, and the detail (the interval)."""

    text: str
    detail: str = ""

    def __str__(self) -> str:
        return self.text


def _pct(spread: float) -> str:
    if spread >= 1:
        return f"±{spread:.0f}%"
    if spread >= 0.1:
        return f"±{spread:.1f}%"
    return "±<0.1%"


def estimate_cell(value: Estimate, unit: str) -> Cell:
    """``12.3 ms ±4%`` with the interval as detail; the value alone when all reps agreed."""
    text = format_value(value.value, unit)
    if not value.has_interval:
        return Cell(text)
    spread = value.spread_pct
    low, high = format_value(value.low, unit), format_value(value.high, unit)
    if value.reps >= FULL_COVERAGE_REPS or not math.isfinite(value.confidence):
        detail = f"95% interval {low} – {high}"
    else:
        detail = (
            f"min – max of {value.reps} reps: {low} – {high} (covers the median with {value.confidence:.0%})"
        )
    if value.low == value.high:
        return Cell(text, f"every repetition gave {text}")
    if not math.isfinite(spread):  # a median of 0 has no relative spread
        return Cell(text, detail)
    return Cell(f"{text} {_pct(spread)}", detail)


def failed_checks(record: Mapping[str, Any]) -> int:
    """Repetitions of the case whose own data check failed."""
    counted = record.get("reps_failed_check")
    if isinstance(counted, int | float) and counted == counted and counted > 0:
        return int(counted)
    flag = record.get("integrity_ok")
    if flag is False or flag == "False":
        reps = record.get("reps")
        return int(reps) if isinstance(reps, int | float) and reps == reps else 1
    return 0


def stopped_early(record: Mapping[str, Any]) -> bool:
    """Whether the case stopped at a limit before its CI target (meta.json's stop reason)."""
    return str(record.get("stop_reason") or "") in EARLY_STOPS


def _reps(record: Mapping[str, Any]) -> int:
    reps = record.get("reps")
    return int(reps) if isinstance(reps, int | float) and reps == reps else 0


def case_marks(record: Mapping[str, Any]) -> str:
    """The marks of one case: † few reps (behind its medians), ‡ stopped early, ✗ failed check."""
    marks = FEW_REPS if counted_reps(record) < FULL_COVERAGE_REPS else ""
    marks += STOPPED_EARLY if stopped_early(record) else ""
    return marks + (FAILED_CHECK if failed_checks(record) else "")


def _reps_cell(record: Mapping[str, Any]) -> Cell:
    reps, marks, failed = _reps(record), case_marks(record), failed_checks(record)
    details = []
    if counted_reps(record) < FULL_COVERAGE_REPS:
        details.append(f"{FEW_REPS} fewer than {FULL_COVERAGE_REPS} repetitions behind the medians")
    if stopped_early(record):
        ci = record.get("ci_halfwidth_pct")
        ci_text = f" (stopping rule's CI ±{ci:.1f}%)" if isinstance(ci, int | float) and ci == ci else ""
        details.append(
            f"{STOPPED_EARLY} stopped at {record.get('stop_reason')} before its CI target{ci_text}"
        )
    if failed:
        details.append(f"{FAILED_CHECK} data check failed in {failed} of {reps}")
    return Cell(f"{reps} {marks}" if marks else str(reps), "; ".join(details))


def _cell(record: Mapping[str, Any], column: Column) -> Cell:
    if not column.applies(record):
        return Cell(format_value(math.nan, column.unit), "does not apply to this case")
    raw = record.get(column.metric, math.nan)
    if isinstance(raw, str | bool) or column.unit in ("text", "flag"):
        return Cell(format_value(raw, column.unit))
    value = estimate(record, column.metric, column.per, column.scale)
    if column.metric in CPU_SPLIT and not math.isfinite(value.value) and column.metric in record:
        ticks = record.get("cpu_split_ticks", math.nan)
        counted = f" ({ticks:.0f})" if isinstance(ticks, int | float) and ticks == ticks else ""
        return Cell(NOT_MEASURABLE, f"fewer than {MIN_SPLIT_TICKS} scheduler ticks accumulated{counted}")
    return estimate_cell(value, column.unit)


#: The column that tells a cache measurement from a DRAM one (rows' ``fits_llc``).
FITS_LLC_TITLE = "Fits LLC"


def _has_llc_fact(record: Mapping[str, Any]) -> bool:
    return not is_missing(record.get("fits_llc"))


def _llc_cell(record: Mapping[str, Any]) -> Cell:
    """yes/no: whether one repetition's working set fits the last-level cache."""
    fits, size = record.get("fits_llc"), record.get("working_set_bytes")
    if not _has_llc_fact(record):
        why = "not recorded for this case" if is_missing(size) else "the last-level cache size is unknown"
        return Cell(format_value(math.nan, "flag"), why)
    detail = f"working set {format_value(size, 'size')}" if not is_missing(size) else ""
    return Cell("yes" if fits is True or str(fits).lower() == "true" else "no", detail)


def _relative_cells(group: Records, column: Column) -> list[Cell]:
    assert column.relative_to is not None
    name, reference = column.relative_to
    bases = [record for record in group if str(record.get(name)) == reference]
    if not bases:
        return [Cell(format_value(math.nan, column.unit)) for _ in group]
    return [
        estimate_cell(relative(record, bases[0], column.metric, column.per), column.unit) for record in group
    ]


def book_table(summary: Any, experiment: Any) -> list[tuple[dict[str, Any], Table]]:
    """Tables in the experiment's (the class's) declared columns: one per combination of the
    parameters that are not its axis, one row per axis value (TLPI's shape for rw-buffer).
    ``summary`` is a DataFrame or a list of records. Cells are ``Cell``s; the axis cell carries
    the row's ✗ when its data check failed.
    """
    rows = [r for r in as_records(summary) if r.get("experiment") == experiment.name]
    if not rows:
        return []
    names = [p.name for p in experiment.params]
    distinct = {name: list(dict.fromkeys(_grouping_key(r.get(name)) for r in rows)) for name in names}
    varying = [name for name in names if len(distinct[name]) > 1]
    # The declared axis when it varies, else the first parameter that does: one table with
    # several rows reads better than several tables of one row.
    if experiment.table_axis in varying:
        axis = experiment.table_axis
    elif experiment.x_param in varying or not varying:
        axis = experiment.x_param or names[0]
    else:
        axis = varying[0]
    group_keys = [name for name in varying if name != axis]
    constant = {name: rows[0].get(name) for name in names if name not in varying and name != axis}
    if len({r.get("run_id") for r in rows}) > 1:
        group_keys = ["run_id", *group_keys]
    groups: dict[tuple[Any, ...], Records] = {}
    for record in rows:
        groups.setdefault(tuple(_grouping_key(record.get(k)) for k in group_keys), []).append(record)
    tables = []
    for group in groups.values():
        if axis in (experiment.x_param, experiment.table_axis):
            group = sorted(group, key=_declared_order(experiment, axis))
        axis_cells = [
            Cell(
                format_param(experiment, axis, record.get(axis))
                + (f" {FAILED_CHECK}" if failed_checks(record) else "")
            )
            for record in group
        ]
        columns: dict[str, list[Cell]] = {axis: axis_cells}
        for column in experiment.columns:
            if column.relative_to is not None:
                columns[column.title] = _relative_cells(group, column)
            else:
                columns[column.title] = [_cell(record, column) for record in group]
        if any(_has_llc_fact(record) for record in group):
            columns[FITS_LLC_TITLE] = [_llc_cell(record) for record in group]
        columns["Reps"] = [_reps_cell(record) for record in group]
        heading = {k: group[0].get(k) for k in group_keys}
        tables.append((constant | heading, Table(columns)))
    return tables


def _grouping_key(value: Any) -> Any:
    """A grouping key that treats 4096 and 4096.0 (CSV) alike and NaN as one value."""
    if isinstance(value, float):
        return "nan" if value != value else (int(value) if value.is_integer() else value)
    return value


def _declared_order(experiment: Any, axis: str) -> Any:
    """Sort key of a record: numbers as numbers, choices in the order the parameter declares them."""
    param = next(p for p in experiment.params if p.name == axis)
    if param.choices:
        order = {choice: index for index, choice in enumerate(param.choices)}
        return lambda record: (order.get(str(record.get(axis)), len(order)), str(record.get(axis)))

    def number(record: Mapping[str, Any]) -> tuple[int, float]:
        value = record.get(axis)
        try:
            return (0, float(value))
        except (TypeError, ValueError):
            return (1, 0.0)

    return number


def describe_group(experiment: Any, key: dict[str, Any]) -> str:
    """``mode=copy, file_size=100MiB, cache=cold`` for a table heading."""
    return ", ".join(f"{name}={format_param(experiment, name, value)}" for name, value in key.items())


def _coverage_words(reps: Iterable[int]) -> str:
    from iobench.stats import median_interval

    counts = sorted({n for n in reps if 0 < n < FULL_COVERAGE_REPS}, reverse=True)
    return ", ".join(f"{median_interval(range(n)).confidence:.0%} at {n}" for n in counts)


def table_legend(rows: Any, experiment: Any, ticks: Iterable[tuple[int, str]] = ()) -> list[str]:
    """What the tables of ``rows`` (one experiment's summary rows) show, one sentence a line:
    always how a cell reads, then only the marks and notes these rows need."""
    lines = [
        "Each cell: the median of the repetitions, ± the larger side of its 95% interval (order "
        "statistics) as a percentage of the median; no ± when every repetition gave the same value. "
        "Throughput = bytes / median elapsed, its interval from elapsed's."
    ]
    records = as_records(rows)
    if not records:
        return lines
    few = [counted_reps(r) for r in records if counted_reps(r) < FULL_COVERAGE_REPS]
    if few:
        lines.append(
            f"{FEW_REPS} fewer than {FULL_COVERAGE_REPS} repetitions ({len(few)} of {len(records)} cases): no "
            f"interval reaches 95%; ± is then min..max, which covers the median with {_coverage_words(few)} reps."
        )
    early = [r for r in records if stopped_early(r)]
    if early:
        widths = [r.get("ci_halfwidth_pct") for r in early]
        widths = [w for w in widths if isinstance(w, int | float) and w == w]
        worst = f"; the stopping rule's CI was up to ±{max(widths):.0f}%" if widths else ""
        lines.append(
            f"{STOPPED_EARLY} stopped at its repetition or time limit before reaching the CI target "
            f"({len(early)} of {len(records)} cases{worst})."
        )
    failed = [(r, failed_checks(r)) for r in records if failed_checks(r)]
    if failed:
        cases = "; ".join(f"{r['case']}: {n} of {_reps(r)}" for r, n in failed)
        lines.append(
            f"{FAILED_CHECK} the case's own data check (integrity_ok) failed in some repetitions; while "
            f"some passed, the failed ones are left out of the medians ({cases})."
        )
    if any(_has_llc_fact(r) for r in records):
        lines.append(
            f"{FITS_LLC_TITLE}: whether what one repetition touches (the file's cached pages and the "
            "buffer: working_set_bytes) fits the CPU's last-level cache (host llc_bytes). A warm pass "
            "over a set that fits can be served from that cache, so it measures the cache, not DRAM; "
            "near the cache's size the two blend."
        )
    if any(c.metric in CPU_SPLIT for c in experiment.columns):
        resolution = (
            "; ".join(f"tick {format_duration(tick)} ({source})" for tick, source in dict.fromkeys(ticks))
            or "tick not recorded"
        )
        lines.append(
            "User/System CPU: getrusage splits CPU time by sampling at each scheduler tick, so the split "
            "comes from the ticks of all a case's repetitions together, applied to its exact Total CPU "
            f"(User + System = Total); {NOT_MEASURABLE} where fewer than {MIN_SPLIT_TICKS} ticks "
            f"accumulated. Resolution: {resolution}."
        )
    return lines
