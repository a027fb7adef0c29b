"""async-send: several sends in flight on one socket; echo servers vs concurrency (seed 004)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import selectors
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from iobench.errors import UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.loops import rings
from iobench.metrics import LAT_P50, LAT_P99
from iobench.metrics import Metric as M
from iobench.osutil.children import Child, fork_child
from iobench.osutil.sockets import (
    SOCKET_TIMEOUT_S,
    accept_with_timeouts,
    connect_loopback,
    loopback_listener,
    new_selector_loop,
    set_blocking_timeouts,
)
from iobench.params import Kind, Param, choice_param, size_param
from iobench.peer.client import RemotePeer, RemoteRole
from iobench.peer.loops import (
    FRAME_HEADER,
    INFLIGHT_MODES,
    URING_MODES,
    drive_echo,
    fill,
    message_sizes,
    receive_all,
    verify_frames,
)
from iobench.peer.roles import RoleError, check_limits, validate
from iobench.units import format_size

if TYPE_CHECKING:
    import pandas as pd

WRITER_MODES = ("threads-sendall", "threads-locked")
ECHO_MODES = ("echo-threads", "echo-selectors", "echo-asyncio", "echo-uvloop")
#: io_uring sends in flight: independent SQEs or an IOSQE_IO_LINK chain, with or without MSG_WAITALL.
_IOV_BATCH = 512  # below IOV_MAX (1024)


def advance(pending: list[memoryview], sent: int) -> list[memoryview]:
    """What is left to send after a send took ``sent`` bytes of ``pending``: the frames it took
    whole are dropped, a frame it took part of continues where it stopped."""
    index = 0
    while index < len(pending) and sent >= len(pending[index]):
        sent -= len(pending[index])
        index += 1
    rest = pending[index:]
    if rest and sent:
        rest[0] = rest[0][sent:]
    return rest


def send_frames(sock: socket.socket, frames: list[bytes], batch: int = _IOV_BATCH) -> dict[str, int]:
    """Queue every frame on a non-blocking socket, ``batch`` frames per sendmsg, as an event-loop
    writer does: a short send resumes inside the frame it stopped in, EAGAIN waits for room.

    Returns the sendmsg calls that took bytes, how many of them were short (took part of what
    was offered, so the next call resumed mid-stream), and the waits for room.
    """
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    calls = short = waits = 0
    for start in range(0, len(frames), batch):
        pending = [memoryview(frame) for frame in frames[start : start + batch]]
        while pending:
            try:
                sent = sock.sendmsg(pending)
            except BlockingIOError:
                waits += 1
                if not poller.poll(SOCKET_TIMEOUT_S * 1000):
                    raise TimeoutError(f"no room to send for {SOCKET_TIMEOUT_S:g} s") from None
                continue
            calls += 1
            short += sent < sum(map(len, pending))
            pending = advance(pending, sent)
    return {"send_calls": calls, "short_sends": short, "send_waits": waits}


def interleaving(data: bytes, writers: int, size: int) -> dict[str, Any]:
    """Writer w's bytes are all w+1: split the stream into runs of one writer and count the
    messages whose bytes are not contiguous (torn by another writer's bytes)."""
    import numpy as np  # deferred: `iobench list` and --help must not pay for numpy

    stream = np.frombuffer(data, dtype=np.uint8)
    if not len(stream):
        return {"sizes_ok": False, "interleaved_messages": 0, "writer_switches": 0, "bytes_ok": False}
    edges = np.flatnonzero(np.diff(stream)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(stream)]))
    offsets = [0] * writers
    torn: set[tuple[int, int]] = set()
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        writer = int(stream[start]) - 1
        first, last = offsets[writer], offsets[writer] + (end - start)
        if first % size:
            torn.add((writer, first // size))
        if last % size:
            torn.add((writer, last // size))
        offsets[writer] = last
    return {
        "sizes_ok": not torn,
        "interleaved_messages": len(torn),
        "writer_switches": len(starts) - 1,
        "bytes_ok": all(count == offsets[0] for count in offsets),
    }


def _echo_driver(port: int, connections: int, messages: int, size: int, go: int) -> dict[str, Any]:
    """The client child: N connections, each a closed loop of ``messages`` round trips."""
    return drive_echo([connect_loopback(port) for _ in range(connections)], messages, size, go)


class _EchoProtocol(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None] | None) -> None:
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool:
        self.transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


async def _attach_asyncio(conns: list[socket.socket]) -> list[asyncio.Future[None]]:
    """Hand every accepted connection to the running loop; returns one future per connection,
    done when the client has closed its side."""
    loop = asyncio.get_running_loop()
    waits = []
    for conn in conns:
        done: asyncio.Future[None] = loop.create_future()
        await loop.connect_accepted_socket(lambda done=done: _EchoProtocol(done), conn)
        waits.append(done)
    return waits


async def _serve_asyncio(waits: list[asyncio.Future[None]]) -> None:
    await asyncio.wait_for(asyncio.gather(*waits), SOCKET_TIMEOUT_S)


def _echo_blocking(conn: socket.socket, size: int) -> None:
    buffer = bytearray(max(size, 65536))
    view = memoryview(buffer)
    while got := conn.recv_into(buffer):
        conn.sendall(view[:got])


def _selector_for(conns: list[socket.socket]) -> selectors.BaseSelector:
    selector = selectors.DefaultSelector()
    for conn in conns:
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
    return selector


def _serve_selectors(selector: selectors.BaseSelector, connections: int, size: int) -> None:
    buffer = bytearray(max(size, 65536))
    view = memoryview(buffer)
    open_conns = connections
    while open_conns:
        events = selector.select(SOCKET_TIMEOUT_S)
        if not events:
            raise TimeoutError("echo clients went silent")
        for key, _ in events:
            conn = key.fileobj
            got = conn.recv_into(buffer)
            if not got:
                selector.unregister(conn)
                open_conns -= 1
                continue
            sent = conn.send(view[:got])
            if sent < got:  # the client's window is full (rare): finish this echo blocking
                conn.settimeout(SOCKET_TIMEOUT_S)
                conn.sendall(view[sent:got])
                conn.setblocking(False)


@register
class AsyncSend(Experiment):
    """Sends in flight on one socket (what stays ordered), then echo servers by concurrency."""

    name = "async-send"
    has_peers = True
    remote_peer = True
    summary = "several sends in flight on one socket: order and sizes; echo throughput/latency by model"
    seed_idea = (
        "overlapped sends of 100, 200 and 150 bytes on one socket arrive whole and in order "
        "(WSASend: buffers go to the transport in call order). On Linux one writer's queued "
        "sends stay ordered too, but two threads calling sendall on one socket interleave their "
        "bytes. Then: what threads, selectors and asyncio cost per message."
    )
    params = (
        choice_param(
            "mode",
            INFLIGHT_MODES + WRITER_MODES + ECHO_MODES + URING_MODES,
            "inflight-100-200-150: one writer queues 100/200/150-byte messages with non-blocking "
            "sendmsg (up to 512 per call) on a send buffer set to its minimum, so sends return "
            "short and the writer resumes mid-message (short_sends); the receiver checks order and "
            "sizes. One stream socket keeps the order of the calls, so this demonstrates Linux's "
            "guarantee rather than testing it: the check catches a writer that mishandles a short "
            "send, not a reordering the kernel never does. inflight-random: "
            "the same with random sizes up to MSG_SIZE; threads-sendall: CONCURRENCY threads "
            "sendall WRITER_MSG_SIZE messages on one socket (bytes interleave); threads-locked: "
            "the same under a lock (both over a Unix socketpair); echo-*: CONCURRENCY clients (a child) ping-pong MSG_SIZE "
            "with a server of blocking threads, selectors, asyncio or uvloop. uring-*: messages of 100, "
            "200, 150 bytes and a random size up to MSG_SIZE, in turn, each one IORING_OP_SEND, CONCURRENCY "
            "of them in flight on the minimum send buffer: independent SQEs (unlinked) or IOSQE_IO_LINK "
            "chains (linked), with or without MSG_WAITALL; the receiver checks order and sizes, the "
            "sender counts short sends and completions out of order.",
        ),
        Param(
            "concurrency",
            Kind.INT,
            (1, 4, 16),
            "Writer threads, echo connections, or io_uring sends in flight.",
            sweep=True,
            minimum=1,
            maximum=1024,
        ),
        size_param(
            "msg_size", (1024,), "Echo message size; maximum size of inflight-random.", maximum=16 << 20
        ),
        size_param("writer_msg_size", (256 << 10,), "Message size of the threads-* modes.", maximum=64 << 20),
        Param(
            "messages",
            Kind.INT,
            (300,),
            "Messages per writer / round trips per connection.",
            sweep=True,
            minimum=1,
            maximum=10**7,
        ),
    )
    x_param = "concurrency"
    table_axis = "concurrency"
    series_params = ("mode",)
    counter_scope = "process"
    columns = (
        Column("Throughput", "bytes_per_s", "rate"),
        Column("Messages", "ops"),
        Column("Order ok", "order_ok", "text"),
        Column("Sizes ok", "sizes_ok", "text"),
        Column("Torn msgs", "interleaved_messages"),
        Column("p50 RTT", "lat_p50_ns", "duration"),
        Column("p99 RTT", "lat_p99_ns", "duration"),
        Column("Ctx/msg server", "ctx_vol", "ratio", per="ops"),
        Column("Ctx/msg client", "peer_ctx_vol", "ratio", per="ops"),
        Column("CPU/msg server", "cpu_ns", "duration", per="ops"),
    )

    figures = (
        FigureSpec(
            "metric", title="Messages torn by another writer's bytes", metric="interleaved_messages",
            where=(("mode", WRITER_MODES),), y_label="torn messages",
        ),
        FigureSpec("throughput", title="Echo throughput vs concurrency", where=(("mode", ECHO_MODES),)),
        FigureSpec(
            "percentiles", title="Echo round-trip time", metrics=("lat_p50_ns", "lat_p99_ns"),
            unit="duration", log_y=True, where=(("mode", ECHO_MODES),),
        ),
        FigureSpec(
            "metric", title="Server context switches per message (voluntary)", metric="ctx_vol", per="ops",
            unit="ratio", where=(("mode", ECHO_MODES),), y_label="context switches per message",
        ),
        FigureSpec(
            "metric", title="io_uring sends completed out of order", metric="completed_out_of_order",
            where=(("mode", URING_MODES),), y_label="sends completed after a later one",
        ),
    )  # fmt: skip

    metrics = (
        LAT_P50,
        LAT_P99,
        M(
            "round_trips",
            "Round trips",
            "count",
            "Echo modes: request/response pairs completed in the repetition.",
        ),
        M(
            "peer_ctx_vol",
            "Server voluntary switches",
            "count",
            "Voluntary context switches of the peer (echo server or receiver child), from wait4.",
            "lower",
        ),
        M(
            "peer_ctx_invol",
            "Server involuntary switches",
            "count",
            "Involuntary context switches of the peer, from wait4.",
            "lower",
        ),
        M(
            "effective_sndbuf",
            "SO_SNDBUF",
            "size",
            "The sending socket's SO_SNDBUF as getsockopt reported it.",
        ),
        M("send_calls", "send() calls", "count", "Send calls the writer made."),
        M(
            "short_sends",
            "Short sends",
            "count",
            "In-flight modes: sends the kernel accepted only partly (the rest was queued again).",
        ),
        M(
            "send_waits",
            "Send waits",
            "count",
            "In-flight modes: times the writer waited for the socket to become writable.",
        ),
        M(
            "order_ok",
            "Order",
            "flag",
            "In-flight modes: every message arrived in the order it was queued.",
            kind="check",
        ),
        M(
            "sizes_ok",
            "Sizes",
            "flag",
            "In-flight modes: every message arrived whole, with its size.",
            kind="check",
        ),
        M("messages_verified", "Messages verified", "count", "Messages the receiver checked."),
        M("received_bytes", "Received", "size", "Bytes the receiver got."),
        M(
            "interleaved_messages",
            "Torn messages",
            "count",
            "Writer modes: messages whose bytes were interleaved with another writer's (torn).",
            "lower",
        ),
        M(
            "writer_switches",
            "Writer switches",
            "count",
            "Writer modes: places in the stream where one writer's bytes follow another's.",
        ),
        M("bytes_ok", "Bytes", "flag", "Every byte sent was received.", kind="check"),
        M(
            "completed_out_of_order",
            "Out of order",
            "count",
            "uring-* modes: sends whose completion came after a later message's had (the kernel ran them in "
            "another order than they were queued).",
            "lower",
        ),
        M(
            "uring_cancelled",
            "Cancelled",
            "count",
            "uring-linked modes: sends cancelled (-ECANCELED) because an earlier one in their chain failed.",
        ),
        M(
            "uring_resent",
            "Sent again",
            "count",
            "uring-* modes: sends submitted again for the rest of a short send or after a cancellation.",
        ),
        M(
            "uring_enters",
            "io_uring_enter calls",
            "count",
            "uring-* modes: io_uring_enter calls made.",
            "lower",
        ),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """In-flight order/size checks, torn messages of shared sendall, echo models compared."""
        from iobench import explain as ex

        inflight = [r for r in (_inflight(cls, summary, m) for m in INFLIGHT_MODES) if r]
        out = [sentence for sentence, _ in inflight]
        if inflight and all(ok for _, ok in inflight):
            out.append(
                ex.cite(
                    "WSASend",
                    ex.WIN32_DOCS,
                    "the order of overlapped WSASend calls is the order in which their buffers go to the "
                    "transport",
                )
                + ". The same held here; on Linux there is nothing overlapped to reorder: send() copies into "
                "the socket buffer before it returns, in call order."
            )
        writers = _writers(cls, summary)
        if writers:
            out.append(writers)
        out += _uring(summary)
        out += _echo(summary)
        return out

    _listener: socket.socket | None = None
    _sender: socket.socket | None = None
    _child: Child | RemoteRole | None = None
    #: echo-* with --peer: the echo-driver role's sync connection ('g' goes there).
    _sync: socket.socket | None = None
    _conns: list[socket.socket] = []  # noqa: RUF012 - replaced per instance
    _go: int | None = None
    _threads: list[threading.Thread] = []  # noqa: RUF012 - replaced per instance
    _start: threading.Barrier | None = None
    _finish: threading.Barrier | None = None
    _selector: selectors.BaseSelector | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _ring: Any = None

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        mode = case["mode"]
        if mode in INFLIGHT_MODES:
            ignored = {"concurrency", "writer_msg_size"}
            return frozenset(ignored | ({"msg_size"} if mode == "inflight-100-200-150" else set()))
        if mode in WRITER_MODES:
            return frozenset({"msg_size"})
        return frozenset({"writer_msg_size"})

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return case["mode"] in URING_MODES  # the io_uring sends are made in the native module

    def prepare(self) -> None:
        self.mode: str = self.case["mode"]
        self.concurrency: int = self.case["concurrency"]
        self.messages: int = self.case["messages"]
        if self.mode == "echo-uvloop":
            try:
                import uvloop
            except ImportError:
                raise UnsupportedCase("uvloop not installed") from None
            self._loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        else:
            self._loop_factory = new_selector_loop
        if self.peer.remote:
            self._check_remote()
        if not self.peer.remote:
            self._listener = loopback_listener(backlog=max(self.concurrency, 16))
        elif self.mode in ECHO_MODES:
            assert isinstance(self.peer, RemotePeer)
            # On the address the peer reached us from; one more for the role's sync connection.
            self._listener = self.peer.listener(backlog=max(self.concurrency + 1, 16))
        if self.mode in URING_MODES:
            # The ring first: a kernel or build without io_uring makes the case unsupported.
            self._ring = rings.open_uring(self.loops, self.concurrency)
            self.sizes = message_sizes(self.mode, self.messages, self.case["msg_size"])
            # One buffer per message (header and payload): one SQE each.
            self.frames = [
                FRAME_HEADER.pack(seq, size) + bytes([fill(seq)]) * size
                for seq, size in enumerate(self.sizes)
            ]
            self.total = sum(map(len, self.frames))
        elif self.mode in INFLIGHT_MODES:
            sizes = message_sizes(self.mode, self.messages, self.case["msg_size"])
            self.sizes = sizes
            frames = []
            for seq, size in enumerate(sizes):
                frames.append(FRAME_HEADER.pack(seq, size))
                frames.append(bytes([fill(seq)]) * size)
            self.frames = frames
            self.total = sum(map(len, frames))
        elif self.mode in WRITER_MODES:
            self.size: int = self.case["writer_msg_size"]
            self.total = self.size * self.messages * self.concurrency
            # The receiver keeps every byte to check which writer's bytes follow which (then
            # hands them back through a pipe): several copies of the total in memory at once.
            room = psutil.virtual_memory().available // 4
            if self.total > room:
                raise UnsupportedCase(
                    f"{format_size(self.total)} from {self.concurrency} writers is more than the receiver can "
                    f"hold to verify here (a quarter of available memory: {format_size(room)}); "
                    "lower --messages or --writer-msg-size"
                )
            self.payloads = [bytes([w + 1]) * self.size for w in range(self.concurrency)]
        else:
            self.size = self.case["msg_size"]
            self.total = self.size * self.messages * self.concurrency

    def _check_remote(self) -> None:
        """UnsupportedCase for what cannot run against a peer host, or that its role refuses."""
        if self.mode in WRITER_MODES:
            raise UnsupportedCase(
                f"{self.mode} writes to an AF_UNIX socketpair on this host: it cannot reach a peer host (--peer)"
            )
        if self.mode in ECHO_MODES:
            role, params = "echo-driver", self._echo_params(port=1)
        else:
            role, params = "receive-frames", self._frames_params()
        try:
            validate(role, params)
            check_limits(role, params)
        except RoleError as exc:
            raise UnsupportedCase(f"--peer: {exc}") from None

    def _echo_params(self, port: int) -> dict[str, Any]:
        return {
            "port": port,
            "connections": self.concurrency,
            "messages": self.messages,
            "msg_size": self.case["msg_size"],
        }

    def _frames_params(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "messages": self.messages,
            "msg_size": self.case["msg_size"],
            # uring-*: the smallest receive window, as the forked receiver asks before connect().
            "rcvbuf": 0 if self.mode in URING_MODES else None,
        }

    def _before_remote_rep(self) -> dict[str, Any]:
        """The peer of this repetition is a role on the peer host. echo-*: the echo-driver
        dials its sync connection and CONCURRENCY connections to our listener, then waits for
        'g' on the sync connection as the forked driver waits on its pipe. In-flight and
        uring-*: the receive-frames role listens (SO_RCVBUF before listen()) and we connect."""
        assert isinstance(self.peer, RemotePeer)
        if self.mode in ECHO_MODES:
            assert self._listener is not None
            role = self._child = self.peer.dial(
                "echo-driver", self._echo_params(self._listener.getsockname()[1])
            )
            self._sync = role.accept_sync(self._listener)
            self._conns = role.accept(self._listener, self.concurrency)
            self._go = self._sync.fileno()  # 'g' goes on the sync connection (closed by _close_rep)
            for conn in self._conns:  # as accept_with_timeouts leaves them
                set_blocking_timeouts(conn, SOCKET_TIMEOUT_S)
            role.ready()
            self._prepare_server()
            return {}
        role = self._child = self.peer.start("receive-frames", self._frames_params())
        self._sender = role.connect()
        self._sender.settimeout(None)
        set_blocking_timeouts(self._sender, SOCKET_TIMEOUT_S)
        return self._prepare_sender()

    def before_rep(self) -> dict[str, Any]:
        if self.peer.remote:
            return self._before_remote_rep()
        assert self._listener is not None
        port = self._listener.getsockname()[1]
        if self.mode in ECHO_MODES:
            go_r, go_w = os.pipe()
            self._go = go_w  # closed by _close_rep whatever happens next
            conc, messages, size, listener = self.concurrency, self.messages, self.size, self._listener

            def driver() -> dict[str, Any]:
                os.close(go_w)
                listener.close()
                return _echo_driver(port, conc, messages, size, go_r)

            try:
                self._child = fork_child(driver, wait_ready=True)
            finally:
                os.close(go_r)
            self._conns = [accept_with_timeouts(self._listener) for _ in range(self.concurrency)]
            self._prepare_server()
            return {}
        if self.mode in WRITER_MODES:
            # A Unix stream pair: its ~208 KiB send buffer is smaller than one message, so each
            # sendall takes several send() calls. (Loopback TCP autotunes its send buffer to
            # MiBs and tore no 256 KiB message in trials: the race is real, its odds vary.)
            self._sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            set_blocking_timeouts(receiver, SOCKET_TIMEOUT_S)
        else:
            # uring-*: the smallest receive window too, so the sender meets a full socket often
            # (on loopback an eager reader otherwise frees room as fast as sends fill it).
            receiver = connect_loopback(port, rcvbuf=0 if self.mode in URING_MODES else None)
        try:
            if self._sender is None:
                self._sender = accept_with_timeouts(self._listener)
            others, total = [self._sender, self._listener], self.total
            self._child = fork_child(lambda: receive_all(receiver, others, total), wait_ready=True)
        finally:
            receiver.close()
        return self._prepare_sender()

    def _prepare_sender(self) -> dict[str, Any]:
        """The sending socket's options for the mode, the writer threads parked."""
        assert self._sender is not None
        if self.mode in INFLIGHT_MODES or self.mode in URING_MODES:
            # The smallest send buffer Linux allows: sends come back short, and the writer must
            # resume mid-frame (what the receiver's order and size checks can then catch).
            self._sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 0)
            # io_uring waits for room itself (it polls); a non-blocking socket would hand it EAGAIN.
            self._sender.setblocking(self.mode in URING_MODES)
        else:
            # Python-level timeouts: sendall then sends in pieces, as any non-blocking sender does.
            self._sender.settimeout(SOCKET_TIMEOUT_S)
            self._start_writers()
        return {"effective_sndbuf": self._sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)}

    def _park(self, targets: list[Callable[[], None]]) -> None:
        """Start one thread per target before the clock does: each waits for run_once's start,
        runs, and meets run_once at the finish (so no thread starts or exits in the window)."""
        self._start = threading.Barrier(len(targets) + 1)
        self._finish = threading.Barrier(len(targets) + 1)
        self._errors: list[BaseException] = []

        def parked(target: Callable[[], None]) -> None:
            try:
                self._start.wait(SOCKET_TIMEOUT_S)
            except threading.BrokenBarrierError:
                return
            try:
                target()
            except BaseException as exc:  # reported by run_once, in the measuring thread
                self._errors.append(exc)
            finally:
                with contextlib.suppress(threading.BrokenBarrierError):
                    self._finish.wait(SOCKET_TIMEOUT_S)

        self._threads = [threading.Thread(target=parked, args=(t,), daemon=True) for t in targets]
        for thread in self._threads:
            thread.start()

    def _run_parked(self, what: str) -> None:
        self._start.wait(SOCKET_TIMEOUT_S)
        try:
            self._finish.wait(SOCKET_TIMEOUT_S)
        except threading.BrokenBarrierError:
            raise TimeoutError(f"{what} threads did not finish within {SOCKET_TIMEOUT_S:g} s") from None
        if self._errors:
            raise RuntimeError(f"{what} threads failed: {self._errors[0]!r}")

    def _start_writers(self) -> None:
        sender = self._sender
        assert sender is not None
        lock = threading.Lock() if self.mode == "threads-locked" else None

        def writer(payload: bytes) -> Callable[[], None]:
            def write() -> None:
                for _ in range(self.messages):
                    if lock is None:
                        sender.sendall(payload)
                    else:
                        with lock:
                            sender.sendall(payload)

            return write

        self._park([writer(p) for p in self.payloads])

    def _prepare_server(self) -> None:
        """The server's machinery before the clock: threads blocked in recv, a selector with
        every connection registered, or an event loop that already owns every connection."""
        if self.mode == "echo-threads":
            size = self.size
            self._park([lambda c=c: _echo_blocking(c, size) for c in self._conns])
        elif self.mode == "echo-selectors":
            self._selector = _selector_for(self._conns)
        else:
            for conn in self._conns:
                conn.setblocking(False)
            self._loop = self._loop_factory()
            self._waits = self._loop.run_until_complete(_attach_asyncio(self._conns))

    def run_once(self) -> dict[str, Any]:
        if self.mode in INFLIGHT_MODES:
            return self._send_inflight()
        if self.mode in URING_MODES:
            return self._send_uring()
        if self.mode in WRITER_MODES:
            self._run_parked(self.mode)
            return {"bytes": self.total, "ops": self.messages * self.concurrency}
        return self._serve_echo()

    def _send_inflight(self) -> dict[str, Any]:
        assert self._sender is not None
        counts = send_frames(self._sender, self.frames)
        return {"bytes": self.total, "ops": len(self.sizes), **counts}

    def _send_uring(self) -> dict[str, Any]:
        assert self._sender is not None
        link, waitall = "-linked" in self.mode, self.mode.endswith("-waitall")
        found = self._ring.send_inflight(self._sender.fileno(), self.frames, self.concurrency, link, waitall)
        return {
            "bytes": self.total,
            "ops": len(self.sizes),
            "send_calls": found["sqes"],
            "short_sends": found["short_sends"],
            "completed_out_of_order": found["out_of_order"],
            "uring_cancelled": found["cancelled"],
            "uring_resent": found["resent"],
            "uring_enters": found["enters"],
        }

    def _serve_echo(self) -> dict[str, Any]:
        assert self._go is not None
        os.write(self._go, b"g")
        if self.mode == "echo-threads":
            self._run_parked(self.mode)
        elif self.mode == "echo-selectors":
            assert self._selector is not None
            _serve_selectors(self._selector, len(self._conns), self.size)
        else:
            assert self._loop is not None
            self._loop.run_until_complete(_serve_asyncio(self._waits))
        return {"bytes": self.total, "ops": self.messages * self.concurrency}

    def after_rep(self) -> dict[str, Any]:
        assert self._child is not None
        if self._sender is not None:
            self._sender.shutdown(socket.SHUT_WR)  # the receiver reads to EOF
        self._stop_threads()
        # The receiver verifies every byte after the last one arrives; allow for that at a
        # slow 20 MiB/s (one pinned CPU, gigabytes in the threads modes), never less than 30 s.
        result, _ = self._child.wait(max(SOCKET_TIMEOUT_S, self.total / (20 << 20)))
        remote = isinstance(self._child, RemoteRole)
        self._child = None
        self._close_rep()
        if remote and self.mode not in ECHO_MODES:
            return result  # receive-frames checked the stream where it arrived: the same columns
        if self.mode in ECHO_MODES:
            return {
                **result,
                "order_ok": None,
                "sizes_ok": result.get("round_trips") == self.messages * self.concurrency,
            }
        data: bytes = result
        if self.mode in INFLIGHT_MODES or self.mode in URING_MODES:
            return {**verify_frames(data, self.sizes), "received_bytes": len(data)}
        found = interleaving(data, self.concurrency, self.size)
        # Each writer's own bytes keep their order; across writers nothing is ordered.
        return {**found, "order_ok": None, "received_bytes": len(data)}

    def _stop_threads(self) -> None:
        for barrier in (self._start, self._finish):
            if barrier is not None:
                barrier.abort()  # threads still parked leave instead of waiting
        for thread in self._threads:
            thread.join(SOCKET_TIMEOUT_S)
        self._threads, self._start, self._finish = [], None, None

    def _close_rep(self) -> None:
        if self._sync is not None:
            self._sync.close()  # _go is its descriptor
            self._sync, self._go = None, None
        if self._go is not None:
            os.close(self._go)
            self._go = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        for sock in [*self._conns, self._sender]:
            if sock is not None:
                sock.close()
        self._conns, self._sender = [], None

    def teardown(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        for sock in self._conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # echo threads blocked in recv see EOF and leave
        self._stop_threads()
        self._close_rep()
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def _ok(value: Any) -> bool | None:
    """A summary's True/False (CSV may give text), None when absent."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "false": False, "1.0": True, "0.0": False}.get(text)


def _inflight(experiment: Any, summary: pd.DataFrame, mode: str) -> tuple[str, bool] | None:
    """The sentence for one in-flight mode and whether order and sizes were both right."""
    from iobench import explain as ex

    rows = ex.select(summary, mode=mode)
    if rows.empty:
        return None
    row = rows.iloc[0]
    order, sizes = _ok(row.get("order_ok")), _ok(row.get("sizes_ok"))
    if order is None or sizes is None:
        return None
    what = (
        "of 100, 200 and 150 bytes in turn"
        if mode == "inflight-100-200-150"
        else f"of random sizes up to {ex.fmt(experiment, 'msg_size', row['msg_size'])}"
    )
    calls = row.get("send_calls")
    how = f"in {calls:,.0f} sendmsg() call(s)" if ex.finite(calls) else "at once"
    head = f"{mode}: {row['ops']:,.0f} messages {what}, all queued by one writer {how}, "
    if order and sizes:
        return head + "arrived in order and each whole (order ok, sizes ok).", True
    verified = row.get("messages_verified")
    count = f" ({verified:,.0f} verified)" if ex.finite(verified) else ""
    return (
        head + f"arrived {'in order' if order else 'OUT OF ORDER'} and "
        f"{'whole' if sizes else 'with WRONG SIZES'}{count}: a stream socket keeps one writer's bytes in "
        "order, so this needs a look.",
        False,
    )


def _writers(experiment: Any, summary: pd.DataFrame) -> str | None:
    from iobench import explain as ex

    shared = ex.select(summary, mode="threads-sendall")
    if shared.empty or "interleaved_messages" not in shared:
        return None
    row = shared.sort_values("concurrency").iloc[-1]
    torn, total, threads = row["interleaved_messages"], row["ops"], row["concurrency"]
    if not ex.finite(torn):
        return None
    size = ex.fmt(experiment, "writer_msg_size", row["writer_msg_size"])
    if threads < 2:
        sentence = f"threads-sendall ran with one thread only, so nothing could tear ({torn:,.0f} torn)"
    elif torn:
        sentence = (
            f"{threads:,.0f} threads calling sendall() on one socket with {size} messages tore {torn:,.0f} of "
            f"{total:,.0f} messages ({torn / total:.0%}): sendall() is a loop of send() calls that may each "
            "take only part of the message, and another thread's send() lands in between. "
            + ex.cite(
                "WSASend",
                ex.WIN32_DOCS,
                "WSASend should not be called on the same stream socket from several threads at once, since a "
                "provider may split a large send",
            )
            + ". On both systems, one message per socket at a time is the application's job"
        )
    else:
        sentence = (
            f"{threads:,.0f} threads calling sendall() on one socket with {size} messages tore none of "
            f"{total:,.0f} this time: the race is real (sendall() is several send() calls), but its odds vary"
        )
    locked = ex.select(summary, mode="threads-locked", concurrency=threads)
    if not locked.empty and ex.finite(locked["interleaved_messages"].iloc[0]):
        sentence += f". Under a lock the same writers tore {locked['interleaved_messages'].iloc[0]:,.0f}"
    return sentence + "."


def _echo(summary: pd.DataFrame) -> list[str]:
    """Echo servers at the highest concurrency ranked by throughput (measurable gaps only),
    context switches per message, and each model from the lowest to the highest concurrency."""
    from iobench import explain as ex

    if "mode" not in summary or "bytes_per_s" not in summary:
        return []
    rows = summary[summary["mode"].astype(str).isin(ECHO_MODES) & summary["bytes_per_s"].map(ex.finite)]
    if rows.empty:
        return []
    top = max(ex.distinct(rows, "concurrency"))
    modes = [m for m in ECHO_MODES if not ex.select(rows, mode=m, concurrency=top).empty]
    sentences = [_echo_at(rows, top, modes), _echo_switches(rows, top, modes), _echo_scaling(rows, top)]
    return [s for s in sentences if s is not None]


def _echo_cases(modes: list[str], concurrency: float) -> list[tuple[str, dict[str, Any]]]:
    """(model, case) of each echo mode at one concurrency, for ``explain.rank``."""
    return [(m.removeprefix("echo-"), {"mode": m, "concurrency": concurrency}) for m in modes]


def _echo_at(rows: pd.DataFrame, top: float, modes: list[str]) -> str:
    """Each model's throughput (and latency) at ``top`` connections, ranked where measurable."""
    from iobench import explain as ex
    from iobench.units import format_duration, format_rate

    parts = []
    for mode in modes:
        case = {"mode": mode, "concurrency": top}
        part = f"{mode.removeprefix('echo-')} {format_rate(ex.one(rows, 'bytes_per_s', **case))}"
        p50, p99 = ex.one(rows, "lat_p50_ns", **case), ex.one(rows, "lat_p99_ns", **case)
        if p50 is not None and p99 is not None:
            part += f" (p50 {format_duration(p50)}, p99 {format_duration(p99)})"
        parts.append(part)
    sentence = f"Echo at {top:,.0f} connection(s): " + "; ".join(parts)
    ranking = ex.rank(rows, "bytes_per_s", _echo_cases(modes, top))
    if ranking is not None:
        sentence += ". By throughput, " + ex.ranking_sentence(ranking, format_rate)
    return sentence + "."


def _echo_switches(rows: pd.DataFrame, top: float, modes: list[str]) -> str | None:
    """The server's voluntary context switches per message at ``top`` connections, and why
    threads take the most when they measurably do."""
    from iobench import explain as ex

    ctx = [
        (mode.removeprefix("echo-"), value)
        for mode in modes
        if (value := ex.value(rows, "ctx_vol", per="ops", mode=mode, concurrency=top)) is not None
    ]
    if not ctx:
        return None
    ctx.sort(key=lambda item: item[1])
    sentence = "Voluntary context switches of the server process per message: " + ", ".join(
        f"{mode} {value:.2f}" for mode, value in ctx
    )
    switches = ex.rank(rows, "ctx_vol", _echo_cases(modes, top), per="ops", higher_is_better=False)
    worst = (
        switches.tiers[-1] if switches is not None and switches.decided and len(switches.tiers) > 1 else ()
    )
    if len(worst) == 1 and worst[0].label == "threads":
        sentence += (
            ": measurably the most with a blocking thread per connection, which sleeps and wakes for each "
            "message, while an event loop serves every ready connection per wake-up"
        )
    return sentence + "."


def _echo_scaling(rows: pd.DataFrame, top: float) -> str | None:
    """Each model's throughput at ``top`` connections against the lowest concurrency run."""
    from iobench import explain as ex

    low = min(ex.distinct(rows, "concurrency"))
    if low >= top:
        return None
    scaling = []
    for mode in ECHO_MODES:
        found = ex.difference(
            rows, "bytes_per_s", {"mode": mode, "concurrency": low}, {"mode": mode, "concurrency": top}
        )
        if found is not None:
            scaling.append(f"{mode.removeprefix('echo-')} {ex.contrast(found, higher_is_better=True)}")
    if not scaling:
        return None
    return f"Throughput at {top:,.0f} connections against {low:,.0f}: " + "; ".join(scaling) + "."


def _uring(summary: pd.DataFrame) -> list[str]:
    """Each io_uring mode at its deepest concurrency: short sends, completions out of order, and
    whether the stream kept order and sizes; then what that says io_uring guarantees, only from
    the cases measured."""
    from iobench import explain as ex

    found: dict[str, tuple[bool, bool]] = {}
    sentences = []
    for mode in URING_MODES:
        rows = ex.select(summary, mode=mode)
        if rows.empty or "short_sends" not in rows:
            continue
        row = rows.sort_values("concurrency").iloc[-1]
        order, sizes = _ok(row.get("order_ok")), _ok(row.get("sizes_ok"))
        short, late = row.get("short_sends"), row.get("completed_out_of_order")
        if order is None or sizes is None or not ex.finite(short) or not ex.finite(late):
            continue
        found[mode] = (order and sizes, short > 0 or late > 0)
        kept = (
            "arrived in order and whole"
            if order and sizes
            else (
                f"arrived {'in order' if order else 'OUT OF ORDER'} and {'whole' if sizes else 'with WRONG SIZES'}"
            )
        )
        sentences.append(
            f"{mode} ({row['concurrency']:,.0f} sends in flight): {short:,.0f} sends completed short and "
            f"{late:,.0f} completed after a later one; the {row['ops']:,.0f} messages {kept}"
        )
    if not sentences:
        return []
    out = ["io_uring sends on one TCP socket with the minimum send buffer: " + "; ".join(sentences) + "."]
    linked_wait, unlinked_wait = found.get("uring-linked-waitall"), found.get("uring-unlinked-waitall")
    linked = found.get("uring-linked")
    if linked_wait and linked_wait[0] and unlinked_wait and not unlinked_wait[0]:
        out.append(
            "Only the linked chain kept the stream: independent SQEs are not run in the order they were "
            "queued once the socket is full (each waits for room on its own), while IOSQE_IO_LINK starts a "
            "send only after the one before it completed."
        )
    if linked and not linked[0] and linked_wait and linked_wait[0]:
        out.append(
            "A link orders the sends but does not make them whole: without MSG_WAITALL a send that found "
            "less room completes short, that counts as success for the chain, and the next message goes out "
            "before the rest of it; with MSG_WAITALL the kernel sends the rest first."
        )
    return out
