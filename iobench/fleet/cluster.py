"""The cluster side of a fleet run: connect within a bounded time, choose the hosts, check
every host runs this iobench before any case, quiet the workers.

One host = one Dask worker. A real fleet runs one worker per host (``dask worker
tcp://SCHEDULER:8786 --name $(hostname) --nthreads 1``); the host's identity is the worker's
name, so two workers on one machine (``make fleet-demo``, the tests) are two "hosts".
``distributed`` is imported here only: a local ``iobench run`` never loads dask.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iobench import __version__
from iobench.errors import ClusterError

#: Seconds to reach the scheduler before giving up (--cluster-timeout).
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Host:
    """One measuring host: the worker's name (its identity in results) and address."""

    name: str
    address: str
    #: The IP the worker listens on (two workers sharing it share a machine).
    ip: str
    nthreads: int


def require_distributed() -> None:
    """ClusterError saying how to install Dask distributed when it is missing (found without
    importing it: the import starts a thread)."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise ClusterError(
            "--cluster needs Dask distributed: pip install 'iobench[fleet]' (here and on every worker host)"
        )


def _reachable(address: str, timeout_s: float) -> None:
    """ClusterError when nothing accepts TCP connections at a tcp:// address (refused,
    unroutable, a name that does not resolve) — found before dask is loaded, within the
    timeout. Other schemes (tls://...) are left to dask."""
    import socket

    scheme, _, rest = address.partition("://")
    if not rest:
        scheme, rest = "tcp", address
    if scheme != "tcp":
        return
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"--cluster: {address!r} is not a scheduler address (tcp://HOST:PORT)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s ({why})"
        ) from None


def _handshake(address: str, timeout_s: float) -> None:
    """Ask the scheduler who it is, bounded by ``timeout_s`` as a whole: Client's own timeout
    covers the TCP connect but not the first exchange, so a port that accepts and never answers
    would hang it."""
    import asyncio

    from distributed.core import rpc

    async def identity() -> Any:
        async with rpc(address, timeout=timeout_s) as scheduler:
            return await scheduler.identity()

    try:
        asyncio.run(asyncio.wait_for(identity(), timeout_s))
    except TimeoutError:
        raise TimeoutError(f"no answer within {timeout_s:g} s") from None


def connect(address: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """A Client of the scheduler at ``address``; ClusterError within about ``timeout_s`` (a
    TCP check, then dask's own handshake, each bounded by it) when it cannot be reached."""
    require_distributed()
    _reachable(address, timeout_s)
    import logging

    import distributed

    # A failed connect logs its own retries; the one-line error says it all.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    try:
        _handshake(address, timeout_s)
        return distributed.Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s ({why})"
        ) from None
    except Exception as exc:
        # bytes read as a frame length ask for gigabytes: MemoryError); never a traceback
        raise ClusterError(
            f"{address} does not answer as a Dask scheduler ({type(exc).__name__}: its reply is not Dask's protocol)"
        ) from None


def workers(client: Any) -> list[Host]:
    """Every worker the scheduler knows now, by name."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    hosts = [
        Host(str(w.get("name", address)), address, str(w.get("host", "")), int(w.get("nthreads", 1)))
        for address, w in info.items()
    ]
    return sorted(hosts, key=lambda h: h.name)


def live_addresses(client: Any) -> set[str]:
    """Addresses of the workers connected now (a worker that died has left this set)."""
    return set(client.scheduler_info(n_workers=-1)["workers"])


def choose_hosts(available: Sequence[Host], wanted: str | None) -> list[Host]:
    """The hosts ``--hosts`` names: comma-separated worker names, each possibly a pattern
    (``node-*``); None or empty: every worker. ClusterError names what matched nothing."""
    if not available:
        raise ClusterError("the Dask scheduler has no workers: start `dask worker SCHEDULER` on each host")
    if not wanted or not wanted.strip():
        chosen = list(available)
    else:
        chosen = []
        for pattern in (p.strip() for p in wanted.split(",") if p.strip()):
            matched = [h for h in available if fnmatch.fnmatchcase(h.name, pattern)]
            if not matched:
                names = ", ".join(h.name for h in available)
                raise ClusterError(f"--hosts: no worker is named {pattern!r} (workers: {names})")
            chosen += [h for h in matched if h not in chosen]
    names = [h.name for h in chosen]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ClusterError(f"two workers are named {duplicates[0]!r}: give each host's worker its own --name")
    return chosen


def _remote_version() -> str:
    """Runs on a worker (shipped by value: it must work where iobench is missing)."""
    import importlib

    return str(importlib.import_module("iobench").__version__)


def check_versions(client: Any, hosts: Sequence[Host]) -> None:
    """ClusterError, one line naming the host and both versions, when a chosen worker lacks
    iobench or runs another version. Runs before any case."""
    import cloudpickle

    # By value: a reference to this module would need iobench on the worker to unpickle.
    here = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(here)
    try:
        answers = client.run(_remote_version, workers=[h.address for h in hosts], on_error="return")
    finally:
        cloudpickle.unregister_pickle_by_value(here)
    for host in hosts:
        answer = answers.get(host.address)
        if isinstance(answer, BaseException):
            theirs = "none (iobench is not installed there)"
            if not isinstance(answer, ImportError):
                theirs = f"unknown ({type(answer).__name__}: {answer})"
        else:
            theirs = str(answer)
        if theirs != __version__:
            raise ClusterError(
                f"host {host.name} ({host.address}) runs iobench {theirs}; this client runs "
                f"iobench {__version__}: install the same version on every host"
            )


def quiet(client: Any, hosts: Sequence[Host]) -> dict[str, dict[str, Any]]:
    """Stop the profiler and system monitor of each chosen worker and its nanny; the settings
    in force per host name (Dask versions, config, what was stopped, what still runs)."""
    from iobench.fleet.task import quiet_worker

    addresses = [h.address for h in hosts]
    on_workers = client.run(quiet_worker, workers=addresses, on_error="return")
    try:
        on_nannies = client.run(quiet_worker, workers=addresses, nanny=True, on_error="return")
    except Exception:  # workers started with --no-nanny: nothing to quiet there
        on_nannies = {}
    settings = {}
    for host in hosts:
        mine = on_workers.get(host.address)
        record = mine if isinstance(mine, dict) else {"error": str(mine)}
        nanny = on_nannies.get(host.address)
        record["nanny_stopped"] = nanny.get("stopped", []) if isinstance(nanny, dict) else None
        settings[host.name] = record
    return settings


def shared_machines(hosts: Sequence[Host]) -> list[str]:
    """Warnings for workers that share an IP: their cases run at the same time on one machine."""
    by_ip: dict[str, list[str]] = {}
    for host in hosts:
        by_ip.setdefault(host.ip, []).append(host.name)
    return [
        f"workers {', '.join(names)} share the machine {ip}: their cases run at the same time there "
        "(a real fleet runs one worker per host)"
        for ip, names in by_ip.items()
        if len(names) > 1
    ]
