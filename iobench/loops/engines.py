"""Which inner loops run a case: the native C module when it is built, else pure Python.

Both modules offer the same functions (``read_all``, ``write_all``, ``copy_all``,
``pread_at``, ``pwrite_at``, ``write_sync``, ``touch_pages``, ``copy_out``, ``null_calls``,
``psync_run``), so an experiment calls ``self.loops.read_all(...)`` and never knows which it
got. io_uring and Linux AIO (``Uring``, ``Aio``) exist only in the native module: see
``iobench.loops.rings``, which turns their absence into a stated reason.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

from iobench.loops import pyloops

ENGINES = ("auto", "native", "python")


@cache
def _load_native() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("iobench.loops._native"), ""
    except ImportError as exc:  # not built: no compiler at install time, or a source checkout
        return None, str(exc) or "iobench.loops._native is missing"


def native_available() -> bool:
    """True when the C extension was built and imports."""
    return _load_native()[0] is not None


def native_module() -> ModuleType | None:
    """The C extension, or None when it is not built (for helpers beside the loops)."""
    return _load_native()[0]


def native_unavailable_reason() -> str:
    """Why the native engine cannot run here ("" when it can)."""
    return _load_native()[1]


def engine_for(requested: str, experiment_uses_loops: bool) -> str:
    """The engine a case really runs with: ``native`` or ``python``.

    ``auto`` means native when built. A case whose loop has no native twin (a pure-Python
    call, a socket protocol) runs in Python whatever was asked, and its rows say so.
    """
    if requested not in ENGINES:
        raise ValueError(f"unknown engine {requested!r}")
    if requested == "python" or not experiment_uses_loops or not native_available():
        return "python"
    return "native"


def loops_for(engine: str) -> ModuleType:
    """The loop module of a resolved engine name."""
    if engine == "native":
        module = _load_native()[0]
        if module is None:
            raise RuntimeError(f"native engine not built: {native_unavailable_reason()}")
        return module
    return pyloops
