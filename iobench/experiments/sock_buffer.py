"""sock-buffer: what SO_RCVBUF / SO_SNDBUF requests become, and what they cost (seed 001)."""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any

from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.osutil.children import Child, fork_child
from iobench.osutil.sockets import (
    SOCKET_TIMEOUT_S,
    connect_loopback,
    drain_to_eof,
    effective_buffers,
    loopback_listener,
    set_blocking_timeouts,
    set_buffers,
)
from iobench.params import choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

GIB = 1 << 30
_LABEL = {"tcp": "TCP", "unix": "Unix"}


@register
class SockBuffer(Experiment):
    """Stream a transfer over TCP or a Unix socket with requested socket buffer sizes."""

    name = "sock-buffer"
    has_peers = True
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

    figures = (
        FigureSpec(
            "metric", title="Effective buffer size vs requested (SO_RCVBUF and SO_SNDBUF both set)",
            metrics=("effective_rcvbuf", "effective_sndbuf"), unit="size", log_y=True,
            where=(("buffers", ("both",)),), y_label="effective size (getsockopt)",
        ),
        FigureSpec(
            "throughput", title="TCP throughput vs requested buffer size",
            where=(("transport", ("tcp",)),),
        ),
        FigureSpec(
            "throughput", title="Unix socket throughput vs requested buffer size",
            where=(("transport", ("unix",)),),
        ),
        FigureSpec(
            "stacked_cpu", title="Sender CPU per GiB: user vs system", per="bytes", scale=GIB,
            y_label="sender CPU per GiB",
        ),
        FigureSpec(
            "metric", title="Receiver CPU per GiB", metric="peer_cpu_ns", unit="duration", per="bytes",
            scale=GIB, y_label="receiver CPU per GiB", log_y=True,
        ),
    )  # fmt: skip

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """What 0 and other requests became, and what 0 did to throughput against unset."""
        from iobench import explain as ex

        out = []
        zero = []
        for option, metric, wanted in (
            ("SO_RCVBUF", "effective_rcvbuf", ("rcvbuf", "both")),
            ("SO_SNDBUF", "effective_sndbuf", ("sndbuf", "both")),
        ):
            got: dict[str, float] = {}
            for transport in ("tcp", "unix"):
                for which in wanted:
                    value = ex.one(summary, metric, transport=transport, buffers=which, bufsize=0)
                    if value is not None:
                        got[_LABEL[transport]] = value
                        break
            if len(set(got.values())) == 1:
                zero.append(f"{option}=0 became {next(iter(got.values())):,.0f} bytes on {' and '.join(got)}")
            else:
                zero += [f"{option}=0 became {v:,.0f} bytes on {t}" for t, v in got.items()]
        if zero:
            out.append(
                "; ".join(zero)
                + ". Linux doubles every request and clamps it up to a minimum, so 0 still leaves a small "
                "kernel buffer: unlike seed 001's Windows, where SO_RCVBUF=0 means no kernel buffer and data "
                "goes straight into posted user buffers, here every byte is still copied through the socket."
            )
        doubled = _doubling(cls, summary)
        if doubled:
            out.append(doubled)
        for transport in ("tcp", "unix"):
            sentence = _zero_vs_unset(cls, summary, transport)
            if sentence:
                out.append(sentence)
        return out

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


def _cpu_per_gib(row: pd.Series) -> float | None:
    """Sender + receiver CPU per GiB moved, or None."""
    from iobench import explain as ex

    cpu, peer, moved = row.get("cpu_ns"), row.get("peer_cpu_ns"), row.get("bytes")
    if not (ex.finite(cpu) and ex.finite(peer) and ex.finite(moved) and moved):
        return None
    return (cpu + peer) / moved * GIB


def _doubling(experiment: Any, summary: pd.DataFrame) -> str | None:
    """``SO_RCVBUF=64KiB became 128 KiB (2.0x)``, for every non-zero request of one transport."""
    from iobench import explain as ex
    from iobench.units import format_size

    for transport in ("tcp", "unix"):
        rows = ex.select(summary, transport=transport, buffers="rcvbuf")
        if rows.empty:
            rows = ex.select(summary, transport=transport, buffers="both")
        rows = rows[rows["bufsize"].astype(float) > 0].sort_values("bufsize") if "bufsize" in rows else rows
        pairs = [
            (r["bufsize"], r["effective_rcvbuf"])
            for _, r in rows.iterrows()
            if ex.finite(r.get("effective_rcvbuf"))
        ]
        if not pairs:
            continue
        parts = [f"{ex.fmt(experiment, 'bufsize', req)} became {format_size(got)}" for req, got in pairs]
        exact = all(got == 2 * req for req, got in pairs)
        capped = [req for req, got in pairs if got < 2 * req]
        tail = (
            "exactly twice the request"
            if exact
            else "twice the request where it fits"
            + (
                f"; from {ex.fmt(experiment, 'bufsize', capped[0])} on, net.core.rmem_max capped it"
                if capped
                else ""
            )
        )
        return (
            f"SO_RCVBUF on {_LABEL[transport]}: " + ", ".join(parts) + f" ({tail}: the kernel counts its "
            "own bookkeeping in the buffer and reports the doubled value back)."
        )
    return None


def _zero_vs_unset(experiment: Any, summary: pd.DataFrame, transport: str) -> str | None:
    """Throughput and CPU/GiB of each option set to 0 against unset, and how far unset grew."""
    from iobench import explain as ex
    from iobench.units import format_duration, format_rate, format_size

    unset = ex.select(summary, transport=transport, buffers="unset")
    if unset.empty:
        return None
    base = unset.iloc[0]
    parts = []
    for which, label in (("rcvbuf", "SO_RCVBUF=0"), ("sndbuf", "SO_SNDBUF=0"), ("both", "both set to 0")):
        zero = ex.select(summary, transport=transport, buffers=which, bufsize=0)
        if zero.empty or not ex.finite(base["bytes_per_s"]) or not base["bytes_per_s"]:
            continue
        if which == "both" and parts:
            continue  # the single options already say it
        row = zero.iloc[0]
        part = (
            f"{label} ran at {format_rate(row['bytes_per_s'])} "
            f"({ex.versus(row['bytes_per_s'] / base['bytes_per_s'])})"
        )
        cpu = _cpu_per_gib(row)
        if cpu is not None:
            part += f" for {format_duration(cpu)} CPU/GiB"
        parts.append(part)
    sentence = ""
    if parts:
        sentence = f"{_LABEL[transport]}, against {format_rate(base['bytes_per_s'])} with the options unset"
        cpu_base = _cpu_per_gib(base)
        if cpu_base is not None:
            sentence += f" ({format_duration(cpu_base)} CPU/GiB, sender + receiver)"
        sentence += ": " + ", ".join(parts)
    start, end = base.get("effective_rcvbuf"), base.get("effective_rcvbuf_end")
    if ex.finite(start) and ex.finite(end):
        if end > start:
            grew = (
                f"unset, receive autotuning grew SO_RCVBUF from {format_size(start)} to {format_size(end)} "
                "during the transfer (a size set by hand turns autotuning off and stays fixed)"
            )
        else:
            grew = f"unset, SO_RCVBUF stayed at {format_size(start)} (no autotuning)"
        sentence = f"{sentence}; {grew}" if sentence else f"{_LABEL[transport]}: {grew}"
    return sentence + "." if sentence else None
