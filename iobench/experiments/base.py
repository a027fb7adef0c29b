"""What an experiment is: a typed class that owns only its loop, never its timing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from iobench.engine.counters import Scope
from iobench.params import Param


class Experiment:
    """Base class for one experiment; one instance measures one case.

    The engine calls, in order: ``prepare`` (untimed, once), then per repetition
    ``before_rep`` (untimed; returns metrics recorded in the row, e.g. the resident fraction),
    ``run_once`` (timed; returns at least ``bytes`` and ``ops``), ``after_rep`` (untimed;
    returns checks such as ``integrity_ok``), and finally ``teardown`` (always).
    Raise ``iobench.errors.UnsupportedCase`` from ``prepare`` when this host cannot run it.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    seed_idea: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    #: "thread": counters of the measuring thread only; "process": whole process + children.
    counter_scope: ClassVar[Scope] = "thread"
    #: The parameter a report puts on its x axis (None: no natural axis).
    x_param: ClassVar[str | None] = None
    #: The parameters that give one line per value in a report figure.
    series_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, case: dict[str, Any], scratch: Path) -> None:
        self.case = case
        self.scratch = scratch

    @classmethod
    def check_case(cls, case: dict[str, Any]) -> None:
        """Reject parameter combinations that make no sense (raise ParamError)."""

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        """Parameters that do not change what this case measures (rw-buffer: cache in write mode).

        A sweep keeps only the first of several cases that differ only in these.
        """
        return frozenset()

    def space_needed(self) -> int:
        """Bytes this case writes under its scratch folder at its peak."""
        return 0

    def prepare(self) -> None:
        """Untimed set-up for the whole case: files, buffers (allocated and touched)."""

    def before_rep(self) -> dict[str, Any]:
        """Untimed set-up before each repetition; returns metrics for the row."""
        return {}

    def run_once(self) -> dict[str, Any]:
        """The timed loop; returns ``bytes`` and ``ops`` and any experiment metrics."""
        raise NotImplementedError

    def after_rep(self) -> dict[str, Any]:
        """Untimed checks after each repetition (data integrity); returns metrics for the row."""
        return {}

    def teardown(self) -> None:
        """Release everything the case opened; called even when it failed."""
