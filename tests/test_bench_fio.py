"""benchmarks/fio/bench_fio.py's own logic: which rows pass, and the file both tools read.

The benchmark itself needs fio and minutes; these check what decides its exit status and that
iobench's case really reads fio's file (the same blocks), without running either tool.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import iobench.experiments.async_io as async_io

HERE = Path(__file__).resolve().parent.parent / "benchmarks" / "fio"


@pytest.fixture(scope="module")
def bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_fio", HERE / "bench_fio.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fio"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _row(regime: str, engine: str, iops: float, p50: float, high: float | None = None) -> dict[str, Any]:
    return {
        "regime": regime,
        "engine": engine,
        "qd": 1,
        "iops_ratio": iops,
        "iops_high": high,
        "p50_ratio": p50,
    }


def test_verdict_checks_iops_everywhere_and_p50_on_the_disk(bench: Any) -> None:
    assert bench.verdict(_row("disk", "io_uring", 0.95, 1.10)) == ""
    assert bench.verdict(_row("disk", "io_uring", 0.949, 1.0, high=0.99)) == "IOPS 0.949 of fio's"
    noisy = bench.verdict(_row("disk", "libaio", 0.94, 1.0, high=1.02))
    assert noisy.startswith("IOPS 0.940 of fio's") and "not a measurable difference" in noisy
    assert bench.verdict(_row("disk", "libaio", 1.0, 0.89)) == "p50 0.890x fio's"
    assert bench.verdict(_row("disk", "libaio", 0.9, 1.2)) == "IOPS 0.900 of fio's; p50 1.200x fio's"
    # Without the device fio's own per-IO work is much of its latency: p50 is not checked there.
    assert bench.verdict(_row("cache", "io_uring", 1.4, 0.6)) == ""
    assert bench.verdict(_row("tmpfs", "io_uring", 0.9, 0.6)) == "IOPS 0.900 of fio's"
    assert bench.verdict(_row("disk", "psync", 0.5, 2.0)) == ""  # the yardstick, not a target


def test_iobench_reads_the_rounds_file_and_it_goes_afterwards(bench: Any, tmp_path: Path) -> None:
    made = async_io.create_random_file
    shared = tmp_path / "round.bin"
    with bench.shared_file(shared, 64 << 10):
        case_file = tmp_path / "case" / "async-io.bin"
        case_file.parent.mkdir()
        async_io.create_random_file(case_file, 64 << 10)  # what the case calls in prepare()
        assert os.stat(case_file).st_ino == os.stat(shared).st_ino
        assert shared.stat().st_size == 64 << 10
    assert async_io.create_random_file is made and not shared.exists()
    with pytest.raises(RuntimeError), bench.shared_file(shared, 4096):
        raise RuntimeError("a tool failed")
    assert async_io.create_random_file is made and not shared.exists()


def _fake_tools(bench: Any, monkeypatch: pytest.MonkeyPatch, fio: list[float], mine: list[float]) -> list:
    """fio_round and iobench_round replaced by the given IOPS (p50 = 1/IOPS): what each saw."""
    seen: list[tuple[str, Path]] = []
    fio_values, mine_values = iter(fio), iter(mine)

    def fio_round(job: Any, path: Path, size: int, loops: int, runtime: int) -> dict[str, float]:
        seen.append(("fio", path))
        value = next(fio_values)
        return {"iops": value, "p50": 1e6 / value, "p99": 2e6 / value, "ios": 16.0}

    def iobench_round(job: Any, size: int, reps: int, folder: Path) -> dict[str, float]:
        seen.append(("iobench", folder / "round.bin"))
        value = next(mine_values)
        return {"iops": value, "p50": 1e6 / value, "p99": 2e6 / value, "ios": 16.0}

    monkeypatch.setattr(bench, "fio_round", fio_round)
    monkeypatch.setattr(bench, "iobench_round", iobench_round)
    return seen


def _args(rounds: int, max_rounds: int) -> Any:
    return type(
        "Args", (), {"rounds": rounds, "max_rounds": max_rounds, "size": 4096, "reps": 1, "runtime": 5}
    )()


def test_rounds_are_paired_ratios_with_an_interval(
    bench: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """measure() divides each round's iobench by the same round's fio, both on one file."""
    seen = _fake_tools(bench, monkeypatch, [100, 200, 100, 100, 100, 100], [90, 210, 95, 100, 97, 99])
    row = bench.measure(bench.Job("disk", tmp_path, "io_uring", 1), _args(6, 6))
    assert [tool for tool, _ in seen] == ["fio", "iobench", "iobench", "fio"] * 3  # order alternates
    assert all(seen[i][1] == seen[i + 1][1] for i in range(0, 12, 2))  # one file per round, both tools
    assert row["iops_ratios"] == pytest.approx([0.9, 1.05, 0.95, 1.0, 0.97, 0.99])
    assert row["iops_ratio"] == pytest.approx(0.98)  # median of the per-round ratios
    assert (row["iops_low"], row["iops_high"]) == pytest.approx((0.9, 1.05))  # 6 rounds: min-max, 96.9%
    assert row["iops_coverage"] == pytest.approx(0.96875)
    assert row["fio_iops"] == 100.0 and row["iobench_iops"] == pytest.approx(98.0)


def test_a_miss_within_the_noise_gets_more_rounds(
    bench: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    job = bench.Job("disk", tmp_path, "io_uring", 1)
    # 0.93 with one round at 1.0: undecided; two more rounds at 1.0 lift the median to 0.965.
    _fake_tools(bench, monkeypatch, [100] * 8, [93, 93, 93, 100, 93, 100, 100, 100])
    row = bench.measure(job, _args(6, 24))
    assert len(row["iops_ratios"]) == 8 and row["iops_ratio"] == pytest.approx(0.965)
    assert bench.verdict(row) == ""
    # A real miss stays a miss as rounds accumulate, up to the most allowed.
    _fake_tools(bench, monkeypatch, [100] * 12, [90, 90, 90, 96, 90, 90, 90, 90, 90, 90, 90, 90])
    row = bench.measure(job, _args(6, 24))
    # 8 rounds: still min-max, 0.90-0.96; 10: the second from each end, 0.90-0.90 (97.9%).
    assert len(row["iops_ratios"]) == 10 and row["iops_coverage"] == pytest.approx(1 - 2 * 11 / 1024)
    assert row["iops_high"] < 0.95 and bench.verdict(row) == "IOPS 0.900 of fio's; p50 1.111x fio's"
    _fake_tools(bench, monkeypatch, [100] * 6, [90, 90, 90, 96, 90, 90])
    assert len(bench.measure(job, _args(6, 6))["iops_ratios"]) == 6  # --max-rounds caps it
    # A met target, or an unchecked engine, stops at the first rounds.
    _fake_tools(bench, monkeypatch, [100] * 6, [60, 100, 100, 100, 100, 100])
    assert len(bench.measure(job, _args(6, 24))["iops_ratios"]) == 6
    _fake_tools(bench, monkeypatch, [100] * 6, [60, 60, 60, 100, 60, 60])
    assert len(bench.measure(bench.Job("disk", tmp_path, "psync", 1), _args(6, 24))["iops_ratios"]) == 6


def test_the_busy_regime_is_queue_depth_1_on_the_disk(bench: Any, tmp_path: Path) -> None:
    args = type("Args", (), {"dir": str(tmp_path), "tmpfs": "/dev/shm", "qd": [1, 4, 16]})()
    args.regimes, args.engines = ["disk", "busy"], ["psync", "io_uring"]
    jobs = [(job.regime, job.engine, job.qd, job.direct) for job in bench.plan(args)]
    assert jobs == [
        ("disk", "psync", 1, True),
        ("disk", "io_uring", 1, True),
        ("disk", "io_uring", 4, True),
        ("disk", "io_uring", 16, True),
        ("busy", "psync", 1, True),
        ("busy", "io_uring", 1, True),
    ]


def test_the_spinner_idles_at_sched_idle_and_goes(bench: Any) -> None:
    with bench.busy_cpu(True):
        children = _children()
        assert len(children) == 1
        (pid,) = children
        deadline = time.monotonic() + 10
        while os.sched_getscheduler(pid) != os.SCHED_IDLE and time.monotonic() < deadline:
            time.sleep(0.01)  # it sets its own policy once its interpreter is up
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    assert not _children()
    with bench.busy_cpu(False):
        assert not _children()


def _children() -> list[int]:
    found = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    return [int(pid) for pid in found]


def test_a_qd1_miss_is_excused_only_by_a_busy_row_that_meets_the_target(bench: Any) -> None:
    disk = {**_row("disk", "io_uring", 0.92, 1.05), "qd": 1}
    busy = {**_row("busy", "io_uring", 1.2, 0.8), "qd": 1}
    assert "1.200: the gap is the virtual CPU's wake-up" in bench.idle_wakeup(disk, [disk, busy])
    assert bench.idle_wakeup(disk, [disk, {**busy, "iops_ratio": 0.93}]) == ""  # the loop, then
    assert bench.idle_wakeup(disk, [disk]) == ""  # no busy row: nothing excuses it
    assert bench.idle_wakeup({**disk, "p50_ratio": 1.2}, [disk, busy]) == ""  # p50 is not excused
    assert bench.idle_wakeup({**disk, "qd": 4}, [disk, {**busy, "qd": 4}]) == ""  # QD 1 only
    assert bench.idle_wakeup({**disk, "engine": "libaio"}, [disk, busy]) == ""  # its own engine's row


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--regimes", "disk,floppy"], "unknown regime floppy"),
        (["--regimes", "busy"], "the busy regime needs --cpu"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(bench: Any, argv: list[str], message: str, capsys: Any) -> None:
    assert bench.main(argv) == 2  # before anything runs, fio installed or not
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
