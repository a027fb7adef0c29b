"""The control protocol between ``iobench serve`` and a client: framing and message checks.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding one
object with a string ``type``. Frames longer than ``MAX_FRAME`` are refused before a byte of
the body is read, so a client can never make the other end allocate more than that. Every
read has a deadline for the whole frame (not per byte), so a peer that trickles bytes
(slowloris) is dropped when the deadline passes.

Messages, client -> server: ``hello`` {version, token}, ``run`` {role, params}, ``bye``.
Server -> client: ``welcome`` {version, host}, ``busy``, ``error`` {code, message},
``listening`` {port}, ``ready``, ``report`` {result, rusage}.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import time
from typing import Any

#: Largest frame either side accepts (bytes of JSON). Real messages are well under 4 KiB.
MAX_FRAME = 64 << 10
_HEADER = struct.Struct("!I")

#: Every message type and the fields it must carry, with their JSON types.
_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "hello": {"version": (str,), "token": (str, type(None))},
    "run": {"role": (str,), "params": (dict,)},
    "bye": {},
    "welcome": {"version": (str,), "host": (dict,)},
    "busy": {"message": (str,)},
    "error": {"code": (str,), "message": (str,)},
    "listening": {"port": (int,)},
    "ready": {},
    "report": {"result": (dict,), "rusage": (dict,)},
}


class ProtocolError(Exception):
    """The other end broke the control protocol (a malformed, oversized or unexpected frame)."""


class FrameTooLarge(ProtocolError):
    """A frame declared a length above MAX_FRAME."""


class TruncatedFrame(ProtocolError):
    """The connection closed in the middle of a frame (or before one, when one was needed)."""


class BadMessage(ProtocolError):
    """A frame that is not a JSON object of a known type with the right fields."""


class FrameTimeout(ProtocolError):
    """A whole frame did not arrive before its deadline."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame: the length prefix and the message as compact UTF-8 JSON."""
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_FRAME:
        raise FrameTooLarge(f"a {message.get('type')} message of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


def send(sock: socket.socket, message: dict[str, Any], timeout_s: float) -> None:
    """Send one message; the whole frame must leave within ``timeout_s``."""
    sock.settimeout(timeout_s)
    try:
        sock.sendall(encode(message))
    except TimeoutError as exc:
        raise FrameTimeout(f"could not send a {message.get('type')} message within {timeout_s:g} s") from exc


def _read_exact(sock: socket.socket, size: int, deadline: float, what: str) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FrameTimeout(f"{what} did not arrive in time")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(size - len(chunks))
        except TimeoutError:
            raise FrameTimeout(f"{what} did not arrive in time") from None
        if not chunk:
            if not chunks and what == "a frame header":
                raise TruncatedFrame("the connection closed")
            raise TruncatedFrame(f"the connection closed inside {what}")
        chunks += chunk
    return bytes(chunks)


def receive(sock: socket.socket, timeout_s: float) -> dict[str, Any]:
    """Read one frame within ``timeout_s`` and return its checked message."""
    deadline = time.monotonic() + timeout_s
    (length,) = _HEADER.unpack(_read_exact(sock, _HEADER.size, deadline, "a frame header"))
    if length > MAX_FRAME:
        raise FrameTooLarge(f"a frame of {length} bytes exceeds the limit of {MAX_FRAME}")
    return decode(_read_exact(sock, length, deadline, f"a frame body of {length} bytes"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(body: bytes) -> dict[str, Any]:
    """The message in a frame body; BadMessage unless it is a known, well-typed message."""
    try:
        message = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadMessage(f"a frame is not UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise BadMessage(f"a frame holds a JSON {type(message).__name__}, not an object")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise BadMessage(f"unknown message type {str(kind)[:40]!r}")
    for name, types in _FIELDS[kind].items():
        value = message.get(name, ...)
        # bool is an int to Python but not a port or a size here.
        if value is ... or isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise BadMessage(f"a {kind} message needs {name!r} as {wanted}")
    return message


def expect(message: dict[str, Any], *kinds: str) -> dict[str, Any]:
    """``message`` when its type is one of ``kinds``; BadMessage otherwise."""
    if message["type"] not in kinds:
        raise BadMessage(f"expected {' or '.join(kinds)}, got {message['type']}")
    return message


def finite_numbers(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with only JSON-safe scalars (NaN and infinities become None)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[str(key)] = value
    return out
