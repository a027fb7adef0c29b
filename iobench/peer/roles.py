"""The peer roles of the socket experiments: what the far end of a data socket does.

A role is a plain function of an accepted data socket and validated parameters. The same
loops serve the forked peer (``osutil.sockets.drain_to_eof`` in the experiments) and the
server, so both ends measure the same way. Parameters come from the network only through
``validate``: known names, exact JSON types, bounded sizes; no paths, no commands.
"""

from __future__ import annotations

import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iobench.osutil.sockets import drain_to_eof, effective_buffers, set_buffers


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


@dataclass(frozen=True)
class Role:
    """One peer role: its parameters and what it does with the accepted data socket."""

    name: str
    params: dict[str, SizeRule]
    #: (accepted socket, validated params) -> the report's ``result``; runs in the role's child.
    work: Callable[[socket.socket, dict[str, Any]], dict[str, Any]]
    help: str


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
