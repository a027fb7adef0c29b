"""syscall, context-switch, page-fault, page-lock on small sizes: the rows' counters are checked."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from iobench.engine.protocol import Protocol
from iobench.engine.runner import CaseResult, run_case
from iobench.experiments import get_experiment
from iobench.osutil.children import ChildError, run_in_child
from iobench.plan import PlanEntry
from iobench.stats import percentiles
from tests.straced import syscalls_of_this_thread

PAGE = resource.getpagesize()


def run(name: str, folder: Path, protocol: Protocol, **case: object) -> CaseResult:
    experiment = get_experiment(name)
    full = {p.name: (p.default[0] if p.sweep else p.default) for p in experiment.params} | case
    return run_case(experiment, full, protocol, folder)


# --- syscall -----------------------------------------------------------------------------


def test_read0_makes_exactly_one_counted_syscall_per_call(tmp_path: Path, tiny_protocol: Protocol) -> None:
    result = run("syscall", tmp_path, tiny_protocol, call="read0", calls=5000)
    for row in result.rows:
        assert row["syscalls_read"] == 5000  # CPython's os.read(fd, 0) does call read(2)
        assert row["ops"] == 5000 and row["bytes"] == 0


def check_getppid_case(folder: Path, protocol: Protocol) -> None:
    """Every getppid the case claims, the kernel saw (strace on this thread), and no reads."""
    with syscalls_of_this_thread(("getppid",)) as seen:
        rows = run("syscall", folder, protocol, call="getppid", calls=5000).rows
    assert seen["getppid"] == 5000 * (protocol.warmup + len(rows))
    for row in rows:
        assert (row["syscalls_read"], row["syscalls_write"], row["ops"]) == (0, 0, 5000)


def check_call_costs_time(folder: Path, protocol: Protocol, call: str) -> None:
    """vdso-clock and python make no system call, so their evidence is physical: each call
    takes at least the few ns a clock read or an interpreted call takes (a loop that skipped
    its calls would not), and far less than a syscall round trip on any machine."""
    with syscalls_of_this_thread(("clock_gettime", "getppid")) as seen:
        run("syscall", folder, protocol, call=call, calls=1000)
    assert seen.count("clock_gettime", "CLOCK_MONOTONIC") == 0  # the vDSO answered in user space
    for row in run("syscall", folder, protocol, call=call, calls=200_000).rows:
        assert (row["syscalls_read"], row["syscalls_write"], row["ops"]) == (0, 0, 200_000)
        assert 2 <= row["elapsed_ns"] / row["ops"] <= 5_000


def test_getppid_enters_the_kernel_once_per_call(tmp_path: Path, tiny_protocol: Protocol) -> None:
    check_getppid_case(tmp_path, tiny_protocol)


@pytest.mark.parametrize("call", ["vdso-clock", "python"])
def test_calls_without_a_syscall_still_take_a_calls_time(
    tmp_path: Path, tiny_protocol: Protocol, call: str
) -> None:
    check_call_costs_time(tmp_path, tiny_protocol, call)


def test_a_stubbed_syscall_loop_is_caught(
    tmp_path: Path, tiny_protocol: Protocol, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation check: null_calls (native and Python) and the pure-Python loop replaced by
    stubs that return at once must fail the checks above."""
    from iobench.experiments import syscall
    from iobench.loops import engines, pyloops

    native = engines._load_native()[0]
    for module in (m for m in (pyloops, native) if m is not None):
        monkeypatch.setattr(module, "null_calls", lambda kind, count, fd=-1: count)
    monkeypatch.setattr(syscall, "_loop", lambda function, calls: None)
    with pytest.raises(AssertionError):
        check_getppid_case(tmp_path, tiny_protocol)
    for call in ("vdso-clock", "python"):
        with pytest.raises(AssertionError):
            check_call_costs_time(tmp_path, tiny_protocol, call)


# --- context-switch ----------------------------------------------------------------------


def test_percentiles_nearest_rank() -> None:
    from array import array

    samples = array("q", range(1, 101))
    assert percentiles(samples, 0.5, 0.99, 1.0) == [50, 99, 100]


@pytest.mark.parametrize("mode", ["process-pipe", "thread-pipe", "thread-queue"])
def test_ping_pong_counts_switches_and_latency(tmp_path: Path, tiny_protocol: Protocol, mode: str) -> None:
    round_trips = 2000
    for row in run("context-switch", tmp_path, tiny_protocol, mode=mode, round_trips=round_trips).rows:
        # Every round trip blocks at least one side until the other answers.
        assert row["ctx_vol"] + row["peer_ctx_vol"] >= round_trips
        assert 0 < row["lat_p50_ns"] <= row["lat_p99_ns"] <= row["lat_max_ns"]
        if mode == "thread-queue":
            assert (row["syscalls_read"], row["syscalls_write"]) == (0, 0)
        else:
            # One write and one read per round trip, counted by the kernel for this thread.
            assert (row["syscalls_read"], row["syscalls_write"]) == (round_trips, round_trips)
        if mode == "process-pipe":
            assert row["peer_cpu_ns"] > 0  # from wait4's rusage of the child


def test_process_ping_pong_leaves_no_child(tmp_path: Path, tiny_protocol: Protocol) -> None:
    run("context-switch", tmp_path, tiny_protocol, mode="process-pipe", round_trips=100)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


# --- page-fault --------------------------------------------------------------------------


def test_fresh_anonymous_pages_fault_once_each(tmp_path: Path, tiny_protocol: Protocol) -> None:
    size = 8 << 20
    for row in run("page-fault", tmp_path, tiny_protocol, mode="anon", size=size).rows:
        assert row["pages"] == size // PAGE
        assert 0.9 <= row["minflt"] / row["pages"] <= 1.1
        assert row["majflt"] == 0


def test_writes_to_pages_shared_with_a_child_fault_in_the_window(
    tmp_path: Path, tiny_protocol: Protocol
) -> None:
    size = 8 << 20
    for row in run("page-fault", tmp_path, tiny_protocol, mode="cow", size=size).rows:
        pages = row["pages"]
        # One copy-on-write fault per page, counted by the kernel for the measuring thread
        # itself (a handful more are the interpreter's own pages, also shared since the fork).
        assert pages <= row["minflt"] <= pages + 20
        # A fault that copies a 4 KiB page: well above a cached memory access, far below a disk
        # read (the old window, with the child's wake-up, pickling, exit and wait4, was ~3x).
        assert 100 <= row["elapsed_ns"] / pages <= 100_000
        # The child that shares the pages never wrote them: only its interpreter's own faults.
        assert 0 <= row["holder_minflt"] < pages / 20


def test_cold_mapped_file_takes_major_faults(disk_dir: Path, tiny_protocol: Protocol) -> None:
    size = 2 << 20
    for row in run("page-fault", disk_dir, tiny_protocol, mode="file-cold", size=size, readahead="off").rows:
        assert row["cache_verified"] is True
        assert row["majflt"] >= 0.9 * row["pages"]  # MADV_RANDOM: one disk read per page
        assert row["disk_read_bytes"] >= 0.9 * size


def test_read_ahead_turns_major_faults_minor(disk_dir: Path, tiny_protocol: Protocol) -> None:
    size = 2 << 20
    for row in run("page-fault", disk_dir, tiny_protocol, mode="file-cold", size=size, readahead="on").rows:
        assert row["majflt"] < 0.5 * row["pages"]


def test_warm_mapped_file_takes_no_major_faults(tmp_path: Path, tiny_protocol: Protocol) -> None:
    for row in run(
        "page-fault", tmp_path, tiny_protocol, mode="file-warm", size=1 << 20, readahead="off"
    ).rows:
        assert row["majflt"] == 0 and row["resident_before"] == 1.0


# --- page-lock ---------------------------------------------------------------------------


def _limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else soft


def test_lock_within_the_limit_faults_pages_in(tmp_path: Path, tiny_protocol: Protocol) -> None:
    size = 256 << 10
    limit = _limit()
    if limit is not None and limit < size and os.geteuid() != 0:
        pytest.skip(f"RLIMIT_MEMLOCK is only {limit} bytes")
    for row in run("page-lock", tmp_path, tiny_protocol, mode="lock", size=size).rows:
        assert row["locked"] is True and row["mlock_errno"] is None
        assert row["minflt"] >= size // PAGE  # mlock populates every page
        # ...and they happen inside mlock (a few more may be the interpreter's own allocations)
        assert size // PAGE <= row["mlock_minflt"] <= size // PAGE + 8
        assert row["mlock_ns"] > 0 and row["munlock_ns"] > 0


def test_past_the_limit_is_recorded_not_raised(tmp_path: Path, tiny_protocol: Protocol) -> None:
    if _limit() is None:
        pytest.skip("RLIMIT_MEMLOCK is unlimited here")
    result = run("page-lock", tmp_path, tiny_protocol, mode="over-limit")
    for row in result.rows:
        assert row["status"] == "ok"
        assert row["locked"] is False
        assert row["mlock_errno"] == ("EPERM" if _limit() == 0 else "ENOMEM")
        assert row["limit_bytes"] == _limit()
        assert row["requested_bytes"] == _limit() + PAGE
        assert row["ran_as_uid"] != 0
        # Refused before populating: far fewer faults than pages asked for (a forked child
        # still takes a few copy-on-write faults of its own between the two getrusage calls).
        assert row["mlock_minflt"] < row["pages"] / 10


@pytest.mark.skipif(os.geteuid() != 0, reason="the exemption needs root")
def test_root_is_exempt_from_the_limit(tmp_path: Path, tiny_protocol: Protocol) -> None:
    if _limit() is None:
        pytest.skip("RLIMIT_MEMLOCK is unlimited here")
    for row in run("page-lock", tmp_path, tiny_protocol, mode="over-limit-privileged").rows:
        assert row["locked"] is True and row["ran_as_uid"] == 0


def _unprivileged_page_lock() -> dict:
    """In a child that is not root: over-limit runs in-process, the privileged case is refused."""
    import tempfile

    protocol = Protocol(warmup=0, min_reps=1, max_reps=1, max_case_time=10**10, target_ci=100.0)
    with tempfile.TemporaryDirectory() as folder:
        over = run("page-lock", Path(folder), protocol, mode="over-limit")
        privileged = run("page-lock", Path(folder), protocol, mode="over-limit-privileged")
    return {"over": over.rows[0], "privileged": privileged.rows[0], "uid": os.geteuid()}


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_page_lock_as_an_unprivileged_user() -> None:
    if _limit() is None:
        pytest.skip("RLIMIT_MEMLOCK is unlimited here")
    get_experiment("page-lock")  # load modules before giving up root (see test_subprocess)
    result, _ = run_in_child(_unprivileged_page_lock, drop_root=True, timeout_s=60)
    assert result["uid"] != 0
    assert result["over"]["mlock_errno"] in ("ENOMEM", "EPERM") and result["over"]["locked"] is False
    assert result["privileged"]["status"] == "unsupported"
    assert "needs root" in result["privileged"]["status_reason"]


def test_child_failure_and_timeout_are_reported() -> None:
    def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ChildError, match="ValueError: bad"):
        run_in_child(boom)
    import time

    with pytest.raises(ChildError, match="did not finish within"):
        run_in_child(lambda: time.sleep(30), timeout_s=0.5)


def test_a_child_forked_with_wait_ready_is_set_up_when_fork_returns(tmp_path: Path) -> None:
    import time

    from iobench.osutil.children import fork_child, ready

    marker = tmp_path / "set-up"

    def slow_start() -> str:
        time.sleep(0.3)  # start-up that must not overlap anything the parent times next
        marker.write_text("done")
        ready()
        return "parked"

    started = time.monotonic()
    child = fork_child(slow_start, wait_ready=True)
    assert marker.read_text() == "done" and time.monotonic() - started >= 0.3
    assert child.wait(10)[0] == "parked"
    ready()  # outside such a child: nothing happens


def test_quick_config_has_every_experiment() -> None:
    from iobench.config import find_config, load_config
    from iobench.experiments import all_experiments

    plan = load_config(find_config("quick"))
    assert {e.experiment.name for e in plan.entries} == {e.name for e in all_experiments()}
    assert all(isinstance(e, PlanEntry) for e in plan.entries)
