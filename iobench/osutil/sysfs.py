"""System settings the page-cache experiments depend on: read them, find the block device
under a folder, and read that device's request counters.

Changing a setting lives in ``iobench.osutil.tuning``; this module only reads.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

VM = Path("/proc/sys/vm")
THP = Path("/sys/kernel/mm/transparent_hugepage")
SECTOR = 512


def read_setting(path: Path | str) -> str | None:
    """The setting's text, stripped; None when it does not exist or cannot be read."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def selected(text: str | None) -> str | None:
    """The bracketed choice of a sysfs multiple-choice file: ``always [madvise] never`` ->
    ``madvise``; a plain value is returned as it is."""
    if text is None:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text


def thp_mode() -> str | None:
    """The transparent huge page mode in force (always, madvise, never), None without THP."""
    return selected(read_setting(THP / "enabled"))


def dirty_settings() -> dict[str, int | None]:
    """The four write-back thresholds (vm.dirty_*): a ratio is percent of dirtyable memory,
    a bytes value overrides its ratio when it is not 0."""
    out: dict[str, int | None] = {}
    for name in ("dirty_background_ratio", "dirty_ratio", "dirty_background_bytes", "dirty_bytes"):
        text = read_setting(VM / name)
        out[name] = int(text) if text is not None and text.isdigit() else None
    return out


def vmstat(names: tuple[str, ...] | None = None) -> dict[str, int]:
    """/proc/vmstat as name -> value (only ``names`` when given)."""
    out = {}
    with open("/proc/vmstat") as handle:
        for line in handle:
            name, _, value = line.partition(" ")
            if names is None or name in names:
                out[name] = int(value)
    return out


@dataclass(frozen=True)
class BlockDevice:
    """The block device a folder's filesystem sits on: ``sysfs`` is its own folder (a
    partition's or a disk's; its ``stat`` counts its requests) and ``disk`` the whole disk's,
    whose ``queue/read_ahead_kb`` sets the read-ahead of every filesystem on it."""

    name: str
    sysfs: Path
    disk: Path

    @property
    def read_ahead_path(self) -> Path:
        """/sys/block/DISK/queue/read_ahead_kb (the short spelling of the same file)."""
        return Path("/sys/block") / self.disk.name / "queue" / "read_ahead_kb"

    def read_ahead_kb(self) -> int | None:
        text = read_setting(self.read_ahead_path)
        return int(text) if text is not None and text.isdigit() else None

    def stat(self) -> DeviceStat:
        """The device's request counters now (Documentation/block/stat.rst)."""
        fields = (self.sysfs / "stat").read_text().split()
        return DeviceStat(int(fields[0]), int(fields[1]), int(fields[2]) * SECTOR)


@dataclass(frozen=True)
class DeviceStat:
    """Reads completed, reads merged and bytes read, as /sys/block/DEV/stat counts them."""

    reads: int
    merged: int
    read_bytes: int

    def __sub__(self, other: DeviceStat) -> DeviceStat:
        return DeviceStat(
            self.reads - other.reads, self.merged - other.merged, self.read_bytes - other.read_bytes
        )


def block_device(folder: Path | str) -> BlockDevice | None:
    """The block device under ``folder``, or None (tmpfs, overlay, a network filesystem: no
    device of their own)."""
    number = os.stat(folder).st_dev
    link = Path(f"/sys/dev/block/{os.major(number)}:{os.minor(number)}")
    try:
        own = link.resolve(strict=True)
    except OSError:
        return None
    disk = own if (own / "queue").is_dir() else own.parent
    if not (disk / "queue").is_dir():
        return None
    return BlockDevice(own.name, own, disk)


def shares_disk_with_root(device: BlockDevice) -> bool:
    """Whether the system's root filesystem is on the same disk (so a disk-wide setting such
    as read_ahead_kb changes the system's own IO too)."""
    root = None
    with contextlib.suppress(OSError):
        root = block_device("/")
    return root is not None and root.disk == device.disk
