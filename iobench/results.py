"""Result sets: one tidy row per repetition plus a meta.json, written atomically.

A run is a folder ``<out>/<run_id>/`` holding ``results.csv`` and ``meta.json``. Both are
rewritten (temp file + fsync + rename) after every finished case, so a run that is
interrupted, or whose machine dies, keeps every case it finished.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from iobench import SCHEMA_VERSION, __version__
from iobench.errors import ResultsError, TargetDirError

#: Columns every row carries, in this order; experiment parameters and metrics follow.
COMMON_COLUMNS = (
    "run_id",
    "experiment",
    "case",
    "rep",
    "status",
    "status_reason",
    "engine",
    "target_fs",
    "elapsed_ns",
    "cpu_ns",
    "user_ns",
    "sys_ns",
    "bytes",
    "ops",
    "syscalls_read",
    "syscalls_write",
    "disk_read_bytes",
    "disk_write_bytes",
    "ctx_vol",
    "ctx_invol",
    "minflt",
    "majflt",
)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never half."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Sortable by time, unique across concurrent runs: ``20261121-170102-3fa9``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Common columns first, then parameters and experiment metrics in first-seen order."""
    first = [c for c in COMMON_COLUMNS if c in frame.columns]
    rest = [c for c in frame.columns if c not in first]
    return frame[first + rest]


@dataclass
class ResultSet:
    """A loaded run: the tidy table and its meta."""

    frame: pd.DataFrame
    meta: dict[str, Any]
    path: Path | None = None

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id", self.path.name if self.path else "?"))

    def ok_rows(self) -> pd.DataFrame:
        """Rows of repetitions that ran (not unsupported or failed cases)."""
        return self.frame[self.frame["status"] == "ok"]


class RunWriter:
    """Keeps a run folder current as cases finish: a new run (``create``) or one to resume."""

    def __init__(self, path: Path, meta: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> None:
        self.path = path
        self.meta = meta
        self.run_id = str(meta["run_id"])
        self._rows: list[dict[str, Any]] = rows or []

    @classmethod
    def create(cls, out_dir: Path, meta: dict[str, Any]) -> RunWriter:
        """A new run folder with a unique id under ``out_dir`` (concurrent runs never collide)."""
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TargetDirError(f"cannot create results folder {out_dir}: {exc.strerror}") from None
        for _ in range(10):
            run_id = new_run_id()
            try:
                (out_dir / run_id).mkdir()
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise TargetDirError(f"cannot write results in {out_dir}: {exc.strerror}") from None
        else:
            raise TargetDirError(f"could not pick a free run id in {out_dir}")
        meta = {
            **meta,
            "schema_version": SCHEMA_VERSION,
            "iobench_version": __version__,
            "run_id": run_id,
            "started": now_iso(),
            "status": "running",
            "cases": [],
        }
        writer = cls(out_dir / run_id, meta)
        writer._write_meta()
        return writer

    @classmethod
    def reopen(cls, path: Path, command: list[str]) -> RunWriter:
        """An existing run, to be continued: its rows and cases are kept, except failed ones."""
        loaded = load_run(path)
        meta = loaded.meta
        failed = {c["case"] for c in meta.get("cases", []) if c.get("status") == "failed"}
        meta["cases"] = [c for c in meta.get("cases", []) if c["case"] not in failed]
        frame = loaded.frame[~loaded.frame["case"].isin(failed)] if len(loaded.frame) else loaded.frame
        rows = frame.to_dict("records")  # keep every column as written, run_id included
        meta.setdefault("resumed", []).append({"at": now_iso(), "command": command})
        meta["status"] = "running"
        meta.pop("error", None)
        writer = cls(loaded.path or path, meta, rows)
        writer._write_meta()
        return writer

    def finished_cases(self) -> set[tuple[str, str]]:
        """(experiment, case id) of every case already recorded."""
        return {(c["experiment"], c["case"]) for c in self.meta["cases"]}

    def _write_meta(self) -> None:
        text = json.dumps(self.meta, indent=2, sort_keys=False, default=str)
        atomic_write(self.path / "meta.json", text.encode())

    def add_case(self, rows: Iterable[dict[str, Any]], summary: dict[str, Any]) -> None:
        """Append one finished case's rows and summary; rewrites both files atomically."""
        for row in rows:
            self._rows.append({"run_id": self.run_id, **row})
        self.meta["cases"].append(summary)
        if self._rows:
            frame = order_columns(pd.DataFrame(self._rows))
            atomic_write(self.path / "results.csv", frame.to_csv(index=False).encode())
        self._write_meta()

    def warn(self, message: str) -> None:
        warnings = self.meta.setdefault("warnings", [])
        if message not in warnings:
            warnings.append(message)

    def finish(self, status: str, error: str | None = None) -> None:
        """Mark the run complete, stopped (time budget), interrupted or failed."""
        self.meta["status"] = status
        self.meta["finished"] = now_iso()
        if error:
            self.meta["error"] = error
        self._write_meta()

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self._rows


def load_run(path: Path) -> ResultSet:
    """Load a run folder; ResultsError with one clear sentence when it is not a usable run."""
    path = Path(path)
    if not path.is_dir():
        raise ResultsError(f"{path} is not a run folder")
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise ResultsError(f"{path} has no meta.json; it is not an iobench run")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{meta_path} cannot be read: {exc}") from None
    if not isinstance(meta, dict):
        raise ResultsError(f"{meta_path} is not an iobench meta file")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(
            f"{path} has schema version {meta.get('schema_version')!r}; "
            f"this iobench reads version {SCHEMA_VERSION}"
        )
    csv_path = path / "results.csv"
    if not csv_path.is_file():
        frame = pd.DataFrame(columns=list(COMMON_COLUMNS))
    else:
        try:
            frame = pd.read_csv(csv_path)
        except (OSError, ValueError) as exc:
            raise ResultsError(f"{csv_path} cannot be read: {exc}") from None
        missing = [c for c in ("experiment", "case", "rep", "status", "elapsed_ns") if c not in frame]
        if missing:
            raise ResultsError(f"{csv_path} lacks column {missing[0]!r}; it is not iobench output")
    return ResultSet(frame=frame, meta=meta, path=path)


def list_runs(out_dir: Path) -> list[Path]:
    """Run folders under ``out_dir`` (those with a meta.json), oldest first."""
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if (p / "meta.json").is_file())


def load_runs(path: Path) -> list[ResultSet]:
    """A run folder, or a folder of runs (a baseline made of several runs)."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return [load_run(path)]
    runs = list_runs(path)
    if not runs:
        raise ResultsError(f"{path} is neither an iobench run nor a folder of runs")
    return [load_run(run) for run in runs]


def latest_run(out_dir: Path) -> Path:
    """The newest run folder under ``out_dir``."""
    runs = list_runs(out_dir)
    if not runs:
        raise ResultsError(f"no runs in {out_dir}; run `iobench run sweep` first")
    return runs[-1]
