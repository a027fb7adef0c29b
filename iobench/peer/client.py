"""The client side of ``iobench serve``: where the peer is, and how an experiment uses it.

An experiment instance has a ``peer``: ``LOCAL_PEER`` (today's forked child on this host,
the default) or a ``RemotePeer`` (``--peer HOST[:PORT]``). With a RemotePeer the experiment
asks for a role (``start``), connects its data socket to the port the server answers with
(``RemoteRole.connect``, which returns once the role waits for data), times its transfer,
and collects the role's report (``RemoteRole.wait``). Every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
from typing import Any

from iobench import __version__
from iobench.errors import IobenchError, UnsupportedCase
from iobench.osutil.sockets import SOCKET_TIMEOUT_S, set_blocking_timeouts, set_buffers
from iobench.peer import protocol
from iobench.peer.address import NETNS, PeerAddress, PeerUnavailable
from iobench.peer.protocol import ProtocolError
from iobench.peer.server import boot_id


class PeerRefused(IobenchError):
    """The peer server could not be reached or refused this client (version, token, busy)."""


class PeerError(RuntimeError):
    """A role run on the peer failed, or the peer broke the protocol, during a case."""


class LocalPeer:
    """The peer as today: the experiment forks it on this host."""

    remote = False
    name = "fork"

    def check(self) -> None:
        """Always there."""

    def close(self) -> None:
        """Nothing to release."""


#: The default peer of every experiment instance.
LOCAL_PEER = LocalPeer()


class RemotePeer:
    """A control connection to ``iobench serve`` (opened on first use, one per case)."""

    remote = True

    def __init__(self, address: PeerAddress, timeout_s: float = SOCKET_TIMEOUT_S) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.name = str(address)
        self.host: dict[str, Any] = {}
        self._conn: socket.socket | None = None

    def check(self) -> None:
        """Reached at first use (``connect``), not before."""

    def connect(self, version: str = __version__) -> dict[str, Any]:
        """Open the control connection and shake hands; the server's host facts.

        PeerRefused (one line) when it cannot be reached, is busy, runs another version or
        wants another token."""
        if self._conn is not None:
            return self.host
        where = self.name
        try:
            conn = socket.create_connection((self.address.host, self.address.port), self.timeout_s)
        except OSError as exc:
            raise PeerRefused(f"cannot reach the peer {where}: {exc.strerror or exc}") from None
        try:
            protocol.send(
                conn, {"type": "hello", "version": version, "token": self.address.token}, self.timeout_s
            )
            answer = protocol.receive(conn, self.timeout_s)
        except ProtocolError as exc:
            conn.close()
            raise PeerRefused(f"the peer {where} does not answer as an 'iobench serve' ({exc})") from None
        except OSError as exc:
            conn.close()
            raise PeerRefused(f"the peer {where} did not complete the handshake: {exc}") from None
        if answer["type"] == "welcome":
            self._conn = conn
            self.host = answer["host"]
            return self.host
        conn.close()
        if answer["type"] == "busy":
            raise PeerRefused(f"the peer {where} is busy: {answer['message']}")
        if answer["type"] == "error" and answer["code"] == "version":
            raise PeerRefused(
                f"the peer {where} runs iobench {_server_version(answer['message'])}, "
                f"this client runs iobench {version}: run the same version on both ends"
            )
        if answer["type"] == "error":
            raise PeerRefused(f"the peer {where} refused this client: {answer['message']}")
        raise PeerRefused(f"the peer {where} answered the handshake with {answer['type']}")

    def _control(self) -> socket.socket:
        try:
            self.connect()
        except PeerRefused as exc:
            # Past the run's first handshake a peer that went away fails this case, not the run.
            raise PeerError(str(exc)) from None
        assert self._conn is not None
        return self._conn

    def _live(self) -> socket.socket:
        """The open control connection of a role in progress (PeerError once it closed)."""
        if self._conn is None:
            raise PeerError(f"the control connection to the peer {self.name} is closed")
        return self._conn

    def start(self, role: str, params: dict[str, Any]) -> RemoteRole:
        """Ask the server to run ``role``; returns once it listens for the data connection."""
        conn = self._control()
        answer = self._exchange(conn, {"type": "run", "role": role, "params": params}, "listening")
        return RemoteRole(self, answer["port"])

    def dial(self, role: str, params: dict[str, Any]) -> RemoteRole:
        """Ask the server to run a role that connects to this host (``params["port"]``, on
        the address ``listener`` bound); returns at once: accept its connections with
        ``RemoteRole.accept``, then ``RemoteRole.ready``."""
        conn = self._control()
        try:
            protocol.send(conn, {"type": "run", "role": role, "params": params}, self.timeout_s)
        except (ProtocolError, OSError) as exc:
            self.close()
            raise PeerError(f"the peer {self.name} stopped answering: {exc}") from None
        return RemoteRole(self, params["port"])

    def listener(self, backlog: int) -> socket.socket:
        """A TCP listener for a dialing role: on this end's address of the control connection
        (the address the peer reached us from, so it can reach it back), a kernel-chosen port,
        accept() bounded by the peer's timeout."""
        local = self._control().getsockname()
        family = socket.AF_INET6 if len(local) == 4 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((local[0], 0, *local[2:]))
            sock.listen(backlog)
            sock.settimeout(self.timeout_s)
        except BaseException:
            sock.close()
            raise
        return sock

    def same_clock(self) -> bool:
        """Whether the peer runs on this kernel (same boot id): only then does one
        CLOCK_MONOTONIC stamp from the peer mean the same instant here."""
        self.connect()
        theirs = self.host.get("boot_id")
        return bool(theirs) and theirs == boot_id()

    def _exchange(self, conn: socket.socket, message: dict[str, Any] | None, wanted: str) -> dict[str, Any]:
        try:
            if message is not None:
                protocol.send(conn, message, self.timeout_s)
            answer = protocol.receive(conn, self.timeout_s)
        except (ProtocolError, OSError) as exc:
            self.close()
            raise PeerError(f"the peer {self.name} stopped answering: {exc}") from None
        if answer["type"] == "error":
            self.close()
            raise PeerError(f"the peer {self.name} refused: {answer['message']}")
        if answer["type"] != wanted:
            self.close()
            raise PeerError(f"the peer {self.name} sent {answer['type']} where {wanted} was due")
        return answer

    def close(self) -> None:
        """Say goodbye and close the control connection (the server kills a running role)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError, ProtocolError):
                protocol.send(conn, {"type": "bye"}, 1.0)
            conn.close()


def _server_version(message: str) -> str:
    """The server's version out of its mismatch message (``this server runs iobench X``)."""
    marker = "this server runs iobench "
    return message.split(marker, 1)[1].strip() if marker in message else "another version"


class RemoteRole:
    """One role run on the peer: its data port, then its report."""

    def __init__(self, peer: RemotePeer, port: int) -> None:
        self.peer = peer
        self.port = port
        self._ready = False

    def connect(self, rcvbuf: int | None = None, sndbuf: int | None = None) -> socket.socket:
        """The data socket (buffers requested before connect()), returned once the role's
        child accepted it and waits for data: nothing of the peer's start-up is left to time."""
        address = self.peer.address
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        if family == socket.AF_INET and not _is_ip(address.host):
            family = socket.getaddrinfo(address.host, self.port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            set_buffers(sock, rcvbuf, sndbuf)
            sock.settimeout(self.peer.timeout_s)
            sock.connect((address.host, self.port))
            self.peer._exchange(self.peer._live(), None, "ready")
        except BaseException:
            sock.close()
            raise
        return sock

    def accept(self, listener: socket.socket, count: int) -> list[socket.socket]:
        """``count`` connections a dialing role made to ``listener``, in the order it made them
        (blocking sockets with the peer's timeout as kernel send/receive timeouts). Each waits at
        most the peer's timeout; an error frame from the peer (the role failed) ends it with
        PeerError at once. Connections from other addresses than the peer's are closed."""
        conn = self.peer._live()
        expected = ipaddress.ip_address(conn.getpeername()[0].split("%")[0])
        timeout = self.peer.timeout_s
        accepted: list[socket.socket] = []
        try:
            while len(accepted) < count:
                readable, _, _ = select.select([listener, conn], [], [], timeout)
                if not readable:
                    self.peer.close()  # abandon the role: the server kills it
                    raise PeerError(
                        f"the peer {self.peer.name} opened {len(accepted)} of {count} connections "
                        f"within {timeout:g} s"
                    )
                if conn in readable:
                    # ``ready`` may come before we accepted everything (the kernel completes
                    # connections in the backlog); an error frame (the role failed) raises.
                    self.peer._exchange(conn, None, "ready")
                    if self._ready:
                        raise PeerError(f"the peer {self.peer.name} sent ready twice")
                    self._ready = True
                if listener not in readable:
                    continue
                sock, address = listener.accept()
                if ipaddress.ip_address(address[0].split("%")[0]) != expected:
                    sock.close()  # not the peer: a stranger on a non-loopback address
                    continue
                sock.settimeout(None)
                set_blocking_timeouts(sock, timeout)
                accepted.append(sock)
        except BaseException:
            for sock in accepted:
                sock.close()
            raise
        return accepted

    def accept_sync(self, listener: socket.socket) -> socket.socket:
        """A dialing role's first connection, its sync connection, with TCP_NODELAY: a go or
        ack byte leaves at once, as it would through a pipe (Nagle would hold one back while
        the previous byte waits for a delayed ACK)."""
        (sync,) = self.accept(listener, 1)
        sync.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sync

    def ready(self) -> None:
        """Wait for a dialing role's ``ready`` (it made its connections and waits for its go)."""
        if not self._ready:
            self.peer._exchange(self.peer._live(), None, "ready")
            self._ready = True

    def wait(self, timeout_s: float = SOCKET_TIMEOUT_S) -> tuple[dict[str, Any], dict[str, Any]]:
        """The role's result and its child's rusage (user_ns, sys_ns, ctx_vol, ...)."""
        conn = self.peer._live()
        conn_timeout, self.peer.timeout_s = self.peer.timeout_s, timeout_s
        try:
            answer = self.peer._exchange(conn, None, "report")
        finally:
            self.peer.timeout_s = conn_timeout
        return answer["result"], answer["rusage"]

    def kill(self) -> None:
        """Abandon the role: closing the control connection makes the server kill it."""
        self.peer.close()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class UnavailablePeer:
    """The peer of a case that cannot have one here (``--peer netns`` without root...):
    ``check`` makes the case unsupported with the reason before anything is set up."""

    remote = True

    def __init__(self, reason: str, failed: bool = False, name: str = NETNS) -> None:
        self.reason = reason
        self.failed = failed
        self.name = name

    def check(self) -> None:
        if self.failed:
            raise PeerError(self.reason)
        raise UnsupportedCase(self.reason)

    def close(self) -> None:
        """Nothing to release."""


def peer_for(address: PeerAddress | PeerUnavailable | None) -> LocalPeer | RemotePeer | UnavailablePeer:
    """The peer object an experiment instance gets for a case."""
    if address is None:
        return LOCAL_PEER
    if isinstance(address, PeerUnavailable):
        return UnavailablePeer(address.reason, address.failed)
    return RemotePeer(address)
