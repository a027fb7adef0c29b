"""Run code under strace and read back the system calls it made: evidence from the kernel's side.

``traced_window`` runs one case of an experiment (one repetition, no warmup) in a fresh
interpreter that attaches ``strace -f`` to itself once its imports are done, with a marker
system call on each side of ``run_once``, and returns the calls made between the markers by
every thread and process of the run. ``syscalls_of_this_thread`` attaches strace to the test's
own thread, so monkeypatched code is traced too. Tests use them to say what a timed window
contains, and that a loop really made its system calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_START, _END = "/iobench-window-start", "/iobench-window-end"
#: "1234 read(3<...>, ..." (a call, maybe unfinished) or "1234 <... read resumed>..." (its end).
_CALL = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")


@dataclass(frozen=True)
class Call:
    """One system call as strace printed it: who made it, its name, the rest of the line."""

    pid: int
    name: str
    text: str


@dataclass
class Window:
    """The calls between the markers around run_once, and the row the case produced."""

    calls: list[Call]
    row: dict[str, Any]
    #: Every call of the run, the window's and the rest (prepare, before_rep, after_rep...).
    everything: list[Call]

    @property
    def pid(self) -> int:
        """The measuring thread's id (the main thread: its tid is the process id)."""
        return int(self.row["measuring_pid"])

    def own(self) -> list[Call]:
        """The calls the measuring thread made itself."""
        return [call for call in self.calls if call.pid == self.pid]

    def names(self) -> Counter[str]:
        """How many times each system call was made inside the window."""
        return Counter(call.name for call in self.calls)

    def made(self, name: str, *fragments: str) -> list[Call]:
        """The calls named ``name`` whose text contains every fragment."""
        return [c for c in self.calls if c.name == name and all(f in c.text for f in fragments)]


def strace_path() -> str:
    """The strace binary, or skip the test with the reason."""
    path = shutil.which("strace") or "/usr/bin/strace"
    if not os.path.exists(path):
        pytest.skip("strace not installed")
    return path


def parse_trace(text: str) -> list[Call]:
    """Every call started in the trace, in order; a call strace split in two (another thread's
    line came between "<unfinished ...>" and "<... resumed>") is joined back into one."""
    calls: list[Call] = []
    unfinished: dict[int, int] = {}  # pid -> index of its call waiting for the resumed half
    for line in text.splitlines():
        match = _CALL.match(line)
        if not match:
            continue
        pid, resumed, name, rest = int(match.group(1)), match.group(2), match.group(3), match.group(4)
        if resumed:
            index = unfinished.pop(pid, None)
            if index is not None:
                head = calls[index]
                start = head.text.removesuffix("<unfinished ...>").rstrip()
                calls[index] = Call(
                    pid, head.name, start + ("" if start.endswith("(") else " ") + rest.lstrip()
                )
            continue
        calls.append(Call(pid, name, name + "(" + rest))
        if rest.endswith("<unfinished ...>"):
            unfinished[pid] = len(calls) - 1
    return calls


def run_python(script: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -c script args``; skips the test when the script says strace cannot attach."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    return done


_WINDOW_SCRIPT = f"""
import json, os, select, signal, subprocess, sys
from pathlib import Path
from iobench.engine.protocol import Protocol
from iobench.engine.runner import run_case
from iobench.experiments import get_experiment

name, overrides, folder, engine = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
strace, trace = sys.argv[5], sys.argv[6]
experiment = get_experiment(name)
case = {{p.name: (p.default[0] if p.sweep else p.default) for p in experiment.params}} | overrides
inner = experiment.run_once

def run_once(self):
    os.access({_START!r}, os.F_OK)
    try:
        return inner(self)
    finally:
        os.access({_END!r}, os.F_OK)

experiment.run_once = run_once
protocol = Protocol(warmup=0, min_reps=1, max_reps=1, max_case_time=60 * 10**9, target_ci=100.0, engine=engine)
# Imports done: attach strace to this process (every thread, and what it forks) only now.
tracer = subprocess.Popen([strace, "-f", "-yy", "-s", "64", "-p", str(os.getpid()), "-o", trace],
                          stderr=subprocess.PIPE, text=True)
said = ""
while "attached" not in said:
    ready, _, _ = select.select([tracer.stderr], [], [], 10)
    line = tracer.stderr.readline() if ready else ""
    if not line:
        sys.exit("strace cannot attach: ptrace " + said.strip()[:200])
    said += line
try:
    result = run_case(experiment, case, protocol, folder)
finally:
    tracer.send_signal(signal.SIGINT)
    tracer.wait(30)
print(json.dumps({{**result.rows[0], "measuring_pid": os.getpid()}}, default=str))
"""


def traced_window(name: str, overrides: dict[str, Any], folder: Path, engine: str = "auto") -> Window:
    """One repetition of a case under strace: the calls inside its timed window, and its row."""
    trace = folder / "strace.out"
    work = folder / "work"
    work.mkdir(parents=True)
    done = run_python(
        _WINDOW_SCRIPT, [name, json.dumps(overrides), str(work), engine, strace_path(), str(trace)]
    )
    row = json.loads(done.stdout.strip().splitlines()[-1])
    lines = trace.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if _START in line]
    ends = [i for i, line in enumerate(lines) if _END in line]
    everything = parse_trace("\n".join(lines))
    if row.get("status") != "ok":
        return Window([], row, everything)
    assert len(starts) == len(ends) == 1, (starts, ends)
    inside = parse_trace("\n".join(lines[starts[0] + 1 : ends[0]]))
    return Window(inside, row, everything)


@dataclass
class Seen:
    """The calls strace saw, filled when the ``with`` block of syscalls_of_this_thread ends."""

    calls: list[Call]

    def __getitem__(self, name: str) -> int:
        return sum(call.name == name for call in self.calls)

    def count(self, name: str, *fragments: str) -> int:
        """Calls named ``name`` whose text contains every fragment (e.g. a clock id)."""
        return sum(call.name == name and all(f in call.text for f in fragments) for call in self.calls)


@contextlib.contextmanager
def syscalls_of_this_thread(names: tuple[str, ...]) -> Iterator[Seen]:
    """The named system calls this thread makes inside the ``with`` block, as the kernel sees
    them: strace attaches to this very thread (so monkeypatched code is traced too)."""
    strace = strace_path()
    seen = Seen([])
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        tracer = subprocess.Popen(
            [strace, "-p", str(threading.get_native_id()), "-e", "trace=" + ",".join(names), "-o", out.name],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert tracer.stderr is not None
        said = ""
        while "attached" not in said:  # strace: Process N attached
            ready, _, _ = select.select([tracer.stderr], [], [], 10)
            line = tracer.stderr.readline() if ready else ""
            if not line:
                tracer.kill()
                tracer.wait()
                pytest.skip(f"strace cannot attach here: {said.strip()[:200] or 'no answer'}")
            said += line
        try:
            yield seen
        finally:
            tracer.send_signal(signal.SIGINT)  # detach
            tracer.wait(30)
            seen.calls.extend(parse_trace(_with_pids(out.read())))


def _with_pids(text: str) -> str:
    """strace -p (one task, no -f) prints lines without a pid: give them one for parse_trace."""
    return "\n".join(line if line[:1].isdigit() else f"0 {line}" for line in text.splitlines())
