"""``iobench serve`` and ``--peer``: the peer of the socket experiments as a real server process.

The server runs as ``python -m iobench serve --port 0`` (its one stdout line gives the port);
clients are the real client code, the CLI and raw sockets. Server timeouts are short here
(hidden ``--timeout``) so every wait ends quickly.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import iobench
from iobench import __version__
from iobench.cli import cli
from iobench.errors import ParamError
from iobench.peer import protocol
from iobench.peer.address import DEFAULT_PORT, PeerAddress, parse_peer
from iobench.peer.client import PeerRefused, RemotePeer

from .helpers import IOBENCH
from .peer_server import LINE, TIMEOUT, Served, start_server

SMALL = {
    "transport": "tcp",
    "transfer": "256KiB",
    "chunk": "64KiB",
    "warmup": 0,
    "min_reps": 2,
    "max_reps": 2,
}


@pytest.fixture
def served() -> Iterator[Served]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def served_with_token() -> Iterator[Served]:
    server = start_server("--token", "s3cret")
    try:
        yield server
    finally:
        server.stop()


def _raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def _hello(sock: socket.socket, version: str = __version__, token: str | None = None) -> dict:
    protocol.send(sock, {"type": "hello", "version": version, "token": token}, 5)
    return protocol.receive(sock, 5)


def _drain_once(address: PeerAddress, size: int = 1 << 16) -> dict:
    """One drain role run end to end with the real client: the report's result."""
    peer = RemotePeer(address, timeout_s=5)
    try:
        role = peer.start("drain", {"rcvbuf": None, "sndbuf": None})
        data = role.connect()
        try:
            data.sendall(b"x" * size)
            data.shutdown(socket.SHUT_WR)
            assert int.from_bytes(data.recv(8, socket.MSG_WAITALL), sys.byteorder) == size
        finally:
            data.close()
        result, rusage = role.wait(5)
        assert rusage["user_ns"] >= 0 and rusage["sys_ns"] >= 0
        return result
    finally:
        peer.close()


# ------------------------------------------------------------------ the server process


def test_serve_prints_one_line_and_stops_cleanly_on_sigterm(served: Served) -> None:
    assert LINE.match(served.line).group(2) == __version__  # type: ignore[union-attr]
    code, rest, err = served.stop()
    assert code == 0
    assert rest == ""  # exactly one line on stdout
    assert "stopped" in err and "Traceback" not in err


def test_sigterm_kills_a_running_role_child(served: Served) -> None:
    peer = RemotePeer(PeerAddress("127.0.0.1", served.port), timeout_s=5)
    role = peer.start("drain", {"rcvbuf": None, "sndbuf": None})
    data = role.connect()  # the role child now waits for data
    try:
        family = _descendants(served.proc.pid)
        assert len(family) >= 2  # the handler and its role child
        code, _, _ = served.stop()
        assert code == 0
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in family) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(_alive(pid) for pid in family)
        assert data.recv(1) == b""  # the role's end is gone
    finally:
        data.close()
        peer.close()


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_non_loopback_bind_needs_a_token() -> None:
    done = subprocess.run(
        [*IOBENCH, "serve", "--bind", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "Error: --bind 0.0.0.0 is reachable from other hosts: give --token T (clients pass the same "
        "with --peer-token or IOBENCH_PEER_TOKEN)"
    ]
    result = CliRunner().invoke(cli, ["serve", "--bind", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 2 and "give --token T" in result.output


def test_default_port() -> None:
    assert DEFAULT_PORT == 7300
    assert parse_peer("example.org") == PeerAddress("example.org", 7300)


# ------------------------------------------------------------------ --peer values


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("127.0.0.1:7301", PeerAddress("127.0.0.1", 7301)),
        ("host-a.example", PeerAddress("host-a.example", 7300)),
        ("[::1]:9000", PeerAddress("::1", 9000)),
        ("::1", PeerAddress("::1", 7300)),
    ],
)
def test_parse_peer(value: str | None, expected: PeerAddress | None) -> None:
    assert parse_peer(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
        ("127.0.0.1:http", "the port must be a number from 1 to 65535"),
        ("host name", "is not a host name or an IP address"),
        ("[::1", "needs its ']'"),
        ("", "--peer-token: give a non-empty token"),
    ],
)
def test_parse_peer_refuses(value: str, message: str) -> None:
    with pytest.raises(ParamError, match=re.escape(message)):
        parse_peer(value or "127.0.0.1", token=None if value else "")


def test_an_unreachable_peer_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connection refused
        result = CliRunner().invoke(
            cli, ["run", "sock-buffer", "--peer", f"127.0.0.1:{port}", "--out", str(tmp_path), "-q"]
        )
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: cannot reach the peer 127.0.0.1:{port}: Connection refused"
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ sock-buffer over --peer


def test_sock_buffer_over_a_peer_has_the_forked_rows_shape(served: Served) -> None:
    values = {**SMALL, "buffers": ["unset", "rcvbuf"], "bufsize": 65536}
    forked = iobench.run("sock-buffer", **values).records()
    remote = iobench.run("sock-buffer", peer=served.address, **values).records()
    assert len(forked) == len(remote) == 4
    assert [sorted(r) for r in remote] == [sorted(r) for r in forked]
    assert {r["peer"] for r in forked} == {"fork"}
    assert {r["peer"] for r in remote} == {served.address}
    for row in remote:
        assert row["status"] == "ok" and row["integrity_ok"] is True
        assert row["bytes"] == 256 << 10
        assert row["peer_cpu_ns"] > 0 and row["effective_rcvbuf"] > 0 and row["effective_sndbuf"] > 0
    # SO_RCVBUF=64 KiB was requested on the peer's listener: Linux doubles it, autotuning is off.
    rcvbuf = [r for r in remote if r["buffers"] == "rcvbuf"]
    assert {r["effective_rcvbuf"] for r in rcvbuf} == {131072} == {r["effective_rcvbuf_end"] for r in rcvbuf}


def test_unix_transport_is_unsupported_with_a_peer(served: Served) -> None:
    run = iobench.run(
        "sock-buffer", peer=served.address, **{**SMALL, "transport": "unix", "buffers": "unset"}
    )
    (row,) = run.records()
    assert row["status"] == "unsupported"
    assert row["status_reason"] == (
        "transport=unix is an AF_UNIX socketpair on this host: it cannot reach a peer host (--peer)"
    )


def test_cli_run_with_peer_in_a_real_process(served: Served, tmp_path: Path) -> None:
    done = subprocess.run(
        [*IOBENCH, "run", "sock-buffer", "--transport", "tcp", "--buffers", "sndbuf", "--bufsize", "65536",
         "--transfer", "256KiB", "--warmup", "0", "--min-reps", "1", "--max-reps", "1",
         "--out", str(tmp_path), "-q", "--json", "--rows"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "IOBENCH_PEER": served.address},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    import json

    (row,) = json.loads(done.stdout)["rows"]
    assert row["peer"] == served.address and row["integrity_ok"] is True
    meta = json.loads(next(tmp_path.iterdir()).joinpath("meta.json").read_text())
    assert meta["peer"]["address"] == served.address
    assert meta["peer"]["host"]["hostname"] == os.uname().nodename


# ------------------------------------------------------------------ handshake, token, busy


def test_version_mismatch_is_one_line_naming_both_versions_on_both_sides(served: Served) -> None:
    peer = RemotePeer(PeerAddress("127.0.0.1", served.port), timeout_s=5)
    with pytest.raises(PeerRefused) as caught:
        peer.connect(version="0.0.1")
    assert str(caught.value) == (
        f"the peer {served.address} runs iobench {__version__}, this client runs iobench 0.0.1: "
        "run the same version on both ends"
    )
    _, _, err = served.stop()
    (line,) = [ln for ln in err.splitlines() if "refused" in ln]
    assert re.fullmatch(
        rf"iobench serve: 127\.0\.0\.1:\d+: refused: version mismatch: the client runs iobench 0\.0\.1, "
        rf"this server runs iobench {re.escape(__version__)}",
        line,
    )


def test_token(served_with_token: Served, tmp_path: Path) -> None:
    port = served_with_token.port
    with pytest.raises(PeerRefused, match=r"refused this client: wrong token$"):
        RemotePeer(PeerAddress("127.0.0.1", port, "guess"), timeout_s=5).connect()
    with pytest.raises(
        PeerRefused, match=r"refused this client: this server needs a token \(--peer-token\)$"
    ):
        RemotePeer(PeerAddress("127.0.0.1", port), timeout_s=5).connect()
    result = CliRunner().invoke(
        cli,
        ["run", "sock-buffer", "--peer", served_with_token.address, "--peer-token", "guess",
         "--out", str(tmp_path), "-q"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"Error: the peer {served_with_token.address} refused this client: wrong token"
    )
    assert _drain_once(PeerAddress("127.0.0.1", port, "s3cret"))["bytes"] == 1 << 16


def test_a_second_client_is_told_busy(served: Served) -> None:
    first = RemotePeer(PeerAddress("127.0.0.1", served.port), timeout_s=5)
    first.connect()
    try:
        second = RemotePeer(PeerAddress("127.0.0.1", served.port), timeout_s=5)
        started = time.monotonic()
        with pytest.raises(PeerRefused) as caught:
            second.connect()
        assert time.monotonic() - started < 5
        assert str(caught.value) == (
            f"the peer {served.address} is busy: the peer is busy with another client (it serves 1 at a time)"
        )
    finally:
        first.close()
    assert _drain_once(PeerAddress("127.0.0.1", served.port))["bytes"] == 1 << 16


# ------------------------------------------------------------------ fuzzing the control protocol


def _frame(body: bytes, declared: int | None = None) -> bytes:
    return (len(body) if declared is None else declared).to_bytes(4, "big") + body


_HELLO = protocol.encode({"type": "hello", "version": __version__, "token": None})


def _fuzz_inputs(seed: int = 16) -> list[tuple[str, bytes, bool]]:
    """(kind, bytes to send, whether to half-close after) for every malformed input."""
    import json
    import random

    rng = random.Random(seed)
    cases: list[tuple[str, bytes, bool]] = []

    def add(kind: str, data: bytes, close: bool = True) -> None:
        cases.append((kind, data, close))

    for size in range(1, 4):  # a header cut short
        add("truncated", os.urandom(size))
    for _ in range(40):  # a body cut short
        body = json.dumps({"type": "hello", "version": __version__, "token": None}).encode()
        add("truncated", _frame(body)[: rng.randrange(4, len(body) + 4)])
        add("truncated", _HELLO + _frame(b'{"type":"run"}')[: rng.randrange(1, 10)])
    for declared in (
        protocol.MAX_FRAME + 1,
        1 << 20,
        1 << 31,
        (1 << 32) - 1,
        *(rng.randrange(protocol.MAX_FRAME + 1, 1 << 32) for _ in range(30)),
    ):
        add("huge", _frame(os.urandom(rng.randrange(0, 64)), declared))
        add("huge", _HELLO + _frame(b"{}", declared))
    for _ in range(50):  # not UTF-8 JSON
        add("non-json", _frame(os.urandom(rng.randrange(1, 200))))
    for text in ("", "{", "nul", "NaN", "Infinity", '{"type":"hello"', "\ud800", "[" * 100000 + "]" * 100000):
        add("non-json", _frame(text.encode("utf-8", "surrogatepass")))
    for value in ([], 1, "hello", None, True, 1.5, [{"type": "hello"}]):
        add("not-an-object", _frame(json.dumps(value).encode()))
    wrong_hellos = [
        {"type": "hello"},
        {"type": "hello", "version": 1, "token": None},
        {"type": "hello", "version": __version__, "token": 5},
        {"type": "hello", "version": __version__, "token": True},
        {"type": "hello", "version": None, "token": None},
        {"type": "hello", "version": [__version__], "token": None},
        {"type": 7, "version": __version__, "token": None},
        {"type": "HELLO", "version": __version__, "token": None},
        {"type": "welcome", "version": __version__, "host": {}},
        {"type": "run", "role": "drain", "params": {}},
        {"type": "bye"},
        {"type": "hello", "version": "x" * 60000, "token": None},
        {"type": "hello", "version": __version__ + "-other", "token": None},
    ]
    for message in wrong_hellos:
        add("wrong-type", _frame(json.dumps(message).encode()))
    bad_runs = [
        {"type": "run", "role": "sh", "params": {}},
        {"type": "run", "role": "../../bin/sh", "params": {}},
        {"type": "run", "role": "drain", "params": {"path": "/etc/passwd"}},
        {"type": "run", "role": "drain", "params": {"rcvbuf": -1}},
        {"type": "run", "role": "drain", "params": {"rcvbuf": 1 << 40}},
        {"type": "run", "role": "drain", "params": {"rcvbuf": True}},
        {"type": "run", "role": "drain", "params": {"rcvbuf": "65536"}},
        {"type": "run", "role": "drain", "params": {"rcvbuf": 1.5}},
        {"type": "run", "role": "drain", "params": []},
        {"type": "run", "role": 1, "params": {}},
        {"type": "run", "role": "drain"},
        {"type": "hello", "version": __version__, "token": None},
        {"type": "report", "result": {}, "rusage": {}},
    ]
    # The roles that dial the client or check frames (tests/test_peer_roles.py): each parameter
    # wrong one way at a time, from otherwise valid requests.
    for role, good, wrongs in _NEW_ROLE_PARAMS:
        for name, value in wrongs:
            params = (
                {**good, name: value}
                if value is not _MISSING
                else {k: v for k, v in good.items() if k != name}
            )
            bad_runs.append({"type": "run", "role": role, "params": params})
    for message in bad_runs:
        add("bad-role", _HELLO + _frame(json.dumps(message).encode()))
    for _ in range(160):  # random frames with random fields, before and after the handshake
        values = [None, 0, -1, 1 << 62, "", "drain", "hello", "run", [], {}, {"rcvbuf": rng.randrange(-5, 5)}]
        # The new roles' names and parameters, never a complete set (a dialing role would dial).
        values += [role for role, _, _ in _NEW_ROLE_PARAMS]
        values.append({"port": rng.randrange(-5, 70000), "connections": rng.choice([0, 1, 2.5, "1"])})
        values.append({"mode": rng.choice(["inflight-random", "threads-sendall", 5]), "burst": 1})
        fields = {
            rng.choice(["type", "role", "params", "version", "token", "x"]): rng.choice(values)
            for _ in range(rng.randrange(0, 5))
        }
        prefix = _HELLO if rng.random() < 0.5 else b""
        add("random", prefix + _frame(json.dumps(fields).encode()))
    for _ in range(3):  # no close: only the server's deadline ends these
        add("stalled", _frame(b'{"type":"hel'), close=False)
        add("stalled", _HELLO, close=False)
    return cases


_MISSING = object()
#: (role, valid parameters, [(parameter, a wrong value or _MISSING)]) for the fuzzer.
_NEW_ROLE_PARAMS = [
    (
        "zero-byte-sender",
        {"port": 9, "connections": 2, "messages": 10, "msg_size": 64, "burst": 2},
        [("port", 0), ("port", 65536), ("port", "9"), ("port", True), ("port", 9.0), ("port", None),
         ("port", _MISSING), ("connections", 0), ("connections", 100_001), ("messages", 10**7 + 1),
         ("msg_size", 7), ("msg_size", (64 << 20) + 1), ("burst", 0), ("burst", [2]), ("host", "192.0.2.1"),
         ("path", "/etc/passwd")],
    ),
    (
        "echo-driver",
        {"port": 9, "connections": 2, "messages": 10, "msg_size": 64},
        [("port", -1), ("connections", 1025), ("connections", False), ("messages", 0),
         ("msg_size", 0), ("msg_size", (16 << 20) + 1), ("msg_size", "64"), ("messages", _MISSING),
         ("host", "127.0.0.1")],
    ),
    (
        "receive-frames",
        {"mode": "inflight-random", "messages": 10, "msg_size": 64, "rcvbuf": None},
        [("mode", "threads-sendall"), ("mode", "echo-threads"), ("mode", "../../bin/sh"), ("mode", 1),
         ("mode", None), ("mode", _MISSING), ("messages", 10**6 + 1), ("msg_size", 1.5), ("rcvbuf", -1),
         ("rcvbuf", (1 << 30) + 1), ("port", 9)],
    ),
]  # fmt: skip


def _answer_and_close(sock: socket.socket, limit_s: float) -> tuple[list[bytes], float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    chunks = []
    while time.monotonic() - started < limit_s:
        sock.settimeout(max(0.01, limit_s - (time.monotonic() - started)))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:  # closed with our bytes unread: a reset, also a close
            return chunks, time.monotonic() - started
        if not chunk:
            return chunks, time.monotonic() - started
        chunks.append(chunk)
    pytest.fail(f"the server kept the connection open for {limit_s} s")


def test_fuzzed_control_frames_never_crash_or_hang_the_server(served: Served) -> None:
    limit = TIMEOUT * 4 + 2  # a deadline, the busy grace and a slow machine's scheduling
    counts: dict[str, int] = {}
    answers = 0
    for index, (kind, data, close) in enumerate(_fuzz_inputs()):
        sock = _raw(served.port)
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
                if close:
                    sock.shutdown(socket.SHUT_WR)
            chunks, took = _answer_and_close(sock, limit)
        finally:
            sock.close()
        stream = b"".join(chunks)
        while len(stream) >= 4:  # whatever came back is well-framed protocol
            length = int.from_bytes(stream[:4], "big")
            message = protocol.decode(stream[4 : 4 + length])
            assert message["type"] in ("welcome", "error"), (kind, message)
            answers += message["type"] == "error"
            stream = stream[4 + length :]
        assert stream == b"", kind
        assert took < limit
        counts[kind] = counts.get(kind, 0) + 1
        assert served.proc.poll() is None, f"the server died on trial {index} ({kind})"
        if index % 100 == 0:
            assert _drain_once(PeerAddress("127.0.0.1", served.port))["bytes"] == 1 << 16
    slow = _slowloris(served.port, trials=3)
    counts["slowloris"] = slow
    total = sum(counts.values())
    print(f"\nfuzzed control frames: {total} trials {counts}; {answers} error answers")
    Path(os.environ.get("IOBENCH_FUZZ_COUNTS", "/dev/null")).write_text(f"{total} {counts}\n")
    assert total >= 400 and answers >= 300
    assert served.proc.poll() is None
    assert _drain_once(PeerAddress("127.0.0.1", served.port))["bytes"] == 1 << 16
    code, _, err = served.stop()
    assert code == 0 and "Traceback" not in err


def _slowloris(port: int, trials: int) -> int:
    """A byte every 0.1 s: the server drops the client when its frame deadline passes."""
    frame = _HELLO
    for _ in range(trials):
        sock = _raw(port)
        started = time.monotonic()
        try:
            for byte in frame:
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    break
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable:
                    break
            chunks, _ = _answer_and_close(sock, TIMEOUT * 4 + 2)
        finally:
            sock.close()
        took = time.monotonic() - started
        assert TIMEOUT * 0.8 < took < TIMEOUT * 4 + 2
        assert b"did not arrive in time" in b"".join(chunks)
    return trials


# ------------------------------------------------------------------ zero-copy and msg-zerocopy


def test_zero_copy_tcp_methods_use_the_peer_and_file_methods_do_not(served: Served, tmp_path: Path) -> None:
    values = {"method": ["tcp-sendfile", "sendfile"], "file_size": "256KiB", "bs": "64KiB"}
    protocol_values = {"warmup": 0, "min_reps": 1, "max_reps": 1}
    forked = iobench.run("zero-copy", dir=tmp_path, **values, **protocol_values).records()
    remote = iobench.run(
        "zero-copy", dir=tmp_path, peer=served.address, **values, **protocol_values
    ).records()
    assert [sorted(r) for r in remote] == [sorted(r) for r in forked]
    by_method = {r["method"]: r for r in remote}
    assert by_method["tcp-sendfile"]["peer"] == served.address
    assert by_method["tcp-sendfile"]["integrity_ok"] is True and by_method["tcp-sendfile"]["peer_cpu_ns"] > 0
    assert by_method["sendfile"]["peer"] == "" and by_method["sendfile"]["integrity_ok"] is True
    assert {r["method"]: r["peer"] for r in forked} == {"tcp-sendfile": "fork", "sendfile": ""}


def test_msg_zerocopy_over_a_peer(served: Served) -> None:
    values = {
        "method": ["send", "zerocopy", "zerocopy-unprivileged"],
        "msg_size": "64KiB",
        "transfer": "256KiB",
    }
    rows = iobench.run(
        "msg-zerocopy", peer=served.address, warmup=0, min_reps=1, max_reps=1, **values
    ).records()
    by_method = {r["method"]: r for r in rows}
    for method in ("send", "zerocopy"):
        assert by_method[method]["status"] == "ok", by_method[method]["status_reason"]
        assert by_method[method]["integrity_ok"] is True and by_method[method]["peer"] == served.address
    assert by_method["zerocopy"]["zc_sends"] > 0
    assert by_method["zerocopy-unprivileged"]["status"] == "unsupported"
    assert "cannot reach a peer host (--peer)" in by_method["zerocopy-unprivileged"]["status_reason"]


def test_a_peer_that_goes_away_mid_run_fails_the_cases_left_not_the_run(tmp_path: Path) -> None:
    """After the run's handshake the server dies (SIGKILL, as a crashed peer host would): every
    case still to run is recorded failed with the reason, and the run ends with exit status 3
    (a failed case), not as if the peer had never been reachable."""
    served = start_server()
    events: list[Any] = []

    def kill_at_start(event: Any) -> None:
        events.append(event)
        if type(event).__name__ == "RunStarted":
            served.proc.kill()
            served.proc.wait()

    run = iobench.run(
        "sock-buffer", transport="tcp", buffers="unset,rcvbuf", bufsize="64KiB", transfer="64KiB",
        peer=served.address, progress=kill_at_start, dir=tmp_path, out=tmp_path / "out",
        warmup=0, min_reps=1, max_reps=1,
    )  # fmt: skip
    served.stop()
    statuses = [row["status"] for row in run.records()]
    assert statuses == ["failed", "failed"]
    assert all(f"cannot reach the peer {served.address}" in row["status_reason"] for row in run.records())
    assert run.status == "complete"


def test_a_peer_address_that_is_not_iobench_says_so_in_one_line(tmp_path: Path) -> None:
    """An HTTP server where the peer should be: its reply reads as a 1.2 GB frame."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        args = [
            "run",
            "sock-buffer",
            "--transport",
            "tcp",
            "--peer",
            f"127.0.0.1:{port}",
            "--out",
            str(tmp_path),
            "-q",
        ]
        result = CliRunner().invoke(cli, args)
        thread.join(5)
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: the peer 127.0.0.1:{port} does not answer as an 'iobench serve' (")
