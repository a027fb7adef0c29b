"""readahead: what read-ahead asks of the disk, counted by the block layer (seed 003)."""

from __future__ import annotations

import math
import os
from array import array
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.errors import UnsupportedCase
from iobench.experiments import _settings, register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.loops.buffers import page_aligned_buffer
from iobench.metrics import CACHE_VERIFIED, RESIDENT_BEFORE, Metric
from iobench.osutil import libc, sysfs, tuning
from iobench.osutil.files import create_random_file
from iobench.params import choice_param, size_param
from iobench.units import parse_size

if TYPE_CHECKING:
    import pandas as pd

MIB = 1 << 20
#: read_ahead settings a case may ask for ("found": leave the disk's as it is).
READ_AHEAD_CHOICES = ("found", "0", "16KiB", "128KiB", "512KiB", "2MiB", "8MiB", "32MiB")
METHODS = ("plain", "fadvise-sequential", "fadvise-random", "readahead")
_FADVICE = {"fadvise-sequential": os.POSIX_FADV_SEQUENTIAL, "fadvise-random": os.POSIX_FADV_RANDOM}


@register
class Readahead(Experiment):
    """Cold reads in file order or strided, under each read-ahead policy; the disk's own
    counters show the requests the kernel issued."""

    name = "readahead"
    summary = (
        "cold sequential/strided preads: read_ahead_kb, fadvise, readahead(2); block-layer request sizes"
    )
    seed_idea = (
        "the kernel reads ahead of a sequential reader, in requests up to the disk's read_ahead_kb, and "
        "posix_fadvise/readahead(2) change or replace that guess (TLPI §13.5; readahead(2), "
        "posix_fadvise(2))."
    )
    params = (
        choice_param(
            "pattern",
            ("sequential", "strided"),
            "sequential: every block in file order; strided: one bs block every stride bytes.",
        ),
        choice_param(
            "method",
            METHODS,
            "plain: read-ahead as the kernel guesses; fadvise-*: posix_fadvise before reading (untimed); "
            "readahead: readahead(2) of the whole file, then the reads (both timed).",
        ),
        choice_param(
            "read_ahead",
            READ_AHEAD_CHOICES,
            "The disk's read_ahead_kb during the case: found (as it is) or a size, set as root with "
            "allow_tuning=yes and restored afterwards.",
            default=("found",),
        ),
        size_param("file_size", (8 << 20,), "File size.", minimum=4096),
        size_param("bs", (4096,), "Bytes per pread().", maximum=1 << 30),
        size_param("stride", (65536,), "strided: distance between the starts of two reads.", maximum=1 << 30),
        _settings.ALLOW_TUNING,
    )
    x_param = None
    table_axis = "method"
    series_params = ("pattern",)
    columns = (
        Column("Elapsed", "elapsed_ns", "duration"),
        Column("Throughput", "bytes_per_s", "rate"),
        Column("Disk requests", "dev_reads"),
        Column("Request size", "dev_read_bytes", "size", per="dev_reads"),
        Column("Disk bytes/byte read", "dev_read_bytes", "ratio", per="bytes"),
        Column("Read-ahead", "setting_read_ahead_bytes", "size"),
        Column("Resident before", "resident_before", "percent"),
    )
    figures = (
        FigureSpec(
            "metric", title="Average disk request size", metric="dev_read_bytes", per="dev_reads",
            unit="size", log_y=True, y_label="per request",
        ),
        FigureSpec(
            "metric", title="Disk bytes read per byte the program read", metric="dev_read_bytes", per="bytes",
            unit="ratio", log_y=True, y_label="disk bytes per byte",
        ),
        FigureSpec("throughput", title="Cold read throughput"),
    )  # fmt: skip
    metrics = (
        RESIDENT_BEFORE,
        CACHE_VERIFIED,
        Metric(
            "dev_reads",
            "Disk requests",
            "count",
            "Reads the disk under --dir completed during the timed read (/sys/block/DEV/stat field 1; the "
            "whole device, so other processes' reads count too: compare with disk_read_bytes).",
        ),
        Metric(
            "dev_reads_merged",
            "Merged reads",
            "count",
            "Adjacent reads the block layer merged into one request (stat field 2).",
        ),
        Metric(
            "dev_read_bytes",
            "Disk bytes read",
            "size",
            "Bytes the disk read during the timed read (stat field 3, sectors x 512).",
        ),
        Metric(
            "pgpgin_bytes",
            "pgpgin",
            "size",
            "/proc/vmstat pgpgin during the timed read (KiB counted by the kernel, here in bytes; system-wide).",
        ),
        Metric(
            "ra_disk_shared_with_root",
            "Disk shared with /",
            "flag",
            "The disk under --dir also holds the root filesystem (a read_ahead_kb change reached the system's IO).",
        ),
        *_settings.SETTINGS_METRICS,
    )

    _fd: int | None = None
    _tuned: tuning.Tuning | None = None

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return True

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        ignored = set()
        if case["pattern"] == "sequential":
            ignored.add("stride")
        if case["read_ahead"] == "found":
            ignored.add("allow_tuning")
        return frozenset(ignored)

    def space_needed(self) -> int:
        return self.case["file_size"]

    def prepare(self) -> None:
        _settings.restore_left_over()
        self.device = sysfs.block_device(self.scratch)
        self.shared = bool(self.device and sysfs.shares_disk_with_root(self.device))
        if self.device is None:
            raise UnsupportedCase(
                "the folder under --dir has no block device of its own (tmpfs, overlay, network): no disk counters"
            )
        if self.case["read_ahead"] != "found":
            self._tune(self.device)
        size, block = self.case["file_size"], self.case["bs"]
        self.path = self.scratch / "cold.bin"
        create_random_file(self.path, size)
        step = block if self.case["pattern"] == "sequential" else max(self.case["stride"], block)
        self.offsets = array("q", range(0, size - block + 1, step))
        self.buffer = page_aligned_buffer(block)
        self.settings = _settings.settings_in_force(self.scratch, self._tuned)

    def _tune(self, device: sysfs.BlockDevice) -> None:
        path = device.read_ahead_path
        context = f"{device.disk.name} also holds the root filesystem /" if self.shared else ""
        _settings.require_tuning(self.case, str(path), context)
        self._tuned = tuning.Tuning()
        self._tuned.set(path, str(parse_size(self.case["read_ahead"]) // 1024))

    def before_rep(self) -> dict[str, Any]:
        metrics: dict[str, Any] = dict(cache.cache_metrics(self.path, "cold"))
        metrics |= self.settings | {"ra_disk_shared_with_root": self.shared}
        # Opened after the setting: a file takes the disk's read-ahead when it is opened.
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        advice = _FADVICE.get(self.case["method"])
        if advice is not None:
            os.posix_fadvise(self._fd, 0, 0, advice)
        assert self.device is not None
        # Last before the window, so the counters' span is the window and little else.
        self._pgpgin = sysfs.vmstat(("pgpgin",)).get("pgpgin", 0)
        self._stat = self.device.stat()
        return metrics

    def run_once(self) -> dict[str, Any]:
        assert self._fd is not None
        if self.case["method"] == "readahead":
            libc.readahead(self._fd, 0, self.case["file_size"])
        total, calls = self.loops.pread_at(self._fd, self.buffer, self.offsets)
        return {"bytes": total, "ops": calls}

    def after_rep(self) -> dict[str, Any]:
        assert self.device is not None and self._fd is not None
        delta = self.device.stat() - self._stat
        pgpgin = sysfs.vmstat(("pgpgin",)).get("pgpgin", 0) - self._pgpgin
        os.close(self._fd)
        self._fd = None
        return {
            "dev_reads": delta.reads,
            "dev_reads_merged": delta.merged,
            "dev_read_bytes": delta.read_bytes,
            "pgpgin_bytes": pgpgin * 1024,
        }

    def teardown(self) -> None:
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        finally:
            _settings.restore(self._tuned)

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Request sizes per policy, what fadvise(RANDOM) and readahead(2) did to a sequential and a
        strided read, and the read-ahead settings against each other."""
        from iobench import explain as ex

        out: list[str] = []
        for pattern in ("sequential", "strided"):
            sentence = _request_sizes(cls, summary, pattern)
            if sentence:
                out.append(sentence)
        for pattern, method in (("sequential", "fadvise-random"), ("strided", "fadvise-random"),
                                ("sequential", "readahead")):  # fmt: skip
            sentence = _method_against_plain(cls, summary, pattern, method)
            if sentence:
                out.append(sentence)
        sentence = _settings_sentence(cls, summary)
        if sentence:
            out.append(sentence)
        if ex.flag(summary, "ra_disk_shared_with_root"):
            out.append(
                "The disk under --dir also holds the root filesystem, so its counters include the system's "
                "reads during the window: compare Disk bytes read with disk_read_bytes (this thread's own)."
            )
        return out


def request_size(summary: pd.DataFrame, **case: Any) -> float | None:
    """The case's typical disk request: bytes the disk read per read it completed."""
    from iobench import explain as ex

    return ex.value(summary, "dev_read_bytes", per="dev_reads", **case)


def _request_sizes(experiment: Any, summary: pd.DataFrame, pattern: str) -> str | None:
    """The disk's average request per method, at the read-ahead found."""
    from iobench import explain as ex
    from iobench.units import format_size

    parts = []
    for method in METHODS:
        case = {"pattern": pattern, "method": method, "read_ahead": "found"}
        size = request_size(summary, **case)
        if size is not None and math.isfinite(size):
            amplification = ex.value(summary, "dev_read_bytes", per="bytes", **case)
            extra = f", {amplification:.2g} disk bytes per byte read" if amplification is not None else ""
            parts.append(f"{method} {format_size(size)} per request{extra}")
    if not parts:
        return None
    return f"{pattern.capitalize()} cold reads, the disk's average request: " + "; ".join(parts) + "."


def _method_against_plain(experiment: Any, summary: pd.DataFrame, pattern: str, method: str) -> str | None:
    from iobench import explain as ex
    from iobench.units import format_rate

    plain = {"pattern": pattern, "method": "plain", "read_ahead": "found"}
    other = {"pattern": pattern, "method": method, "read_ahead": "found"}
    found = ex.difference(summary, "bytes_per_s", plain, other)
    if found is None:
        return None
    what = {
        "fadvise-random": "posix_fadvise(RANDOM) (read-ahead off for the file)",
        "readahead": "readahead(2) of the whole file first",
    }[method]
    return (
        f"{pattern.capitalize()} cold reads with {what}: {format_rate(ex.one(summary, 'bytes_per_s', **other))} against "
        f"{format_rate(ex.one(summary, 'bytes_per_s', **plain))} without, {ex.contrast(found, higher_is_better=True)}."
    )


def _settings_sentence(experiment: Any, summary: pd.DataFrame) -> str | None:
    """The read_ahead_kb settings tried on the plain sequential read: throughput ranked, with
    the request size each gave."""
    from iobench import explain as ex
    from iobench.units import format_rate, format_size

    settings = [s for s in READ_AHEAD_CHOICES if s != "found"]
    cases = []
    for setting in settings:
        case = {"pattern": "sequential", "method": "plain", "read_ahead": setting}
        if not ex.select(summary, **case).empty:
            size = request_size(summary, **case)
            label = f"read_ahead_kb={setting}" + (f" ({format_size(size)} requests)" if size else "")
            cases.append((label, case))
    ranking = ex.rank(summary, "bytes_per_s", cases)
    if ranking is None:
        return None
    return "Sequential cold reads by read-ahead setting, " + ex.ranking_sentence(ranking, format_rate) + "."
