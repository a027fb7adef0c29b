"""``iobench serve``: the peer end of the socket experiments, for a client on another host.

One process listens for control connections. Each accepted client is handled in a forked
handler process (its own process group), up to ``max_clients`` at once; a client beyond that
gets a ``busy`` frame and is closed. A handler checks the handshake (same iobench version,
the shared token when one is set), then runs roles on request: for each, a data listener on
the address the client reached, a ``listening`` frame with its port, a forked role child that
accepts and runs the role (so wait4's CPU and rusage are the role's alone), ``ready`` once the
child waits for data, and a ``report`` with the role's result and rusage. Every read has a
deadline (``timeout_s``); any protocol error gets one ``error`` frame and the connection is
closed. Nothing from the network names a file or a command: only roles in ``roles.ROLES``
with validated parameters run.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iobench import __version__
from iobench.errors import ParamError
from iobench.osutil.children import Child, ChildError, fork_child
from iobench.osutil.sockets import set_blocking_timeouts
from iobench.peer import protocol
from iobench.peer.address import DEFAULT_PORT
from iobench.peer.protocol import ProtocolError
from iobench.peer.roles import Role, RoleError, dial, role_listener, rusage_report, validate

#: Seconds a whole frame, an idle gap between messages, or a role's accept may take.
DEFAULT_TIMEOUT_S = 30.0
#: A role may run this many timeouts at most (its socket reads already time out when idle).
ROLE_TIMEOUTS = 20
#: How long a full server waits for a finishing handler before it answers ``busy``: a client
#: that closed its connection has a handler that is exiting, not a client still served.
_EXIT_GRACE_S = 0.2


@dataclass(frozen=True)
class ServeConfig:
    """What ``iobench serve`` was asked for."""

    bind: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_clients: int = 1
    #: Stop when stdin reaches end of file: the process that started the server holds the
    #: pipe's other end, so its death (even SIGKILL) ends the server (fleet pairs, ``--pairs``).
    exit_on_stdin_eof: bool = False


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ParamError(f"--bind {host}: cannot resolve it ({exc})") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_config(config: ServeConfig) -> None:
    """ParamError (one line, exit 2) for a configuration ``serve`` refuses."""
    if not 0 <= config.port <= 65535:
        raise ParamError(f"--port {config.port}: give 0 (any free port) to 65535")
    if config.max_clients < 1:
        raise ParamError(f"--max-clients {config.max_clients}: give at least 1")
    if not config.timeout_s > 0:
        raise ParamError("--timeout: give a positive number of seconds")
    if config.token is not None and not config.token:
        raise ParamError("--token: give a non-empty token")
    if not is_loopback(config.bind) and not config.token:
        raise ParamError(
            f"--bind {config.bind} is reachable from other hosts: give --token T "
            "(clients pass the same with --peer-token or IOBENCH_PEER_TOKEN)"
        )


def host_facts() -> dict[str, Any]:
    """What the welcome frame says about the serving host."""
    uname = os.uname()
    # boot_id: a client on the same boot shares CLOCK_MONOTONIC (one-way latencies are valid).
    return {"hostname": uname.nodename, "kernel": uname.release, "cpus": os.cpu_count(), "boot_id": boot_id()}


def boot_id() -> str | None:
    """This boot's id: equal on both ends only when they run on one kernel (one clock)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as source:
            return source.read().strip()
    except OSError:
        return None


def _log(text: str) -> None:
    sys.stderr.write(f"iobench serve: {text}\n")
    sys.stderr.flush()


def _where(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Server:
    """The control listener and its handler processes."""

    def __init__(self, config: ServeConfig, log: Callable[[str], None] = _log) -> None:
        self.config = config
        self.log = log
        self.handlers: set[int] = set()
        family = socket.AF_INET6 if ":" in config.bind else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((config.bind, config.port))
            self.listener.listen(16)
            # The accept loop wakes up at least once a second to reap finished handlers.
            self.listener.settimeout(1.0)
        except BaseException:
            self.listener.close()
            raise

    @property
    def address(self) -> str:
        """HOST:PORT the server listens on (the port the kernel chose for --port 0)."""
        return _where(self.listener.getsockname())

    def serve_forever(self) -> None:
        """Accept clients until a signal (KeyboardInterrupt or Terminated) ends it, or, with
        ``exit_on_stdin_eof``, until stdin closes."""
        while True:
            self._reap()
            if self.config.exit_on_stdin_eof:
                gone, client_waiting = self._watch_stdin()
                if gone:
                    self.log("stdin closed: the process that started this server has gone; stopping")
                    return
                if not client_waiting:
                    continue
            try:
                conn, address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:  # EMFILE and the like: say it, keep serving
                self.log(f"accept failed: {exc}")
                time.sleep(0.1)
                continue
            try:
                self._dispatch(conn, address)
            finally:
                conn.close()

    def _watch_stdin(self) -> tuple[bool, bool]:
        """Wait (at most the accept loop's second) for a client or for stdin: (stdin is at
        EOF, a client waits to be accepted). Anything written to stdin is read and ignored."""
        stdin = sys.stdin.fileno()
        readable, _, _ = select.select([self.listener, stdin], [], [], 1.0)
        gone = stdin in readable and not os.read(stdin, 4096)
        return gone, self.listener in readable

    def _dispatch(self, conn: socket.socket, address: Any) -> None:
        if len(self.handlers) >= self.config.max_clients:
            self._reap(min(_EXIT_GRACE_S, self.config.timeout_s / 4))
        if len(self.handlers) >= self.config.max_clients:
            busy = f"the peer is busy with another client (it serves {self.config.max_clients} at a time)"
            with contextlib.suppress(OSError, ProtocolError):
                protocol.send(conn, {"type": "busy", "message": busy}, 1.0)
            self.log(f"{_where(address)}: busy, refused")
            return
        pid = os.fork()
        if pid == 0:  # the handler: never returns
            code = 0
            try:
                os.setpgid(0, 0)
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(signum, signal.SIG_DFL)
                self.listener.close()
                Handler(conn, address, self.config, self.log).run()
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        with contextlib.suppress(OSError):  # both sides set it: no race with killpg below
            os.setpgid(pid, pid)
        self.handlers.add(pid)

    def _reap(self, grace_s: float = 0.0) -> None:
        deadline = time.monotonic() + grace_s
        while True:
            for pid in list(self.handlers):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    self.handlers.discard(pid)
            if len(self.handlers) < self.config.max_clients or time.monotonic() >= deadline:
                return
            time.sleep(0.005)

    def close(self) -> None:
        """Kill every handler and its role child (their process groups), reap, stop listening."""
        for pid in list(self.handlers):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        for pid in list(self.handlers):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.handlers.clear()
        self.listener.close()


class Handler:
    """One client's control connection, in its own process."""

    def __init__(self, conn: socket.socket, address: Any, config: ServeConfig, log: Callable[[str], None]):
        self.conn = conn
        self.where = _where(address)
        self.config = config
        self.log = log

    def run(self) -> None:
        """Handshake, then roles until ``bye``, EOF, an error or a timeout."""
        timeout = self.config.timeout_s
        try:
            if not self._handshake():
                return
            while True:
                try:
                    message = protocol.receive(self.conn, timeout)
                except protocol.TruncatedFrame as exc:
                    if str(exc) == "the connection closed":
                        return  # a client that leaves between messages: nothing wrong
                    raise
                kind = protocol.expect(message, "run", "bye")["type"]
                if kind == "bye":
                    return
                try:
                    role, params = validate(message["role"], message["params"])
                except RoleError as exc:
                    self._refuse("params", str(exc))
                    return
                if not self._run_role(role, params):
                    return
        except ProtocolError as exc:
            self._refuse("protocol", str(exc))
        except OSError as exc:
            self.log(f"{self.where}: connection lost ({exc})")

    def _refuse(self, code: str, message: str) -> None:
        self.log(f"{self.where}: refused: {message}")
        with contextlib.suppress(OSError, ProtocolError):
            protocol.send(self.conn, {"type": "error", "code": code, "message": message}, 1.0)

    def _handshake(self) -> bool:
        hello = protocol.expect(protocol.receive(self.conn, self.config.timeout_s), "hello")
        if hello["version"] != __version__:
            self._refuse(
                "version",
                f"version mismatch: the client runs iobench {hello['version'][:40]}, "
                f"this server runs iobench {__version__}",
            )
            return False
        wanted = self.config.token
        given = hello["token"] or ""
        if wanted and not hmac.compare_digest(given.encode(), wanted.encode()):
            self._refuse("token", "wrong token" if given else "this server needs a token (--peer-token)")
            return False
        welcome = {"type": "welcome", "version": __version__, "host": host_facts()}
        protocol.send(self.conn, welcome, self.config.timeout_s)
        return True

    def _start_listening(self, role: Role, params: dict[str, Any]) -> Child | None:
        """A data listener, ``listening`` with its port, a child that accepts and runs the role
        (returned once it waits for data); None after an error frame."""
        timeout = self.config.timeout_s
        listener = role_listener(self.conn.getsockname()[0], params, timeout)
        try:
            protocol.send(self.conn, {"type": "listening", "port": listener.getsockname()[1]}, timeout)
            conn = self.conn

            def work() -> dict[str, Any]:
                conn.close()  # only the handler talks on the control connection
                data, _ = listener.accept()
                listener.close()
                data.settimeout(None)
                set_blocking_timeouts(data, timeout)
                return role.work(data, params)

            return self._fork(role, work)
        finally:
            listener.close()

    def _start_dialing(self, role: Role, params: dict[str, Any]) -> Child | None:
        """A child that connects to the client's own address (this connection's far end) at
        ``params["port"]``, from the address the client reached, and runs the role with that
        sync connection (returned once the role is set up); None after an error frame."""
        timeout = self.config.timeout_s
        conn, peer, local = self.conn, self.conn.getpeername(), self.conn.getsockname()

        def work() -> dict[str, Any]:
            conn.close()  # only the handler talks on the control connection
            sync = dial(peer, params["port"], local, timeout)
            # Go/ack bytes leave at once (as through a pipe), never held back by Nagle.
            sync.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sync.settimeout(None)
            set_blocking_timeouts(sync, timeout)
            return role.work(sync, params)

        return self._fork(role, work)

    def _fork(self, role: Role, work: Callable[[], dict[str, Any]]) -> Child | None:
        try:
            return fork_child(work, wait_ready=True)
        except ChildError as exc:
            self._refuse("role", f"role {role.name} did not start: {exc}")
            return None

    def _run_role(self, role: Role, params: dict[str, Any]) -> bool:
        """One role run; False when the connection must close (the client left, a failure)."""
        timeout = self.config.timeout_s
        child = self._start_dialing(role, params) if role.dials else self._start_listening(role, params)
        if child is None:
            return False
        try:
            protocol.send(self.conn, {"type": "ready"}, timeout)
            deadline = time.monotonic() + timeout * ROLE_TIMEOUTS
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._refuse("role", f"role {role.name} ran longer than {timeout * ROLE_TIMEOUTS:g} s")
                    return False
                readable, _, _ = select.select([child.result_fd, self.conn], [], [], remaining)
                if child.result_fd in readable:
                    break
                if self.conn in readable:  # the client spoke (or left) while the role runs
                    self._refuse("protocol", "a message arrived while a role was running")
                    return False
            try:
                result, usage = child.wait(timeout)
            except ChildError as exc:
                self._refuse("role", f"role {role.name} failed: {exc}")
                return False
            report = {
                "type": "report",
                "result": protocol.finite_numbers(result),
                "rusage": rusage_report(usage),
            }
            protocol.send(self.conn, report, timeout)
            return True
        finally:
            child.kill()


def serve(config: ServeConfig, announce: Callable[[str], None]) -> None:
    """Listen, call ``announce`` with the one stdout line, and serve until a signal.

    SIGINT/SIGTERM/SIGHUP (raised as KeyboardInterrupt/Terminated by the caller's handlers)
    end it: every handler and role child is killed and reaped before this returns.
    """
    check_config(config)
    try:
        server = Server(config)
    except OSError as exc:
        raise ParamError(f"cannot listen on {config.bind}:{config.port}: {exc.strerror or exc}") from None
    try:
        announce(f"iobench serve: listening on {server.address} (iobench {__version__})")
        server.serve_forever()
    finally:
        server.close()
