"""Where the socket experiments' peer is: the values of ``--peer`` (one parser for all of them)
and what rides in a CaseSpec. A module of plain values, so the client, the server and the
virtual host (netns.py) can all use them without importing each other.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field

from iobench.errors import ParamError

#: The default control port. iperf3 took 5201; 7300 is not in /etc/services, is below the
#: ephemeral range (32768+) so the kernel never hands it to a client socket, and needs no root.
DEFAULT_PORT = 7300
#: The value of ``--peer`` that asks for the virtual host (peer/netns.py).
NETNS = "netns"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class PeerAddress:
    """Where a peer server listens; ``str()`` is the ``peer`` column's HOST:PORT."""

    host: str
    port: int = DEFAULT_PORT
    #: The shared token (never printed: left out of repr and str).
    token: str | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_peer(value: str | None, token: str | None = None) -> PeerAddress | NetnsPeer | None:
    """``--peer`` as an address: ``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address,
    or ``netns`` (a virtual host on this machine: ``peer.netns``); None or "" means no peer
    (everything on this host). ParamError names what is wrong."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text == NETNS:
        return NetnsPeer()
    host, port_text = text, None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ParamError(f"--peer {text}: an IPv6 address in brackets needs its ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ParamError(f"--peer {text}: expected [ADDRESS]:PORT")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = DEFAULT_PORT
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ParamError(f"--peer {text}: the port must be a number from 1 to 65535")
        port = int(port_text)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOSTNAME.match(host):
            raise ParamError(f"--peer {text}: {host!r} is not a host name or an IP address") from None
    if token is not None and not token:
        raise ParamError("--peer-token: give a non-empty token (or leave it out)")
    return PeerAddress(host, port, token)


@dataclass(frozen=True)
class NetnsPeer:
    """The run's peer is the virtual host; ``token`` is the run's own secret for its server."""

    token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False, compare=False)

    def __str__(self) -> str:
        return NETNS


@dataclass(frozen=True)
class PeerUnavailable:
    """The peer a case needs cannot exist here: the case is unsupported with ``reason``
    (``failed``: building it went wrong, and the case is recorded failed instead)."""

    reason: str
    failed: bool = False

    def __str__(self) -> str:
        return NETNS
