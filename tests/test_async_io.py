"""async-io and the native engines: exact counts, data, system calls, and every refusal.

The C loops run on tiny real files (8-16 blocks): bytes, IOs and histogram counts must be
exact, reads must land in the slot that asked for them, writes must put each block's stamp
where it belongs (checked by checksum), and the kernel's own view (strace) must show io_uring
submitting through io_uring_enter. Refusals (seccomp, a build without io_uring, the Python
engine, O_DIRECT alignment) must become ``unsupported`` rows that say why.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from array import array
from pathlib import Path
from typing import Any

import pytest

from iobench.engine.protocol import Protocol
from iobench.engine.runner import run_case
from iobench.experiments import get_experiment
from iobench.experiments.async_io import METHODS, blocks_intact, io_pattern
from iobench.loops import engines, histogram, pyloops, rings
from iobench.loops.buffers import page_aligned_buffer
from tests.seccomp import run_filtered
from tests.straced import traced_window

native = engines._load_native()[0]
needs_native = pytest.mark.skipif(native is None, reason="the C extension is not built here")
BS = 4096
TWO = Protocol(warmup=0, min_reps=2, max_reps=2, max_case_time=60 * 10**9, target_ci=100.0)
NATIVE_METHODS = ("psync", "libaio", "io_uring", "io_uring-fixed", "io_uring-sqpoll")


def _case(**given: Any) -> dict[str, Any]:
    experiment = get_experiment("async-io")
    defaults = {p.name: (p.default[0] if p.sweep else p.default) for p in experiment.params}
    return defaults | {"file_size": 64 << 10, "direct": "off", "cache": "warm"} | given


def _blocks_file(path: Path, blocks: int) -> list[bytes]:
    """A file whose block i is byte i+1 repeated (so a block read into a slot names itself)."""
    data = [bytes([i + 1]) * BS for i in range(blocks)]
    path.write_bytes(b"".join(data))
    return data


def _run(method: str, fd: int, buffer: Any, offsets: array, writes: bytes, qd: int, stamp: int = 0) -> dict:
    """One pass of a native method straight through the C module (no experiment around it)."""
    hist = histogram.new()
    if method == "psync":
        result = native.psync_run(fd, buffer, BS, offsets, writes, hist, stamp)
    elif method == "libaio":
        aio = native.Aio(qd)
        try:
            result = aio.run_file(fd, buffer, BS, offsets, writes, qd, hist, stamp=stamp)
        finally:
            aio.close()
    else:
        ring = native.Uring(qd, sqpoll=method == "io_uring-sqpoll")
        fixed = method == "io_uring-fixed"
        try:
            if fixed:
                ring.register_files([fd])
                ring.register_buffers(buffer)
            result = ring.run_file(
                0 if fixed else fd, buffer, BS, offsets, writes, qd, hist,
                fixed_file=fixed, fixed_buffer=fixed, stamp=stamp,
            )  # fmt: skip
        finally:
            ring.close()
    result["hist_total"] = histogram.total(hist)
    return result


# ------------------------------------------------------------------ the histogram


@needs_native
def test_c_and_python_put_every_latency_in_the_same_bucket() -> None:
    rng = random.Random(3)
    values = list(range(200)) + [1 << k for k in range(64)] + [(1 << k) - 1 for k in range(1, 64)]
    values += [rng.getrandbits(rng.randint(1, 64)) for _ in range(2000)]
    for value in values:
        index = histogram.bucket_of(value)
        assert native.hist_index(value) == index, value
        low, high = histogram.bounds(index)
        assert low <= value <= high, (value, index)
    assert native.HIST_BUCKETS == histogram.BUCKETS
    assert histogram.bucket_of(2**64 - 1) == histogram.BUCKETS - 1


def test_percentiles_and_merging() -> None:
    hist = histogram.new()
    for ns in [100] * 50 + [1000] * 40 + [10_000] * 9 + [1_000_000]:
        histogram.add(hist, ns)
    # Bucket midpoints: within 1.6% of the values.
    assert histogram.percentile(hist, 0.50) == pytest.approx(100, rel=0.016)
    assert histogram.percentile(hist, 0.51) == pytest.approx(1000, rel=0.016)
    assert histogram.percentile(hist, 0.99) == pytest.approx(10_000, rel=0.016)
    assert histogram.percentile(hist, 0.999, maximum=999_999) == 999_999  # never above the max
    text = histogram.encode(hist)
    assert text.startswith("log2x32;") and histogram.total(histogram.decode(text)) == 100
    merged = histogram.merge([text, hist])
    assert histogram.total(merged) == 200 and histogram.percentile(merged, 0.5) == histogram.percentile(
        hist, 0.5
    )
    assert math.isnan(histogram.percentile(histogram.new(), 0.5))
    with pytest.raises(ValueError, match="not a log2x32"):
        histogram.decode("log2x16;1:2")


# ------------------------------------------------------------------ the C loops, exactly


@needs_native
@pytest.mark.parametrize("qd", [1, 8])
@pytest.mark.parametrize("method", NATIVE_METHODS)
def test_reads_land_in_the_slot_that_asked(method: str, qd: int, tmp_path: Path) -> None:
    blocks = _blocks_file(tmp_path / "f", 8)
    ios = qd  # all in the first round: slot k takes IO k
    offsets = array("q", [(7 - k) * BS for k in range(ios)])
    buffer = page_aligned_buffer(qd * BS)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        result = _run(method, fd, buffer, offsets, bytes(ios), qd)
    finally:
        os.close(fd)
    assert (result["bytes"], result["ios"], result["short"], result["hist_total"]) == (ios * BS, ios, 0, ios)
    if method == "psync":  # one IO at a time into its one buffer: the last one read is there
        assert buffer[:BS] == blocks[7 - (ios - 1)]
    else:
        assert [buffer[k * BS : (k + 1) * BS] for k in range(ios)] == [blocks[7 - k] for k in range(ios)]
    assert 0 < result["lat_min_ns"] <= result["lat_max_ns"] and result["lat_sum_ns"] <= result["loop_ns"] * qd
    buffer.close()


@needs_native
@pytest.mark.parametrize("qd", [1, 8])
@pytest.mark.parametrize("method", NATIVE_METHODS)
def test_writes_put_each_stamped_block_in_its_place(method: str, qd: int, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(16 * BS))
    offsets, writes = io_pattern("randwrite", 16 * BS, BS, 0)
    buffer = page_aligned_buffer(qd * BS)
    tail = bytes(buffer[16:BS])
    for slot in range(1, qd):
        buffer[slot * BS : (slot + 1) * BS] = buffer[:BS]
    fd = os.open(path, os.O_RDWR)
    try:
        result = _run(method, fd, buffer, offsets, writes, qd, stamp=7)
    finally:
        os.close(fd)
    assert (result["bytes"], result["ios"], result["hist_total"]) == (16 * BS, 16, 16)
    expected = b"".join(
        o.to_bytes(8, "little") + (7).to_bytes(8, "little") + tail for o in range(0, 16 * BS, BS)
    )
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(expected).digest()
    assert blocks_intact(path, offsets, writes, BS, 7, tail)
    assert not blocks_intact(path, offsets, writes, BS, 8, tail)  # another repetition's stamp
    buffer.close()


@needs_native
def test_both_engines_psync_loops_agree(tmp_path: Path) -> None:
    offsets, writes = io_pattern("randrw", 16 * BS, BS, 50)
    results, contents = [], []
    for loops in (pyloops, native):
        path = tmp_path / loops.__name__
        path.write_bytes(bytes(16 * BS))
        buffer = page_aligned_buffer(BS, fill_random=False)
        hist = histogram.new()
        fd = os.open(path, os.O_RDWR)
        try:
            results.append(loops.psync_run(fd, buffer, BS, offsets, writes, hist, 3))
        finally:
            os.close(fd)
        contents.append(path.read_bytes())
        assert histogram.total(hist) == 16
        buffer.close()
    python, c = results
    assert set(python) == set(c)
    for key in ("bytes", "ios", "short", "submit_calls", "reap_calls"):
        assert python[key] == c[key], key
    assert contents[0] == contents[1]


@needs_native
def test_buffered_libaio_completes_inside_io_submit_and_io_uring_inline(tmp_path: Path) -> None:
    """Cached buffered reads: io_submit returns with its whole batch done (one io_getevents reaps
    all 8), and io_uring completes them inside the io_uring_enter that submits them."""
    _blocks_file(tmp_path / "f", 64)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    offsets = array("q", [i * BS for i in range(64)])
    try:
        os.pread(fd, 64 * BS, 0)  # cached
        buffer = page_aligned_buffer(8 * BS)
        aio = _run("libaio", fd, buffer, offsets, bytes(64), 8)
        uring = _run("io_uring", fd, buffer, offsets, bytes(64), 8)
        buffer.close()
    finally:
        os.close(fd)
    assert (aio["submit_calls"], aio["reap_calls"]) == (8, 8)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:  # one IO per call: a call per IO, and the batches' completions still reaped 8 at a time
        buffer = page_aligned_buffer(8 * BS)
        hist = histogram.new()
        aio_each = native.Aio(8)
        each = aio_each.run_file(fd, buffer, BS, offsets, bytes(64), 8, hist, batch=1)
        aio_each.close()
        ring = native.Uring(8)
        uring_each = ring.run_file(fd, buffer, BS, offsets, bytes(64), 8, hist, batch=1)
        ring.close()
        buffer.close()
    finally:
        os.close(fd)
    assert (each["submit_calls"], each["reap_calls"]) == (64, 8)
    assert (uring_each["enter_calls"], uring_each["submit_calls"], uring_each["reap_calls"]) == (64, 64, 0)
    assert aio["submit_ns"] > 0.5 * aio["loop_ns"] or aio["loop_ns"] < 200_000  # tiny loops: clock noise
    assert (uring["enter_calls"], uring["submit_calls"], uring["reap_calls"]) == (8, 8, 0)


@needs_native
def test_bad_arguments_are_value_errors_and_errors_oserrors(tmp_path: Path) -> None:
    buffer = page_aligned_buffer(BS)
    offsets = array("q", [0])
    ring = native.Uring(4)
    try:
        with pytest.raises(ValueError, match="qd x bs"):
            ring.run_file(0, buffer, BS, offsets, bytes(1), 2, histogram.new())
        with pytest.raises(ValueError, match="one byte"):
            ring.run_file(0, buffer, BS, offsets, bytes(2), 1, histogram.new())
        with pytest.raises(ValueError, match="registered"):
            ring.run_file(0, buffer, BS, offsets, bytes(1), 1, histogram.new(), fixed_buffer=True)
        with pytest.raises(OSError) as caught:  # a closed descriptor: the CQE's -EBADF
            ring.run_file(999, buffer, BS, offsets, bytes(1), 1, histogram.new())
        assert caught.value.errno == errno.EBADF and "io_uring read of 4096 bytes at offset 0" in str(
            caught.value
        )
    finally:
        ring.close()
        buffer.close()
    with pytest.raises(ValueError, match="closed"):
        ring.probe()


# ------------------------------------------------------------------ the experiment


@pytest.mark.timeout(60)
@pytest.mark.parametrize("qd", [1, 8])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_moves_every_block_and_keeps_every_write(method: str, qd: int, tmp_path: Path) -> None:
    case = _case(method=method, qd=qd, rw="randrw", rwmix_read=50)
    result = run_case(get_experiment("async-io"), case, TWO, tmp_path)
    if result.summary["status"] == "unsupported":
        pytest.skip(result.summary["reason"])
    assert result.summary["status"] == "ok", result.summary
    for row in result.rows:
        assert (row["bytes"], row["ops"], row["short_ios"], row["integrity_ok"]) == (64 << 10, 16, 0, True)
        assert histogram.total(histogram.decode(row["lat_hist"])) == 16
        assert row["lat_p50_ns"] <= row["lat_p99_ns"] <= row["lat_p999_ns"] <= row["lat_max_ns"]
        assert row["submit_syscalls"] == (
            16 if method in ("psync", "threads", "asyncio") else row["submit_syscalls"]
        )
        if method == "psync":
            assert row["syscalls_per_io"] == 1.0 and row["reap_syscalls"] == 0
        if method == "asyncio":
            assert row["reap_syscalls"] is None and row["syscalls_per_io"] is None


def test_the_python_engine_refuses_the_native_methods_and_runs_the_rest(tmp_path: Path) -> None:
    python = Protocol(warmup=0, min_reps=1, max_reps=1, engine="python")
    uring = run_case(get_experiment("async-io"), _case(method="io_uring"), python, tmp_path)
    assert uring.summary["status"] == "unsupported"
    assert uring.summary["reason"].startswith("io_uring needs the native engine:")
    psync = run_case(get_experiment("async-io"), _case(method="psync"), python, tmp_path)
    assert psync.summary["status"] == "ok" and psync.rows[0]["engine"] == "python"


def test_misaligned_direct_io_is_recorded_as_unsupported(tmp_path: Path) -> None:
    case = _case(method="psync", direct="on", bs=1000, file_size=16000)
    result = run_case(get_experiment("async-io"), case, TWO, tmp_path)
    if "refuses O_DIRECT at open" in result.summary.get("reason", ""):
        pytest.skip(result.summary["reason"])
    assert result.summary["status"] == "unsupported", result.summary
    assert result.summary["reason"].startswith("EINVAL: O_DIRECT refused bs=1000")


def test_a_lost_write_fails_the_integrity_check(tmp_path: Path) -> None:
    path = tmp_path / "f"
    offsets, writes = io_pattern("write", 4 * BS, BS, 0)
    tail = bytes(BS - 16)
    good = b"".join(o.to_bytes(8, "little") + (1).to_bytes(8, "little") + tail for o in offsets)
    path.write_bytes(good)
    assert blocks_intact(path, offsets, writes, BS, 1, tail)
    path.write_bytes(good[: 2 * BS] + bytes(BS) + good[3 * BS :])  # the third write never happened
    assert not blocks_intact(path, offsets, writes, BS, 1, tail)
    assert blocks_intact(path, offsets, bytes(4), BS, 1, tail)  # nothing written: nothing to check


def test_io_patterns() -> None:
    offsets, writes = io_pattern("read", 4 * BS, BS, 70)
    assert list(offsets) == [0, BS, 2 * BS, 3 * BS] and writes == bytes(4)
    offsets, writes = io_pattern("randwrite", 64 * BS, BS, 70)
    assert sorted(offsets) == [i * BS for i in range(64)] and list(offsets) != sorted(offsets)
    assert writes == b"\x01" * 64
    _, mixed = io_pattern("randrw", 1000 * BS, BS, 70)
    assert 600 < mixed.count(0) < 800  # about 70% reads
    assert io_pattern("randrw", 1000 * BS, BS, 70) == io_pattern("randrw", 1000 * BS, BS, 70)


# ------------------------------------------------------------------ what the kernel saw


@needs_native
def test_reap_one_takes_one_completion_per_wait_as_fio_does(tmp_path: Path) -> None:
    """reap=1 is fio's loop (iodepth_batch_complete_max=1): one completion taken per wait, its
    replacement submitted before the next is taken; reap=0 takes every completion there is after
    every call. Cached buffered reads finish inside the call that submits them, so the counts are
    exact."""
    _blocks_file(tmp_path / "f", 64)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    offsets, writes = array("q", [i * BS for i in range(64)]), bytes(64)
    buffer = page_aligned_buffer(8 * BS)
    found: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        os.pread(fd, 64 * BS, 0)  # cached
        for reap in (0, 1):
            aio = native.Aio(8)
            found["libaio", reap] = aio.run_file(
                fd, buffer, BS, offsets, writes, 8, histogram.new(), batch=1, reap=reap
            )
            aio.close()
            ring = native.Uring(8)
            found["io_uring", reap] = ring.run_file(
                fd, buffer, BS, offsets, writes, 8, histogram.new(), batch=1, reap=reap
            )
            ring.close()
    finally:
        buffer.close()
        os.close(fd)
    for result in found.values():
        assert (result["ios"], result["bytes"], result["submit_calls"]) == (64, 64 * BS, 64)
    # libaio: io_submit did each read; io_getevents then returns all 8 at once, or one at a time.
    assert (found["libaio", 0]["looks"], found["libaio", 0]["reap_calls"]) == (8, 8)
    assert (found["libaio", 1]["looks"], found["libaio", 1]["reap_calls"]) == (64, 64)
    # io_uring: one enter per IO either way, and one completion per look either way (each read
    # finishes inside its own call). reap=0 takes it right after that call, so no two IOs are
    # ever outstanding together; reap=1 looks only once the 8 slots are full, so from then on 8
    # are outstanding, the finished ones waiting in the ring while the loop submits.
    for reap in (0, 1):
        result = found["io_uring", reap]
        assert (result["enter_calls"], result["reap_calls"], result["looks"]) == (64, 0, 64)

    def in_flight(result: dict[str, Any]) -> float:
        return result["lat_sum_ns"] / result["loop_ns"]  # Little's law

    assert in_flight(found["io_uring", 0]) <= 1.0
    assert in_flight(found["io_uring", 1]) > 4.0


@needs_native
@pytest.mark.parametrize("engine", ["libaio", "io_uring"])
def test_reap_one_with_o_direct_waits_for_the_device_and_takes_one_each_time(
    engine: str, tmp_path: Path
) -> None:
    """O_DIRECT completions come later, from the device: the loop waits with an empty ring and
    still takes exactly one completion per look, every block landing in its slot's buffer."""
    data = _blocks_file(tmp_path / "f", 64)
    try:
        fd = os.open(tmp_path / "f", os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        pytest.skip(f"O_DIRECT refused here: {exc}")
    offsets = array("q", [i * BS for i in range(64)])
    buffer = page_aligned_buffer(8 * BS)
    try:
        hist = histogram.new()
        if engine == "libaio":
            aio = native.Aio(8)
            result = aio.run_file(fd, buffer, BS, offsets, bytes(64), 8, hist, batch=1, reap=1)
            aio.close()
        else:
            ring = native.Uring(8)
            result = ring.run_file(fd, buffer, BS, offsets, bytes(64), 8, hist, batch=1, reap=1)
            ring.close()
        last = bytes(buffer[(63 % 8) * BS : (63 % 8 + 1) * BS])
    finally:
        buffer.close()
        os.close(fd)
    assert (result["ios"], result["bytes"], result["short"], result["looks"]) == (64, 64 * BS, 0, 64)
    assert histogram.total(hist) == 64 and last in data  # a whole block, read from the file


@needs_native
def test_reap_is_refused_with_sqpoll_whose_loop_polls_the_ring(tmp_path: Path) -> None:
    _blocks_file(tmp_path / "f", 8)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    buffer = page_aligned_buffer(BS)
    try:
        ring = native.Uring(1, sqpoll=True)
    except OSError as exc:
        pytest.skip(f"SQPOLL refused here: {exc}")
    try:
        with pytest.raises(ValueError, match="reap: with SQPOLL"):
            ring.run_file(fd, buffer, BS, array("q", [0]), bytes(1), 1, histogram.new(), reap=1)
    finally:
        ring.close()
        buffer.close()
        os.close(fd)


@needs_native
@pytest.mark.timeout(60)
def test_io_uring_submits_through_io_uring_enter_and_sqpoll_with_fewer(tmp_path: Path) -> None:
    if native is None:
        pytest.skip("the C extension is not built here")
    case = {"qd": 8, "file_size": 1 << 20, "bs": 4096, "direct": "off", "cache": "warm"}
    plain = traced_window("async-io", case | {"method": "io_uring", "submit": "batch"}, tmp_path / "plain")
    assert plain.row["status"] == "ok", plain.row
    enters = plain.made("io_uring_enter")
    # 256 cached reads, 8 a round: each call submits 8 and returns with their completions.
    assert len(enters) == int(plain.row["submit_syscalls"]) + int(plain.row["reap_syscalls"]) == 32
    assert all(", 8, 1, IORING_ENTER_GETEVENTS" in c.text for c in enters)
    each = traced_window("async-io", case | {"method": "io_uring", "submit": "each"}, tmp_path / "each")
    # One IO per call: 256 calls, each handing over one SQE (and returning with its completion).
    assert len(each.made("io_uring_enter", ", 1, ")) == int(each.row["submit_syscalls"]) == 256
    assert not plain.made("pread64") and all(c.pid == plain.pid for c in enters)
    sqpoll = traced_window("async-io", case | {"method": "io_uring-sqpoll"}, tmp_path / "sqpoll")
    if sqpoll.row["status"] == "unsupported":
        pytest.skip(sqpoll.row["status_reason"])
    # The kernel thread submits: no call hands it SQEs (to_submit is 0 in every one). The calls
    # left wake the thread or wait for completions; how many depends on a free CPU for the
    # thread (with both CPUs busy each round can end in a wait, as many calls as plain's).
    sq_enters = sqpoll.made("io_uring_enter")
    assert all(re.match(r"io_uring_enter\(\d+<[^>]*>, 0, ", c.text) for c in sq_enters), sq_enters[:3]
    assert not any(re.match(r"io_uring_enter\(\d+<[^>]*>, 0, ", c.text) for c in enters)
    assert (
        int(sqpoll.row["submit_syscalls"])
        == int(sqpoll.row["sqpoll_wakeups"])
        == len(sqpoll.made("io_uring_enter", "IORING_ENTER_SQ_WAKEUP"))
    )
    assert len(sq_enters) == int(sqpoll.row["submit_syscalls"]) + int(sqpoll.row["reap_syscalls"])
    assert not sqpoll.made("pread64")


@pytest.mark.timeout(60)
def test_libaio_and_psync_system_calls_are_the_counted_ones(tmp_path: Path) -> None:
    if native is None:
        pytest.skip("the C extension is not built here")
    case = {"qd": 4, "file_size": 64 << 10, "bs": 4096, "direct": "off", "cache": "warm"}
    aio = traced_window("async-io", case | {"method": "libaio", "submit": "batch"}, tmp_path / "aio")
    assert aio.row["status"] == "ok", aio.row
    # Cached buffered reads: each io_submit of 4 returns with the 4 done, one io_getevents reaps them.
    assert len(aio.made("io_submit", ", 4, ")) == int(aio.row["submit_syscalls"]) == 4
    assert len(aio.made("io_getevents")) == int(aio.row["reap_syscalls"]) == 4
    each = traced_window("async-io", case | {"method": "libaio", "submit": "each"}, tmp_path / "each")
    assert len(each.made("io_submit", ", 1, ")) == int(each.row["submit_syscalls"]) == 16
    assert len(each.made("io_getevents")) == int(each.row["reap_syscalls"]) == 4
    # fio's loop: one completion per io_getevents(min 1, max 1), each IO its own call both ways.
    one = traced_window("async-io", case | {"method": "libaio", "reap": "one"}, tmp_path / "one")
    assert len(one.made("io_getevents", ", 1, 1, ")) == int(one.row["reap_syscalls"]) == 16
    assert len(one.made("io_submit", ", 1, ")) == int(one.row["submit_syscalls"]) == 16
    assert one.row["completions_per_look"] == 1.0 and each.row["completions_per_look"] == 4.0
    psync = traced_window("async-io", case | {"method": "psync"}, tmp_path / "psync")
    assert len(psync.made("pread64")) == int(psync.row["submit_syscalls"]) == 16
    assert psync.row["completions_per_look"] == 1.0


# ------------------------------------------------------------------ refusals


def _status_under_filter(rules: list, method: str, scratch: Path) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        result = run_case(get_experiment("async-io"), _case(method=method), TWO, scratch)
        return {"status": result.summary["status"], "reason": result.summary.get("reason", "")}

    return run_filtered(rules, work)


@needs_native
@pytest.mark.timeout(60)
def test_seccomp_refusals_become_unsupported_rows(tmp_path: Path) -> None:
    eperm = _status_under_filter([("io_uring_setup", errno.EPERM)], "io_uring", tmp_path)
    assert eperm["status"] == "unsupported"
    assert eperm["reason"].startswith("io_uring_setup: EPERM (Operation not permitted)")
    assert "kernel.io_uring_disabled" in eperm["reason"] and "seccomp" in eperm["reason"]
    enosys = _status_under_filter([("io_setup", errno.ENOSYS)], "libaio", tmp_path)
    assert enosys == {"status": "unsupported", "reason": enosys["reason"]}
    assert enosys["reason"].startswith("io_setup: ENOSYS") and "no AIO" in enosys["reason"]
    # IORING_REGISTER_BUFFERS is opcode 0: an io_uring without registered buffers.
    fixed = _status_under_filter([("io_uring_register", errno.EINVAL, 0)], "io_uring-fixed", tmp_path)
    assert fixed["status"] == "unsupported"
    assert fixed["reason"].startswith(
        "registered buffers: io_uring_register(IORING_REGISTER_BUFFERS): EINVAL"
    )
    # The same filter leaves plain io_uring alone.
    plain = _status_under_filter([("io_uring_register", errno.EINVAL, 0)], "io_uring", tmp_path)
    assert plain["status"] == "ok", plain
    assert list(tmp_path.iterdir()) == []


def test_setup_refusals_name_the_cause() -> None:
    assert "io_uring is disabled on this host" in rings.setup_refusal(errno.EPERM, sysctl="2")
    assert "kernel.io_uring_group" in rings.setup_refusal(errno.EPERM, sysctl="1")
    assert "seccomp filter or security module" in rings.setup_refusal(errno.EPERM, sysctl="0")
    assert "no kernel.io_uring_disabled knob" in rings.setup_refusal(errno.EPERM, sysctl=None)
    assert "CAP_SYS_NICE" in rings.setup_refusal(errno.EPERM, sqpoll=True, sysctl="0")
    assert "no io_uring (CONFIG_IO_URING off)" in rings.setup_refusal(errno.ENOSYS)
    assert rings.setup_refusal(errno.ENOMEM).startswith("io_uring_setup: ENOMEM (Cannot allocate memory)")


@pytest.mark.timeout(120)
def test_a_build_without_io_uring_and_libaio_says_so(tmp_path: Path) -> None:
    """setup.py's switches leave the engines out; the module still builds, imports and runs psync."""
    pytest.importorskip("setuptools")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "iobench" / "loops").mkdir(parents=True)
    shutil.copy(root / "setup.py", tmp_path)
    for name in ("_native.c", "_async.c", "_async.h", "_uring_net.c"):
        shutil.copy(root / "iobench" / "loops" / name, tmp_path / "iobench" / "loops")
    env = {**os.environ, "IOBENCH_NO_URING": "1", "IOBENCH_NO_LIBAIO": "1"}
    built = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (library,) = (tmp_path / "iobench" / "loops").glob("_native*.so")
    script = f"""
import importlib.util, json, sys, tempfile
spec = importlib.util.spec_from_file_location("iobench.loops._native", {str(library)!r})
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
sys.modules["iobench.loops._native"] = module
from iobench.engine.protocol import Protocol
from iobench.engine.runner import run_case
from iobench.experiments import get_experiment
out = {{"uring": module.uring_support(), "aio": module.libaio_support(), "types": [hasattr(module, "Uring"), hasattr(module, "Aio")]}}
for method in ("io_uring", "libaio", "psync"):
    case = {json.dumps(_case())} | {{"method": method}}
    result = run_case(get_experiment("async-io"), case, Protocol(warmup=0, min_reps=1, max_reps=1), tempfile.mkdtemp())
    out[method] = [result.summary["status"], result.summary.get("reason", ""), result.rows[0]["engine"]]
print(json.dumps(out))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["uring"] == "built without io_uring: IOBENCH_NO_URING was set at build time"
    assert out["aio"] == "built without libaio: IOBENCH_NO_LIBAIO was set at build time"
    assert out["types"] == [False, False]
    assert out["io_uring"][:2] == ["unsupported", out["uring"]]
    assert out["libaio"][:2] == ["unsupported", out["aio"]]
    assert out["psync"] == ["ok", "", "native"]


def test_submit_and_reap_apply_only_where_the_loop_submits_and_reaps() -> None:
    experiment = get_experiment("async-io")
    for method in METHODS:
        ignored = experiment.irrelevant_params(_case(method=method))
        looped = method in ("libaio", "io_uring", "io_uring-fixed")
        assert ("reap" in ignored, "submit" in ignored) == (not looped, not looped), method
