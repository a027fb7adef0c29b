"""The loops of the socket experiments' far ends, shared by the peer forked on this host and
the roles ``iobench serve`` runs on another (peer/roles.py): both ends measure the same way.

zero-byte-recv's sender (``send_traffic``), async-send's echo client (``drive_echo``) and
receiver (``receive_all`` + ``verify_frames``), and the frame format they share.
"""

from __future__ import annotations

import os
import random
import resource
import selectors
import socket
import struct
import time
from array import array
from typing import Any

from iobench.osutil.children import ready
from iobench.osutil.sockets import SOCKET_TIMEOUT_S
from iobench.stats import percentiles

#: zero-byte-recv: each message starts with the sender's CLOCK_MONOTONIC ns.
STAMP = struct.Struct("q")
#: async-send's frames: seq, payload size, then the payload (``fill(seq)`` repeated).
FRAME_HEADER = struct.Struct("!II")
#: async-send's modes whose frames these loops size (``message_sizes``).
INFLIGHT_MODES = ("inflight-100-200-150", "inflight-random")
URING_MODES = ("uring-unlinked", "uring-linked", "uring-unlinked-waitall", "uring-linked-waitall")


def send_traffic(socks: list[socket.socket], messages: int, msg_size: int, burst: int, go: int) -> int:
    """The sender's loop (forked here, or the zero-byte-sender role on a peer host, where ``go``
    is its sync connection): per repetition ('g' on ``go``) send ``messages`` messages of
    ``msg_size`` bytes to random connections, ``burst`` at a time, waiting for the receiver's
    ack ('a' on ``go``) after each burst; 'p' sends one probe byte on the first connection.
    Anything else (EOF) ends it; the connections are closed. Returns its CPU ns."""
    rng = random.Random(5)
    message = bytearray(msg_size)
    clock = time.monotonic_ns
    try:
        while (command := os.read(go, 1)) in (b"g", b"p"):
            if command == b"p":  # one probe byte on the first connection (see _probe_zero_length_recv)
                socks[0].sendall(b"p")
                continue
            for start in range(0, messages, burst):
                for _ in range(min(burst, messages - start)):
                    STAMP.pack_into(message, 0, clock())
                    rng.choice(socks).sendall(message)
                if os.read(go, 1) != b"a":
                    return time.thread_time_ns()
    finally:
        for sock in socks:
            sock.close()
    return time.thread_time_ns()


def fill(seq: int) -> int:
    return seq % 251 + 1


def message_sizes(mode: str, messages: int, max_size: int) -> list[int]:
    """Payload sizes of the in-flight modes: 100, 200, 150 repeated, or seeded random sizes; the
    io_uring modes: 100, 200, 150 and a random size (up to max_size), in turn."""
    if mode == "inflight-100-200-150":
        return [(100, 200, 150)[i % 3] for i in range(messages)]
    rng = random.Random(4)
    if mode in URING_MODES:
        return [(100, 200, 150)[i % 4] if i % 4 < 3 else rng.randint(1, max_size) for i in range(messages)]
    return [rng.randint(1, max_size) for _ in range(messages)]


def verify_frames(data: bytes, sizes: list[int]) -> dict[str, Any]:
    """Check the single-writer stream: frames in order, each with its full size and pattern."""
    order_ok = sizes_ok = True
    offset = seq = 0
    while offset < len(data) and seq < len(sizes):
        if offset + FRAME_HEADER.size > len(data):
            sizes_ok = False
            break
        got_seq, size = FRAME_HEADER.unpack_from(data, offset)
        order_ok &= got_seq == seq
        payload = data[offset + FRAME_HEADER.size : offset + FRAME_HEADER.size + size]
        sizes_ok &= size == sizes[seq] and payload == bytes([fill(got_seq)]) * size
        offset += FRAME_HEADER.size + size
        seq += 1
    return {
        "order_ok": order_ok and seq == len(sizes),
        "sizes_ok": sizes_ok and offset == len(data),
        "messages_verified": seq,
    }


def stream_size(sizes: list[int]) -> int:
    """Bytes of the frames of ``sizes`` (header and payload each) on the wire."""
    return sum(sizes) + FRAME_HEADER.size * len(sizes)


def receive_all(sock: socket.socket, others: list[socket.socket], total: int) -> bytes:
    """The receiver (forked here, or the receive-frames role on a peer host): up to ``total``
    bytes, to EOF; ``others`` are the parent's sockets it closes first."""
    for other in others:
        other.close()
    data = bytearray(total)
    view, have = memoryview(data), 0
    ready()
    while have < total and (got := sock.recv_into(view[have:])):
        have += got
    sock.close()
    return bytes(data[:have])


def drive_echo(socks: list[socket.socket], messages: int, size: int, go: int) -> dict[str, Any]:
    """The echo client's loop (forked here, or the echo-driver role on a peer host, where ``go``
    is its sync connection): once 'g' comes on ``go``, each connection is a closed loop of
    ``messages`` round trips of ``size`` bytes. Calls ``ready()`` once set up."""
    connections = len(socks)
    selector = selectors.DefaultSelector()
    try:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        payload = b"e" * size
        rtts = array("q", bytes(8 * connections * messages))
        clock = time.perf_counter_ns
        state = {}
        ready()  # connected and set up: the server's clock may start
        if os.read(go, 1) != b"g":
            return {}
        before = resource.getrusage(resource.RUSAGE_SELF)
        done = 0
        for sock in socks:
            sock.sendall(payload)
            state[sock] = [clock(), 0, 0]  # sent at, bytes back, round trips done
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
                rtts[done] = clock() - entry[0]
                done += 1
                entry[1], entry[2] = 0, entry[2] + 1
                if entry[2] == messages:
                    selector.unregister(sock)
                    sock.shutdown(socket.SHUT_WR)
                    active -= 1
                else:
                    entry[0] = clock()
                    sock.sendall(payload)
        after = resource.getrusage(resource.RUSAGE_SELF)
        p50, p99 = percentiles(rtts[:done], 0.50, 0.99)
        return {
            "lat_p50_ns": p50,
            "lat_p99_ns": p99,
            "round_trips": done,
            "peer_ctx_vol": after.ru_nvcsw - before.ru_nvcsw,
            "peer_ctx_invol": after.ru_nivcsw - before.ru_nivcsw,
        }
    finally:
        selector.close()
        for sock in socks:
            sock.close()
