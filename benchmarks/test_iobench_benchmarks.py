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

from iobench.experiments import get_experiment
from iobench.experiments.base import Experiment
from iobench.loops.engines import engine_for, loops_for

CASES = {
    "syscall-getppid": ("syscall", {"call": "getppid", "calls": 100_000}),
    "syscall-python": ("syscall", {"call": "python", "calls": 100_000}),
    "rw-buffer-read-4KiB-warm": (
        "rw-buffer",
        {"mode": "read", "file_size": 8 << 20, "bs": 4096, "cache": "warm"},
    ),
    "rw-buffer-copy-64KiB-warm": (
        "rw-buffer",
        {"mode": "copy", "file_size": 8 << 20, "bs": 65536, "cache": "warm"},
    ),
    "stdio-buffer-8KiB": (
        "stdio-buffer",
        {"records": 50_000, "record_size": 100, "buffer_size": 8192, "flush_every": 0},
    ),
    "page-fault-anon-16MiB": ("page-fault", {"mode": "anon", "size": 16 << 20, "readahead": "off"}),
}


@pytest.fixture
def prepared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Experiment]:
    name, case = CASES[request.param]
    cls = get_experiment(name)
    experiment = cls(case, tmp_path)
    # The loops iobench itself would use (native where built), so both measure the same thing.
    experiment.loops = loops_for(engine_for("auto", cls.uses_loops(case)))
    experiment.prepare()
    try:
        yield experiment
    finally:
        experiment.teardown()


@pytest.mark.parametrize("prepared", list(CASES), indirect=True)
def test_experiment(benchmark: Any, prepared: Experiment) -> None:
    def setup() -> None:
        prepared.before_rep()  # returns row metrics; pytest-benchmark would take them for arguments

    result = benchmark.pedantic(
        prepared.run_once,
        setup=setup,
        teardown=lambda *_: prepared.after_rep(),
        rounds=15,
        warmup_rounds=2,
    )
    assert result["ops"] > 0  # the loop really ran
