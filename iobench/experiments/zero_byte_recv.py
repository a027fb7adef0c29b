"""zero-byte-recv: per-connection posted buffers vs readiness + a shared pool (seed 001)."""

from __future__ import annotations

import contextlib
import os
import random
import resource
import selectors
import socket
import struct
import time
from array import array
from typing import TYPE_CHECKING, Any

from iobench.errors import ParamError
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.osutil import libc
from iobench.osutil.children import Child, ChildError, fork_child
from iobench.osutil.sockets import (
    SOCKET_TIMEOUT_S,
    connect_loopback,
    loopback_listener,
    raise_fd_limit,
    rss_bytes,
    set_blocking_timeouts,
    tcp_kernel_memory_bytes,
)
from iobench.params import Kind, Param, choice_param, size_param
from iobench.stats import percentiles

if TYPE_CHECKING:
    import pandas as pd

_STAMP = struct.Struct("q")  # each message starts with the sender's CLOCK_MONOTONIC ns
#: Descriptors beyond the N connections: listener, pipes, stdio, Python's own.
_SPARE_FDS = 64


def _sender(port: int, connections: int, messages: int, msg_size: int, burst: int, go: int, ack: int) -> int:
    """The traffic child: open N connections, then per repetition ('g' on ``go``) send
    ``messages`` messages of ``msg_size`` bytes to random connections, ``burst`` at a time,
    waiting for the parent's ack ('a' on ``go``) after each burst. Returns its CPU ns."""
    socks = [connect_loopback(port) for _ in range(connections)]
    os.write(ack, b"c")  # all connected
    rng = random.Random(5)
    message = bytearray(msg_size)
    clock = time.monotonic_ns
    try:
        while os.read(go, 1) == b"g":
            for start in range(0, messages, burst):
                for _ in range(min(burst, messages - start)):
                    _STAMP.pack_into(message, 0, clock())
                    rng.choice(socks).sendall(message)
                if os.read(go, 1) != b"a":
                    return time.thread_time_ns()
    finally:
        for sock in socks:
            sock.close()
    return time.thread_time_ns()


@register
class ZeroByteRecv(Experiment):
    """N mostly idle connections: who holds receive memory while they wait."""

    name = "zero-byte-recv"
    has_peers = True
    summary = "N sparse connections: a posted buffer per connection vs readiness + shared pool"
    seed_idea = (
        "001: with IOCP a server posts a receive buffer per connection and Windows locks it; a "
        "zero-byte recv waits for data without one. On Linux an idle socket holds no receive "
        "memory in the kernel, so the saving is only the application's own posted buffers."
    )
    params = (
        choice_param(
            "strategy",
            ("prepost", "zero-byte"),
            "prepost: every connection owns a receive buffer of RECV_BUFFER bytes all the time; "
            "zero-byte: wait for readiness (epoll, Linux's counterpart of a posted 0-byte recv), "
            "then receive into a buffer borrowed from a small shared pool.",
        ),
        Param(
            "connections",
            Kind.INT,
            (256,),
            "Concurrent TCP connections (the soft fd limit is raised as needed, up to the hard one).",
            sweep=True,
            minimum=1,
            maximum=100_000,
        ),
        size_param("recv_buffer", (65536,), "Receive buffer size B per posted buffer.", minimum=16),
        size_param("msg_size", (512,), "Bytes per message (at most RECV_BUFFER).", minimum=_STAMP.size),
        Param(
            "messages", Kind.INT, (2000,), "Messages per repetition.", sweep=True, minimum=1, maximum=10**7
        ),
        Param(
            "burst",
            Kind.INT,
            (8,),
            "Messages in flight at once (sparse traffic: the rest of the connections idle).",
            sweep=True,
            minimum=1,
            maximum=10**7,
        ),
        Param(
            "pool_buffers",
            Kind.INT,
            (4,),
            "Buffers in the zero-byte strategy's shared pool.",
            sweep=True,
            minimum=1,
            maximum=100_000,
        ),
    )
    x_param = "connections"
    table_axis = "connections"
    series_params = ("strategy",)
    columns = (
        Column("Buffers held", "buffer_bytes_held", "size"),
        Column("RSS of buffers", "rss_buffers_bytes", "size"),
        Column("RSS", "rss_bytes", "size"),
        Column("Kernel TCP mem (N idle)", "kernel_tcp_mem_idle_delta_bytes", "size"),
        Column("Throughput", "bytes_per_s", "rate"),
        Column("p50 latency", "lat_p50_ns", "duration"),
        Column("p99 latency", "lat_p99_ns", "duration"),
        Column("recv()s", "recv_calls"),
        Column("Wake-ups", "select_calls"),
    )

    figures = (
        FigureSpec(
            "metric", title="Receive buffers held by the application",
            metrics=("buffer_bytes_held", "rss_buffers_bytes"), unit="size",
            y_label="memory held",
        ),
        FigureSpec(
            "percentiles", title="Message latency (send to receive)", metrics=("lat_p50_ns", "lat_p99_ns"),
            unit="duration", log_y=True, y_label="latency",
        ),
        FigureSpec("throughput", title="Throughput"),
    )  # fmt: skip

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """N x B held by prepost against the pool, what the kernel held, latency and throughput."""
        from iobench import explain as ex
        from iobench.units import format_duration, format_rate, format_size

        out = []
        pre_rows = ex.select(summary, strategy="prepost")
        zero_rows = ex.select(summary, strategy="zero-byte")
        n = None
        if not pre_rows.empty:
            pre = pre_rows.sort_values("connections").iloc[-1]
            n, size, held = pre["connections"], pre["recv_buffer"], pre["buffer_bytes_held"]
            if ex.finite(held):
                sentence = (
                    f"prepost held {format_size(held)} of receive buffers for {n:,.0f} connections "
                    f"({n:,.0f} x {ex.fmt(cls, 'recv_buffer', size)}, one per connection, idle or not)"
                )
                zero = ex.select(zero_rows, connections=n)
                if not zero.empty and ex.finite(zero["buffer_bytes_held"].iloc[0]):
                    row = zero.iloc[0]
                    pool = row["buffer_bytes_held"]
                    sentence += (
                        f"; zero-byte held {format_size(pool)} (a pool of {row['pool_buffers']:,.0f} buffers "
                        "plus partial messages)"
                    )
                    if pool:
                        sentence += f", {ex.times(held / pool)} less"
                rss = pre.get("rss_buffers_bytes")
                if ex.finite(rss):
                    sentence += f". Allocating prepost's buffers grew RSS by {format_size(rss)}"
                out.append(sentence + ".")
        kernel = (
            summary["kernel_tcp_mem_idle_delta_bytes"].dropna()
            if "kernel_tcp_mem_idle_delta_bytes" in summary
            else ()
        )
        if len(kernel):
            row = summary.loc[kernel.index[0]]
            delta = kernel.iloc[0]
            count = f"{row['connections']:,.0f}"
            if abs(delta) < 1 << 20:
                measured = (
                    f"Opening {count} idle connections changed the kernel's TCP memory by {format_size(delta)}"
                    if delta >= 0
                    else f"While {count} idle connections opened, the kernel's TCP memory even fell by {format_size(-delta)}"
                )
            else:
                measured = (
                    f"Opening {count} idle connections moved the kernel's TCP memory by {format_size(abs(delta))}, "
                    "a system-wide counter other sockets move too"
                )
            out.append(
                f"{measured} (/proc/net/sockstat): an idle Linux socket holds no kernel receive memory and no "
                "locked pages. So the saving seed 001 describes for Windows (every posted receive locks its pages "
                "in the kernel; a zero-byte recv avoids that) does not exist here: what the zero-byte strategy "
                "saves is only the application's own buffers."
            )
        probe = summary.iloc[0] if not summary.empty and "recv0_idle" in summary else None
        if probe is not None and isinstance(probe["recv0_idle"], str):
            left = probe.get("recv0_left_queued")
            out.append(
                f"A real 0-byte recv() on an idle socket returned {probe['recv0_idle']}, and with data queued it "
                f"returned 0 and left the data there ({left:,.0f} byte(s) still queued): on Linux it only says "
                '"readable", exactly what epoll says without a syscall per connection.'
                if ex.finite(left)
                else f"A real 0-byte recv() on an idle socket returned {probe['recv0_idle']}."
            )
        if not pre_rows.empty and not zero_rows.empty:
            pre = pre_rows.sort_values("connections").iloc[-1]
            zero = ex.select(zero_rows, connections=pre["connections"])
            if not zero.empty:
                z = zero.iloc[0]
                parts = []
                for label, row in (("prepost", pre), ("zero-byte", z)):
                    if ex.finite(row.get("lat_p50_ns")) and ex.finite(row.get("lat_p99_ns")):
                        parts.append(
                            f"{label} p50 {format_duration(row['lat_p50_ns'])}, p99 {format_duration(row['lat_p99_ns'])}, "
                            f"{format_rate(row['bytes_per_s'])}"
                        )
                if len(parts) == 2 and pre["bytes_per_s"]:
                    ratio = z["bytes_per_s"] / pre["bytes_per_s"]
                    verdict = (
                        "borrowing a pool buffer only after readiness cost no throughput here"
                        if ratio >= 0.95
                        else f"borrowing a pool buffer after readiness cost {1 - ratio:.0%} of the throughput here"
                    )
                    out.append(
                        f"At {pre['connections']:,.0f} connections: "
                        + "; ".join(parts)
                        + f" (zero-byte {ex.versus(ratio)}): {verdict}."
                    )
        return out

    _listener: socket.socket | None = None
    _child: Child | None = None
    _selector: selectors.BaseSelector | None = None
    _conns: list[socket.socket] = []  # noqa: RUF012 - replaced per instance
    _fds: list[int] = []  # noqa: RUF012 - replaced per instance
    _old_nofile: tuple[int, int] | None = None

    @classmethod
    def check_case(cls, case: dict[str, Any]) -> None:
        if case["msg_size"] > case["recv_buffer"]:
            raise ParamError("msg_size must not exceed recv_buffer")

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        return frozenset({"pool_buffers"}) if case["strategy"] == "prepost" else frozenset()

    def prepare(self) -> None:
        self.strategy: str = self.case["strategy"]
        self.n: int = self.case["connections"]
        self.size: int = self.case["recv_buffer"]
        self.msg: int = self.case["msg_size"]
        self.messages: int = self.case["messages"]
        self.burst: int = self.case["burst"]
        self._old_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.fd_soft, self.fd_hard = raise_fd_limit(self.n + _SPARE_FDS)
        self._listener = loopback_listener(backlog=min(self.n, 4096))
        go_r, go_w = os.pipe()
        self._fds = [go_r, go_w]  # kept at once: teardown closes them if the next pipe fails
        ack_r, ack_w = os.pipe()
        self._fds = [go_r, go_w, ack_r, ack_w]
        port, n, messages, msg, burst = (
            self._listener.getsockname()[1],
            self.n,
            self.messages,
            self.msg,
            self.burst,
        )
        listener = self._listener

        def child() -> int:
            for fd in (go_w, ack_r):
                os.close(fd)
            listener.close()
            return _sender(port, n, messages, msg, burst, go_r, ack_w)

        self._child = fork_child(child)
        os.close(go_r)
        os.close(ack_w)
        self._fds = [go_w, ack_r]
        self._go, self._ack = go_w, ack_r
        kernel_before = tcp_kernel_memory_bytes()
        conns = self._conns = []
        for _ in range(self.n):
            conn, _ = self._listener.accept()
            conn.setblocking(False)  # readiness decides when to read; no call ever waits
            conns.append(conn)
        if os.read(ack_r, 1) != b"c":
            raise RuntimeError("the sender child did not connect")
        kernel_idle = tcp_kernel_memory_bytes()
        # System-wide (other sockets move it too): what N idle connections added, ~0 on Linux.
        self.kernel_idle = (
            None if kernel_before is None or kernel_idle is None else kernel_idle - kernel_before
        )
        self.recv0 = self._check_zero_length_recv()
        rss_before = rss_bytes()
        if self.strategy == "prepost":
            # One buffer per connection, allocated and touched now: held while the socket idles.
            self.buffers = [bytearray(self.size) for _ in range(self.n)]
            self.pool: list[bytearray] = []
        else:
            self.buffers = []
            self.pool = [bytearray(self.size) for _ in range(self.case["pool_buffers"])]
        self.rss_buffers = rss_bytes() - rss_before
        self.views = [memoryview(b) for b in self.buffers]
        self._selector = selectors.EpollSelector()
        for index, conn in enumerate(conns):
            self._selector.register(conn, selectors.EVENT_READ, index)
        self.latencies = array("q", bytes(8 * self.messages))

    def _check_zero_length_recv(self) -> dict[str, Any]:
        """A real 0-byte recv(2) on one idle connection, then on one with data: what Linux does."""
        probe = socket.socketpair()
        try:
            for sock in probe:
                sock.settimeout(None)
                set_blocking_timeouts(sock, SOCKET_TIMEOUT_S)
            try:
                libc.recv_zero(probe[1].fileno(), socket.MSG_DONTWAIT)
                idle = "returned"
            except BlockingIOError:
                idle = "EAGAIN"  # no data: a blocking one would wait here
            probe[0].send(b"x")
            returned = libc.recv_zero(probe[1].fileno())
            left = len(probe[1].recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT))
            return {"recv0_idle": idle, "recv0_returned": returned, "recv0_left_queued": left}
        finally:
            for sock in probe:
                sock.close()

    def run_once(self) -> dict[str, Any]:
        assert self._selector is not None
        select, clock, latencies = self._selector.select, time.monotonic_ns, self.latencies
        msg, burst, total = self.msg, self.burst, self.messages
        have = [0] * self.n if self.strategy == "prepost" else None
        partial: dict[int, bytes] = {}
        self.partial_peak = 0
        conns, views, pool = self._conns, self.views, self.pool
        done = recv_calls = select_calls = 0
        os.write(self._go, b"g")
        while done < total:
            events = select(SOCKET_TIMEOUT_S)
            select_calls += 1
            if not events:
                raise TimeoutError(f"no data for {SOCKET_TIMEOUT_S:g} s after {done} messages")
            for key, _ in events:
                index = key.data
                recv_calls += 1
                if have is not None:  # prepost: the connection's own buffer
                    got = conns[index].recv_into(views[index][have[index] : msg])
                    if not got:
                        raise ConnectionError("sender closed a connection mid-run")
                    have[index] += got
                    if have[index] < msg:
                        continue
                    have[index] = 0
                    stamp = _STAMP.unpack_from(views[index])[0]
                else:  # zero-byte: borrow a pool buffer only now that data is there
                    buffer = pool.pop()
                    try:
                        earlier = partial.pop(index, b"")
                        got = conns[index].recv_into(buffer, msg - len(earlier))
                        if not got:
                            raise ConnectionError("sender closed a connection mid-run")
                        if len(earlier) + got < msg:
                            # Keep only the bytes so far: the one thing held between readiness events.
                            partial[index] = earlier + bytes(buffer[:got])
                            self.partial_peak = max(self.partial_peak, sum(map(len, partial.values())))
                            continue
                        head = earlier + bytes(buffer[: _STAMP.size]) if earlier else buffer
                        stamp = _STAMP.unpack_from(head)[0]
                    finally:
                        pool.append(buffer)
                latencies[done] = clock() - stamp
                done += 1
                if done % burst == 0 or done == total:
                    os.write(self._go, b"a")
        return {"bytes": total * msg, "ops": total, "recv_calls": recv_calls, "select_calls": select_calls}

    def after_rep(self) -> dict[str, Any]:
        p50, p99 = percentiles(self.latencies, 0.50, 0.99)
        held = sum(len(b) for b in self.buffers) + sum(len(b) for b in self.pool) + self.partial_peak
        return {
            "buffer_bytes_held": held,
            "rss_buffers_bytes": self.rss_buffers,
            "rss_bytes": rss_bytes(),
            "kernel_tcp_mem_idle_delta_bytes": self.kernel_idle,
            "lat_p50_ns": p50,
            "lat_p99_ns": p99,
            "fd_soft_limit": self.fd_soft,
            "fd_hard_limit": self.fd_hard,
            **self.recv0,
        }

    def teardown(self) -> None:
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for fd in self._fds:
            os.close(fd)  # the child reads EOF on its go pipe and leaves
        self._fds = []
        if self._child is not None:
            # Teardown must go on whatever the child did; kill() below reaps it in any case.
            with contextlib.suppress(ChildError):
                self._child.wait(SOCKET_TIMEOUT_S)
            self._child.kill()
            self._child = None
        for conn in self._conns:
            conn.close()
        self._conns = []
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._old_nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self._old_nofile)
            self._old_nofile = None
