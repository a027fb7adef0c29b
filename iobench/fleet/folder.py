"""A fleet folder: ``<out>/fleet-<id>/`` with ``fleet.json`` and one normal run folder per host.

::

    results/fleet-20261122-101500-3fa9/
      fleet.json                 cluster, hosts (name -> worker address, run folder, status),
                                 Dask versions and worker settings, config, status
      20261122-101502-aa01/      host a's run: meta.json, cases.jsonl, results.csv... (any
      20261122-101502-bb02/      run command reads it: report, compare, iobench.load)
      .lock

Each host's run folder is written as a local run's is (cases.jsonl first, fsync'd, then the
views): crash-safe per case. ``fleet.json`` is rewritten atomically when the fleet's state
changes; it only maps hosts to folders, so nothing measured lives only there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from iobench import __version__
from iobench.errors import ResultsError, RunLockedError, TargetDirError
from iobench.results import FolderLock, atomic_write, new_run_id, now_iso, owner_record

FLEET = "fleet.json"
PREFIX = "fleet-"
SCHEMA = 1


def is_fleet(path: Path) -> bool:
    """Whether ``path`` is a fleet folder."""
    return (Path(path) / FLEET).is_file()


def read_fleet(path: Path) -> dict[str, Any]:
    """fleet.json, checked enough to find the hosts' runs; ResultsError otherwise."""
    file = Path(path) / FLEET
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ResultsError(f"{file} cannot be read: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "iobench-fleet":
        raise ResultsError(f"{file} is not an iobench fleet file")
    if data.get("schema_version") != SCHEMA:
        raise ResultsError(
            f"{path} has fleet schema {data.get('schema_version')!r}; this iobench reads {SCHEMA}"
        )
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not all(
        isinstance(h, dict) and isinstance(h.get("run"), str) for h in hosts.values()
    ):
        raise ResultsError(f"{file}: field 'hosts' does not map host names to run folders")
    return data


def host_runs(path: Path) -> dict[str, Path]:
    """Host name -> its run folder, for the hosts whose run folder exists."""
    data = read_fleet(path)
    runs = {name: Path(path) / host["run"] for name, host in data["hosts"].items()}
    return {name: run for name, run in runs.items() if (run / "meta.json").is_file()}


class FleetFolder:
    """The fleet folder a client writes: created or reopened, locked until ``close``."""

    def __init__(self, path: Path, data: dict[str, Any], lock: FolderLock) -> None:
        self.path = path
        self.data = data
        self._lock = lock

    @classmethod
    def create(cls, out_dir: Path, data: dict[str, Any]) -> FleetFolder:
        """A new ``fleet-<id>`` folder under ``out_dir``."""
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            fleet_id = new_run_id()
            path = out_dir / f"{PREFIX}{fleet_id}"
            path.mkdir()
        except OSError as exc:
            raise TargetDirError(f"cannot write results in {out_dir}: {exc.strerror}") from None
        lock = FolderLock(path)
        lock.try_acquire()
        full = {
            "kind": "iobench-fleet",
            "schema_version": SCHEMA,
            "fleet_id": fleet_id,
            "iobench_version": __version__,
            "started": now_iso(),
            "status": "running",
            "owner": owner_record(),
            "hosts": {},
            **data,
        }
        folder = cls(path, full, lock)
        folder.save()
        return folder

    @classmethod
    def reopen(cls, path: Path) -> FleetFolder:
        """An existing fleet folder, to be resumed; refused while another client holds it."""
        path = Path(path)
        data = read_fleet(path)
        lock = FolderLock(path)
        if not lock.try_acquire():
            owner = data.get("owner") or {}
            raise RunLockedError(
                f"{path} is being written by another iobench (pid {owner.get('pid', '?')} since "
                f"{owner.get('since', '?')}); wait for it or stop it first"
            )
        data["owner"] = owner_record()
        data.setdefault("resumed", []).append({"at": now_iso(), "previous_status": data.get("status")})
        data["status"] = "running"
        data.pop("error", None)
        return cls(path, data, lock)

    def save(self) -> None:
        """fleet.json now, atomically."""
        atomic_write(self.path / FLEET, json.dumps(self.data, indent=2, default=str).encode())

    def finish(self, status: str, error: str | None = None) -> None:
        self.data["status"] = status
        self.data["finished"] = now_iso()
        if error:
            self.data["error"] = error
        self.save()

    def close(self) -> None:
        self._lock.release()
