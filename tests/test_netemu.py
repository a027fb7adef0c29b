"""iobench.netemu: a link with a real RTT between two network namespaces, and its teardown.

Needs root and ``ip`` (skipped with the reason otherwise). On a kernel without sch_netem the
links are TUN relays; the relay counters tests skip where netem is used instead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iobench.errors import LinkUnsupported
from iobench.netemu import LinkSpec, VirtualLink, cleanup_stale, ns, relay
from iobench.netemu.measure import ProbeServer, bulk, ping_pong
from iobench.netemu.window import expected_window_bytes, kernel_has_scaling_ratio, window_from_space
from iobench.osutil.children import run_in_child

from .netns_support import needs_link

MS = 1_000_000
ROOT = Path(__file__).resolve().parent.parent


def _leftovers(names: tuple[str, ...] = ()) -> dict[str, object]:
    """What a link could leave behind: iobench namespaces, iob0 devices in the root namespace."""
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {
        "namespaces": [name for name in ns.listed() if not names or name in names],
        "devices": [line for line in root_links.splitlines() if " iob0" in line],
    }


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as stat:  # a zombie not yet reaped by its parent counts as gone
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture(scope="module")
def link10() -> Iterator[VirtualLink]:
    with VirtualLink(LinkSpec(rtt_ns=10 * MS)) as link:
        yield link


# -- the window formula (no root needed) ---------------------------------------------------------


def test_window_from_space_follows_the_kernel_formulas() -> None:
    assert window_from_space(131072, adv_win_scale=1) == 65536  # before 6.6, default: half
    assert window_from_space(131072, adv_win_scale=2) == 98304  # space - space/4
    assert window_from_space(131072, adv_win_scale=-2) == 32768  # space >> 2
    assert window_from_space(131072, scaling_ratio=160) == 81920  # 6.6+: space * ratio / 256
    assert kernel_has_scaling_ratio("6.18.44-fc") and kernel_has_scaling_ratio("6.6.0")
    assert not kernel_has_scaling_ratio("6.5.13") and not kernel_has_scaling_ratio("5.15.0-91-generic")


def test_link_spec_refuses_impossible_values() -> None:
    with pytest.raises(ValueError, match="loss must be in"):
        LinkSpec(rtt_ns=0, loss=1.5)
    with pytest.raises(ValueError, match="rate_bps must be positive"):
        LinkSpec(rtt_ns=0, rate_bps=0)


# -- unsupported hosts ---------------------------------------------------------------------------


def _enter_as_nobody() -> str:
    try:
        with VirtualLink(LinkSpec(rtt_ns=10 * MS)):
            return "entered"
    except LinkUnsupported as exc:
        return f"LinkUnsupported: {exc}"


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to nobody needs root")
def test_non_root_is_unsupported_with_the_reason() -> None:
    said, _ = run_in_child(_enter_as_nobody, drop_root=True)
    assert said == (
        "LinkUnsupported: an emulated link needs root (network namespaces take CAP_SYS_ADMIN); "
        "running as uid 65534"
    )


@needs_link
def test_without_netem_and_without_the_extension_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay, "_relay", None)
    monkeypatch.setattr(VirtualLink, "_try_netem", lambda self: False)
    link = VirtualLink(LinkSpec(rtt_ns=MS))
    with pytest.raises(LinkUnsupported) as raised:
        link.__enter__()
    assert str(raised.value) == (
        "this kernel has no sch_netem and the relay extension iobench.netemu._relay was not built "
        "(no C compiler at install time)"
    )
    assert _leftovers((link.client_ns, link.peer_ns)) == {"namespaces": [], "devices": []}


# -- the link at 10 ms ---------------------------------------------------------------------------


@needs_link
def test_describe_records_the_emulated_link(link10: VirtualLink) -> None:
    described = link10.describe()
    assert described["link_rtt_ns"] == 10 * MS
    assert described["link_rate_bps"] is None and described["link_loss"] == 0.0
    assert described["link_emulator"] in ("netem", "tun-relay")
    assert described["link_mtu"] == 1500
    assert described["link_net_ipv4_tcp_rmem"].count(" ") == 2
    assert described["link_net_core_rmem_max"].isdigit()


@needs_link
def test_client_moves_the_thread_into_the_client_namespace_and_back(link10: VirtualLink) -> None:
    own = os.stat("/proc/thread-self/ns/net").st_ino
    with link10.client():
        inside = os.stat("/proc/thread-self/ns/net").st_ino
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.bind((link10.client_address, 0))  # the address exists only in the client namespace
    assert inside != own
    assert os.stat("/proc/thread-self/ns/net").st_ino == own
    with pytest.raises(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as outside:
        outside.bind((link10.client_address, 0))


@needs_link
def test_ping_pong_rtt_is_the_setting_within_tolerance(link10: VirtualLink) -> None:
    """Median of 20 one-byte round trips in [10, 12.5] ms: never below the delay line, at most
    2.5 ms of relay wake-up, scheduling and stack time on a shared 2-vCPU machine."""
    with ProbeServer(link10) as server:
        times = sorted(ping_pong(link10, server.port, rounds=20))
    assert min(times) >= 10 * MS
    assert 10 * MS <= times[len(times) // 2] <= 12.5 * MS


@needs_link
def test_fixed_64k_window_runs_at_window_over_rtt_and_autotuning_is_faster(link10: VirtualLink) -> None:
    """SO_RCVBUF=64 KiB on the receiver: the kernel doubles it to 128 KiB, and the window it
    may advertise is window_clamp = 128 KiB * scaling_ratio / 256 (Linux >= 6.6; the ratio comes
    from the packets received: ~160/256 for 1500-byte TUN packets) - read back with
    TCP_WINDOW_CLAMP. Throughput past slow start (the first 512 KiB) must be window / RTT within
    -25 % / +10 %, RTT being the measured ping-pong minimum: the window is a hard cap (so little
    room above), while relay wake-up delays and CPU shared with other jobs can only slow it."""
    with ProbeServer(link10) as plain:
        rtt_ns = min(ping_pong(link10, plain.port, rounds=10))
        autotuned = bulk(link10, plain.port, nbytes=3 << 20, skip_bytes=512 << 10)
    with ProbeServer(link10, rcvbuf=64 << 10) as fixed_server:
        fixed = bulk(link10, fixed_server.port, nbytes=3 << 20, skip_bytes=512 << 10)
    receiver = fixed["receiver"]
    assert receiver["rcvbuf"] == 128 << 10
    if kernel_has_scaling_ratio():
        assert receiver["window_bytes"] == window_from_space(
            128 << 10, scaling_ratio=receiver["scaling_ratio"]
        )
        assert 64 << 10 <= receiver["window_bytes"] <= 128 << 10
    expected = receiver["window_bytes"] / (rtt_ns / 1e9)
    ratio = fixed["steady_bytes_per_s"] / expected
    assert 0.75 <= ratio <= 1.10, (fixed["steady_bytes_per_s"], expected, receiver)
    assert autotuned["bytes_per_s"] > 2 * fixed["bytes_per_s"]
    assert autotuned["receiver"]["rcvbuf"] > 128 << 10  # autotuning grew it


def test_expected_window_bytes_on_loopback_reads_the_clamp() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.socket() as receiver:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        receiver.connect(listener.getsockname())
        sender, _ = listener.accept()
        with sender:
            sender.sendall(b"x" * (256 << 10))
            got = 0
            while got < 256 << 10:
                got += len(receiver.recv(1 << 16))
        window = expected_window_bytes(receiver)
        assert window == receiver.getsockopt(socket.IPPROTO_TCP, socket.TCP_WINDOW_CLAMP)
        assert 0 < window <= 128 << 10


# -- loss ------------------------------------------------------------------------------------


def _udp_through(link: VirtualLink, count: int) -> tuple[int, dict[str, int]]:
    """Send ``count`` UDP datagrams client -> peer; (datagrams received, relay counters a_to_b)."""
    with link.peer():
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with link.client():
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        receiver.bind((link.peer_address, 0))
        receiver.settimeout(0.5)
        for i in range(count):
            sender.sendto(b"%06d" % i, receiver.getsockname())
            if i % 100 == 99:
                time.sleep(0.002)  # pacing only: keep the TUN's own queue from overflowing
        received = 0
        try:
            while True:
                receiver.recv(64)
                received += 1
        except TimeoutError:
            pass
    link.close()
    assert link.relay_counters is not None
    return received, link.relay_counters["a_to_b"]


@needs_link
def test_loss_drops_about_that_fraction_and_the_seed_repeats_it() -> None:
    """10 % loss on 2000 datagrams: the dropped fraction lies in [7 %, 13 %] (4.5 binomial
    standard deviations), every datagram is either relayed or dropped for loss, and the same
    seed drops the same ones."""
    results = []
    for _ in range(2):
        link = VirtualLink(LinkSpec(rtt_ns=MS, loss=0.10, seed=7), emulator="auto")
        with link:
            if link.emulator != "tun-relay":
                pytest.skip("netem is in use here: the relay's loss counters are not involved")
            results.append(_udp_through(link, 2000))
    (received, counters), (received_again, counters_again) = results
    assert counters["relayed"] + counters["dropped_loss"] == 2000
    assert counters["dropped_queue"] == 0
    assert received == counters["relayed"]
    assert 0.07 <= counters["dropped_loss"] / 2000 <= 0.13
    assert (received_again, counters_again["dropped_loss"]) == (received, counters["dropped_loss"])


# -- teardown --------------------------------------------------------------------------------


@needs_link
def test_teardown_after_normal_exit_leaves_nothing() -> None:
    with VirtualLink(LinkSpec(rtt_ns=MS)) as link:
        sleeper = link.spawn(["sleep", "30"])
        relay_pid = link.relay_pid()
        names = (link.client_ns, link.peer_ns)
        assert _leftovers(names)["namespaces"] == sorted(names)
    assert sleeper.returncode is not None
    assert relay_pid is None or _gone(relay_pid)
    assert _leftovers(names) == {"namespaces": [], "devices": []}


@needs_link
def test_teardown_after_an_exception_inside_the_block_leaves_nothing() -> None:
    with pytest.raises(ZeroDivisionError), VirtualLink(LinkSpec(rtt_ns=MS)) as link:
        sleeper = link.spawn(["sleep", "30"])
        names = (link.client_ns, link.peer_ns)
        relay_pid = link.relay_pid()
        1 / 0  # noqa: B018
    assert sleeper.returncode is not None
    assert relay_pid is None or _gone(relay_pid)
    assert _leftovers(names) == {"namespaces": [], "devices": []}


@needs_link
def test_a_failed_build_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise OSError(12, "no memory for the relay")

    monkeypatch.setattr(relay, "start", refuse)
    link = VirtualLink(LinkSpec(rtt_ns=MS), emulator="tun-relay")
    with pytest.raises(OSError, match="no memory for the relay"):
        link.__enter__()
    assert _leftovers((link.client_ns, link.peer_ns)) == {"namespaces": [], "devices": []}


_HOLDER = """
import json, sys, time
from iobench.netemu import LinkSpec, VirtualLink
with VirtualLink(LinkSpec(rtt_ns=1_000_000)) as link:
    sleeper = link.spawn(["sleep", "60"])
    print(json.dumps({"names": [link.client_ns, link.peer_ns], "relay": link.relay_pid(),
                      "sleeper": sleeper.pid}), flush=True)
    time.sleep(60)
"""


def _start_holder() -> tuple[subprocess.Popen[str], dict[str, object]]:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout is not None
    line = holder.stdout.readline()
    if not line:
        holder.wait(10)
        pytest.fail(f"the link holder died before its link was up (status {holder.returncode})")
    return holder, json.loads(line)


@needs_link
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_teardown_after_a_signal_to_a_process_holding_a_link(signum: int) -> None:
    holder, held = _start_holder()
    try:
        holder.send_signal(signum)
        holder.wait(20)
    finally:
        holder.kill()
        holder.wait()
    # An uncaught KeyboardInterrupt ends Python by SIGINT again; Terminated is an exception (1):
    # either way the exception unwound through the link's teardown.
    assert holder.returncode == (-signal.SIGINT if signum == signal.SIGINT else 1)
    assert _gone(held["sleeper"])  # type: ignore[arg-type]
    assert held["relay"] is None or _gone(held["relay"])  # type: ignore[arg-type]
    assert _leftovers(tuple(held["names"])) == {"namespaces": [], "devices": []}  # type: ignore[arg-type]


@needs_link
def test_cleanup_stale_removes_what_a_killed_process_left() -> None:
    holder, held = _start_holder()
    holder.kill()  # SIGKILL: no teardown ran
    holder.wait()
    names = tuple(held["names"])  # type: ignore[arg-type]
    assert _leftovers(names)["namespaces"] == sorted(names)
    removed = cleanup_stale()
    assert set(names) <= set(removed)
    deadline = time.monotonic() + 5
    while not _gone(held["sleeper"]) and time.monotonic() < deadline:  # type: ignore[arg-type]
        time.sleep(0.05)
    assert _gone(held["sleeper"])  # type: ignore[arg-type]
    # the relay saw its control pipe close when its parent died, and stopped by itself
    while held["relay"] is not None and not _gone(held["relay"]) and time.monotonic() < deadline:  # type: ignore[arg-type]
        time.sleep(0.05)
    assert held["relay"] is None or _gone(held["relay"])  # type: ignore[arg-type]
    assert _leftovers(names) == {"namespaces": [], "devices": []}
