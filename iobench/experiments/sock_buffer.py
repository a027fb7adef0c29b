"""sock-buffer: what SO_RCVBUF / SO_SNDBUF requests become, and what they cost (seed 001)."""

from __future__ import annotations

import socket
import struct
from typing import Any

from iobench.experiments import register
from iobench.experiments.base import Column, Experiment
from iobench.loops.children import Child, fork_child
from iobench.loops.sockets import (
    SOCKET_TIMEOUT_S,
    connect_loopback,
    drain_to_eof,
    effective_buffers,
    loopback_listener,
    set_blocking_timeouts,
    set_buffers,
)
from iobench.params import choice_param, size_param

GIB = 1 << 30


@register
class SockBuffer(Experiment):
    """Stream a transfer over TCP or a Unix socket with requested socket buffer sizes."""

    name = "sock-buffer"
    summary = "SO_RCVBUF/SO_SNDBUF requested vs effective (incl. 0 and unset), TCP and Unix throughput"
    seed_idea = (
        "001: on Windows SO_RCVBUF=0 means no kernel buffer (data goes straight to posted user "
        "buffers). Linux doubles the request and clamps it to a minimum, so 0 still leaves a "
        "small buffer; and setting a size at all turns receive autotuning off."
    )
    params = (
        choice_param(
            "transport",
            ("tcp", "unix"),
            "tcp: loopback TCP (127.0.0.1); unix: an AF_UNIX stream socketpair.",
        ),
        choice_param(
            "buffers",
            ("unset", "rcvbuf", "sndbuf", "both"),
            "Which options are set (before listen/connect): unset = neither (TCP receive "
            "autotuning on); rcvbuf / sndbuf / both = request BUFSIZE for that option.",
        ),
        size_param(
            "bufsize",
            (0, 4096, 65536, 1 << 20),
            "Requested SO_RCVBUF / SO_SNDBUF in bytes (0 included: Linux clamps it up).",
            minimum=0,
            maximum=1 << 30,
        ),
        size_param("transfer", (8 << 20,), "Bytes streamed per repetition."),
        size_param("chunk", (65536,), "Bytes per send call.", maximum=64 << 20),
    )
    x_param = "bufsize"
    table_axis = "bufsize"
    series_params = ("transport", "buffers")
    throughput_figure = True
    columns = (
        Column("Requested rcv", "requested_rcvbuf", "size"),
        Column("Effective rcv", "effective_rcvbuf", "size"),
        Column("Rcv at end", "effective_rcvbuf_end", "size"),
        Column("Requested snd", "requested_sndbuf", "size"),
        Column("Effective snd", "effective_sndbuf", "size"),
        Column("Throughput", "bytes_per_s", "rate"),
        Column("Sender CPU/GiB", "cpu_ns", "duration", per="bytes", scale=GIB),
        Column("Receiver CPU/GiB", "peer_cpu_ns", "duration", per="bytes", scale=GIB),
        Column("send()s", "ops"),
    )
    _listener: socket.socket | None = None
    _sender: socket.socket | None = None
    _receiver: socket.socket | None = None
    _child: Child | None = None

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        return frozenset({"bufsize"}) if case["buffers"] == "unset" else frozenset()

    def prepare(self) -> None:
        self.transport: str = self.case["transport"]
        which: str = self.case["buffers"]
        size: int = self.case["bufsize"]
        self.rcvbuf = size if which in ("rcvbuf", "both") else None
        self.sndbuf = size if which in ("sndbuf", "both") else None
        self.transfer: int = self.case["transfer"]
        self.chunk: int = self.case["chunk"]
        self.payload = memoryview(bytearray(b"\xa5" * self.chunk))
        if self.transport == "tcp":
            # SO_SNDBUF on the listener: accepted sockets inherit it, set before listen().
            self._listener = loopback_listener(sndbuf=self.sndbuf)

    def before_rep(self) -> dict[str, Any]:
        # A fresh connection per repetition: autotuning starts from scratch each time.
        if self.transport == "tcp":
            assert self._listener is not None
            self._receiver = connect_loopback(self._listener.getsockname()[1], rcvbuf=self.rcvbuf)
            self._sender, _ = self._listener.accept()
        else:
            self._sender, self._receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            # No listen/connect here: set before the first byte moves.
            set_buffers(self._sender, None, self.sndbuf)
            set_buffers(self._receiver, self.rcvbuf, None)
        for sock in (self._sender, self._receiver):
            sock.settimeout(None)
            set_blocking_timeouts(sock, SOCKET_TIMEOUT_S)
        rcv, _ = effective_buffers(self._receiver)
        _, snd = effective_buffers(self._sender)
        receiver, others = self._receiver, [s for s in (self._sender, self._listener) if s is not None]
        self._child = fork_child(lambda: drain_to_eof(receiver, others))
        # The child owns the receiving end now; ours would only keep it open.
        self._receiver.close()
        self._receiver = None
        return {
            "requested_rcvbuf": self.rcvbuf,
            "requested_sndbuf": self.sndbuf,
            "effective_rcvbuf": rcv,
            "effective_sndbuf": snd,
        }

    def run_once(self) -> dict[str, Any]:
        assert self._sender is not None
        send, payload, chunk = self._sender.send, self.payload, self.chunk
        left, calls = self.transfer, 0
        while left:
            left -= send(payload[: min(chunk, left)])
            calls += 1
        self._sender.shutdown(socket.SHUT_WR)
        # The receiver's byte count closes the timing: the data has really arrived.
        received = struct.unpack("q", self._sender.recv(8, socket.MSG_WAITALL))[0]
        return {"bytes": received, "ops": calls}

    def after_rep(self) -> dict[str, Any]:
        assert self._child is not None and self._sender is not None
        (received, peer_cpu_ns, rcvbuf_end), _ = self._child.wait(SOCKET_TIMEOUT_S)
        self._child = None
        self._sender.close()
        self._sender = None
        return {
            "peer_cpu_ns": peer_cpu_ns,
            "effective_rcvbuf_end": rcvbuf_end,
            "integrity_ok": received == self.transfer,
        }

    def teardown(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None
        for sock in (self._sender, self._receiver, self._listener):
            if sock is not None:
                sock.close()
        self._sender = self._receiver = self._listener = None
