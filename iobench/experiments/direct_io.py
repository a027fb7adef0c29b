"""direct-io: O_DIRECT skips the page cache and its copy (seeds 000 and 004)."""

from __future__ import annotations

import errno
import mmap
import os
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.engine.direct import DirectEvidence, direct_verdict, probe_for_case
from iobench.errors import UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec, cache_param
from iobench.hostinfo import working_set
from iobench.loops.buffers import page_aligned_buffer
from iobench.metrics import DIRECT_NOTE, DIRECT_VERIFIED, FITS_LLC, INTEGRITY_OK, RESIDENT_BEFORE, WORKING_SET
from iobench.metrics import Metric as M
from iobench.osutil.files import create_random_file
from iobench.osutil.verify import file_matches_pattern
from iobench.params import Kind, Param, choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

MIB = 1 << 20


@register
class DirectIo(Experiment):
    """Read or write a file with O_DIRECT (page-aligned buffer) or through the page cache."""

    name = "direct-io"
    summary = "O_DIRECT reads/writes with aligned buffers vs buffered IO, per block size"
    seed_idea = (
        "buffered IO copies between user memory and the page cache; O_DIRECT moves data between "
        "the device and the user's (aligned) buffer, skipping that copy and the cache (TLPI "
        "§13.6, open(2)). Where the kernel refuses it, the case says why."
    )
    params = (
        choice_param(
            "mode",
            ("read", "write"),
            "read: file -> buffer; write: buffer -> file.",
        ),
        choice_param(
            "io",
            ("direct", "buffered"),
            "direct: O_DIRECT; buffered: the page cache.",
        ),
        size_param(
            "file_size",
            (8 << 20,),
            "Bytes moved per repetition.",
        ),
        Param(
            "bs", Kind.SIZE, (4096, 65536, 1 << 20), "Bytes per call.", sweep=True, minimum=1, maximum=1 << 30
        ),
        choice_param(
            "align",
            ("aligned", "misaligned"),
            "aligned: the buffer starts on a page (anonymous mmap); misaligned: one byte past "
            "it, which O_DIRECT refuses with EINVAL on most filesystems.",
            default=("aligned",),
        ),
        cache_param(
            ("cold",),
            "Page-cache state before a read (direct reads skip it).",
        ),
    )
    x_param = "bs"
    series_params = ("mode", "io")
    throughput_figure = True
    columns = (
        Column("Elapsed", "elapsed_ns", "duration"),
        Column("Throughput", "bytes_per_s", "rate"),
        Column("Total CPU", "cpu_ns", "duration"),
        Column("System CPU", "sys_ns", "duration"),
        Column("Calls", "ops"),
        Column("Disk read", "disk_read_bytes", "size"),
        Column("Disk written", "disk_write_bytes", "size"),
        Column("Cached after", "resident_after", "percent"),
    )

    figures = (FigureSpec("throughput", title="O_DIRECT vs buffered throughput"),)

    metrics = (
        RESIDENT_BEFORE,
        INTEGRITY_OK,
        WORKING_SET,
        FITS_LLC,
        M(
            "resident_after",
            "Resident after",
            "fraction",
            "Fraction of the file in the page cache after the timed loop (O_DIRECT should leave it out).",
        ),
        DIRECT_VERIFIED,
        DIRECT_NOTE,
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """O_DIRECT against buffered IO per mode and bs, the trend only when the data shows one,
        and a warning where the page cache was not bypassed."""
        from iobench import explain as ex
        from iobench.units import format_rate

        out = []
        for mode in ("read", "write"):
            parts, trend = [], []
            for bs in ex.distinct(summary, "bs", mode=mode):
                direct = {"mode": mode, "io": "direct", "bs": bs, "align": "aligned"}
                buffered = {"mode": mode, "io": "buffered", "bs": bs}
                found = ex.difference(summary, "bytes_per_s", buffered, direct)
                if found is None:
                    continue
                parts.append(
                    f"{format_rate(ex.one(summary, 'bytes_per_s', **direct))} vs "
                    f"{format_rate(ex.one(summary, 'bytes_per_s', **buffered))} at bs={ex.fmt(cls, 'bs', bs)}, "
                    f"{ex.contrast(found, higher_is_better=True)}"
                )
                trend.append((bs, ex.direction(found)))
            if not parts:
                continue
            sentence = f"O_DIRECT {mode}s vs buffered: " + "; ".join(parts) + "."
            shape = _trend(cls, mode, trend)
            out.append(sentence + (f" {shape}" if shape else ""))
        bypass = _not_bypassed(cls, summary)
        if bypass:
            out.append(bypass)
        return out

    _fd: int | None = None
    _mapping: mmap.mmap | None = None

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        ignored = set()
        if case["io"] == "buffered":
            ignored.add("align")  # buffered IO takes any buffer
        if case["mode"] == "write":
            ignored.add("cache")  # a new file each repetition
        return frozenset(ignored)

    def space_needed(self) -> int:
        return self.case["file_size"]

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return True

    def prepare(self) -> None:
        self.size: int = self.case["file_size"]
        self.block: int = self.case["bs"]
        self.direct = self.case["io"] == "direct"
        self.path = self.scratch / "direct.bin"
        offset = 1 if self.direct and self.case["align"] == "misaligned" else 0
        # Page-aligned, what O_DIRECT needs; one page spare for the misaligned start.
        self._mapping = page_aligned_buffer(self.block + mmap.PAGESIZE)
        self.view = memoryview(self._mapping)[offset : offset + self.block]
        self.pattern = bytes(self.view)
        self._evidence: DirectEvidence | None = None
        # Buffered IO goes through the file's cached pages: cache or DRAM? (O_DIRECT skips them.)
        self._working_set = {} if self.direct else working_set(self.size + self.block)
        if self.direct:
            # Per case, in the case's own folder: does this filesystem really bypass the cache?
            self._evidence = probe_for_case(self.scratch)
        if self.case["mode"] == "read":
            create_random_file(self.path, self.size)

    def _open(self, flags: int) -> int:
        if self.direct:
            flags |= os.O_DIRECT
        try:
            return os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.EINVAL and self.direct:
                raise UnsupportedCase(
                    f"EINVAL: this filesystem refuses O_DIRECT at open ({exc.strerror})"
                ) from None
            raise

    def before_rep(self) -> dict[str, Any]:
        if self.case["mode"] == "read":
            self._resident_before = cache.set_cache_state(self.path, self.case["cache"])
            self._fd = self._open(os.O_RDONLY)
            return {"resident_before": self._resident_before}
        self.path.unlink(missing_ok=True)
        self._resident_before = 0.0
        self._fd = self._open(os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        return {}

    def run_once(self) -> dict[str, Any]:
        fd, block = self._fd, self.block
        assert fd is not None
        try:
            if self.case["mode"] == "read":
                # Straight into the aligned buffer: no bytes object, no extra copy.
                total, calls = self.loops.read_all(fd, self.view)
                return {"bytes": total, "ops": calls}
            total, calls = self.loops.write_all(fd, self.view, self.size)
            return {"bytes": total, "ops": calls}
        except OSError as exc:
            if exc.errno == errno.EINVAL and self.direct:
                raise UnsupportedCase(
                    f"EINVAL: O_DIRECT refused a {self.case['align']} buffer of {block} bytes "
                    f"(transfers must be aligned to the device's logical block size)"
                ) from None
            raise

    def after_rep(self) -> dict[str, Any]:
        assert self._fd is not None
        if self.case["mode"] == "write":
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        resident_after = cache.resident_fraction(self.path)
        metrics: dict[str, Any] = {"resident_after": resident_after, **self._working_set}
        if self.direct:
            metrics.update(self._direct_verdict(resident_after))
        if self.case["mode"] == "write":
            metrics["integrity_ok"] = file_matches_pattern(self.path, self.pattern, self.size)
        return metrics

    def _direct_verdict(self, resident_after: float) -> dict[str, Any]:
        """``direct_verified``: the probe saw O_DIRECT bypass the page cache, and this repetition
        did not fill it either; else ``direct_note`` says why the number is not a direct-IO one."""
        assert self._evidence is not None
        reason = self._evidence.reason()
        if not reason and resident_after > self._resident_before + 0.01:
            reason = (
                f"the file's page-cache residency rose from {self._resident_before:.0%} to "
                f"{resident_after:.0%} during the run"
            )
        return direct_verdict(reason, self.scratch, "this is a page-cache number, not a direct-IO number")

    def teardown(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        if self._mapping is not None:
            view = getattr(self, "view", None)
            if view is not None:
                view.release()
            self._mapping.close()


def _trend(experiment: Any, mode: str, trend: list[tuple[Any, int | None]]) -> str | None:
    """A sentence about how O_DIRECT fares as blocks grow, only for a shape the data shows:
    slower everywhere, never slower, or slower up to some bs and not from there on."""
    from iobench import explain as ex

    directions = [d for _, d in trend if d is not None]
    if len(trend) < 2 or len(directions) < len(trend):
        return None
    if all(d == -1 for d in directions):
        return f"O_DIRECT {mode}s were slower at every block size measured."
    if all(d >= 0 for d in directions):
        return f"O_DIRECT {mode}s were never measurably slower."
    first_ok = next(i for i, d in enumerate(directions) if d >= 0)
    if first_ok > 0 and all(d == -1 for d in directions[:first_ok]) and min(directions[first_ok:]) >= 0:
        return (
            f"O_DIRECT {mode}s were slower below bs={ex.fmt(experiment, 'bs', trend[first_ok][0])} and not "
            "measurably slower from there on."
        )
    return None


def _not_bypassed(experiment: Any, summary: pd.DataFrame) -> str | None:
    """Direct cases after which the file sat in the page cache anyway (or that the run's own
    check marked unverified): their numbers are not direct-IO numbers."""
    from iobench import explain as ex

    direct = ex.select(summary, io="direct")
    flagged = []
    for _, row in direct.iterrows():
        verified = ex.truth(row.get("direct_verified"))
        cached = row.get("resident_after")
        if verified is False or (ex.finite(cached) and cached >= 0.5):
            label = f"{row['mode']} bs={ex.fmt(experiment, 'bs', row['bs'])}"
            flagged.append(label + (f" ({cached:.0%} cached after)" if ex.finite(cached) else ""))
    if not flagged:
        return None
    return (
        "The page cache was not bypassed for O_DIRECT " + ", ".join(flagged) + ": the filesystem ignored or "
        "emulated O_DIRECT (tmpfs serves from RAM), so those are not direct-IO numbers."
    )
