"""zero-byte-recv and async-send over ``--peer``: the roles zero-byte-sender, echo-driver and
receive-frames on a real ``iobench serve`` subprocess on loopback.

The dialing roles connect back to the client's listener; their go/ack bytes travel on the
sync connection. Rows must have the forked path's columns, with the peer column HOST:PORT.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import iobench
from iobench.experiments.async_send import INFLIGHT_MODES, URING_MODES
from iobench.peer import client as peer_client
from iobench.peer import protocol
from iobench.peer.address import PeerAddress
from iobench.peer.client import PeerError, RemotePeer
from iobench.peer.roles import FRAME_MODES, MAX_ROUND_TRIPS, RoleError, check_limits, validate

from .helpers import IOBENCH, ONE_REP
from .peer_server import Served, start_server

#: Long enough for the client's set-up between a role's 'c'/ready and its first go byte.
ROLE_TIMEOUT = 5.0
ONE = {"warmup": 0, "min_reps": 1, "max_reps": 1}
#: Two repetitions: the second runs on the same control connection (zero-byte-recv: the same
#: role, a second 'g'; async-send: a second role).
TWO = {"warmup": 0, "min_reps": 2, "max_reps": 2}
ZBR = {"connections": 8, "messages": 64, "burst": 4, "recv_buffer": "4KiB", "msg_size": 64, "pool_buffers": 4}


@pytest.fixture
def served() -> Iterator[Served]:
    server = start_server(timeout=ROLE_TIMEOUT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def served_short() -> Iterator[Served]:
    """A server with the peer tests' short timeout (0.5 s): for the bounded waits."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


def _peer(served: Served) -> RemotePeer:
    return RemotePeer(PeerAddress("127.0.0.1", served.port), timeout_s=5)


def _by(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[k] for k in keys): row for row in rows}


# ------------------------------------------------------------------ zero-byte-recv


def test_zero_byte_recv_over_a_peer_has_the_forked_rows_shape(served: Served) -> None:
    values = {**ZBR, "strategy": ["prepost", "zero-byte", "zero-byte-threads", "uring-bufring"], **TWO}
    forked = iobench.run("zero-byte-recv", **values).records()
    remote = iobench.run("zero-byte-recv", peer=served.address, **values).records()
    assert len(forked) == len(remote) == 8
    assert [sorted(r) for r in remote] == [sorted(r) for r in forked]
    assert {r["peer"] for r in forked} == {"fork"}
    assert {r["peer"] for r in remote} == {served.address}
    local = _by(forked, "strategy")
    for row in remote:  # every repetition
        key = (row["strategy"],)
        assert row["status"] == local[key]["status"], row["status_reason"]
        if row["status"] != "ok":  # uring-bufring on a kernel without provided-buffer rings
            assert row["status_reason"] == local[key]["status_reason"]
            continue
        assert row["ops"] == 64 and row["bytes"] == 64 * 64
        # The 0-byte recv probe ran on a connection from the peer, as on a forked one.
        assert (row["recv0_idle"], row["recv0_returned"], row["recv0_left_queued"]) == ("EAGAIN", 0, 1)
        # Same kernel, same CLOCK_MONOTONIC: the sender's stamps give real latencies.
        assert 0 < row["lat_p50_ns"] <= row["lat_p99_ns"]
        assert row["buffer_bytes_held"] == local[key]["buffer_bytes_held"]


def test_zero_byte_recv_latency_is_left_out_when_the_peer_has_another_clock(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This host pretends to be another boot: the peer's CLOCK_MONOTONIC stamps mean nothing here.
    monkeypatch.setattr(peer_client, "boot_id", lambda: "another-boot")
    (row,) = iobench.run(
        "zero-byte-recv", peer=served.address, **{**ZBR, "strategy": "zero-byte"}, **ONE
    ).records()
    assert row["status"] == "ok" and row["ops"] == 64
    assert row["lat_p50_ns"] is None and row["lat_p99_ns"] is None


def test_a_role_that_cannot_dial_back_fails_at_once(served: Served) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: the role's connect is refused
        port = unused.getsockname()[1]
        peer = _peer(served)
        try:
            role = peer.dial("zero-byte-sender", {"port": port, "connections": 1, "messages": 1,
                                                  "msg_size": 8, "burst": 1})  # fmt: skip
            with pytest.raises(PeerError) as caught:
                role.ready()
        finally:
            peer.close()
    assert str(caught.value).startswith(
        f"the peer {served.address} refused: role zero-byte-sender did not start: child "
    )
    assert str(caught.value).endswith("ConnectionRefusedError: [Errno 111] Connection refused (ECONNREFUSED)")


def test_accept_takes_only_the_peers_connections(served: Served) -> None:
    peer = _peer(served)
    try:
        listener = peer.listener(backlog=8)
        assert listener.getsockname()[0] == "127.0.0.1"  # the control connection's local address
        stranger = socket.socket()
        stranger.bind(("127.0.0.2", 0))  # another address than the peer's
        stranger.connect(listener.getsockname())
        role = peer.dial("echo-driver", {"port": listener.getsockname()[1], "connections": 2,
                                         "messages": 1, "msg_size": 4})  # fmt: skip
        sync, *conns = role.accept(listener, 3)
        assert {s.getpeername()[0] for s in (sync, *conns)} == {"127.0.0.1"}
        assert stranger.recv(1) == b""  # closed by accept
        role.ready()
        sync.sendall(b"g")
        for conn in conns:  # echo one round trip each, by hand
            conn.sendall(conn.recv(4, socket.MSG_WAITALL))
            assert conn.recv(1) == b""  # the driver shut its side after its one round trip
        result, rusage = role.wait(5)
        assert result["round_trips"] == 2 and result["lat_p50_ns"] > 0 and rusage["user_ns"] >= 0
    finally:
        for sock in (stranger, listener, sync, *conns):
            sock.close()
        peer.close()


def test_a_dialing_role_waits_for_its_go_byte_no_longer_than_the_server_timeout(served_short: Served) -> None:
    peer = _peer(served_short)
    try:
        listener = peer.listener(backlog=4)
        role = peer.dial("echo-driver", {"port": listener.getsockname()[1], "connections": 1,
                                         "messages": 1, "msg_size": 4})  # fmt: skip
        socks = role.accept(listener, 2)
        role.ready()
        # No 'g' ever comes: the role's read on the sync connection times out (--timeout 0.5).
        with pytest.raises(
            PeerError, match=r"refused: role echo-driver failed: child \d+ failed: BlockingIOError"
        ):
            role.wait(5)
    finally:
        for sock in (listener, *socks):
            sock.close()
        peer.close()


def test_accept_waits_no_longer_than_the_peer_timeout_and_abandons_the_role(served: Served) -> None:
    peer = RemotePeer(PeerAddress("127.0.0.1", served.port), timeout_s=0.5)
    listener = peer.listener(backlog=4)
    try:
        role = peer.dial("echo-driver", {"port": listener.getsockname()[1], "connections": 1,
                                         "messages": 1, "msg_size": 4})  # fmt: skip
        with pytest.raises(PeerError) as caught:
            role.accept(listener, 3)  # the role makes 2 (sync + 1)
        assert str(caught.value) == f"the peer {served.address} opened 2 of 3 connections within 0.5 s"
        with pytest.raises(
            PeerError, match=r"^the control connection to the peer 127\.0\.0\.1:\d+ is closed$"
        ):
            role.wait(1)
    finally:
        listener.close()
        peer.close()


# ------------------------------------------------------------------ async-send


def test_async_send_over_a_peer_has_the_forked_rows_shape(served: Served) -> None:
    modes = ["echo-selectors", "echo-asyncio", "inflight-random", "uring-linked-waitall"]
    values = {"mode": modes, "concurrency": 2, "messages": 40, "msg_size": "2KiB", **TWO}
    forked = iobench.run("async-send", **values).records()
    remote = iobench.run("async-send", peer=served.address, **values).records()
    assert len(forked) == len(remote) == 8
    assert [sorted(r) for r in remote] == [sorted(r) for r in forked]
    assert {r["peer"] for r in remote} == {served.address}
    local = _by(forked, "mode")
    for row in remote:  # every repetition
        mode = row["mode"]
        assert row["status"] == local[(mode,)]["status"], row["status_reason"]
        if row["status"] != "ok":  # uring-* without io_uring
            continue
        assert row["sizes_ok"] is True
        if mode.startswith("echo-"):
            assert row["round_trips"] == 80 and row["ops"] == 80
            assert 0 < row["lat_p50_ns"] <= row["lat_p99_ns"]
            assert row["peer_ctx_vol"] >= 0 and row["peer_ctx_invol"] >= 0
            assert row["order_ok"] is None
        else:
            assert row["order_ok"] is True
            assert row["messages_verified"] == 40
            assert row["received_bytes"] == local[(mode,)]["received_bytes"] == row["bytes"]


def test_async_send_writer_modes_are_unsupported_with_a_peer(served: Served) -> None:
    rows = iobench.run(
        "async-send", peer=served.address, mode=["threads-sendall", "threads-locked"], concurrency=2, **ONE
    ).records()
    assert [(r["status"], r["status_reason"], r["peer"]) for r in rows] == [
        ("unsupported", f"{mode} writes to an AF_UNIX socketpair on this host: it cannot reach a peer host (--peer)",
         served.address)
        for mode in ("threads-sendall", "threads-locked")
    ]  # fmt: skip


def test_async_send_cases_past_a_roles_limits_are_unsupported(served: Served) -> None:
    rows = iobench.run(
        "async-send",
        peer=served.address,
        mode=["echo-selectors", "inflight-100-200-150"],
        concurrency=2,
        messages=MAX_ROUND_TRIPS // 2 + 1,
        **ONE,
    ).records()
    assert [(r["mode"], r["status"], r["status_reason"]) for r in rows] == [
        ("echo-selectors", "unsupported",
         f"--peer: echo-driver records at most {MAX_ROUND_TRIPS:,} round trips (connections x messages)"),
        ("inflight-100-200-150", "unsupported",
         f"--peer: parameter 'messages'={MAX_ROUND_TRIPS // 2 + 1} is outside 1..1000000"),
    ]  # fmt: skip


def test_the_receiver_role_refuses_a_stream_it_may_not_hold(served: Served) -> None:
    params = {"mode": "inflight-random", "messages": 200, "msg_size": 16 << 20, "rcvbuf": None}
    with pytest.raises(
        RoleError, match=r"^receive-frames holds the whole stream to check it: [\d,]+ bytes is more"
    ):
        check_limits("receive-frames", params)
    peer = _peer(served)  # a client that skips the check: the role refuses before it is ready
    try:
        role = peer.start("receive-frames", params)
        with pytest.raises(
            PeerError, match=r"role receive-frames did not start: .*RoleError: receive-frames holds"
        ):
            role.connect()
    finally:
        peer.close()


def test_cli_async_send_echo_with_peer_in_a_real_process(served: Served, tmp_path: Path) -> None:
    done = subprocess.run(
        [*IOBENCH, "run", "async-send", "--mode", "echo-threads", "--concurrency", "2", "--messages", "20",
         *ONE_REP, "--peer", served.address, "--out", str(tmp_path), "-q", "--json", "--rows"],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["rows"]
    assert row["peer"] == served.address and row["sizes_ok"] is True and row["round_trips"] == 40


# ------------------------------------------------------------------ parameter validation

VALID = {
    "zero-byte-sender": {"port": 9, "connections": 2, "messages": 10, "msg_size": 64, "burst": 2},
    "echo-driver": {"port": 9, "connections": 2, "messages": 10, "msg_size": 64},
    "receive-frames": {"mode": "inflight-random", "messages": 10, "msg_size": 64, "rcvbuf": None},
}
REFUSED = [
    ("zero-byte-sender", {"port": 0}, "parameter 'port'=0 is outside 1..65535"),
    ("zero-byte-sender", {"port": "9"}, "parameter 'port' must be an integer"),
    ("zero-byte-sender", {"port": True}, "parameter 'port' must be an integer"),
    ("zero-byte-sender", {"port": 9.0}, "parameter 'port' must be an integer"),
    ("zero-byte-sender", {"port": None}, "parameter 'port' must be an integer"),
    ("zero-byte-sender", {"connections": 100_001}, "parameter 'connections'=100001 is outside 1..100000"),
    ("zero-byte-sender", {"msg_size": 7}, "parameter 'msg_size'=7 is outside 8..67108864"),
    ("zero-byte-sender", {"burst": 0}, "parameter 'burst'=0 is outside 1..10000000"),
    ("zero-byte-sender", {"host": "192.0.2.1"}, "role zero-byte-sender takes no parameter 'host'"),
    ("echo-driver", {"connections": 1025}, "parameter 'connections'=1025 is outside 1..1024"),
    ("echo-driver", {"msg_size": 1 << 30}, "parameter 'msg_size'=1073741824 is outside 1..16777216"),
    ("echo-driver", {"messages": [1]}, "parameter 'messages' must be an integer"),
    ("echo-driver", {"path": "/etc/passwd"}, "role echo-driver takes no parameter 'path'"),
    (
        "receive-frames",
        {"mode": "threads-sendall"},
        "parameter 'mode' must be one of " + ", ".join(FRAME_MODES),
    ),
    ("receive-frames", {"mode": 3}, "parameter 'mode' must be one of " + ", ".join(FRAME_MODES)),
    ("receive-frames", {"messages": 10**6 + 1}, "parameter 'messages'=1000001 is outside 1..1000000"),
    ("receive-frames", {"rcvbuf": -1}, "parameter 'rcvbuf'=-1 is outside 0..1073741824"),
    ("receive-frames", {"port": 9}, "role receive-frames takes no parameter 'port'"),
]


@pytest.mark.parametrize(("role", "change", "message"), REFUSED)
def test_validate_refuses(role: str, change: dict[str, Any], message: str) -> None:
    validate(role, VALID[role])  # the base is valid
    with pytest.raises(RoleError) as caught:
        validate(role, {**VALID[role], **change})
    assert str(caught.value) == message


def test_a_missing_parameter_is_refused() -> None:
    with pytest.raises(RoleError, match=r"^parameter 'burst' must be an integer$"):
        validate("zero-byte-sender", {k: v for k, v in VALID["zero-byte-sender"].items() if k != "burst"})


def test_the_server_refuses_bad_role_parameters_with_one_error_frame(served: Served) -> None:
    for role, change, message in REFUSED:
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            protocol.send(sock, {"type": "hello", "version": iobench.__version__, "token": None}, 5)
            assert protocol.receive(sock, 5)["type"] == "welcome"
            protocol.send(sock, {"type": "run", "role": role, "params": {**VALID[role], **change}}, 5)
            assert protocol.receive(sock, 5) == {"type": "error", "code": "params", "message": message}
            assert sock.recv(1) == b""  # and closed
    assert served.proc.poll() is None


def test_frame_modes_are_async_sends_receiver_modes() -> None:
    assert FRAME_MODES == INFLIGHT_MODES + URING_MODES
