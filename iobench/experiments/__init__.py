"""The experiment registry.

Experiments are found through the ``iobench.experiments`` entry-point group, the same path a
third-party plugin takes; a plugin's class is registered when its entry point loads. When the
package runs from a source tree that was never installed (no entry points), the built-in
modules of this package are imported instead.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from iobench.errors import UnknownExperimentError
from iobench.experiments.base import Experiment

ENTRY_POINT_GROUP = "iobench.experiments"

_REGISTRY: dict[str, type[Experiment]] = {}
_loaded = False


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator adding an experiment to the registry under its ``name``."""
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"two experiments are named {cls.name!r}: {existing} and {cls}")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    found = entry_points(group=ENTRY_POINT_GROUP)
    for entry in found:
        loaded = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Experiment):
            register(loaded)
    if not found:
        for module in pkgutil.iter_modules(__path__):
            if module.name != "base":
                importlib.import_module(f"{__name__}.{module.name}")


def all_experiments() -> list[type[Experiment]]:
    """Every registered experiment, sorted by name."""
    _load()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_experiment(name: str) -> type[Experiment]:
    """The experiment called ``name``; UnknownExperimentError names the known ones."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownExperimentError(f"unknown experiment {name!r} (known: {known})") from None
