"""stdio-buffer: user-space buffering turns many small writes into few syscalls (seed 002)."""

from __future__ import annotations

import contextlib
import io
import os
from typing import TYPE_CHECKING, Any

from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
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
        "002: stdio keeps a user-space buffer (setvbuf sets its size) so that many small "
        "fwrite()s become few write() syscalls; fflush forces one early."
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

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Unbuffered vs the largest buffer: syscalls saved, speed gained, where it stops paying."""
        from iobench import explain as ex

        rows = ex.select(summary, flush_every=0)
        rows = (rows if not rows.empty else summary).sort_values("buffer_size")
        if rows["buffer_size"].nunique() < 2:
            return []
        small, large = rows.iloc[0], rows.iloc[-1]
        name = ex.fmt(cls, "buffer_size", small["buffer_size"])
        out = [
            f"Going from buffer_size={name} to {ex.fmt(cls, 'buffer_size', large['buffer_size'])} cut "
            f"write() calls from {small['syscalls_write']:,.0f} to {large['syscalls_write']:,.0f} and made "
            f"writing the records {ex.times(large['bytes_per_s'] / small['bytes_per_s'])} faster."
        ]
        stop = ex.plateau(rows, "buffer_size")
        if stop is not None:
            out.append(f"Past buffer_size={ex.fmt(cls, 'buffer_size', stop)} the next size gains < 5%.")
        flushed = ex.select(summary, buffer_size=large["buffer_size"], flush_every=100)
        if not flushed.empty and flushed["bytes_per_s"].iloc[0] > 0:
            out.append(
                f"Flushing every 100 records costs {ex.times(large['bytes_per_s'] / flushed['bytes_per_s'].iloc[0])} "
                "at the largest buffer: an fflush is a write() whether the buffer is full or not."
            )
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
