"""async-io: IOs in flight at queue depth: pread, threads, asyncio, libaio, io_uring (seeds 001, 004)."""

from __future__ import annotations

import asyncio
import errno
import mmap
import os
import random
import resource
import threading
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from iobench.engine import cache
from iobench.engine.direct import DirectEvidence, direct_verdict, probe_for_case
from iobench.errors import ParamError, UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec, cache_param
from iobench.loops import histogram, rings
from iobench.loops.buffers import page_aligned_buffer
from iobench.metrics import (
    CACHE_VERIFIED,
    DIRECT_NOTE,
    DIRECT_VERIFIED,
    INTEGRITY_OK,
    LAT_MAX,
    LAT_P50,
    LAT_P99,
    RESIDENT_BEFORE,
)
from iobench.metrics import Metric as M
from iobench.osutil.files import create_random_file
from iobench.osutil.sockets import new_selector_loop
from iobench.params import Kind, Param, choice_param, size_param

if TYPE_CHECKING:
    import pandas as pd

METHODS = ("psync", "threads", "asyncio", "libaio", "io_uring", "io_uring-fixed", "io_uring-sqpoll")
URING_METHODS = ("io_uring", "io_uring-fixed", "io_uring-sqpoll")
RW = ("read", "write", "randread", "randwrite", "randrw")
#: io_uring-sqpoll polls the completion ring this long before it sleeps in io_uring_enter.
SQPOLL_SPIN_NS = 50_000
#: The IO buffers (qd x bs) are kept below this.
MAX_BUFFER = 1 << 30
_JOIN_S = 120.0


@register
class AsyncIo(Experiment):
    """Random or sequential file IO with qd IOs in flight, by seven submission methods."""

    name = "async-io"
    has_peers = True  # the threads method's pool, io_uring's SQPOLL and io-wq kernel threads
    summary = "IOs in flight at queue depth: pread, a thread pool, asyncio, libaio, io_uring (fio's jobs)"
    seed_idea = (
        "overlapped IO keeps many requests in flight from one thread, so the device works on them "
        "together (Win32 ReadFile with an OVERLAPPED structure; Jones & Ohlund 2002, ch. 6). Linux offers "
        "it through Linux AIO (io_submit(2); queued only for O_DIRECT files, as fio's HOWTO warns) and "
        "io_uring (io_uring(7)): the interfaces fio measures queue depth with."
    )
    params = (
        choice_param(
            "method",
            METHODS,
            "psync: one pread/pwrite at a time (qd does not apply); threads: qd threads, each doing "
            "pread/pwrite in C on its share of the IOs; asyncio: qd coroutines awaiting "
            "run_in_executor(pread) on a pool of qd threads (Python per IO); libaio: io_submit + "
            "io_getevents (Linux AIO, raw system calls); io_uring: io_uring_enter submits what is "
            "queued and waits for one completion, one call per round; io_uring-fixed: the same with "
            "registered files and buffers (READ_FIXED/WRITE_FIXED); io_uring-sqpoll: a kernel thread "
            f"polls the submission ring, this thread polls completions for {SQPOLL_SPIN_NS // 1000} us "
            "before it sleeps in io_uring_enter. Every method but asyncio runs its IO loop in C.",
        ),
        Param(
            "qd", Kind.INT, (1, 4, 16, 64), "IOs in flight (queue depth).", sweep=True, minimum=1, maximum=256
        ),
        choice_param(
            "rw",
            RW,
            "read/write: sequential; randread/randwrite/randrw: every block once, in random order "
            "(randrw: each IO a read with probability rwmix_read).",
            default=("randread",),
        ),
        Param(
            "rwmix_read",
            Kind.INT,
            (70,),
            "randrw: percent of the IOs that are reads (0..100).",
            sweep=True,
            minimum=0,
            maximum=100,
        ),
        size_param("bs", (4096,), "Bytes per IO.", minimum=16, maximum=64 << 20),
        choice_param(
            "direct",
            ("on", "off"),
            "on: O_DIRECT (the device, no page cache); off: buffered through the page cache.",
            default=("on",),
        ),
        size_param(
            "file_size", (64 << 20,), "File size; one repetition does file_size / bs IOs.", minimum=16
        ),
        cache_param(("cold",), "Page-cache state before each repetition (direct=on always starts cold)."),
        choice_param(
            "submit",
            ("each", "batch"),
            "libaio, io_uring, io_uring-fixed: each: every IO handed to the kernel in its own call as soon "
            "as its slot is free (fio's default, iodepth_batch_submit=1); batch: every IO the free slots "
            "allow in one call (fewer calls; the block layer plugs a batch of three or more and dispatches "
            "it together).",
            default=("each",),
        ),
        choice_param(
            "reap",
            ("all", "one"),
            "libaio, io_uring, io_uring-fixed: all: the loop takes every completion there is after every "
            "call, so an IO's latency ends when its completion is first there to see; one: fio's loop "
            "(iodepth_batch_complete_max defaults to 1): it looks only once the queue is full and takes one "
            "completion, then submits its replacement before taking the next, so finished IOs can wait in "
            "the ring and their latency includes that wait, as fio's does.",
            default=("all",),
        ),
        choice_param(
            "advice",
            ("pattern", "none"),
            "pattern: posix_fadvise(RANDOM) for the rand* patterns, SEQUENTIAL for read/write, as fio does "
            "by default (fadvise_hint=1): no readahead around random reads; none: the kernel's default "
            "readahead. Buffered IO only.",
            default=("pattern",),
        ),
    )
    counter_scope = "process"  # pool threads, SQPOLL and io-wq threads are all this process's CPU
    x_param = "qd"
    table_axis = "qd"
    series_params = ("method",)
    columns = (
        Column("IOPS", "iops"),
        Column("Throughput", "bytes_per_s", "rate"),
        Column("p50", "lat_p50_ns", "duration"),
        Column("p99", "lat_p99_ns", "duration"),
        Column("p99.9", "lat_p999_ns", "duration"),
        Column("max", "lat_max_ns", "duration"),
        Column("Syscalls/IO", "syscalls_per_io", "ratio"),
        Column("CPU/IO", "cpu_ns", "duration", per="ops"),
        Column("User/IO", "user_ns", "duration", per="ops"),
        Column("System/IO", "sys_ns", "duration", per="ops"),
        Column("Mean in flight", "qd_achieved", "ratio"),
        Column("In io_submit", "submit_share", "percent", where=(("method", ("libaio",)),)),
    )

    figures = (
        FigureSpec(
            "metric", title="IOPS vs queue depth", metric="iops", y_label="IOs per second", log_y=True
        ),
        FigureSpec(
            "percentiles",
            title="Latency p50 and p99 vs queue depth, O_DIRECT (submit to completion)",
            metrics=("lat_p50_ns", "lat_p99_ns"),
            unit="duration",
            log_y=True,
            y_label="latency",
            where=(("direct", ("on",)),),
        ),
        FigureSpec(
            "percentiles",
            title="Latency p50 and p99 vs queue depth, buffered (submit to completion)",
            metrics=("lat_p50_ns", "lat_p99_ns"),
            unit="duration",
            log_y=True,
            y_label="latency",
            where=(("direct", ("off",)),),
        ),
        FigureSpec(
            "metric",
            title="System calls per IO",
            metric="syscalls_per_io",
            unit="ratio",
            y_label="submit + reap calls per IO",
        ),
    )

    metrics = (
        RESIDENT_BEFORE,
        CACHE_VERIFIED,
        INTEGRITY_OK,
        LAT_P50,
        LAT_P99,
        LAT_MAX,
        M("iops", "IOPS", "count", "IOs completed per second of the IO loop (its own clock).", "higher"),
        M("lat_p90_ns", "p90", "duration", "90th-percentile latency, submit to completion.", "lower"),
        M("lat_p999_ns", "p99.9", "duration", "99.9th-percentile latency, submit to completion.", "lower"),
        M(
            "lat_mean_ns",
            "Mean latency",
            "duration",
            "Mean latency of one IO, submit to completion.",
            "lower",
        ),
        M(
            "lat_hist",
            "Latency histogram",
            "text",
            "Every IO's latency, bucketed (log2x32;bucket:count,...: exact below 32 ns, 32 buckets per "
            "power of two); add the counts of rows to merge repetitions or runs (iobench.loops.histogram).",
        ),
        M(
            "submit_syscalls",
            "Submit calls",
            "count",
            "System calls that submitted IO: pread/pwrite (psync, threads, asyncio), io_submit, "
            "io_uring_enter with IOs to submit (it also waits), SQPOLL wake-ups.",
            "lower",
        ),
        M(
            "reap_syscalls",
            "Reap calls",
            "count",
            "System calls made only to wait for or collect completions: io_getevents, io_uring_enter with "
            "nothing to submit. Not counted for asyncio (its loop's wake-ups).",
            "lower",
        ),
        M("syscalls_per_io", "Syscalls per IO", "ratio", "(submit + reap calls) / IOs.", "lower"),
        M(
            "completions_per_look",
            "Completions per look",
            "ratio",
            "Mean completions the loop took each time it took any (fio's 'IO depths: complete'): 1 for "
            "psync, threads, asyncio and reap=one; with reap=all, how many it found at once (io_uring "
            "looks after every call, libaio only after io_getevents).",
        ),
        M(
            "sqpoll_wakeups",
            "SQPOLL wake-ups",
            "count",
            "io_uring_enter(IORING_ENTER_SQ_WAKEUP) calls: the SQPOLL thread had gone idle.",
        ),
        M(
            "qd_achieved",
            "Mean in flight",
            "ratio",
            "Mean IOs submitted and not yet reaped over the loop: sum of latencies / loop time (Little's "
            "law). An IO the kernel does inside the submitting call (libaio on buffered files) counts as in "
            "flight while the call does its batch one IO after another.",
        ),
        M(
            "submit_share",
            "Time in io_submit",
            "fraction",
            "libaio: share of the loop spent inside io_submit. Near 1: the kernel did the IO inside the "
            "call (synchronously), as Linux AIO does for buffered files.",
        ),
        M("short_ios", "Short IOs", "count", "IOs that moved fewer than bs bytes.", "lower"),
        M("loop_ns", "Loop time", "duration", "The IO loop's own time, first submission to last completion."),
        M(
            "ring_flags",
            "Ring flags",
            "text",
            "io_uring: the IORING_SETUP_* flags the ring was made with (fio's, where the kernel takes them).",
        ),
        DIRECT_VERIFIED,
        DIRECT_NOTE,
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Per regime (rw, bs, direct): what depth bought each method, libaio's synchronous buffered
        IO, the methods ranked at the deepest common qd, and the system calls each made per IO."""
        from iobench import explain as ex

        out = []
        cited = False
        for regime in _regimes(summary):
            label = _regime_label(cls, regime)
            depth = _depth_sentences(cls, summary, regime)
            if depth:
                out.append(f"{label}: " + "; ".join(depth) + ".")
            sync = _libaio_buffered(cls, summary, regime)
            if sync:
                out.append(sync)
                if not cited:
                    cited = True
                    out.append(
                        ex.cite(
                            "fio HOWTO, ioengine=libaio",
                            "fio documentation",
                            "Linux may only support queued behavior with non-buffered I/O (direct=1)",
                        )
                        + "."
                    )
            ranked = _ranking(cls, summary, regime)
            if ranked:
                out.append(f"{label}, {ranked}.")
            calls = _syscalls(cls, summary, regime)
            if calls:
                out.append(calls)
        return out

    _fd: int | None = None
    _buffer: mmap.mmap | None = None
    _ring: Any = None
    _aio: Any = None
    _loop: asyncio.AbstractEventLoop | None = None
    _executor: ThreadPoolExecutor | None = None
    _pool: list[threading.Thread] = []  # noqa: RUF012 - replaced per instance
    _stopping = False

    @classmethod
    def uses_loops(cls, case: dict[str, Any]) -> bool:
        return case["method"] != "asyncio"  # asyncio is Python per IO by design

    @classmethod
    def check_case(cls, case: dict[str, Any]) -> None:
        if case["bs"] > case["file_size"]:
            raise ParamError("bs must not exceed file_size")
        if case["qd"] * case["bs"] > MAX_BUFFER:
            raise ParamError(f"qd x bs (the IO buffers) must stay within {MAX_BUFFER >> 20} MiB")

    @classmethod
    def irrelevant_params(cls, case: dict[str, Any]) -> frozenset[str]:
        ignored = set()
        if case["method"] == "psync":
            ignored.add("qd")  # one IO at a time, whatever the depth
        if case["rw"] != "randrw":
            ignored.add("rwmix_read")
        if case["direct"] == "on":
            # O_DIRECT reads the device (each repetition starts cold anyway), with no readahead.
            ignored.update(("cache", "advice"))
        if case["method"] not in ("libaio", "io_uring", "io_uring-fixed"):
            # one call per IO (psync, threads, asyncio) or the SQPOLL thread
            ignored.update(("submit", "reap"))
        return frozenset(ignored)

    def space_needed(self) -> int:
        return self.case["file_size"]

    # ------------------------------------------------------------------ set-up

    def prepare(self) -> None:
        case = self.case
        self.method: str = case["method"]
        self.bs: int = case["bs"]
        self.qd: int = 1 if self.method == "psync" else case["qd"]
        self.direct = case["direct"] == "on"
        self.path = self.scratch / "async-io.bin"
        self._evidence: DirectEvidence | None = None
        self._generation = 0
        self._check_descriptors()
        self._check_engine()
        if self.direct:
            self._evidence = probe_for_case(self.scratch)
        create_random_file(self.path, case["file_size"])
        self.offsets, self.writes = io_pattern(case["rw"], case["file_size"], self.bs, case["rwmix_read"])
        self.has_writes = any(self.writes)
        self.has_reads = not all(self.writes)
        self._buffer = page_aligned_buffer(self.qd * self.bs)
        self.view = memoryview(self._buffer)
        for slot in range(1, self.qd):  # every slot writes the same bytes after its 16-byte stamp
            self.view[slot * self.bs : (slot + 1) * self.bs] = self.view[: self.bs]
        # What a written block holds after its stamp; reads overwrite the slots in randrw.
        self._slot_bytes = None if self.has_reads else bytes(self.view[16 : self.bs])
        self.hists = [histogram.new() for _ in range(self.qd if self.method == "threads" else 1)]
        flags = (os.O_RDWR if self.has_writes else os.O_RDONLY) | (os.O_DIRECT if self.direct else 0)
        try:
            self._fd = os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.EINVAL and self.direct:
                raise UnsupportedCase(
                    f"EINVAL: this filesystem refuses O_DIRECT at open ({exc.strerror})"
                ) from None
            raise
        if self.case["advice"] == "pattern" and not self.direct:
            advice = os.POSIX_FADV_RANDOM if self.case["rw"].startswith("rand") else os.POSIX_FADV_SEQUENTIAL
            os.posix_fadvise(self._fd, 0, 0, advice)  # this descriptor's readahead, as fio sets it
        self._open_engine()

    def _check_descriptors(self) -> None:
        """EMFILE before anything is made when the limit cannot hold what the case opens at once:
        the file, the ring (io_uring) or the event loop (asyncio: epoll and its self-pipe), and
        the one that removing the case's folder takes afterwards."""
        needed = 2 + (1 if self.method in URING_METHODS else 3 if self.method == "asyncio" else 0)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return
        open_now = len(os.listdir("/proc/self/fd")) - 1  # less listdir's own
        if open_now + needed > soft:
            raise OSError(
                errno.EMFILE,
                f"Too many open files: {self.method} needs {needed} descriptors besides the {open_now} "
                f"already open, and RLIMIT_NOFILE is {soft}",
            )

    def _check_engine(self) -> None:
        """The native-only methods need the C module, built with their interface."""
        if self.method == "libaio":
            self._aio = rings.open_aio(self.loops, self.qd)
        elif self.method in URING_METHODS:
            self._ring = rings.open_uring(self.loops, self.qd, sqpoll=self.method == "io_uring-sqpoll")

    def _open_engine(self) -> None:
        """Registered buffers and files, the thread pool, the event loop: all before any timing."""
        assert self._fd is not None
        if self.method == "io_uring-fixed":
            rings.register_files(self._ring, [self._fd])
            rings.register_buffers(self._ring, self._buffer)
        elif self.method == "io_uring-sqpoll" and not self._ring.features & rings.FEAT_SQPOLL_NONFIXED:
            rings.register_files(self._ring, [self._fd])  # SQPOLL needed fixed files before 5.11
        elif self.method == "threads":
            self._start_pool()
        elif self.method == "asyncio":
            self._start_event_loop()

    def _start_pool(self) -> None:
        """qd threads, each with its share of the IOs and its own buffer slot and histogram, parked
        on a barrier until run_once releases them."""
        self._start = threading.Barrier(self.qd + 1)
        self._finish = threading.Barrier(self.qd + 1)
        self._results: list[dict[str, Any] | None] = [None] * self.qd
        self._errors: list[BaseException] = []
        self._shares = [(self.offsets[t :: self.qd], self.writes[t :: self.qd]) for t in range(self.qd)]
        self._pool = [
            threading.Thread(target=self._pool_worker, args=(t,), daemon=True) for t in range(self.qd)
        ]
        for thread in self._pool:
            thread.start()

    def _pool_worker(self, index: int) -> None:
        slot = self.view[index * self.bs : (index + 1) * self.bs]
        offsets, writes = self._shares[index]
        try:
            while True:
                try:
                    self._start.wait()
                except threading.BrokenBarrierError:
                    return
                if self._stopping:
                    return
                try:
                    self._results[index] = self.loops.psync_run(
                        self._fd, slot, self.bs, offsets, writes, self.hists[index], self._generation
                    )
                except BaseException as exc:  # reported by run_once, in the measuring thread
                    self._errors.append(exc)
                try:
                    self._finish.wait(_JOIN_S)
                except threading.BrokenBarrierError:
                    return
        finally:
            slot.release()

    def _start_event_loop(self) -> None:
        """The loop and its pool of qd threads, every thread already running (file-concurrency's
        pread-asyncio does the same): nothing is created inside the timed window."""
        self._loop = new_selector_loop()
        self._executor = ThreadPoolExecutor(max_workers=self.qd, thread_name_prefix="async-io")
        self._loop.set_default_executor(self._executor)
        everyone = threading.Barrier(self.qd)
        for future in [self._executor.submit(everyone.wait, _JOIN_S) for _ in range(self.qd)]:
            future.result(_JOIN_S)

    def before_rep(self) -> dict[str, Any]:
        metrics: dict[str, Any] = cache.cache_metrics(
            self.path, "cold" if self.direct else self.case["cache"]
        )
        for hist in self.hists:
            hist[:] = histogram.new()
        self._generation += 1  # the stamp of this repetition's writes (after their offsets)
        return metrics

    # ------------------------------------------------------------------ the timed window

    def run_once(self) -> dict[str, Any]:
        try:
            self._result = self._run()
        except OSError as exc:
            if exc.errno == errno.EINVAL and self.direct:
                raise UnsupportedCase(
                    f"EINVAL: O_DIRECT refused bs={self.bs} ({exc.strerror}): transfers must be aligned to "
                    "the device's logical block size"
                ) from None
            raise
        return {"bytes": self._result["bytes"], "ops": self._result["ios"]}

    def _run(self) -> dict[str, Any]:
        fd, view, bs, offsets, writes, hist = (
            self._fd,
            self.view,
            self.bs,
            self.offsets,
            self.writes,
            self.hists[0],
        )
        stamp = self._generation
        batch = 1 if self.case["submit"] == "each" else 0  # 0: as many as the free slots allow
        # 0: every completion there is (and always with SQPOLL, whose loop polls the ring)
        reap = 1 if self.case["reap"] == "one" and self.method != "io_uring-sqpoll" else 0
        if self.method == "psync":
            return self.loops.psync_run(fd, view[:bs], bs, offsets, writes, hist, stamp)
        if self.method == "libaio":
            return self._aio.run_file(
                fd, view, bs, offsets, writes, self.qd, hist, stamp=stamp, batch=batch, reap=reap
            )
        if self.method in URING_METHODS:
            fixed_file = self.method == "io_uring-fixed" or (
                self.method == "io_uring-sqpoll" and not self._ring.features & rings.FEAT_SQPOLL_NONFIXED
            )
            return self._ring.run_file(
                0 if fixed_file else fd,
                view,
                bs,
                offsets,
                writes,
                self.qd,
                hist,
                fixed_file=fixed_file,
                fixed_buffer=self.method == "io_uring-fixed",
                stamp=stamp,
                spin_ns=SQPOLL_SPIN_NS,
                batch=batch,
                reap=reap,
            )
        if self.method == "threads":
            return self._run_pool()
        return self._run_asyncio()

    def _run_pool(self) -> dict[str, Any]:
        started = time.perf_counter_ns()
        self._start.wait(_JOIN_S)
        try:
            self._finish.wait(_JOIN_S)
        except threading.BrokenBarrierError:
            raise RuntimeError(f"the pool did not finish within {_JOIN_S:g} s") from None
        ended = time.perf_counter_ns()
        if self._errors:
            raise self._errors.pop()
        results = [r for r in self._results if r is not None]
        total = {
            key: sum(r[key] for r in results)
            for key in ("bytes", "ios", "short", "submit_calls", "lat_sum_ns", "looks")
        }
        return total | {
            "reap_calls": 0,
            "enter_calls": 0,
            "wakeups": 0,
            "submit_ns": 0,
            "loop_ns": ended - started,
            "lat_max_ns": max(r["lat_max_ns"] for r in results),
        }

    def _run_asyncio(self) -> dict[str, Any]:
        assert self._loop is not None
        loop, fd, bs, offsets, writes, hist = (
            self._loop,
            self._fd,
            self.bs,
            self.offsets,
            self.writes,
            self.hists[0],
        )
        clock, bucket = time.perf_counter_ns, histogram.bucket_of
        tag = self._generation.to_bytes(8, "little")
        next_io = iter(range(len(offsets)))
        totals = {"bytes": 0, "short": 0, "lat_sum_ns": 0, "lat_max_ns": 0}

        async def worker(slot: memoryview) -> None:
            target = [slot]
            for io in next_io:  # shared: each worker takes the next IO when its last one is done
                offset = offsets[io]
                start = clock()
                if writes[io]:
                    slot[:16] = offset.to_bytes(8, "little", signed=True) + tag
                    moved = await loop.run_in_executor(None, os.pwrite, fd, slot, offset)
                else:
                    moved = await loop.run_in_executor(None, os.preadv, fd, target, offset)
                took = clock() - start
                hist[bucket(took)] += 1
                totals["bytes"] += moved
                totals["short"] += moved != bs
                totals["lat_sum_ns"] += took
                totals["lat_max_ns"] = max(totals["lat_max_ns"], took)

        async def main() -> None:
            await asyncio.gather(*(worker(self.view[s * bs : (s + 1) * bs]) for s in range(self.qd)))

        started = clock()
        loop.run_until_complete(main())
        ended = clock()
        return totals | {
            "ios": len(offsets),
            "submit_calls": len(offsets),
            "reap_calls": None,  # the loop's wake-ups (futex, self-pipe, epoll) are not counted
            "looks": len(offsets),  # each await returns its own IO
            "enter_calls": 0,
            "wakeups": 0,
            "submit_ns": 0,
            "loop_ns": ended - started,
        }

    # ------------------------------------------------------------------ after the window

    def after_rep(self) -> dict[str, Any]:
        result = self._result
        ios, loop_ns = result["ios"], result["loop_ns"]
        merged = histogram.merge(self.hists) if len(self.hists) > 1 else self.hists[0]
        top = float(result["lat_max_ns"])
        reap = result["reap_calls"]
        row: dict[str, Any] = {
            "iops": ios / loop_ns * 1e9 if loop_ns else None,
            "loop_ns": loop_ns,
            "lat_p50_ns": histogram.percentile(merged, 0.50, top),
            "lat_p90_ns": histogram.percentile(merged, 0.90, top),
            "lat_p99_ns": histogram.percentile(merged, 0.99, top),
            "lat_p999_ns": histogram.percentile(merged, 0.999, top),
            "lat_max_ns": top,
            "lat_mean_ns": result["lat_sum_ns"] / ios if ios else None,
            "lat_hist": histogram.encode(merged),
            "qd_achieved": result["lat_sum_ns"] / loop_ns if loop_ns else None,
            "submit_syscalls": result["submit_calls"],
            "reap_syscalls": reap,
            "syscalls_per_io": (result["submit_calls"] + reap) / ios if ios and reap is not None else None,
            "completions_per_look": ios / result["looks"] if result.get("looks") else None,
            "short_ios": result["short"],
        }
        if self.method == "libaio":
            row["submit_share"] = result["submit_ns"] / loop_ns if loop_ns else None
        if self.method in URING_METHODS:
            row["sqpoll_wakeups"] = result["wakeups"]
            row["ring_flags"] = _ring_flags(self._ring.setup_flags)
        expected = len(self.offsets) * self.bs
        intact = result["bytes"] == expected and result["short"] == 0 and histogram.total(merged) == ios
        if self.has_writes:
            assert self._fd is not None
            os.fsync(self._fd)  # untimed: the next repetition does not wait behind this one's writeback
            intact = intact and blocks_intact(
                self.path, self.offsets, self.writes, self.bs, self._generation, self._slot_bytes
            )
        row["integrity_ok"] = intact
        if self.direct and self._evidence is not None:
            row.update(self._direct_verdict())
        return row

    def _direct_verdict(self) -> dict[str, Any]:
        assert self._evidence is not None
        return direct_verdict(self._evidence.reason(), self.scratch, "these are page-cache numbers")

    def teardown(self) -> None:
        self._stopping = True
        for barrier in (getattr(self, "_start", None), getattr(self, "_finish", None)):
            if barrier is not None:
                barrier.abort()
        for thread in self._pool:
            thread.join(_JOIN_S)
        self._pool = []
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        for engine in (self._ring, self._aio):
            if engine is not None:
                engine.close()  # first: the ring holds the registered buffer
        self._ring = self._aio = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        view = getattr(self, "view", None)
        if view is not None:
            view.release()
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None


# ---------------------------------------------------------------------- the IOs


def io_pattern(rw: str, file_size: int, bs: int, rwmix_read: int) -> tuple[array, bytes]:
    """(offsets as int64, one byte per IO: 1 write, 0 read) for one pass over the file's blocks:
    in order for read/write, a fixed random permutation for the rand* patterns (every block once,
    as fio's random map), randrw drawing each IO's direction with P(read) = rwmix_read %."""
    blocks = file_size // bs
    order = list(range(blocks))
    if rw.startswith("rand"):
        random.Random(blocks * 7919 + bs).shuffle(order)
    offsets = array("q", (block * bs for block in order))
    if rw in ("read", "randread"):
        return offsets, bytes(blocks)
    if rw in ("write", "randwrite"):
        return offsets, b"\x01" * blocks
    draw = random.Random(blocks * 104729 + bs)
    return offsets, bytes(int(draw.random() * 100 >= rwmix_read) for _ in range(blocks))


def blocks_intact(
    path: Any, offsets: array, writes: bytes, bs: int, generation: int, rest: bytes | None
) -> bool:
    """Every block this repetition wrote holds its stamp: its offset and the repetition's number
    (8 bytes each), then ``rest`` (the slots' bytes after the stamp; None: not checked, for
    patterns whose reads overwrite the slots in between)."""
    tag = generation.to_bytes(8, "little")
    with open(path, "rb", buffering=0) as file:
        data = file.read()
    for offset, writing in zip(offsets, writes, strict=True):
        if not writing:
            continue
        block = data[offset : offset + bs]
        if block[:16] != offset.to_bytes(8, "little", signed=True) + tag:
            return False
        if rest is not None and block[16:] != rest:
            return False
    return True


_SETUP_FLAGS = {
    1 << 1: "SQPOLL",
    1 << 5: "CQSIZE",
    1 << 8: "COOP_TASKRUN",
    1 << 12: "SINGLE_ISSUER",
    1 << 13: "DEFER_TASKRUN",
}


def _ring_flags(flags: int) -> str:
    return "|".join(name for bit, name in _SETUP_FLAGS.items() if flags & bit) or "none"


# ---------------------------------------------------------------------- explanations


def _regimes(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The (rw, bs, direct, cache, file_size) combinations the run measured, in order."""
    keys = [k for k in ("rw", "bs", "direct", "cache", "file_size", "rwmix_read") if k in summary]
    for key in ("submit", "reap"):
        if key in summary and summary[key].nunique() > 1:
            keys.append(key)  # each and batch (all and one) side by side: separate sentences
    if not keys or "method" not in summary:
        return []
    seen = summary[keys].drop_duplicates()
    return [dict(row) for _, row in seen.iterrows()]


def _regime_label(experiment: Any, regime: dict[str, Any]) -> str:
    from iobench import explain as ex

    io = "O_DIRECT" if regime.get("direct") == "on" else f"buffered ({regime.get('cache')} cache)"
    submit = {"each": ", one IO per submitting call", "batch": ", batched submission"}.get(
        regime.get("submit"), ""
    )
    reap = {"all": ", every completion reaped at once", "one": ", one completion per wait (fio's loop)"}.get(
        regime.get("reap"), ""
    )
    return f"{regime.get('rw')} bs={ex.fmt(experiment, 'bs', regime.get('bs'))} {io}{submit}{reap}"


def _depths(summary: pd.DataFrame, method: str, regime: dict[str, Any]) -> list[Any]:
    from iobench import explain as ex

    return [
        q
        for q in ex.distinct(summary, "qd", method=method, **regime)
        if ex.samples(summary, "iops", method=method, qd=q, **regime)
    ]


def _depth_sentences(experiment: Any, summary: pd.DataFrame, regime: dict[str, Any]) -> list[str]:
    """For each method measured at two depths or more: IOPS at the deepest against qd 1 (or the
    shallowest), the gap tested."""
    from iobench import explain as ex

    parts = []
    for method in METHODS:
        depths = _depths(summary, method, regime)
        if len(depths) < 2:
            continue
        low, high = depths[0], depths[-1]
        found = ex.difference(
            summary, "iops", {"method": method, "qd": low, **regime}, {"method": method, "qd": high, **regime}
        )
        iops_low = ex.one(summary, "iops", method=method, qd=low, **regime)
        iops_high = ex.one(summary, "iops", method=method, qd=high, **regime)
        parts.append(
            f"{method} at qd {high:,.0f} against {low:,.0f}: {iops_high:,.0f} vs {iops_low:,.0f} IOPS, "
            f"{ex.contrast(found, higher_is_better=True, words=('more', 'fewer'))}"
        )
    return parts


def _libaio_buffered(experiment: Any, summary: pd.DataFrame, regime: dict[str, Any]) -> str | None:
    """libaio on buffered IO: whether depth raised IOPS, and the share of the loop spent in io_submit."""
    from iobench import explain as ex

    if regime.get("direct") != "off":
        return None
    depths = _depths(summary, "libaio", regime)
    if len(depths) < 2:
        return None
    low, high = depths[0], depths[-1]
    found = ex.difference(
        summary, "iops", {"method": "libaio", "qd": low, **regime}, {"method": "libaio", "qd": high, **regime}
    )
    share = ex.one(summary, "submit_share", method="libaio", qd=high, **regime)
    gained = ex.direction(found)
    if gained is None:
        return None
    inside = (
        f"; {share:.0%} of the loop at qd {high:,.0f} was spent inside io_submit" if share is not None else ""
    )
    if gained <= 0 and share is not None and share >= 0.5:
        return (
            f"libaio on buffered IO ({_regime_label(experiment, regime)}) was synchronous: qd {high:,.0f} against "
            f"{low:,.0f} gave {ex.contrast(found, higher_is_better=True, words=('more', 'fewer'))} IOPS{inside}, "
            "so io_submit did the IOs itself, one after another, before it returned: a batch was submitted "
            "together but never in flight at the device together."
        )
    if gained <= 0:
        return (
            f"libaio on buffered IO: qd {high:,.0f} against {low:,.0f} gave "
            f"{ex.contrast(found, higher_is_better=True, words=('more', 'fewer'))} IOPS{inside}."
        )
    return (
        f"libaio on buffered IO gained from depth here: qd {high:,.0f} against {low:,.0f} gave "
        f"{ex.contrast(found, higher_is_better=True, words=('more', 'fewer'))} IOPS{inside}."
    )


def _ranking(experiment: Any, summary: pd.DataFrame, regime: dict[str, Any]) -> str | None:
    """The methods ranked by IOPS at the deepest qd they all reached."""
    from iobench import explain as ex

    measured = [m for m in METHODS if m != "psync" and _depths(summary, m, regime)]
    if len(measured) < 2:
        return None
    common = set.intersection(*(set(_depths(summary, m, regime)) for m in measured))
    if not common:
        return None
    qd = max(common)
    cases = [(m, {"method": m, "qd": qd, **regime}) for m in measured]
    ranking = ex.rank(summary, "iops", cases)
    if ranking is None:
        return None
    text = ex.ranking_sentence(
        ranking, lambda v: f"{v:,.0f} IOPS", order="most IOPS first", words=("more IOPS", "fewer IOPS")
    )
    return f"qd {qd:,.0f}, {text}"


def _syscalls(experiment: Any, summary: pd.DataFrame, regime: dict[str, Any]) -> str | None:
    """System calls per IO at the deepest qd each method reached (counted by the loops, exact)."""
    from iobench import explain as ex

    parts = []
    for method in METHODS:
        depths = _depths(summary, method, regime)
        if not depths:
            continue
        qd = depths[-1]
        per_io = ex.one(summary, "syscalls_per_io", method=method, qd=qd, **regime)
        if per_io is None:
            continue
        what = {
            "psync": "pread/pwrite",
            "threads": "pread/pwrite",
            "libaio": "io_submit + io_getevents",
            "io_uring": "io_uring_enter",
            "io_uring-fixed": "io_uring_enter",
            "io_uring-sqpoll": "io_uring_enter",
        }.get(method, "calls")
        parts.append(f"{method} {per_io:.3g} ({what}, qd {qd:,.0f})")
    if len(parts) < 2:
        return None
    return f"{_regime_label(experiment, regime)}, system calls per IO: " + ", ".join(parts) + "."
