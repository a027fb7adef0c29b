"""``--peer netns``: the socket experiments against a virtual second host on this machine.

The emulated link is part of each case (``--rtt``, ``--rate``, ``--loss``: parameters every
experiment with a remote peer declares, so a sweep over RTTs is a sweep like any other, and a
figure draws throughput against it). For the cases that use a peer, the executor asks
``NetnsLinks`` for the peer of the case: the first case of a link builds it (two namespaces,
netem or the TUN relay: ``iobench.netemu``), starts ``iobench serve`` in the peer namespace,
measures the link itself (ping-pong RTT, a bulk transfer) and then hands out that server's
address; the case runs with this thread in the client namespace. The next case with the same
link reuses it; another link replaces it; ``close`` (always called by the executor) tears down
whatever is up. Where a link cannot be built (not root, no ``ip``, no TUN), every case that
needs one is ``unsupported`` with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from iobench.params import Kind, Param
from iobench.peer.address import NETNS, NetnsPeer, PeerAddress, PeerUnavailable

if TYPE_CHECKING:
    from iobench.netemu import VirtualLink


#: The emulated link, as parameters of every experiment whose peer can be remote (added by the
#: registry: ``experiments.register``). At their defaults they are left out of case ids, so
#: loopback cases keep the ids they always had.
LINK_PARAMS = (
    Param(
        "rtt",
        Kind.DURATION,
        (0,),
        "Round-trip time the emulated link adds, half each way (needs --peer netns; 0: none).",
        sweep=True,
        minimum=0,
        maximum=10 * 10**9,
        in_id_at_default=False,
    ),
    Param(
        "rate",
        Kind.BITRATE,
        (0,),
        "Rate of the emulated link in bits per second, e.g. 100mbit, 1gbit (needs --peer netns; "
        "0: as fast as the emulator goes).",
        sweep=True,
        minimum=0,
        maximum=100 * 10**9,
        in_id_at_default=False,
    ),
    Param(
        "loss",
        Kind.PERCENT,
        (0.0,),
        "Packets the emulated link drops at random, per direction (needs --peer netns).",
        sweep=True,
        minimum=0,
        maximum=50,
        in_id_at_default=False,
    ),
)
LINK_PARAM_NAMES = frozenset(p.name for p in LINK_PARAMS)
#: How long ``iobench serve`` may take to say it listens inside the namespace.
SERVE_START_S = 20.0
_LISTENING = re.compile(r"listening on (\S+):(\d+) ")


def link_values(case: dict[str, Any]) -> tuple[int, int, float]:
    """(rtt ns, rate bits/s, loss %) of a case; defaults where the case has none."""
    return (
        int(case.get("rtt") or 0),
        int(case.get("rate") or 0),
        float(case.get("loss") or 0.0),
    )


#: Slowest --rate accepted (bits/s): below it a 1500-byte packet takes longer than the link's
#: set-up and measuring are allowed, and the case could only time out.
MIN_RATE_BPS = 64_000


def link_problem(case: dict[str, Any]) -> str | None:
    """Why a case's link settings cannot make a usable link (None: they can)."""
    rate = int(case.get("rate") or 0)
    if 0 < rate < MIN_RATE_BPS:
        return f"--rate {rate}bit is below the slowest link iobench emulates (64kbit; 0 for no limit)"
    return None


def link_requested(case: dict[str, Any]) -> bool:
    """Whether a case asks for a link property other than the defaults."""
    return link_values(case) != (0, 0, 0.0)


class ServeFailed(RuntimeError):
    """``iobench serve`` did not start inside the peer namespace."""


class NetnsLinks:
    """The virtual host of one run: at most one link up at a time, reused while cases agree."""

    def __init__(self, peer: NetnsPeer) -> None:
        self.peer = peer
        self._key: tuple[int, int, float] | None = None
        self._link: VirtualLink | None = None
        self._address: PeerAddress | None = None
        self._columns: dict[str, Any] = {}
        self._facts: dict[str, Any] = {}
        self._refused: str | None = None
        #: Every link this run built: its facts, measurements and relay counters (meta.json).
        self.history: list[dict[str, Any]] = []

    def peer_for(self, case: dict[str, Any]) -> PeerAddress | PeerUnavailable:
        """The server address of the link ``case`` asks for, building it when needed."""
        from iobench.errors import LinkUnsupported

        if self._refused is not None:
            return PeerUnavailable(self._refused)
        key = link_values(case)
        if key != self._key:
            self.close()
            try:
                self._open(key)
            except LinkUnsupported as exc:
                self._refused = str(exc)
                return PeerUnavailable(self._refused)
            except Exception as exc:  # this link failed; the next case tries again
                return PeerUnavailable(f"the emulated link could not be built: {exc}", failed=True)
        assert self._address is not None
        return self._address

    @property
    def row_columns(self) -> dict[str, Any]:
        """What every row of a case on the current link records about it."""
        return dict(self._columns)

    @property
    def facts(self) -> dict[str, Any]:
        """The current link: emulator, settings, TCP facts of its namespaces, measurements."""
        return dict(self._facts)

    @contextlib.contextmanager
    def client(self) -> Iterator[None]:
        """This thread in the client namespace (sockets made inside live there)."""
        if self._link is None:
            yield
            return
        with self._link.client():
            yield

    def _open(self, key: tuple[int, int, float]) -> None:
        from iobench.netemu import LinkSpec, VirtualLink, measure_link

        rtt_ns, rate_bps, loss_pct = key
        link = VirtualLink(LinkSpec(rtt_ns, rate_bps or None, loss_pct / 100))
        link.__enter__()
        self._link, self._key = link, key
        try:
            port = _start_serve(link, self.peer.token)
            measured = measure_link(link)
        except BaseException:
            self.close()
            raise
        self._address = PeerAddress(link.peer_address, port, self.peer.token)
        described = link.describe()
        self._facts = {**described, **measured, "serve": f"{link.peer_address}:{port}"}
        self._columns = {
            "peer": NETNS,
            "link_rtt_ns": rtt_ns,
            "link_rate_bps": rate_bps,
            "link_loss": loss_pct,
            "link_emulator": described.get("link_emulator", ""),
            **{name: measured.get(name) for name in MEASURED_COLUMNS},
        }

    def close(self) -> None:
        """Tear the current link down (every process in its namespaces, the relay, the
        namespaces); its facts and relay counters go to ``history``."""
        link, self._link = self._link, None
        self._key, self._address = None, None
        if link is None:
            return
        try:
            link.close()
        finally:
            counters = getattr(link, "relay_counters", None)
            if self._facts:
                self.history.append({**self._facts, "relay_counters": counters})
            self._facts, self._columns = {}, {}


#: The link measurements each row carries (from ``netemu.measure_link``).
MEASURED_COLUMNS = ("link_rtt_measured_ns", "link_rtt_min_ns", "link_bulk_bytes_per_s")


def _start_serve(link: VirtualLink, token: str) -> int:
    """Start ``iobench serve`` in the peer namespace; the port it listens on."""
    # --exit-on-stdin-eof: stdin is a pipe only this process holds, so the server ends with it,
    # even when this process is killed outright (the namespaces then wait for `iobench clean`).
    argv = [
        sys.executable, "-m", "iobench", "serve", "--bind", link.peer_address, "--port", "0",
        "--exit-on-stdin-eof",
    ]  # fmt: skip
    env = {**os.environ, "IOBENCH_PEER_TOKEN": token}  # not in argv: ps would show it
    # Its stderr goes to an unnamed file: read only when it fails to start (never a full pipe).
    with tempfile.TemporaryFile() as errors:
        process = link.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        assert process.stdout is not None
        line = _first_line(process, SERVE_START_S)
        found = _LISTENING.search(line.decode(errors="replace"))
        if found is None:
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip().splitlines()
            why = said[-1] if said else f"no 'listening' line within {SERVE_START_S:g} s"
            raise ServeFailed(f"iobench serve did not start in the peer namespace: {why}")
    return int(found.group(2))


def _first_line(process: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """The first line ``process`` writes to stdout, or what it wrote before it exited (its
    stdout closed) or the time ran out."""
    from iobench.osutil.children import read_until

    assert process.stdout is not None
    line, _ = read_until(process.stdout.fileno(), time.monotonic() + timeout_s, stop=b"\n")
    return line
