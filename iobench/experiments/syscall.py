"""syscall: the price of entering the kernel, beside the interpreter's own price (seeds 000, 003)."""

from __future__ import annotations

import os
import sys
from typing import Any

from iobench.experiments import register
from iobench.experiments.base import Column, Experiment
from iobench.params import Kind, Param, choice_param


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

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        # call=python measures the interpreter's own call: it has no native twin by design.
        return case["call"] != "python"

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
