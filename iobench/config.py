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

from iobench.engine.protocol import PROTOCOL_PARAMS, Protocol
from iobench.errors import ConfigError, IobenchError
from iobench.experiments import get_experiment
from iobench.params import resolve
from iobench.plan import PlanEntry

DEFAULT_CONFIG = "quick.toml"
_TOP_KEYS = {"description", "protocol", "experiment", "peer"}
#: Larger than any hand-written sweep; refusing more keeps a wrong path (a disk image) quick.
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class SweepPlan:
    """A config file made into runnable entries."""

    source: Path
    description: str
    entries: list[PlanEntry]
    raw: dict[str, Any]
    #: ``peer = "netns"`` (or "HOST[:PORT]"): where the socket experiments' peer runs unless
    #: the command line says otherwise (``--peer``).
    peer: str | None = None


def config_search_path() -> list[Path]:
    """Folders searched for a config given by bare name: ./bench_configs, then the checkout's."""
    return [Path.cwd() / "bench_configs", Path(__file__).resolve().parent.parent / "bench_configs"]


def find_config(name: str | None) -> Path:
    """A path as given, or a bare name (``quick``, ``tlpi.toml``) looked up in bench_configs."""
    if name is None:
        name = DEFAULT_CONFIG
    if not name.strip():
        raise ConfigError("config: give a path or a name (quick, tlpi), not an empty string")
    if "\x00" in name:
        raise ConfigError(f"config {name!r}: a path cannot contain a NUL byte")
    given = Path(name)
    try:
        if given.exists() or given.parent != Path("."):
            return given
        candidates = [name] if name.endswith(".toml") else [name, f"{name}.toml"]
        for folder in config_search_path():
            for candidate in candidates:
                if (folder / candidate).is_file():
                    return folder / candidate
    except OSError as exc:
        raise ConfigError(f"config {name}: {exc.strerror}") from None
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
    raw = _read_toml(path, label)
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
            merged = {**top_protocol, **own_protocol, **overrides}
            if "max_reps" in overrides and "min_reps" not in overrides:
                merged = fit_min_reps(merged, where)
            protocol = Protocol.from_values(merged, where)
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
    if not isinstance(description, str):
        raise ConfigError(f"{label}: description must be text")
    peer = raw.get("peer")
    if peer is not None:
        from iobench.peer.address import parse_peer

        if not isinstance(peer, str):
            raise ConfigError(f"{label}: peer must be text (netns or HOST[:PORT])")
        try:
            parse_peer(peer)
        except IobenchError as exc:
            raise ConfigError(f"{label}: {exc}") from None
    return SweepPlan(source=path, description=description, entries=entries, raw=raw, peer=peer)


def fit_min_reps(values: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """A max_reps given on the command line (or IOBENCH_MAX_REPS) without min_reps wins over
    the config's min_reps: min_reps is lowered to it when larger (the CLI says so)."""
    by_name = {p.name: p for p in PROTOCOL_PARAMS}
    fitted = dict(values)
    if "min_reps" in fitted and "max_reps" in fitted:
        low = by_name["min_reps"].parse(fitted["min_reps"], f"{where}min_reps".strip())
        high = by_name["max_reps"].parse(fitted["max_reps"], f"{where}max_reps".strip())
        if low > high:
            fitted["min_reps"] = high
    return fitted


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    """The parsed file; ConfigError (one line) for anything that is not a readable TOML file."""
    try:
        if not path.exists():
            raise ConfigError(f"config {path} does not exist")
        if not path.is_file():
            raise ConfigError(f"config {path} is not a file")
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"config {path} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; is it a config?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{label}: values nested too deeply to read") from None
    except MemoryError:
        raise ConfigError(f"{label}: too large to read") from None


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    return value
