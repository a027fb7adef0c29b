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
        "000/003: a syscall is a mode switch into the kernel and back; how much of what Python "
        "reports for it is the kernel, and how much the interpreter's own call overhead?"
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
        """ns per null syscall next to a pure-Python call, and the kernel's share."""
        from iobench import explain as ex
        from iobench.units import format_duration

        times = {
            c: ex.per(summary, "elapsed_ns", "ops", call=c)
            for c in ("getppid", "read0", "vdso-clock", "python")
        }
        out = []
        sys_call, python = times["getppid"], times["python"]
        rows = ex.select(summary, call="getppid")
        native = "engine" in rows and not rows.empty and rows["engine"].iloc[0] == "native"
        if sys_call and python:
            share = ex.per(summary, "sys_ns", "cpu_ns", call="getppid")
            if native:
                # The C loop adds ~1 ns per call: getppid's time is the kernel round trip itself.
                out.append(
                    f"A null syscall (getppid, from the C loop) costs {format_duration(sys_call)}: that is "
                    f"the mode switch itself. A pure-Python call of the same shape costs "
                    f"{format_duration(python)}, so a Python loop around a syscall pays about "
                    f"{format_duration(sys_call + python)} per call, {python / (sys_call + python):.0%} of it "
                    "the interpreter's"
                    + (f"; {share:.0%} of getppid's CPU time is in the kernel." if share else ".")
                )
            else:
                out.append(
                    f"A null syscall (getppid) costs {format_duration(sys_call)} per call from Python, a "
                    f"pure-Python call {format_duration(python)}: entering the kernel adds about "
                    f"{format_duration(sys_call - python)}"
                    + (
                        f"; {share:.0%} of the syscall's CPU time is in the kernel."
                        if share is not None
                        else "."
                    )
                )
        if times["vdso-clock"] and sys_call:
            out.append(
                f"clock_gettime through the vDSO costs {format_duration(times['vdso-clock'])}: no kernel entry "
                "at all."
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
