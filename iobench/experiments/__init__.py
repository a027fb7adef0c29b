"""The experiment registry.

Built-in experiments are the modules of this package: each registers its class with
``@register`` when imported, so adding an experiment is adding one module (no list to edit).
Third-party plugins register through the ``iobench.experiments`` entry-point group; a
plugin's class is registered when its entry point loads.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from iobench.errors import UnknownExperimentError
from iobench.experiments.base import Experiment
from iobench.params import Param
from iobench.peer.netns import LINK_PARAM_NAMES, LINK_PARAMS

ENTRY_POINT_GROUP = "iobench.experiments"

_REGISTRY: dict[str, type[Experiment]] = {}
_loaded = False


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator adding an experiment to the registry under its ``name``."""
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"two experiments are named {cls.name!r}: {existing} and {cls}")
    if cls.remote_peer and not any(p.name in LINK_PARAM_NAMES for p in cls.params):
        # Its peer can be remote, so it can run over an emulated link (--peer netns): the
        # link's parameters come first, so a sweep builds each link once for all its cases.
        cls.params = (*LINK_PARAMS, *cls.params)
    _REGISTRY[cls.name] = cls
    return cls


def builtin_modules() -> list[str]:
    """Names of this package's experiment modules (every module but ``base``)."""
    return sorted(
        m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_")
    )


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in builtin_modules():
        importlib.import_module(f"{__name__}.{name}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.value.startswith(f"{__name__}."):
            continue  # a built-in, already imported above
        loaded = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Experiment):
            register(loaded)


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


@dataclass(frozen=True)
class ExperimentInfo:
    """An experiment's description: what it measures and its parameters."""

    name: str
    summary: str
    idea: str
    params: tuple[Param, ...]

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


def describe_all() -> dict[str, ExperimentInfo]:
    """Every registered experiment by name, with parameters, defaults, units and help."""
    return {e.name: ExperimentInfo(e.name, e.summary, e.seed_idea, e.params) for e in all_experiments()}


class _CallablePackage(types.ModuleType):
    """``iobench.experiments()`` is the API's listing; once this package is imported, Python
    makes ``iobench.experiments`` the package itself, so the package answers the call."""

    def __call__(self) -> dict[str, ExperimentInfo]:
        return describe_all()


sys.modules[__name__].__class__ = _CallablePackage
