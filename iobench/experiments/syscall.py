"""syscall: the price of entering the kernel, beside the interpreter's own price (seeds 000, 003)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.params import Kind, Param, choice_param

if TYPE_CHECKING:
    import pandas as pd


def _loop(function: Any, calls: int) -> None:
    for _ in range(calls):
        function()


@register
class Syscall(Experiment):
    """Call one zero-argument function many times; only the function differs between cases."""

    name = "syscall"
    summary = "ns per null syscall next to ns per pure-Python call of the same shape"
    seed_idea = (
        "a syscall is a mode switch into the kernel and back (TLPI §3.1); how much of what "
        "Python reports for it is the kernel, and how much the interpreter's own call overhead?"
    )
    params = (
        choice_param(
            "call",
            ("getppid", "read0", "vdso-clock", "python"),
            "getppid: a null syscall; read0: read(fd, 0) on /dev/zero, a syscall the kernel "
            "counts in syscalls_read; vdso-clock: clock_gettime served in user space by the "
            "vDSO (no mode switch); python: sys.getrecursionlimit, a C builtin of the same "
            "shape that never enters the kernel.",
        ),
        Param("calls", Kind.INT, (200_000,), "Calls per repetition.", sweep=True, minimum=1, maximum=10**10),
    )

    columns = (
        Column("Time per call", "elapsed_ns", "duration", per="ops"),
        Column("CPU per call", "cpu_ns", "duration", per="ops"),
        Column("System share", "sys_ns", "percent", per="cpu_ns"),
        Column("read()s per call", "syscalls_read", "ratio", per="ops"),
        Column("Calls", "ops"),
    )

    figures = (
        FigureSpec("metric", title="Time per call", metric="elapsed_ns", per="ops", unit="duration"),
        FigureSpec("stacked_cpu", title="CPU per call: user vs system", per="ops", y_label="CPU per call"),
    )

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        # call=python measures the interpreter's own call: it has no native twin by design.
        return case["call"] != "python"

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Time and CPU per call of a null syscall beside a pure-Python call and the vDSO clock;
        every comparison tested, the kernel's share only where the tick split is resolvable."""
        from iobench import explain as ex
        from iobench.units import format_duration

        def per_call(call: str, metric: str = "elapsed_ns") -> float | None:
            return ex.value(summary, metric, per="ops", call=call)

        out = []
        syscall, python = per_call("getppid"), per_call("python")
        if syscall is not None:
            native = (
                ex.one(summary, "engine", call="getppid") is None and _engine(summary, "getppid") == "native"
            )
            cpu = per_call("getppid", "cpu_ns")
            sentence = (
                f"A null syscall (getppid{', from the C loop' if native else ', from a Python loop'}) took "
                f"{format_duration(syscall)} per call"
                + (f" ({format_duration(cpu)} of CPU)" if cpu is not None else "")
            )
            split = ex.cpu_split_text(summary, call="getppid")
            if split:
                sentence += f"; {split}"
            out.append(sentence + ".")
        if syscall is not None and python is not None:
            found = ex.difference(summary, "elapsed_ns", {"call": "python"}, {"call": "getppid"}, per="ops")
            out.append(
                f"A pure-Python call of the same shape (sys.getrecursionlimit) took {format_duration(python)}; "
                f"getppid against it: {ex.contrast(found)}."
            )
        vdso = per_call("vdso-clock")
        if vdso is not None and syscall is not None:
            found = ex.difference(
                summary, "elapsed_ns", {"call": "getppid"}, {"call": "vdso-clock"}, per="ops"
            )
            out.append(
                f"clock_gettime through the vDSO took {format_duration(vdso)} per call, against getppid: "
                f"{ex.contrast(found)}. "
                + ex.cite(
                    "vdso(7)",
                    ex.MAN_PAGES,
                    "the vDSO serves such calls in user space, without entering the kernel",
                )
                + "."
            )
        return out

    def prepare(self) -> None:
        self._fd: int | None = None
        if self.case["call"] == "read0":
            self._fd = os.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC)

    def run_once(self) -> dict[str, Any]:
        call, calls = self.case["call"], self.case["calls"]
        if call == "python":
            _loop(sys.getrecursionlimit, calls)
        else:
            self.loops.null_calls(call, calls, -1 if self._fd is None else self._fd)
        return {"bytes": 0, "ops": calls}

    def teardown(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]


def _engine(summary: pd.DataFrame, call: str) -> str | None:
    """The engine a case's rows ran with (native or python), or None."""
    from iobench import explain as ex

    rows = ex.select(summary, call=call)
    if rows.empty or "engine" not in rows:
        return None
    return str(rows["engine"].iloc[0])
