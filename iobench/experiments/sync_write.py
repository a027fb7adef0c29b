"""sync-write: what durability costs per write (TLPI Table 13-3, seed 002)."""

from __future__ import annotations

import os
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.loops.buffers import page_aligned_buffer
from iobench.metrics import INTEGRITY_OK, LAT_MAX, LAT_P50, LAT_P99
from iobench.metrics import Metric as M
from iobench.osutil.files import open_new
from iobench.osutil.verify import file_matches_pattern
from iobench.params import Kind, Param, choice_param, size_param
from iobench.stats import percentiles

if TYPE_CHECKING:
    import pandas as pd

MODES = ("buffered", "O_SYNC", "O_DSYNC", "fsync-each", "fdatasync-each", "fsync-end", "fsync-every-N")
_OPEN_FLAGS = {"O_SYNC": os.O_SYNC, "O_DSYNC": os.O_DSYNC}
# (sync call after a write: 1 fsync, 2 fdatasync; after every how many writes) per mode.
_SYNC_EACH = {"fsync-each": (1, 1), "fdatasync-each": (2, 1), "fsync-every-N": (1, 1)}


def fd_flags(fd: int) -> int:
    """The open flags the kernel holds for ``fd`` (from /proc/self/fdinfo), to prove O_SYNC got there."""
    text = Path(f"/proc/self/fdinfo/{fd}").read_text()
    for line in text.splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8)
    raise OSError(f"no flags line in /proc/self/fdinfo/{fd}")


@register
class SyncWrite(Experiment):
    """Write ``total`` bytes to a new file in ``bs`` writes, with one durability policy per case."""

    name = "sync-write"
    summary = "write to a new file with and without O_SYNC/fsync per buffer size (TLPI Table 13-3)"
    seed_idea = (
        "write() returns once the data is in the page cache; O_SYNC, O_DSYNC, fsync and "
        "fdatasync wait for the device, and that wait, not the copy, sets the price (TLPI §13.3, "
        "Table 13-3)."
    )
    params = (
        choice_param(
            "mode",
            MODES,
            "buffered: plain write(); O_SYNC / O_DSYNC: opened with that flag; fsync-each / "
            "fdatasync-each: that call after every write; fsync-end: one fsync at the end; "
            "fsync-every-N: fsync after every --sync-every writes.",
            default=("buffered", "O_SYNC", "fsync-each", "fdatasync-each", "fsync-end"),
        ),
        size_param(
            "total",
            (1_000_000,),
            "Bytes written per repetition (TLPI: 1 million).",
        ),
        size_param(
            "bs",
            (4096, 16384, 65536),
            "Bytes per write() call.",
            maximum=1 << 30,
        ),
        Param("sync_every", Kind.INT, (16,), "N for fsync-every-N.", sweep=True, minimum=1, maximum=10**9),
    )
    x_param = "bs"
    table_axis = "mode"
    series_params = ("mode",)
    columns = (
        Column("Elapsed", "elapsed_ns", "duration"),
        Column("vs buffered", "elapsed_ns", "ratio", relative_to=("mode", "buffered")),
        Column("Total CPU", "cpu_ns", "duration"),
        Column("write()s", "syscalls_write"),
        Column("Sync calls", "sync_calls"),
        Column("p50 write", "lat_p50_ns", "duration"),
        Column("p99 write", "lat_p99_ns", "duration"),
        Column("Max write", "lat_max_ns", "duration"),
        Column("Disk written", "disk_write_bytes", "size"),
    )

    figures = (
        FigureSpec("metric", title="Time to write the file", metric="elapsed_ns", unit="duration", log_y=True),
        FigureSpec(
            "percentiles", title="Per-write latency (p50, p99)", metrics=("lat_p50_ns", "lat_p99_ns"),
            unit="duration", log_y=True, x="mode",
        ),
    )  # fmt: skip

    metrics = (
        INTEGRITY_OK,
        LAT_P50,
        LAT_P99,
        LAT_MAX,
        M(
            "open_flags",
            "Open flags",
            "text",
            "The descriptor's flags as fcntl(F_GETFL) reported them (octal).",
        ),
        M("o_sync_set", "O_SYNC held", "flag", "The kernel kept O_SYNC on the descriptor.", kind="check"),
        M("o_dsync_set", "O_DSYNC held", "flag", "The kernel kept O_DSYNC on the descriptor.", kind="check"),
        M("sync_calls", "Sync calls", "count", "fsync/fdatasync calls made."),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """O_SYNC against buffered per bs, TLPI Table 13-3 quoted and compared like with like,
        fsync vs fdatasync, one fsync at the end vs one per write: every direction from the data."""
        from iobench import explain as ex

        if summary.empty or "bs" not in summary or "mode" not in summary:
            return []
        sizes = ex.distinct(summary, "bs")
        out = []
        parts = []
        for bs in sizes:
            found = ex.difference(
                summary, "elapsed_ns", {"mode": "buffered", "bs": bs}, {"mode": "O_SYNC", "bs": bs}
            )
            if found is not None:
                parts.append(f"{ex.contrast(found)} at bs={ex.fmt(cls, 'bs', bs)}")
        if parts:
            out.append("O_SYNC against plain buffered writes of the same bytes: " + "; ".join(parts) + ".")
        book = _tlpi_13_3(cls, summary)
        if book:
            out.append(book)
        pair = _first_pair(summary, sizes, "fsync-each", "fdatasync-each")
        if pair is not None:
            bs, found = pair
            sentence = (
                f"fdatasync after every write against fsync after every write at bs={ex.fmt(cls, 'bs', bs)}: "
            )
            sentence += ex.contrast(found)
            if ex.direction(found) == -1:
                sentence += " (fdatasync(2) may skip flushing metadata such as the modification time)"
            out.append(sentence + ".")
        pair = _first_pair(summary, sizes, "fsync-each", "fsync-end")
        if pair is not None:
            bs, found = pair
            out.append(
                f"One fsync at the end instead of one after every write at bs={ex.fmt(cls, 'bs', bs)}: "
                f"{ex.contrast(found)}."
            )
        return out

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return True

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        return frozenset() if case["mode"] == "fsync-every-N" else frozenset({"sync_every"})

    def space_needed(self) -> int:
        return self.case["total"]

    def prepare(self) -> None:
        self.mode: str = self.case["mode"]
        self.total: int = self.case["total"]
        self.block: int = self.case["bs"]
        self.writes = -(-self.total // self.block)
        self.path = self.scratch / "synced.bin"
        self.buffer = page_aligned_buffer(self.block)  # touched before timing
        self.latencies = array("q", bytes(8 * self.writes))
        self._fd: int | None = None

    def before_rep(self) -> dict[str, Any]:
        self.path.unlink(missing_ok=True)
        self._fd = open_new(self.path, os.O_WRONLY | _OPEN_FLAGS.get(self.mode, 0))
        # The directory entry is made durable before timing: only the data's cost is measured.
        os.fsync(self._fd)
        held = fd_flags(self._fd)
        return {
            "open_flags": oct(held),
            "o_sync_set": (held & os.O_SYNC) == os.O_SYNC,
            "o_dsync_set": bool(held & os.O_DSYNC),
        }

    def run_once(self) -> dict[str, Any]:
        fd = self._fd
        assert fd is not None
        sync, every = _SYNC_EACH.get(self.mode, (0, 1))
        if self.mode == "fsync-every-N":
            every = self.case["sync_every"]
        moved, writes, syncs = self.loops.write_sync(fd, self.buffer, self.total, sync, every, self.latencies)
        if self.mode == "fsync-end" or (self.mode == "fsync-every-N" and writes % every):
            os.fsync(fd)
            syncs += 1
        self._sync_calls = syncs
        return {"bytes": moved, "ops": writes}

    def after_rep(self) -> dict[str, Any]:
        assert self._fd is not None
        os.fsync(self._fd)  # untimed: the next repetition starts with nothing dirty
        os.close(self._fd)
        self._fd = None
        p50, p99, worst = percentiles(self.latencies, 0.50, 0.99, 1.0)
        return {
            "sync_calls": self._sync_calls,
            "lat_p50_ns": p50,
            "lat_p99_ns": p99,
            "lat_max_ns": worst,
            "integrity_ok": file_matches_pattern(self.path, self.buffer, self.total),
        }

    def teardown(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]


def _first_pair(summary: pd.DataFrame, sizes: list[float], a: str, b: str) -> tuple[float, Any] | None:
    """(bs, difference of mode b against mode a in elapsed time) at the first bs that has both."""
    from iobench import explain as ex

    for bs in sizes:
        found = ex.difference(summary, "elapsed_ns", {"mode": a, "bs": bs}, {"mode": b, "bs": bs})
        if found is not None:
            return bs, found
    return None


#: TLPI Table 13-3, BUF_SIZE 4096, 1 million bytes: elapsed seconds without and with O_SYNC
#: (the drive's write cache on), and TLPI's text for O_SYNC with the write cache disabled.
TLPI_BUFFERED_S, TLPI_O_SYNC_S, TLPI_O_SYNC_NO_CACHE_S = 0.01, 0.34, 4.0


def _tlpi_13_3(experiment: Any, summary: pd.DataFrame) -> str | None:
    """The book's two rows at 4096 bytes, quoted as a citation, and this run's factor against
    the comparable one (write cache on: 34x)."""
    from iobench import explain as ex

    found = ex.difference(
        summary, "elapsed_ns", {"mode": "buffered", "bs": 4096}, {"mode": "O_SYNC", "bs": 4096}
    )
    if found is None:
        return None
    book = TLPI_O_SYNC_S / TLPI_BUFFERED_S
    quote = ex.cite(
        "TLPI §13.3, Table 13-3",
        ex.TLPI,
        f"writing 1 million bytes in 4096-byte writes took {TLPI_BUFFERED_S:g} s without O_SYNC and "
        f"{TLPI_O_SYNC_S:g} s with it (about {book:.0f}x; the 0.01 s is rounded), on a disk with its write "
        f"cache on; with the disk's write cache disabled, the O_SYNC run took about {TLPI_O_SYNC_NO_CACHE_S:g} s",
    )
    where = ex.against_reference(found, book)
    if where is None:
        return (
            quote + f". This run has {ex.contrast(found)} at bs=4KiB, so it cannot be set against the book."
        )
    total = ex.one(summary, "total", mode="O_SYNC", bs=4096)
    wrote = (
        f", writing {ex.fmt(experiment, 'total', total)} per repetition"
        if total and total != 1_000_000
        else ""
    )
    return (
        quote + f". This run's O_SYNC factor at bs=4KiB{wrote} is {ex.interval_text(found)}: {where} the "
        f"book's {book:.0f}x for a disk whose write cache is on (whether this device's cache is on is not "
        "recorded here)."
    )
