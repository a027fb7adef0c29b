"""bench_configs/*.toml -> a validated sweep plan.

A config looks like::

    description = "what this sweep is for"

    [protocol]            # optional; overrides the declared defaults for every entry
    min_reps = 3
    max_case_time = "5s"

    [[experiment]]        # one table per experiment entry
    name = "rw-buffer"
    mode = ["read", "copy"]
    bs = [1, 4096, "64KiB"]
    [experiment.protocol] # optional; for this entry only
    max_case_time = "20s"

Precedence for protocol settings: command-line flag > IOBENCH_* variable > entry protocol >
config protocol > declared default. Every error names the file and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iobench.engine.protocol import Protocol
from iobench.errors import ConfigError, IobenchError
from iobench.experiments import get_experiment
from iobench.params import resolve
from iobench.plan import PlanEntry

DEFAULT_CONFIG = "quick.toml"
_TOP_KEYS = {"description", "protocol", "experiment"}


@dataclass(frozen=True)
class SweepPlan:
    """A config file made into runnable entries."""

    source: Path
    description: str
    entries: list[PlanEntry]
    raw: dict[str, Any]


def config_search_path() -> list[Path]:
    """Folders searched for a config given by bare name: ./bench_configs, then the checkout's."""
    return [Path.cwd() / "bench_configs", Path(__file__).resolve().parent.parent / "bench_configs"]


def find_config(name: str | None) -> Path:
    """A path as given, or a bare name (``quick``, ``tlpi.toml``) looked up in bench_configs."""
    name = name or DEFAULT_CONFIG
    given = Path(name)
    if given.exists() or given.parent != Path("."):
        return given
    candidates = [name] if name.endswith(".toml") else [name, f"{name}.toml"]
    for folder in config_search_path():
        for candidate in candidates:
            if (folder / candidate).is_file():
                return folder / candidate
    return given


def load_config(
    path: Path,
    protocol_overrides: Mapping[str, Any] | None = None,
    only: Collection[str] | None = None,
) -> SweepPlan:
    """Read and validate a sweep config; ConfigError names the file and the offending key.

    ``only`` keeps the entries of those experiments (each must be in the config).
    """
    path = Path(path)
    label = path.name
    if not path.exists():
        raise ConfigError(f"config {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"config {path} is not a file")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot be read: {exc}") from None
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{label}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    overrides = {k: v for k, v in (protocol_overrides or {}).items() if v is not None}
    top_protocol = _table(raw.get("protocol", {}), f"{label}: [protocol]")
    experiments = raw.get("experiment")
    if not experiments:
        raise ConfigError(f"{label}: no [[experiment]] entries")
    if not isinstance(experiments, list):
        raise ConfigError(f"{label}: 'experiment' must be an array of tables ([[experiment]])")
    entries = []
    for index, entry in enumerate(experiments, start=1):
        entry = _table(entry, f"{label}: experiment #{index}")
        name = entry.get("name")
        if not isinstance(name, str):
            raise ConfigError(f"{label}: experiment #{index} has no name")
        where = f"{label} [{name} #{index}] "
        try:
            experiment = get_experiment(name)
            own_protocol = _table(entry.get("protocol", {}), f"{where}protocol")
            values = {k: v for k, v in entry.items() if k not in ("name", "protocol")}
            resolved = resolve(experiment.params, values, where)
            # Raw values merged before parsing: the most specific source wins.
            protocol = Protocol.from_values({**top_protocol, **own_protocol, **overrides}, where)
        except ConfigError:
            raise
        except IobenchError as exc:
            raise ConfigError(str(exc) if str(exc).startswith(label) else f"{label}: {exc}") from None
        entries.append(PlanEntry(experiment, resolved, protocol))
    if only:
        present = {entry.experiment.name for entry in entries}
        missing = sorted(set(only) - present)
        if missing:
            raise ConfigError(
                f"{label} has no entry for {missing[0]!r} (it has: {', '.join(sorted(present))})"
            )
        entries = [entry for entry in entries if entry.experiment.name in only]
    description = raw.get("description", "")
    return SweepPlan(source=path, description=str(description), entries=entries, raw=raw)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    return value
