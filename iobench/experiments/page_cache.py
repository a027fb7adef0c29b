"""page-cache: what the page cache and read-ahead are worth (seeds 002, 003, 004)."""

from __future__ import annotations

import os
import random
from array import array
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec, cache_param
from iobench.hostinfo import working_set
from iobench.loops.buffers import page_aligned_buffer
from iobench.metrics import CACHE_VERIFIED, FITS_LLC, RESIDENT_BEFORE, WORKING_SET
from iobench.metrics import Metric as M
from iobench.osutil.files import create_random_file
from iobench.params import Kind, Param, choice_param

if TYPE_CHECKING:
    import pandas as pd

MIB = 1 << 20
_FADVICE = {
    "normal": os.POSIX_FADV_NORMAL,
    "sequential": os.POSIX_FADV_SEQUENTIAL,
    "random": os.POSIX_FADV_RANDOM,
}


@register
class PageCache(Experiment):
    """Read every block of a file once with pread(), in order or shuffled, cold or warm."""

    name = "page-cache"
    summary = "cold vs warm, sequential vs random 4 KiB preads, fadvise SEQUENTIAL/RANDOM"
    seed_idea = (
        "the kernel keeps file pages in RAM (the page cache) and reads ahead of sequential "
        "readers; a warm or sequential read skips most of the disk's latency (TLPI §13.1, "
        "§13.5)."
    )
    params = (
        choice_param(
            "pattern",
            ("sequential", "random"),
            "Block order: file order, or a shuffle that still reads every block once.",
        ),
        cache_param(
            ("cold", "warm"),
            "Page-cache state before timing (verified).",
        ),
        choice_param(
            "advice",
            tuple(_FADVICE),
            "posix_fadvise before reading: normal, sequential (more read-ahead) or random (none).",
            default=("normal",),
        ),
        Param("file_size", Kind.SIZE, (16 << 20,), "File size.", sweep=True, minimum=1, maximum=1 << 40),
        Param("bs", Kind.SIZE, (4096,), "Bytes per pread().", sweep=True, minimum=1, maximum=1 << 30),
    )
    table_axis = "pattern"
    columns = (
        Column("Elapsed", "elapsed_ns", "duration"),
        Column("Per pread", "elapsed_ns", "duration", per="ops"),
        Column("Throughput", "bytes_per_s", "rate"),
        Column("pread()s", "syscalls_read"),
        Column("Disk read", "disk_read_bytes", "size"),
        Column("Read amplification", "disk_read_bytes", "ratio", per="bytes"),
        Column("Resident before", "resident_before", "percent"),
        Column("Cached after", "resident_after", "percent"),
    )

    figures = (
        FigureSpec("metric", title="Time per pread", metric="elapsed_ns", per="ops", unit="duration", log_y=True),
        FigureSpec("metric", title="Read amplification (disk bytes per byte read)", metric="disk_read_bytes",
                   per="bytes", unit="ratio", y_label="disk bytes per byte"),
    )  # fmt: skip

    metrics = (
        RESIDENT_BEFORE,
        CACHE_VERIFIED,
        WORKING_SET,
        FITS_LLC,
        M(
            "resident_after",
            "Resident after",
            "fraction",
            "Fraction of the file in the page cache after the timed loop.",
        ),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Cold against warm, random against sequential, fadvise(RANDOM) against none: each
        direction from the data, and the page cache named as the cause only when the disk bytes
        show it."""
        from iobench import explain as ex
        from iobench.units import format_duration, format_size

        out = []
        seq_cold = {"pattern": "sequential", "cache": "cold", "advice": "normal"}
        seq_warm = {"pattern": "sequential", "cache": "warm", "advice": "normal"}
        rand_cold = {"pattern": "random", "cache": "cold", "advice": "normal"}
        no_ahead = {"pattern": "sequential", "cache": "cold", "advice": "random"}

        def per_read(case: dict[str, str]) -> str:
            return format_duration(ex.value(summary, "elapsed_ns", per="ops", **case))

        found = ex.difference(summary, "elapsed_ns", seq_warm, seq_cold, per="ops")
        if found is not None:
            sentence = (
                f"A sequential pread cost {per_read(seq_cold)} cold and {per_read(seq_warm)} warm, cold "
                f"against warm: {ex.contrast(found)}."
            )
            disk_cold = ex.one(summary, "disk_read_bytes", **seq_cold)
            disk_warm = ex.one(summary, "disk_read_bytes", **seq_warm)
            if disk_cold == 0:
                sentence += (
                    " The cold pass read nothing from the block layer (a RAM-backed filesystem or device): "
                    "there was no disk to wait for."
                )
            elif (
                ex.direction(found) == 1
                and disk_cold
                and disk_warm is not None
                and disk_warm < 0.01 * disk_cold
            ):
                sentence += (
                    f" The cold pass read {format_size(disk_cold)} from the disk and the warm one "
                    f"{format_size(disk_warm)}: the page cache is the difference."
                )
            out.append(sentence)
        found = ex.difference(summary, "elapsed_ns", seq_cold, rand_cold, per="ops")
        if found is not None:
            sentence = (
                f"Cold random preads cost {per_read(rand_cold)} each against {per_read(seq_cold)} in file "
                f"order, {ex.contrast(found)}"
            )
            if ex.direction(found) == 1:
                sentence += ": read-ahead serves a reader whose next block it can predict"
            out.append(sentence + ".")
        found = ex.difference(summary, "elapsed_ns", seq_cold, no_ahead, per="ops")
        if found is not None:
            out.append(
                ex.cite("posix_fadvise(2)", ex.MAN_PAGES, "POSIX_FADV_RANDOM disables file read-ahead")
                + f". The same sequential cold read with it cost {per_read(no_ahead)} per pread against "
                f"{per_read(seq_cold)} without: {ex.contrast(found)}."
            )
        return out

    _fd: int | None = None

    def space_needed(self) -> int:
        return self.case["file_size"]

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return True

    def prepare(self) -> None:
        self.size: int = self.case["file_size"]
        self.block: int = self.case["bs"]
        self.path = self.scratch / "cached.bin"
        create_random_file(self.path, self.size)
        offsets = list(range(0, self.size, self.block))
        if self.case["pattern"] == "random":
            random.Random(self.size ^ self.block).shuffle(offsets)  # same order every repetition
        self.offsets = array("q", offsets)
        self.buffer = page_aligned_buffer(self.block)
        # The file, the buffer and the offsets: does a warm pass measure the CPU cache or DRAM?
        self._working_set = working_set(self.size + self.block + self.offsets.itemsize * len(self.offsets))

    def before_rep(self) -> dict[str, Any]:
        metrics = cache.cache_metrics(self.path, self.case["cache"])
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        os.posix_fadvise(self._fd, 0, 0, _FADVICE[self.case["advice"]])
        return metrics

    def run_once(self) -> dict[str, Any]:
        assert self._fd is not None
        total, calls = self.loops.pread_at(self._fd, self.buffer, self.offsets)
        return {"bytes": total, "ops": calls}

    def after_rep(self) -> dict[str, Any]:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        return {"resident_after": cache.resident_fraction(self.path), **self._working_set}

    def teardown(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
