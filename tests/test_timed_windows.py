"""Timed windows hold what the case names and nothing else (Experiment.run_once's rule).

Two kinds of evidence. In-process: every mode of every experiment runs one tiny case with
fork, thread start and join, event-loop creation, subprocesses and child reaping counted while
``run_once`` runs: no experiment is about those, so every count must be 0. From the kernel:
strace lists the system calls made between markers on each side of ``run_once`` for the
cases whose window was once wider than the case (page-fault cow, pread-asyncio, the echo
servers, page-lock, msg-zerocopy unprivileged, mmap-read, stdio-buffer), and the window's
calls must be exactly the case's.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iobench.engine.protocol import Protocol
from iobench.engine.runner import run_case
from iobench.experiments import all_experiments, get_experiment
from iobench.metrics import metric
from tests.straced import traced_window

TWO_REPS = Protocol(warmup=1, min_reps=2, max_reps=2, max_case_time=60 * 10**9, target_ci=100.0)

#: For each experiment: the parameter whose every value is a different timed loop, and small
#: values for the rest.
AXES: dict[str, tuple[str, dict[str, Any]]] = {
    "rw-buffer": ("mode", {"file_size": 64 << 10, "bs": 4096, "cache": "warm"}),
    "sync-write": ("mode", {"total": 64 << 10, "bs": 16384, "sync_every": 2}),
    "mmap-read": ("method", {"file_size": 256 << 10, "bs": 65536, "cache": "warm", "advice": "populate"}),
    "stdio-buffer": ("buffer_size", {"records": 200, "record_size": 100, "flush_every": 50}),
    "direct-io": ("mode", {"io": "direct", "file_size": 256 << 10, "bs": 65536}),
    "zero-copy": ("method", {"file_size": 256 << 10, "bs": 65536}),
    "page-cache": ("pattern", {"cache": "warm", "file_size": 256 << 10}),
    "file-concurrency": (
        "mode",
        {"threads": 2, "records": 20, "record_size": 512, "file_size": 64 << 10, "cache": "warm"},
    ),
    "syscall": ("call", {"calls": 1000}),
    "context-switch": ("mode", {"round_trips": 50}),
    "page-fault": ("mode", {"size": 256 << 10, "readahead": "off"}),
    "page-lock": ("mode", {"size": 64 << 10}),
    "sock-buffer": ("transport", {"buffers": "both", "bufsize": 65536, "transfer": 256 << 10}),
    "zero-byte-recv": (
        "strategy",
        {"connections": 8, "messages": 40, "msg_size": 256, "recv_buffer": 4096, "pool_buffers": 2},
    ),
    "async-send": ("mode", {"concurrency": 2, "messages": 10, "msg_size": 512, "writer_msg_size": 65536}),
    "msg-zerocopy": ("method", {"msg_size": 65536, "transfer": 1 << 20}),
    "folio-layout": ("layout", {"write_bs": 65536, "read_bs": 65536, "file_size": 256 << 10}),
    "readahead": ("method", {"pattern": "sequential", "file_size": 256 << 10}),
    "dirty-throttle": (
        "write_bs",
        {"threshold_multiple": 1, "max_bytes": 4 << 20, "samples_per_second": 200},
    ),
    "huge-pages": ("memory", {"thp": "madvise", "size": 4 << 20}),
    "async-io": ("method", {"qd": 8, "file_size": 64 << 10, "bs": 4096, "direct": "off", "cache": "warm"}),
}


def _cases() -> Iterator[Any]:
    for name, (axis, small) in AXES.items():
        experiment = get_experiment(name)
        param = next(p for p in experiment.params if p.name == axis)
        values = param.choices or param.default
        for value in values:
            yield pytest.param(name, {**small, axis: value}, id=f"{name}-{value}")


def test_every_experiment_is_covered() -> None:
    assert set(AXES) == {e.name for e in all_experiments()}


class WindowWatch:
    """Counts process, thread and event-loop life-cycle events made while ``inside`` is set."""

    def __init__(self) -> None:
        self.inside = False
        self.seen: list[str] = []

    def wrap(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.inside:
                self.seen.append(label)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> WindowWatch:
    watch = WindowWatch()
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "wait", "wait3", "wait4", "waitpid"):
        if hasattr(os, name):
            watch.wrap(monkeypatch, os, name, f"os.{name}")
    for name in ("_start_new_thread", "_start_joinable_thread"):  # 3.11 / 3.13
        if hasattr(threading, name):
            watch.wrap(monkeypatch, threading, name, "thread start")
    watch.wrap(monkeypatch, threading.Thread, "join", "thread join")
    watch.wrap(monkeypatch, asyncio.BaseEventLoop, "__init__", "event loop")
    watch.wrap(monkeypatch, asyncio, "run", "asyncio.run")
    watch.wrap(monkeypatch, subprocess.Popen, "__init__", "subprocess")
    try:
        import uvloop

        watch.wrap(monkeypatch, uvloop, "new_event_loop", "event loop")
    except ImportError:
        pass
    return watch


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "case"), list(_cases()))
def test_no_process_thread_or_loop_is_made_inside_a_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watch: WindowWatch, name: str, case: dict[str, Any]
) -> None:
    experiment = get_experiment(name)
    inner = experiment.run_once

    def run_once(self: Any) -> dict[str, Any]:
        watch.inside = True
        try:
            return inner(self)
        finally:
            watch.inside = False

    monkeypatch.setattr(experiment, "run_once", run_once)
    full = {p.name: (p.default[0] if p.sweep else p.default) for p in experiment.params} | case
    result = run_case(experiment, full, TWO_REPS, tmp_path)
    if result.summary["status"] == "unsupported":
        pytest.skip(result.summary["reason"])
    assert result.summary["status"] == "ok", result.summary
    assert watch.seen == [], f"made inside {name}'s timed window: {watch.seen}"
    # Every column the case wrote is in the data dictionary (`iobench columns`).
    params = {p.name for p in experiment.params}
    undeclared = {c for row in result.rows for c in row if c not in params and metric(c, experiment) is None}
    assert not undeclared, f"{name} writes columns it does not declare in `metrics`: {sorted(undeclared)}"


# --- what the kernel saw inside the window ---------------------------------------------------

#: System calls that start a process, a thread or an event loop, or wait for a child: never
#: part of any case, by any thread or process of the run, while a window is open.
LIFECYCLE = {
    "clone",
    "clone3",
    "fork",
    "vfork",
    "execve",
    "wait4",
    "waitid",
    "set_robust_list",  # the first call of every new thread and process
    "epoll_create",
    "epoll_create1",  # a new selector or event loop
    "socketpair",  # an event loop's self-pipe
    "setuid",
    "setgid",
    "setgroups",  # a child dropping root
}


def lifecycle(window: Any) -> list[str]:
    return [call.text[:120] for call in window.calls if call.name in LIFECYCLE]


@pytest.mark.timeout(30)
def test_cow_window_is_the_faults_alone(tmp_path: Path) -> None:
    pages = 64
    window = traced_window("page-fault", {"mode": "cow", "size": pages * 4096}, tmp_path)
    assert window.row["status"] == "ok", window.row
    assert window.calls == []  # no wake-up, no pickled result, no exit, no wait4: faults only
    # ... and the faults are this thread's, one per page (a few of the interpreter's own pages too).
    assert pages <= window.row["minflt"] <= pages + 20
    assert "child_minflt" not in window.row


@pytest.mark.timeout(30)
def test_pread_asyncio_window_makes_no_loop_pool_or_thread(tmp_path: Path) -> None:
    case = {
        "mode": "pread-asyncio",
        "threads": 2,
        "file_size": 64 << 10,
        "record_size": 4096,
        "cache": "warm",
    }
    window = traced_window("file-concurrency", case, tmp_path)
    assert window.row["status"] == "ok", window.row
    assert lifecycle(window) == []
    assert len(window.made("pread64")) == 16  # 64 KiB in 4 KiB reads, by the pool's threads
    assert {c.pid for c in window.made("pread64")}.isdisjoint({window.pid})


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["echo-threads", "echo-asyncio", "threads-sendall"])
def test_async_send_servers_and_writers_exist_before_the_window(tmp_path: Path, mode: str) -> None:
    case = {"mode": mode, "concurrency": 2, "messages": 3, "msg_size": 256, "writer_msg_size": 65536}
    window = traced_window("async-send", case, tmp_path)
    assert window.row["status"] == "ok", window.row
    assert lifecycle(window) == []
    if mode.startswith("echo"):
        # The go byte to the waiting client, then only the server's own echo traffic.
        assert window.made("write")[0].pid == window.pid
        assert window.row["round_trips"] == 6


@pytest.mark.timeout(30)
def test_page_lock_windows(tmp_path: Path) -> None:
    lock = traced_window("page-lock", {"mode": "lock", "size": 64 << 10}, tmp_path / "lock")
    # mlock and munlock, with getrusage on each side of mlock (its fault count): no mmap, munmap.
    assert sorted(c.name for c in lock.calls) == ["getrusage", "getrusage", "mlock", "munlock"]
    if os.geteuid() != 0:
        return
    over = traced_window("page-lock", {"mode": "over-limit"}, tmp_path / "over")
    assert over.row["status"] == "ok", over.row
    assert lifecycle(over) == []
    # Ours: the go byte, the wait for the answer. The child's: its timed attempt and the answer.
    assert sorted(c.name for c in over.own()) == ["pselect6", "read", "write"]
    child = [c for c in over.calls if c.pid != over.pid]
    assert [c.name for c in child if c.name in ("mlock", "munmap", "exit_group")] == ["mlock"]
    assert over.row["mlock_errno"] == "ENOMEM" and over.row["ran_as_uid"] != 0


@pytest.mark.timeout(30)
def test_unprivileged_zerocopy_sender_is_forked_before_the_window(tmp_path: Path) -> None:
    window = traced_window(
        "msg-zerocopy",
        {"method": "zerocopy-unprivileged", "msg_size": 65536, "transfer": 256 << 10},
        tmp_path,
    )
    if window.row["status"] == "unsupported":
        pytest.skip(window.row["status_reason"])
    assert window.row["status"] == "ok", window.row
    assert lifecycle(window) == []
    assert sorted(c.name for c in window.own()) == ["recvfrom", "write"]  # go byte, receiver's count
    assert int(window.row["ops"]) == int(window.row["send_calls"]) == 4


@pytest.mark.timeout(30)
def test_mmap_window_maps_but_does_not_unmap(tmp_path: Path) -> None:
    case = {"method": "mmap-touch", "file_size": 256 << 10, "cache": "warm", "advice": "random"}
    window = traced_window("mmap-read", case, tmp_path)
    # Python's mmap.mmap(): fstat, a dup of the descriptor (fcntl), mmap; then madvise; then
    # touches, which are page faults, not system calls.
    assert [c.name for c in window.calls] == ["newfstatat", "fcntl", "mmap", "madvise"]


@pytest.mark.timeout(30)
def test_stdio_window_is_the_writes(tmp_path: Path) -> None:
    window = traced_window(
        "stdio-buffer", {"buffer_size": 4096, "records": 200, "record_size": 100}, tmp_path
    )
    # 20,000 bytes through a 4 KiB buffer: 4 full buffers and the tail; the writer was made before.
    assert [c.name for c in window.calls] == ["write"] * 5
