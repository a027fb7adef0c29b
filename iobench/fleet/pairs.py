"""Paired fleet runs (``--pairs CLIENT:PEER,...``): the socket experiments between two hosts.

For each pair, before any case, a task on the PEER host's worker starts ``iobench serve`` there
(bound to that worker's IP, a kernel-chosen port, a fresh random token); the CLIENT host then
runs the plan as any fleet host does, its peer cases against that serve (``CaseSpec.peer``,
as ``--peer`` gives a local run). A peer host runs no cases of its own: it is busy being a
peer. When the run ends, however it ends, a task on each peer host stops its serve; a serve
whose worker dies stops by itself (``task.start_serve``).

Nothing here imports ``distributed``: the client object comes from ``cluster.connect``.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from iobench.errors import ClusterError, ParamError
from iobench.fleet.cluster import Host, live_addresses
from iobench.fleet.task import SERVE_START_S, SERVE_STOP_S
from iobench.peer.address import PeerAddress, parse_peer

#: Seconds, beyond the serve's own bounds, that the start and stop tasks may take to come back
#: (scheduling, a worker importing iobench for the first time).
_TASK_SLACK_S = 30.0
#: How often a start is checked for an answer, or for its worker having left (seconds).
_POLL_S = 0.1


@dataclass(frozen=True)
class Pair:
    """One pair, by worker names: ``client`` runs the cases, ``peer`` serves their peer end."""

    client: str
    peer: str

    def __str__(self) -> str:
        return f"{self.client}:{self.peer}"


def parse_pairs(text: str | None) -> list[Pair]:
    """``--pairs`` as pairs of worker names (``h1:h2,h3:h4``); [] for None or "".

    ParamError (one line) for a malformed list, a host paired with itself, or a host in two
    pairs (a host is one pair's client or one pair's peer, never both, never twice)."""
    if text is None or not text.strip():
        return []
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        client, colon, peer = item.partition(":")
        client, peer = client.strip(), peer.strip()
        if not colon or not client or not peer or ":" in peer:
            raise ParamError(
                f"--pairs: {item!r} is not CLIENT:PEER (give CLIENT:PEER[,CLIENT:PEER...], worker names)"
            )
        if client == peer:
            raise ParamError(f"--pairs: {item}: a host cannot be its own peer")
        pairs.append(Pair(client, peer))
    seen: dict[str, Pair] = {}
    for pair in pairs:
        for name in (pair.client, pair.peer):
            if name in seen:
                raise ParamError(
                    f"--pairs: host {name} is in two pairs ({seen[name]}, {pair}): "
                    "a host is one pair's client or one pair's peer"
                )
            seen[name] = pair
    return pairs


def recorded_pairs(fleet: dict[str, Any]) -> list[Pair]:
    """The pairs a fleet.json records (a resumed paired run starts their serves again)."""
    pairs = fleet.get("pairs") or []
    return [Pair(str(p["client"]), str(p["peer"])) for p in pairs if isinstance(p, dict)]


def resolve_pairs(available: Sequence[Host], pairs: Sequence[Pair]) -> list[tuple[Host, Host]]:
    """The pairs' workers, (client, peer) each; ClusterError naming a name no worker has."""
    by_name = {host.name: host for host in available}
    for pair in pairs:
        for name in (pair.client, pair.peer):
            if name not in by_name:
                names = ", ".join(by_name) or "none"
                raise ClusterError(f"--pairs {pair}: no worker is named {name!r} (workers: {names})")
    return [(by_name[pair.client], by_name[pair.peer]) for pair in pairs]


@dataclass(frozen=True)
class ServedPeer:
    """A pair whose serve listens: where (with its token) and which worker runs it."""

    client: Host
    peer: Host
    address: PeerAddress
    pid: int
    #: The serving host's facts (hostname, kernel, cpus), as a local --peer run records them.
    facts: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """What meta.json and fleet.json say about it (never the token)."""
        return {"address": str(self.address), "host": self.facts, "peer_host": self.peer.name,
                "worker": self.peer.address, "pid": self.pid}  # fmt: skip


@contextlib.contextmanager
def serving(client: Any, pairs: Sequence[tuple[Host, Host]]) -> Iterator[dict[str, ServedPeer]]:
    """Start every pair's serve (all at once), yield client host name -> ServedPeer, and stop
    them all on the way out: after the run, a failure, Ctrl-C or SIGTERM. ClusterError when a
    serve does not start (those that did are stopped first)."""
    from iobench.fleet.task import lease_serve

    started: dict[str, Host] = {}  # serve id -> its peer host: every id is stopped at the end
    try:
        futures = {}
        for client_host, peer_host in pairs:
            serve_id = uuid.uuid4().hex
            token = secrets.token_urlsafe(24)
            started[serve_id] = peer_host
            # The future is kept until the end: while it is held, the serve's lease stays on
            # the worker; if this client dies, Dask drops the lease and the serve stops.
            future = client.submit(
                lease_serve, serve_id, peer_host.ip, token,
                key=f"iobench-serve-{peer_host.name}-{serve_id[:8]}",
                workers=[peer_host.address], allow_other_workers=False, pure=False, retries=0,
            )  # fmt: skip
            futures[client_host.name] = (future, client_host, peer_host, token)
        served = {}
        for name, (future, client_host, peer_host, token) in futures.items():
            answer = _answer(client, future, peer_host, SERVE_START_S + _TASK_SLACK_S)
            if "error" in answer:
                raise ClusterError(
                    f"host {peer_host.name}: the peer of {name} did not start: {answer['error']}"
                )
            address = parse_peer(str(answer["address"]), token)
            assert isinstance(address, PeerAddress)
            served[name] = ServedPeer(
                client_host, peer_host, address, int(answer["pid"]), answer.get("host") or {}
            )
        yield served
    finally:
        stop_serves(client, started)


def _answer(client: Any, future: Any, host: Host, timeout_s: float) -> dict[str, Any]:
    """A start task's answer; ``{"error": ...}`` when the task failed, took too long, or its
    worker left the cluster (a task pinned to a lost worker would wait forever)."""
    deadline = time.monotonic() + timeout_s
    while not future.done():
        if time.monotonic() > deadline:
            return {"error": f"no answer within {timeout_s:g} s"}
        if host.address not in live_addresses(client):
            return {"error": f"its worker {host.address} left the cluster"}
        time.sleep(_POLL_S)
    try:
        lease = future.result()
    except Exception as exc:  # a lost worker, a timeout: the pair cannot run
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"error": f"{type(exc).__name__}: {first}".rstrip(": ")}
    answer = getattr(lease, "answer", None)
    return answer if isinstance(answer, dict) else {"error": f"unexpected answer {lease!r}"}


def stop_serves(client: Any, started: dict[str, Host]) -> None:
    """Stop each serve id on its host, all at once; a host that is gone took its serve with it
    (the serve stops when its worker's end of its stdin closes).

    The stop tasks are fire-and-forget: they run even when this client leaves before they
    finish (a second Ctrl-C while waiting for them stops only the waiting)."""
    import distributed

    from iobench.fleet.task import stop_serve

    try:
        live = live_addresses(client)
    except Exception:  # the scheduler is gone: so are the tasks that could stop anything
        return
    futures = []
    for serve_id, host in started.items():
        if host.address not in live:  # a task pinned to a lost worker would wait forever
            continue
        with contextlib.suppress(Exception):
            future = client.submit(
                stop_serve, serve_id, key=f"iobench-stop-{host.name}-{serve_id[:8]}",
                workers=[host.address], allow_other_workers=False, pure=False, retries=0,
            )  # fmt: skip
            futures.append(future)
    with contextlib.suppress(Exception):
        distributed.fire_and_forget(futures)
    for future in futures:
        with contextlib.suppress(Exception):
            future.result(timeout=SERVE_STOP_S * 2 + _TASK_SLACK_S)
