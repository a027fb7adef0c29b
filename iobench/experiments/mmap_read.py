"""mmap-read: reading a file through a mapping vs read()/readinto() (seeds 003 and 000)."""

from __future__ import annotations

import io
import mmap
import os
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec, cache_param
from iobench.hostinfo import working_set
from iobench.loops.buffers import page_aligned_buffer
from iobench.metrics import CACHE_VERIFIED, FITS_LLC, RESIDENT_BEFORE, WORKING_SET, Metric
from iobench.osutil.files import create_random_file
from iobench.params import Kind, Param, choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

MIB = 1 << 20
#: The methods that copy every byte out of the file (mmap-touch copies nothing).
COPYING_METHODS = ("mmap-copy", "read", "readinto")
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
        "a mapped file is read by page faults (demand paging) with no copy into a user buffer; "
        "read() copies from the page cache each call (TLPI ch. 49). Which wins, and when?"
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
        # Bytes/s only where every byte is copied: mmap-touch reads one byte per page.
        Column("Throughput", "bytes_per_s", "rate", where=(("method", COPYING_METHODS),)),
        Column("Pages touched/s", "pages_touched", "count", per="elapsed_ns", scale=1e9),
        Column("Total CPU", "cpu_ns", "duration"),
        Column("Minor/MiB", "minflt", "ratio", per="bytes", scale=MIB),
        Column("Major/MiB", "majflt", "ratio", per="bytes", scale=MIB),
        Column("read()s", "syscalls_read"),
        Column("Disk read", "disk_read_bytes", "size"),
        Column("Resident before", "resident_before", "percent"),
    )

    metrics = (
        RESIDENT_BEFORE,
        CACHE_VERIFIED,
        WORKING_SET,
        FITS_LLC,
        Metric(
            "pages_touched",
            "Pages touched",
            "count",
            "mmap-touch only: pages read one byte each (it copies nothing, so its rate is pages/s, not bytes/s).",
        ),
        Metric("page_size", "Page size", "size", "The page size in force (mmap.PAGESIZE) when the case ran."),
    )

    figures = (
        # Without madvise: the question is the method; the advice variants are in the tables.
        # Bytes/s only for the methods that copy every byte: mmap-touch reads one byte per page
        # (its rate is in the "Pages touched/s" column).
        FigureSpec(
            "throughput", title="Throughput of the copying methods (no madvise)",
            where=(("advice", ("none",)), ("method", COPYING_METHODS)),
        ),
        FigureSpec(
            "metric", title="Page faults per MiB, cold cache (no madvise)", metrics=("minflt", "majflt"),
            per="bytes", scale=MIB, y_label="faults per MiB",
            where=(("advice", ("none",)), ("cache", ("cold",))),
        ),
    )  # fmt: skip

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """The copying methods ranked by bytes/s (only measurable gaps), mmap-touch in pages/s on
        its own, and faults per MiB against one per page of the page size in force."""
        from iobench import explain as ex

        out: list[str] = []
        for state in ("warm", "cold"):
            where: dict[str, Any] = {"cache": state, "advice": "none"}
            if ex.select(summary, **where).empty:
                where = {"cache": state}
            sentence = _copying_ranking(cls, summary, where)
            if sentence:
                out.append(sentence)
            sentence = _touch_rate(summary, where, first=not any("pages/s" in s for s in out))
            if sentence:
                out.append(sentence)
        sentence = _faults(summary)
        if sentence:
            out.append(sentence)
        return out

    _source: io.FileIO | None = None
    _mapping: mmap.mmap | None = None

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
        # The copying methods touch the whole file and the buffer: a warm pass over a set that fits
        # the last-level cache measures that cache. mmap-touch reads one byte a page: not recorded.
        copies = self.method != "mmap-touch"
        self._working_set = working_set(self.size + self.case["bs"]) if copies else {}

    def before_rep(self) -> dict[str, Any]:
        metrics: dict[str, Any] = dict(cache.cache_metrics(self.path, self.case["cache"]))
        self._source = io.FileIO(self.path, "rb")
        # Untimed facts for the report: the page size in force, and what mmap-touch will touch.
        metrics["page_size"] = mmap.PAGESIZE
        if self.case["method"] == "mmap-touch":
            metrics["pages_touched"] = -(-self.case["file_size"] // mmap.PAGESIZE)
        return metrics

    def run_once(self) -> dict[str, Any]:
        assert self._source is not None
        if self.method == "readinto":
            moved, calls = self.loops.read_all(self._source.fileno(), self.buffer)
            return {"bytes": moved, "ops": calls}
        if self.method == "read":
            return self._read_bytes()
        # Mapping is part of the method's cost (MAP_POPULATE does all its work here); unmapping
        # is tear-down, done in after_rep.
        flags = mmap.MAP_SHARED
        if self.case["advice"] == "populate":
            flags |= mmap.MAP_POPULATE
        self._mapping = mapping = mmap.mmap(
            self._source.fileno(), self.size, flags=flags, prot=mmap.PROT_READ
        )
        advice = _MADVICE.get(self.case["advice"])
        if advice is not None:
            mapping.madvise(advice)
        pages = -(-self.size // mmap.PAGESIZE)
        if self.method == "mmap-touch":
            self.loops.touch_pages(mapping, pages, mmap.PAGESIZE, False)
            return {"bytes": self.size, "ops": pages}
        moved = self.loops.copy_out(mapping, self.buffer)
        return {"bytes": moved, "ops": -(-self.size // len(self.buffer))}

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
        self._close()
        return dict(self._working_set)

    def _close(self) -> None:
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None
        if self._source is not None:
            self._source.close()
            self._source = None

    def teardown(self) -> None:
        self._close()


def _copying_ranking(experiment: Any, summary: pd.DataFrame, where: dict[str, Any]) -> str | None:
    """The methods that copy every byte, ranked by throughput at the largest bs they share."""
    from iobench import explain as ex
    from iobench.units import format_rate

    shared = None
    for method in COPYING_METHODS:
        sizes = set(ex.distinct(summary, "bs", method=method, **where))
        if sizes:
            shared = sizes if shared is None else shared & sizes
    if not shared:
        return None
    bs = max(shared)
    cases = [(m, where | {"method": m, "bs": bs}) for m in COPYING_METHODS]
    ranking = ex.rank(summary, "bytes_per_s", cases)
    if ranking is None:
        return None
    return (
        f"{where['cache'].capitalize()} cache, bytes copied out per second at bs={ex.fmt(experiment, 'bs', bs)}, "
        + ex.ranking_sentence(ranking, format_rate)
        + "."
    )


def page_size(summary: pd.DataFrame, **params: Any) -> int:
    """The page size the run used: its recorded ``page_size`` column, else this host's."""
    from iobench import explain as ex

    recorded = ex.one(summary, "page_size", **params)
    if recorded is None:
        column = summary["page_size"].dropna() if "page_size" in summary else ()
        recorded = float(column.iloc[0]) if len(column) else None
    return int(recorded) if recorded else mmap.PAGESIZE


def _touch_rate(summary: pd.DataFrame, where: dict[str, Any], first: bool = True) -> str | None:
    """mmap-touch in pages touched per second: it reads one byte per page and copies nothing."""
    from iobench import explain as ex
    from iobench.units import format_size

    case = where | {"method": "mmap-touch"}
    pages = "pages_touched" if ex.one(summary, "pages_touched", **case) else "ops"
    rate = ex.value(summary, pages, per="elapsed_ns", scale=1e9, **case)
    if not rate:
        return None
    size = format_size(page_size(summary, **case))
    sentence = f"{where['cache'].capitalize()} cache: mmap-touch touched {rate:,.0f} pages/s ({size} pages)"
    if not first:
        return sentence + "."
    return sentence + (
        ": it reads one byte per page and copies nothing, so it is not ranked against the methods that copy "
        "every byte."
    )


def _faults(summary: pd.DataFrame) -> str | None:
    """Faults per MiB of a cold mapping touched page by page, against one fault per page."""
    from iobench import explain as ex
    from iobench.units import format_size

    case = {"method": "mmap-touch", "cache": "cold", "advice": "none"}
    if ex.select(summary, **case).empty:
        return None
    minor, major = ex.value(summary, "minflt", **case), ex.value(summary, "majflt", **case)
    moved = ex.value(summary, "bytes", **case)
    if minor is None or major is None or not moved:
        return None
    per_mib = (minor + major) / moved * MIB
    page = page_size(summary, **case)
    one_each = MIB / page
    sentence = (
        f"Touching a cold mapping took {per_mib:.3g} faults per MiB, where one fault per {format_size(page)} page "
        f"would be {one_each:.0f}"
    )
    if per_mib <= 0:
        return sentence + "."
    if per_mib < 0.9 * one_each:
        return sentence + (
            f": the kernel mapped about {one_each / per_mib:.0f} pages per fault (fault-around maps pages "
            "already in the page cache around the one faulted; read-ahead brings them in)."
        )
    if per_mib > 1.1 * one_each:
        return sentence + ": more than one fault per page."
    return sentence + ": about one fault per page."
