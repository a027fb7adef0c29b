"""page-fault: demand paging and copy-on-write, counted by the kernel (seed 003)."""

from __future__ import annotations

import mmap
import os
import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.engine.counters import CounterProbe
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.metrics import CACHE_VERIFIED, RESIDENT_BEFORE
from iobench.metrics import Metric as M
from iobench.osutil.children import Child, fork_child, ready
from iobench.osutil.files import create_random_file
from iobench.params import choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

PAGE = mmap.PAGESIZE
_CHUNK = 1 << 20


_CHILD_WAIT_S = 120.0


@dataclass
class _PageHolder:
    """A forked child that keeps the parent's pages shared until ``release`` is closed."""

    child: Child
    release: int


def _fork_page_holder() -> _PageHolder:
    """Fork a child that maps every page of the parent and only waits: while it lives, each
    page the parent writes is copied first (COW). Returns once the child is parked in its wait,
    so its start-up never overlaps a timed window."""
    wait_read, wait_write = os.pipe()

    def hold() -> int:
        os.close(wait_write)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        ready()
        os.read(wait_read, 1)  # EOF when the parent closes its end: the repetition is over
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    try:
        child = fork_child(hold, wait_ready=True)
    except BaseException:
        os.close(wait_write)
        raise
    finally:
        os.close(wait_read)
    return _PageHolder(child, wait_write)


def _unshare_window_path(loops: Any, mapping: mmap.mmap) -> None:
    """After fork every private page of ours is shared with the child, so the first write to
    each one faults, the interpreter's own pages too (~80 faults the engine's counter reads
    would add to the window's count). Walk the path around a timed window once, a counter
    probe and a zero-page touch, so those pages are ours again and the window counts only
    the mapping's faults (a handful of stack and object pages remain)."""
    with CounterProbe() as probe:
        probe.after(probe.before())
    loops.touch_pages(mapping, 0, PAGE, True)


def _no_huge_pages(mapping: mmap.mmap) -> None:
    # One transparent huge page would stand for 512 faults; this experiment counts base pages.
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        mapping.madvise(mmap.MADV_NOHUGEPAGE)


@register
class PageFault(Experiment):
    """Touch every page of a mapping and let the kernel count the faults."""

    name = "page-fault"
    has_peers = True
    summary = "minor faults of fresh memory, COW faults after fork, major faults of a cold file"
    seed_idea = (
        "memory is given on first touch (demand paging); fork shares pages until one side writes "
        "(copy-on-write, fork(2)); a mapped file not in the page cache faults to disk."
    )
    params = (
        choice_param(
            "mode",
            ("anon", "cow", "file-cold", "file-warm"),
            "anon: write one byte per page of a fresh anonymous mapping; cow: write one byte per "
            "page of memory this process had filled and a forked child still shares, so every "
            "write copies the page (copy-on-write; the faults are timed where they happen, here); "
            "file-cold / file-warm: read one byte per page of a mapped file evicted from / "
            "resident in the page cache.",
        ),
        size_param(
            "size",
            (16 << 20,),
            "Bytes mapped (and pages touched).",
            minimum=PAGE,
        ),
        choice_param(
            "readahead",
            ("off", "on"),
            "file modes: 'off' madvises MADV_RANDOM so each page is its own fault; 'on' lets "
            "read-ahead and fault-around map many pages per fault.",
        ),
    )
    x_param = "size"
    series_params = ("mode", "readahead")
    columns = (
        Column("Pages", "pages"),
        Column("Minor/page", "minflt", "ratio", per="pages"),
        Column("Major/page", "majflt", "ratio", per="pages"),
        Column("Time/page", "elapsed_ns", "duration", per="pages"),
        Column("Disk read", "disk_read_bytes", "size"),
        Column("Resident before", "resident_before", "percent"),
    )

    figures = (
        FigureSpec("metric", title="Faults per page", metrics=("minflt", "majflt"), per="pages",
                   unit="ratio", y_label="faults per page"),
        FigureSpec("metric", title="Time per page", metric="elapsed_ns", per="pages", unit="duration", log_y=True),
    )  # fmt: skip

    metrics = (
        RESIDENT_BEFORE,
        CACHE_VERIFIED,
        M("pages", "Pages", "count", "Pages touched in the repetition."),
        M(
            "holder_minflt",
            "Holder faults",
            "count",
            "cow: minor faults of the child that keeps the pages shared (its own interpreter's, not the mapping's).",
        ),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Faults per page of fresh memory, COW after fork and a cold file (read-ahead off/on),
        named demand paging / copy-on-write only when the counts are one per page; time per page
        with and without read-ahead tested."""
        from iobench import explain as ex

        out = []
        anon = ex.value(summary, "minflt", per="pages", mode="anon")
        if anon is not None:
            out.append(
                f"Touching fresh anonymous memory took {anon:.2f} minor faults per page"
                + _per_page(anon, "demand paging: each page is given on its first touch")
                + "."
            )
        cow = ex.value(summary, "minflt", per="pages", mode="cow")
        if cow is not None:
            out.append(
                f"After fork, writing pages still shared with the child took {cow:.2f} minor faults per page"
                + _per_page(cow, "copy-on-write: each shared page is copied when first written")
                + "."
            )
        off = {"mode": "file-cold", "readahead": "off"}
        on = {"mode": "file-cold", "readahead": "on"}
        major_off = ex.value(summary, "majflt", per="pages", **off)
        if major_off is not None:
            sentence = (
                f"A cold file-backed mapping without read-ahead took {major_off:.2f} major faults per page"
            )
            major_on = ex.value(summary, "majflt", per="pages", **on)
            minor_on = ex.value(summary, "minflt", per="pages", **on)
            if major_on is not None and minor_on is not None:
                sentence += f"; with read-ahead {major_on + minor_on:.3f} faults per page in all"
                found = ex.difference(summary, "elapsed_ns", off, on, per="pages")
                if found is not None:
                    sentence += f", and its time per page against without: {ex.contrast(found)}"
            out.append(sentence + ".")
        return out

    # Defaults so teardown works even when prepare never ran.
    _mapping: mmap.mmap | None = None
    _child: _PageHolder | None = None

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        return frozenset({"readahead"}) if case["mode"] in ("anon", "cow") else frozenset()

    def space_needed(self) -> int:
        return self.case["size"] if self.case["mode"].startswith("file") else 0

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return True

    def prepare(self) -> None:
        self.mode: str = self.case["mode"]
        self.pages: int = self.case["size"] // PAGE
        self.length = self.pages * PAGE
        self.path = self.scratch / "mapped.bin"
        if self.mode.startswith("file"):
            create_random_file(self.path, self.length)

    def before_rep(self) -> dict[str, Any]:
        if self.mode == "anon":
            # Private, like malloc'd memory (a shared anonymous map is shmem-backed).
            self._mapping = mmap.mmap(-1, self.length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            _no_huge_pages(self._mapping)
            return {"pages": self.pages}
        if self.mode == "cow":
            self._mapping = mmap.mmap(-1, self.length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            _no_huge_pages(self._mapping)
            self.loops.touch_pages(self._mapping, self.pages, PAGE, True)  # we own every page
            self._child = _fork_page_holder()
            _unshare_window_path(self.loops, self._mapping)
            return {"pages": self.pages}
        state = "cold" if self.mode == "file-cold" else "warm"
        metrics = cache.cache_metrics(self.path, state)
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            self._mapping = mmap.mmap(fd, self.length, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        if self.case["readahead"] == "off":
            self._mapping.madvise(mmap.MADV_RANDOM)
        return {"pages": self.pages, **metrics}

    def run_once(self) -> dict[str, Any]:
        # cow: a forked child still maps every page, so each write here copies the page
        # (copy-on-write): the faults happen in this thread, inside the engine's window.
        assert self._mapping is not None
        self.loops.touch_pages(self._mapping, self.pages, PAGE, self.mode in ("anon", "cow"))
        return {"bytes": self.length, "ops": self.pages}

    def after_rep(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if self._child is not None:
            holder, self._child = self._child, None
            os.close(holder.release)
            minflt, _ = holder.child.wait(_CHILD_WAIT_S)
            # The holder only sleeps: its faults are its own interpreter's, never the mapping's.
            metrics = {"holder_minflt": minflt}
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None
        return metrics

    def teardown(self) -> None:
        if self._child is not None:
            os.close(self._child.release)
            self._child.child.kill()
            self._child = None
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None


def _per_page(faults: float, meaning: str) -> str:
    """`` (demand paging ...)`` when the count is about one per page, else what it is instead."""
    if 0.9 <= faults <= 1.1:
        return f" ({meaning})"
    if faults < 0.9:
        # Every page was touched, so each fault mapped 1/faults pages on average.
        mapped = f" (about {1 / faults:.0f} pages mapped per fault)" if faults > 0 else ""
        return f", fewer than one per page{mapped}"
    return ", more than one per page"
