"""file-concurrency: concurrent writers need their own offsets; readers gain from depth (seed 004)."""

from __future__ import annotations

import asyncio
import contextlib
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
from iobench.metrics import CACHE_VERIFIED, INTEGRITY_OK, RESIDENT_BEFORE
from iobench.metrics import Metric as M
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
        "overlapped (asynchronous) file IO must carry its own offset, or concurrent writes land "
        "on top of each other (Win32 WriteFile with OVERLAPPED; POSIX pwrite(2)); several reads "
        "in flight (queue depth) let the device overlap them."
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

    metrics = (
        RESIDENT_BEFORE,
        CACHE_VERIFIED,
        INTEGRITY_OK,
        M("records_written", "Records written", "count", "Records the writers wrote."),
        M(
            "records_lost",
            "Records lost",
            "count",
            "Records missing when the file was read back (overwritten by another writer).",
            "lower",
        ),
        M("records_torn", "Records torn", "count", "Records read back with bytes of two writers.", "lower"),
        M("file_bytes", "File size", "size", "Size of the file after the writers finished."),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """How many records the racing writers lost (and whether pwrite/O_APPEND lost any), the
        Win32 overlapped-offset rule cited where the data shows the same, and reads in flight."""
        from iobench import explain as ex

        out = []
        threads = ex.distinct(summary, "threads", mode="write-racing")
        lost = ex.one(summary, "records_lost", mode="write-racing", threads=threads[-1]) if threads else None
        if lost is not None:
            n = threads[-1]
            written = ex.one(summary, "records_written", mode="write-racing", threads=n)
            share = f" ({lost / written:.0%})" if written else ""
            of = f" of {written:,.0f}" if written else ""
            if lost:
                out.append(
                    f"{n:,} writers using write() on descriptors each opened at offset 0 lost {lost:,.0f}{of} "
                    f"records{share}: each descriptor has its own offset, so they overwrote each other."
                )
            else:
                out.append(
                    f"{n:,} writers using write() on descriptors each opened at offset 0 lost none{of} records "
                    "this time: their writes did not overlap, but nothing keeps them apart."
                )
            safe = [
                f"{mode} lost {found:,.0f}"
                for mode in ("pwrite", "append")
                if (found := ex.one(summary, "records_lost", mode=mode, threads=n)) is not None
            ]
            if safe:
                out.append(("By contrast " if lost else "") + ", ".join(safe) + ".")
            if lost:
                out.append(
                    ex.cite(
                        "WriteFile",
                        ex.WIN32_DOCS,
                        "an overlapped write goes to the offset its OVERLAPPED structure carries, so every "
                        "request must carry its own",
                    )
                    + ". The racing writers show the same on Linux: writers that do not carry their own offset "
                    "write over each other."
                )
        for mode in READ_MODES:
            depths = [
                t
                for t in ex.distinct(summary, "threads", mode=mode)
                if ex.samples(summary, "bytes_per_s", mode=mode, threads=t)
            ]
            if len(depths) < 2:
                continue
            found = ex.difference(
                summary,
                "bytes_per_s",
                {"mode": mode, "threads": depths[0]},
                {"mode": mode, "threads": depths[-1]},
            )
            out.append(
                f"{mode}: {depths[-1]:,} reads in flight against {depths[0]:,}: "
                f"{ex.contrast(found, higher_is_better=True)}."
            )
        return out

    _fds: list[int] = []  # noqa: RUF012 - replaced per instance, never mutated in place
    _loop: asyncio.AbstractEventLoop | None = None
    _executor: ThreadPoolExecutor | None = None
    _workers: list[threading.Thread] = []  # noqa: RUF012 - replaced per instance

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
        if self.mode == "pread-asyncio":
            self._start_event_loop()

    def _start_event_loop(self) -> None:
        """The event loop and its pool, every pool thread already running: like pread-threads,
        whose threads start before the clock, nothing is created inside the timed window."""
        self._loop = new_selector_loop()  # leaks nothing when it cannot be built (EMFILE)
        # to_thread uses the loop's default executor: one thread per read in flight.
        self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="pread-asyncio")
        self._loop.set_default_executor(self._executor)
        # The pool starts a thread per task while none is idle: tasks that wait for each other
        # keep all of them busy until every thread exists.
        everyone = threading.Barrier(self.threads)
        started = [self._executor.submit(everyone.wait, _JOIN_S) for _ in range(self.threads)]
        for future in started:
            future.result(_JOIN_S)

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

    def _write_records(self, index: int) -> None:
        fd, records, size = self._fds[index], self.payload[index], self.size
        if self.mode == "pwrite":
            pwrite = os.pwrite
            for sequence, record in enumerate(records):
                pwrite(fd, record, (sequence * self.threads + index) * size)
        else:
            write = os.write
            for record in records:
                write(fd, record)

    def _read_share(self, index: int) -> None:
        fd, buffer, preadv = self._fds[0], [bytearray(self.size)], os.preadv
        total = 0
        for offset in self.shares[index]:
            total += preadv(fd, buffer, offset)
        self._got[index] = total

    def _worker(self, index: int) -> None:
        """Wait for run_once's start, do this thread's share, then meet run_once at the finish:
        the window ends when the last share is done, before any thread exits."""
        try:
            self._start.wait(_JOIN_S)
        except threading.BrokenBarrierError:
            return
        try:
            if self.mode in WRITE_MODES:
                self._write_records(index)
            else:
                self._read_share(index)
        except BaseException as exc:  # reported by run_once, in the measuring thread
            self._errors.append(exc)
        finally:
            with contextlib.suppress(threading.BrokenBarrierError):
                self._finish.wait(_JOIN_S)

    def _park_workers(self) -> None:
        """Start the threads before the clock does; they wait on a barrier for run_once."""
        self._start = threading.Barrier(self.threads + 1)
        self._finish = threading.Barrier(self.threads + 1)
        self._got = [0] * self.threads
        self._errors: list[BaseException] = []
        self._workers = [
            threading.Thread(target=self._worker, args=(t,), daemon=True) for t in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()

    def run_once(self) -> dict[str, Any]:
        if self.mode == "pread-asyncio":
            return self._run_asyncio()
        self._start.wait(_JOIN_S)
        try:
            self._finish.wait(_JOIN_S)
        except threading.BrokenBarrierError:
            raise RuntimeError(f"{self.mode} threads did not finish within {_JOIN_S:g} s") from None
        if self._errors:
            raise self._errors[0]
        if self.mode in WRITE_MODES:
            return {"bytes": self.threads * self.records * self.size, "ops": self.threads * self.records}
        return {"bytes": sum(self._got), "ops": sum(len(s) for s in self.shares)}

    def _run_asyncio(self) -> dict[str, Any]:
        assert self._loop is not None
        fd, size = self._fds[0], self.size

        async def reader(offsets: list[int]) -> int:
            total = 0
            for offset in offsets:
                total += len(await asyncio.to_thread(os.pread, fd, size, offset))
            return total

        async def main() -> int:
            return sum(await asyncio.gather(*(reader(share) for share in self.shares)))

        total = self._loop.run_until_complete(main())
        return {"bytes": total, "ops": sum(len(s) for s in self.shares)}

    def _join_workers(self) -> None:
        for worker in self._workers:
            worker.join(_JOIN_S)
            if worker.is_alive():
                raise RuntimeError(f"{self.mode} thread did not exit within {_JOIN_S:g} s")
        self._workers = []

    def after_rep(self) -> dict[str, Any]:
        self._join_workers()
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
            # write-racing exists to lose records (records_lost is its result), so its rows make no
            # claim a check could refute; pwrite and append must keep every record.
            "integrity_ok": None if self.mode == "write-racing" else found == expected and torn == 0,
            "file_bytes": self.path.stat().st_size,
        }

    def teardown(self) -> None:
        for barrier in (getattr(self, "_start", None), getattr(self, "_finish", None)):
            if barrier is not None:
                barrier.abort()  # parked threads leave with BrokenBarrierError instead of waiting
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None
