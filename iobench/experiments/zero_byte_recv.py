"""zero-byte-recv: per-connection posted buffers vs readiness + a shared pool (seed 001)."""

from __future__ import annotations

import contextlib
import mmap
import os
import resource
import selectors
import socket
import threading
import time
from array import array
from typing import TYPE_CHECKING, Any

from iobench.errors import ParamError, UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.loops import rings
from iobench.loops.buffers import page_aligned_buffer
from iobench.metrics import LAT_P50, LAT_P99
from iobench.metrics import Metric as M
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
from iobench.peer.client import PeerError, RemotePeer, RemoteRole
from iobench.peer.loops import STAMP, send_traffic
from iobench.peer.roles import RoleError, validate
from iobench.stats import percentiles

if TYPE_CHECKING:
    import pandas as pd

#: Descriptors beyond the N connections: listener, pipes, stdio, Python's own.
_SPARE_FDS = 64
STRATEGIES = ("prepost", "zero-byte", "zero-byte-threads", "uring-bufring")
#: uring-bufring: the provided-buffer ring holds at most this many buffers (a power of two).
MAX_RING_BUFFERS = 32768
#: zero-byte-threads starts one thread per connection; past this it refuses the case.
MAX_THREADS = 1024
#: Stack of each zero-byte-threads thread (it runs a few frames only); the default is 8 MiB.
_THREAD_STACK = 256 << 10


def _sender(port: int, connections: int, messages: int, msg_size: int, burst: int, go: int, ack: int) -> int:
    """The traffic child: open N connections, 'c' on ``ack``, then ``send_traffic``."""
    socks = [connect_loopback(port) for _ in range(connections)]
    os.write(ack, b"c")  # all connected
    return send_traffic(socks, messages, msg_size, burst, go)


@register
class ZeroByteRecv(Experiment):
    """N mostly idle connections: who holds receive memory while they wait."""

    name = "zero-byte-recv"
    has_peers = True
    remote_peer = True
    summary = "N sparse connections: a posted buffer per connection vs readiness + shared pool"
    seed_idea = (
        "with IOCP a server posts a receive buffer per connection and Windows locks it; a "
        "zero-byte recv waits for data without one (Jones & Ohlund 2002, ch. 6). On Linux an idle "
        "socket holds no receive memory in the kernel, so the saving is only the application's "
        "own posted buffers."
    )
    params = (
        choice_param(
            "strategy",
            STRATEGIES,
            "prepost: every connection owns a receive buffer of RECV_BUFFER bytes all the time "
            "(epoll says which to read); zero-byte: epoll readiness, Linux's counterpart of a "
            "posted 0-byte recv, then a receive into a buffer borrowed from a small shared pool (no "
            "0-byte recv is made in the measured loop); zero-byte-threads: what IOCP servers do, "
            "a thread per connection blocked in a real recv(fd, NULL, 0) that returns when data "
            f"is there, then a pool buffer (at most {MAX_THREADS:,} connections: one thread "
            "each). Every strategy also checks the 0-byte semantics on one of its own TCP "
            "connections (recv0_*). uring-bufring: Linux's answer, io_uring: one multishot receive armed "
            "per connection and a provided-buffer ring of POOL_BUFFERS buffers of RECV_BUFFER bytes "
            "(a power of two of them) from which the kernel takes one only when data arrives; when the "
            "ring runs dry a receive ends with ENOBUFS (counted) and is armed again once buffers are back.",
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
        size_param("msg_size", (512,), "Bytes per message (at most RECV_BUFFER).", minimum=STAMP.size),
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
            "Buffers in the zero-byte strategies' shared pool (uring-bufring: in its buffer ring).",
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
        Column("0-byte recv()s", "recv0_calls"),
        Column("Wake-ups", "select_calls"),
        Column("ENOBUFS", "enobufs_completions", where=(("strategy", ("uring-bufring",)),)),
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

    metrics = (
        LAT_P50,
        LAT_P99,
        M("recv_calls", "recv() calls", "count", "Receive calls made for the messages."),
        M(
            "select_calls",
            "Readiness waits",
            "count",
            "epoll waits made (uring-bufring: io_uring_enter calls).",
        ),
        M(
            "recv0_calls",
            "0-byte recv() calls",
            "count",
            "zero-byte-threads: blocking 0-byte recv() calls made.",
        ),
        M(
            "buffer_bytes_held",
            "Buffers held",
            "size",
            "Receive-buffer bytes the application held for its connections.",
            "lower",
        ),
        M(
            "rss_buffers_bytes",
            "RSS of buffers",
            "size",
            "Growth of RSS when the buffers were allocated and touched.",
            "lower",
        ),
        M("rss_bytes", "RSS", "size", "Whole-process RSS after the repetition (carries over between cases)."),
        M(
            "kernel_tcp_mem_idle_delta_bytes",
            "Kernel TCP memory",
            "size",
            "Change of the system-wide TCP memory (/proc/net/sockstat) for the idle connections.",
        ),
        M(
            "enobufs_completions",
            "ENOBUFS",
            "count",
            "uring-bufring: receives that ended because the buffer ring was empty (their data waited in "
            "the socket until the receive was armed again).",
            "lower",
        ),
        M(
            "recv_rearms",
            "Re-armed",
            "count",
            "uring-bufring: multishot receives armed again after they ended.",
        ),
        M("uring_cqes", "CQEs", "count", "uring-bufring: completion queue entries reaped."),
        M("fd_soft_limit", "RLIMIT_NOFILE soft", "count", "Descriptor soft limit in force."),
        M("fd_hard_limit", "RLIMIT_NOFILE hard", "count", "Descriptor hard limit in force."),
        M(
            "recv0_idle",
            "0-byte recv, idle",
            "text",
            "What a real 0-byte recv() did on an idle socket (EAGAIN when non-blocking).",
        ),
        M(
            "recv0_returned",
            "0-byte recv, data queued",
            "count",
            "What a 0-byte recv() returned with data queued.",
        ),
        M("recv0_left_queued", "Left queued", "size", "Bytes still queued after that 0-byte recv()."),
        M(
            "recv0_socket",
            "Probed socket",
            "text",
            "Which socket the 0-byte recv() probe used (tcp: the case's own connection).",
        ),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """N x B held by prepost against the pool, what the kernel held for idle sockets (and the
        Windows saving cited only against that), the 0-byte recv probe as recorded, and latency
        and throughput of the two strategies tested."""
        from iobench import explain as ex

        out = []
        pre_rows = ex.select(summary, strategy="prepost")
        n = max(ex.distinct(pre_rows, "connections"), default=None)
        held = _held(cls, summary, n) if n is not None else None
        if held:
            out.append(held)
        kernel = _kernel_memory(summary)
        if kernel:
            out.append(kernel)
        probe = _recv0(summary)
        if probe:
            out.append(probe)
        if n is not None:
            speed = _strategies(summary, n)
            if speed:
                out.append(speed)
        out += _bufring(cls, summary)
        return out

    _listener: socket.socket | None = None
    _child: Child | None = None
    _selector: selectors.BaseSelector | None = None
    _conns: list[socket.socket] = []  # noqa: RUF012 - replaced per instance
    _fds: list[int] = []  # noqa: RUF012 - replaced per instance
    _old_nofile: tuple[int, int] | None = None
    _threads: list[threading.Thread] = []  # noqa: RUF012 - replaced per instance
    _ring: Any = None
    _ring_buffers: mmap.mmap | None = None
    _role: RemoteRole | None = None
    _sync: socket.socket | None = None
    #: The sender's stamps are on this host's clock (forked, or a peer on the same kernel).
    _same_clock = True

    @classmethod
    def check_case(cls, case: dict[str, Any]) -> None:
        if case["msg_size"] > case["recv_buffer"]:
            raise ParamError("msg_size must not exceed recv_buffer")
        buffers = case["pool_buffers"]
        if case["strategy"] == "uring-bufring" and (buffers & (buffers - 1) or buffers > MAX_RING_BUFFERS):
            raise ParamError(f"uring-bufring: pool_buffers must be a power of two up to {MAX_RING_BUFFERS:,}")

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return case["strategy"] == "uring-bufring"  # its receive loop is in the native module

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
        if self.strategy == "zero-byte-threads" and self.n > MAX_THREADS:
            raise UnsupportedCase(
                f"zero-byte-threads runs a thread per connection: {self.n:,} connections would need "
                f"{self.n:,} threads, more than the {MAX_THREADS:,} this experiment starts"
            )
        self._old_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.fd_soft, self.fd_hard = raise_fd_limit(self.n + _SPARE_FDS)
        if self.peer.remote:
            kernel_before = self._connect_remote_sender()
        else:
            kernel_before = self._fork_sender()
        conns = self._conns
        kernel_idle = tcp_kernel_memory_bytes()
        # System-wide (other sockets move it too): what N idle connections added, ~0 on Linux.
        self.kernel_idle = (
            None if kernel_before is None or kernel_idle is None else kernel_idle - kernel_before
        )
        self.recv0 = self._probe_zero_length_recv(conns[0])
        rss_before = rss_bytes()
        if self.strategy == "prepost":
            # One buffer per connection, allocated and touched now: held while the socket idles.
            self.buffers = [bytearray(self.size) for _ in range(self.n)]
            self.pool: list[bytearray] = []
        elif self.strategy == "uring-bufring":
            self.buffers, self.pool = [], []
            self._setup_bufring(conns)
        else:
            self.buffers = []
            self.pool = [bytearray(self.size) for _ in range(self.case["pool_buffers"])]
        self.views = [memoryview(b) for b in self.buffers]
        self.latencies = array("q", bytes(8 * self.messages))
        if self.strategy == "zero-byte-threads":
            self._start_receivers()
        elif self.strategy != "uring-bufring":
            self._selector = selectors.EpollSelector()
            for index, conn in enumerate(conns):
                self._selector.register(conn, selectors.EVENT_READ, index)
        # Prepost's buffers; the pool; for zero-byte-threads the pool and the threads' stacks.
        self.rss_buffers = rss_bytes() - rss_before

    def _fork_sender(self) -> int | None:
        """The sender forked here, its N connections accepted (non-blocking) and its 'c' read;
        returns the kernel's TCP memory before the connections were accepted."""
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
        return kernel_before

    def _connect_remote_sender(self) -> int | None:
        """The sender is the zero-byte-sender role on the peer: it dials the sync connection
        and then N connections to our listener (on the address the peer reached us from), says
        'c' on the sync connection and waits there for the same go/probe/ack bytes the forked
        sender reads from its pipe. Every wait is bounded by the peer's timeout."""
        assert isinstance(self.peer, RemotePeer)
        self._listener = self.peer.listener(backlog=min(self.n + 1, 4096))
        params = {
            "port": self._listener.getsockname()[1],
            "connections": self.n,
            "messages": self.messages,
            "msg_size": self.msg,
            "burst": self.burst,
        }
        try:
            validate("zero-byte-sender", params)
        except RoleError as exc:
            raise UnsupportedCase(f"--peer: {exc}") from None
        self._role = self.peer.dial("zero-byte-sender", params)
        self._sync = self._role.accept_sync(self._listener)
        self._go = self._ack = self._sync.fileno()
        kernel_before = tcp_kernel_memory_bytes()
        self._conns = self._role.accept(self._listener, self.n)
        for conn in self._conns:
            set_blocking_timeouts(conn, 0)
            conn.setblocking(False)  # readiness decides when to read; no call ever waits
        if self._sync.recv(1) != b"c":  # the sync socket has the peer's timeouts
            raise RuntimeError("the zero-byte-sender role did not connect")
        self._role.ready()
        self._same_clock = self.peer.same_clock()
        return kernel_before

    def _probe_zero_length_recv(self, conn: socket.socket) -> dict[str, Any]:
        """Real 0-byte recv(2) calls on one of the measured TCP connections: without data
        (MSG_DONTWAIT), then blocking while the sender's probe byte arrives, then what is left
        queued. The probe byte is read off afterwards, so the messages start clean."""
        fd = conn.fileno()
        try:
            libc.recv_zero(fd, socket.MSG_DONTWAIT)
            idle = "returned"
        except BlockingIOError:
            idle = "EAGAIN"  # no data: a blocking one would wait here
        conn.settimeout(None)  # blocking, for the waiting call below
        set_blocking_timeouts(conn, SOCKET_TIMEOUT_S)  # a lost byte ends as EAGAIN, not a hang
        try:
            os.write(self._go, b"p")
            returned = libc.recv_zero(fd)  # waits until the probe byte is there
            left = len(conn.recv(16, socket.MSG_PEEK))
            if conn.recv(16) != b"p":
                raise RuntimeError("the 0-byte recv probe read something other than the probe byte")
        finally:
            set_blocking_timeouts(conn, 0)
            conn.setblocking(False)
        return {
            "recv0_idle": idle,
            "recv0_returned": returned,
            "recv0_left_queued": left,
            "recv0_socket": "tcp",
        }

    def _setup_bufring(self, conns: list[socket.socket]) -> None:
        """uring-bufring: the ring, K buffers of B bytes registered as its provided-buffer ring
        (allocated and touched now), and one multishot receive armed per connection."""
        k = self.case["pool_buffers"]
        self._ring = rings.open_uring(
            self.loops, min(max(self.n, 8), 4096), cq_entries=min(max(4 * self.n, 256), 65536)
        )
        self._ring_buffers = page_aligned_buffer(k * self.size)
        try:
            self._ring.setup_buf_ring(self._ring_buffers, k, self.size)
        except OSError as exc:
            raise UnsupportedCase(
                "provided-buffer rings: io_uring_register(IORING_REGISTER_PBUF_RING): "
                f"{rings.errno_text(exc.errno or 0)} (Linux 5.19 and later have them)"
            ) from None
        for conn in conns:
            conn.setblocking(True)  # io_uring waits for data itself; O_NONBLOCK would hand it EAGAIN
        self._fd_list = [conn.fileno() for conn in conns]
        try:
            self._ring.recv_bufring(
                self._fd_list, 0, self.msg, self.burst, self._go, array("q"), arm_only=True
            )
        except OSError as exc:
            raise UnsupportedCase(f"multishot receive: {rings.errno_text(exc.errno or 0)}") from None

    def _start_receivers(self) -> None:
        """zero-byte-threads: one thread per connection, blocked in a 0-byte recv from now on
        (started before any timing; they live until teardown)."""
        self._lock = threading.Lock()
        self._all_done = threading.Event()
        self._pool_free = threading.Semaphore(len(self.pool))
        self._errors: list[BaseException] = []
        self._done = self._recv0_calls = self._recv_calls = 0
        self._partial_held = 0
        self.partial_peak = 0
        previous = threading.stack_size(_THREAD_STACK)
        try:
            self._threads = [
                threading.Thread(target=self._receive_forever, args=(conn,), daemon=True)
                for conn in self._conns
            ]
            for conn in self._conns:
                conn.settimeout(None)  # blocking: the 0-byte recv waits in the kernel
            for thread in self._threads:
                thread.start()
        finally:
            threading.stack_size(previous)

    def _receive_forever(self, conn: socket.socket) -> None:
        fd, msg, pool, free = conn.fileno(), self.msg, self.pool, self._pool_free
        clock, recv_zero = time.monotonic_ns, libc.recv_zero
        earlier = b""
        try:
            while True:
                recv_zero(fd)  # returns 0 once data (or EOF) is queued, and leaves it there
                free.acquire()
                buffer = pool.pop()
                try:
                    got = conn.recv_into(buffer, msg - len(earlier))
                    if not got:
                        return  # EOF: the sender left (teardown)
                    if len(earlier) + got < msg:
                        part = earlier + bytes(buffer[:got])
                        stamp = None
                    else:
                        head = earlier + bytes(buffer[: STAMP.size]) if earlier else buffer
                        stamp = STAMP.unpack_from(head)[0]
                        part = b""
                finally:
                    pool.append(buffer)
                    free.release()
                with self._lock:
                    self._recv0_calls += 1
                    self._recv_calls += 1
                    self._partial_held += len(part) - len(earlier)
                    self.partial_peak = max(self.partial_peak, self._partial_held)
                    earlier = part
                    if stamp is None:
                        continue
                    self.latencies[self._done] = clock() - stamp
                    self._done += 1
                    if self._done % self.burst == 0 or self._done == self.messages:
                        os.write(self._go, b"a")
                    if self._done == self.messages:
                        self._all_done.set()
        except OSError as exc:
            if not self._stopping:
                self._errors.append(exc)
                self._all_done.set()

    _stopping = False

    def run_once(self) -> dict[str, Any]:
        if self.strategy == "zero-byte-threads":
            return self._run_threads()
        if self.strategy == "uring-bufring":
            return self._run_bufring()
        return self._run_epoll()

    def _run_bufring(self) -> dict[str, Any]:
        os.write(self._go, b"g")
        found = self._ring.recv_bufring(
            self._fd_list, self.messages, self.msg, self.burst, self._go, self.latencies
        )
        self.partial_peak = 0  # reassembly state lives in C: 12 bytes per connection, not a buffer
        return {
            "bytes": self.messages * self.msg,
            "ops": self.messages,
            "recv_calls": found["recv_cqes"],
            "select_calls": found["enters"],
            "enobufs_completions": found["enobufs"],
            "recv_rearms": found["rearms"],
            "uring_cqes": found["cqes"],
        }

    def _run_threads(self) -> dict[str, Any]:
        with self._lock:
            self._done = self._recv0_calls = self._recv_calls = 0
            self._all_done.clear()
        os.write(self._go, b"g")
        if not self._all_done.wait(SOCKET_TIMEOUT_S):
            raise TimeoutError(f"no data for {SOCKET_TIMEOUT_S:g} s after {self._done} messages")
        if self._errors:
            raise self._errors[0]
        return {
            "bytes": self.messages * self.msg,
            "ops": self.messages,
            "recv_calls": self._recv_calls,
            "recv0_calls": self._recv0_calls,
            "select_calls": 0,
        }

    def _run_epoll(self) -> dict[str, Any]:
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
                    stamp = STAMP.unpack_from(views[index])[0]
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
                        head = earlier + bytes(buffer[: STAMP.size]) if earlier else buffer
                        stamp = STAMP.unpack_from(head)[0]
                    finally:
                        pool.append(buffer)
                latencies[done] = clock() - stamp
                done += 1
                if done % burst == 0 or done == total:
                    os.write(self._go, b"a")
        return {"bytes": total * msg, "ops": total, "recv_calls": recv_calls, "select_calls": select_calls}

    def after_rep(self) -> dict[str, Any]:
        p50, p99 = percentiles(self.latencies, 0.50, 0.99)
        if not self._same_clock:
            # The stamps are the peer's CLOCK_MONOTONIC: another kernel's clock means nothing here.
            p50 = p99 = None
        held = sum(len(b) for b in self.buffers) + sum(len(b) for b in self.pool) + self.partial_peak
        if self._ring_buffers is not None:
            held += len(self._ring_buffers)  # K x B, whatever the number of connections
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
        if self._ring is not None:
            self._ring.close()  # first: its armed receives name the connections and the buffers
            self._ring = None
        if self._ring_buffers is not None:
            self._ring_buffers.close()
            self._ring_buffers = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        self._stopping = True
        for conn in self._conns if self._threads else ():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # a thread blocked in the 0-byte recv wakes to EOF
        for thread in self._threads:
            thread.join(SOCKET_TIMEOUT_S)
        self._threads = []
        for fd in self._fds:
            os.close(fd)  # the child reads EOF on its go pipe and leaves
        self._fds = []
        if self._sync is not None:
            self._sync.close()  # the role reads EOF on its sync connection and leaves
            self._sync = None
        if self._role is not None:
            with contextlib.suppress(PeerError):  # teardown goes on; the runner closes the peer
                self._role.wait(SOCKET_TIMEOUT_S)
            self._role = None
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


def _held(experiment: Any, summary: pd.DataFrame, n: Any) -> str | None:
    """Receive buffers prepost held for n connections, and the zero-byte pool beside it."""
    from iobench import explain as ex
    from iobench.units import format_size

    pre = {"strategy": "prepost", "connections": n}
    held = ex.one(summary, "buffer_bytes_held", **pre)
    if held is None:
        return None
    size = ex.one(summary, "recv_buffer", **pre)
    sentence = f"prepost held {format_size(held)} of receive buffers for {n:,.0f} connections"
    if size:
        sentence += (
            f" ({n:,.0f} x {ex.fmt(experiment, 'recv_buffer', size)}, one per connection, idle or not)"
        )
    zero = {"strategy": "zero-byte", "connections": n}
    pool = ex.one(summary, "buffer_bytes_held", **zero)
    if pool is not None:
        buffers = ex.one(summary, "pool_buffers", **zero)
        of = f"a pool of {buffers:,.0f} buffers plus partial messages" if buffers else "its pool"
        sentence += f"; zero-byte held {format_size(pool)} ({of})"
        if pool and pool < held:
            sentence += f", {ex.times(held / pool)} less"
        elif pool > held:
            sentence += f", {ex.times(pool / held)} more" if held else ", more"
    rss = ex.one(summary, "rss_buffers_bytes", **pre)
    if rss is not None:
        sentence += f". Allocating prepost's buffers grew RSS by {format_size(rss)}"
    return sentence + "."


#: A change of the system-wide TCP memory counter below this is read as "nothing measurable".
_KERNEL_NOISE = 1 << 20


def _kernel_memory(summary: pd.DataFrame) -> str | None:
    """What N idle connections added to the kernel's TCP memory, and the Windows saving cited
    against it only when the counter shows that idle sockets held nothing measurable."""
    from iobench import explain as ex
    from iobench.units import format_size

    column = "kernel_tcp_mem_idle_delta_bytes"
    if column not in summary:
        return None
    rows = summary[summary[column].map(ex.finite)]
    if rows.empty:
        return None
    row = rows.iloc[0]
    delta, count = float(row[column]), f"{row['connections']:,.0f}"
    if abs(delta) >= _KERNEL_NOISE:
        return (
            f"Opening {count} idle connections moved the kernel's TCP memory by {format_size(abs(delta))} "
            "(/proc/net/sockstat), a system-wide counter other sockets move too: this run cannot say what "
            "idle sockets hold in the kernel."
        )
    measured = (
        f"Opening {count} idle connections changed the kernel's TCP memory by {format_size(delta)}"
        if delta >= 0
        else f"While {count} idle connections opened, the kernel's TCP memory even fell by {format_size(-delta)}"
    )
    sentence = f"{measured} (/proc/net/sockstat)"
    connections, buffer = row.get("connections"), row.get("recv_buffer")
    if not (ex.finite(connections) and connections and ex.finite(buffer) and buffer):
        return sentence + "."
    per_socket = max(delta, 0.0) / connections
    sentence += (
        f": {format_size(per_socket)} per idle socket, against the {format_size(buffer)} receive buffer each "
        "prepost connection holds"
    )
    if per_socket >= buffer / 10:
        return sentence + "."
    return (
        sentence
        + ". "
        + ex.cite(
            ex.WINSOCK_CHAPTER,
            ex.WINSOCK_BOOK,
            "on Windows every posted overlapped receive locks its buffer's pages, and a zero-byte receive "
            "avoids that",
        )
        + ". Here the idle sockets held next to nothing in the kernel: what the zero-byte strategy saves is "
        "the application's own buffers."
    )


def _recv0(summary: pd.DataFrame) -> str | None:
    """The 0-byte recv() probe as recorded: what it did on an idle socket, what it returned with
    data queued, and whether the data stayed queued."""
    from iobench import explain as ex

    if "recv0_idle" not in summary:
        return None
    idle_values = summary["recv0_idle"].dropna()
    if idle_values.empty:
        return None
    row = summary.loc[idle_values.index[0]]
    idle = str(row["recv0_idle"])
    where = row.get("recv0_socket")
    if where == "tcp":
        on = "the case's own TCP connection"
    else:
        on = f"a {where} socket" if isinstance(where, str) else "a socket"
    sentence = f"A real 0-byte recv() on {on}, while idle, " + (
        "failed with EAGAIN (a blocking one would wait there)" if idle == "EAGAIN" else str(idle)
    )
    returned, left = row.get("recv0_returned"), row.get("recv0_left_queued")
    if not ex.finite(returned):
        return sentence + "."
    sentence += f"; with data queued it returned {returned:,.0f}"
    if ex.finite(left):
        sentence += f" and left {left:,.0f} byte(s) queued"
    if returned == 0 and ex.finite(left) and left > 0:
        sentence += (
            ': it only says "readable" and takes nothing, which is what epoll reports without a syscall per '
            "connection"
        )
    threads = ex.select(summary, strategy="zero-byte-threads")
    calls = ex.one(threads, "recv0_calls") if not threads.empty else None
    if calls:
        sentence += (
            f". The zero-byte-threads strategy waited in {calls:,.0f} blocking 0-byte recv() calls per repetition "
            "(one thread per connection, as IOCP programs post one zero-byte receive per socket)"
        )
    return sentence + "."


def _strategies(summary: pd.DataFrame, n: Any) -> str | None:
    """Latency and throughput of prepost and zero-byte at n connections, the gap tested."""
    from iobench import explain as ex
    from iobench.units import format_duration, format_rate

    cases = (
        ("prepost", {"strategy": "prepost", "connections": n}),
        ("zero-byte", {"strategy": "zero-byte", "connections": n}),
    )
    threads = {"strategy": "zero-byte-threads", "connections": n}
    parts = []
    extra = ""
    if ex.one(summary, "bytes_per_s", **threads) is not None:
        found = ex.difference(summary, "bytes_per_s", cases[0][1], threads)
        extra = f" Zero-byte-threads against prepost: {ex.contrast(found, higher_is_better=True)}."
    for label, case in cases:
        p50, p99 = ex.one(summary, "lat_p50_ns", **case), ex.one(summary, "lat_p99_ns", **case)
        rate = ex.one(summary, "bytes_per_s", **case)
        if p50 is None or p99 is None or rate is None:
            return None
        parts.append(f"{label} p50 {format_duration(p50)}, p99 {format_duration(p99)}, {format_rate(rate)}")
    found = ex.difference(summary, "bytes_per_s", cases[0][1], cases[1][1])
    verdict = {
        -1: "borrowing a pool buffer only after readiness cost throughput here",
        0: "borrowing a pool buffer only after readiness cost no measurable throughput here",
        1: "borrowing a pool buffer only after readiness cost no throughput; zero-byte was faster here",
    }.get(ex.direction(found))
    sentence = (
        f"At {n:,.0f} connections: "
        + "; ".join(parts)
        + f". Zero-byte against prepost: {ex.contrast(found, higher_is_better=True)}"
    )
    return sentence + (f"; {verdict}." if verdict else ".") + extra


def _bufring(experiment: Any, summary: pd.DataFrame) -> list[str]:
    """uring-bufring at its largest N: the K x B it held against prepost's N x B at the same N,
    how often the ring ran dry (and that the receives were armed again), and its throughput
    against prepost's, tested; the zero-byte-recv idea cited where the numbers bear it out."""
    from iobench import explain as ex
    from iobench.units import format_size

    rows = ex.select(summary, strategy="uring-bufring")
    n = max(ex.distinct(rows, "connections"), default=None)
    if n is None:
        return []
    ring = {"strategy": "uring-bufring", "connections": n}
    held, k = ex.one(summary, "buffer_bytes_held", **ring), ex.one(summary, "pool_buffers", **ring)
    size = ex.one(summary, "recv_buffer", **ring)
    if held is None or not k or not size:
        return []
    sentence = (
        f"uring-bufring held {format_size(held)} for {n:,.0f} connections: a ring of {k:,.0f} buffers of "
        f"{ex.fmt(experiment, 'recv_buffer', size)} that the kernel draws from only when data arrives, one "
        "multishot receive armed per connection"
    )
    pre = {"strategy": "prepost", "connections": n}
    pre_held = ex.one(summary, "buffer_bytes_held", **pre)
    fewer = pre_held is not None and held < pre_held
    if pre_held is not None:
        relation = f"{ex.times(pre_held / held)} less than" if fewer else "no less than"
        sentence += f", {relation} prepost's {format_size(pre_held)} ({n:,.0f} x {ex.fmt(experiment, 'recv_buffer', size)})"
    out = [sentence + "."]
    dry = ex.one(summary, "enobufs_completions", **ring)
    rearms = ex.one(summary, "recv_rearms", **ring)
    if dry is not None:
        if dry:
            again = f", and the receives were armed again {rearms:,.0f} times" if rearms is not None else ""
            out.append(
                f"The ring ran dry {dry:,.0f} times per repetition (ENOBUFS completions: the data waited in the "
                f"socket){again}; every message still arrived."
            )
        else:
            out.append("The ring never ran dry (no ENOBUFS completion).")
    found = ex.difference(summary, "bytes_per_s", pre, ring)
    if found is not None:
        out.append(
            f"uring-bufring against prepost at {n:,.0f} connections: {ex.contrast(found, higher_is_better=True)}."
        )
    if fewer:
        out.append(
            ex.cite(
                ex.WINSOCK_CHAPTER,
                ex.WINSOCK_BOOK,
                "a server with many idle connections posts zero-byte receives so that no buffer is locked per "
                "connection, and receives into a buffer only when data has arrived",
            )
            + ". io_uring's provided buffers do the same on Linux: memory held follows K, not N."
        )
    return out
