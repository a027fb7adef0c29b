"""The peer roles of the socket experiments: what the far end of a data socket does.

A role is a plain function of an accepted data socket and validated parameters. The same
loops serve the forked peer (``osutil.sockets.drain_to_eof`` in the experiments) and the
server, so both ends measure the same way. Parameters come from the network only through
``validate``: known names, exact JSON types, bounded sizes; no paths, no commands.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from iobench.osutil.children import ready
from iobench.osutil.sockets import (
    SOCKET_TIMEOUT_S,
    drain_to_eof,
    effective_buffers,
    raise_fd_limit,
    set_buffers,
)
from iobench.peer.loops import (
    INFLIGHT_MODES,
    URING_MODES,
    drive_echo,
    message_sizes,
    receive_all,
    send_traffic,
    stream_size,
    verify_frames,
)


class RoleError(ValueError):
    """A role request that names an unknown role or carries a bad parameter."""


@dataclass(frozen=True)
class SizeRule:
    """An optional integer in [minimum, maximum] (None: leave the option unset)."""

    minimum: int
    maximum: int

    def check(self, name: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise RoleError(f"parameter {name!r} must be an integer or null")
        if not self.minimum <= value <= self.maximum:
            raise RoleError(f"parameter {name!r}={value} is outside {self.minimum}..{self.maximum}")
        return value


#: Socket buffer requests: the range sock-buffer's --bufsize allows.
_BUFFER = SizeRule(0, 1 << 30)


class Rule(Protocol):
    """What ``validate`` asks of a parameter's rule: the checked value, or RoleError."""

    def check(self, name: str, value: Any) -> Any: ...


@dataclass(frozen=True)
class IntRule:
    """A required integer in [minimum, maximum] (null, booleans, floats and strings refused)."""

    minimum: int
    maximum: int

    def check(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RoleError(f"parameter {name!r} must be an integer")
        if not self.minimum <= value <= self.maximum:
            raise RoleError(f"parameter {name!r}={value} is outside {self.minimum}..{self.maximum}")
        return value


@dataclass(frozen=True)
class ChoiceRule:
    """A required string out of a fixed set."""

    choices: tuple[str, ...]

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise RoleError(f"parameter {name!r} must be one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True)
class Role:
    """One peer role: its parameters and what it does with the accepted data socket."""

    name: str
    params: dict[str, Rule]
    #: (accepted socket, validated params) -> the report's ``result``; runs in the role's child.
    work: Callable[[socket.socket, dict[str, Any]], dict[str, Any]]
    help: str
    #: The role connects to the client instead of listening: to the client's own address (the
    #: far end of the control connection) at ``params["port"]``, never to a host it is told;
    #: ``work`` gets that first connection (the sync connection) and may dial more the same way.
    dials: bool = False


def drain(sock: socket.socket, params: dict[str, Any]) -> dict[str, Any]:
    """The receiver: read to EOF with the forked peer's loop, send the 8-byte count back.

    The result has the bytes, the receive loop's CPU, and the socket's effective buffer sizes
    at the start (after accept), SO_RCVBUF at the end (autotuning may grow it) and the TCP
    window clamp at the end (``osutil.sockets.window_clamp``)."""
    rcvbuf, sndbuf = effective_buffers(sock)
    total, cpu_ns, rcvbuf_end, clamp = drain_to_eof(sock, [])
    return {
        "bytes": total,
        "cpu_ns": cpu_ns,
        "rcvbuf": rcvbuf,
        "sndbuf": sndbuf,
        "rcvbuf_end": rcvbuf_end,
        "window_clamp": clamp,
    }


ROLES: dict[str, Role] = {
    "drain": Role(
        "drain",
        {"rcvbuf": _BUFFER, "sndbuf": _BUFFER},
        drain,
        "receive to EOF and answer with the byte count (sock-buffer, zero-copy, msg-zerocopy)",
    ),
}


# ---------------------------------------------------------------- roles that dial the client
# zero-byte-recv and async-send's echo modes fork a peer that connects to the experiment's
# listener. On a peer host it does the same: the handler's child connects the sync connection
# to the client's own address (the far end of the control connection) at params["port"] and
# hands it to the role, which dials its data connections to the same address. Go/ack bytes
# travel on the sync connection as they do on pipes locally. The experiments' loops are
# imported inside the roles: the experiments import this module (through peer.client).

#: Descriptors a dialing role needs beyond its connections (the experiments keep as many).
_SPARE_FDS = 64
#: Bind without choosing the port yet (Linux): connect() then picks one per destination.
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
#: Most bytes a role may hold for one run (receive-frames keeps the whole stream to verify it).
MAX_HELD_BYTES = 1 << 30
#: Most round trips the echo driver records (8 bytes each).
MAX_ROUND_TRIPS = 1 << 24
#: async-send's modes whose receiver checks frames.
FRAME_MODES = INFLIGHT_MODES + URING_MODES
_PORT = IntRule(1, 65535)


def dial(peer: tuple[Any, ...], port: int, local: tuple[Any, ...], timeout_s: float) -> socket.socket:
    """A TCP connection from ``local``'s address to ``peer``'s address at ``port`` (both are
    the control connection's ends: a role reaches only the client that asked for it), with
    ``timeout_s`` as the socket's timeout (connect included)."""
    family = socket.AF_INET6 if len(peer) == 4 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        # From the address the client reached: the client accepts only from that address.
        sock.bind((local[0], 0, *local[2:]))
        sock.settimeout(timeout_s)
        sock.connect((peer[0], port, *peer[2:]))
    except BaseException:
        sock.close()
        raise
    return sock


def socket_timeout(sock: socket.socket) -> float:
    """The kernel receive timeout of ``sock`` in seconds (SOCKET_TIMEOUT_S when none is set)."""
    size = struct.calcsize("ll")
    seconds, micros = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, size))
    return seconds + micros / 1e6 or SOCKET_TIMEOUT_S


def dial_back(sync: socket.socket, count: int) -> list[socket.socket]:
    """``count`` more connections to where ``sync`` is connected (the client's listener), from
    the same local address, each with sync's timeout (as the forked peer's connect_loopback)."""
    peer, local, timeout = sync.getpeername(), sync.getsockname(), socket_timeout(sync)
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(dial(peer, peer[1], local, timeout))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def zero_byte_sender(sync: socket.socket, params: dict[str, Any]) -> dict[str, Any]:
    """zero-byte-recv's sender: CONNECTIONS connections to the client's listener, ``c`` on the
    sync connection once they are up, then the forked sender's loop with the go (``g``, ``p``,
    ``a``) bytes read from the sync connection; it ends at EOF there. Result: its CPU ns."""

    raise_fd_limit(params["connections"] + _SPARE_FDS)
    socks = dial_back(sync, params["connections"])
    try:
        sync.sendall(b"c")
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    ready()
    cpu_ns = send_traffic(socks, params["messages"], params["msg_size"], params["burst"], sync.fileno())
    return {"cpu_ns": cpu_ns}


def echo_driver(sync: socket.socket, params: dict[str, Any]) -> dict[str, Any]:
    """async-send's echo client: CONNECTIONS connections to the client's listener, each a
    closed loop of MESSAGES round trips of MSG_SIZE bytes once ``g`` comes on the sync
    connection (the forked driver's loop). Result: RTT percentiles, round trips, its context
    switches during the loop."""

    check_limits("echo-driver", params)
    raise_fd_limit(params["connections"] + _SPARE_FDS)
    socks = dial_back(sync, params["connections"])
    return drive_echo(socks, params["messages"], params["msg_size"], sync.fileno())


def receive_frames(sock: socket.socket, params: dict[str, Any]) -> dict[str, Any]:
    """async-send's receiver of the in-flight and io_uring modes: receive the whole stream (the
    forked receiver's loop) and check it here, where the bytes are: order, sizes, count."""

    check_limits("receive-frames", params)
    sizes = message_sizes(params["mode"], params["messages"], params["msg_size"])
    data = receive_all(sock, [], stream_size(sizes))
    return {**verify_frames(data, sizes), "received_bytes": len(data)}


def check_limits(role: str, params: dict[str, Any]) -> None:
    """RoleError when validated parameters together ask more memory of a role than it may hold.
    Roles check before they start; experiments check before they ask (then the case is
    unsupported rather than failed)."""
    if role == "echo-driver" and params["connections"] * params["messages"] > MAX_ROUND_TRIPS:
        raise RoleError(
            f"echo-driver records at most {MAX_ROUND_TRIPS:,} round trips (connections x messages)"
        )
    if role == "receive-frames":
        total = stream_size(message_sizes(params["mode"], params["messages"], params["msg_size"]))
        if total > MAX_HELD_BYTES:
            raise RoleError(
                f"receive-frames holds the whole stream to check it: {total:,} bytes is more than "
                f"the {MAX_HELD_BYTES:,} a role may hold"
            )


ROLES.update(
    {
        "zero-byte-sender": Role(
            "zero-byte-sender",
            {
                "port": _PORT,
                "connections": IntRule(1, 100_000),
                "messages": IntRule(1, 10**7),
                "msg_size": IntRule(8, 64 << 20),
                "burst": IntRule(1, 10**7),
            },
            zero_byte_sender,
            "dial N connections to the client and send sparse timestamped messages (zero-byte-recv)",
            dials=True,
        ),
        "echo-driver": Role(
            "echo-driver",
            {
                "port": _PORT,
                "connections": IntRule(1, 1024),
                "messages": IntRule(1, 10**7),
                "msg_size": IntRule(1, 16 << 20),
            },
            echo_driver,
            "dial N connections to the client's echo server and time round trips (async-send)",
            dials=True,
        ),
        "receive-frames": Role(
            "receive-frames",
            {
                "mode": ChoiceRule(FRAME_MODES),
                "messages": IntRule(1, 10**6),
                "msg_size": IntRule(1, 16 << 20),
                "rcvbuf": _BUFFER,
            },
            receive_frames,
            "receive a stream of numbered frames and check order and sizes (async-send)",
        ),
    }
)


def validate(role: Any, params: Any) -> tuple[Role, dict[str, Any]]:
    """The role and its checked parameters (missing ones are None); RoleError otherwise."""
    if not isinstance(role, str) or role not in ROLES:
        raise RoleError(f"unknown role {str(role)[:40]!r} (known: {', '.join(sorted(ROLES))})")
    spec = ROLES[role]
    if not isinstance(params, dict):
        raise RoleError("params must be an object")
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise RoleError(f"role {role} takes no parameter {unknown[0][:40]!r}")
    return spec, {name: rule.check(name, params.get(name)) for name, rule in spec.params.items()}


def role_listener(host: str, params: dict[str, Any], timeout_s: float) -> socket.socket:
    """The data listener of one role run: on ``host`` (the address the client reached), a
    kernel-chosen port, requested buffer sizes set before listen() so the accepted socket
    inherits them, accept() bounded by ``timeout_s``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        set_buffers(sock, params.get("rcvbuf"), params.get("sndbuf"))
        sock.bind((host, 0))
        sock.listen(1)
        sock.settimeout(timeout_s)
    except BaseException:
        sock.close()
        raise
    return sock


def rusage_report(usage: resource.struct_rusage) -> dict[str, Any]:
    """What wait4 said about a role's child, as JSON-able numbers."""
    return {
        "user_ns": int(usage.ru_utime * 1e9),
        "sys_ns": int(usage.ru_stime * 1e9),
        "ctx_vol": usage.ru_nvcsw,
        "ctx_invol": usage.ru_nivcsw,
        "minflt": usage.ru_minflt,
        "majflt": usage.ru_majflt,
        "maxrss_bytes": usage.ru_maxrss * 1024,
    }
