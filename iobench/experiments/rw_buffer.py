"""rw-buffer: syscall overhead against buffer size (TLPI Table 13-1, seeds 002 and 003)."""

from __future__ import annotations

import io
import math
import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.experiments import register
from iobench.experiments.base import Experiment, FigureSpec, cache_param
from iobench.hostinfo import working_set
from iobench.loops.buffers import page_aligned_buffer
from iobench.metrics import CACHE_VERIFIED, FITS_LLC, INTEGRITY_OK, RESIDENT_BEFORE, WORKING_SET
from iobench.osutil.files import create_random_file, open_new
from iobench.osutil.verify import PatternCheck, file_digest
from iobench.params import Kind, Param, choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

_CHUNK = 1 << 20
PAGE = mmap.PAGESIZE


def _create_exclusive(path: Path) -> io.FileIO:
    """A new file we made ourselves: O_EXCL and O_NOFOLLOW, so nothing existing is touched."""
    return io.FileIO(open_new(path), "wb", closefd=True)


@register
class RwBuffer(Experiment):
    """Read, write or copy a file with read()/write() of one buffer size per case."""

    name = "rw-buffer"
    summary = "read/write/copy a file with one buffer size per case (TLPI Table 13-1)"
    seed_idea = (
        "each read()/write() is a mode switch; small buffers pay it per byte, larger ones "
        "amortise it until memory copying dominates (TLPI §13.1, Table 13-1)."
    )
    params = (
        choice_param(
            "mode",
            ("read", "write", "copy"),
            "read: file -> buffer; write: buffer -> "
            "new file; copy: read then write into a new file (TLPI copy.c).",
        ),
        size_param(
            "file_size",
            (1 << 20,),
            "Bytes moved per repetition.",
        ),
        size_param(
            "bs",
            (1, 16, 256, 4096, 65536),
            "Buffer size: bytes per read()/write() call.",
            maximum=1 << 30,
        ),
        cache_param(
            ("warm", "cold"),
            "Page-cache state of the file read (read, copy). "
            "cold = fsync + fadvise(DONTNEED), verified by counting cached pages. write mode always writes a "
            "new file, so it does not apply there.",
        ),
        Param(
            "source_write_bs",
            Kind.SIZE,
            (_CHUNK,),
            "Bytes per write() when the source file (read, copy) is created. Writes decide the page "
            "cache's folio sizes, and warm reads of small folios are slower (see folio-layout): "
            "4KiB reproduces a file written by small appends.",
            sweep=True,
            minimum=PAGE,
            maximum=1 << 30,
            in_id_at_default=False,
        ),
    )
    metrics = (RESIDENT_BEFORE, CACHE_VERIFIED, INTEGRITY_OK, WORKING_SET, FITS_LLC)
    x_param = "bs"
    series_params = ("mode", "cache")
    throughput_figure = True

    figures = (
        FigureSpec("throughput", title="Throughput vs buffer size"),
        FigureSpec("stacked_cpu", title="CPU time: user vs system (kernel)"),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Smallest against largest buffer, where a larger buffer stops paying, whether the time
        goes to the calls or the bytes, TLPI's 4 KiB claim, and cold against warm."""
        from iobench import explain as ex

        out: list[str] = []
        noted_book = False
        for mode in ("read", "write", "copy"):
            where = _mode_cases(summary, mode)
            if where is None:
                continue
            out.append(_sweep_sentence(cls, summary, where))
            if mode != "write" and not noted_book:
                out.append(_book_note(cls, summary, where))
                noted_book = True
        largest = max(ex.distinct(summary, "bs", mode="read"), default=None)
        if largest is not None:
            warm = {"mode": "read", "cache": "warm", "bs": largest}
            cold = {"mode": "read", "cache": "cold", "bs": largest}
            found = ex.difference(summary, "bytes_per_s", warm, cold)
            if found is not None:
                out.append(
                    f"At bs={ex.fmt(cls, 'bs', largest)}, a cold-cache read against a warm one: "
                    f"{ex.contrast(found, higher_is_better=True)}."
                )
        return out

    def __init__(self, case: dict[str, Any], scratch: Path) -> None:
        super().__init__(case, scratch)
        self.mode: str = case["mode"]
        self.size: int = case["file_size"]
        self.block: int = case["bs"]
        self.cache_state: str = case["cache"]
        self.source_path = scratch / "source.bin"
        self.dest_path = scratch / "dest.bin"
        self.buffer: mmap.mmap | bytearray = bytearray()
        self.source_digest = b""
        self._source: int | None = None  # an fd: opened and closed between repetitions, kept cheap
        self._dest: io.FileIO | None = None
        self._pattern: PatternCheck | None = None  # the write check's buffers, made once
        self._last: dict[str, Any] = {}
        self._working_set: dict[str, Any] = {}

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return True

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        # write mode makes a new file each repetition: there is no page-cache state to set, and
        # no source file to write.
        return frozenset({"cache", "source_write_bs"}) if case["mode"] == "write" else frozenset()

    @property
    def reads_source(self) -> bool:
        return self.mode in ("read", "copy")

    @property
    def writes_dest(self) -> bool:
        return self.mode in ("write", "copy")

    def space_needed(self) -> int:
        return self.size * (int(self.reads_source) + int(self.writes_dest))

    def prepare(self) -> None:
        # Page-aligned (see loops/buffers.py) and filled with random bytes: that touches every
        # page before timing, and gives the write mode a pattern the check can recognise.
        self.buffer = page_aligned_buffer(self.block)
        # What one repetition touches: the file(s) in the page cache and the buffer. Whether it
        # fits the last-level cache decides whether a warm pass measures that cache or DRAM.
        self._working_set = working_set(self.space_needed() + self.block)
        if self.reads_source:
            # A case made by hand (tests, old plans) may not name it: its default is the old behaviour.
            write_bs = self.case.get("source_write_bs", _CHUNK)
            self.source_digest = create_random_file(self.source_path, self.size, write_bs)

    def before_rep(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {"resident_before": math.nan, "cache_verified": None}
        if self.reads_source:
            self._source = os.open(self.source_path, os.O_RDONLY | os.O_CLOEXEC)
            metrics = cache.cache_metrics(self.source_path, self.cache_state, self._source)
        if self.writes_dest:
            if self.dest_path.exists():
                self.dest_path.unlink()
            self._dest = _create_exclusive(self.dest_path)
        return metrics

    def run_once(self) -> dict[str, Any]:
        if self.mode == "read":
            assert self._source is not None
            moved, reads = self.loops.read_all(self._source, self.buffer)
            self._last = {"bytes": moved, "ops": reads}
        elif self.mode == "write":
            assert self._dest is not None
            moved, writes = self.loops.write_all(self._dest.fileno(), self.buffer, self.size)
            self._last = {"bytes": moved, "ops": writes}
        else:
            assert self._source is not None and self._dest is not None
            moved, reads, writes = self.loops.copy_all(self._source, self._dest.fileno(), self.buffer)
            self._last = {"bytes": moved, "ops": reads + writes}
        return self._last

    def after_rep(self) -> dict[str, Any]:
        if self._source is not None:
            os.close(self._source)
            self._source = None
        if self._dest is not None:
            # Untimed write-back, so this repetition's dirty pages do not slow the next one.
            os.fsync(self._dest.fileno())
            self._dest.close()
            self._dest = None
        return {"integrity_ok": self._integrity_ok(), **self._working_set}

    def _integrity_ok(self) -> bool:
        if self._last.get("bytes") != self.size:
            return False
        if self.mode == "copy":
            return file_digest(self.dest_path) == self.source_digest
        if self.mode == "write":
            if self._pattern is None:
                self._pattern = PatternCheck(self.buffer)
            return self._pattern.matches(self.dest_path, self.size)
        return True

    def teardown(self) -> None:
        if self._source is not None:
            os.close(self._source)
        if self._dest is not None:
            self._dest.close()
        self._source = self._dest = None
        for path in (self.source_path, self.dest_path):
            path.unlink(missing_ok=True)


def _mode_cases(summary: pd.DataFrame, mode: str) -> dict[str, Any] | None:
    """The parameters selecting one sweep of ``mode`` (warm cache where there is one), or None
    when fewer than two buffer sizes were measured."""
    from iobench import explain as ex

    where: dict[str, Any] = {"mode": mode}
    if mode != "write" and ex.distinct(summary, "bs", mode=mode, cache="warm"):
        where["cache"] = "warm"
    elif mode != "write" and ex.distinct(summary, "bs", mode=mode, cache="cold"):
        where["cache"] = "cold"
    sizes = [
        bs for bs in ex.distinct(summary, "bs", **where) if ex.samples(summary, "bytes_per_s", bs=bs, **where)
    ]
    return where if len(sizes) >= 2 else None


def _sweep_sentence(experiment: Any, summary: pd.DataFrame, where: dict[str, Any]) -> str:
    """Smallest against largest buffer, the tested plateau, and the calls-or-bytes verdict."""
    from iobench import explain as ex
    from iobench.units import format_rate

    sizes = [
        bs for bs in ex.distinct(summary, "bs", **where) if ex.samples(summary, "bytes_per_s", bs=bs, **where)
    ]
    small, large = where | {"bs": sizes[0]}, where | {"bs": sizes[-1]}

    def name(case: dict[str, Any]) -> str:
        return ex.fmt(experiment, "bs", case["bs"])

    def rate(case: dict[str, Any]) -> str:
        return format_rate(ex.one(summary, "bytes_per_s", **case))

    label = where["mode"] + (f" ({where['cache']} cache)" if "cache" in where else "")
    found = ex.difference(summary, "bytes_per_s", small, large)
    sentence = (
        f"{label}: {rate(small)} at bs={name(small)}, {rate(large)} at bs={name(large)} (bs={name(large)} "
        f"against bs={name(small)}: {ex.contrast(found, higher_is_better=True)})"
    )
    stop = ex.tested_plateau(summary, "bs", **where)
    if stop is not None and not stop.decided:
        sentence += "; too few repetitions to tell where a larger buffer stops paying"
    elif stop is not None and stop.stop is None:
        sentence += f"; every larger buffer still paid a measurable 5% or more up to {name(large)}"
    elif stop is not None:
        sentence += (
            f"; beyond bs={ex.fmt(experiment, 'bs', stop.stop)} the next size did not gain a measurable 5%"
        )
    sentence += "."
    verdict = _calls_or_bytes(experiment, summary, small, large, ex.direction(found))
    return sentence + (f" {verdict}" if verdict else "")


#: Only above this share of the smallest buffer's time spent per call does the data say
#: "most of the cost is the calls".
_CALLS_DOMINATE = 0.5


def _calls_or_bytes(
    experiment: Any, summary: pd.DataFrame, small: dict[str, Any], large: dict[str, Any], faster: int | None
) -> str | None:
    """Whether the smallest buffer's time goes to its calls: both passes move the same bytes,
    so the part of the small pass's time beyond the whole large pass cannot be the bytes."""
    from iobench import explain as ex
    from iobench.units import format_duration

    slow, quick = ex.one(summary, "elapsed_ns", **small), ex.one(summary, "elapsed_ns", **large)
    calls_small, calls_large = ex.one(summary, "ops", **small), ex.one(summary, "ops", **large)
    split = ex.cpu_split_text(summary, **small)
    at = f"At bs={ex.fmt(experiment, 'bs', small['bs'])}"
    split_text = f"; {split}" if split else ""
    if not (slow and quick and calls_small and calls_large):
        return f"{at}{split_text.replace('; ', ' ', 1)}." if split else None
    calls = f"{calls_small:,.0f} calls against {calls_large:,.0f}"
    if faster is None:
        return f"{at} the pass made {calls}{split_text}."
    if faster == 0:
        return f"{at} the pass made {calls} yet took no measurably longer: per-call cost did not show{split_text}."
    if faster == -1:
        return f"{at} the pass made {calls} and was still faster{split_text}."
    share = 1 - quick / slow
    if calls_small >= 10 * calls_large and share > _CALLS_DOMINATE:
        return (
            f"{at} the pass made {calls} and took {format_duration(slow)} against {format_duration(quick)} for "
            f"the same bytes: at least {int(share * 100)}% of its time is per-call cost, so most of the cost is the calls, not "
            f"the bytes{split_text}."
        )
    return (
        f"{at} the pass made {calls}; per-call cost is at least {int(share * 100)}% of its time{split_text}."
    )


def _book_note(experiment: Any, summary: pd.DataFrame, where: dict[str, Any]) -> str:
    """TLPI's claim that about 4 KiB is close to optimal, quoted, and what this run says."""
    from iobench import explain as ex

    quote = ex.cite(
        "TLPI §13.1, Table 13-1",
        ex.TLPI,
        "copying a 100 MB file, a 4096-byte buffer is close to optimal; beyond it the syscall cost is small "
        "next to copying the data, so larger buffers bring no notable gain (ext2 with 4096-byte blocks, "
        "Linux 2.6.30)",
    )
    largest = max(ex.distinct(summary, "bs", **where))
    if largest <= 4096:
        return quote + ". This run stops at or below 4 KiB, so it cannot tell."
    found = ex.difference(summary, "bytes_per_s", where | {"bs": 4096}, where | {"bs": largest})
    if found is None:
        return quote + ". This run did not measure bs=4KiB, so it cannot tell."
    name, outcome = ex.fmt(experiment, "bs", largest), ex.contrast(found, higher_is_better=True)
    if ex.direction(found) == 1 and found.ratio >= 1 + ex.PLATEAU_GAIN:
        return (
            quote + f". Here larger buffers still paid: bs={name} was {outcome} than 4KiB, so the per-call "
            "cost is still visible at 4 KiB."
        )
    if ex.direction(found) is None:
        return quote + f". This run cannot tell: bs={name} against 4KiB, {outcome}."
    if ex.direction(found) == -1:
        return quote + f". This run agrees, and more: bs={name} was {outcome} than 4KiB."
    return quote + f". This run agrees: bs={name} against 4KiB, {outcome}."
