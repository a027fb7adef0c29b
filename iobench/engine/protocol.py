"""The repetition protocol: warmup, then repetitions until the estimate is tight enough."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iobench.loops.engines import ENGINES, native_available, native_unavailable_reason
from iobench.params import Kind, Param, resolve

PROTOCOL_PARAMS: tuple[Param, ...] = (
    Param(
        "warmup",
        Kind.INT,
        1,
        "Unrecorded repetitions run first in each case.",
        minimum=0,
        maximum=100,
    ),
    Param(
        "min_reps",
        Kind.INT,
        5,
        "Recorded repetitions at least (unless --max-case-time runs out). Five, because with "
        "fewer no difference between two cases can be shown at 95% confidence.",
        minimum=1,
        maximum=10_000,
    ),
    Param("max_reps", Kind.INT, 20, "Recorded repetitions at most.", minimum=1, maximum=10_000),
    Param(
        "max_case_time",
        Kind.DURATION,
        10 * 10**9,
        "Time budget per case; stops after the repetition that crosses it (at least one is kept).",
        minimum=1,
        maximum=24 * 3600 * 10**9,
    ),
    Param(
        "target_ci",
        Kind.PERCENT,
        5.0,
        "Stop once the 95% confidence half-width of the mean time is within this % of it.",
        minimum=0,
        maximum=100,
    ),
    Param(
        "engine",
        Kind.CHOICE,
        "auto",
        "Inner loops: native = the C extension (the kernel's cost without the interpreter's), "
        "python = pure Python, auto = native when built. Rows record the engine that ran.",
        choices=ENGINES,
    ),
)


_DEFAULTS = {param.name: param.default for param in PROTOCOL_PARAMS}

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


@dataclass(frozen=True)
class Protocol:
    """Resolved repetition settings for one case (defaults: the declarations above, one home)."""

    warmup: int = _DEFAULTS["warmup"]
    min_reps: int = _DEFAULTS["min_reps"]
    max_reps: int = _DEFAULTS["max_reps"]
    max_case_time: int = _DEFAULTS["max_case_time"]
    target_ci: float = _DEFAULTS["target_ci"]
    engine: str = _DEFAULTS["engine"]

    @classmethod
    def from_values(cls, given: Mapping[str, Any], where: str = "") -> Protocol:
        """Parse raw values (CLI strings or TOML) over the declared defaults.

        A max_reps below the default min_reps, with no min_reps given, lowers min_reps to it.
        """
        from iobench.errors import ParamError

        values = resolve(PROTOCOL_PARAMS, given, where)
        if "min_reps" not in given and values["min_reps"] > values["max_reps"]:
            values["min_reps"] = values["max_reps"]  # only the default was in the way
        if values["min_reps"] > values["max_reps"]:
            raise ParamError(
                f"{where}min_reps ({values['min_reps']}) is larger than max_reps ({values['max_reps']})"
            )
        if values["engine"] == "native" and not native_available():
            raise ParamError(
                f"{where}engine: native was asked for but the C extension is not built here "
                f"({native_unavailable_reason()}); use --engine python or auto"
            )
        return cls(**values)

    @classmethod
    def from_record(cls, record: Any, where: str = "protocol") -> Protocol:
        """The protocol back from ``as_dict()`` (meta.json: base units), checked field by
        field, so a hand-edited record fails with one line naming the field."""
        from iobench.errors import ParamError

        if not isinstance(record, Mapping):
            raise ParamError(f"{where} must be a table of protocol settings")
        by_name = {p.name: p for p in PROTOCOL_PARAMS}
        unknown = sorted(set(record) - set(by_name))
        if unknown:
            raise ParamError(f"{where}: unknown setting {unknown[0]!r}")
        values: dict[str, Any] = {}
        for name, param in by_name.items():
            if name not in record:
                continue
            value = record[name]
            if param.kind is Kind.CHOICE:
                ok = isinstance(value, str) and value in param.choices
            elif param.kind is Kind.PERCENT:
                ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value
            else:
                ok = isinstance(value, int) and not isinstance(value, bool)
            in_range = ok and (
                param.kind is Kind.CHOICE
                or (
                    (param.minimum is None or value >= param.minimum)
                    and (param.maximum is None or value <= param.maximum)
                )
            )
            if not in_range:
                raise ParamError(f"{where}.{name}: {value!r} is not a valid {param.kind.value} setting")
            values[name] = value
        protocol = cls(**values)
        if protocol.min_reps > protocol.max_reps:
            raise ParamError(
                f"{where}: min_reps ({protocol.min_reps}) is larger than max_reps ({protocol.max_reps})"
            )
        return protocol

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
