"""A case leaves nothing open: no descriptor, no thread, also when it fails half-way (issue 14).

Descriptor exhaustion used to cascade: a case that hit EMFILE kept what it had opened, and
every later case of the sweep failed with EMFILE too.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from iobench.engine.protocol import Protocol
from iobench.engine.runner import CaseResult, run_case
from iobench.experiments import all_experiments, get_experiment
from iobench.params import resolve
from tests.helpers import IOBENCH
from tests.hostile_inputs import TINY_CASES

ONE = Protocol(warmup=0, min_reps=1, max_reps=1)
#: Warmup and two repetitions: before_rep/after_rep run three times.
THREE = Protocol(warmup=1, min_reps=2, max_reps=2)


def _case(name: str, raw: dict[str, str]) -> dict[str, Any]:
    experiment = get_experiment(name)
    values = resolve(experiment.params, raw)
    return {p.name: values[p.name][0] if p.sweep else values[p.name] for p in experiment.params}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads_settled(expected: int, timeout_s: float = 2.0) -> int:
    """The thread count, once threads a teardown told to stop have had time to end."""
    deadline = time.monotonic() + timeout_s
    while threading.active_count() != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return threading.active_count()


def test_every_experiment_has_a_tiny_case() -> None:
    assert set(TINY_CASES) == {e.name for e in all_experiments()}


@pytest.mark.parametrize("name", sorted(TINY_CASES))
@pytest.mark.timeout(60)
def test_a_case_closes_every_descriptor_and_thread_it_opened(name: str, tmp_path: Path) -> None:
    experiment = get_experiment(name)
    case = _case(name, TINY_CASES[name])
    run_case(experiment, case, ONE, tmp_path)  # first run: lazy imports and caches settle
    fds, threads = _open_fds(), threading.active_count()
    result = run_case(experiment, case, THREE, tmp_path)
    if result.summary["status"] == "unsupported":
        pytest.skip(result.summary["reason"])
    assert result.summary["status"] == "ok", result.summary
    assert (_open_fds(), _threads_settled(threads)) == (fds, threads)
    assert list(tmp_path.iterdir()) == []  # the case folder is gone too


#: Cases that open many descriptors, each through a different path a failure can cut short.
FD_HUNGRY = [
    ("file-concurrency", {"mode": "write-racing", "threads": "8", "records": "2", "record_size": "4KiB"}),
    ("file-concurrency", {"mode": "pread-asyncio", "threads": "2", "file_size": "64KiB", "cache": "warm"}),
    ("async-send", {"mode": "echo-asyncio", "concurrency": "4", "messages": "2"}),
    ("async-send", {"mode": "echo-threads", "concurrency": "4", "messages": "2"}),
    ("context-switch", {"mode": "process-pipe", "round_trips": "10"}),
    ("page-fault", {"mode": "cow", "size": "64KiB"}),
    ("msg-zerocopy", {"method": "zerocopy-unprivileged", "msg_size": "64KiB", "transfer": "256KiB"}),
    ("zero-copy", {"method": "tcp-sendfile", "file_size": "64KiB", "bs": "4KiB"}),
    ("dirty-throttle", {"max_bytes": "1MiB", "threshold_multiple": "1", "samples_per_second": "200"}),
    ("huge-pages", {"memory": "file-cold", "thp": "never", "size": "2MiB"}),
    ("async-io", {"method": "asyncio", "qd": "4", "file_size": "64KiB", "direct": "off", "cache": "warm"}),
    (
        "async-io",
        {"method": "io_uring-fixed", "qd": "4", "file_size": "64KiB", "direct": "off", "cache": "warm"},
    ),
]


def _limit_allowing(free: int) -> int:
    """An RLIMIT_NOFILE under which exactly ``free`` more descriptors can be opened."""
    used = {int(fd) for fd in os.listdir("/proc/self/fd")}
    number = found = 0
    while True:
        if number not in used:
            if found == free:
                return number
            found += 1
        number += 1


def _run_with_free_descriptors(name: str, case: dict[str, Any], free: int, scratch: Path) -> dict[str, Any]:
    """Run the case in a forked child allowed ``free`` more descriptors (soft and hard limit,
    so nothing can raise it); returns its status and open fds/threads before and after."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_end)
            fds, threads = _open_fds(), threading.active_count()
            limit = _limit_allowing(free)
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            result: CaseResult = run_case(get_experiment(name), case, THREE, scratch)
            report = {
                "status": result.summary["status"],
                "reason": result.summary.get("reason", ""),
                "fds": [fds, _open_fds()],
                "threads": [threads, _threads_settled(threads)],
                "scratch": sorted(p.name for p in scratch.iterdir()),
            }
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.parametrize(
    ("name", "raw"), FD_HUNGRY, ids=[f"{n}-{next(iter(r.values()))}" for n, r in FD_HUNGRY]
)
@pytest.mark.timeout(120)
def test_running_out_of_descriptors_anywhere_leaks_nothing(
    name: str, raw: dict[str, str], tmp_path: Path
) -> None:
    # With 0, 1, 2... free descriptors the case fails at every point where it opens one
    # (prepare, before_rep, a fork's pipe, an event loop); each time it must leave nothing.
    case = _case(name, raw)
    failures = 0
    for free in range(40):
        report = _run_with_free_descriptors(name, case, free, tmp_path)
        assert report["fds"][0] == report["fds"][1], (free, report)
        assert report["threads"][0] == report["threads"][1], (free, report)
        assert report["scratch"] == [], (free, report)
        if report["status"] == "ok":
            break
        if report["status"] == "unsupported":
            pytest.skip(report["reason"])
        assert report["status"] == "failed" and "EMFILE" in report["reason"], (free, report)
        failures += 1
    else:
        pytest.fail(f"{name} never ran with up to 40 free descriptors: {report}")
    assert failures >= 2


SWEEP = """
[protocol]
warmup = 0
min_reps = 1
max_reps = 1

[[experiment]]
name = "file-concurrency"
mode = "write-racing"
threads = 64
records = 1
record_size = "4KiB"

[[experiment]]
name = "rw-buffer"
mode = "copy"
file_size = "64KiB"
bs = 4096
cache = "warm"

[[experiment]]
name = "sock-buffer"
transport = "unix"
buffers = "unset"
transfer = "64KiB"
chunk = "4KiB"

[[experiment]]
name = "context-switch"
mode = "process-pipe"
round_trips = 10
"""


def _limit_descriptors_to_64() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


@pytest.mark.timeout(120)
def test_under_ulimit_n_64_one_case_fails_with_the_limit_and_the_rest_run(tmp_path: Path) -> None:
    config = tmp_path / "sweep.toml"
    config.write_text(SWEEP)
    done = subprocess.run(
        [*IOBENCH, "run", "sweep", str(config), "--dir", str(tmp_path), "--out", str(tmp_path / "out"), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_descriptors_to_64,
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "1 case(s) failed (see the warnings above); exit status 3" in done.stderr
    (run,) = (tmp_path / "out").iterdir()
    cases = {c["experiment"]: c for c in json.loads((run / "meta.json").read_text())["cases"]}
    failed = cases.pop("file-concurrency")
    assert failed["status"] == "failed"
    assert failed["reason"].startswith(
        "Too many open files: 64 writer thread(s), one descriptor each, need 64 descriptors at once besides the "
    )
    assert failed["reason"].endswith("already open, and RLIMIT_NOFILE is 64 (EMFILE)")
    assert {name: c["status"] for name, c in cases.items()} == {
        "rw-buffer": "ok",
        "sock-buffer": "ok",
        "context-switch": "ok",
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("iobench-")]  # scratch removed
