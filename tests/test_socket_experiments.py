"""sock-buffer, zero-byte-recv, async-send, msg-zerocopy: tiny real runs over loopback."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from iobench.engine.protocol import Protocol
from iobench.engine.runner import CaseResult, run_case
from iobench.experiments import get_experiment
from iobench.experiments.async_send import interleaving, message_sizes, verify_frames
from iobench.osutil import libc

ONE = Protocol(warmup=0, min_reps=1, max_reps=1, max_case_time=30 * 10**9, target_ci=100.0)


def run(name: str, folder: Path, **case: object) -> CaseResult:
    experiment = get_experiment(name)
    full = {p.name: (p.default[0] if p.sweep else p.default) for p in experiment.params} | case
    result = run_case(experiment, full, ONE, folder)
    assert result.summary["status"] in ("ok", "unsupported"), result.summary
    return result


def ok_rows(result: CaseResult) -> list[dict]:
    assert result.summary["status"] == "ok", result.summary
    return result.rows


# --- sock-buffer ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_requested_zero_buffer_is_clamped_up(tmp_path: Path, transport: str) -> None:
    for row in ok_rows(
        run("sock-buffer", tmp_path, transport=transport, buffers="both", bufsize=0, transfer=256 << 10)
    ):
        assert row["requested_rcvbuf"] == 0 and row["requested_sndbuf"] == 0
        # What getsockopt says on a socket given SO_RCVBUF=0: Linux's minimum, never 0.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
            assert row["effective_rcvbuf"] == probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) > 0
        assert row["effective_sndbuf"] > 0
        assert row["integrity_ok"] is True and row["bytes"] == 256 << 10


@pytest.mark.timeout(30)
def test_linux_doubles_the_request_and_unset_autotunes(tmp_path: Path) -> None:
    (row,) = ok_rows(
        run("sock-buffer", tmp_path, transport="tcp", buffers="rcvbuf", bufsize=65536, transfer=1 << 20)
    )
    assert row["effective_rcvbuf"] == 2 * 65536 == row["effective_rcvbuf_end"]  # set: no autotuning
    (unset,) = ok_rows(run("sock-buffer", tmp_path, transport="tcp", buffers="unset", transfer=4 << 20))
    assert unset["requested_rcvbuf"] is None
    assert unset["effective_rcvbuf_end"] > unset["effective_rcvbuf"]  # autotuning grew it
    assert unset["peer_cpu_ns"] > 0


# --- zero-byte-recv ------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_prepost_holds_n_buffers_and_zero_byte_a_small_pool(tmp_path: Path) -> None:
    n, size = 64, 16384
    common = {"connections": n, "recv_buffer": size, "messages": 200, "msg_size": 256, "pool_buffers": 2}
    (pre,) = ok_rows(run("zero-byte-recv", tmp_path, strategy="prepost", **common))
    (zero,) = ok_rows(run("zero-byte-recv", tmp_path, strategy="zero-byte", **common))
    (threads,) = ok_rows(run("zero-byte-recv", tmp_path, strategy="zero-byte-threads", **common))
    assert pre["buffer_bytes_held"] == n * size
    assert zero["buffer_bytes_held"] < n * size / 10 and threads["buffer_bytes_held"] < n * size / 10
    for row in (pre, zero, threads):
        assert row["ops"] == 200 and row["recv_calls"] >= 200
        assert 0 < row["lat_p50_ns"] <= row["lat_p99_ns"]
        assert row["rss_bytes"] > 0 and row["fd_soft_limit"] >= n
        # The real zero-length recv on one of the case's own TCP connections: EAGAIN when idle,
        # 0 with data, and the data stays queued.
        assert (row["recv0_idle"], row["recv0_returned"], row["recv0_left_queued"]) == ("EAGAIN", 0, 1)
        assert row["recv0_socket"] == "tcp"
    # One blocking 0-byte recv returned per wake-up, never an epoll_wait.
    assert threads["recv0_calls"] == threads["recv_calls"] and threads["select_calls"] == 0


@pytest.mark.timeout(30)
def test_zero_byte_threads_really_wait_in_a_zero_byte_recv_on_tcp(tmp_path: Path) -> None:
    from tests.straced import traced_window

    case = {
        "strategy": "zero-byte-threads",
        "connections": 4,
        "messages": 12,
        "msg_size": 256,
        "recv_buffer": 4096,
    }
    window = traced_window("zero-byte-recv", case, tmp_path)
    assert window.row["status"] == "ok", window.row
    zero = [
        c for c in window.calls if c.name == "recvfrom" and "<TCP:[" in c.text and ", NULL, 0, 0" in c.text
    ]
    # Each message was waited for by a connection's own thread, on the measured TCP socket.
    assert len(zero) >= 12 - 4  # the first wait of each thread began before the window
    assert window.pid not in {c.pid for c in zero} and len({c.pid for c in zero}) >= 2
    assert not window.made("epoll_wait")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("strategy", ["prepost", "zero-byte"])
def test_epoll_strategies_check_zero_byte_semantics_on_their_tcp_connections(
    tmp_path: Path, strategy: str
) -> None:
    from tests.straced import traced_window

    case = {"strategy": strategy, "connections": 4, "messages": 8, "msg_size": 256, "recv_buffer": 4096}
    window = traced_window("zero-byte-recv", case, tmp_path)
    assert window.row["status"] == "ok", window.row
    tcp_zero = [
        c for c in window.everything if c.name == "recvfrom" and "<TCP:[" in c.text and ", NULL, 0," in c.text
    ]
    # Once without data (EAGAIN), once waiting for the probe byte (returns 0 and leaves it).
    assert [c.text.split(" = ")[-1].split()[0] for c in tcp_zero] == ["-1", "0"]
    assert "MSG_DONTWAIT" in tcp_zero[0].text and "EAGAIN" in tcp_zero[0].text
    # The measured loop itself makes no 0-byte recv: epoll says when to read.
    assert not [c for c in window.calls if ", NULL, 0," in c.text] and window.made("epoll_wait")


def test_zero_byte_threads_refuses_more_connections_than_threads(tmp_path: Path) -> None:
    from iobench.experiments.zero_byte_recv import MAX_THREADS

    result = run("zero-byte-recv", tmp_path, strategy="zero-byte-threads", connections=MAX_THREADS + 1)
    assert result.summary["status"] == "unsupported"
    assert result.summary["reason"] == (
        f"zero-byte-threads runs a thread per connection: {MAX_THREADS + 1:,} connections would need "
        f"{MAX_THREADS + 1:,} threads, more than the {MAX_THREADS:,} this experiment starts"
    )


@pytest.mark.timeout(30)
def test_fd_hard_limit_stops_the_case_with_both_numbers(tmp_path: Path) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= 100_000:
        pytest.skip("no finite hard fd limit below 100,000 here")
    result = run("zero-byte-recv", tmp_path, connections=hard + 1)
    assert result.summary["status"] == "unsupported"
    assert str(hard) in result.summary["reason"]


@pytest.mark.timeout(20)
def test_zero_length_recv_is_a_real_syscall(tmp_path: Path) -> None:
    strace = shutil.which("strace") or "/usr/bin/strace"
    if not os.path.exists(strace):
        pytest.skip("strace not installed")
    script = (
        "import socket\n"
        "from iobench.osutil import libc\n"
        "a, b = socket.socketpair()\n"
        "a.send(b'x')\n"
        "print(libc.recv_zero(b.fileno()), len(b.recv(4)))\n"
    )
    done = subprocess.run(
        [strace, "-f", "-e", "trace=recvfrom", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=15,
    )
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[:200]}")
    assert done.stdout.split()[:2] == ["0", "1"]
    assert "recvfrom(" in done.stderr and ", NULL, 0, 0," in done.stderr  # the 0-byte call happened


def test_cpython_recv_zero_makes_no_syscall() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(1)
        assert b.recv(0) == b""  # returns at once with nothing queued: no blocking recv happened
        a.send(b"x")
        assert libc.recv_zero(b.fileno()) == 0 and b.recv(4) == b"x"


# --- async-send ----------------------------------------------------------------------------


def test_frame_verification_and_tear_detection() -> None:
    sizes = message_sizes("inflight-100-200-150", 3, 0)
    assert sizes == [100, 200, 150]
    good = b"".join(
        struct.pack("!II", seq, size) + bytes([seq % 251 + 1]) * size for seq, size in enumerate(sizes)
    )
    assert verify_frames(good, sizes)["order_ok"] and verify_frames(good, sizes)["sizes_ok"]
    assert not verify_frames(good[:-1], sizes)["sizes_ok"]
    whole = b"\x01" * 8 + b"\x02" * 8
    assert interleaving(whole, 2, 4)["interleaved_messages"] == 0
    torn = b"\x01" * 2 + b"\x02" * 4 + b"\x01" * 6 + b"\x02" * 4
    assert interleaving(torn, 2, 4) == {
        "sizes_ok": False,
        "interleaved_messages": 1,
        "writer_switches": 3,
        "bytes_ok": True,
    }


def _frames(sizes: list[int]) -> list[bytes]:
    return [struct.pack("!II", seq, size) + bytes([seq % 251 + 1]) * size for seq, size in enumerate(sizes)]


def test_the_frame_check_catches_reordered_torn_lost_and_repeated_frames() -> None:
    sizes = [100, 200, 150, 100]
    a, b, c, d = _frames(sizes)
    assert verify_frames(a + b + c + d, sizes) == {"order_ok": True, "sizes_ok": True, "messages_verified": 4}
    assert verify_frames(a + c + b + d, sizes)["order_ok"] is False  # two frames swapped
    assert verify_frames(a + b + b + c, sizes)["order_ok"] is False  # one repeated, the last lost
    torn = a + b[:60] + c + b[60:] + d  # another frame's bytes inside frame 1
    assert verify_frames(torn, sizes)["sizes_ok"] is False
    assert verify_frames(a + b[:-1] + c + d, sizes)["sizes_ok"] is False  # one byte short
    assert verify_frames(a + b + c, sizes)["order_ok"] is False  # the last frame never came


def test_advance_resumes_inside_the_frame_a_short_send_stopped_in() -> None:
    from iobench.experiments.async_send import advance

    pending = [memoryview(b"aaaa"), memoryview(b"bbb"), memoryview(b"cc")]
    assert [bytes(v) for v in advance(pending, 5)] == [b"bb", b"cc"]
    assert [bytes(v) for v in advance(pending, 4)] == [b"bbb", b"cc"]
    assert advance(pending, 9) == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["inflight-100-200-150", "inflight-random"])
def test_one_writer_keeps_order_and_sizes(tmp_path: Path, mode: str) -> None:
    (row,) = ok_rows(run("async-send", tmp_path, mode=mode, messages=300, msg_size=5000))
    assert row["order_ok"] is True and row["sizes_ok"] is True and row["messages_verified"] == 300
    assert row["effective_sndbuf"] <= 8192  # the minimum: sends come back short
    if mode == "inflight-random":  # ~750 KB through a 4.5 KiB buffer
        assert row["short_sends"] > 0 and row["send_calls"] > 1


@pytest.mark.timeout(30)
def test_a_writer_that_mishandles_short_sends_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order and size checks can fail: drop the rest of a frame a short send cut, as a
    careless writer would, and the receiver's verdict says so."""
    from iobench.experiments import async_send

    advance = async_send.advance

    def careless(pending: list[memoryview], sent: int) -> list[memoryview]:
        rest = advance(pending, sent)
        cut = rest and len(rest[0]) < len(pending[len(pending) - len(rest)])
        return rest[1:] if cut else rest  # the cut frame's tail is never sent

    monkeypatch.setattr(async_send, "advance", careless)
    (row,) = ok_rows(run("async-send", tmp_path, mode="inflight-random", messages=300, msg_size=5000))
    assert row["short_sends"] > 0
    assert row["sizes_ok"] is False or row["order_ok"] is False
    assert row["received_bytes"] < sum(message_sizes("inflight-random", 300, 5000)) + 300 * 8


@pytest.mark.timeout(30)
def test_threads_sharing_sendall_tear_messages_and_a_lock_does_not(tmp_path: Path) -> None:
    (shared,) = ok_rows(run("async-send", tmp_path, mode="threads-sendall", concurrency=4, messages=40))
    (locked,) = ok_rows(run("async-send", tmp_path, mode="threads-locked", concurrency=4, messages=40))
    assert shared["bytes_ok"] is True and locked["bytes_ok"] is True  # every byte arrives
    assert shared["interleaved_messages"] > 0 and shared["sizes_ok"] is False
    assert locked["interleaved_messages"] == 0 and locked["sizes_ok"] is True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["echo-threads", "echo-selectors", "echo-asyncio", "echo-uvloop"])
def test_echo_servers_count_latency_and_switches(tmp_path: Path, mode: str) -> None:
    result = run("async-send", tmp_path, mode=mode, concurrency=3, messages=50, msg_size=512)
    if result.summary["status"] == "unsupported":
        assert mode == "echo-uvloop" and result.summary["reason"] == "uvloop not installed"
        pytest.skip("uvloop not installed: echo-uvloop is recorded as unsupported, not measured")
    (row,) = result.rows
    assert row["round_trips"] == 150 and row["ops"] == 150 and row["sizes_ok"] is True
    assert 0 < row["lat_p50_ns"] <= row["lat_p99_ns"]
    assert row["ctx_vol"] + row["peer_ctx_vol"] > 0


# --- msg-zerocopy --------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_zerocopy_completions_all_say_copied_on_loopback(tmp_path: Path) -> None:
    result = run("msg-zerocopy", tmp_path, method="zerocopy", msg_size=65536, transfer=2 << 20)
    if result.summary["status"] == "unsupported":
        pytest.skip(result.summary["reason"])
    (row,) = result.rows
    assert row["zc_sends"] == row["send_calls"] > 0
    assert row["zc_completions"] == row["zc_sends"] and row["completions_ok"] is True
    assert row["zc_copied"] == row["zc_completions"]  # loopback: the kernel copied anyway
    assert row["integrity_ok"] is True


@pytest.mark.timeout(30)
def test_plain_send_has_no_completions(tmp_path: Path) -> None:
    (row,) = ok_rows(run("msg-zerocopy", tmp_path, method="send", msg_size=65536, transfer=1 << 20))
    assert row["zc_sends"] == row["zc_completions"] == 0 and row["integrity_ok"] is True


@pytest.mark.timeout(30)
def test_unprivileged_zerocopy_hits_enobufs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the case drops root; as a normal user it runs as that user")
    result = run(
        "msg-zerocopy", tmp_path, method="zerocopy-unprivileged", msg_size=1 << 20, transfer=48 << 20
    )
    if result.summary["status"] == "unsupported":
        pytest.skip(result.summary["reason"])
    (row,) = result.rows
    assert row["ran_as_uid"] != 0 and row["memlock_limit"] is not None
    assert row["enobufs"] > 0  # pinned pages past RLIMIT_MEMLOCK
    assert row["zc_completions"] == row["zc_sends"] and row["integrity_ok"] is True


# --- report of real tiny runs --------------------------------------------------------------


@pytest.mark.timeout(90)
def test_report_of_tiny_socket_runs_has_figures_and_explanations(tmp_path: Path) -> None:
    import re

    import pandas as pd

    from iobench.report import build_report
    from iobench.results import ResultSet
    from tests.report_data import meta

    cases = [
        ("sock-buffer", {"transport": "tcp", "buffers": "unset", "transfer": 256 << 10}),
        ("sock-buffer", {"transport": "tcp", "buffers": "both", "bufsize": 0, "transfer": 256 << 10}),
        ("sock-buffer", {"transport": "unix", "buffers": "both", "bufsize": 65536, "transfer": 256 << 10}),
        ("zero-byte-recv", {"strategy": "prepost", "connections": 16, "messages": 50}),
        ("zero-byte-recv", {"strategy": "zero-byte", "connections": 16, "messages": 50}),
        ("async-send", {"mode": "inflight-100-200-150", "messages": 30}),
        (
            "async-send",
            {"mode": "threads-sendall", "concurrency": 2, "messages": 4, "writer_msg_size": 65536},
        ),
        ("async-send", {"mode": "echo-selectors", "concurrency": 2, "messages": 20}),
        ("msg-zerocopy", {"method": "send", "msg_size": 65536, "transfer": 1 << 20}),
        ("msg-zerocopy", {"method": "zerocopy", "msg_size": 65536, "transfer": 1 << 20}),
    ]
    rows = []
    for name, case in cases:
        result = run(name, tmp_path, **case)
        rows += [{"run_id": "r1", "experiment": name} | row for row in result.rows]
    run_set = ResultSet(frame=pd.DataFrame(rows), meta=meta("r1"))
    written = build_report([run_set], tmp_path / "report", ("html", "md", "png"))
    stems = {p.stem for p in written if p.suffix == ".png"}
    for expected in (
        "sock-buffer-0",  # effective vs requested (buffers=both)
        "sock-buffer-throughput",
        "zero-byte-recv-0",
        "zero-byte-recv-percentiles",
        "async-send-interleaved-messages",
        "async-send-throughput",
        "msg-zerocopy-throughput",
    ):
        assert expected in stems, sorted(stems)
    html = (tmp_path / "report" / "report.html").read_text()
    for name in ("sock-buffer", "zero-byte-recv", "async-send", "msg-zerocopy"):
        section = html.split(f'id="exp-{name}"', 1)[1].split("<section", 1)[0]
        assert "<img" in section and "What this shows" in section, name
    assert re.search(r"SO_RCVBUF=0 became [\d,]+ bytes on TCP", html)
    assert "prepost held" in html and "arrived in order and each whole" in html
