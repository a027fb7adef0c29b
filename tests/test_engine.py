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
from iobench.loops.engines import native_available, native_module
from iobench.params import Kind, Param
from iobench.stats import ci_halfwidth_pct

#: How a probe reads its counters: one thread's in C (the extension's thread_counters) or in
#: Python (the fallback without the extension), or the whole process's.
PROBES = ["thread", "thread-python", "process"]


def _probe(kind: str) -> CounterProbe:
    probe = CounterProbe("process" if kind == "process" else "thread", native=kind != "thread-python")
    assert (probe._thread_counters is not None) == (kind == "thread" and native_available())
    return probe


@pytest.mark.parametrize("kind", PROBES)
def test_probe_counts_exactly_the_reads_and_writes_made(kind: str) -> None:
    scope = "process" if kind == "process" else "thread"
    reader = os.open("/dev/zero", os.O_RDONLY)
    writer = os.open("/dev/null", os.O_WRONLY)
    try:
        with _probe(kind) as probe:
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


@pytest.mark.parametrize("kind", PROBES)
def test_probe_reports_nothing_for_nothing(kind: str) -> None:
    with _probe(kind) as probe:
        delta = probe.after(probe.before())
    assert (delta.syscalls_read, delta.syscalls_write, delta.disk_read_bytes) == (0, 0, 0)
    assert (delta.chars_read, delta.chars_written) == (0, 0)


@pytest.mark.parametrize("kind", ["thread", "thread-python"])
def test_probe_counts_minor_faults_of_first_touch(kind: str) -> None:
    import mmap

    pages = 64
    with _probe(kind) as probe:
        mapping = mmap.mmap(-1, pages * mmap.PAGESIZE)
        before = probe.before()
        for page in range(pages):
            mapping[page * mmap.PAGESIZE] = 1
        delta = probe.after(before)
        mapping.close()
    assert pages <= delta.minflt <= pages + 8


@pytest.mark.skipif(not native_available(), reason="the C extension is not built")
def test_native_thread_counters_are_the_kernels_numbers() -> None:
    """thread_counters reads /proc/thread-self/io with one pread (counted: 1 read, its bytes)
    and RUSAGE_THREAD exactly (microseconds as ns), in CounterProbe's field order."""
    import resource

    native = native_module()
    assert native is not None
    fd = os.open("/proc/thread-self/io", os.O_RDONLY)
    try:
        first = native.thread_counters(fd)
        second = native.thread_counters(fd)
        text = os.pread(fd, 512, 0)
        usage = resource.getrusage(resource.RUSAGE_THREAD)
    finally:
        os.close(fd)
    user_ns, sys_ns, minflt, majflt, nvcsw, nivcsw, syscr, syscw, rchar, wchar, _, _ = second
    assert syscr - first[6] == 1 and syscw == first[7]  # its own pread, nothing written
    assert rchar - first[8] == len(text)  # the bytes of that pread (same text length)
    assert wchar == first[9]
    fields = dict(zip(text.split()[0::2], text.split()[1::2], strict=False))
    assert int(fields[b"syscr:"]) == syscr + 1  # the pread above
    assert user_ns % 1000 == 0 and sys_ns % 1000 == 0
    assert (
        0 <= round(usage.ru_utime * 1e9) - user_ns < 1e8 and 0 <= round(usage.ru_stime * 1e9) - sys_ns < 1e8
    )
    later = (usage.ru_minflt, usage.ru_majflt, usage.ru_nvcsw, usage.ru_nivcsw)
    assert all(0 <= b - a < 1000 for a, b in zip((minflt, majflt, nvcsw, nivcsw), later, strict=True))


@pytest.mark.skipif(not native_available(), reason="the C extension is not built")
def test_native_thread_counters_refuse_text_that_is_not_an_io_file(tmp_path: Path) -> None:
    native = native_module()
    assert native is not None
    other = tmp_path / "io"
    other.write_bytes(b"rchar: 1\nwchar: 2\nsyscr: x\n")
    fd = os.open(other, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="unexpected io text at syscr: x"):
            native.thread_counters(fd)
    finally:
        os.close(fd)


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
