"""iobench experiments under pytest-benchmark, for projects that already track benchmarks there.

    pytest benchmarks --benchmark-autosave                       # record
    pytest benchmarks --benchmark-compare --benchmark-compare-fail=median:10%   # gate

Each benchmark times exactly what iobench times: the experiment's ``run_once``, with its
untimed ``before_rep``/``after_rep`` around every round (pytest-benchmark's pedantic mode).
These are not part of ``make test``: timings are for benchmark runs, never unit tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iobench.engine.counters import CounterProbe
from iobench.experiments import get_experiment
from iobench.experiments.base import Experiment
from iobench.loops.engines import engine_for, loops_for

MIB = 1 << 20

#: name: (experiment, case, what one run_once must report: bytes and ops, exactly).
CASES = {
    "syscall-getppid": ("syscall", {"call": "getppid", "calls": 100_000}, (0, 100_000)),
    "syscall-python": ("syscall", {"call": "python", "calls": 100_000}, (0, 100_000)),
    "rw-buffer-read-4KiB-warm": (
        "rw-buffer",
        {"mode": "read", "file_size": 8 * MIB, "bs": 4096, "cache": "warm"},
        (8 * MIB, 2049),  # 2,048 reads of 4 KiB and the one that returns 0
    ),
    "rw-buffer-copy-64KiB-warm": (
        "rw-buffer",
        {"mode": "copy", "file_size": 8 * MIB, "bs": 65536, "cache": "warm"},
        (8 * MIB, 257),  # 129 reads (EOF included) and 128 writes
    ),
    "stdio-buffer-8KiB": (
        "stdio-buffer",
        {"records": 50_000, "record_size": 100, "buffer_size": 8192, "flush_every": 0},
        (5_000_000, 50_000),
    ),
    "page-fault-anon-16MiB": (
        "page-fault",
        {"mode": "anon", "size": 16 * MIB, "readahead": "off"},
        (16 * MIB, 16 * MIB // 4096),
    ),
}


@pytest.fixture
def prepared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Experiment, tuple[int, int]]]:
    name, case, expected = CASES[request.param]
    cls = get_experiment(name)
    experiment = cls(case, tmp_path)
    # The loops iobench itself would use (native where built), so both measure the same thing.
    experiment.loops = loops_for(engine_for("auto", cls.uses_loops(case)))
    experiment.prepare()
    try:
        yield experiment, expected
    finally:
        experiment.teardown()


@pytest.mark.parametrize("prepared", list(CASES), indirect=True)
def test_experiment(benchmark: Any, prepared: tuple[Experiment, tuple[int, int]]) -> None:
    experiment, (expected_bytes, expected_ops) = prepared
    checks: list[dict[str, Any]] = []

    def setup() -> None:
        experiment.before_rep()  # returns row metrics; pytest-benchmark would take them for arguments

    result = benchmark.pedantic(
        experiment.run_once,
        setup=setup,
        teardown=lambda *_: checks.append(experiment.after_rep()),
        rounds=15,
        warmup_rounds=2,
    )
    if not checks:  # --benchmark-disable: one call, and pytest-benchmark skips the teardown
        checks.append(experiment.after_rep())
    # What was timed did the whole job: exact counts, and the experiment's own data checks.
    assert (result["bytes"], result["ops"]) == (expected_bytes, expected_ops)
    assert checks and all(check.get("integrity_ok", True) is True for check in checks)
    # One more round under the kernel's counters: the calls the loop claims, the kernel saw.
    experiment.before_rep()
    with CounterProbe("thread") as probe:
        before = probe.before()
        experiment.run_once()
        delta = probe.after(before)
    experiment.after_rep()
    if experiment.case.get("mode") in ("read", "copy"):
        assert delta.syscalls_read + delta.syscalls_write == expected_ops
    if experiment.case.get("mode") == "anon":
        assert delta.minflt >= expected_ops  # one fault per page touched
    if "buffer_size" in experiment.case:
        # Python's BufferedWriter writes out what it holds when the next record would not fit:
        # one write() per buffer_size // record_size records.
        per_write = experiment.case["buffer_size"] // experiment.case["record_size"]
        assert delta.syscalls_write == -(-experiment.case["records"] // per_write)
