"""dirty-throttle: a writer that outruns write-back meets balance_dirty_pages (seed 003)."""

from __future__ import annotations

import bisect
import json
import math
import mmap
import os
import select
import shutil
import time
from array import array
from typing import TYPE_CHECKING, Any

from iobench.experiments import _settings, register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.loops.buffers import page_aligned_buffer
from iobench.metrics import INTEGRITY_OK, Metric
from iobench.osutil import sysfs, tuning
from iobench.osutil.children import Child, fork_child, ready
from iobench.osutil.files import open_new
from iobench.params import Kind, Param, choice_param, size_param
from iobench.units import parse_size

if TYPE_CHECKING:
    import pandas as pd

PAGE = mmap.PAGESIZE
#: vm.dirty_bytes a case may set ("found": the machine's thresholds as they are).
DIRTY_LIMITS = ("found", "8MiB", "32MiB", "128MiB", "512MiB", "2GiB")
#: What the sampler reads from /proc/vmstat at each tick.
SAMPLED = (
    "nr_dirty",
    "nr_writeback",
    "nr_dirtied",
    "nr_written",
    "nr_dirty_threshold",
    "nr_dirty_background_threshold",
)
#: The sampler stops on its own after this many samples (a parent that never said stop).
MAX_SAMPLES = 200_000
#: Leave at least half the free space to everyone else: the file is capped at this share.
FREE_SHARE = 0.5
_SAMPLER_WAIT_S = 60.0


def sample_vmstat(go_fd: int, stop_fd: int, interval_ns: int) -> list[tuple[int, ...]]:
    """The sampler (run in a forked child): after the go byte, /proc/vmstat's SAMPLED counters
    every ``interval_ns`` on the monotonic clock, plus one last sample when ``stop_fd`` becomes
    readable (a byte, or end of file when the parent is gone). Each sample is (t_ns, *SAMPLED)."""
    ready()
    os.read(go_fd, 1)
    start = time.monotonic_ns()
    samples: list[tuple[int, ...]] = []
    tick = 0
    while len(samples) < MAX_SAMPLES:
        now = time.monotonic_ns()
        values = sysfs.vmstat(SAMPLED)
        samples.append((now, *(values.get(name, 0) for name in SAMPLED)))
        tick += 1
        wait = max(0, start + tick * interval_ns - time.monotonic_ns())
        stop, _, _ = select.select([stop_fd], [], [], wait / 1e9)
        if stop:
            values = sysfs.vmstat(SAMPLED)
            samples.append((time.monotonic_ns(), *(values.get(name, 0) for name in SAMPLED)))
            break
    return samples


class Sampler:
    """The vmstat sampler as a forked child parked before the window: ``go`` (one byte,
    inside the window) starts it, ``stop`` (after the window) ends it and returns its samples.
    A child, not a thread: it never holds the measuring thread's interpreter lock or CPU."""

    def __init__(self, interval_ns: int) -> None:
        go_read, self._go = os.pipe()
        try:
            stop_read, self._stop = os.pipe()
        except BaseException:
            os.close(go_read)
            os.close(self._go)
            raise
        go_write, stop_write = self._go, self._stop

        def work() -> list[tuple[int, ...]]:
            os.close(go_write)
            os.close(stop_write)
            return sample_vmstat(go_read, stop_read, interval_ns)

        try:
            self.child: Child | None = fork_child(work, wait_ready=True)
        except BaseException:
            os.close(self._go)
            os.close(self._stop)
            raise
        finally:
            os.close(go_read)
            os.close(stop_read)

    def go(self) -> None:
        os.write(self._go, b"g")

    def stop(self) -> list[tuple[int, ...]]:
        """End sampling and collect the samples (the child is reaped)."""
        assert self.child is not None
        os.write(self._stop, b"s")
        try:
            samples, _ = self.child.wait(_SAMPLER_WAIT_S)
        finally:
            self.close()
        return samples

    def close(self) -> None:
        """Kill the child if it still runs and close the pipes (idempotent)."""
        if self.child is not None:
            self.child.kill()
            self.child = None
        for fd in (self._go, self._stop):
            if fd >= 0:
                os.close(fd)
        self._go = self._stop = -1


@register
class DirtyThrottle(Experiment):
    """Write a file larger than the dirty threshold and watch the kernel's dirty-page counters."""

    name = "dirty-throttle"
    summary = "a writer past vm.dirty_ratio: write rate over time, the throttling cliff, the final fsync"
    seed_idea = (
        "write() only dirties the page cache until dirty memory reaches a threshold (vm.dirty_ratio); then "
        "balance_dirty_pages makes the writer wait for write-back, so its rate falls to the disk's "
        "(TLPI §13.1; Documentation/admin-guide/sysctl/vm.rst)."
    )
    params = (
        Param(
            "threshold_multiple",
            Kind.INT,
            (2,),
            "File size as a multiple of the dirty threshold in force (nr_dirty_threshold), capped by max_bytes "
            "and by half the free space under --dir.",
            sweep=True,
            minimum=1,
            maximum=100,
        ),
        size_param("max_bytes", (4 << 30,), "Largest file a repetition writes.", minimum=1 << 20),
        choice_param(
            "dirty_limit",
            DIRTY_LIMITS,
            "vm.dirty_bytes during the case: found (the machine's thresholds) or a size, set as root with "
            "allow_tuning=yes and restored afterwards (the background threshold follows at half).",
            default=("found",),
        ),
        size_param("write_bs", (1 << 20,), "Bytes per write().", minimum=PAGE, maximum=1 << 30),
        Param(
            "samples_per_second",
            Kind.INT,
            (20,),
            "How often per second the sampler (a forked child) reads /proc/vmstat during the repetition; "
            "the cliff is found to within one interval.",
            sweep=True,
            minimum=1,
            maximum=1000,
        ),
        _settings.ALLOW_TUNING,
    )
    x_param = None
    table_axis = "dirty_limit"
    columns = (
        Column("Written", "bytes", "size"),
        Column("Elapsed", "elapsed_ns", "duration"),
        Column("Before the cliff", "rate_before_cliff", "rate"),
        Column("After the cliff", "rate_after_cliff", "rate"),
        Column("Cliff at", "cliff_written_bytes", "size"),
        Column("Final fsync", "fsync_ns", "duration"),
        Column("Dirty threshold", "dirty_threshold_bytes", "size"),
    )
    figures = (
        FigureSpec(
            "series", title="Write rate over the repetition", metric="throttle_series",
            metrics=("write_rate",), unit="rate", y_label="write rate",
        ),
        FigureSpec(
            "series", title="Dirty and write-back memory over the repetition", metric="throttle_series",
            metrics=("dirty_bytes", "writeback_bytes", "freerun_bytes", "dirty_threshold_bytes"), unit="size",
            y_label="memory",
        ),
    )  # fmt: skip
    metrics = (
        INTEGRITY_OK,
        Metric(
            "throttle_series",
            "Time series",
            "text",
            "JSON of the repetition's samples, each list one value per sample: t_ns (since the window "
            "started), written_bytes and write_rate (the writer's own progress), dirty_bytes, writeback_bytes, "
            "dirtied_bytes, written_back_bytes, dirty_threshold_bytes, background_threshold_bytes, "
            "freerun_bytes (from /proc/vmstat). A summary keeps the repetition of median elapsed time.",
        ),
        Metric(
            "write_ns", "Writes", "duration", "Time of the write() calls, before the final fsync.", "lower"
        ),
        Metric(
            "fsync_ns", "Final fsync", "duration", "Time of the final fsync (what was still dirty).", "lower"
        ),
        Metric(
            "cliff_ns",
            "Cliff at (time)",
            "duration",
            "When dirty + write-back memory first reached the throttle point (NaN: never).",
        ),
        Metric(
            "cliff_written_bytes",
            "Cliff at",
            "size",
            "Bytes the writer had written when dirty + write-back memory first reached the throttle point "
            "(freerun: halfway between the background and the dirty threshold).",
        ),
        Metric(
            "rate_before_cliff",
            "Before the cliff",
            "rate",
            "Write rate from the start to the cliff.",
            "higher",
        ),
        Metric(
            "rate_after_cliff",
            "After the cliff",
            "rate",
            "Write rate from the cliff to the last write.",
            "higher",
        ),
        Metric(
            "dirty_threshold_bytes",
            "Dirty threshold",
            "size",
            "nr_dirty_threshold at the start (pages x page size): where writers are throttled hardest.",
        ),
        Metric(
            "background_threshold_bytes",
            "Background threshold",
            "size",
            "nr_dirty_background_threshold at the start: where background write-back starts.",
        ),
        Metric(
            "peak_dirty_bytes",
            "Peak dirty + write-back",
            "size",
            "The largest dirty + write-back memory sampled.",
        ),
        Metric("samples_taken", "Samples", "count", "vmstat samples in the repetition's series."),
        Metric(
            "size_capped_by",
            "Size capped by",
            "text",
            "max_bytes or free_disk when the file is smaller than threshold_multiple x the threshold, else ''.",
        ),
        *_settings.SETTINGS_METRICS,
    )

    _fd: int | None = None
    _sampler: Sampler | None = None
    _tuned: tuning.Tuning | None = None

    def __init__(self, case: dict[str, Any], scratch: Any) -> None:
        super().__init__(case, scratch)
        self.size, self.capped_by = planned_size(case, scratch)

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        return frozenset({"allow_tuning"}) if case["dirty_limit"] == "found" else frozenset()

    def space_needed(self) -> int:
        return self.size

    def prepare(self) -> None:
        _settings.restore_left_over()
        if self.case["dirty_limit"] != "found":
            limit = parse_size(self.case["dirty_limit"])
            _settings.require_tuning(self.case, "vm.dirty_bytes")
            self._tuned = tuning.Tuning()
            original = sysfs.dirty_settings()
            # dirty_bytes and dirty_ratio exclude each other, and dirty_bytes refuses 0: put back
            # whichever was in force.
            if original["dirty_bytes"]:
                self._tuned.set(sysfs.VM / "dirty_bytes", str(limit))
            else:
                self._tuned.set(
                    sysfs.VM / "dirty_bytes",
                    str(limit),
                    sysfs.VM / "dirty_ratio",
                    str(original["dirty_ratio"]),
                )
        self.block: int = self.case["write_bs"]
        self.buffer = page_aligned_buffer(self.block)
        self.path = self.scratch / "dirty.bin"
        chunks = -(-self.size // self.block)
        self.stamps = array("q", bytes(8 * chunks))
        self.settings = _settings.settings_in_force(self.scratch, self._tuned)

    def before_rep(self) -> dict[str, Any]:
        self.path.unlink(missing_ok=True)
        # Untimed: the throttle point counts every dirty page of the system, not only ours, so
        # each repetition starts from what sync() leaves (the first sample records it).
        os.sync()
        self._fd = open_new(self.path)
        self._sampler = Sampler(10**9 // self.case["samples_per_second"])
        return dict(self.settings) | {"size_capped_by": self.capped_by}

    def run_once(self) -> dict[str, Any]:
        assert self._fd is not None and self._sampler is not None
        fd, view, stamps, clock = self._fd, memoryview(self.buffer), self.stamps, time.monotonic_ns
        block, size = self.block, self.size
        self._start = start = clock()
        self._sampler.go()
        written = calls = 0
        index = 0
        while written < size:
            done = os.write(fd, view[: min(block, size - written)])
            written += done
            calls += 1
            if written >= (index + 1) * block or written == size:
                stamps[index] = clock()
                index += 1
        self._writes_end = clock()
        os.fsync(fd)
        self._end = clock()
        self._written = written
        return {
            "bytes": written,
            "ops": calls + 1,
            "write_ns": self._writes_end - start,
            "fsync_ns": self._end - self._writes_end,
        }

    def after_rep(self) -> dict[str, Any]:
        assert self._sampler is not None and self._fd is not None
        samples = self._sampler.stop()
        self._sampler = None
        os.close(self._fd)
        self._fd = None
        series = build_series(samples, self.stamps, self.block, self._start, self._written)
        out = cliff(series, self._writes_end - self._start)
        out |= {
            "throttle_series": json.dumps(series, separators=(",", ":")),
            "integrity_ok": self._written == self.size and os.stat(self.path).st_size == self.size,
            "samples_taken": len(series["t_ns"]),
        }
        self.path.unlink(missing_ok=True)
        return out

    def teardown(self) -> None:
        try:
            if self._sampler is not None:
                self._sampler.close()
                self._sampler = None
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        finally:
            _settings.restore(self._tuned)

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Per case: where the cliff came and the rates on each side of it (tested), or why there
        was none (the file stayed below the throttle point); and the final fsync's share."""
        from iobench import explain as ex

        out = []
        for limit in DIRTY_LIMITS:
            for multiple in ex.distinct(summary, "threshold_multiple", dirty_limit=limit):
                case = {"dirty_limit": limit, "threshold_multiple": multiple}
                sentence = _case_sentence(cls, summary, case)
                if sentence:
                    out.append(sentence)
        return out


def planned_size(case: dict[str, Any], scratch: Any) -> tuple[int, str]:
    """The file size: threshold_multiple x the dirty threshold that will be in force, capped by
    max_bytes and by FREE_SHARE of the free space; and what capped it ('' when nothing did)."""
    if case["dirty_limit"] != "found":
        threshold = parse_size(case["dirty_limit"])
    else:
        threshold = sysfs.vmstat(("nr_dirty_threshold",)).get("nr_dirty_threshold", 0) * PAGE
    wanted = max(case["threshold_multiple"] * threshold, case["write_bs"])
    free = int(shutil.disk_usage(scratch).free * FREE_SHARE)
    size, capped_by = wanted, ""
    if case["max_bytes"] < size:
        size, capped_by = case["max_bytes"], "max_bytes"
    if free < size:
        size, capped_by = max(free - free % PAGE, PAGE), "free_disk"
    return size, capped_by


def build_series(
    samples: list[tuple[int, ...]], stamps: array, block: int, start: int, written: int
) -> dict[str, list[float]]:
    """The repetition's time series (base units) from the sampler's samples and the writer's
    completion times of each ``block``: at each sample, how much the writer had written, its
    rate since the previous sample, and the kernel's counters in bytes."""
    done_at = [t for t in stamps[: -(-written // block)] if t]
    series: dict[str, list[float]] = {key: [] for key in SERIES_KEYS}
    if not samples:
        return series
    first = dict(zip(SAMPLED, samples[0][1:], strict=True))
    previous_t, previous_written = start, 0
    for sample in samples:
        t = sample[0]
        values = dict(zip(SAMPLED, sample[1:], strict=True))
        finished = min(bisect.bisect_right(done_at, t) * block, written)
        span = t - previous_t
        rate = (finished - previous_written) / (span / 1e9) if span > 0 else 0.0
        dirty_limit = values["nr_dirty_threshold"] * PAGE
        background = values["nr_dirty_background_threshold"] * PAGE
        series["t_ns"].append(t - start)
        series["written_bytes"].append(finished)
        series["write_rate"].append(rate)
        series["dirty_bytes"].append(values["nr_dirty"] * PAGE)
        series["writeback_bytes"].append(values["nr_writeback"] * PAGE)
        series["dirtied_bytes"].append((values["nr_dirtied"] - first["nr_dirtied"]) * PAGE)
        series["written_back_bytes"].append((values["nr_written"] - first["nr_written"]) * PAGE)
        series["dirty_threshold_bytes"].append(dirty_limit)
        series["background_threshold_bytes"].append(background)
        series["freerun_bytes"].append((dirty_limit + background) / 2)
        previous_t, previous_written = t, finished
    return series


SERIES_KEYS = (
    "t_ns",
    "written_bytes",
    "write_rate",
    "dirty_bytes",
    "writeback_bytes",
    "dirtied_bytes",
    "written_back_bytes",
    "dirty_threshold_bytes",
    "background_threshold_bytes",
    "freerun_bytes",
)


def cliff(series: dict[str, list[float]], writes_ns: int) -> dict[str, float]:
    """Where dirty + write-back memory first reached the freerun point (halfway between the
    background and the dirty threshold, where balance_dirty_pages starts to throttle), and the
    writer's rate before and after it; NaN where it never did."""
    nan = math.nan
    out = {
        "cliff_ns": nan,
        "cliff_written_bytes": nan,
        "rate_before_cliff": nan,
        "rate_after_cliff": nan,
        "dirty_threshold_bytes": series["dirty_threshold_bytes"][0] if series["t_ns"] else nan,
        "background_threshold_bytes": series["background_threshold_bytes"][0] if series["t_ns"] else nan,
        "peak_dirty_bytes": nan,
    }
    if not series["t_ns"]:
        return out
    held = [d + w for d, w in zip(series["dirty_bytes"], series["writeback_bytes"], strict=True)]
    out["peak_dirty_bytes"] = max(held)
    for index, (t, amount) in enumerate(zip(series["t_ns"], held, strict=True)):
        if amount >= series["freerun_bytes"][index] and t <= writes_ns:
            written = series["written_bytes"][index]
            total = series["written_bytes"][-1]
            out["cliff_ns"], out["cliff_written_bytes"] = t, written
            if t > 0:
                out["rate_before_cliff"] = written / (t / 1e9)
            if writes_ns > t:
                out["rate_after_cliff"] = (total - written) / ((writes_ns - t) / 1e9)
            break
    return out


def _case_sentence(experiment: Any, summary: pd.DataFrame, case: dict[str, Any]) -> str | None:
    from iobench import explain as ex
    from iobench import stats
    from iobench.units import format_duration, format_rate, format_size

    moved = ex.one(summary, "bytes", **case)
    if moved is None:
        return None
    limit = (
        "the machine's thresholds"
        if case["dirty_limit"] == "found"
        else f"vm.dirty_bytes={case['dirty_limit']}"
    )
    threshold = ex.one(summary, "dirty_threshold_bytes", **case)
    head = f"With {limit}" + (f" (dirty threshold {format_size(threshold)})" if threshold else "")
    head += f", writing {format_size(moved)}"
    fsync, elapsed = ex.one(summary, "fsync_ns", **case), ex.one(summary, "elapsed_ns", **case)
    tail = (
        f" The final fsync took {format_duration(fsync)} of the {format_duration(elapsed)}."
        if fsync is not None and elapsed
        else ""
    )
    before = ex.samples(summary, "rate_before_cliff", **case)
    after = ex.samples(summary, "rate_after_cliff", **case)
    at = ex.one(summary, "cliff_written_bytes", **case)
    if at is None or not before or not after:
        peak = ex.one(summary, "peak_dirty_bytes", **case)
        reason = f" (peak dirty + write-back {format_size(peak)})" if peak is not None else ""
        capped = _capped_text(summary, case)
        return (
            f"{head}: dirty memory never reached the throttle point{reason}, so no cliff shows{capped}.{tail}"
        )
    found = stats.difference(before, after)
    return (
        f"{head}: the throttle point came after {format_size(at)}; the writer ran at "
        f"{format_rate(stats.median(before))} before it and {format_rate(stats.median(after))} after "
        f"(after against before: {ex.contrast(found, higher_is_better=True)}).{tail}"
    )


def _capped_text(summary: pd.DataFrame, case: dict[str, Any]) -> str:
    """Why the file was smaller than asked, when it was (the row's size_capped_by)."""
    from iobench import explain as ex

    rows = ex.select(summary, **case)
    capped = str(rows["size_capped_by"].iloc[0]) if "size_capped_by" in rows and len(rows) else ""
    words = {"max_bytes": "max_bytes", "free_disk": "half the free disk space"}
    return f" (the file was capped by {words[capped]})" if capped in words else ""
