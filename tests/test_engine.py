"""The engine's counters and repetition protocol, driven by small experiments defined here."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest

from iobench.engine.counters import CounterProbe
from iobench.engine.protocol import Protocol
from iobench.engine.runner import CaseSpaceError, run_case
from iobench.errors import InsufficientSpaceError, ParamError, UnsupportedCase
from iobench.experiments.base import Experiment
from iobench.params import Kind, Param
from iobench.stats import ci_halfwidth_pct


@pytest.mark.parametrize("scope", ["thread", "process"])
def test_probe_counts_exactly_the_reads_and_writes_made(scope: str) -> None:
    reader = os.open("/dev/zero", os.O_RDONLY)
    writer = os.open("/dev/null", os.O_WRONLY)
    try:
        with CounterProbe(scope) as probe:  # type: ignore[arg-type]
            before = probe.before()
            for _ in range(37):
                os.read(reader, 8)
            for _ in range(11):
                os.write(writer, b"x")
            delta = probe.after(before)
    finally:
        os.close(reader)
        os.close(writer)
    assert delta.syscalls_read == 37
    assert delta.syscalls_write == 11
    assert 0 < delta.cpu_ns <= delta.time_ns * (2 if scope == "process" else 1) + 1_000_000


def test_probe_reports_nothing_for_nothing() -> None:
    with CounterProbe("thread") as probe:
        delta = probe.after(probe.before())
    assert (delta.syscalls_read, delta.syscalls_write, delta.disk_read_bytes) == (0, 0, 0)


def test_probe_counts_minor_faults_of_first_touch() -> None:
    import mmap

    pages = 64
    with CounterProbe("thread") as probe:
        mapping = mmap.mmap(-1, pages * mmap.PAGESIZE)
        before = probe.before()
        for page in range(pages):
            mapping[page * mmap.PAGESIZE] = 1
        delta = probe.after(before)
        mapping.close()
    assert pages <= delta.minflt <= pages + 8


def test_ci_halfwidth() -> None:
    assert ci_halfwidth_pct([100.0]) == float("inf")
    assert ci_halfwidth_pct([100.0, 100.0, 100.0]) == 0.0
    # n=4, mean 100, sd 10 -> t(0.975, 3)=3.182 * 10/2 = 15.9%
    assert ci_halfwidth_pct([90.0, 110.0, 90.0, 110.0]) == pytest.approx(3.1824 * 11.547 / 2, rel=1e-3)


class Reads(Experiment):
    """Reads /dev/zero ``count`` times per repetition; records how it was called."""

    name = "test-reads"
    summary = "reads"
    seed_idea = "test"
    params = (Param("count", Kind.INT, 10, "reads per repetition", minimum=1),)
    calls: ClassVar[list[str]] = []
    fd: int | None = None

    def prepare(self) -> None:
        self.calls.append("prepare")
        self.fd = os.open("/dev/zero", os.O_RDONLY)
        (self.scratch / "made-by-case").write_bytes(b"x")

    def before_rep(self) -> dict[str, Any]:
        self.calls.append("before")
        return {"pre_metric": 1}

    def run_once(self) -> dict[str, Any]:
        self.calls.append("run")
        for _ in range(self.case["count"]):
            os.read(self.fd, 1)
        return {"bytes": self.case["count"], "ops": self.case["count"], "own_metric": 7}

    def after_rep(self) -> dict[str, Any]:
        self.calls.append("after")
        return {"integrity_ok": True}

    def teardown(self) -> None:
        self.calls.append("teardown")
        if self.fd is not None:  # teardown runs even when prepare failed
            os.close(self.fd)


def test_run_case_protocol_rows_and_order(tmp_path: Path) -> None:
    Reads.calls = []
    protocol = Protocol(warmup=2, min_reps=3, max_reps=3, max_case_time=60 * 10**9, target_ci=0.0)
    result = run_case(Reads, {"count": 25}, protocol, tmp_path, None, "ext4")
    assert [row["rep"] for row in result.rows] == [1, 2, 3]
    assert Reads.calls.count("run") == 5  # 2 warmup + 3 recorded
    assert Reads.calls[0] == "prepare" and Reads.calls[-1] == "teardown"
    for row in result.rows:
        assert row["syscalls_read"] == 25
        assert row["syscalls_write"] == 0
        assert row["status"] == "ok"
        assert row["case"] == "count=25"
        assert row["count"] == 25
        assert row["target_fs"] == "ext4"
        assert (row["pre_metric"], row["own_metric"], row["integrity_ok"]) == (1, 7, True)
    assert result.summary["stop_reason"] == "max_reps"
    assert result.summary["reps"] == 3
    assert list(tmp_path.iterdir()) == []  # the case folder is gone


def test_run_case_stops_on_ci_target(tmp_path: Path) -> None:
    protocol = Protocol(warmup=0, min_reps=2, max_reps=50, max_case_time=60 * 10**9, target_ci=100.0)
    result = run_case(Reads, {"count": 1000}, protocol, tmp_path)
    assert result.summary["stop_reason"] == "ci_target"
    assert 2 <= result.summary["reps"] < 50


def test_run_case_max_case_time_keeps_at_least_one(tmp_path: Path) -> None:
    protocol = Protocol(warmup=0, min_reps=10, max_reps=50, max_case_time=1, target_ci=0.0)
    result = run_case(Reads, {"count": 10}, protocol, tmp_path)
    assert result.summary["stop_reason"] == "max_case_time"
    assert result.summary["reps"] == 1


class Refuses(Reads):
    name = "test-refuses"

    def prepare(self) -> None:
        raise UnsupportedCase("O_DIRECT: EINVAL on this filesystem")


class DiskFull(Reads):
    name = "test-full"

    def run_once(self) -> dict[str, Any]:
        raise OSError(errno.ENOSPC, "No space left on device")


class Greedy(Reads):
    name = "test-greedy"

    def space_needed(self) -> int:
        return 1 << 60


def test_unsupported_case_is_a_row_not_a_crash(tmp_path: Path, tiny_protocol: Protocol) -> None:
    result = run_case(Refuses, {"count": 1}, tiny_protocol, tmp_path)
    (row,) = result.rows
    assert row["status"] == "unsupported"
    assert "EINVAL" in row["status_reason"]
    assert result.summary["status"] == "unsupported"


def test_disk_full_is_recorded_then_raised(tmp_path: Path, tiny_protocol: Protocol) -> None:
    with pytest.raises(CaseSpaceError) as info:
        run_case(DiskFull, {"count": 1}, tiny_protocol, tmp_path)
    (row,) = info.value.result.rows
    assert row["status"] == "failed" and "ENOSPC" in row["status_reason"]
    assert list(tmp_path.iterdir()) == []


def test_space_is_checked_before_a_case(tmp_path: Path, tiny_protocol: Protocol) -> None:
    with pytest.raises(InsufficientSpaceError, match=r"needs 1 EiB|needs .* free on"):
        run_case(Greedy, {"count": 1}, tiny_protocol, tmp_path)


def test_protocol_validation() -> None:
    assert Protocol.from_values({"max_case_time": "250ms", "target_ci": "2%"}).max_case_time == 250 * 10**6
    with pytest.raises(ParamError, match="larger than max_reps"):
        Protocol.from_values({"min_reps": 9, "max_reps": 3})
    with pytest.raises(ParamError, match="max_case_time"):
        Protocol.from_values({"max_case_time": "-1s"})


class PeerDied(Reads):
    name = "test-peer-died"

    def run_once(self) -> dict[str, Any]:
        from iobench.osutil.children import ChildError

        raise ChildError("child 4242 did not finish within 30 s")


def test_an_experiment_error_fails_the_case_not_the_run(tmp_path: Path, tiny_protocol: Protocol) -> None:
    """Seen in a full sweep: a receiver child outlived its wait and the traceback ended the run."""
    Reads.calls = []
    result = run_case(PeerDied, {"count": 1}, tiny_protocol, tmp_path)
    (row,) = result.rows
    assert (row["status"], row["status_reason"]) == (
        "failed",
        "ChildError: child 4242 did not finish within 30 s",
    )
    assert result.summary["status"] == "failed"
    assert Reads.calls[-1] == "teardown" and list(tmp_path.iterdir()) == []
