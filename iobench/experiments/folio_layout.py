"""folio-layout: how a file was written decides how fast it reads from the page cache (seed 003)."""

from __future__ import annotations

import io
import mmap
import os
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.experiments import _settings, register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.loops.buffers import page_aligned_buffer
from iobench.metrics import CACHE_VERIFIED, INTEGRITY_OK, RESIDENT_BEFORE, Metric
from iobench.osutil import kpageflags
from iobench.osutil.files import create_random_file
from iobench.params import choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

PAGE = mmap.PAGESIZE
#: cold-readahead reads the evicted file back with coreutils cat's buffer (io_blksize: 128 KiB).
CAT_BS = 128 << 10


@register
class FolioLayout(Experiment):
    """Read a warm file whose page cache was laid out by its writes (or by read-ahead)."""

    name = "folio-layout"
    summary = (
        "warm reads of a file written in 4KiB..1MiB writes or re-read after eviction; folio sizes measured"
    )
    seed_idea = (
        "the page cache holds a file in folios of one or more pages; large writes and read-ahead make "
        "large folios, small writes make single pages, and a warm read walks folio by folio "
        "(Documentation/mm/ in the kernel tree; Wilcox, 'Memory folios', LWN 849538, 2021)."
    )
    params = (
        choice_param(
            "layout",
            ("written", "cold-readahead"),
            "written: the page cache as write_bs writes left it; cold-readahead: written the same way, "
            "evicted, and read back once with 128KiB reads as cat does (the layout read-ahead makes).",
            default=("written",),
        ),
        size_param(
            "write_bs", (4096, 65536, 1 << 20), "Bytes per write() creating the file.", maximum=1 << 30
        ),
        size_param(
            "read_bs", (4096, 65536, 1 << 20), "Bytes per read() in the timed warm read.", maximum=1 << 30
        ),
        size_param("file_size", (16 << 20,), "File size.", minimum=PAGE),
    )
    x_param = "read_bs"
    table_axis = "write_bs"
    series_params = ("layout", "write_bs")
    throughput_figure = True
    columns = (
        Column("Throughput", "bytes_per_s", "rate"),
        Column("Folio p50", "folio_pages_p50", "count"),
        Column("In large folios", "folio_large_share", "percent"),
        Column("Folios", "folios"),
        Column("read()s", "syscalls_read"),
        Column("Total CPU", "cpu_ns", "duration"),
        Column("Resident before", "resident_before", "percent"),
    )
    figures = (
        FigureSpec("throughput", title="Warm read throughput by how the file was written"),
        FigureSpec(
            "metric", title="Folio size holding the median page", metric="folio_pages_p50", x="write_bs",
            unit="count", log_y=True, y_label="pages per folio", where=(("layout", ("written",)),),
        ),
    )  # fmt: skip
    metrics = (
        RESIDENT_BEFORE,
        CACHE_VERIFIED,
        INTEGRITY_OK,
        Metric(
            "folio_pages_p50",
            "Folio p50",
            "count",
            "Size in pages of the folio that holds the file's median cached page (a byte-weighted median), from "
            "/proc/self/pagemap + /proc/kpageflags before the timed read; NaN when unknown.",
        ),
        Metric(
            "folio_large_share",
            "In large folios",
            "fraction",
            "Fraction of the file's cached pages that sit in folios of more than one page.",
        ),
        Metric("folios", "Folios", "count", "Folios holding the file's cached pages."),
        Metric(
            "folio_histogram",
            "Folio histogram",
            "text",
            'JSON: folio size in pages -> how many folios, e.g. {"1": 4096} ("" when unknown).',
        ),
        Metric(
            "folio_unknown_reason",
            "Why no folio histogram",
            "text",
            "Why the folio sizes could not be read ('' when they were): /proc/kpageflags needs root.",
        ),
        Metric("page_size", "Page size", "size", "The base page size (mmap.PAGESIZE)."),
        *_settings.SETTINGS_METRICS,
    )

    _source: io.FileIO | None = None

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return True

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        # cold-readahead evicts what the writes made: the layout is read-ahead's, whatever write_bs was.
        return frozenset({"write_bs"}) if case["layout"] == "cold-readahead" else frozenset()

    def space_needed(self) -> int:
        return self.case["file_size"]

    def prepare(self) -> None:
        _settings.restore_left_over()
        self.size: int = self.case["file_size"]
        self.path = self.scratch / "layout.bin"
        create_random_file(self.path, self.size, self.case["write_bs"])
        if self.case["layout"] == "cold-readahead":
            cache.evict(self.path)
            _read_through(self.path, CAT_BS)
        self.buffer = page_aligned_buffer(self.case["read_bs"])
        self.settings = _settings.settings_in_force(self.scratch)

    def before_rep(self) -> dict[str, Any]:
        # Warm: only a file that lost pages is read again (which would change its layout; the
        # histogram below shows what the timed read found either way).
        metrics: dict[str, Any] = dict(cache.cache_metrics(self.path, "warm"))
        metrics |= _layout_metrics(kpageflags.file_folio_layout(self.path))
        metrics |= self.settings | {"page_size": PAGE}
        self._source = io.FileIO(self.path, "rb")
        return metrics

    def run_once(self) -> dict[str, Any]:
        assert self._source is not None
        moved, reads = self.loops.read_all(self._source.fileno(), self.buffer)
        self._moved = moved
        return {"bytes": moved, "ops": reads}

    def after_rep(self) -> dict[str, Any]:
        self._close()
        return {"integrity_ok": self._moved == self.size}

    def _close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    def teardown(self) -> None:
        self._close()

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Small writes against large ones at each read size, read-ahead's layout against small
        writes, the lesson only when the data shows it, and why the histogram is unknown."""
        from iobench import explain as ex

        out: list[str] = []
        reason = _unknown_reason(summary)
        if reason:
            out.append(f"The folio sizes are unknown in this run: {reason}.")
        written = ex.distinct(summary, "write_bs", layout="written")
        read_sizes = sorted(ex.distinct(summary, "read_bs"), reverse=True)
        small_slower = readahead_helps = False
        if len(written) >= 2:
            for read_bs in read_sizes:
                sentence, found = _small_against_large(cls, summary, written[0], written[-1], read_bs)
                if sentence:
                    out.append(sentence)
                    small_slower = small_slower or ex.direction(found) == -1
        for read_bs in read_sizes if written else ():
            sentence, found = _readahead_against_small(cls, summary, written[0], read_bs)
            if sentence:
                out.append(sentence)
                readahead_helps = ex.direction(found) == 1 and _larger_folios(
                    summary, {"layout": "cold-readahead"}, {"layout": "written", "write_bs": written[0]}
                )
                break
        large = {"layout": "written", "write_bs": written[-1]} if written else {}
        if small_slower and _larger_folios(summary, large, {"layout": "written", "write_bs": written[0]}):
            lesson = (
                "The lesson from this run: a file written by small writes keeps its small folios while it stays "
                "cached and reads slower; writing in large chunks gives large folios from the start"
            )
            if readahead_helps:
                lesson += ", and evicting the file and reading it back once (as cat does) gives it large folios again"
            out.append(lesson + ".")
        return out


def _read_through(path: Any, block: int) -> None:
    """One sequential read() pass: read-ahead brings the file in and chooses its folios."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while os.read(fd, block):
            pass
    finally:
        os.close(fd)


def _layout_metrics(layout: kpageflags.FolioLayout) -> dict[str, Any]:
    if not layout.known:
        nan = float("nan")
        return {
            "folio_pages_p50": nan,
            "folio_large_share": nan,
            "folios": nan,
            "folio_histogram": "",
            "folio_unknown_reason": layout.unknown,
        }
    return {
        "folio_pages_p50": layout.pages_p50(),
        "folio_large_share": layout.share_in_large(),
        "folios": layout.folios,
        "folio_histogram": layout.histogram_json(),
        "folio_unknown_reason": "",
    }


def _unknown_reason(summary: pd.DataFrame) -> str:
    if "folio_unknown_reason" not in summary:
        return ""
    reasons = [r for r in summary["folio_unknown_reason"].dropna().astype(str) if r and r != "nan"]
    return reasons[0] if reasons else ""


def _p50_words(summary: pd.DataFrame, **case: Any) -> str:
    from iobench import explain as ex

    p50 = ex.one(summary, "folio_pages_p50", **case)
    if p50 is None:
        return "folio size unknown"
    return f"median page in a {p50:.0f}-page folio"


def _small_against_large(
    experiment: Any, summary: pd.DataFrame, small: int, large: int, read_bs: int
) -> tuple[str | None, Any]:
    """At one read size: the file written in the smallest writes against the largest."""
    from iobench import explain as ex
    from iobench.units import format_rate

    a = {"layout": "written", "write_bs": large, "read_bs": read_bs}
    b = {"layout": "written", "write_bs": small, "read_bs": read_bs}
    found = ex.difference(summary, "bytes_per_s", a, b)
    if found is None:
        return None, None
    sentence = (
        f"Warm reads with read_bs={ex.fmt(experiment, 'read_bs', read_bs)}: the file written in "
        f"{ex.fmt(experiment, 'write_bs', small)} writes ({_p50_words(summary, **b)}) read at "
        f"{format_rate(ex.one(summary, 'bytes_per_s', **b))}, the one written in "
        f"{ex.fmt(experiment, 'write_bs', large)} writes ({_p50_words(summary, **a)}) at "
        f"{format_rate(ex.one(summary, 'bytes_per_s', **a))}; small writes against large: "
        f"{ex.contrast(found, higher_is_better=True)}."
    )
    return sentence, found


def _readahead_against_small(
    experiment: Any, summary: pd.DataFrame, small: int, read_bs: int
) -> tuple[str | None, Any]:
    """Read-ahead's layout (evicted, read back once) against the smallest writes."""
    from iobench import explain as ex
    from iobench.units import format_rate

    a = {"layout": "written", "write_bs": small, "read_bs": read_bs}
    b = {"layout": "cold-readahead", "read_bs": read_bs}
    found = ex.difference(summary, "bytes_per_s", a, b)
    if found is None:
        return None, None
    return (
        f"The file evicted and read back once as cat does ({_p50_words(summary, **b)}) then read "
        f"warm at {format_rate(ex.one(summary, 'bytes_per_s', **b))} with read_bs="
        f"{ex.fmt(experiment, 'read_bs', read_bs)}: against leaving it as "
        f"{ex.fmt(experiment, 'write_bs', small)} writes made it, {ex.contrast(found, higher_is_better=True)}."
    ), found


def _larger_folios(summary: pd.DataFrame, big: dict[str, Any], small: dict[str, Any]) -> bool:
    """The first layout's median page sits in a larger folio than the second's (the cause,
    measured; False when either is unknown)."""
    from iobench import explain as ex

    one = ex.select(summary, **big)
    other = ex.select(summary, **small)
    if one.empty or other.empty or "folio_pages_p50" not in summary:
        return False
    a, b = one["folio_pages_p50"].median(), other["folio_pages_p50"].median()
    return bool(a == a and b == b and a > b)
