"""huge-pages: one fault per 2 MiB instead of one per 4 KiB, when transparent huge pages apply (seed 003)."""

from __future__ import annotations

import ctypes
import mmap
import os
import resource
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.errors import UnsupportedCase
from iobench.experiments import _settings, register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.metrics import CACHE_VERIFIED, RESIDENT_BEFORE, Metric
from iobench.osutil import libc, sysfs, tuning
from iobench.osutil.files import create_random_file
from iobench.params import choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

PAGE = mmap.PAGESIZE
MIB = 1 << 20
#: The PMD size a huge page maps on x86-64 and arm64 with 4 KiB pages.
PMD = 2 * MIB
#: /proc/vmstat counters read around the window.
THP_COUNTERS = ("thp_fault_alloc", "thp_fault_fallback", "thp_file_alloc", "thp_file_mapped")
#: /proc/self/smaps_rollup fields read around the window (kB there, bytes in the rows).
ROLLUP = {"AnonHugePages:": "anon_huge_bytes", "FilePmdMapped:": "file_pmd_bytes"}
#: The system mode each case needs (None: any) and the madvise it applies to its mapping.
_NEEDS = {"never": None, "madvise": ("madvise", "always"), "always": ("always",)}
_ADVICE = {"never": getattr(mmap, "MADV_NOHUGEPAGE", None), "madvise": getattr(mmap, "MADV_HUGEPAGE", None)}


def smaps_rollup() -> dict[str, int]:
    """This process's huge-page mapped bytes (AnonHugePages, FilePmdMapped) right now."""
    out = dict.fromkeys(ROLLUP.values(), 0)
    with open("/proc/self/smaps_rollup") as handle:
        for line in handle:
            parts = line.split()
            if parts and parts[0] in ROLLUP:
                out[ROLLUP[parts[0]]] = int(parts[1]) * 1024
    return out


@register
class HugePages(Experiment):
    """Touch every page of a mapping with transparent huge pages off, asked for, or always on."""

    name = "huge-pages"
    summary = "page faults per MiB of anonymous and file mappings with THP never / madvise / always"
    seed_idea = (
        "a transparent huge page maps 2 MiB with one page-table entry and one fault where base pages take "
        "512 (Documentation/admin-guide/mm/transhuge.rst; madvise(2) MADV_HUGEPAGE)."
    )
    params = (
        choice_param(
            "memory",
            ("anon", "file-cold", "file-warm"),
            "anon: write one byte per page of fresh anonymous memory; file-cold / file-warm: read one byte per "
            "page of a shared mapping of a file (written in 1MiB writes) evicted from / resident in the page cache.",
        ),
        choice_param(
            "thp",
            ("never", "madvise", "always"),
            "never: MADV_NOHUGEPAGE on the mapping; madvise: MADV_HUGEPAGE (needs the system mode madvise or "
            "always); always: no advice, the system mode must be always. A mode the system does not allow is "
            "set as root with allow_tuning=yes and restored afterwards.",
        ),
        size_param("size", (64 << 20,), "Bytes mapped and touched.", minimum=PMD),
        _settings.ALLOW_TUNING,
    )
    x_param = None
    table_axis = "thp"
    series_params = ("memory",)
    columns = (
        Column("Elapsed", "elapsed_ns", "duration"),
        Column("Faults/MiB", "faults", "ratio", per="bytes", scale=MIB),
        Column("Time/MiB", "elapsed_ns", "duration", per="bytes", scale=MIB),
        Column("Huge-mapped", "huge_mapped_bytes", "percent", per="bytes"),
        Column("thp_fault_alloc", "thp_fault_alloc"),
        Column("thp_file_mapped", "thp_file_mapped"),
        Column("THP mode", "setting_thp", "text"),
    )
    figures = (
        FigureSpec(
            "metric", title="Page faults per MiB touched", metric="faults", per="bytes", scale=MIB,
            unit="ratio", log_y=True, y_label="faults per MiB", x="thp",
        ),
        FigureSpec(
            "metric", title="Time to touch one MiB", metric="elapsed_ns", per="bytes", scale=MIB,
            unit="duration", log_y=True, y_label="per MiB", x="thp",
        ),
    )  # fmt: skip
    metrics = (
        RESIDENT_BEFORE,
        CACHE_VERIFIED,
        Metric(
            "faults",
            "Faults",
            "count",
            "Minor + major page faults of the touch loop alone (getrusage(RUSAGE_THREAD) on each side of it).",
        ),
        Metric(
            "anon_huge_bytes",
            "AnonHugePages",
            "size",
            "Anonymous memory mapped by huge pages after the touch (/proc/self/smaps_rollup, change over the window).",
        ),
        Metric(
            "file_pmd_bytes",
            "FilePmdMapped",
            "size",
            "File memory mapped by PMD (huge) entries after the touch (/proc/self/smaps_rollup, change).",
        ),
        Metric(
            "huge_mapped_bytes",
            "Huge-mapped",
            "size",
            "anon_huge_bytes + file_pmd_bytes: bytes of the mapping that huge page entries map.",
        ),
        *(
            Metric(name, name, "count", f"/proc/vmstat {name} during the touch (system-wide).")
            for name in THP_COUNTERS
        ),
        Metric(
            "aligned_2m",
            "2 MiB aligned",
            "flag",
            "The mapping started on a 2 MiB boundary (huge pages can only map aligned ranges).",
        ),
        *_settings.SETTINGS_METRICS,
    )

    _address: int | None = None
    _view: memoryview | None = None
    _fd: int | None = None
    _tuned: tuning.Tuning | None = None

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return True

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        return frozenset({"allow_tuning"}) if case["thp"] == "never" else frozenset()

    def space_needed(self) -> int:
        return self.case["size"] if self.case["memory"] != "anon" else 0

    def prepare(self) -> None:
        _settings.restore_left_over()
        self.size: int = self.case["size"]
        self._set_mode()
        self.path = self.scratch / "mapped.bin"
        if self.case["memory"] != "anon":
            create_random_file(self.path, self.size)
        self.settings = _settings.settings_in_force(self.scratch, self._tuned)

    def _set_mode(self) -> None:
        """Refuse, or (root, allow_tuning=yes) change, a system mode the case cannot run under."""
        wanted = self.case["thp"]
        needs = _NEEDS[wanted]
        if needs is None:
            return
        mode = sysfs.thp_mode()
        if mode is None:
            raise UnsupportedCase(
                "this kernel has no transparent huge pages (/sys/kernel/mm/transparent_hugepage)"
            )
        if mode in needs:
            return
        path = sysfs.THP / "enabled"
        _settings.require_tuning(self.case, f"{path} (it is {mode})")
        self._tuned = tuning.Tuning()
        self._tuned.set(path, needs[0])

    def before_rep(self) -> dict[str, Any]:
        metrics: dict[str, Any] = dict(self.settings)
        if self.case["memory"] == "anon":
            self._address = libc.map_memory(self.size)
        else:
            metrics |= cache.cache_metrics(self.path, self.case["memory"].removeprefix("file-"))
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            self._address = libc.map_memory(self.size, fd=self._fd, prot=mmap.PROT_READ)
        advice = _ADVICE.get(self.case["thp"])
        if advice is not None and sysfs.thp_mode() is not None:
            libc.madvise(self._address, self.size, advice)
        # A byte view of the raw mapping for the touch loops (ints when indexed, like mmap's).
        self._view = memoryview((ctypes.c_char * self.size).from_address(self._address)).cast("B")
        metrics["aligned_2m"] = self._address % PMD == 0
        # Last before the window: the counters' change is the window's.
        self._rollup = smaps_rollup()
        self._vmstat = sysfs.vmstat(THP_COUNTERS)
        return metrics

    def run_once(self) -> dict[str, Any]:
        pages = self.size // PAGE
        # The touch's own fault count, from getrusage on each side of it (as page-lock counts mlock's).
        before = resource.getrusage(resource.RUSAGE_THREAD)
        self.loops.touch_pages(self._view, pages, PAGE, self.case["memory"] == "anon")
        after = resource.getrusage(resource.RUSAGE_THREAD)
        faults = after.ru_minflt - before.ru_minflt + after.ru_majflt - before.ru_majflt
        return {"bytes": pages * PAGE, "ops": pages, "faults": faults}

    def after_rep(self) -> dict[str, Any]:
        vmstat = sysfs.vmstat(THP_COUNTERS)
        rollup = smaps_rollup()
        out: dict[str, Any] = {name: vmstat.get(name, 0) - self._vmstat.get(name, 0) for name in THP_COUNTERS}
        out |= {name: rollup[name] - self._rollup[name] for name in ROLLUP.values()}
        out["huge_mapped_bytes"] = out["anon_huge_bytes"] + out["file_pmd_bytes"]
        self._release()
        return out

    def _release(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._address is not None:
            libc.unmap(self._address, self.size)
            self._address = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def teardown(self) -> None:
        try:
            self._release()
        finally:
            _settings.restore(self._tuned)

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Per kind of memory: faults per MiB and the share mapped huge, THP asked for against
        never (tested), and against one fault per base page or per 2 MiB."""
        out = []
        for memory in ("anon", "file-cold", "file-warm"):
            sentence = _memory_sentence(cls, summary, memory)
            if sentence:
                out.append(sentence)
        return out


def _faults_text(summary: pd.DataFrame, case: dict[str, Any]) -> str | None:
    from iobench import explain as ex

    per_mib = ex.value(summary, "faults", per="bytes", scale=MIB, **case)
    huge = ex.value(summary, "huge_mapped_bytes", per="bytes", **case)
    if per_mib is None:
        return None
    text = f"thp={case['thp']} {per_mib:.3g} faults per MiB"
    if huge is not None:
        text += f" ({huge:.0%} mapped huge)"
    return text


def _memory_sentence(experiment: Any, summary: pd.DataFrame, memory: str) -> str | None:
    from iobench import explain as ex

    parts = [
        text
        for thp in ("never", "madvise", "always")
        if (text := _faults_text(summary, {"memory": memory, "thp": thp}))
    ]
    if not parts:
        return None
    sentence = (
        f"{memory}: "
        + "; ".join(parts)
        + f" (one fault per {PAGE // 1024} KiB page would be {MIB // PAGE} per MiB, "
        f"one per 2 MiB huge page 0.5)"
    )
    never = {"memory": memory, "thp": "never"}
    for thp in ("madvise", "always"):
        found = ex.difference(summary, "faults", never, {"memory": memory, "thp": thp}, per="bytes")
        if found is not None:
            sentence += (
                f"; thp={thp} against never: {ex.contrast(found, words=('fewer faults', 'more faults'))}"
            )
            timed = ex.difference(summary, "elapsed_ns", never, {"memory": memory, "thp": thp}, per="bytes")
            if timed is not None:
                sentence += f" and {ex.contrast(timed)} per MiB"
    return sentence + "."
