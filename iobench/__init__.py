"""iobench: measure what IO really costs on the machine it runs on.

The Python API (``iobench.run``, ``sweep``, ``resume``, ``load``, ``experiments``) lives in
``iobench.api`` and is loaded on first use, so ``import iobench`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

#: Version of the on-disk result format (cases.jsonl + results.csv + meta.json).
SCHEMA_VERSION = 2

_API = (
    "run",
    "run_iter",
    "sweep",
    "sweep_iter",
    "resume",
    "resume_iter",
    "load",
    "experiments",
    "Run",
    "Runs",
    "Fleet",
)


def __getattr__(name: str) -> Any:
    if name in _API:
        from iobench import api

        return getattr(api, name)
    raise AttributeError(f"module 'iobench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
