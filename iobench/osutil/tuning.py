"""Changing a system setting for one case, and always putting it back.

A case that changes a setting (a disk's read_ahead_kb, the transparent huge page mode,
vm.dirty_bytes) does it through a ``Tuning``: before the first change it makes a record
folder ``settings-XXXX`` under ``record_dir()`` (default /run/iobench; IOBENCH_SETTINGS_DIR
overrides it) holding an flock on ``.lock`` and, in ``changes.json``, what to write back. The
record is written (atomically, fsync'd) before the setting changes. ``restore()`` writes the
originals back in reverse order and removes the folder; the case's teardown calls it, so a
failed case, SIGINT and SIGTERM restore too. Only SIGKILL (or a power cut) leaves a record
behind: its lock is then free, and ``restore_abandoned()`` (the next run, ``iobench clean``)
writes its originals back. A record made before the last boot is only removed: a reboot has
already reset every setting it names.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iobench.osutil.sysfs import read_setting, selected

PREFIX = "settings-"
RECORD = "changes.json"
LOCK = ".lock"
_ENV = "IOBENCH_SETTINGS_DIR"


def record_dir() -> Path:
    """Where records of changed settings live (/run/iobench unless IOBENCH_SETTINGS_DIR)."""
    return Path(os.environ.get(_ENV) or "/run/iobench")


def boot_id() -> str:
    return read_setting("/proc/sys/kernel/random/boot_id") or ""


def tuning_refusal(what: str) -> str:
    """Why a setting may not be changed now ('' when it may): only root can write them."""
    if os.geteuid() != 0:
        return f"changing {what} needs root"
    return ""


@dataclass(frozen=True)
class Change:
    """One setting changed: ``path`` now holds ``value``; writing ``restore_value`` to
    ``restore_path`` puts things back (usually the same file and its original value)."""

    path: str
    value: str
    restore_path: str
    restore_value: str

    def describe(self) -> str:
        return f"{self.restore_path} = {self.restore_value}"


def write_setting(path: str | Path, value: str) -> None:
    """Write a sysfs or /proc/sys value (OSError as the kernel gives it: EINVAL, EACCES...).
    O_TRUNC: both accept it, and a plain file standing in for a setting (tests) needs it."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _write_record(folder: Path, changes: list[Change]) -> None:
    body = {"pid": os.getpid(), "boot_id": boot_id(), "changes": [c.__dict__ for c in changes]}
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".changes-")
    try:
        os.write(fd, json.dumps(body).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, folder / RECORD)
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _lock(folder: Path) -> int | None:
    """The folder's lock, taken; None when another process holds it."""
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Tuning:
    """The settings one case changed (see the module docstring). Use ``set`` to change, and
    ``restore`` (idempotent) to undo everything; ``changes`` lists what is in force now."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.changes: list[Change] = []
        self._folder: Path | None = None
        self._lock_fd: int | None = None

    def _record_folder(self) -> Path:
        if self._folder is None:
            parent = self.directory or record_dir()
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Locked under a name restore_abandoned ignores, then renamed: it never sees an
            # unlocked record folder of a live process.
            making = Path(tempfile.mkdtemp(prefix=".making-", dir=parent))
            try:
                self._lock_fd = _lock(making)
                folder = parent / (PREFIX + making.name.removeprefix(".making-"))
                os.rename(making, folder)
            except BaseException:
                self._release_lock()
                shutil.rmtree(making, ignore_errors=True)
                raise
            self._folder = folder
        return self._folder

    def set(
        self,
        path: str | Path,
        value: str,
        restore_path: str | Path | None = None,
        restore_value: str | None = None,
    ) -> bool:
        """Write ``value`` to ``path``, recorded first; False when it already held it. By
        default restoring writes the original value back to ``path``; a setting whose original
        cannot be written back as it is (vm.dirty_bytes 0 means "use dirty_ratio", and 0 is
        refused) names what to write instead."""
        original = selected(read_setting(path))
        if original is None:
            raise OSError(errno.ENOENT, f"{path}: no such setting")
        if original == value:
            return False
        change = Change(
            str(path), value, str(restore_path or path), original if restore_value is None else restore_value
        )
        folder = self._record_folder()
        _write_record(folder, [*self.changes, change])
        self.changes.append(change)
        try:
            write_setting(path, value)
        except BaseException:
            self.changes.pop()
            _write_record(folder, self.changes)
            raise
        return True

    def restore(self) -> list[str]:
        """Write every original back (last change first) and drop the record; returns the
        errors (a setting that could not be written back stays in the record)."""
        errors = []
        while self.changes:
            change = self.changes[-1]
            try:
                write_setting(change.restore_path, change.restore_value)
            except OSError as exc:
                errors.append(f"could not restore {change.describe()}: {exc.strerror or exc}")
                break
            self.changes.pop()
            if self._folder is not None:
                _write_record(self._folder, self.changes)
        if self.changes:
            self._release_lock()  # left for restore_abandoned (the next run, iobench clean)
        else:
            self._drop()
        return errors

    def _drop(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


@dataclass(frozen=True)
class Abandoned:
    """A record whose process is gone: the folder and the changes it names."""

    folder: Path
    changes: tuple[Change, ...]
    same_boot: bool


def _read_record(folder: Path) -> Abandoned:
    try:
        body: Any = json.loads((folder / RECORD).read_text())
        changes = tuple(Change(**c) for c in body.get("changes", ()))
        same_boot = body.get("boot_id") == boot_id()
    except (OSError, ValueError, TypeError, AttributeError):
        changes, same_boot = (), True
    return Abandoned(folder, changes, same_boot)


def abandoned(directory: Path | None = None) -> list[Abandoned]:
    """Records of changed settings whose process is gone (nobody holds their lock)."""
    parent = directory or record_dir()
    try:
        folders = sorted(p for p in parent.iterdir() if p.name.startswith(PREFIX) and p.is_dir())
    except OSError:
        return []
    found = []
    for folder in folders:
        with contextlib.suppress(OSError):
            fd = _lock(folder)
            if fd is None:
                continue
            os.close(fd)
            found.append(_read_record(folder))
    return found


def restore_abandoned(directory: Path | None = None) -> list[str]:
    """Write back what killed runs changed and left; returns one line per setting (restored,
    or why not). Records of an earlier boot are removed without writing anything."""
    lines = []
    for record in abandoned(directory):
        fd = _lock(record.folder)
        if fd is None:
            continue  # someone else took it meanwhile
        try:
            failed = False
            for change in reversed(record.changes):
                if not record.same_boot:
                    lines.append(f"{change.path}: left by a run before the last reboot; already reset")
                    continue
                try:
                    write_setting(change.restore_path, change.restore_value)
                    lines.append(f"restored {change.describe()} (changed by a run that was killed)")
                except OSError as exc:
                    failed = True
                    lines.append(f"could not restore {change.describe()}: {exc.strerror or exc}")
            if not failed:
                shutil.rmtree(record.folder, ignore_errors=True)
        finally:
            os.close(fd)
    return lines
