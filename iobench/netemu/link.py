"""A virtual second host on this machine: two network namespaces joined by an emulated link.

``VirtualLink(spec)`` is a context manager. On entry it checks the host (root, ``ip``, TUN,
netem or the relay extension; ``LinkUnsupported`` with one sentence otherwise), removes the
leftovers of dead iobench processes, makes a client and a peer namespace and emulates the link
between them:

- ``netem``: a veth pair, ``tc qdisc netem`` on both ends (delay RTT/2 each way, loss, rate),
  where the kernel has ``sch_netem`` (probed on the veth);
- ``tun-relay``: a TUN device in each namespace and a forked process running the C delay line
  (``_relay.c``) between them, where it has not. Packet level, so TCP sees the real RTT.

On exit, whatever happened (an exception, Ctrl-C, SIGTERM/SIGHUP raised by
``interrupts.termination_raises``), it kills every process in both namespaces, stops the relay
and deletes the namespaces, with those signals held off until it is done.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from iobench.errors import LinkUnsupported
from iobench.interrupts import termination_raises
from iobench.netemu import ns, relay
from iobench.netemu.window import tcp_facts

CLIENT_ADDRESS = "10.231.0.1"
PEER_ADDRESS = "10.231.0.2"
DEVICE = "iob0"
MTU = 1500
#: Default packets queued per direction (delay line + waiting for the wire), as netem's limit.
DEFAULT_QUEUE_PACKETS = 10_000
EMULATORS = ("auto", "netem", "tun-relay")
_SEQ = itertools.count()
_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@dataclass(frozen=True)
class LinkSpec:
    """The link to emulate: round-trip time in ns (split evenly between the two directions),
    rate in bits/s (None: as fast as the emulator goes), loss probability per packet per
    direction (0.001 = 0.1 %), the queue limit per direction in packets, the loss RNG seed."""

    rtt_ns: int
    rate_bps: int | None = None
    loss: float = 0.0
    queue_packets: int = DEFAULT_QUEUE_PACKETS
    seed: int = 1

    def __post_init__(self) -> None:
        if self.rtt_ns < 0:
            raise ValueError(f"rtt_ns must be >= 0, not {self.rtt_ns}")
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ValueError(f"rate_bps must be positive, not {self.rate_bps}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), not {self.loss}")
        if self.queue_packets < 1:
            raise ValueError(f"queue_packets must be >= 1, not {self.queue_packets}")


def check_support(emulator: str = "auto") -> None:
    """LinkUnsupported with the reason when this process cannot build a link here (before the
    netem probe, which needs a namespace: see VirtualLink)."""
    if emulator not in EMULATORS:
        raise ValueError(f"emulator must be one of {', '.join(EMULATORS)}, not {emulator!r}")
    if os.geteuid() != 0:
        raise LinkUnsupported(
            f"an emulated link needs root (network namespaces take CAP_SYS_ADMIN); running as uid {os.geteuid()}"
        )
    if ns.ip_command() is None:
        raise LinkUnsupported("an emulated link needs the ip command (iproute2), which is not installed")
    if emulator == "netem" and ns.tc_command() is None:
        raise LinkUnsupported("the netem emulator needs the tc command (iproute2), which is not installed")


class VirtualLink:
    """Two namespaces and the emulated link between them; see the module docstring.

    ``emulator``: ``auto`` (netem where the kernel has it, else the TUN relay), or force one.
    """

    def __init__(self, spec: LinkSpec, emulator: str = "auto") -> None:
        self.spec = spec
        self.emulator_wanted = emulator
        self.emulator: str | None = None
        self.client_ns, self.peer_ns = ns.names(os.getpid(), next(_SEQ))
        self.client_address = CLIENT_ADDRESS
        self.peer_address = PEER_ADDRESS
        self.relay_counters: dict[str, Any] | None = None
        self.offloads = "off"
        self._relay: relay.RelayProcess | None = None
        self._spawned: list[subprocess.Popen[Any]] = []
        self._stack: contextlib.ExitStack | None = None
        self._made: list[str] = []

    # -- building ------------------------------------------------------------------------
    def __enter__(self) -> VirtualLink:
        check_support(self.emulator_wanted)
        ns.cleanup_stale()
        stack = contextlib.ExitStack()
        stack.enter_context(termination_raises())
        self._stack = stack
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _ip(self, *args: str) -> None:
        ip = ns.ip_command()
        assert ip is not None
        ns.run([ip, *args])

    def _build(self) -> None:
        for name in (self.client_ns, self.peer_ns):
            self._ip("netns", "add", name)
            self._made.append(name)
            self._ip("-n", name, "link", "set", "lo", "up")
            self._quiet_ipv6(name)
        wanted = self.emulator_wanted
        if wanted in ("auto", "netem") and self._try_netem():
            self.emulator = "netem"
            return
        if wanted == "netem":
            raise LinkUnsupported(
                "the netem emulator needs sch_netem, which this kernel does not have "
                "(tc qdisc netem: Specified qdisc kind is unknown)"
            )
        if not os.path.exists(relay.TUN_PATH):
            raise LinkUnsupported(
                f"this kernel has no sch_netem and no TUN device ({relay.TUN_PATH}) for the relay"
            )
        if not relay.relay_built():
            raise LinkUnsupported(
                "this kernel has no sch_netem and the relay extension iobench.netemu._relay "
                "was not built (no C compiler at install time)"
            )
        self._build_relay()
        self.emulator = "tun-relay"

    def _quiet_ipv6(self, name: str) -> None:
        # No router solicitations or DAD packets over the link: only the traffic under test.
        with ns.entered(name), contextlib.suppress(OSError):
            with open("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w") as knob:
                knob.write("1")
            with open("/proc/sys/net/ipv6/conf/all/disable_ipv6", "w") as knob:
                knob.write("1")

    def _try_netem(self) -> bool:
        """A veth pair with netem on both ends; False (veth removed) when the kernel has no
        sch_netem or there is no tc."""
        tc = ns.tc_command()
        if tc is None:
            return False
        self._ip("-n", self.client_ns, "link", "add", DEVICE, "type", "veth", "peer", "name", DEVICE,
                 "netns", self.peer_ns)  # fmt: skip
        probe = ns.run([tc, "-n", self.client_ns, "qdisc", "add", "dev", DEVICE, "root", "netem", "delay", "0ms"],
                       check=False)  # fmt: skip
        if probe.returncode != 0:
            self._ip("-n", self.client_ns, "link", "del", DEVICE)
            return False
        spec = self.spec
        netem = ["netem", "delay", f"{spec.rtt_ns / 2 / 1000:.3f}us", "limit", str(spec.queue_packets)]
        if spec.loss:
            netem += ["loss", "random", f"{spec.loss * 100:.6f}%"]
        if spec.rate_bps:
            netem += ["rate", f"{spec.rate_bps}bit"]
        for name, address in ((self.client_ns, CLIENT_ADDRESS), (self.peer_ns, PEER_ADDRESS)):
            ns.run([tc, "-n", name, "qdisc", "replace", "dev", DEVICE, "root", *netem])
            self._ip("-n", name, "addr", "add", f"{address}/24", "dev", DEVICE)
            self._ip("-n", name, "link", "set", DEVICE, "mtu", str(MTU), "up")
            # Segmentation offloads would let netem delay and drop 64 KiB super-packets.
            done = ns.run([ns.ip_command() or "ip", "netns", "exec", name, "ethtool", "-K", DEVICE, "tso", "off",
                           "gso", "off", "gro", "off"], check=False)  # fmt: skip
            if done.returncode != 0:
                self.offloads = "on (ethtool missing or refused)"
        return True

    def _build_relay(self) -> None:
        fds = []
        try:
            for name in (self.client_ns, self.peer_ns):
                fds.append(relay.open_tun(name, DEVICE))
            for name, local, remote in (
                (self.client_ns, CLIENT_ADDRESS, PEER_ADDRESS),
                (self.peer_ns, PEER_ADDRESS, CLIENT_ADDRESS),
            ):
                self._ip("-n", name, "link", "set", DEVICE, "mtu", str(MTU), "txqueuelen", "1000", "up")
                self._ip("-n", name, "addr", "add", local, "peer", remote, "dev", DEVICE)
            spec = self.spec
            self._relay = relay.start(
                fds[0], fds[1], spec.rtt_ns // 2, spec.rate_bps or 0, spec.loss, spec.seed, spec.queue_packets
            )
        finally:
            for fd in fds:  # the relay holds the only copies: the devices die with it
                os.close(fd)

    # -- using ---------------------------------------------------------------------------
    def spawn(self, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the peer namespace (``subprocess.Popen`` arguments as usual).
        Teardown kills it if it is still running."""
        self._require_up()
        with ns.entered(self.peer_ns):
            process = subprocess.Popen(argv, **popen_kwargs)
        self._spawned.append(process)
        return process

    @contextlib.contextmanager
    def client(self) -> Iterator[None]:
        """Within the block the calling thread lives in the client namespace: sockets made there
        reach ``peer_address``. Sockets keep their namespace after the block."""
        self._require_up()
        with ns.entered(self.client_ns):
            yield

    @contextlib.contextmanager
    def peer(self) -> Iterator[None]:
        """Within the block the calling thread lives in the peer namespace."""
        self._require_up()
        with ns.entered(self.peer_ns):
            yield

    def _require_up(self) -> None:
        if self.emulator is None:
            raise RuntimeError("the link is not up (use VirtualLink as a context manager)")

    def relay_pid(self) -> int | None:
        """The relay child's pid (tun-relay only, while up)."""
        return self._relay.pid if self._relay is not None and self._relay.counters is None else None

    def describe(self) -> dict[str, Any]:
        """What the link is, for meta and rows: the emulation settings and the TCP facts of the
        client namespace (the peer's are the same: both are fresh namespaces)."""
        spec = self.spec
        out: dict[str, Any] = {
            "link_rtt_ns": spec.rtt_ns,
            "link_rate_bps": spec.rate_bps,
            "link_loss": spec.loss,
            "link_emulator": self.emulator,
            "link_queue_packets": spec.queue_packets,
            "link_mtu": MTU,
            "link_offloads": self.offloads,
            "link_client_address": self.client_address,
            "link_peer_address": self.peer_address,
        }
        if self.emulator is not None:
            with ns.entered(self.client_ns):
                facts = tcp_facts()
        else:
            facts = tcp_facts()
        out.update({f"link_{name.replace('.', '_')}": value for name, value in facts.items()})
        return out

    # -- tearing down --------------------------------------------------------------------
    def close(self) -> None:
        """Tear everything down (idempotent): processes in both namespaces, the relay, the
        namespaces. SIGINT/SIGTERM/SIGHUP wait until it is done, then act as usual."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
        errors: list[str] = []
        try:
            for process in self._spawned:
                _stop(process)
            self._spawned.clear()
            for name in self._made:
                ns.kill_all_in(name)
            if self._relay is not None:
                self.relay_counters = self._relay.stop()
                self._relay = None
            for name in list(self._made):
                try:
                    ns.delete(name)
                    self._made.remove(name)
                except ns.LinkError as exc:
                    errors.append(str(exc))
            self.emulator = None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            if self._stack is not None:
                stack, self._stack = self._stack, None
                stack.close()
        if errors:
            raise ns.LinkError("; ".join(errors))


def _stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, a second to go, then SIGKILL; always reaped."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(1.0)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
