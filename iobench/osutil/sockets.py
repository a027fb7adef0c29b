"""Socket helpers the socket experiments share: timeouts, buffer sizes, fd limits, RSS.

Every socket made here has a timeout and every server binds 127.0.0.1 port 0, so no
experiment can wait forever or collide with another program's port.
"""

from __future__ import annotations

import asyncio
import os
import resource
import selectors
import socket
import struct
import time

from iobench.errors import UnsupportedCase
from iobench.osutil.children import ready

#: Seconds any single socket operation may wait before it fails.
SOCKET_TIMEOUT_S = 30.0
LOOPBACK = "127.0.0.1"


def set_blocking_timeouts(sock: socket.socket, seconds: float) -> None:
    """Kernel-side send/receive timeouts: the socket stays blocking (os.sendfile needs that)
    yet no call can wait forever."""
    value = struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)


def effective_buffers(sock: socket.socket) -> tuple[int, int]:
    """(SO_RCVBUF, SO_SNDBUF) as getsockopt reports them: what the kernel really uses."""
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
    )


def set_buffers(sock: socket.socket, rcvbuf: int | None, sndbuf: int | None) -> None:
    """Request buffer sizes (None: leave unset, so autotuning stays on).

    Call before listen()/connect(): on a running stream a change can stall the transfer.
    """
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)


def loopback_listener(
    backlog: int = 128, rcvbuf: int | None = None, sndbuf: int | None = None
) -> socket.socket:
    """A TCP listener on 127.0.0.1, port chosen by the kernel, with an accept timeout.

    Buffer sizes set here are inherited by every accepted socket (they must precede listen()).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        set_buffers(sock, rcvbuf, sndbuf)
        sock.bind((LOOPBACK, 0))
        sock.listen(backlog)
        sock.settimeout(SOCKET_TIMEOUT_S)
    except BaseException:
        sock.close()
        raise
    return sock


def connect_loopback(port: int, rcvbuf: int | None = None, sndbuf: int | None = None) -> socket.socket:
    """A TCP client connected to 127.0.0.1:port, buffers requested before connect()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        set_buffers(sock, rcvbuf, sndbuf)
        sock.settimeout(SOCKET_TIMEOUT_S)
        sock.connect((LOOPBACK, port))
    except BaseException:
        sock.close()
        raise
    return sock


def accept_with_timeouts(listener: socket.socket) -> socket.socket:
    """accept() (bounded by the listener's timeout); the new socket is blocking with
    kernel-side send/receive timeouts."""
    conn, _ = listener.accept()
    conn.settimeout(None)
    set_blocking_timeouts(conn, SOCKET_TIMEOUT_S)
    return conn


def new_selector_loop() -> asyncio.AbstractEventLoop:
    """asyncio.new_event_loop() that, when it cannot be completed (no descriptor left for its
    self-pipe: EMFILE), closes its epoll descriptor and stays quiet. The stock one leaves the
    descriptor open and its __del__ prints a traceback about the self-pipe it never made."""
    selector = selectors.DefaultSelector()
    loop = asyncio.SelectorEventLoop.__new__(asyncio.SelectorEventLoop)
    try:
        loop.__init__(selector)  # type: ignore[misc]
    except BaseException:
        selector.close()
        loop._closed = True  # type: ignore[attr-defined]  # nothing left for __del__ to close
        raise
    return loop


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to at least ``needed``; returns the (soft, hard) now in force.

    UnsupportedCase names both numbers when the hard limit is below what is needed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise UnsupportedCase(
                f"needs {needed} file descriptors but the hard RLIMIT_NOFILE is {hard} "
                f"(soft {soft}); raise the hard limit (ulimit -Hn) to run it"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft, hard


def rss_bytes() -> int:
    """Resident set size of this process now (/proc/self/statm), in bytes."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tcp_kernel_memory_bytes() -> int | None:
    """Bytes the kernel's TCP sockets hold system-wide (/proc/net/sockstat ``mem``, in pages)."""
    try:
        with open("/proc/net/sockstat") as sockstat:
            for line in sockstat:
                if line.startswith("TCP:"):
                    fields = line.split()
                    return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None
    return None


def drain_to_eof(
    sock: socket.socket, others: list[socket.socket], start_fd: int | None = None
) -> tuple[int, int, int, int | None]:
    """The receiving child: read to EOF, send the byte count back.

    ``start_fd``: wait for one byte (or EOF) on this pipe before reading anything. Calls
    ``children.ready()`` once set up, before it waits for anything.
    Returns (bytes, CPU ns of the receive loop, SO_RCVBUF at the end: autotuning grows it,
    the TCP window clamp at the end: ``window_clamp``).
    """
    for other in others:  # only our own end: if the parent dies we see EOF, not a hang
        other.close()
    buffer = bytearray(256 << 10)
    ready()  # set up: a parent that forked us with wait_ready may start its clock now
    if start_fd is not None:
        os.read(start_fd, 1)
        os.close(start_fd)
    recv_into, total = sock.recv_into, 0
    cpu_start = time.thread_time_ns()
    while got := recv_into(buffer):
        total += got
    cpu_ns = time.thread_time_ns() - cpu_start
    rcvbuf_end = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    clamp = window_clamp(sock)
    sock.sendall(struct.pack("q", total))
    sock.close()
    return total, cpu_ns, rcvbuf_end, clamp


def window_clamp(sock: socket.socket) -> int | None:
    """The largest receive window a TCP socket may advertise (TCP_WINDOW_CLAMP), None for other
    sockets. With SO_RCVBUF set, Linux >= 6.6 keeps it at sk_rcvbuf * scaling_ratio / 256 (the
    share of the buffer that payload gets, measured from the packets received), so read it after
    data arrived: it is the window of the bandwidth-delay law, throughput <= window / RTT."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return None
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_WINDOW_CLAMP)
