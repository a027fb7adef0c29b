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


@dataclass(frozen=True)
class Protocol:
    """Resolved repetition settings for one case."""

    warmup: int = 1
    min_reps: int = 5
    max_reps: int = 20
    max_case_time: int = 10 * 10**9
    target_ci: float = 5.0
    engine: str = "auto"

    @classmethod
    def from_values(cls, given: Mapping[str, Any], where: str = "") -> Protocol:
        """Parse raw values (CLI strings or TOML) over the declared defaults."""
        from iobench.errors import ParamError

        values = resolve(PROTOCOL_PARAMS, given, where)
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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
