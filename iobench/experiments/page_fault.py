"""page-fault: demand paging and copy-on-write, counted by the kernel (seed 003)."""

from __future__ import annotations

import mmap
import os
import resource
import time
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.osutil.children import fork_child
from iobench.osutil.files import create_random_file
from iobench.params import choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

PAGE = mmap.PAGESIZE
_CHUNK = 1 << 20


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
        "003: memory is given on first touch (demand paging); fork shares pages until one "
        "side writes (copy-on-write); a mapped file not in the page cache faults to disk."
    )
    params = (
        choice_param(
            "mode",
            ("anon", "cow", "file-cold", "file-warm"),
            "anon: write one byte per page of a fresh anonymous mapping; cow: a forked child "
            "writes to every page the parent had touched; file-cold / file-warm: read one byte "
            "per page of a mapped file evicted from / resident in the page cache.",
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
        Column("Child minor/page", "child_minflt", "ratio", per="pages"),
        Column("Time/page", "elapsed_ns", "duration", per="pages"),
        Column("Child time/page", "child_elapsed_ns", "duration", per="pages"),
        Column("Disk read", "disk_read_bytes", "size"),
        Column("Resident before", "resident_before", "percent"),
    )

    figures = (
        FigureSpec("metric", title="Faults per page", metrics=("minflt", "majflt", "child_minflt"), per="pages",
                   unit="ratio", y_label="faults per page"),
        FigureSpec("metric", title="Time per page", metric="elapsed_ns", per="pages", unit="duration"),
    )  # fmt: skip

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Faults per page: fresh memory, COW after fork, cold file with and without read-ahead."""
        from iobench import explain as ex

        out = []
        anon = ex.per(summary, "minflt", "pages", mode="anon")
        if anon is not None:
            out.append(
                f"Touching fresh anonymous memory took {anon:.2f} minor faults per page (demand paging)."
            )
        cow = ex.per(summary, "child_minflt", "pages", mode="cow")
        if cow is not None:
            out.append(f"After fork, the child's writes took {cow:.2f} minor faults per page: copy-on-write.")
        off = ex.per(summary, "majflt", "pages", mode="file-cold", readahead="off")
        on_major = ex.per(summary, "majflt", "pages", mode="file-cold", readahead="on")
        on_minor = ex.per(summary, "minflt", "pages", mode="file-cold", readahead="on")
        if off is not None:
            sentence = f"A cold file-backed mapping without read-ahead took {off:.2f} major faults per page"
            if on_major is not None and on_minor is not None:
                sentence += f"; with read-ahead {on_major + on_minor:.3f} faults per page in all"
            out.append(sentence + ".")
        return out

    # Defaults so teardown works even when prepare never ran.
    _mapping: mmap.mmap | None = None
    _go: tuple[int, int] | None = None
    _child: Any = None

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
        self._child_result: tuple[int, int, int] | None = None
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
            self.loops.touch_pages(self._mapping, self.pages, PAGE, True)  # the parent owns every page
            go_read, go_write = os.pipe()
            self._go = (go_read, go_write)
            mapping, pages, touch = self._mapping, self.pages, self.loops.touch_pages

            def child() -> tuple[int, int, int]:
                os.close(go_write)
                os.read(go_read, 1)  # wait for the parent's start signal
                before = resource.getrusage(resource.RUSAGE_SELF)
                start = time.perf_counter_ns()
                touch(mapping, pages, PAGE, True)
                elapsed = time.perf_counter_ns() - start
                after = resource.getrusage(resource.RUSAGE_SELF)
                return after.ru_minflt - before.ru_minflt, after.ru_majflt - before.ru_majflt, elapsed

            try:
                self._child = fork_child(child)
            finally:
                os.close(go_read)  # the child's end; teardown closes ours (self._go[1])
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
        if self.mode == "cow":
            assert self._go is not None
            os.write(self._go[1], b"g")
            self._child_result, self._child_usage = self._child.wait(120)
            return {"bytes": self.length, "ops": self.pages}
        assert self._mapping is not None
        self.loops.touch_pages(self._mapping, self.pages, PAGE, self.mode == "anon")
        return {"bytes": self.length, "ops": self.pages}

    def after_rep(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if self.mode == "cow":
            assert self._child_result is not None and self._go is not None
            minflt, majflt, elapsed = self._child_result
            metrics = {"child_minflt": minflt, "child_majflt": majflt, "child_elapsed_ns": elapsed}
            os.close(self._go[1])
            self._go = None
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None
        return metrics

    def teardown(self) -> None:
        if self._go is not None:
            os.close(self._go[1])
        if self._child is not None:
            self._child.kill()
        if self._mapping is not None:
            self._mapping.close()
