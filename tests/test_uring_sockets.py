"""io_uring in the socket experiments: provided-buffer rings, linked sends, SEND_ZC.

Exact where the kernel makes it exact: the ring that runs dry is set up on purpose (one buffer,
data already waiting on two connections), the counters of each loop add up, and a kernel or
filter without a feature gives an ``unsupported`` row naming it.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import struct
import threading
import time
from array import array
from pathlib import Path
from typing import Any

import pytest

from iobench.engine.protocol import Protocol
from iobench.engine.runner import run_case
from iobench.errors import ParamError
from iobench.experiments import get_experiment
from iobench.experiments.async_send import URING_MODES
from iobench.loops import engines
from iobench.loops.buffers import page_aligned_buffer
from tests.seccomp import run_filtered

native = engines._load_native()[0]
needs_native = pytest.mark.skipif(native is None, reason="the C extension is not built here")
TWO = Protocol(warmup=0, min_reps=2, max_reps=2, max_case_time=60 * 10**9, target_ci=100.0)


def _case(name: str, **given: Any) -> dict[str, Any]:
    experiment = get_experiment(name)
    return {p.name: (p.default[0] if p.sweep else p.default) for p in experiment.params} | given


def _run(name: str, tmp_path: Path, **given: Any) -> Any:
    result = run_case(get_experiment(name), _case(name, **given), TWO, tmp_path)
    if result.summary["status"] == "unsupported":
        pytest.skip(result.summary["reason"])
    assert result.summary["status"] == "ok", result.summary
    return result


# ------------------------------------------------------------------ provided-buffer ring


@needs_native
def test_a_dry_ring_ends_the_receive_with_enobufs_and_it_is_armed_again() -> None:
    """One buffer, data already waiting on two connections: arming both receives, the first takes
    the buffer, the second finds none (ENOBUFS); once the buffer is back it is armed again and
    its message arrives too."""
    ring = native.Uring(8, cq_entries=64)
    buffers = page_aligned_buffer(4096)
    pairs = [socket.socketpair() for _ in range(2)]
    go_read, go_write = os.pipe()
    try:
        ring.setup_buf_ring(buffers, 1, 4096)
        for _, sender in pairs:
            sender.sendall(struct.pack("q", time.monotonic_ns()) + bytes(56))
        fds = [receiver.fileno() for receiver, _ in pairs]
        latencies = array("q", bytes(16))
        ring.recv_bufring(fds, 0, 64, 1, go_write, array("q"), arm_only=True)
        found = ring.recv_bufring(fds, 2, 64, 1, go_write, latencies)
        assert (found["messages"], found["enobufs"], found["rearms"], found["recv_cqes"]) == (2, 1, 1, 2)
        assert os.read(go_read, 8) == b"aa"  # one ack per message (burst 1)
        assert all(0 < lat < 10**10 for lat in latencies)
    finally:
        ring.close()
        buffers.close()
        os.close(go_read)
        os.close(go_write)
        for pair in pairs:
            for sock in pair:
                sock.close()


@pytest.mark.timeout(60)
def test_uring_bufring_holds_k_buffers_whatever_n(tmp_path: Path) -> None:
    small = {"connections": 8, "messages": 60, "msg_size": 256, "recv_buffer": 4096, "burst": 8}
    result = _run("zero-byte-recv", tmp_path, strategy="uring-bufring", pool_buffers=1, **small)
    for row in result.rows:
        assert row["buffer_bytes_held"] == 4096  # K x B: one buffer, for 8 connections
        assert row["ops"] == 60 and row["bytes"] == 60 * 256 and row["engine"] == "native"
        # Every receive that ended was armed again; the ring of one buffer runs dry now and then.
        assert row["recv_rearms"] == row["enobufs_completions"]
        assert row["lat_p50_ns"] <= row["lat_p99_ns"]
    larger = _run("zero-byte-recv", tmp_path, strategy="uring-bufring", pool_buffers=4, **small)
    assert {row["buffer_bytes_held"] for row in larger.rows} == {4 * 4096}


def test_uring_bufring_needs_a_power_of_two_of_buffers() -> None:
    experiment = get_experiment("zero-byte-recv")
    with pytest.raises(ParamError, match="power of two"):
        experiment.check_case(_case("zero-byte-recv", strategy="uring-bufring", pool_buffers=3))
    experiment.check_case(_case("zero-byte-recv", strategy="zero-byte", pool_buffers=3))  # no ring there


# ------------------------------------------------------------------ sends in flight


@needs_native
@pytest.mark.timeout(60)
def test_a_linked_short_send_lets_the_next_message_in_and_waitall_does_not() -> None:
    """16 KiB messages into the smallest send buffer and receive window, the reader late: sends
    complete short. Linked without MSG_WAITALL the chain goes on after a short send (the stream
    breaks); with MSG_WAITALL every send is whole and the chain keeps the stream."""
    rng = random.Random(2)
    messages = [struct.pack("!II", i, s) + bytes([i % 251 + 1]) * s for i, s in enumerate(
        rng.randint(8192, 16384) for _ in range(60))]  # fmt: skip
    outcome = {}
    for waitall in (False, True):
        ring = native.Uring(16)
        listener = socket.create_server(("127.0.0.1", 0))
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
        reader.connect(listener.getsockname())
        writer, _ = listener.accept()
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 0)
        got = bytearray()

        def read(reader: socket.socket = reader, got: bytearray = got) -> None:
            time.sleep(0.05)
            while data := reader.recv(65536):
                got.extend(data)

        thread = threading.Thread(target=read)
        thread.start()
        try:
            found = ring.send_inflight(writer.fileno(), messages, 8, True, waitall)
        finally:
            writer.shutdown(socket.SHUT_WR)
            thread.join(30)
            ring.close()
            for sock in (writer, reader, listener):
                sock.close()
        assert found["sqes"] == len(messages) + found["resent"]
        assert found["resent"] == found["short_sends"] + found["cancelled"]
        outcome[waitall] = (found["short_sends"], bytes(got) == b"".join(messages), len(got))
    total = sum(map(len, messages))
    assert outcome[True] == (0, True, total)
    shorts, intact, length = outcome[False]
    assert shorts > 0 and not intact and length == total  # every byte arrived, not in order


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", URING_MODES)
def test_uring_send_modes_count_what_they_resent(mode: str, tmp_path: Path) -> None:
    result = _run("async-send", tmp_path, mode=mode, concurrency=8, messages=40, msg_size=16384)
    for row in result.rows:
        assert row["ops"] == 40 and row["received_bytes"] == row["bytes"] and row["engine"] == "native"
        assert row["send_calls"] == 40 + row["uring_resent"]
        assert row["uring_resent"] == row["short_sends"] + row["uring_cancelled"]
        if mode == "uring-linked-waitall":  # the one combination io_uring keeps in order and whole
            assert (row["order_ok"], row["sizes_ok"], row["short_sends"]) == (True, True, 0)
            assert row["completed_out_of_order"] == 0


# ------------------------------------------------------------------ SEND_ZC


@pytest.mark.timeout(60)
def test_uring_send_zc_gets_a_notification_per_send(tmp_path: Path) -> None:
    result = _run("msg-zerocopy", tmp_path, method="uring-send-zc", msg_size=4096, transfer=64 << 10)
    for row in result.rows:
        assert (row["zc_sends"], row["uring_send_cqes"], row["zc_completions"]) == (16, 16, 16)
        assert row["zc_copied"] == 16  # loopback: the kernel copied anyway, and says so
        assert row["integrity_ok"] and row["completions_ok"] and row["engine"] == "native"


# ------------------------------------------------------------------ refusals


def _status(rules: list, name: str, scratch: Path, **given: Any) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        result = run_case(get_experiment(name), _case(name, **given), TWO, scratch)
        return {"status": result.summary["status"], "reason": result.summary.get("reason", "")}

    return run_filtered(rules, work)


@needs_native
@pytest.mark.timeout(60)
def test_missing_io_uring_features_are_unsupported_rows(tmp_path: Path) -> None:
    small = {"connections": 2, "messages": 4, "burst": 1, "pool_buffers": 1, "recv_buffer": 4096}
    setup = _status(
        [("io_uring_setup", errno.ENOSYS)], "zero-byte-recv", tmp_path, strategy="uring-bufring", **small
    )
    assert setup["status"] == "unsupported" and setup["reason"].startswith("io_uring_setup: ENOSYS")
    # IORING_REGISTER_PBUF_RING is opcode 22: a kernel before 5.19 answers EINVAL.
    ring = _status(
        [("io_uring_register", errno.EINVAL, 22)],
        "zero-byte-recv",
        tmp_path,
        strategy="uring-bufring",
        **small,
    )
    assert ring["status"] == "unsupported"
    assert ring["reason"].startswith(
        "provided-buffer rings: io_uring_register(IORING_REGISTER_PBUF_RING): EINVAL"
    )
    # IORING_REGISTER_PROBE is opcode 8: without it nobody can tell whether SEND_ZC exists.
    probe = _status(
        [("io_uring_register", errno.EINVAL, 8)], "msg-zerocopy", tmp_path, method="uring-send-zc", msg_size=4096,
        transfer=65536,
    )  # fmt: skip
    assert probe["status"] == "unsupported" and "IORING_OP_SEND_ZC" in probe["reason"]
    linked = _status(
        [("io_uring_setup", errno.EPERM)], "async-send", tmp_path, mode="uring-linked", messages=4
    )
    assert linked["status"] == "unsupported" and "EPERM" in linked["reason"]
