"""zero-copy: copy without passing the data through user memory (seed 000)."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iobench.errors import UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.hostinfo import working_set
from iobench.metrics import FITS_LLC, INTEGRITY_OK, WORKING_SET
from iobench.metrics import Metric as M
from iobench.osutil.children import Child, fork_child
from iobench.osutil.files import create_random_file, open_new
from iobench.osutil.sockets import SOCKET_TIMEOUT_S, drain_to_eof, set_blocking_timeouts
from iobench.osutil.verify import file_digest
from iobench.params import choice_param, size_param
from iobench.peer.client import RemotePeer, RemoteRole

if TYPE_CHECKING:
    import pandas as pd

MIB = 1 << 20
GIB = 1 << 30
FILE_METHODS = ("read-write", "sendfile", "copy_file_range", "splice")
TCP_METHODS = ("tcp-sendall", "tcp-sendfile")


def _drain(port: int) -> tuple[int, int]:
    """The receiving child: connect, read to EOF, report the byte count back on the socket.

    Returns (bytes, CPU ns of the receive loop alone: not the fork or the connect).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    sock.settimeout(None)
    set_blocking_timeouts(sock, SOCKET_TIMEOUT_S)
    total, cpu_ns, *_ = drain_to_eof(sock, [])
    return total, cpu_ns


@register
class ZeroCopy(Experiment):
    """Copy a file to a file or to a loopback TCP socket, by several kernel paths."""

    name = "zero-copy"
    has_peers = True
    remote_peer = True
    summary = "read+write vs sendfile vs copy_file_range vs splice; file -> TCP with sendfile"
    seed_idea = (
        "read() copies kernel -> user and write() copies user -> kernel; sendfile, "
        "copy_file_range and splice move the data inside the kernel, so the user-space copy "
        "(and much of its CPU) disappears (sendfile(2), copy_file_range(2), splice(2))."
    )
    params = (
        choice_param(
            "method",
            FILE_METHODS + TCP_METHODS,
            "read-write: read into a buffer, write it out; sendfile / copy_file_range: the "
            "kernel copies; splice: file -> pipe -> file; tcp-sendall: read + sendall to a "
            "loopback TCP peer; tcp-sendfile: sendfile to that peer.",
        ),
        size_param(
            "file_size",
            (32 << 20,),
            "Bytes copied per repetition.",
        ),
        size_param(
            "bs",
            (65536,),
            "Bytes per call (read/write size, sendfile/splice count).",
            maximum=1 << 30,
        ),
    )
    x_param = "bs"
    table_axis = "method"
    series_params = ("method",)
    throughput_figure = True
    columns = (
        Column("Elapsed", "elapsed_ns", "duration"),
        Column("Throughput", "bytes_per_s", "rate"),
        Column("CPU/GiB", "cpu_ns", "duration", per="bytes", scale=GIB),
        Column("User/GiB", "user_ns", "duration", per="bytes", scale=GIB),
        Column("System/GiB", "sys_ns", "duration", per="bytes", scale=GIB),
        Column("Receiver CPU/GiB", "peer_cpu_ns", "duration", per="bytes", scale=GIB),
        Column("read()s", "syscalls_read"),
        Column("write()s", "syscalls_write"),
        Column("Calls", "ops"),
    )

    figures = (
        FigureSpec("stacked_cpu", title="CPU per GiB copied: user vs system", per="bytes", scale=GIB,
                   y_label="CPU per GiB"),
        FigureSpec("throughput", title="Throughput per method"),
    )  # fmt: skip

    metrics = (
        INTEGRITY_OK,
        WORKING_SET,
        FITS_LLC,
        M("peer_cpu_ns", "Receiver CPU", "duration", "TCP methods: CPU time of the receiver child.", "lower"),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """CPU per GiB of read+write against the in-kernel copies, the user CPU that should vanish,
        throughput ranked (file methods among themselves, TCP ones apart), sendfile to TCP."""
        from iobench import explain as ex
        from iobench.units import format_duration, format_rate

        out = []
        bs = _shared_bs(summary)
        if bs is None:
            return []
        base = {"method": "read-write", "bs": bs}
        cpu = ex.value(summary, "cpu_ns", per="bytes", scale=GIB, **base)
        parts = []
        for method in ("sendfile", "copy_file_range", "splice"):
            other = {"method": method, "bs": bs}
            found = ex.difference(summary, "cpu_ns", base, other, per="bytes")
            if found is None:
                continue
            spent = ex.value(summary, "cpu_ns", per="bytes", scale=GIB, **other)
            parts.append(
                f"{method} {format_duration(spent)}, {ex.contrast(found, words=('less CPU', 'more CPU'))}"
            )
        if cpu is not None and parts:
            out.append(
                f"Copying a file with read+write cost {format_duration(cpu)} of CPU per GiB; "
                + "; ".join(parts)
                + "."
            )
        user = _user_cpu(summary, bs)
        if user:
            out.append(user)
        for methods, what in ((FILE_METHODS, "File to file"), (TCP_METHODS, "File to a loopback TCP socket")):
            ranking = ex.rank(summary, "bytes_per_s", [(m, {"method": m, "bs": bs}) for m in methods])
            if ranking is not None:
                out.append(f"{what}, " + ex.ranking_sentence(ranking, format_rate) + ".")
        return out

    _src: int | None = None
    _dst: int | None = None
    _pipe: tuple[int, int] | None = None
    _listener: socket.socket | None = None
    _conn: socket.socket | None = None
    _child: Child | RemoteRole | None = None

    @classmethod
    def uses_peer(cls, case: dict[str, Any]) -> bool:
        return case["method"] in TCP_METHODS

    def space_needed(self) -> int:
        return self.case["file_size"] * (1 if self.case["method"] in TCP_METHODS else 2)

    def prepare(self) -> None:
        self.method: str = self.case["method"]
        self.size: int = self.case["file_size"]
        self.block: int = self.case["bs"]
        self.src_path = self.scratch / "source.bin"
        self.dst_path = self.scratch / "copy.bin"
        self.src_digest = create_random_file(self.src_path, self.size)
        self.buffer = bytearray(os.urandom(self.block))
        # File to file: both files' cached pages and the buffer (or pipe). Not recorded for TCP,
        # where socket buffers and the receiver's own buffer add to it.
        tcp = self.method in TCP_METHODS
        self._working_set = {} if tcp else working_set(self.space_needed() + self.block)
        if self.method == "splice":
            read_end, write_end = os.pipe()
            self._pipe = (read_end, write_end)
            # A pipe holds 64 KiB by default; grow it so one splice can carry a whole block.
            wanted = min(max(self.block, 4096), int(Path("/proc/sys/fs/pipe-max-size").read_text()))
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, wanted)
        if self.method in TCP_METHODS and self.peer.remote:
            pass  # the receiver is a drain role on the peer host; it listens there
        elif self.method in TCP_METHODS:
            self._listener = socket.create_server(("127.0.0.1", 0))
            self._listener.settimeout(SOCKET_TIMEOUT_S)

    def before_rep(self) -> dict[str, Any]:
        self._src = os.open(self.src_path, os.O_RDONLY | os.O_CLOEXEC)
        if self.method in TCP_METHODS and isinstance(self.peer, RemotePeer):
            role = self.peer.start("drain", {"rcvbuf": None, "sndbuf": None})
            self._child = role
            self._conn = role.connect()
            self._conn.settimeout(None)
            set_blocking_timeouts(self._conn, SOCKET_TIMEOUT_S)
        elif self.method in TCP_METHODS:
            assert self._listener is not None
            port = self._listener.getsockname()[1]
            self._child = fork_child(lambda: _drain(port), wait_ready=True)
            self._conn, _ = self._listener.accept()
            self._conn.settimeout(None)
            set_blocking_timeouts(self._conn, SOCKET_TIMEOUT_S)
        else:
            self.dst_path.unlink(missing_ok=True)
            self._dst = open_new(self.dst_path)
        return {}

    def run_once(self) -> dict[str, Any]:
        assert self._src is not None
        if self.method in TCP_METHODS:
            assert self._conn is not None
            calls = self._send_tcp()
            self._conn.shutdown(socket.SHUT_WR)
            # The peer's byte count closes the timing: the data has really arrived.
            received = struct.unpack("q", self._conn.recv(8, socket.MSG_WAITALL))[0]
            return {"bytes": received, "ops": calls}
        assert self._dst is not None
        return {"bytes": self.size, "ops": self._copy_file()}

    def _copy_file(self) -> int:
        src, dst, block = self._src, self._dst, self.block
        assert src is not None and dst is not None
        calls = 0
        try:
            if self.method == "read-write":
                view, readv, write = memoryview(self.buffer), os.readv, os.write
                while got := readv(src, [self.buffer]):
                    write(dst, view[:got])
                    calls += 2
                return calls + 1
            if self.method == "sendfile":
                while os.sendfile(dst, src, None, block):
                    calls += 1
                return calls + 1
            if self.method == "copy_file_range":
                while os.copy_file_range(src, dst, block):
                    calls += 1
                return calls + 1
            assert self._pipe is not None
            pipe_read, pipe_write = self._pipe
            while moved := os.splice(src, pipe_write, block):
                calls += 1
                while moved:
                    moved -= os.splice(pipe_read, dst, moved)
                    calls += 1
            return calls + 1
        except OSError as exc:
            if exc.errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this kernel/fs says no
                raise UnsupportedCase(f"{self.method}: {exc.strerror} on this filesystem") from None
            raise

    def _send_tcp(self) -> int:
        assert self._conn is not None and self._src is not None
        sock, src, block = self._conn, self._src, self.block
        calls = 0
        if self.method == "tcp-sendfile":
            out = sock.fileno()
            while os.sendfile(out, src, None, block):
                calls += 1
            return calls + 1
        view, readv, sendall = memoryview(self.buffer), os.readv, sock.sendall
        while got := readv(src, [self.buffer]):
            sendall(view[:got])
            calls += 2
        return calls + 1

    def after_rep(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        assert self._src is not None
        os.close(self._src)
        self._src = None
        if self.method in TCP_METHODS:
            assert self._child is not None and self._conn is not None
            if isinstance(self._child, RemoteRole):
                report, _ = self._child.wait(SOCKET_TIMEOUT_S)
                received, peer_cpu_ns = report["bytes"], report["cpu_ns"]
            else:
                (received, peer_cpu_ns), _ = self._child.wait(SOCKET_TIMEOUT_S)
            self._child = None
            self._conn.close()
            self._conn = None
            metrics = {"peer_cpu_ns": peer_cpu_ns, "integrity_ok": received == self.size}
        else:
            assert self._dst is not None
            os.fsync(self._dst)  # untimed write-back: the next repetition starts clean
            os.close(self._dst)
            self._dst = None
            metrics = {"integrity_ok": file_digest(self.dst_path) == self.src_digest, **self._working_set}
        return metrics

    def teardown(self) -> None:
        for fd in (self._src, self._dst, *(self._pipe or ())):
            if fd is not None:
                os.close(fd)
        self._src = self._dst = self._pipe = None
        if self._child is not None:
            self._child.kill()
        for sock in (self._conn, self._listener):
            if sock is not None:
                sock.close()


def _shared_bs(summary: pd.DataFrame) -> Any:
    """The bs with the most methods measured (the largest on a tie), or None."""
    from iobench import explain as ex

    sizes = ex.distinct(summary, "bs")
    if not sizes:
        return None
    return max(sizes, key=lambda bs: (len(ex.distinct(summary, "method", bs=bs)), bs))


def _user_cpu(summary: pd.DataFrame, bs: Any) -> str | None:
    """User CPU per GiB of read+write against the in-kernel copies: the user-space copy that
    disappears, said only where the tick-sampled split is resolvable."""
    from iobench import explain as ex
    from iobench.units import format_duration

    base = {"method": "read-write", "bs": bs}
    if ex.select(summary, **base).empty:
        return None
    parts = []
    for method in ("read-write", "sendfile", "copy_file_range", "splice"):
        case = {"method": method, "bs": bs}
        if ex.select(summary, **case).empty:
            continue
        user = ex.value(summary, "user_ns", per="bytes", scale=GIB, **case)
        parts.append(
            f"{method} {format_duration(user)}" if user is not None else f"{method} below the tick resolution"
        )
    if len(parts) < 2 or all(part.endswith("below the tick resolution") for part in parts):
        return None
    return (
        "User-space CPU per GiB (tick-sampled, shown where enough ticks accumulated): "
        + ", ".join(parts)
        + "."
    )
