"""The data dictionary: every column a run can hold, its unit and meaning, which experiments
fill it, and the dtype it gets when loaded (Int64 counts, boolean flags, categories).

Built from the declarations (common metrics, each experiment's params and ``metrics``), never
written by hand: ``iobench columns``, each run folder's ``columns.md`` and the typed frames
of the API all come from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iobench.metrics import COMMON_METRICS, DERIVED_METRICS, Metric
from iobench.params import Kind, Param

if TYPE_CHECKING:
    import pandas as pd

    from iobench.experiments.base import Experiment

_PARAM_UNITS = {
    Kind.SIZE: "size",
    Kind.INT: "count",
    Kind.CHOICE: "text",
    Kind.DURATION: "duration",
    Kind.PERCENT: "percent",
    Kind.BITRATE: "count",
}
_UNIT_WORDS = {
    "duration": "nanoseconds",
    "size": "bytes",
    "rate": "bytes per second",
    "count": "count",
    "ratio": "ratio",
    "percent": "percent",
    "fraction": "fraction (0..1)",
    "flag": "true/false",
    "text": "text",
}


@dataclass(frozen=True)
class ColumnDoc:
    """One column of the dictionary."""

    name: str
    unit: str
    meaning: str
    kind: str
    experiments: tuple[str, ...]
    #: The parameter's choices (category columns), else empty.
    choices: tuple[str, ...] = ()

    @property
    def dtype(self) -> str:
        """The pandas dtype a loaded frame gives this column."""
        if self.choices:
            return "category"
        if self.kind == "identity" and self.unit == "text":
            return "string"
        return {"count": "Int64", "flag": "boolean", "text": "string", "size": "Int64"}.get(
            self.unit, "float64"
        )


def _param_doc(param: Param, names: tuple[str, ...]) -> ColumnDoc:
    unit = _PARAM_UNITS[param.kind]
    choices = param.choices if param.kind is Kind.CHOICE else ()
    meaning = param.help + (f" One of: {', '.join(choices)}." if choices else "")
    return ColumnDoc(param.name, unit, meaning, "param", names, choices)


def _metric_doc(metric: Metric, names: tuple[str, ...]) -> ColumnDoc:
    return ColumnDoc(metric.name, metric.unit, metric.meaning, metric.kind, names)


def columns(experiments: Sequence[type[Experiment]]) -> list[ColumnDoc]:
    """Every column these experiments' runs hold: common ones, then parameters and metrics."""
    everyone = tuple(e.name for e in experiments)
    docs: dict[str, ColumnDoc] = {m.name: _metric_doc(m, everyone) for m in COMMON_METRICS}
    users: dict[str, list[str]] = {}
    declared: dict[str, ColumnDoc] = {}
    for experiment in experiments:
        for param in experiment.params:
            users.setdefault(param.name, []).append(experiment.name)
            declared.setdefault(param.name, _param_doc(param, ()))
        for metric in experiment.metrics:
            users.setdefault(metric.name, []).append(experiment.name)
            declared.setdefault(metric.name, _metric_doc(metric, ()))
    for name, doc in declared.items():
        if name not in docs:
            docs[name] = ColumnDoc(doc.name, doc.unit, doc.meaning, doc.kind, tuple(users[name]), doc.choices)
    return list(docs.values())


def derived_columns() -> list[ColumnDoc]:
    """Columns a summary computes (never stored)."""
    return [_metric_doc(m, ()) for m in DERIVED_METRICS]


def render_markdown(docs: Iterable[ColumnDoc], title: str = "Columns") -> str:
    """The dictionary as a Markdown table (a run folder's columns.md)."""
    lines = [
        f"# {title}",
        "",
        "Base units only: durations in nanoseconds, sizes in bytes. Generated from iobench's declarations.",
        "",
        "| column | unit | dtype | meaning | experiments |",
        "|---|---|---|---|---|",
    ]
    for doc in docs:
        who = (
            ", ".join(doc.experiments)
            if doc.kind not in ("identity", "measured") or len(doc.experiments) < 3
            else "all"
        )
        meaning = doc.meaning.replace("|", "\\|")
        lines.append(
            f"| `{doc.name}` | {_UNIT_WORDS.get(doc.unit, doc.unit)} | {doc.dtype} | {meaning} | {who} |"
        )
    return "\n".join(lines) + "\n"


def typed_frame(frame: pd.DataFrame, docs: Iterable[ColumnDoc]) -> pd.DataFrame:
    """The frame with declared dtypes (columns it lacks or cannot convert stay as they are)."""
    import pandas as pd

    frame = frame.copy()
    for doc in docs:
        if doc.name not in frame:
            continue
        column = frame[doc.name]
        try:
            if doc.dtype == "category":
                frame[doc.name] = pd.Categorical(column.astype("string"), categories=list(doc.choices))
            elif doc.dtype == "Int64":
                numbers = pd.to_numeric(column, errors="coerce")
                if (numbers.dropna() % 1 == 0).all():
                    frame[doc.name] = numbers.astype("Int64")
            elif doc.dtype == "boolean":
                frame[doc.name] = column.map(_flag).astype("boolean")
            elif doc.dtype == "string":
                frame[doc.name] = column.astype("string")
            else:
                frame[doc.name] = pd.to_numeric(column, errors="coerce")
        except (TypeError, ValueError):
            continue
    return frame


def _flag(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    if isinstance(value, float) and value != value:
        return None
    return bool(value)
