"""mmap-read: reading a file through a mapping vs read()/readinto() (seeds 003 and 000)."""

from __future__ import annotations

import io
import mmap
import os
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec, cache_param
from iobench.loops.buffers import page_aligned_buffer
from iobench.osutil.files import create_random_file
from iobench.params import Kind, Param, choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

MIB = 1 << 20
_MADVICE = {
    "sequential": getattr(mmap, "MADV_SEQUENTIAL", None),
    "random": getattr(mmap, "MADV_RANDOM", None),
    "willneed": getattr(mmap, "MADV_WILLNEED", None),
}


@register
class MmapRead(Experiment):
    """Read a whole file by mapping it or by read() calls; the kernel counts the faults."""

    name = "mmap-read"
    summary = "mmap (touch a byte per page, or copy everything out) vs read()/readinto()"
    seed_idea = (
        "003/000: a mapped file is read by page faults (demand paging) with no copy into a "
        "user buffer; read() copies from the page cache each call. Which wins, and when?"
    )
    params = (
        choice_param(
            "method",
            ("mmap-touch", "mmap-copy", "read", "readinto"),
            "mmap-touch: map, read one byte per page; mmap-copy: map, copy every byte out in "
            "bs chunks; read: os.read(bs) (a new bytes object per call); readinto: "
            "FileIO.readinto into one reused buffer.",
        ),
        Param("file_size", Kind.SIZE, (16 << 20,), "File size.", sweep=True, minimum=1, maximum=1 << 40),
        size_param(
            "bs",
            (65536,),
            "Chunk size of read/readinto/mmap-copy.",
            maximum=1 << 30,
        ),
        choice_param(
            "advice",
            ("none", "sequential", "random", "willneed", "populate"),
            "mmap methods: madvise SEQUENTIAL / RANDOM / WILLNEED after mapping, or populate "
            "(MAP_POPULATE: fault everything in at mmap time).",
            default=("none",),
        ),
        cache_param(
            ("warm", "cold"),
            "Page-cache state of the file before timing.",
        ),
    )
    x_param = "bs"
    table_axis = "method"
    series_params = ("method", "cache")
    throughput_figure = True
    columns = (
        Column("Elapsed", "elapsed_ns", "duration"),
        Column("Throughput", "bytes_per_s", "rate"),
        Column("Total CPU", "cpu_ns", "duration"),
        Column("Minor/MiB", "minflt", "ratio", per="bytes", scale=MIB),
        Column("Major/MiB", "majflt", "ratio", per="bytes", scale=MIB),
        Column("read()s", "syscalls_read"),
        Column("Disk read", "disk_read_bytes", "size"),
        Column("Resident before", "resident_before", "percent"),
    )

    figures = (
        # Without madvise: the question is the method; the advice variants are in the tables.
        # mmap-touch reads one byte per page: it moves no file's worth of bytes, so it is not
        # ranked by bytes/s against the methods that copy (its time is in the tables).
        FigureSpec(
            "throughput", title="Throughput of the methods that copy (no madvise)",
            where=(("advice", ("none",)), ("method", ("mmap-copy", "read", "readinto"))),
        ),
        FigureSpec(
            "metric", title="Page faults per MiB, cold cache (no madvise)", metrics=("minflt", "majflt"),
            per="bytes", scale=MIB, y_label="faults per MiB",
            where=(("advice", ("none",)), ("cache", ("cold",))),
        ),
    )  # fmt: skip

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Fastest method warm and cold; faults per MiB against one per 4 KiB page."""
        from iobench import explain as ex
        from iobench.units import format_rate

        out = []
        for state in ("warm", "cold"):
            rows = ex.select(summary, cache=state, advice="none")
            if rows.empty:
                rows = ex.select(summary, cache=state)
            if rows["method"].nunique() < 2:
                continue
            best = rows.loc[rows["bytes_per_s"].idxmax()]
            worst = rows.loc[rows["bytes_per_s"].idxmin()]
            out.append(
                f"{state.capitalize()} cache: {best['method']} is fastest ({format_rate(best['bytes_per_s'])}), "
                f"{worst['method']} slowest ({format_rate(worst['bytes_per_s'])})."
            )
        faults = ex.select(summary, method="mmap-touch", cache="cold", advice="none")
        if not faults.empty:
            per_mib = (faults["minflt"].iloc[0] + faults["majflt"].iloc[0]) / faults["bytes"].iloc[0] * MIB
            if per_mib > 0:
                out.append(
                    f"Touching a cold mapping took {per_mib:.3g} faults per MiB, where one fault per 4 KiB "
                    f"page would be 256: the kernel maps about {256 / per_mib:.0f} pages per fault (fault-around "
                    "and read-ahead)."
                )
        return out

    _source: io.FileIO | None = None

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        # method=read measures os.read's new bytes object per call: Python's cost by design.
        return case["method"] != "read"

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        ignored = set()
        if case["method"] == "mmap-touch":
            ignored.add("bs")
        if not case["method"].startswith("mmap"):
            ignored.add("advice")
        return frozenset(ignored)

    def space_needed(self) -> int:
        return self.case["file_size"]

    def prepare(self) -> None:
        self.method: str = self.case["method"]
        self.size: int = self.case["file_size"]
        self.path = self.scratch / "mapped.bin"
        create_random_file(self.path, self.size)
        self.buffer = page_aligned_buffer(self.case["bs"])  # touched before timing

    def before_rep(self) -> dict[str, Any]:
        metrics = cache.cache_metrics(self.path, self.case["cache"])
        self._source = io.FileIO(self.path, "rb")
        return metrics

    def run_once(self) -> dict[str, Any]:
        assert self._source is not None
        if self.method == "readinto":
            moved, calls = self.loops.read_all(self._source.fileno(), self.buffer)
            return {"bytes": moved, "ops": calls}
        if self.method == "read":
            return self._read_bytes()
        # Mapping is part of the method's cost (MAP_POPULATE does all its work here).
        flags = mmap.MAP_SHARED
        if self.case["advice"] == "populate":
            flags |= mmap.MAP_POPULATE
        mapping = mmap.mmap(self._source.fileno(), self.size, flags=flags, prot=mmap.PROT_READ)
        try:
            advice = _MADVICE.get(self.case["advice"])
            if advice is not None:
                mapping.madvise(advice)
            pages = -(-self.size // mmap.PAGESIZE)
            if self.method == "mmap-touch":
                self.loops.touch_pages(mapping, pages, mmap.PAGESIZE, False)
                return {"bytes": self.size, "ops": pages}
            moved = self.loops.copy_out(mapping, self.buffer)
            return {"bytes": moved, "ops": -(-self.size // len(self.buffer))}
        finally:
            mapping.close()

    def _read_bytes(self) -> dict[str, Any]:
        assert self._source is not None
        read, fd, block = os.read, self._source.fileno(), len(self.buffer)
        total = calls = 0
        while True:
            chunk = read(fd, block)
            calls += 1
            if not chunk:
                return {"bytes": total, "ops": calls}
            total += len(chunk)

    def after_rep(self) -> dict[str, Any]:
        if self._source is not None:
            self._source.close()
            self._source = None
        return {}

    def teardown(self) -> None:
        if self._source is not None:
            self._source.close()
