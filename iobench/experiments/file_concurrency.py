"""file-concurrency: concurrent writers need their own offsets; readers gain from depth (seed 004)."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import resource
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec, cache_param
from iobench.osutil.files import create_random_file, open_new
from iobench.osutil.sockets import new_selector_loop
from iobench.params import Kind, Param, choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

MIB = 1 << 20
WRITE_MODES = ("write-racing", "pwrite", "append")
READ_MODES = ("pread-threads", "pread-asyncio")
_HEADER = struct.Struct("<QQQ")  # magic, writer, sequence
_MAGIC = int.from_bytes(b"iobench!", "little")
_JOIN_S = 120.0


def make_record(writer: int, sequence: int, size: int) -> bytes:
    """A record that names its writer and sequence number, filled so a torn write shows."""
    header = _HEADER.pack(_MAGIC, writer, sequence)
    fill = bytes([(writer * 31 + sequence) % 251]) * max(0, size - len(header))
    return (header + fill)[:size]


def count_records(data: bytes, size: int, writers: int, records: int) -> tuple[int, int]:
    """(distinct intact records found, torn or foreign records) in a file of fixed-size slots."""
    found: set[tuple[int, int]] = set()
    torn = 0
    for offset in range(0, len(data) - size + 1, size):
        slot = data[offset : offset + size]
        magic, writer, sequence = _HEADER.unpack_from(slot)
        if (
            magic == _MAGIC
            and writer < writers
            and sequence < records
            and slot == make_record(writer, sequence, size)
        ):
            found.add((writer, sequence))
        else:
            torn += 1
    return len(found), torn


@register
class FileConcurrency(Experiment):
    """T threads write records into one file, or read it with T reads in flight."""

    name = "file-concurrency"
    has_peers = True
    summary = "T writers via write() at shared offset 0 vs pwrite() vs O_APPEND; pread vs queue depth"
    seed_idea = (
        "004: overlapped file IO must carry its own offset, or concurrent writes land on top "
        "of each other; several reads in flight (queue depth) let the device overlap them."
    )
    params = (
        choice_param(
            "mode",
            WRITE_MODES + READ_MODES,
            "write-racing: each thread opens the file (offset 0) and write()s its records; "
            "pwrite: each record at its own explicit offset; append: O_APPEND write(); "
            "pread-threads / pread-asyncio: read every block once in random order with T "
            "threads, or T asyncio.to_thread calls in flight.",
            default=("write-racing", "pwrite", "append"),
        ),
        Param(
            "threads",
            Kind.INT,
            (4,),
            "Writers, or reads in flight (queue depth).",
            sweep=True,
            minimum=1,
            maximum=256,
        ),
        Param("records", Kind.INT, (2000,), "Records per writer.", sweep=True, minimum=1, maximum=10**9),
        size_param(
            "record_size",
            (4096,),
            "Bytes per record, or per pread.",
            minimum=_HEADER.size,
            maximum=1 << 30,
        ),
        size_param(
            "file_size",
            (16 << 20,),
            "File size for the pread modes.",
        ),
        cache_param(
            ("cold",),
            "Page-cache state before the pread modes.",
        ),
    )
    counter_scope = "process"  # every thread's syscalls count
    x_param = "threads"
    table_axis = "mode"
    series_params = ("mode",)
    columns = (
        Column("Elapsed", "elapsed_ns", "duration"),
        Column("Throughput", "bytes_per_s", "rate"),
        Column("Records lost", "records_lost"),
        Column("Torn", "records_torn"),
        Column("Integrity", "integrity_ok", "text"),
        Column("write()s", "syscalls_write"),
        Column("read()s", "syscalls_read"),
        Column("Disk read", "disk_read_bytes", "size"),
    )

    figures = (
        FigureSpec(
            "metric", title="Records lost (overwritten)", metric="records_lost", y_label="records lost"
        ),
        FigureSpec("throughput", title="Throughput vs threads"),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """How many records the racing writer lost, and whether pwrite/O_APPEND lost any."""
        from iobench import explain as ex

        out = []
        racing = ex.select(summary, mode="write-racing").sort_values("threads")
        if not racing.empty and ex.finite(racing["records_lost"].iloc[-1]):
            last = racing.iloc[-1]
            lost, written = last["records_lost"], last["records_written"]
            share = f" ({lost / written:.0%})" if ex.finite(written) and written else ""
            out.append(
                f"{int(last['threads'])} writers using write() on descriptors each opened at offset 0 lost "
                f"{lost:,.0f} of {written:,.0f} records{share}: each descriptor has its own offset, so they "
                "overwrite each other."
            )
            safe = [
                (m, ex.select(summary, mode=m, threads=last["threads"])["records_lost"])
                for m in ("pwrite", "append")
            ]
            safe_text = [
                f"{m} lost {int(v.iloc[0])}" for m, v in safe if not v.empty and ex.finite(v.iloc[0])
            ]
            if safe_text:
                out.append("By contrast " + ", ".join(safe_text) + ".")
            if lost > 0:
                out.append(
                    "This agrees with seed 004 (Windows overlapped IO): a writer that does not carry its own "
                    "offset writes over the others, on Linux too."
                )
        for mode in ("pread-threads", "pread-asyncio"):
            rows = ex.select(summary, mode=mode).sort_values("threads")
            if len(rows) > 1 and rows["bytes_per_s"].iloc[0] > 0:
                out.append(
                    f"{mode}: {int(rows['threads'].iloc[-1])} threads read "
                    f"{ex.times(rows['bytes_per_s'].iloc[-1] / rows['bytes_per_s'].iloc[0])} as fast as 1."
                )
        return out

    _fds: list[int] = []  # noqa: RUF012 - each instance gets its own list; this one is never mutated

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        if case["mode"] in WRITE_MODES:
            return frozenset({"file_size", "cache"})
        return frozenset({"records"})

    def space_needed(self) -> int:
        if self.case["mode"] in WRITE_MODES:
            return self.case["threads"] * self.case["records"] * self.case["record_size"]
        return self.case["file_size"]

    def _descriptors(self) -> tuple[int, str]:
        """Descriptors a repetition holds at once, and who needs them."""
        if self.mode in WRITE_MODES:
            return self.threads, f"{self.threads} writer thread(s), one descriptor each,"
        if self.mode == "pread-asyncio":
            return 4, "the file and an asyncio event loop (epoll and its self-pipe)"
        return 1, "the file"

    def _too_many(self, open_now: int | None = None) -> OSError:
        """EMFILE with what the case needs and the limit, for the case's reason."""
        needed, who = self._descriptors()
        if open_now is None:
            open_now = len(os.listdir("/proc/self/fd")) - 1  # less listdir's own
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return OSError(
            errno.EMFILE,
            f"Too many open files: {who} need {needed} descriptors at once besides the {open_now} "
            f"already open, and RLIMIT_NOFILE is {soft}",
        )

    def prepare(self) -> None:
        self.mode: str = self.case["mode"]
        self.threads: int = self.case["threads"]
        self.size: int = self.case["record_size"]
        self.path = self.scratch / "shared.bin"
        # Refuse before any work what the descriptor limit cannot hold (checked again as
        # they are opened: the count is an estimate when other threads open files too).
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        open_now = len(os.listdir("/proc/self/fd")) - 1
        if soft != resource.RLIM_INFINITY and open_now + self._descriptors()[0] > soft:
            raise self._too_many(open_now)
        if self.mode in WRITE_MODES:
            self.records: int = self.case["records"]
            # Every record prepared before timing: the threads only call write().
            self.payload = [
                [make_record(t, i, self.size) for i in range(self.records)] for t in range(self.threads)
            ]
            return
        total = self.case["file_size"]
        create_random_file(self.path, total)
        offsets = list(range(0, total, self.size))
        random.Random(total).shuffle(offsets)
        self.shares = [offsets[t :: self.threads] for t in range(self.threads)]

    def before_rep(self) -> dict[str, Any]:
        if self.mode in WRITE_MODES:
            self.path.unlink(missing_ok=True)
            flags = os.O_WRONLY | (os.O_APPEND if self.mode == "append" else 0)
            # Separate descriptors, each with its own file offset starting at 0; the first
            # one creates the file (exclusively), the others open that same new file. Each is
            # kept as soon as it is open, so teardown closes them if one cannot be opened.
            try:
                self._fds = [open_new(self.path, flags)]
                for _ in range(self.threads - 1):
                    self._fds.append(os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC))
            except OSError as exc:
                if exc.errno == errno.EMFILE:
                    raise self._too_many() from None
                raise
            self._park_workers()
            return {}
        metrics = cache.cache_metrics(self.path, self.case["cache"])
        self._fds = [os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)]
        if self.mode == "pread-threads":
            self._park_workers()
        return metrics

    def _writer(self, index: int, start: threading.Barrier) -> None:
        fd, records, size = self._fds[index], self.payload[index], self.size
        try:
            start.wait(_JOIN_S)
        except threading.BrokenBarrierError:
            return
        if self.mode == "pwrite":
            pwrite = os.pwrite
            for sequence, record in enumerate(records):
                pwrite(fd, record, (sequence * self.threads + index) * size)
        else:
            write = os.write
            for record in records:
                write(fd, record)

    def _reader(self, offsets: list[int], start: threading.Barrier, got: list[int], index: int) -> None:
        fd, buffer, preadv = self._fds[0], [bytearray(self.size)], os.preadv
        try:
            start.wait(_JOIN_S)
        except threading.BrokenBarrierError:
            return
        total = 0
        for offset in offsets:
            total += preadv(fd, buffer, offset)
        got[index] = total

    def _park_workers(self) -> None:
        """Start the threads before the clock does; they wait on a barrier for run_once."""
        self._start = threading.Barrier(self.threads + 1)
        self._got = [0] * self.threads
        if self.mode in WRITE_MODES:
            targets = [(self._writer, (t, self._start)) for t in range(self.threads)]
        else:
            targets = [
                (self._reader, (self.shares[t], self._start, self._got, t)) for t in range(self.threads)
            ]
        self._workers = [threading.Thread(target=f, args=a, daemon=True) for f, a in targets]
        for worker in self._workers:
            worker.start()

    def run_once(self) -> dict[str, Any]:
        if self.mode == "pread-asyncio":
            return self._run_asyncio()
        self._start.wait(_JOIN_S)
        for worker in self._workers:
            worker.join(_JOIN_S)
            if worker.is_alive():
                raise RuntimeError(f"{self.mode} thread did not finish within {_JOIN_S:g} s")
        if self.mode in WRITE_MODES:
            return {"bytes": self.threads * self.records * self.size, "ops": self.threads * self.records}
        return {"bytes": sum(self._got), "ops": sum(len(s) for s in self.shares)}

    def _run_asyncio(self) -> dict[str, Any]:
        fd, size = self._fds[0], self.size

        async def reader(offsets: list[int]) -> int:
            total = 0
            for offset in offsets:
                total += len(await asyncio.to_thread(os.pread, fd, size, offset))
            return total

        async def main() -> int:
            # to_thread uses the loop's default executor: give it one thread per read in flight.
            loop = asyncio.get_running_loop()
            executor = ThreadPoolExecutor(max_workers=self.threads)
            loop.set_default_executor(executor)
            try:
                return sum(await asyncio.gather(*(reader(share) for share in self.shares)))
            finally:
                executor.shutdown(wait=True)

        # The loop first: when it cannot be made, no coroutine is left un-awaited.
        loop = new_selector_loop()
        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            total = runner.run(main())
        return {"bytes": total, "ops": sum(len(s) for s in self.shares)}

    def after_rep(self) -> dict[str, Any]:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self.mode not in WRITE_MODES:
            return {"records_lost": None, "records_torn": None}
        expected = self.threads * self.records
        found, torn = count_records(self.path.read_bytes(), self.size, self.threads, self.records)
        return {
            "records_written": expected,
            "records_lost": expected - found,
            "records_torn": torn,
            "integrity_ok": found == expected and torn == 0,
            "file_bytes": self.path.stat().st_size,
        }

    def teardown(self) -> None:
        start = getattr(self, "_start", None)
        if start is not None:
            start.abort()  # parked threads leave with BrokenBarrierError instead of waiting
        for fd in self._fds:
            os.close(fd)
        self._fds = []
