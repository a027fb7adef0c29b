"""A Dask scheduler and named workers as real processes on this machine, for the fleet tests
(each worker one "host", named by its --name). Every process is owned by the test that
started it and stopped at the end; nothing here loads dask into the pytest process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DASK = Path(sys.executable).parent / "dask"
needs_dask = pytest.mark.skipif(
    not DASK.exists() or importlib.util.find_spec("distributed") is None,
    reason="Dask distributed is not installed (pip install 'iobench[fleet]')",
)


class DaskProcesses:
    """A scheduler and named workers, each a process this test owns; all stopped at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: dict[str, subprocess.Popen] = {}
        self.address = ""

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def _wait_for(self, name: str, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        log = self.folder / f"{name}.log"
        while time.monotonic() < deadline:
            if text in log.read_text():
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start: {log.read_text()[-2000:]}")

    def scheduler(self) -> str:
        file = self.folder / "scheduler.json"
        args = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0"]
        self._start("scheduler", [*args, "--scheduler-file", str(file)])
        deadline = time.monotonic() + 30
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.address = json.loads(file.read_text())["address"]
        return self.address

    def workers(self, *specs: tuple[str, str | None]) -> None:
        """Start workers (name, preload script or None) at once, then wait for all."""
        for name, preload in specs:
            args = [str(DASK), "worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny"]
            args += ["--dashboard-address", ":0", "--host", "127.0.0.1"]
            if preload:
                args += ["--preload", preload]
            self._start(name, args)
        for name, _ in specs:
            self._wait_for(name, "Registered to:")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.procs.clear()

    def pid(self, name: str) -> int:
        """The process id of a worker (or of the scheduler)."""
        return self.procs[name].pid


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name in parentheses may hold spaces: the fields after its ')' are fixed
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    """A process's command line with spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def serves_below(pid: int) -> list[int]:
    """The ``iobench serve`` processes below ``pid`` (a worker's pair serves and their handlers)."""
    return [child for child in descendants(pid) if "iobench serve" in cmdline(child)]


def run_iobench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``iobench ARGS`` as a real process (a fleet client: dask never loads into pytest)."""
    from tests.helpers import IOBENCH

    env = {**os.environ, "IOBENCH_PARQUET": "0"}
    return subprocess.run([*IOBENCH, *args], capture_output=True, text=True, timeout=timeout, env=env)


def case_rows(run_folder: Path) -> list[dict]:
    """Every row a run folder recorded (cases.jsonl)."""
    lines = (run_folder / "cases.jsonl").read_text().splitlines()
    return [row for line in lines for row in json.loads(line)["rows"]]
