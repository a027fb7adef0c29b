"""What the emulated link really is: ping-pong RTT and a bulk transfer over TCP, measured
before the cases so a report shows the link as it was, not only as it was asked for.

The far end is ``iobench.netemu.probe`` spawned in the peer namespace; this end runs in the
client namespace (``link.client()``).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iobench.netemu.link import VirtualLink

#: Seconds any one socket operation, or the probe's start-up, may take.
TIMEOUT_S = 30.0
CHUNK = 64 << 10


class ProbeServer:
    """``iobench.netemu.probe`` running in the peer namespace; ``port`` once entered."""

    def __init__(self, link: VirtualLink, rcvbuf: int | None = None) -> None:
        self.link = link
        self.rcvbuf = rcvbuf
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ProbeServer:
        argv = [sys.executable, "-m", "iobench.netemu.probe", self.link.peer_address]
        if self.rcvbuf is not None:
            argv += ["--rcvbuf", str(self.rcvbuf)]
        self.process = self.link.spawn(argv, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], TIMEOUT_S)
        line = self.process.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            self.__exit__(None, None, None)
            raise RuntimeError(f"the link probe did not start (said {line!r})")
        self.port = int(line)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


def connect(link: VirtualLink, port: int, sndbuf: int | None = None) -> socket.socket:
    """A TCP socket in the client namespace connected to the peer's ``port``."""
    with link.client():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.settimeout(TIMEOUT_S)
        sock.connect((link.peer_address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def ping_pong(link: VirtualLink, port: int, rounds: int = 20) -> list[int]:
    """Round-trip times in ns of ``rounds`` 1-byte exchanges (TCP_NODELAY both ends)."""
    with contextlib.closing(connect(link, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"P")
        times = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise ConnectionError("the probe closed the ping-pong connection")
            times.append(time.perf_counter_ns() - start)
    return times


def bulk(
    link: VirtualLink,
    port: int,
    nbytes: int | None = None,
    seconds: float | None = None,
    skip_bytes: int = 0,
    sndbuf: int | None = None,
) -> dict[str, Any]:
    """Send ``nbytes`` (or for ``seconds``) to the probe's sink. Returns the sender's view
    (``bytes_per_s``: bytes over the time from the first send to the receiver's report) and the
    receiver's (``steady_bytes_per_s``: past the first ``skip_bytes``, i.e. after slow start;
    ``receiver``: its report with the window facts)."""
    if (nbytes is None) == (seconds is None):
        raise ValueError("give nbytes or seconds")
    payload = memoryview(b"\xa5" * CHUNK)
    with contextlib.closing(connect(link, port, sndbuf)) as sock:
        sock.sendall(b"S" + struct.pack("<q", skip_bytes))
        sent = 0
        start = time.perf_counter_ns()
        if nbytes is not None:
            while sent < nbytes:
                sent += sock.send(payload[: min(CHUNK, nbytes - sent)])
        else:
            end = start + int(seconds * 1e9)  # type: ignore[operator]
            while time.perf_counter_ns() < end:
                sent += sock.send(payload)
        sock.shutdown(socket.SHUT_WR)
        line = sock.makefile("rb").readline()
        elapsed = time.perf_counter_ns() - start
    report = json.loads(line)
    if report["bytes"] != sent:
        raise ConnectionError(f"sent {sent} bytes, the probe received {report['bytes']}")
    steady = report["steady_bytes"] / report["steady_ns"] * 1e9 if report["steady_ns"] else None
    return {"bytes": sent, "elapsed_ns": elapsed, "bytes_per_s": sent / elapsed * 1e9,
            "steady_bytes_per_s": steady, "receiver": report}  # fmt: skip


def measure_link(link: VirtualLink, rounds: int = 20, seconds: float = 1.0) -> dict[str, Any]:
    """Ping-pong RTT (median and min of ``rounds``) and a ``seconds``-long bulk transfer with
    autotuning, over the link: ``link_rtt_measured_ns``, ``link_rtt_min_ns``,
    ``link_bulk_bytes_per_s``."""
    with ProbeServer(link) as server:
        times = ping_pong(link, server.port, rounds)
        moved = bulk(link, server.port, seconds=seconds)
    return {
        "link_rtt_measured_ns": int(statistics.median(times)),
        "link_rtt_min_ns": min(times),
        "link_bulk_bytes_per_s": moved["bytes_per_s"],
    }
