"""sock-buffer: what SO_RCVBUF / SO_SNDBUF requests become, and what they cost (seed 001)."""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any

from iobench.errors import UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.metrics import INTEGRITY_OK, PEER_SYS_NS, PEER_USER_NS
from iobench.metrics import Metric as M
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
from iobench.peer.client import RemotePeer, RemoteRole

if TYPE_CHECKING:
    import pandas as pd

GIB = 1 << 30
_LABEL = {"tcp": "TCP", "unix": "Unix"}


@register
class SockBuffer(Experiment):
    """Stream a transfer over TCP or a Unix socket with requested socket buffer sizes."""

    name = "sock-buffer"
    has_peers = True
    remote_peer = True
    summary = "SO_RCVBUF/SO_SNDBUF requested vs effective (incl. 0 and unset), TCP and Unix throughput"
    seed_idea = (
        "on Windows SO_RCVBUF=0 means no kernel buffer (data goes straight to posted user "
        "buffers; Jones & Ohlund 2002, ch. 6). Linux doubles the request and clamps it to a "
        "minimum, so 0 still leaves a small buffer (socket(7)); and setting a size at all turns "
        "receive autotuning off."
    )
    params = (
        choice_param(
            "transport",
            ("tcp", "unix"),
            "tcp: TCP to the peer (127.0.0.1, or the --peer host); unix: an AF_UNIX stream socketpair "
            "(this host only).",
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
        Column("Window", "peer_window_bytes", "size"),
        Column("Link RTT", "link_rtt_min_ns", "duration"),
        Column("Window/RTT", "peer_window_bytes", "rate", per="link_rtt_min_ns", scale=1e9),
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
            "throughput", title="TCP throughput vs the emulated link's round-trip time (--peer netns)",
            x="rtt", where=(("transport", ("tcp",)),), only_if_varies=True,
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

    metrics = (
        INTEGRITY_OK,
        M("peer_cpu_ns", "Receiver CPU", "duration", "CPU time of the receiver's receive loop.", "lower"),
        PEER_USER_NS,
        PEER_SYS_NS,
        M(
            "requested_rcvbuf",
            "Requested SO_RCVBUF",
            "size",
            "SO_RCVBUF asked for (empty: not set, autotuning).",
        ),
        M("requested_sndbuf", "Requested SO_SNDBUF", "size", "SO_SNDBUF asked for (empty: not set)."),
        M(
            "effective_rcvbuf",
            "SO_RCVBUF",
            "size",
            "SO_RCVBUF of the receiving socket as getsockopt reported it before the transfer (Linux "
            "doubles and clamps; with --peer, the peer's socket).",
        ),
        M(
            "effective_sndbuf",
            "SO_SNDBUF",
            "size",
            "SO_SNDBUF as getsockopt reported it before the transfer.",
        ),
        M(
            "peer_window_bytes",
            "Receive window",
            "size",
            "The receiver's TCP window clamp after the transfer (TCP_WINDOW_CLAMP): the most it "
            "could advertise; with SO_RCVBUF set, SO_RCVBUF x payload share (Linux >= 6.6). "
            "Throughput <= window / RTT. Empty for Unix sockets.",
        ),
        M(
            "effective_rcvbuf_end",
            "SO_RCVBUF after",
            "size",
            "SO_RCVBUF after the transfer (autotuning may have grown it).",
        ),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """What 0 and other requests became, case by case (doubled, capped or raised to the
        minimum: from requested vs effective), the documented rules cited, and 0 against unset;
        over an emulated link (--peer netns), the bandwidth-delay law, link by link."""
        from iobench import explain as ex

        out = []
        for label, part in ex.by_link(cls, summary):
            sentences = _explain_one_link(cls, part) + _bandwidth_delay(cls, part)
            out += [f"{label}: {sentence}" if label else sentence for sentence in sentences]
        return out

    _listener: socket.socket | None = None
    _sender: socket.socket | None = None
    _receiver: socket.socket | None = None
    _child: Child | RemoteRole | None = None

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
        if self.peer.remote:
            if self.transport == "unix":
                raise UnsupportedCase(
                    "transport=unix is an AF_UNIX socketpair on this host: it cannot reach a peer host (--peer)"
                )
            return  # the peer listens (with SO_RCVBUF set before listen); this end connects
        if self.transport == "tcp":
            # SO_SNDBUF on the listener: accepted sockets inherit it, set before listen().
            self._listener = loopback_listener(sndbuf=self.sndbuf)

    def before_rep(self) -> dict[str, Any]:
        if self.peer.remote:
            return self._before_remote_rep()
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
        self._child = fork_child(lambda: drain_to_eof(receiver, others), wait_ready=True)
        # The child owns the receiving end now; ours would only keep it open.
        self._receiver.close()
        self._receiver = None
        return {
            "requested_rcvbuf": self.rcvbuf,
            "requested_sndbuf": self.sndbuf,
            "effective_rcvbuf": rcv,
            "effective_sndbuf": snd,
        }

    def _before_remote_rep(self) -> dict[str, Any]:
        """The receiver is a role on the peer: it listens with SO_RCVBUF requested before
        listen(), this end connects with SO_SNDBUF requested before connect(); both sizes
        the receiver saw come back with its report (after_rep)."""
        assert isinstance(self.peer, RemotePeer)
        role = self.peer.start("drain", {"rcvbuf": self.rcvbuf, "sndbuf": None})
        self._child = role
        self._sender = role.connect(sndbuf=self.sndbuf)
        self._sender.settimeout(None)
        set_blocking_timeouts(self._sender, SOCKET_TIMEOUT_S)
        _, snd = effective_buffers(self._sender)
        return {"requested_rcvbuf": self.rcvbuf, "requested_sndbuf": self.sndbuf, "effective_sndbuf": snd}

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
        if isinstance(self._child, RemoteRole):
            report, usage = self._child.wait(SOCKET_TIMEOUT_S)
            self._child = None
            self._sender.close()
            self._sender = None
            return {
                "effective_rcvbuf": report["rcvbuf"],
                "peer_cpu_ns": report["cpu_ns"],
                "peer_user_ns": usage["user_ns"],
                "peer_sys_ns": usage["sys_ns"],
                "effective_rcvbuf_end": report["rcvbuf_end"],
                "peer_window_bytes": report.get("window_clamp"),
                "integrity_ok": report["bytes"] == self.transfer,
            }
        (received, peer_cpu_ns, rcvbuf_end, clamp), usage = self._child.wait(SOCKET_TIMEOUT_S)
        self._child = None
        self._sender.close()
        self._sender = None
        return {
            "peer_cpu_ns": peer_cpu_ns,
            "peer_user_ns": int(usage.ru_utime * 1e9),
            "peer_sys_ns": int(usage.ru_stime * 1e9),
            "effective_rcvbuf_end": rcvbuf_end,
            "peer_window_bytes": clamp,
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


def _explain_one_link(experiment: Any, summary: pd.DataFrame) -> list[str]:
    """The explanation of cases over one link (or loopback): requests and what they became."""
    from iobench import explain as ex

    cls = experiment
    out: list[str] = []
    zero: list[str] = []
    zero_left: list[bool] = []
    for option, metric, wanted in (
        ("SO_RCVBUF", "effective_rcvbuf", ("rcvbuf", "both")),
        ("SO_SNDBUF", "effective_sndbuf", ("sndbuf", "both")),
    ):
        got: dict[str, float] = {}
        for transport in ("tcp", "unix"):
            for which in wanted:
                found = ex.one(summary, metric, transport=transport, buffers=which, bufsize=0)
                if found is not None:
                    got[_LABEL[transport]] = found
                    break
        zero_left += [v > 0 for v in got.values()]
        if len(set(got.values())) == 1:
            zero.append(f"{option}=0 became {next(iter(got.values())):,.0f} bytes on {' and '.join(got)}")
        else:
            zero += [f"{option}=0 became {v:,.0f} bytes on {t}" for t, v in got.items()]
    if zero:
        out.append(
            "; ".join(zero)
            + ". "
            + ex.cite(
                ex.WINSOCK_CHAPTER,
                ex.WINSOCK_BOOK,
                "on Windows SO_RCVBUF=0 means no kernel receive buffer: data goes straight into the "
                "receive buffers the application posted",
            )
            + (
                ". On Linux a request of 0 still left a kernel buffer of the sizes above."
                if all(zero_left)
                else ". On Linux some requests of 0 left no buffer at all (0 bytes above)."
            )
        )
    for option in ("SO_RCVBUF", "SO_SNDBUF"):
        sentence = _requests(cls, summary, option)
        if sentence:
            out.append(sentence)
    for transport in ("tcp", "unix"):
        sentence = _zero_vs_unset(cls, summary, transport)
        if sentence:
            out.append(sentence)
    return out


def _bandwidth_delay(experiment: Any, summary: pd.DataFrame) -> list[str]:
    """Over one emulated link: its bandwidth-delay product (from the rate set, or the bulk rate
    measured, and the measured RTT) against the receive windows, and each TCP case's throughput
    against window / RTT, the most a window allows per round trip."""
    from iobench import explain as ex
    from iobench.units import format_duration, format_rate, format_size

    tcp = ex.select(summary, transport="tcp")
    if tcp.empty or "link_rtt_min_ns" not in tcp:
        return []
    rtt = ex.one(tcp, "link_rtt_min_ns")
    if rtt is None or rtt <= 0:
        return []
    rate_set = ex.one(tcp, "link_rate_bps") or 0
    bulk = ex.one(tcp, "link_bulk_bytes_per_s")
    capacity = rate_set / 8 if rate_set else bulk
    measured = ex.one(tcp, "link_rtt_measured_ns")
    link = f"the link's round trip was {format_duration(rtt)} at least"
    if measured is not None:
        link += f" ({format_duration(measured)} median, 20 ping-pongs before the cases)"
    if capacity:
        source = "its rate set" if rate_set else "its bulk test"
        link += (
            f"; at {format_rate(capacity)} ({source}) its bandwidth-delay product is "
            f"{format_size(capacity * rtt / 1e9)}: the window a sender needs in flight to fill it"
        )
    cases = []
    for _, row in tcp.sort_values(["buffers", "bufsize", "transfer"]).iterrows():
        window, got = row.get("peer_window_bytes"), row.get("bytes_per_s")
        if not (ex.finite(window) and ex.finite(got) and window > 0):
            continue
        limit = window / rtt * 1e9
        if row.get("buffers") == "unset":
            end = row.get("effective_rcvbuf_end")
            grown = f" grew SO_RCVBUF to {format_size(end)}," if ex.finite(end) else ""
            who = f"unset (autotuning{grown} window {format_size(window)} at the end"
        else:
            who = f"SO_RCVBUF {ex.fmt(experiment, 'bufsize', row['bufsize'])} (window {format_size(window)}"
        who += f", {format_size(row['transfer'])} sent)"
        if capacity and limit >= capacity:
            verdict = (
                f"{got / capacity:.2f} of the link: window/RTT = {format_rate(limit)} is above the link, "
                "so the link limits"
            )
        else:
            verdict = f"{got / limit:.2f} of window/RTT = {format_rate(limit)}: the window limits"
        cases.append(f"{who}: {format_rate(got)}, {verdict}")
    if not cases:
        return [link[0].upper() + link[1:] + "."]
    return [
        link[0].upper() + link[1:] + ". TCP has at most one receive window in flight per round "
        "trip, so throughput <= min(window / RTT, link rate) (short transfers stay below both: slow "
        "start): " + "; ".join(cases) + "."
    ]


def _cpu_per_gib(row: pd.Series) -> float | None:
    """Sender + receiver CPU per GiB moved, or None."""
    from iobench import explain as ex

    cpu, peer, moved = row.get("cpu_ns"), row.get("peer_cpu_ns"), row.get("bytes")
    if not (ex.finite(cpu) and ex.finite(peer) and ex.finite(moved) and moved):
        return None
    return (cpu + peer) / moved * GIB


#: option -> (requested column, effective column, the buffers values that set it, sysctl cap).
_OPTIONS = {
    "SO_RCVBUF": ("requested_rcvbuf", "effective_rcvbuf", ("rcvbuf", "both"), "net.core.rmem_max"),
    "SO_SNDBUF": ("requested_sndbuf", "effective_sndbuf", ("sndbuf", "both"), "net.core.wmem_max"),
}


def classify_request(requested: float, effective: float) -> str:
    """What the kernel did to one non-zero request: ``doubled``, ``capped`` (less than twice
    it) or ``raised`` (more than twice it: the minimum)."""
    if effective == 2 * requested:
        return "doubled"
    return "capped" if effective < 2 * requested else "raised"


def _requests(experiment: Any, summary: pd.DataFrame, option: str) -> str | None:
    """Each non-zero request of ``option`` on one transport and what it became, classified from
    requested vs effective per case; the rule of socket(7) cited only for what happened."""
    from iobench import explain as ex
    from iobench.units import format_size

    requested_column, effective_column, setters, cap = _OPTIONS[option]
    for transport in ("tcp", "unix"):
        rows = ex.select(summary, transport=transport, buffers=setters[0])
        if rows.empty:
            rows = ex.select(summary, transport=transport, buffers=setters[1])
        if rows.empty or "bufsize" not in rows:
            continue
        cases = []
        for bufsize in ex.distinct(rows, "bufsize"):
            effective = ex.one(rows, effective_column, bufsize=bufsize)
            requested = ex.one(rows, requested_column, bufsize=bufsize)
            requested = bufsize if requested is None else requested
            if bufsize and effective is not None:
                cases.append((requested, effective, classify_request(requested, effective)))
        if not cases:
            continue
        parts = [
            f"{ex.fmt(experiment, 'bufsize', req)} became {format_size(got)} ({kind})"
            for req, got, kind in cases
        ]
        kinds = {kind for _, _, kind in cases}
        rules = []
        if "doubled" in kinds:
            rules.append(
                "the kernel doubles a request to leave room for its own bookkeeping and reports the doubled value"
            )
        if "capped" in kinds:
            rules.append(f"a request above {cap} is cut to it before doubling")
        if "raised" in kinds:
            rules.append("a request below the minimum is raised to it")
        return (
            f"{option} on {_LABEL[transport]}: "
            + ", ".join(parts)
            + ". "
            + ex.cite("socket(7)", ex.MAN_PAGES, "; ".join(rules))
            + "."
        )
    return None


def _zero_vs_unset(experiment: Any, summary: pd.DataFrame, transport: str) -> str | None:
    """Throughput and CPU/GiB of each option set to 0 against unset (tested), and how the
    receive buffer changed during the transfer, unset and set by hand."""
    from iobench import explain as ex
    from iobench.units import format_duration, format_rate, format_size

    unset = {"transport": transport, "buffers": "unset"}
    base_rows = ex.select(summary, **unset)
    if base_rows.empty:
        return None
    base = base_rows.iloc[0]
    parts = []
    for which, label in (("rcvbuf", "SO_RCVBUF=0"), ("sndbuf", "SO_SNDBUF=0"), ("both", "both set to 0")):
        case = {"transport": transport, "buffers": which, "bufsize": 0}
        if which == "both" and parts:
            continue  # the single options already say it
        found = ex.difference(summary, "bytes_per_s", unset, case)
        if found is None:
            continue
        row = ex.select(summary, **case).iloc[0]
        part = (
            f"{label} ran at {format_rate(row['bytes_per_s'])}, {ex.contrast(found, higher_is_better=True)}"
        )
        cpu = _cpu_per_gib(row)
        if cpu is not None:
            part += f", for {format_duration(cpu)} CPU/GiB"
        parts.append(part)
    sentence = ""
    if parts:
        sentence = f"{_LABEL[transport]}, against {format_rate(base['bytes_per_s'])} with the options unset"
        cpu_base = _cpu_per_gib(base)
        if cpu_base is not None:
            sentence += f" ({format_duration(cpu_base)} CPU/GiB, sender + receiver)"
        sentence += ": " + "; ".join(parts)
    start, end = base.get("effective_rcvbuf"), base.get("effective_rcvbuf_end")
    if ex.finite(start) and ex.finite(end):
        if end > start:
            grew = f"unset, receive autotuning grew SO_RCVBUF from {format_size(start)} to {format_size(end)}"
        else:
            grew = f"unset, SO_RCVBUF stayed at {format_size(start)} (no autotuning seen)"
        fixed = _set_by_hand_fixed(summary, transport)
        if fixed is not None:
            grew += (
                "; sizes set by hand stayed fixed during the transfer"
                if fixed
                else "; some sizes set by hand changed during the transfer"
            )
        sentence = f"{sentence}. {grew[0].upper()}{grew[1:]}" if sentence else f"{_LABEL[transport]}: {grew}"
    return sentence + "." if sentence else None


def _set_by_hand_fixed(summary: pd.DataFrame, transport: str) -> bool | None:
    """Whether every case that set SO_RCVBUF ended the transfer with the size it started with;
    None when no such case recorded both."""
    from iobench import explain as ex

    seen = []
    for which in ("rcvbuf", "both"):
        rows = ex.select(summary, transport=transport, buffers=which)
        for _, row in rows.iterrows():
            start, end = row.get("effective_rcvbuf"), row.get("effective_rcvbuf_end")
            if ex.finite(start) and ex.finite(end):
                seen.append(start == end)
    return all(seen) if seen else None
