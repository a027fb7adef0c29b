"""One declaration per parameter. It feeds CLI options, config validation and ``iobench list``.

A ``Param`` knows how to parse a value from the command line (a string, with commas for a
sweep) and from TOML (int, str or array), how to check it, and how to show it to a person.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from iobench import units
from iobench.errors import ParamError

#: Values one sweep parameter may list: more is a mistake (or an attack), not a plan.
MAX_VALUES = 1000
#: Cases one entry may expand to (the product of its sweep lists).
MAX_CASES = 10_000


class Kind(Enum):
    """What kind of value a parameter holds; decides parsing and formatting."""

    SIZE = "size"
    INT = "int"
    CHOICE = "choice"
    DURATION = "duration"
    PERCENT = "percent"
    #: A link rate in bits per second (tc's spelling: 100mbit, 1gbit).
    BITRATE = "bitrate"


@dataclass(frozen=True)
class Param:
    """A declared parameter of an experiment or of the measuring protocol."""

    name: str
    kind: Kind
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    sweep: bool = False
    minimum: int | float | None = None
    maximum: int | float | None = None
    #: False for a parameter added after results were recorded: at its default it is left out
    #: of case ids, so the cases that existed before keep their ids (and their baselines).
    in_id_at_default: bool = True

    @property
    def option(self) -> str:
        """The command-line spelling: ``file_size`` -> ``--file-size``."""
        return "--" + self.name.replace("_", "-")

    @property
    def metavar(self) -> str:
        base = {
            Kind.SIZE: "SIZE",
            Kind.INT: "N",
            Kind.CHOICE: "|".join(self.choices),
            Kind.DURATION: "TIME",
            Kind.PERCENT: "PCT",
            Kind.BITRATE: "RATE",
        }[self.kind]
        return f"{base}[,...]" if self.sweep else base

    def parse(self, raw: Any, where: str | None = None) -> Any:
        """Parse a raw CLI/TOML value; a sweep parameter always yields a tuple of values.

        ``where`` names the source in error messages (defaults to the option spelling).
        """
        label = where or self.option
        if self.sweep:
            items = _split(raw)
            if not items:
                raise ParamError(f"{label}: give at least one value")
            if len(items) > MAX_VALUES:
                raise ParamError(f"{label}: {len(items)} values; at most {MAX_VALUES} in one sweep")
            values = tuple(self._parse_one(item, label) for item in items)
            duplicates = sorted(self.format(v) for v, n in Counter(values).items() if n > 1)
            if duplicates:
                raise ParamError(f"{label}: value listed twice: {', '.join(duplicates)}")
            return values
        if isinstance(raw, list | tuple):
            raise ParamError(f"{label}: takes one value, not a list")
        return self._parse_one(raw, label)

    def _parse_one(self, raw: Any, label: str) -> Any:
        try:
            value = self._convert(raw)
        except units.UnitError as exc:
            raise ParamError(f"{label}: {exc}") from None
        if self.kind is Kind.CHOICE:
            return value
        if self.minimum is not None and value < self.minimum:
            raise ParamError(
                f"{label}: {self.format(value)} is below the minimum {self.format(self.minimum)}"
            )
        if self.maximum is not None and value > self.maximum:
            raise ParamError(
                f"{label}: {self.format(value)} is above the maximum {self.format(self.maximum)}"
            )
        return value

    def _convert(self, raw: Any) -> Any:
        if self.kind is Kind.SIZE:
            return units.parse_size(raw)
        if self.kind is Kind.DURATION:
            return units.parse_duration(raw)
        if self.kind is Kind.PERCENT:
            return units.parse_percent(raw)
        if self.kind is Kind.INT:
            return units.parse_count(raw)
        if self.kind is Kind.BITRATE:
            return units.parse_bitrate(raw)
        # CHOICE
        if not isinstance(raw, str):
            raise units.UnitError(f"{units.shown(raw)} is not one of {', '.join(self.choices)}")
        text = raw.strip()
        if text not in self.choices:
            raise units.UnitError(f"{units.shown(text)} is not one of {', '.join(self.choices)}")
        return text

    def format(self, value: Any) -> str:
        """Human form of one value (``4096`` -> ``4KiB`` for sizes)."""
        if value is None:
            return "none"
        if isinstance(value, tuple):
            return ",".join(self.format(v) for v in value)
        if self.kind is Kind.SIZE:
            return units.format_size_exact(int(value))
        if self.kind is Kind.DURATION:
            return units.format_duration(value).replace(" ", "")
        if self.kind is Kind.PERCENT:
            return f"{value:g}%"
        if self.kind is Kind.BITRATE:
            return units.format_bitrate(int(value))
        return str(value)

    def describe_default(self) -> str:
        return self.format(self.default)


def size_param(
    name: str, default: tuple[int, ...], help_text: str, minimum: int = 1, maximum: int = 1 << 40
) -> Param:
    """A sweepable size in bytes (file sizes, buffer sizes): the most common declaration."""
    return Param(name, Kind.SIZE, default, help_text, sweep=True, minimum=minimum, maximum=maximum)


def choice_param(
    name: str, choices: tuple[str, ...], help_text: str, default: tuple[str, ...] | None = None
) -> Param:
    """A sweepable choice; the default is every choice unless a narrower one is given."""
    return Param(
        name, Kind.CHOICE, choices if default is None else default, help_text, choices=choices, sweep=True
    )


def _split(raw: Any) -> list[Any]:
    if isinstance(raw, list | tuple):
        return list(raw)
    if isinstance(raw, str):
        return [part for part in (p.strip() for p in raw.split(",")) if part]
    return [raw]


def resolve(params: Sequence[Param], given: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Parse ``given`` raw values against ``params``; missing ones take their defaults.

    Unknown keys raise ParamError naming the allowed ones. ``where`` prefixes messages, e.g.
    ``"quick.toml [rw-buffer] "``.
    """
    by_name = {p.name: p for p in params}
    unknown = [key for key in given if key not in by_name]
    if unknown:
        allowed = ", ".join(sorted(by_name)) or "none"
        raise ParamError(f"{where}unknown parameter {unknown[0]!r} (allowed: {allowed})")
    resolved: dict[str, Any] = {}
    for param in params:
        if param.name in given and given[param.name] is not None:
            resolved[param.name] = param.parse(given[param.name], f"{where}{param.name}".strip())
        else:
            resolved[param.name] = param.default
    cases = math.prod(len(resolved[p.name]) for p in params if p.sweep)
    if cases > MAX_CASES:
        counts = " x ".join(str(len(resolved[p.name])) for p in params if p.sweep)
        raise ParamError(f"{where}{counts} = {cases} cases; at most {MAX_CASES} in one entry")
    return resolved


def expand_cases(params: Sequence[Param], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cartesian product of sweep parameters, in declaration order."""
    axes: list[Iterable[Any]] = []
    for param in params:
        value = values[param.name]
        axes.append(value if param.sweep else (value,))
    names = [p.name for p in params]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


def case_id(params: Sequence[Param], case: Mapping[str, Any]) -> str:
    """A stable identifier of one case in base units: ``mode=copy,file_size=16777216,bs=4096``.

    Base units, not human ones, so two sizes that print alike never share an id. A parameter
    declared ``in_id_at_default=False`` appears only when it differs from its default.
    """
    return ",".join(f"{p.name}={case[p.name]}" for p in params if not left_out_of_id(p, case))


def left_out_of_id(param: Param, case: Mapping[str, Any]) -> bool:
    """A later parameter at its default, or absent (a case made before it existed)."""
    if param.in_id_at_default:
        return False
    if param.name not in case:
        return True
    value, default = case[param.name], param.default
    if isinstance(default, tuple):
        return len(default) == 1 and value == default[0]
    return value == default
