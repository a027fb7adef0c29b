"""The peer end of the link measurements: ``python -m iobench.netemu.probe ADDRESS [--rcvbuf N]``.

Listens on ADDRESS, port chosen by the kernel, prints the port on a line, then serves one
connection at a time until killed. The first byte of a connection says what to do:

- ``P``: ping-pong: echo every byte back (TCP_NODELAY) until end of file.
- ``S`` + 8 bytes (little-endian ``skip``): sink: read to end of file, then answer one JSON
  line: bytes received, the time from when ``skip`` bytes had arrived to the end (the steady
  part, past slow start), and the receive window facts (``window.window_facts``).

SO_RCVBUF, when given, is set on the listener before listen(): accepted sockets inherit it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import sys
import time

from iobench.netemu.window import window_facts

#: Seconds any one socket operation may wait.
TIMEOUT_S = 30.0


def _exact(sock: socket.socket, size: int) -> bytes:
    data = sock.recv(size, socket.MSG_WAITALL)
    if len(data) != size:
        raise ConnectionError(f"expected {size} bytes, got {len(data)}")
    return data


def _echo(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := sock.recv(65536):
        sock.sendall(data)


def _sink(sock: socket.socket) -> None:
    (skip,) = struct.unpack("<q", _exact(sock, 8))
    buffer = bytearray(256 << 10)
    total, mark_ns, mark_bytes = 0, None, 0
    while got := sock.recv_into(buffer):
        total += got
        if mark_ns is None and total >= skip:
            mark_ns, mark_bytes = time.monotonic_ns(), total
    end_ns = time.monotonic_ns()
    report = {
        "bytes": total,
        "steady_bytes": total - mark_bytes if mark_ns is not None else 0,
        "steady_ns": end_ns - mark_ns if mark_ns is not None else 0,
        **window_facts(sock),
    }
    sock.sendall(json.dumps(report).encode() + b"\n")


def serve(address: str, rcvbuf: int | None) -> None:
    """Serve connections one at a time, forever (the link's teardown ends us)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    listener.bind((address, 0))
    listener.listen(8)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT_S)
            try:
                command = _exact(conn, 1)
                if command == b"P":
                    _echo(conn)
                elif command == b"S":
                    _sink(conn)
            except (OSError, ConnectionError) as exc:
                print(f"probe: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m iobench.netemu.probe")
    parser.add_argument("address")
    parser.add_argument("--rcvbuf", type=int, default=None)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.address, args.rcvbuf)


if __name__ == "__main__":
    main()
