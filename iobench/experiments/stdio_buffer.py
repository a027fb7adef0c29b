"""stdio-buffer: user-space buffering turns many small writes into few syscalls (seed 002)."""

from __future__ import annotations

import contextlib
import io
import os
from typing import TYPE_CHECKING, Any

from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.metrics import INTEGRITY_OK
from iobench.metrics import Metric as M
from iobench.osutil.files import open_new
from iobench.osutil.verify import file_matches_pattern
from iobench.params import Kind, Param, size_param

if TYPE_CHECKING:
    import pandas as pd

MIB = 1 << 20


@register
class StdioBuffer(Experiment):
    """Write many small records through Python's BufferedWriter (setvbuf's analogue)."""

    name = "stdio-buffer"
    summary = "small records through a buffered writer of size N (0 = one write() per record)"
    seed_idea = (
        "stdio keeps a user-space buffer (setvbuf sets its size) so that many small fwrite()s "
        "become few write() syscalls; fflush forces one early (TLPI §13.2)."
    )
    params = (
        Param(
            "records",
            Kind.INT,
            (50_000,),
            "Records written per repetition.",
            sweep=True,
            minimum=1,
            maximum=10**10,
        ),
        Param("record_size", Kind.SIZE, (100,), "Bytes per record.", sweep=True, minimum=1, maximum=1 << 30),
        size_param(
            "buffer_size",
            (0, 512, 4096, 65536),
            "Buffer of the writer, like setvbuf; 0 = unbuffered: one os.write per record.",
            minimum=0,
            maximum=1 << 30,
        ),
        Param(
            "flush_every",
            Kind.INT,
            (0,),
            "Flush after every K records (0: never, until close).",
            sweep=True,
            minimum=0,
            maximum=10**10,
        ),
    )
    x_param = "buffer_size"
    series_params = ("flush_every",)
    throughput_figure = True
    columns = (
        Column("Elapsed", "elapsed_ns", "duration"),
        Column("Per record", "elapsed_ns", "duration", per="records_written"),
        Column("write()s", "syscalls_write"),
        Column("write()s/MiB", "syscalls_write", "ratio", per="bytes", scale=MIB),
        Column("Total CPU", "cpu_ns", "duration"),
        Column("System CPU", "sys_ns", "duration"),
        Column("Throughput", "bytes_per_s", "rate"),
    )

    figures = (
        FigureSpec("throughput", title="Throughput vs buffer size"),
        FigureSpec(
            "metric", title="write() calls per MiB", metric="syscalls_write", per="bytes", scale=MIB,
            log_y=True, y_label="write() calls per MiB",
        ),
    )  # fmt: skip

    metrics = (
        INTEGRITY_OK,
        M("records_written", "Records", "count", "Records written."),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Smallest against largest buffer (write() calls counted, speed tested), where a larger
        buffer stops paying, and what flushing every K records costs."""
        from iobench import explain as ex

        where: dict[str, Any] = {"flush_every": 0} if not ex.select(summary, flush_every=0).empty else {}
        sizes = [
            b
            for b in ex.distinct(summary, "buffer_size", **where)
            if ex.samples(summary, "bytes_per_s", buffer_size=b, **where)
        ]
        if len(sizes) < 2:
            return []
        small, large = where | {"buffer_size": sizes[0]}, where | {"buffer_size": sizes[-1]}
        sentence = (
            f"buffer_size={ex.fmt(cls, 'buffer_size', large['buffer_size'])} against "
            f"{ex.fmt(cls, 'buffer_size', small['buffer_size'])}"
        )
        calls_small = ex.one(summary, "syscalls_write", **small)
        calls_large = ex.one(summary, "syscalls_write", **large)
        if calls_small is not None and calls_large is not None:
            change = "cut" if calls_large < calls_small else "raised" if calls_large > calls_small else "left"
            sentence += (
                f" {change} write() calls from {calls_small:,.0f} to {calls_large:,.0f}"
                if change != "left"
                else f" left write() calls at {calls_small:,.0f}"
            )
        found = ex.difference(summary, "bytes_per_s", small, large)
        out = [f"{sentence}; writing the records: {ex.contrast(found, higher_is_better=True)}."]
        stop = ex.tested_plateau(summary, "buffer_size", **where)
        if stop is not None and not stop.decided:
            out.append("Too few repetitions to tell where a larger buffer stops paying.")
        elif stop is not None and stop.stop is not None:
            out.append(
                f"Past buffer_size={ex.fmt(cls, 'buffer_size', stop.stop)} the next size did not gain a "
                "measurable 5%."
            )
        flushed = _flush_sentence(cls, summary, large)
        if flushed:
            out.append(flushed)
        return out

    _raw: io.FileIO | None = None
    _sink: Any = None

    def space_needed(self) -> int:
        return self.case["records"] * self.case["record_size"]

    def prepare(self) -> None:
        self.record = os.urandom(self.case["record_size"])
        self.total = self.case["records"] * self.case["record_size"]
        self.path = self.scratch / "records.bin"

    def before_rep(self) -> dict[str, Any]:
        self.path.unlink(missing_ok=True)
        self._raw = io.FileIO(open_new(self.path), "wb", closefd=True)
        size = self.case["buffer_size"]
        # Unbuffered: the raw file, one write(2) per record. Buffered: the writer (its buffer
        # allocated, its position read) is made before the clock; only records go through it.
        self._sink: Any = self._raw if size == 0 else io.BufferedWriter(self._raw, buffer_size=size)
        return {}

    def run_once(self) -> dict[str, Any]:
        assert self._raw is not None
        every, record, sink = self.case["flush_every"], self.record, self._sink
        write = sink.write
        if every:
            flush = sink.flush
            for index in range(1, self.case["records"] + 1):
                write(record)
                if index % every == 0:
                    flush()
        else:
            for _ in range(self.case["records"]):
                write(record)
        sink.flush()  # the tail still in the buffer is part of writing the records
        return {"bytes": self.total, "ops": self.case["records"]}

    def after_rep(self) -> dict[str, Any]:
        assert self._raw is not None
        if self._sink is not self._raw:
            self._sink.detach()  # hand the raw file back without closing it
        self._sink = None
        self._raw.close()
        self._raw = None
        return {
            "records_written": self.case["records"],
            "integrity_ok": file_matches_pattern(self.path, self.record, self.total),
        }

    def teardown(self) -> None:
        if self._sink is not None and self._sink is not self._raw:
            with contextlib.suppress(ValueError, OSError):
                self._sink.detach()  # else its finaliser would flush into a closed file
        self._sink = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None


def _flush_sentence(experiment: Any, summary: pd.DataFrame, unflushed: dict[str, Any]) -> str | None:
    """Flushing every K records at the largest buffer against never flushing, with the write()
    calls that show what a flush is."""
    from iobench import explain as ex

    size = unflushed["buffer_size"]
    every = [k for k in ex.distinct(summary, "flush_every", buffer_size=size) if k]
    if not every or unflushed.get("flush_every") != 0:
        return None
    flushed = {"buffer_size": size, "flush_every": every[0]}
    found = ex.difference(summary, "bytes_per_s", unflushed, flushed)
    if found is None:
        return None
    sentence = (
        f"Flushing every {every[0]:,} records at buffer_size={ex.fmt(experiment, 'buffer_size', size)}, "
        f"against never: {ex.contrast(found, higher_is_better=True)}"
    )
    calls_flushed = ex.one(summary, "syscalls_write", **flushed)
    calls = ex.one(summary, "syscalls_write", **unflushed)
    if calls_flushed is not None and calls is not None and calls_flushed > calls:
        sentence += (
            f", with {calls_flushed:,.0f} write() calls instead of {calls:,.0f}: a flush is a write() whether "
            "the buffer is full or not"
        )
    return sentence + "."
