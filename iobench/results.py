"""Run folders: written so that nothing finished is ever lost, read with one clear error.

A run is a folder ``<out>/<run_id>/``:

- ``cases.jsonl`` — the record of truth. One line per finished case (its summary and every
  repetition row), appended with a single write and fsync'd. A case exists once its line
  is complete; a line cut short by a crash is ignored (and cut off when the run resumes).
  A case recorded twice (a failed case run again) counts by its last line.
- ``results.csv`` — the rows of every recorded case, for people and diffs; rewritten
  atomically (temp file + fsync + rename) after each case; rebuilt from cases.jsonl when
  it is behind (a crash between the two writes).
- ``meta.json`` — the run: command, resolved config, host and target facts, owner, status,
  warnings, and the case summaries (a copy of cases.jsonl's). Rewritten atomically.
- ``results.parquet`` — typed columns, written when the run ends (pyarrow installed).
- ``columns.md`` — the data dictionary of the run's columns.
- ``.lock`` — held (flock) by the process writing the run; a run whose status says
  "running" while nobody holds its lock has crashed.

The three writes of a case's commit happen with SIGINT/SIGTERM/SIGHUP blocked, so a signal
lands before or after a commit, never inside it.

Schema version 1 runs (results.csv + meta.json, no cases.jsonl) are still read.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import math
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iobench import SCHEMA_VERSION, __version__
from iobench.errors import ResultsError, ResultsFullError, RunLockedError, TargetDirError
from iobench.metrics import COMMON_METRICS
from iobench.units import format_size

if TYPE_CHECKING:
    import pandas as pd

#: Columns every row carries, in this order; experiment parameters and metrics follow.
COMMON_COLUMNS = tuple(m.name for m in COMMON_METRICS if m.name != "t_start_ns")
#: Schema versions this iobench reads.
READABLE_SCHEMAS = (1, SCHEMA_VERSION)

META = "meta.json"
JOURNAL = "cases.jsonl"
CSV = "results.csv"
PARQUET = "results.parquet"
COLUMNS_DOC = "columns.md"
LOCK = ".lock"

#: Columns that must hold finite numbers in every repetition that ran.
_NUMERIC_COLUMNS = ("elapsed_ns", "cpu_ns", "bytes", "ops")
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


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


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP wait until the block ends, then are delivered as they came.

    Python runs signal handlers in the main thread whichever thread the kernel picked, so
    the handlers themselves are swapped for recorders (a signal mask would cover only the
    thread that set it, and a display thread may take the signal).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, _frame: arrived.append(signum)) for signum in _SIGNALS
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Sortable by time, unique across concurrent runs: ``20261121-170102-3fa9``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def boot_id() -> str | None:
    """This boot's id (a process id is only meaningful within one boot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def owner_record() -> dict[str, Any]:
    """Who writes a run: enough to tell whether that process still exists."""
    return {"pid": os.getpid(), "boot_id": boot_id(), "hostname": socket.gethostname(), "since": now_iso()}


# ------------------------------------------------------------------ locks


class FolderLock:
    """An exclusive flock on ``<folder>/.lock``, held while a process writes the folder."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if free; False when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self) -> None:
        self.release()


def is_abandoned(folder: Path) -> bool:
    """True when nobody holds the folder's lock (its writer is gone), or it has none."""
    lock = FolderLock(folder)
    try:
        taken = lock.try_acquire()
    except OSError:
        return False  # cannot tell (read-only): assume alive, never damage
    lock.release()
    return taken


# ------------------------------------------------------------------ reading


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


def _fail(path: Path, message: str) -> ResultsError:
    return ResultsError(f"{path}: {message}")


def _expect(meta: Mapping[str, Any], key: str, kinds: Any, path: Path, required: bool = False) -> None:
    if key not in meta:
        if required:
            raise _fail(path, f"field {key!r} is missing")
        return
    if not isinstance(meta[key], kinds):
        raise _fail(path, f"field {key!r} has the wrong type ({type(meta[key]).__name__})")


def validate_meta(meta: Any, path: Path) -> dict[str, Any]:
    """Check meta.json against the schema; ResultsError names the file and the field."""
    if not isinstance(meta, dict):
        raise _fail(path, "is not an iobench meta file (not a JSON object)")
    version = meta.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise ResultsError(
            f"{path.parent} has schema version {version!r}; this iobench reads versions "
            f"{', '.join(map(str, READABLE_SCHEMAS))}"
        )
    _expect(meta, "run_id", str, path)
    _expect(meta, "status", str, path)
    for key in ("host", "target", "config", "owner", "git", "clock_origin"):
        _expect(meta, key, (dict, type(None)), path)
    for key in ("cases", "warnings", "command", "resumed"):
        _expect(meta, key, list, path)
    for index, case in enumerate(meta.get("cases", [])):
        if not isinstance(case, dict) or not isinstance(case.get("case"), str):
            raise _fail(path, f"cases[{index}] is not a case record with a 'case' id")
    for index, warning in enumerate(meta.get("warnings", [])):
        if not isinstance(warning, str):
            raise _fail(path, f"warnings[{index}] is not text")
    return meta


def read_meta(folder: Path) -> dict[str, Any]:
    """meta.json of a run folder, validated."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(f"{folder} is not a run folder")
    path = folder / META
    if not path.is_file():
        raise ResultsError(f"{folder} has no meta.json; it is not an iobench run")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ResultsError(f"{path} cannot be read: {exc}") from None
    return validate_meta(meta, path)


@dataclass
class Journal:
    """cases.jsonl read back: the committed cases in order (last record per case wins)."""

    records: list[dict[str, Any]]
    #: Byte length of the complete lines; anything after it is a torn tail.
    good_bytes: int
    torn_bytes: int


def read_journal(folder: Path) -> Journal | None:
    """The committed cases of a run, or None when it has no cases.jsonl (schema 1)."""
    path = Path(folder) / JOURNAL
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ResultsError(f"{path} cannot be read: {exc.strerror}") from None
    by_case: dict[tuple[str, str], dict[str, Any]] = {}
    good = 0
    number = 0
    while good < len(data):
        end = data.find(b"\n", good)
        if end < 0:
            break  # the last write was cut short: that case was never committed
        line = data[good : end + 1]
        number += 1
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise ResultsError(f"{path}: line {number} is not a case record") from None
        summary = record.get("summary") if isinstance(record, dict) else None
        rows = record.get("rows") if isinstance(record, dict) else None
        if (
            not isinstance(summary, dict)
            or not isinstance(rows, list)
            or not all(isinstance(r, dict) for r in rows)
        ):
            raise ResultsError(f"{path}: line {number} is not a case record")
        if not isinstance(summary.get("case"), str) or not isinstance(summary.get("experiment"), str):
            raise ResultsError(f"{path}: line {number} lacks the case's experiment and id")
        key = (summary["experiment"], summary["case"])
        by_case.pop(key, None)  # a re-run replaces the earlier record and takes its place at the end
        by_case[key] = record
        good = end + 1
    return Journal(list(by_case.values()), good, len(data) - good)


def ordered_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Common columns first, then parameters and experiment metrics in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    first = [c for c in COMMON_COLUMNS if c in seen]
    return first + [c for c in seen if c not in first]


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def rows_to_csv(rows: list[dict[str, Any]]) -> bytes:
    """CSV of the rows with the union of their columns (no pandas: the run path stays light)."""
    columns = ordered_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return buffer.getvalue().encode()


def _frame_from_rows(rows: list[dict[str, Any]], path: Path) -> pd.DataFrame:
    """A DataFrame as results.csv would give it (the same parsing: CSV text through pandas)."""
    import pandas as pd

    if not rows:
        return pd.DataFrame(columns=list(COMMON_COLUMNS))
    return pd.read_csv(io.BytesIO(rows_to_csv(rows)))


def validate_frame(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Check the rows against the schema: the common identity columns, a parameter column
    for every parameter a case id names, and finite numbers where a repetition ran."""
    import pandas as pd

    for column in ("run_id", "experiment", "case", "rep", "status"):
        if column not in frame:
            raise _fail(path, f"lacks column {column!r}; it is not (complete) iobench output")
    ok = frame["status"] == "ok"
    # Rows of cases that did not run (unsupported, failed) carry no measurements: a run made
    # only of those has no elapsed_ns column, and is still a run.
    for column in ("elapsed_ns", "bytes") if ok.any() else ():
        if column not in frame:
            raise _fail(path, f"lacks column {column!r}; it is not (complete) iobench output")
    for column in _NUMERIC_COLUMNS:
        if column not in frame:
            continue
        values = pd.to_numeric(frame.loc[ok, column], errors="coerce")
        bad = values[values.isna() | ~values.map(lambda v: math.isfinite(v) if v == v else False)]
        if not bad.empty:
            row = int(bad.index[0])
            raise _fail(
                path, f"column {column!r} row {row + 1}: {frame.loc[row, column]!r} is not a finite number"
            )
    for case in frame.loc[ok, "case"].dropna().unique():
        for part in str(case).split(","):
            name = part.partition("=")[0]
            if name and name not in frame:
                raise _fail(path, f"lacks column {name!r}, a parameter of case {case!r}")
    return frame


def validate_records(rows: list[Mapping[str, Any]], path: Path) -> None:
    """``validate_frame`` for plain rows (the journal), without pandas: the same rules and
    messages, so a resume refuses what a report would."""
    if not rows:
        return
    present = set().union(*(row.keys() for row in rows))
    for column in ("experiment", "case", "rep", "status"):
        if column not in present:
            raise _fail(path, f"lacks column {column!r}; it is not (complete) iobench output")
    ok = [(number, row) for number, row in enumerate(rows, start=1) if row.get("status") == "ok"]
    for column in ("elapsed_ns", "bytes") if ok else ():
        if column not in present:
            raise _fail(path, f"lacks column {column!r}; it is not (complete) iobench output")
    for column in _NUMERIC_COLUMNS:
        if column not in present:
            continue
        for number, row in ok:
            value = row.get(column)
            finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not finite:
                raise _fail(path, f"column {column!r} row {number}: {value!r} is not a finite number")
    for _, row in ok:
        for name, _value in (part.partition("=")[::2] for part in str(row.get("case")).split(",")):
            if name and name not in present:
                raise _fail(path, f"lacks column {name!r}, a parameter of case {row.get('case')!r}")


def load_run(path: Path) -> ResultSet:
    """Load a run folder; ResultsError with one clear sentence when it is not a usable run.

    A run whose meta says "running" while no process holds its lock is reported "crashed"
    (and marked so on disk when the folder is writable).
    """
    path = Path(path)
    meta = read_meta(path)
    journal = read_journal(path)
    if journal is not None:
        rows = [
            {"run_id": meta.get("run_id", path.name), **row} for r in journal.records for row in r["rows"]
        ]
        meta["cases"] = [r["summary"] for r in journal.records]
        source = path / JOURNAL
        try:
            frame = _frame_from_rows(rows, source)
        except (ValueError, RecursionError) as exc:
            raise ResultsError(f"{source} cannot be read: {exc}") from None
    else:
        frame = _read_csv(path / CSV)
        source = path / CSV
    frame = validate_frame(frame, source)
    mark_if_crashed(path, meta)
    return ResultSet(frame=frame, meta=meta, path=path)


def _read_csv(csv_path: Path) -> pd.DataFrame:
    import pandas as pd

    if not csv_path.is_file():
        return pd.DataFrame(columns=list(COMMON_COLUMNS))
    try:
        return pd.read_csv(csv_path)
    except (OSError, ValueError, RecursionError) as exc:
        raise ResultsError(f"{csv_path} cannot be read: {exc}") from None


def mark_if_crashed(path: Path, meta: dict[str, Any]) -> bool:
    """A "running" run whose writer is gone becomes "crashed"; True when it was."""
    if meta.get("status") != "running" or not is_abandoned(path):
        return False
    meta["status"] = "crashed"
    meta.setdefault("error", "the process writing this run ended without finishing it (killed or crashed)")
    with contextlib.suppress(OSError):
        on_disk = json.loads((path / META).read_text())
        if on_disk.get("status") == "running":
            on_disk["status"] = "crashed"
            on_disk["error"] = meta["error"]
            atomic_write(path / META, json.dumps(on_disk, indent=2, default=str).encode())
    return True


def list_runs(out_dir: Path) -> list[Path]:
    """Run folders under ``out_dir`` (those with a meta.json), oldest first."""
    out_dir = Path(out_dir)
    try:
        if not out_dir.is_dir():
            return []
        return sorted(p for p in out_dir.iterdir() if (p / META).is_file())
    except OSError as exc:
        raise ResultsError(f"cannot list runs in {out_dir}: {exc.strerror}") from None


def load_runs(path: Path) -> list[ResultSet]:
    """A run folder, or a folder of runs (a baseline made of several runs)."""
    path = Path(path)
    try:
        if (path / META).is_file():
            return [load_run(path)]
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror}") from None
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


# ------------------------------------------------------------------ writing


def _space_error(folder: Path, needed: int, exc: OSError) -> ResultsFullError:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    return ResultsFullError(
        f"results folder {folder} is full ({exc.strerror}): the case's record needs "
        f"{format_size(needed)}, {format_size(free)} free; everything recorded before is kept — "
        f"free space and continue with: iobench run sweep --resume {folder}"
    )


class CaseRecords:
    """The finished cases of a run, as a sink holds them (``_records``: summary + rows each)."""

    run_id: str
    meta: dict[str, Any]
    _records: list[dict[str, Any]]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every recorded row (run_id included), in commit order."""
        return [{"run_id": self.run_id, **row} for record in self._records for row in record["rows"]]

    def finished_cases(self) -> set[tuple[str, str]]:
        """(experiment, case id) of every case already recorded."""
        return {(r["summary"]["experiment"], r["summary"]["case"]) for r in self._records}

    def warn(self, message: str) -> None:
        """Add a warning to the run (once)."""
        warnings = self.meta.setdefault("warnings", [])
        if message not in warnings:
            warnings.append(message)


class RunStore(CaseRecords):
    """Keeps a run folder current as cases finish: a new run (``create``) or one to resume.

    Holds the folder's lock from creation (or reopening) until ``close``.
    """

    def __init__(
        self, path: Path, meta: dict[str, Any], records: list[dict[str, Any]], lock: FolderLock
    ) -> None:
        self.path = path
        self.meta = meta
        self.run_id = str(meta["run_id"])
        self._records = records
        self._lock = lock

    # -- opening

    @classmethod
    def create(cls, out_dir: Path, meta: dict[str, Any]) -> RunStore:
        """A new run folder with a unique id under ``out_dir`` (concurrent runs never collide)."""
        out_dir = Path(out_dir)
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
        path = out_dir / run_id
        lock = FolderLock(path)
        try:
            lock.try_acquire()
            meta = {
                **meta,
                "schema_version": SCHEMA_VERSION,
                "iobench_version": __version__,
                "run_id": run_id,
                "started": now_iso(),
                "status": "running",
                "owner": owner_record(),
                "cases": [],
            }
            store = cls(path, meta, [], lock)
            (path / JOURNAL).touch()
            store._write_meta()
        except OSError as exc:
            lock.release()
            shutil.rmtree(path, ignore_errors=True)
            if exc.errno in _SPACE_ERRNOS:
                raise _space_error(out_dir, 4096, exc) from None
            raise TargetDirError(f"cannot write results in {out_dir}: {exc.strerror}") from None
        return store

    @classmethod
    def reopen(cls, path: Path, command: list[str]) -> RunStore:
        """An existing run, to be continued by this process.

        Refused while another process holds the run. Reconciles what is on disk: a torn
        last journal line is cut off (that case runs again); a schema-1 run's results.csv
        and meta are brought into a journal (cases listed in meta without rows run again;
        rows without a meta entry are kept and counted); failed cases run again.
        """
        path = Path(path)
        meta = read_meta(path)
        lock = FolderLock(path)
        try:
            acquired = lock.try_acquire()
        except OSError as exc:
            raise ResultsError(f"cannot resume {path}: {exc.strerror}") from None
        if not acquired:
            owner = meta.get("owner") or {}
            raise RunLockedError(
                f"{path} is being written by another iobench (pid {owner.get('pid', '?')} since "
                f"{owner.get('since', '?')}); wait for it or stop it first"
            )
        try:
            records, notes = cls._reconcile(path, meta)
            if not isinstance(meta.get("config"), dict) or not isinstance(
                meta["config"].get("entries"), list
            ):
                raise _fail(path / META, "field 'config' has no plan entries; this run cannot be resumed")
            meta["cases"] = [r["summary"] for r in records]
            meta.setdefault("resumed", []).append(
                {"at": now_iso(), "command": command, "previous_status": meta.get("status")}
            )
            meta["status"] = "running"
            meta["owner"] = owner_record()
            meta.pop("error", None)
            meta["schema_version"] = SCHEMA_VERSION
            store = cls(path, meta, records, lock)
            for note in notes:
                store.warn(note)
            store._rewrite_journal()
            store._write_views()
        except OSError as exc:
            lock.release()
            where = exc.filename2 or exc.filename or path
            raise ResultsError(f"cannot resume {path}: {exc.strerror}: {where}") from None
        except BaseException:
            lock.release()
            raise
        return store

    @staticmethod
    def _reconcile(path: Path, meta: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
        notes: list[str] = []
        journal = read_journal(path)
        if journal is not None:
            records = journal.records
            validate_records([row for record in records for row in record["rows"]], path / JOURNAL)
            if journal.torn_bytes:
                notes.append(
                    f"resume: dropped an unfinished case record ({journal.torn_bytes} bytes cut short by a crash)"
                )
        else:
            records = _records_from_v1(path, meta, notes)
        kept = [r for r in records if r["summary"].get("status") != "failed"]
        if len(kept) < len(records):
            notes.append(f"resume: {len(records) - len(kept)} failed case(s) run again")
        return kept, notes

    # -- writing

    def commit(self, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """Record one finished case: its journal line first (the commit), then the views.

        Signals wait until all three writes are done. On a full disk the journal is cut back
        to where it was and ResultsFullError says what is needed.
        """
        record = {
            "summary": summary,
            "rows": [{k: v for k, v in row.items() if k != "run_id"} for row in rows],
        }
        line = (json.dumps(record, default=str) + "\n").encode()
        with signals_deferred():
            self._append(line)
            self._records = [r for r in self._records if _key(r) != _key(record)] + [record]
            self.meta["cases"] = [r["summary"] for r in self._records]
            try:
                self._write_views()
            except OSError as exc:
                if exc.errno in _SPACE_ERRNOS:
                    raise _space_error(self.path, len(line), exc) from None
                raise

    def _append(self, line: bytes) -> None:
        journal = self.path / JOURNAL
        fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            start = os.fstat(fd).st_size
            try:
                written = 0
                while written < len(line):
                    written += os.write(fd, line[written:])
                os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, start)  # never leave half a record behind
                if exc.errno in _SPACE_ERRNOS:
                    raise _space_error(self.path, len(line), exc) from None
                raise
        finally:
            os.close(fd)

    def _rewrite_journal(self) -> None:
        data = b"".join((json.dumps(r, default=str) + "\n").encode() for r in self._records)
        atomic_write(self.path / JOURNAL, data)

    def _write_views(self) -> None:
        atomic_write(self.path / CSV, rows_to_csv(self.rows))
        self._write_meta()

    def _write_meta(self) -> None:
        text = json.dumps(self.meta, indent=2, sort_keys=False, default=str)
        atomic_write(self.path / META, text.encode())

    def save_meta(self) -> None:
        """Write meta.json now (a resumed run notes its new scratch folder before any case)."""
        with signals_deferred():
            self._write_meta()

    def write_extra(self, name: str, data: bytes) -> None:
        """Another file of the run (columns.md, results.parquet), written atomically."""
        atomic_write(self.path / name, data)

    def finish(self, status: str, error: str | None = None) -> None:
        """Mark the run complete, stopped (time budget), interrupted or failed."""
        self.meta["status"] = status
        self.meta["finished"] = now_iso()
        if error:
            self.meta["error"] = error
        self.save_meta()

    def close(self) -> None:
        """Release the run folder (other processes may resume or report it)."""
        self._lock.release()


def _key(record: Mapping[str, Any]) -> tuple[str, str]:
    return (record["summary"]["experiment"], record["summary"]["case"])


def _records_from_v1(path: Path, meta: dict[str, Any], notes: list[str]) -> list[dict[str, Any]]:
    """A schema-1 run (results.csv + meta.json) as journal records, reconciled."""
    frame = validate_frame(_read_csv(path / CSV), path / CSV)
    rows_by_case: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in frame.to_dict("records"):
        clean = {
            k: v for k, v in row.items() if k != "run_id" and not (isinstance(v, float) and math.isnan(v))
        }
        rows_by_case.setdefault((str(row["experiment"]), str(row["case"])), []).append(clean)
    records = []
    listed = set()
    for summary in meta.get("cases", []):
        key = (str(summary.get("experiment")), str(summary.get("case")))
        listed.add(key)
        if key not in rows_by_case:
            notes.append(f"resume: {key[0]} {key[1]} was listed as done without its rows; it runs again")
            continue
        records.append({"summary": summary, "rows": rows_by_case[key]})
    for key, rows in rows_by_case.items():
        if key not in listed:
            reps = [r for r in rows if r.get("status") == "ok"]
            summary = {"experiment": key[0], "case": key[1], "status": rows[0].get("status", "ok"),
                       "reps": len(reps), "recovered": True}  # fmt: skip
            notes.append(f"resume: kept {len(rows)} row(s) of {key[0]} {key[1]} that meta.json did not list")
            records.append({"summary": summary, "rows": rows})
    return records
