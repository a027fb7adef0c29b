"""Scratch folders: where a run's test files live, and what is left when a run was killed.

Each run makes one private folder ``iobench-XXXX`` (mkdtemp, mode 0700) under ``--dir`` and
holds a lock on it (``.lock``, flock) while it runs; the folder is removed however the run
ends. Only SIGKILL (or a power cut) leaves one behind: its lock is then free, so ``iobench
sysinfo`` can list it with its size and ``iobench clean`` (or the run's ``--resume``) can
remove it without ever touching the folder of a run that is still going.

System settings a case changed (``allow_tuning=yes``) are recorded the same way, under
/run/iobench (``iobench.osutil.tuning``): what a killed run left changed is listed by
``sysinfo`` and written back by ``clean`` and by the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from iobench.errors import TargetDirError
from iobench.osutil import tuning
from iobench.results import FolderLock, is_abandoned, owner_record

PREFIX = "iobench-"
OWNER = ".owner"


def check_target_dir(directory: Path) -> Path:
    """The folder scratch files go in must exist, be a folder, and accept a new sub-folder."""
    directory = Path(directory)
    try:
        if not directory.exists():
            raise TargetDirError(f"--dir {directory} does not exist")
        if not directory.is_dir():
            raise TargetDirError(f"--dir {directory} is not a folder")
    except OSError as exc:
        raise TargetDirError(f"--dir {directory} cannot be used: {exc.strerror}") from None
    return directory


def note_run(scratch: Path, run_path: Path) -> None:
    """Note which run a scratch folder belongs to (shown when it is found left over)."""
    with contextlib.suppress(OSError, ValueError):
        note = json.loads((scratch / OWNER).read_text())
        note["run"] = str(run_path)
        (scratch / OWNER).write_text(json.dumps(note))


@contextlib.contextmanager
def private_scratch(directory: Path, run_path: Path | None = None) -> Iterator[Path]:
    """A private (0700) folder made with mkdtemp under ``directory``, locked while in use and
    removed on exit. ``run_path`` is noted inside, so a leftover can be traced to its run."""
    try:
        scratch = Path(tempfile.mkdtemp(prefix=PREFIX, dir=directory))
    except OSError as exc:
        raise TargetDirError(f"cannot create a scratch folder in {directory}: {exc.strerror}") from None
    lock = FolderLock(scratch)
    try:
        lock.try_acquire()
        note = {**owner_record(), "run": str(run_path) if run_path else None}
        (scratch / OWNER).write_text(json.dumps(note))
        yield scratch
    finally:
        lock.release()
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class Leftover:
    """A scratch folder whose run is gone."""

    path: Path
    size_bytes: int
    run: str | None


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path, onerror=lambda _: None):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def leftovers(directory: Path) -> list[Leftover]:
    """Scratch folders under ``directory`` that no running iobench holds."""
    found = []
    try:
        candidates = sorted(p for p in Path(directory).iterdir() if p.name.startswith(PREFIX) and p.is_dir())
    except OSError:
        return []
    for path in candidates:
        if not is_abandoned(path):
            continue
        run = None
        with contextlib.suppress(OSError, ValueError, AttributeError):
            run = json.loads((path / OWNER).read_text()).get("run")
        found.append(Leftover(path, _size(path), run))
    return found


def remove(leftover: Leftover) -> None:
    """Delete a leftover scratch folder (re-checking that nobody took it meanwhile)."""
    if is_abandoned(leftover.path):
        shutil.rmtree(leftover.path, ignore_errors=True)


def left_settings() -> list[str]:
    """System settings that killed runs changed and left so (one line each; [] when none, or
    when this user cannot read the records: only root can change the settings)."""
    return [
        f"{change.path} left at {change.value} by a killed run (it was {change.restore_value})"
        for record in tuning.abandoned()
        if record.same_boot
        for change in record.changes
    ]


def restore_left_settings() -> list[str]:
    """Write back what killed runs changed (root only; one line per setting, [] otherwise)."""
    if os.geteuid() != 0:
        return []
    return tuning.restore_abandoned()
