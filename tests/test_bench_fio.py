"""benchmarks/fio/bench_fio.py's own logic: which rows pass, and the file both tools read.

The benchmark itself needs fio and minutes; these check what decides its exit status and that
iobench's case really reads fio's file (the same blocks), without running either tool.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
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


def test_rounds_are_added_while_an_interval_holds_a_bound_on_either_side(
    bench: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    job = bench.Job("disk", tmp_path, "io_uring", 4)
    # Passing (median 1.0) but one round at 0.90 keeps 0.95 inside min-max: more rounds, which
    # can move a row either way; at 10 the interval is the 2nd from each end, 1.0-1.0.
    _fake_tools(bench, monkeypatch, [100] * 16, [90] + [100] * 15)
    row = bench.measure(job, _args(6, 16))
    assert len(row["iops_ratios"]) == 10 and (row["iops_low"], row["iops_high"]) == (1.0, 1.0)
    assert row["iops_coverage"] == pytest.approx(1 - 2 * 11 / 1024) and bench.verdict(row) == ""
    # A real miss stays a miss as rounds accumulate.
    _fake_tools(bench, monkeypatch, [100] * 16, [90, 90, 90, 96] + [90] * 12)
    row = bench.measure(job, _args(6, 16))
    assert len(row["iops_ratios"]) == 10 and row["iops_high"] < 0.95
    assert bench.verdict(row) == "IOPS 0.900 of fio's; p50 1.111x fio's"
    _fake_tools(bench, monkeypatch, [100] * 16, [90, 90, 90, 96] + [90] * 12)
    assert len(bench.measure(job, _args(6, 6))["iops_ratios"]) == 6  # --max-rounds caps it
    _fake_tools(bench, monkeypatch, [100] * 16, [90, 90, 90, 96] + [90] * 12)
    assert len(bench.measure(job, _args(6, 9))["iops_ratios"]) == 9  # ... even when odd
    # Decided at once, or an unchecked engine: the first rounds only.
    _fake_tools(bench, monkeypatch, [100] * 6, [100] * 6)
    assert len(bench.measure(job, _args(6, 16))["iops_ratios"]) == 6
    _fake_tools(bench, monkeypatch, [100] * 6, [60, 60, 60, 100, 60, 60])
    assert len(bench.measure(bench.Job("disk", tmp_path, "psync", 1), _args(6, 16))["iops_ratios"]) == 6


def test_at_qd1_on_the_disk_a_plain_c_loop_runs_in_every_round(
    bench: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = _fake_tools(bench, monkeypatch, [100] * 6, [95] * 6)
    c_values = iter([100.0, 95.0, 90.0, 100.0, 95.0, 95.0])

    def c_round(binary: Path, job: Any, path: Path, size: int, passes: int) -> dict[str, float]:
        seen.append(("c", path))
        return {"iops": next(c_values)}

    monkeypatch.setattr(bench, "c_round", c_round)
    args = _args(6, 6)
    args.c_loop = tmp_path / "qd1_pread"
    row = bench.measure(bench.Job("disk", tmp_path, "io_uring", 1), args)
    tools = [tool for tool, _ in seen]
    assert tools[:9] == ["fio", "iobench", "c", "iobench", "c", "fio", "c", "fio", "iobench"]  # rotating
    assert all(len({path for _, path in seen[i : i + 3]}) == 1 for i in range(0, 18, 3))  # one file a round
    assert row["c_iops_ratios"] == pytest.approx([0.95, 1.0, 95 / 90, 0.95, 1.0, 1.0])
    assert row["c_iops_ratio"] == pytest.approx(1.0)  # the median of the six
    # Deeper queues and the buffered regimes have no C loop (it is QD 1 only).
    _fake_tools(bench, monkeypatch, [100] * 6, [95] * 6)
    assert "c_iops_ratio" not in bench.measure(bench.Job("disk", tmp_path, "io_uring", 4), args)


def test_the_c_loop_builds_and_reads_the_file(bench: Any, tmp_path: Path) -> None:
    binary = bench.build_c_loop(tmp_path)
    if binary is None:
        pytest.skip("no C compiler here")
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(64 << 10))
    for engine in ("psync", "libaio", "io_uring"):  # buffered here: the C loop opens O_DIRECT,
        job = bench.Job("disk", tmp_path, engine, 1)  # which this filesystem may refuse
        try:
            found = bench.c_round(binary, job, path, 64 << 10, 2)
        except bench.subprocess.CalledProcessError as exc:
            pytest.skip(f"O_DIRECT or {engine} refused here: {exc.stderr.strip()}")
        assert found["iops"] > 0


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


def test_the_spinner_runs_at_sched_idle_from_the_start_and_goes(bench: Any) -> None:
    with bench.busy_cpu(True) as pid:
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE  # set before anything is measured
        assert os.sched_getaffinity(pid) == os.sched_getaffinity(0)
        deadline = time.monotonic() + 10
        while _state(pid) != "R" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(pid) == "R"  # spinning
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped
    with bench.busy_cpu(False) as none:
        assert none is None


def test_the_spinner_dies_with_its_parent(bench: Any, tmp_path: Path) -> None:
    """Killed with SIGKILL, the bench leaves no spinner behind (PR_SET_PDEATHSIG)."""
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "import bench_fio\n"
        "with bench_fio.busy_cpu(True) as pid:\n"
        "    print(pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while _state(pid) != "R" and time.monotonic() < deadline:
            time.sleep(0.01)  # past its PR_SET_PDEATHSIG
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _state(pid) not in ("", "Z") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(pid) in ("", "Z")  # gone (or a zombie awaiting init)
    finally:
        parent.kill()
        parent.wait(10)


def _state(pid: int) -> str:
    """The process's state letter, "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return ""


def test_a_qd1_miss_is_excused_only_by_a_busy_row_that_meets_the_target(bench: Any) -> None:
    disk = {**_row("disk", "io_uring", 0.92, 1.05), "qd": 1, "c_iops_ratio": 0.99}
    busy = {**_row("busy", "io_uring", 1.2, 0.98), "qd": 1}
    excuse = bench.idle_wakeup(disk, [disk, busy])
    assert "iobench/C 0.990" in excuse and "1.200, p50 0.980x: the gap is the virtual CPU" in excuse
    assert bench.idle_wakeup({**disk, "c_iops_ratio": 0.94}, [disk, busy]) == ""  # a C loop did better
    assert bench.idle_wakeup({**disk, "c_iops_ratio": None}, [disk, busy]) == ""  # no C loop ran
    assert bench.idle_wakeup(disk, [disk, {**busy, "iops_ratio": 0.93}]) == ""  # the loop, then
    assert bench.idle_wakeup(disk, [disk]) == ""  # no busy row: nothing excuses it
    assert bench.idle_wakeup({**disk, "p50_ratio": 1.12}, [disk, busy]) != ""  # the wake-up is in p50 too
    assert bench.idle_wakeup({**disk, "p50_ratio": 1.16}, [disk, busy]) == ""  # but not 15% and more
    assert bench.idle_wakeup({**disk, "iops_ratio": 0.84}, [disk, busy]) == ""  # nor a gross IOPS miss
    assert bench.idle_wakeup(disk, [disk, {**busy, "p50_ratio": 1.2}]) == ""  # busy p50 must agree
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


def test_an_excused_qd1_miss_exits_0_and_an_unexcused_one_1(
    bench: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    disk = {**_row("disk", "io_uring", 0.93, 1.05), "qd": 1, "c_iops_ratio": 0.99}
    disk.update({"c_iops_low": None, "c_iops_high": None})
    busy = {**_row("busy", "io_uring", 1.2, 0.98), "qd": 1}
    for row in (disk, busy):
        row.update({f"{tool}_{key}": 1.0 for tool in ("fio", "iobench") for key in ("iops", "p50", "p99")})
        row.update(
            {"iops_ratios": [row["iops_ratio"]] * 6, "iops_low": None, "p50_low": None, "p50_high": None}
        )
        row.update({"p99_ratio": 1.0, "p99_low": None, "p99_high": None})
    monkeypatch.setattr(bench, "facts", lambda args: {"date": "now"})
    monkeypatch.setattr(bench, "describe", lambda info: ["a run"])
    args = type("Args", (), {"out": str(tmp_path / "out")})()
    jobs = [bench.Job(regime, tmp_path, "io_uring", 1) for regime in ("disk", "busy")]
    monkeypatch.setattr(bench, "plan", lambda args: jobs)
    rows = {"disk": disk, "busy": busy}
    monkeypatch.setattr(bench, "measure", lambda job, args: rows[job.regime])
    assert bench.run_jobs(args) == 0
    assert "missed only where the CPU idles between IOs: disk io_uring qd 1" in capsys.readouterr().out
    rows["disk"] = {**disk, "c_iops_ratio": 0.90}  # a plain C loop did better: iobench's own
    assert bench.run_jobs(args) == 1
    assert "targets missed at: disk io_uring qd 1: IOPS 0.930 of fio's" in capsys.readouterr().out
