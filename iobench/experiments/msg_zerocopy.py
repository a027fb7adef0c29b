"""msg-zerocopy: MSG_ZEROCOPY vs plain send per message size (seeds 000, 001, 004)."""

from __future__ import annotations

import errno
import os
import resource
import select
import socket
import struct
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from iobench.errors import UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.loops import rings
from iobench.metrics import INTEGRITY_OK
from iobench.metrics import Metric as M
from iobench.osutil.children import Child, ChildError, fork_child, ready
from iobench.osutil.sockets import (
    SOCKET_TIMEOUT_S,
    accept_with_timeouts,
    connect_loopback,
    drain_to_eof,
    loopback_listener,
    set_blocking_timeouts,
)
from iobench.params import choice_param, size_param
from iobench.peer.client import RemotePeer, RemoteRole

if TYPE_CHECKING:
    import pandas as pd

GIB = 1 << 30
# Linux values; Python's socket module has no names for them.
SO_ZEROCOPY = 60
MSG_ZEROCOPY = 0x4000000
MSG_ERRQUEUE = 0x2000
IP_RECVERR = 11
SO_EE_ORIGIN_ZEROCOPY = 5
SO_EE_CODE_ZEROCOPY_COPIED = 1
SO_SNDBUFFORCE = 32
#: Send queue of the unprivileged case: well past the usual 8 MiB RLIMIT_MEMLOCK.
UNPRIVILEGED_SNDBUF = 64 << 20
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err
#: How long a sender that got ENOBUFS waits for completions before it tries again.
_ENOBUFS_WAIT_S = 0.001
#: uring-send-zc: sends in flight (each holds its slot until its notification CQE).
URING_ZC_DEPTH = 8


@dataclass
class SendStats:
    """What one sending loop saw; every field ends up in the row."""

    send_calls: int = 0
    zc_sends: int = 0
    zc_completions: int = 0
    zc_copied: int = 0
    enobufs: int = 0
    ran_as_uid: int = 0
    memlock_limit: int | None = None


def enable_zerocopy(sock: socket.socket) -> None:
    """setsockopt(SO_ZEROCOPY, 1); UnsupportedCase with the kernel's reason when refused."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ZEROCOPY, 1)
    except OSError as exc:
        raise UnsupportedCase(
            f"SO_ZEROCOPY refused: {exc.strerror} ({errno.errorcode.get(exc.errno or 0)})"
        ) from None


def read_completions(sock: socket.socket, stats: SendStats) -> None:
    """Read every zerocopy notification waiting on the error queue, without blocking.

    One notification covers the send ids ee_info..ee_data (the kernel merges ranges);
    SO_EE_CODE_ZEROCOPY_COPIED says the kernel copied the data after all.
    """
    while True:
        try:
            _, ancdata, _, _ = sock.recvmsg(0, 256, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        for level, kind, data in ancdata:
            if (level, kind) != (socket.SOL_IP, IP_RECVERR) or len(data) < _EXTENDED_ERR.size:
                continue
            _, origin, _, code, _, first, last = _EXTENDED_ERR.unpack_from(data)
            if origin != SO_EE_ORIGIN_ZEROCOPY:
                continue
            count = (last - first + 1) & 0xFFFFFFFF
            stats.zc_completions += count
            if code & SO_EE_CODE_ZEROCOPY_COPIED:
                stats.zc_copied += count


def fresh_stats() -> SendStats:
    """Empty counters that already say who sends and under which RLIMIT_MEMLOCK (read before
    the clock: they are facts about the sender, not part of sending)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return SendStats(ran_as_uid=os.geteuid(), memlock_limit=None if soft == resource.RLIM_INFINITY else soft)


def send_all(
    sock: socket.socket,
    payload: memoryview,
    total: int,
    zerocopy: bool,
    release_receiver: int | None = None,
    stats: SendStats | None = None,
) -> SendStats:
    """Send ``total`` bytes in messages of len(payload); with MSG_ZEROCOPY, then wait until
    every send has its completion (the buffer is the sender's again only then).

    ``release_receiver``: a pipe the receiver waits on before reading; one byte goes to it at
    the first ENOBUFS or when everything is queued, whichever comes first. ``stats``: the
    counters to fill (``fresh_stats()`` when not given).
    """

    def release() -> None:
        nonlocal release_receiver
        if release_receiver is not None:
            os.write(release_receiver, b"g")
            release_receiver = None

    stats = stats if stats is not None else fresh_stats()
    size, left = len(payload), total
    flags = MSG_ZEROCOPY if zerocopy else 0
    send = sock.send
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLERR)
    while left:
        try:
            sent = send(payload[: min(size, left)], flags)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            # Pinned pages over RLIMIT_MEMLOCK, or optmem full: let completions free some.
            stats.enobufs += 1
            release()  # completions come only once the receiver drains the queue
            poller.poll(_ENOBUFS_WAIT_S * 1000)
            read_completions(sock, stats)
            if stats.enobufs > 1_000_000:
                raise
            continue
        stats.send_calls += 1
        left -= sent
        if zerocopy:
            stats.zc_sends += 1
            if stats.zc_sends % 32 == 0:
                read_completions(sock, stats)
    release()
    deadline = time.monotonic() + SOCKET_TIMEOUT_S
    while stats.zc_completions < stats.zc_sends:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stats.zc_sends - stats.zc_completions} zerocopy completions never came")
        poller.poll(100)
        read_completions(sock, stats)
    return stats


def check_queue_can_grow() -> None:
    """UnsupportedCase unless this process may set SO_SNDBUFFORCE (CAP_NET_ADMIN): without it
    the send queue stays under net.core.wmem_max, below RLIMIT_MEMLOCK, and the limit the
    zerocopy-unprivileged case is about cannot show."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, UNPRIVILEGED_SNDBUF)
        except PermissionError:
            try:
                with open("/proc/sys/net/core/wmem_max") as handle:
                    wmem_max = f"{int(handle.read())} bytes"
            except (OSError, ValueError):
                wmem_max = "unknown"
            raise UnsupportedCase(
                "needs CAP_NET_ADMIN (root) to grow the send queue past net.core.wmem_max "
                f"({wmem_max}) with SO_SNDBUFFORCE before the sender drops to nobody; as uid "
                f"{os.geteuid()} the zerocopy method already measures an unprivileged sender"
            ) from None


def _receive(
    sock: socket.socket, others: list[socket.socket], go: tuple[int, int] | None
) -> tuple[int, int, int]:
    """The receiving child; with ``go``, it first waits for the sender's byte on that pipe."""
    if go is not None:
        os.close(go[1])  # only the sender may hold the write end: its death is our EOF
    return drain_to_eof(sock, others, start_fd=None if go is None else go[0])


@register
class MsgZerocopy(Experiment):
    """Stream over loopback TCP with plain send or MSG_ZEROCOPY, counting completions."""

    name = "msg-zerocopy"
    has_peers = True
    remote_peer = True
    summary = "MSG_ZEROCOPY vs send per message size: completions, copied anyway, ENOBUFS"
    seed_idea = (
        "zero-copy sends pin the user pages until the kernel is done with them; pinned memory is "
        "limited (WSAENOBUFS on Windows; Jones & Ohlund 2002, ch. 6). Linux: MSG_ZEROCOPY, "
        "completions on the error queue, pages charged to RLIMIT_MEMLOCK (ENOBUFS), and on "
        "loopback the kernel copies anyway and says so (SO_EE_CODE_ZEROCOPY_COPIED; the kernel's "
        "Documentation/networking/msg_zerocopy.rst)."
    )
    params = (
        choice_param(
            "method",
            ("send", "zerocopy", "zerocopy-unprivileged", "uring-send-zc"),
            "send: plain send(); zerocopy: SO_ZEROCOPY + send(MSG_ZEROCOPY), completions read "
            "from the error queue; zerocopy-unprivileged: the same in a child that drops root "
            "(nobody) when started as root, because CAP_IPC_LOCK exempts root from "
            "RLIMIT_MEMLOCK and ENOBUFS shows only without it (the child is forked before the "
            "clock and waits for a go byte; its own CPU is sender_child_cpu_ns). "
            "There the receiver starts reading only once the sender first gets ENOBUFS (or has "
            "sent everything), so the send queue really holds more pinned pages than the limit: "
            "its throughput is not comparable with the other methods. uring-send-zc: io_uring's "
            f"IORING_OP_SEND_ZC, {URING_ZC_DEPTH} in flight, each with MSG_WAITALL and "
            "IORING_SEND_ZC_REPORT_USAGE: a CQE for the send, then a notification CQE once the kernel "
            "is done with the buffer, which says IORING_NOTIF_USAGE_ZC_COPIED when it copied anyway.",
        ),
        size_param("msg_size", (4096, 65536, 1 << 20), "Bytes per send call.", maximum=64 << 20),
        size_param("transfer", (16 << 20,), "Bytes sent per repetition."),
    )
    x_param = "msg_size"
    table_axis = "msg_size"
    series_params = ("method",)
    throughput_figure = True
    counter_scope = "thread"
    columns = (
        Column("Throughput", "bytes_per_s", "rate"),
        Column("CPU/GiB", "cpu_ns", "duration", per="bytes", scale=GIB),
        Column("System/GiB", "sys_ns", "duration", per="bytes", scale=GIB),
        Column("Child sender CPU/GiB", "sender_child_cpu_ns", "duration", per="bytes", scale=GIB),
        Column("send()s", "send_calls"),
        Column("ZC sends", "zc_sends"),
        Column("Completions", "zc_completions"),
        Column("Copied", "zc_copied"),
        Column("ENOBUFS", "enobufs"),
        Column("As uid", "ran_as_uid"),
    )

    figures = (
        FigureSpec(
            "throughput", title="Throughput: send vs MSG_ZEROCOPY vs io_uring SEND_ZC (loopback)",
            where=(("method", ("send", "zerocopy", "uring-send-zc")),),
        ),
        FigureSpec(
            "stacked_cpu", title="Sender CPU per GiB", per="bytes", scale=GIB, y_label="sender CPU per GiB",
            where=(("method", ("send", "zerocopy", "uring-send-zc")),),
        ),
        FigureSpec(
            "metric", title="Share of zerocopy completions flagged COPIED (the kernel copied anyway)",
            metric="zc_copied", per="zc_completions", unit="percent",
            where=(("method", ("zerocopy", "zerocopy-unprivileged", "uring-send-zc")),), y_label="flagged COPIED",
        ),
    )  # fmt: skip

    metrics = (
        INTEGRITY_OK,
        M("peer_cpu_ns", "Receiver CPU", "duration", "CPU time of the receiver child.", "lower"),
        M(
            "sender_child_cpu_ns",
            "Sender CPU",
            "duration",
            "Unprivileged method: CPU time of the sending child.",
            "lower",
        ),
        M("ran_as_uid", "uid", "count", "The user id the sender ran as."),
        M(
            "effective_sndbuf",
            "SO_SNDBUF",
            "size",
            "The sending socket's SO_SNDBUF as getsockopt reported it.",
        ),
        M("send_calls", "send() calls", "count", "Send calls made."),
        M("zc_sends", "Zerocopy sends", "count", "Sends made with MSG_ZEROCOPY."),
        M("zc_completions", "Completions", "count", "Zerocopy completions read from the error queue."),
        M(
            "zc_copied",
            "Copied",
            "count",
            "Completions flagged SO_EE_CODE_ZEROCOPY_COPIED: the kernel copied anyway.",
            "lower",
        ),
        M(
            "enobufs",
            "ENOBUFS",
            "count",
            "Sends refused with ENOBUFS (pinned-page or optmem limit reached).",
            "lower",
        ),
        M(
            "memlock_limit",
            "RLIMIT_MEMLOCK",
            "size",
            "The sender's RLIMIT_MEMLOCK soft limit (empty: unlimited).",
        ),
        M("completions_ok", "Completions", "flag", "Every zerocopy send got its completion.", kind="check"),
        M(
            "uring_send_cqes",
            "Send CQEs",
            "count",
            "uring-send-zc: the sends' own CQEs (their byte counts); the notifications are zc_completions.",
        ),
        M(
            "uring_enters",
            "io_uring_enter calls",
            "count",
            "uring-send-zc: io_uring_enter calls made.",
            "lower",
        ),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """zerocopy vs send per size (tested), completions that say COPIED, ENOBUFS past
        RLIMIT_MEMLOCK with the documented rule cited."""

        out = []
        compared, slower = _per_size(cls, summary)
        if compared:
            out.append("Over loopback TCP, " + "; ".join(compared) + ".")
        copied = _copied(summary, slower)
        if copied:
            out.append(copied)
        limit = _enobufs(summary)
        if limit:
            out.append(limit)
        out += _uring_zc(cls, summary)
        return out

    _listener: socket.socket | None = None
    _sender: socket.socket | None = None
    _child: Child | RemoteRole | None = None
    _go: tuple[int, int] | None = None
    _sender_child: Child | None = None
    _start_sender: int | None = None
    _ring: Any = None
    _uring: dict[str, Any] = {}  # noqa: RUF012 - replaced per repetition, never mutated in place

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return case["method"] == "uring-send-zc"  # its send loop is in the native module

    def prepare(self) -> None:
        self.method: str = self.case["method"]
        self.transfer: int = self.case["transfer"]
        if self.method == "zerocopy-unprivileged":
            check_queue_can_grow()
        self.payload = memoryview(bytearray(os.urandom(self.case["msg_size"])))
        if self.method == "uring-send-zc":
            self._ring = rings.open_uring(
                self.loops, URING_ZC_DEPTH, cq_entries=4096
            )  # notifications may pile up (the kernel keeps any overflow)
            rings.require_ops(self._ring, ("IORING_OP_SEND_ZC",))
        self._stats = SendStats()
        if self.peer.remote:
            if self.method == "zerocopy-unprivileged":
                raise UnsupportedCase(
                    "zerocopy-unprivileged holds its receiver back with a pipe from the sender, "
                    "which cannot reach a peer host (--peer)"
                )
            return  # the receiver is a drain role on the peer host; it listens there
        self._listener = loopback_listener()

    def _before_remote_rep(self) -> dict[str, Any]:
        """The receiver is a drain role on the peer; this end connects to it."""
        assert isinstance(self.peer, RemotePeer)
        role = self.peer.start("drain", {"rcvbuf": None, "sndbuf": None})
        self._child = role
        self._sender = role.connect()
        self._sender.settimeout(None)
        set_blocking_timeouts(self._sender, SOCKET_TIMEOUT_S)
        if self.method == "zerocopy":
            enable_zerocopy(self._sender)
        self._stats = fresh_stats()
        return {"effective_sndbuf": self._sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)}

    def before_rep(self) -> dict[str, Any]:
        if self.peer.remote:
            return self._before_remote_rep()
        assert self._listener is not None
        receiver = connect_loopback(self._listener.getsockname()[1])
        try:
            self._sender = accept_with_timeouts(self._listener)
            if self.method in ("zerocopy", "zerocopy-unprivileged"):
                enable_zerocopy(self._sender)  # IORING_OP_SEND_ZC needs no SO_ZEROCOPY
            if self.method == "zerocopy-unprivileged":
                # Pages stay pinned while they wait in the send queue; a queue larger than
                # RLIMIT_MEMLOCK lets the limit show. SO_SNDBUFFORCE (root) passes wmem_max.
                self._sender.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, UNPRIVILEGED_SNDBUF)
                # A receiver that keeps up frees pages as fast as they are pinned, and the limit
                # shows or not by chance: it waits for the sender's word instead.
                self._go = os.pipe()
            others = [self._sender, self._listener]
            try:
                self._child = fork_child(lambda: _receive(receiver, others, self._go), wait_ready=True)
            finally:
                if self._go is not None:
                    os.close(self._go[0])  # the receiver's end; the parent keeps the write end
        finally:
            receiver.close()  # the child has its own copy
        if self.method == "zerocopy-unprivileged":
            self._start_unprivileged_sender()
        else:
            self._stats = fresh_stats()
        return {"effective_sndbuf": self._sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)}

    def _start_unprivileged_sender(self) -> None:
        """Fork the sender (as nobody when we are root) before the clock; it waits for a byte on
        a pipe, sends everything, ends the stream and answers with its counters at exit."""
        assert self._sender is not None and self._go is not None
        sender, payload, transfer, release = self._sender, self.payload, self.transfer, self._go[1]
        start_read, start_write = os.pipe()

        def send_when_told() -> SendStats:
            os.close(start_write)
            stats = fresh_stats()
            ready()  # unprivileged and set up: the parent may start its clock
            if os.read(start_read, 1) != b"g":
                raise RuntimeError("the parent went away before the go")
            send_all(sender, payload, transfer, True, release_receiver=release, stats=stats)
            sender.shutdown(socket.SHUT_WR)
            os.read(start_read, 1)  # EOF in after_rep: exit only once the parent's window is over
            return stats

        try:
            self._sender_child = fork_child(send_when_told, drop_root=True, wait_ready=True)
        except BaseException:
            os.close(start_write)
            raise
        finally:
            os.close(start_read)
        self._start_sender = start_write

    def run_once(self) -> dict[str, Any]:
        sender = self._sender
        assert sender is not None
        if self._sender_child is not None:
            assert self._start_sender is not None
            os.write(self._start_sender, b"g")  # the forked sender, waiting since before_rep
        elif self._ring is not None:
            self._send_zc_uring(sender)
            sender.shutdown(socket.SHUT_WR)
        else:
            send_all(sender, self.payload, self.transfer, self.method == "zerocopy", stats=self._stats)
            sender.shutdown(socket.SHUT_WR)
        # The receiver's byte count closes the timing: the data has really arrived.
        received = struct.unpack("q", sender.recv(8, socket.MSG_WAITALL))[0]
        # The forked sender's count arrives with its exit, in after_rep, which sets ops then.
        return {"bytes": received, "ops": self._stats.send_calls if self._sender_child is None else 0}

    def _send_zc_uring(self, sender: socket.socket) -> None:
        """IORING_OP_SEND_ZC of the whole transfer; every notification reaped before it returns."""
        found = self._ring.send_zc(
            sender.fileno(), self.payload, len(self.payload), self.transfer, URING_ZC_DEPTH
        )
        stats = self._stats
        stats.send_calls = stats.zc_sends = found["sends"]
        stats.zc_completions, stats.zc_copied, stats.enobufs = (
            found["notifs"],
            found["copied"],
            found["enobufs"],
        )
        self._uring = {"uring_send_cqes": found["results"], "uring_enters": found["enters"]}

    def after_rep(self) -> dict[str, Any]:
        assert self._child is not None and self._sender is not None
        child_cpu_ns: int | None = None
        if self._sender_child is not None:
            sender_child, self._sender_child = self._sender_child, None
            self._close_start()
            try:
                self._stats, usage = sender_child.wait(SOCKET_TIMEOUT_S)
            except ChildError as exc:
                raise UnsupportedCase(f"unprivileged zerocopy sender failed: {exc}") from None
            child_cpu_ns = round((usage.ru_utime + usage.ru_stime) * 1e9)
        if isinstance(self._child, RemoteRole):
            report, _ = self._child.wait(SOCKET_TIMEOUT_S)
            received, peer_cpu_ns = report["bytes"], report["cpu_ns"]
        else:
            (received, peer_cpu_ns, *_), _ = self._child.wait(SOCKET_TIMEOUT_S)
        self._child = None
        self._close_go()
        self._sender.close()
        self._sender = None
        stats = self._stats
        return {
            **asdict(stats),
            **self._uring,
            "ops": stats.send_calls,
            "peer_cpu_ns": peer_cpu_ns,
            "sender_child_cpu_ns": child_cpu_ns,
            "integrity_ok": received == self.transfer,
            "completions_ok": stats.zc_completions == stats.zc_sends,
        }

    def _close_start(self) -> None:
        if self._start_sender is not None:
            os.close(self._start_sender)
            self._start_sender = None

    def _close_go(self) -> None:
        if self._go is not None:
            os.close(self._go[1])
            self._go = None

    def teardown(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._sender_child is not None:
            self._sender_child.kill()
            self._sender_child = None
        self._close_start()
        if self._child is not None:
            self._child.kill()
            self._child = None
        self._close_go()
        for sock in (self._sender, self._listener):
            if sock is not None:
                sock.close()
        self._sender = self._listener = None


def _per_size(experiment: Any, summary: pd.DataFrame) -> tuple[list[str], list[float]]:
    """Per message size: zerocopy against send (throughput tested, sender CPU/GiB); and the
    factors by which zerocopy was measurably slower."""
    from iobench import explain as ex
    from iobench.units import format_duration, format_rate

    compared, slower = [], []
    for size in ex.distinct(summary, "msg_size"):
        send, zero = {"method": "send", "msg_size": size}, {"method": "zerocopy", "msg_size": size}
        found = ex.difference(summary, "bytes_per_s", send, zero)
        if found is None:
            continue
        if ex.direction(found) == -1:
            slower.append(1 / found.ratio)
        part = (
            f"at {ex.fmt(experiment, 'msg_size', size)} zerocopy {format_rate(ex.one(summary, 'bytes_per_s', **zero))} "
            f"vs send {format_rate(ex.one(summary, 'bytes_per_s', **send))}, {ex.contrast(found, higher_is_better=True)}"
        )
        s_cpu = ex.value(summary, "cpu_ns", per="bytes", scale=GIB, **send)
        z_cpu = ex.value(summary, "cpu_ns", per="bytes", scale=GIB, **zero)
        if s_cpu and z_cpu:
            part += f", sender CPU/GiB {format_duration(z_cpu)} vs {format_duration(s_cpu)}"
        compared.append(part)
    return compared, slower


def _copied(summary: pd.DataFrame, slower: list[float]) -> str | None:
    """How many zerocopy completions came back flagged COPIED, and what that meant here."""
    from iobench import explain as ex

    if "method" not in summary or "zc_completions" not in summary:
        return None
    zc = summary[summary["method"].astype(str).isin(("zerocopy", "zerocopy-unprivileged"))]
    completions = zc["zc_completions"].sum()
    copied = zc["zc_copied"].sum() if "zc_copied" in zc else float("nan")
    if not (ex.finite(completions) and completions and ex.finite(copied)):
        return None
    if copied != completions:
        return (
            f"{copied:,.0f} of {completions:,.0f} completions were flagged COPIED; the other "
            f"{completions - copied:,.0f} really skipped the copy."
        )
    sentence = (
        f"All {completions:,.0f} completions of the zerocopy cases (per repetition) came back flagged "
        "SO_EE_CODE_ZEROCOPY_COPIED: the kernel copied the data anyway"
    )
    if slower:
        sentence += (
            f", so MSG_ZEROCOPY only added its own costs (pinning the pages, a notification per send on the "
            f"error queue) and was up to {ex.times(max(slower))} slower than plain send"
        )
    else:
        sentence += ", and zerocopy was nowhere measurably slower than plain send"
    return sentence + ". A real NIC is where the copy can be skipped."


def _enobufs(summary: pd.DataFrame) -> str | None:
    """ENOBUFS of the unprivileged zerocopy sender against RLIMIT_MEMLOCK, and root's exemption."""
    from iobench import explain as ex
    from iobench.units import format_size

    unpriv = ex.select(summary, method="zerocopy-unprivileged")
    if unpriv.empty or "enobufs" not in unpriv or not ex.finite(unpriv["enobufs"].iloc[0]):
        return None
    row = unpriv.sort_values("msg_size").iloc[-1] if "msg_size" in unpriv else unpriv.iloc[0]
    enobufs = unpriv["enobufs"].max()
    limit = row.get("memlock_limit")
    limit_text = f"RLIMIT_MEMLOCK {format_size(limit)}" if ex.finite(limit) else "RLIMIT_MEMLOCK unlimited"
    uid = row.get("ran_as_uid")
    who = f"as uid {uid:.0f}" if ex.finite(uid) else "unprivileged"
    if enobufs:
        sentence = (
            f"Without privilege ({who}, {limit_text}) the zerocopy sender got ENOBUFS up to {enobufs:,.0f} "
            "times per repetition. "
            + ex.cite(
                "Documentation/networking/msg_zerocopy.rst",
                "Linux kernel documentation",
                "a zerocopy send fails with ENOBUFS when the socket exceeds its optmem limit or the user "
                "exceeds their limit on locked pages",
            )
            + ". "
            + ex.cite(
                ex.WINSOCK_CHAPTER,
                ex.WINSOCK_BOOK,
                "on Windows, overlapped operations past the limit on locked pages fail with WSAENOBUFS",
            )
        )
    else:
        sentence = (
            f"Without privilege ({who}, {limit_text}) the zerocopy sender got no ENOBUFS: its send queue "
            "never held more pinned pages than the limit"
        )
    privileged = ex.select(summary, method="zerocopy")
    if not privileged.empty and "ran_as_uid" in privileged and ex.finite(privileged["ran_as_uid"].iloc[0]):
        p_uid, p_enobufs = privileged["ran_as_uid"].iloc[0], privileged["enobufs"].max()
        if p_uid == 0:
            sentence += f". The zerocopy case as root got {p_enobufs:,.0f}: root is exempt from the limit (CAP_IPC_LOCK)"
        else:
            sentence += (
                f". The zerocopy case ran as uid {p_uid:.0f} too (not root), so it shows no exemption (root's "
                "CAP_IPC_LOCK ignores the limit)"
            )
    return sentence + "."


def _uring_zc(experiment: Any, summary: pd.DataFrame) -> list[str]:
    """io_uring SEND_ZC per size against plain send (tested), its notification CQEs and how many
    said the kernel copied anyway."""
    from iobench import explain as ex
    from iobench.units import format_duration, format_rate

    parts = []
    for size in ex.distinct(summary, "msg_size", method="uring-send-zc"):
        send, ring = {"method": "send", "msg_size": size}, {"method": "uring-send-zc", "msg_size": size}
        found = ex.difference(summary, "bytes_per_s", send, ring)
        if found is None:
            continue
        part = (
            f"at {ex.fmt(experiment, 'msg_size', size)} {format_rate(ex.one(summary, 'bytes_per_s', **ring))} vs send "
            f"{format_rate(ex.one(summary, 'bytes_per_s', **send))}, {ex.contrast(found, higher_is_better=True)}"
        )
        r_cpu = ex.value(summary, "cpu_ns", per="bytes", scale=GIB, **ring)
        s_cpu = ex.value(summary, "cpu_ns", per="bytes", scale=GIB, **send)
        if r_cpu and s_cpu:
            part += f", sender CPU/GiB {format_duration(r_cpu)} vs {format_duration(s_cpu)}"
        parts.append(part)
    out = ["io_uring IORING_OP_SEND_ZC over loopback TCP: " + "; ".join(parts) + "."] if parts else []
    rows = ex.select(summary, method="uring-send-zc")
    if rows.empty or "zc_completions" not in rows:
        return out
    sends, notifs, copied = (
        rows[c].sum() if c in rows else float("nan") for c in ("zc_sends", "zc_completions", "zc_copied")
    )
    if not all(ex.finite(v) for v in (sends, notifs, copied)) or not sends:
        return out
    said = (
        f"Its {sends:,.0f} sends (per repetition, all sizes) each got a CQE and {notifs:,.0f} notification CQEs "
        f"followed once the kernel was done with the pages; {copied:,.0f} of them carried "
        "IORING_NOTIF_USAGE_ZC_COPIED"
    )
    if notifs and copied == notifs:
        said += ": the kernel copied every one, as loopback does (io_uring's counterpart of SO_EE_CODE_ZEROCOPY_COPIED)"
    elif notifs:
        said += f": the other {notifs - copied:,.0f} really skipped the copy"
    out.append(said + ".")
    return out
