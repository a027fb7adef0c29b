"""async-send: several sends in flight on one socket; echo servers vs concurrency (seed 004)."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import selectors
import socket
import struct
import threading
import time
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from iobench.errors import UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
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
from iobench.stats import percentiles
from iobench.units import format_size

if TYPE_CHECKING:
    import pandas as pd

INFLIGHT_MODES = ("inflight-100-200-150", "inflight-random")
WRITER_MODES = ("threads-sendall", "threads-locked")
ECHO_MODES = ("echo-threads", "echo-selectors", "echo-asyncio", "echo-uvloop")
_HEADER = struct.Struct("!II")  # seq, payload size
_IOV_BATCH = 512  # below IOV_MAX (1024)


def _fill(seq: int) -> int:
    return seq % 251 + 1


def message_sizes(mode: str, messages: int, max_size: int) -> list[int]:
    """Payload sizes of the in-flight modes: 100, 200, 150 repeated, or seeded random sizes."""
    if mode == "inflight-100-200-150":
        return [(100, 200, 150)[i % 3] for i in range(messages)]
    rng = random.Random(4)
    return [rng.randint(1, max_size) for _ in range(messages)]


def verify_frames(data: bytes, sizes: list[int]) -> dict[str, Any]:
    """Check the single-writer stream: frames in order, each with its full size and pattern."""
    order_ok = sizes_ok = True
    offset = seq = 0
    while offset < len(data) and seq < len(sizes):
        if offset + _HEADER.size > len(data):
            sizes_ok = False
            break
        got_seq, size = _HEADER.unpack_from(data, offset)
        order_ok &= got_seq == seq
        payload = data[offset + _HEADER.size : offset + _HEADER.size + size]
        sizes_ok &= size == sizes[seq] and payload == bytes([_fill(got_seq)]) * size
        offset += _HEADER.size + size
        seq += 1
    return {
        "order_ok": order_ok and seq == len(sizes),
        "sizes_ok": sizes_ok and offset == len(data),
        "messages_verified": seq,
    }


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


def _receive_all(sock: socket.socket, others: list[socket.socket], total: int) -> bytes:
    for other in others:
        other.close()
    data = bytearray(total)
    view, have = memoryview(data), 0
    while have < total and (got := sock.recv_into(view[have:])):
        have += got
    sock.close()
    return bytes(data[:have])


def _echo_driver(port: int, connections: int, messages: int, size: int, go: int) -> dict[str, Any]:
    """The client child: N connections, each a closed loop of ``messages`` round trips."""
    socks = [connect_loopback(port) for _ in range(connections)]
    try:
        for sock in socks:
            sock.setblocking(False)
        if os.read(go, 1) != b"g":
            return {}
        before = resource.getrusage(resource.RUSAGE_SELF)
        payload = b"e" * size
        rtts = array("q")
        clock = time.perf_counter_ns
        selector = selectors.DefaultSelector()
        state = {}
        for sock in socks:
            sock.sendall(payload)
            state[sock] = [clock(), 0, 0]  # sent at, bytes back, round trips done
            selector.register(sock, selectors.EVENT_READ)
        active = connections
        while active:
            events = selector.select(SOCKET_TIMEOUT_S)
            if not events:
                raise TimeoutError("echo server went silent")
            for key, _ in events:
                sock, entry = key.fileobj, state[key.fileobj]
                got = len(sock.recv(size - entry[1]))
                if not got:
                    raise ConnectionError("echo server closed early")
                entry[1] += got
                if entry[1] < size:
                    continue
                rtts.append(clock() - entry[0])
                entry[1], entry[2] = 0, entry[2] + 1
                if entry[2] == messages:
                    selector.unregister(sock)
                    sock.shutdown(socket.SHUT_WR)
                    active -= 1
                else:
                    entry[0] = clock()
                    sock.sendall(payload)
        after = resource.getrusage(resource.RUSAGE_SELF)
        p50, p99 = percentiles(rtts, 0.50, 0.99)
        return {
            "lat_p50_ns": p50,
            "lat_p99_ns": p99,
            "round_trips": len(rtts),
            "peer_ctx_vol": after.ru_nvcsw - before.ru_nvcsw,
            "peer_ctx_invol": after.ru_nivcsw - before.ru_nivcsw,
        }
    finally:
        for sock in socks:
            sock.close()


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


async def _serve_asyncio(conns: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    waits = []
    for conn in conns:
        done: asyncio.Future[None] = loop.create_future()
        await loop.connect_accepted_socket(lambda done=done: _EchoProtocol(done), conn)
        waits.append(done)
    await asyncio.wait_for(asyncio.gather(*waits), SOCKET_TIMEOUT_S)


def _echo_blocking(conn: socket.socket, size: int) -> None:
    buffer = bytearray(max(size, 65536))
    view = memoryview(buffer)
    while got := conn.recv_into(buffer):
        conn.sendall(view[:got])


def _serve_selectors(conns: list[socket.socket], size: int) -> None:
    selector = selectors.DefaultSelector()
    buffer = bytearray(max(size, 65536))
    view = memoryview(buffer)
    try:
        for conn in conns:
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ)
        open_conns = len(conns)
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
                conn.settimeout(SOCKET_TIMEOUT_S)  # sendall of a partial write may wait
                conn.sendall(view[:got])
                conn.setblocking(False)
    finally:
        selector.close()


@register
class AsyncSend(Experiment):
    """Sends in flight on one socket (what stays ordered), then echo servers by concurrency."""

    name = "async-send"
    has_peers = True
    summary = "several sends in flight on one socket: order and sizes; echo throughput/latency by model"
    seed_idea = (
        "004: overlapped sends of 100, 200 and 150 bytes on one socket arrive whole and in "
        "order. On Linux one writer's queued sends stay ordered too, but two threads calling "
        "sendall on one socket interleave their bytes. Then: what threads, selectors and "
        "asyncio cost per message."
    )
    params = (
        choice_param(
            "mode",
            INFLIGHT_MODES + WRITER_MODES + ECHO_MODES,
            "inflight-100-200-150: one writer queues 100/200/150-byte messages in one sendmsg "
            "(all in flight at once), the receiver checks order and sizes; inflight-random: "
            "the same with random sizes up to MSG_SIZE; threads-sendall: CONCURRENCY threads "
            "sendall WRITER_MSG_SIZE messages on one socket (bytes interleave); threads-locked: "
            "the same under a lock (both over a Unix socketpair); echo-*: CONCURRENCY clients (a child) ping-pong MSG_SIZE "
            "with a server of blocking threads, selectors, asyncio or uvloop.",
        ),
        Param(
            "concurrency",
            Kind.INT,
            (1, 4, 16),
            "Writer threads or echo connections.",
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
    )  # fmt: skip

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """In-flight order/size checks, torn messages of shared sendall, echo models compared."""
        inflight = [r for r in (_inflight(cls, summary, m) for m in INFLIGHT_MODES) if r]
        out = [sentence for sentence, _ in inflight]
        if inflight and all(ok for _, ok in inflight):
            out.append(
                "Seed 004 reaches the same verdict for overlapped WSASends on Windows; on Linux there is "
                "nothing overlapped to reorder: send() copies into the socket buffer before it returns, in "
                "call order."
            )
        writers = _writers(cls, summary)
        if writers:
            out.append(writers)
        out += _echo(summary)
        return out

    _listener: socket.socket | None = None
    _sender: socket.socket | None = None
    _child: Child | None = None
    _conns: list[socket.socket] = []  # noqa: RUF012 - replaced per instance
    _go: int | None = None

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        mode = case["mode"]
        if mode in INFLIGHT_MODES:
            ignored = {"concurrency", "writer_msg_size"}
            return frozenset(ignored | ({"msg_size"} if mode == "inflight-100-200-150" else set()))
        if mode in WRITER_MODES:
            return frozenset({"msg_size"})
        return frozenset({"writer_msg_size"})

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
        self._listener = loopback_listener(backlog=max(self.concurrency, 16))
        if self.mode in INFLIGHT_MODES:
            sizes = message_sizes(self.mode, self.messages, self.case["msg_size"])
            self.sizes = sizes
            frames = []
            for seq, size in enumerate(sizes):
                frames.append(_HEADER.pack(seq, size))
                frames.append(bytes([_fill(seq)]) * size)
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

    def before_rep(self) -> dict[str, Any]:
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
                self._child = fork_child(driver)
            finally:
                os.close(go_r)
            self._conns = [accept_with_timeouts(self._listener) for _ in range(self.concurrency)]
            return {}
        if self.mode in WRITER_MODES:
            # A Unix stream pair: its ~208 KiB send buffer is smaller than one message, so each
            # sendall takes several send() calls. (Loopback TCP autotunes its send buffer to
            # MiBs and tore no 256 KiB message in trials: the race is real, its odds vary.)
            self._sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            set_blocking_timeouts(receiver, SOCKET_TIMEOUT_S)
        else:
            receiver = connect_loopback(port)
        try:
            if self._sender is None:
                self._sender = accept_with_timeouts(self._listener)
            others, total = [self._sender, self._listener], self.total
            self._child = fork_child(lambda: _receive_all(receiver, others, total))
        finally:
            receiver.close()
        return {"effective_sndbuf": self._sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)}

    def run_once(self) -> dict[str, Any]:
        if self.mode in INFLIGHT_MODES:
            return self._send_inflight()
        if self.mode in WRITER_MODES:
            return self._send_threads()
        return self._serve_echo()

    def _send_inflight(self) -> dict[str, Any]:
        assert self._sender is not None
        calls = 0
        for start in range(0, len(self.frames), _IOV_BATCH):
            pending = [memoryview(f) for f in self.frames[start : start + _IOV_BATCH]]
            while pending:
                sent = self._sender.sendmsg(pending)
                calls += 1
                while pending and sent >= len(pending[0]):
                    sent -= len(pending[0])
                    pending.pop(0)
                if pending and sent:
                    pending[0] = pending[0][sent:]
        self._sender.shutdown(socket.SHUT_WR)
        return {"bytes": self.total, "ops": len(self.sizes), "send_calls": calls}

    def _send_threads(self) -> dict[str, Any]:
        sender = self._sender
        assert sender is not None
        # Python-level timeouts: sendall then sends in pieces, as any non-blocking sender does.
        sender.settimeout(SOCKET_TIMEOUT_S)
        lock = threading.Lock() if self.mode == "threads-locked" else None
        errors: list[BaseException] = []

        def writer(payload: bytes) -> None:
            try:
                for _ in range(self.messages):
                    if lock is None:
                        sender.sendall(payload)
                    else:
                        with lock:
                            sender.sendall(payload)
            except BaseException as exc:  # reported below, in the measuring thread
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(p,), daemon=True) for p in self.payloads]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SOCKET_TIMEOUT_S)
        if errors or any(t.is_alive() for t in threads):
            raise RuntimeError(f"writer threads failed: {errors[:1] or 'timed out'}")
        sender.shutdown(socket.SHUT_WR)
        return {"bytes": self.total, "ops": self.messages * self.concurrency}

    def _serve_echo(self) -> dict[str, Any]:
        assert self._go is not None
        conns = self._conns
        os.write(self._go, b"g")
        if self.mode == "echo-threads":
            threads = [
                threading.Thread(target=_echo_blocking, args=(c, self.size), daemon=True) for c in conns
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(SOCKET_TIMEOUT_S)
            if any(t.is_alive() for t in threads):
                raise TimeoutError("echo threads did not finish")
        elif self.mode == "echo-selectors":
            _serve_selectors(conns, self.size)
        else:
            for conn in conns:
                conn.setblocking(False)
            loop = self._loop_factory()
            try:
                loop.run_until_complete(_serve_asyncio(conns))
            finally:
                loop.close()
        return {"bytes": self.total, "ops": self.messages * self.concurrency}

    def after_rep(self) -> dict[str, Any]:
        assert self._child is not None
        # The receiver verifies every byte after the last one arrives; allow for that at a
        # slow 20 MiB/s (one pinned CPU, gigabytes in the threads modes), never less than 30 s.
        result, _ = self._child.wait(max(SOCKET_TIMEOUT_S, self.total / (20 << 20)))
        self._child = None
        self._close_rep()
        if self.mode in ECHO_MODES:
            return {
                **result,
                "order_ok": None,
                "sizes_ok": result.get("round_trips") == self.messages * self.concurrency,
            }
        data: bytes = result
        if self.mode in INFLIGHT_MODES:
            return {**verify_frames(data, self.sizes), "received_bytes": len(data)}
        found = interleaving(data, self.concurrency, self.size)
        # Each writer's own bytes keep their order; across writers nothing is ordered.
        return {**found, "order_ok": None, "received_bytes": len(data)}

    def _close_rep(self) -> None:
        if self._go is not None:
            os.close(self._go)
            self._go = None
        for sock in [*self._conns, self._sender]:
            if sock is not None:
                sock.close()
        self._conns, self._sender = [], None

    def teardown(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None
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
        f"{'whole' if sizes else 'with WRONG SIZES'}{count}: this contradicts seed 004 and needs a look.",
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
            "take only part of the message, and another thread's send() lands in between. Seed 004's "
            "send either takes the whole request or fails; Linux's may return short, so one message per "
            "socket at a time is the application's job"
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
    from iobench import explain as ex
    from iobench.units import format_duration, format_rate

    rows = summary[summary["mode"].astype(str).isin(ECHO_MODES)] if "mode" in summary else summary.iloc[0:0]
    rows = rows[rows["bytes_per_s"].map(ex.finite)] if "bytes_per_s" in rows else rows.iloc[0:0]
    if rows.empty:
        return []
    top = rows["concurrency"].max()
    at_top = rows[rows["concurrency"] == top].sort_values("bytes_per_s", ascending=False)
    parts = []
    for _, row in at_top.iterrows():
        part = f"{str(row['mode']).removeprefix('echo-')} {format_rate(row['bytes_per_s'])}"
        if ex.finite(row.get("lat_p50_ns")) and ex.finite(row.get("lat_p99_ns")):
            part += f" (p50 {format_duration(row['lat_p50_ns'])}, p99 {format_duration(row['lat_p99_ns'])})"
        parts.append(part)
    sentence = f"Echo at {top:,.0f} connection(s), fastest first: " + "; ".join(parts)
    if len(at_top) > 1 and at_top["bytes_per_s"].iloc[-1] > 0:
        best, worst = at_top.iloc[0], at_top.iloc[-1]
        sentence += (
            f". {str(best['mode']).removeprefix('echo-')} is "
            f"{ex.times(best['bytes_per_s'] / worst['bytes_per_s'])} the throughput of "
            f"{str(worst['mode']).removeprefix('echo-')}"
        )
    out = [sentence + "."]
    ctx = [
        (str(r["mode"]).removeprefix("echo-"), r["ctx_vol"] / r["ops"])
        for _, r in at_top.iterrows()
        if ex.finite(r.get("ctx_vol")) and ex.finite(r.get("ops")) and r["ops"]
    ]
    if ctx:
        ctx.sort(key=lambda item: item[1])
        sentence = "Voluntary context switches of the server process per message: " + ", ".join(
            f"{mode} {value:.2f}" for mode, value in ctx
        )
        if len(ctx) > 1 and ctx[-1][0] == "threads":
            sentence += (
                ": the most with a blocking thread per connection, which sleeps and wakes for each message, "
                "while an event loop serves every ready connection per wake-up"
            )
        out.append(sentence + ".")
    low = rows["concurrency"].min()
    if low < top:
        scaling = []
        for mode in ECHO_MODES:
            first = ex.one(rows, "bytes_per_s", mode=mode, concurrency=low)
            last = ex.one(rows, "bytes_per_s", mode=mode, concurrency=top)
            if first and last:
                scaling.append(f"{mode.removeprefix('echo-')} {ex.times(last / first)}")
        if scaling:
            out.append(
                f"From {low:,.0f} to {top:,.0f} connections throughput changed by: "
                + ", ".join(scaling)
                + "."
            )
    return out
