"""Kernel counters read around a timed section: rusage and per-task IO accounting.

Syscall counts come from the kernel's task IO accounting (``syscr``/``syscw``, the fields
``psutil.Process().io_counters()`` calls ``read_count``/``write_count``). For experiments that
time one thread we read ``/proc/thread-self/io`` and ``RUSAGE_THREAD`` so that the progress
thread's own terminal writes and CPU never land in a row. Multi-threaded or multi-process
experiments use the process-wide counters (plus ``RUSAGE_CHILDREN``) instead.

Reading the counters costs syscalls itself (one ``pread`` per snapshot, which the kernel
counts as one read of ~109 bytes). That overhead is measured once per probe by taking two
snapshots back to back, and subtracted, so a row's ``syscalls_read`` is exactly the reads the
experiment made.
"""

from __future__ import annotations

import operator
import os
import resource
import time
from dataclasses import dataclass
from typing import Literal

import psutil

from iobench.loops.engines import native_module

Scope = Literal["thread", "process"]

_THREAD_IO = "/proc/thread-self/io"
_IO_FIELDS = ("rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes")
_IO_KEYS = tuple(f"{name}:".encode() for name in _IO_FIELDS)


@dataclass(slots=True)
class Snapshot:
    """Counter values at one instant; subtract two to get what happened in between."""

    time_ns: int
    #: CPU time from CLOCK_THREAD/PROCESS_CPUTIME_ID: exact to the ns, unlike rusage's
    #: user/system split, which the kernel derives from tick samples.
    cpu_ns: int
    user_ns: int
    sys_ns: int
    minflt: int
    majflt: int
    ctx_vol: int
    ctx_invol: int
    syscalls_read: int
    syscalls_write: int
    chars_read: int
    chars_written: int
    disk_read_bytes: int
    disk_write_bytes: int

    def __sub__(self, earlier: Snapshot) -> Snapshot:
        return Snapshot(*map(operator.sub, _values(self), _values(earlier)))


_SNAPSHOT_FIELDS = tuple(Snapshot.__dataclass_fields__)
#: All fields as a tuple in one C call: the probe's work runs between repetitions, kept short.
_values = operator.attrgetter(*_SNAPSHOT_FIELDS)
_NO_IO = (0, 0, 0, 0, 0, 0)
#: What reading the counters itself adds to them (the pread of /proc/thread-self/io); the rest is 0.
_OVERHEAD_FIELDS = ("syscalls_read", "syscalls_write", "chars_read", "chars_written")


def _rusage_ns(value_s: float) -> int:
    return round(value_s * 1e9)


def _io_in_order(text: bytes) -> bool:
    """Whether the kernel lists _IO_FIELDS first and in that order (every Linux since 2.6.20),
    so that a snapshot can take every other word instead of looking each name up."""
    return tuple(text.split()[0 : 2 * len(_IO_KEYS) : 2]) == _IO_KEYS


class CounterProbe:
    """Takes snapshots for one scope; open it before the timed section, close it after the case.

    A snapshot is taken twice per repetition, between repetitions, so it is kept short (a few
    microseconds, measured by tests/test_counter_window.py): the time between two passes is time
    in which a warm file's lines leave a last-level cache shared with other machines'
    work (benchmarks/fidelity/README.md: after a 300 us pause the next 8 MiB pass ran at 0.8-0.9
    of back-to-back speed on this project's VM).
    """

    def __init__(self, scope: Scope = "thread", native: bool = True) -> None:
        """``native=False`` reads a thread's counters in Python even when the C extension is
        built (as it must where it is not; the tests run both)."""
        self.scope = scope
        self._fd: int | None = None
        self._process: psutil.Process | None = None
        self._in_order = False
        #: The C extension's one-call snapshot of a thread's counters (None: read them in Python).
        self._thread_counters = None
        self.source = ""
        #: Why IO counters cannot be read here (None when they can); rows then carry NaN.
        self.unavailable: str | None = None
        if scope == "thread":
            try:
                # A fixed fd read with one pread: exactly one counted read per snapshot.
                self._fd = os.open(_THREAD_IO, os.O_RDONLY | os.O_CLOEXEC)
                self._in_order = _io_in_order(os.pread(self._fd, 512, 0))
                self.source = _THREAD_IO
                module = native_module() if native else None
                if self._in_order and module is not None:
                    self._thread_counters = module.thread_counters
            except OSError as exc:
                # e.g. a process that changed its user id is not dumpable: /proc/self is root's
                self.unavailable = f"{_THREAD_IO}: {exc.strerror}"
                self.close()
        if self._fd is None:
            try:
                self._process = psutil.Process()
                self._process.io_counters()
                self.source = "psutil.Process().io_counters()"
                self.unavailable = None
            except (psutil.Error, OSError) as exc:
                self._process = None
                self.source = "none"
                self.unavailable = f"{self.unavailable + '; ' if self.unavailable else ''}psutil: {exc}"
        # Children's CPU has no precise clock once reaped; their rusage is added in _raw.
        self._cpu_clock = time.thread_time_ns if scope == "thread" else time.process_time_ns
        self._overhead = self._calibrate()

    def _calibrate(self) -> Snapshot:
        """Counter cost of one snapshot, from back-to-back snapshots (smallest of a few)."""
        deltas = []
        for _ in range(5):
            first = self._raw()
            second = self._raw()
            deltas.append(second - first)
        return Snapshot(
            **{
                name: min(getattr(d, name) for d in deltas) if name in _OVERHEAD_FIELDS else 0
                for name in _SNAPSHOT_FIELDS
            }
        )

    def _io(self) -> tuple[int, ...]:
        """(rchar, wchar, syscr, syscw, read_bytes, write_bytes) now."""
        if self._fd is not None:
            words = os.pread(self._fd, 512, 0).split()  # b"rchar: 123 wchar: 45 ..."
            if self._in_order:
                return tuple(map(int, words[1 : 2 * len(_IO_KEYS) : 2]))
            fields = dict(zip(words[0::2], words[1::2], strict=True))
            return tuple(int(fields[name]) for name in _IO_KEYS)
        if self._process is None:
            return _NO_IO  # unavailable: the runner records NaN, never these zeros
        io = self._process.io_counters()
        return (
            getattr(io, "read_chars", 0),
            getattr(io, "write_chars", 0),
            io.read_count,
            io.write_count,
            io.read_bytes,
            io.write_bytes,
        )

    def _raw(self, time_ns: int = 0, cpu_ns: int = 0) -> Snapshot:
        """Counters now, stamped with clocks the caller read (so windows can nest)."""
        if self._thread_counters is not None:
            return Snapshot(time_ns, cpu_ns, *self._thread_counters(self._fd))
        if self.scope == "thread":
            usage = resource.getrusage(resource.RUSAGE_THREAD)
            user, system = usage.ru_utime, usage.ru_stime
            minflt, majflt = usage.ru_minflt, usage.ru_majflt
            nvcsw, nivcsw = usage.ru_nvcsw, usage.ru_nivcsw
        else:
            own = resource.getrusage(resource.RUSAGE_SELF)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            user = own.ru_utime + children.ru_utime
            system = own.ru_stime + children.ru_stime
            minflt = own.ru_minflt + children.ru_minflt
            majflt = own.ru_majflt + children.ru_majflt
            nvcsw = own.ru_nvcsw + children.ru_nvcsw
            nivcsw = own.ru_nivcsw + children.ru_nivcsw
            cpu_ns += _rusage_ns(children.ru_utime + children.ru_stime)
        rchar, wchar, syscr, syscw, read_bytes, write_bytes = self._io()
        return Snapshot(
            time_ns,
            cpu_ns,
            _rusage_ns(user),
            _rusage_ns(system),
            minflt,
            majflt,
            nvcsw,
            nivcsw,
            syscr,
            syscw,
            rchar,
            wchar,
            read_bytes,
            write_bytes,
        )

    def before(self) -> Snapshot:
        """Snapshot just before the timed section.

        Order: counters, CPU clock, wall clock; ``after`` reverses it. The wall window thus holds
        the timed code alone (and one attribute store): whatever runs in it is timed with every
        repetition. The thread CPU clock is a real syscall (~1 us each on this project's VM): read
        inside the wall window, the two reads were 1.1% of a 190 us warm read (measured paired, see
        benchmarks/fidelity/README.md), and building a snapshot there ~4 us more. The CPU window
        holds the wall window, so it may count up to one CPU-clock read more than the timed code
        used; ``after`` caps one thread's CPU at the wall time, which is all it can have used inside
        the wall window. The counter reads lie outside both windows.
        """
        snap = self._raw()
        snap.cpu_ns += self._cpu_clock()  # snap is new and ours
        snap.time_ns = time.perf_counter_ns()
        return snap

    def after(self, before: Snapshot) -> Snapshot:
        """Delta since ``before`` with this probe's own reading cost removed."""
        wall = time.perf_counter_ns()
        cpu = self._cpu_clock()
        delta = self._raw(time_ns=wall, cpu_ns=cpu) - before
        overhead = self._overhead  # its _OVERHEAD_FIELDS, spelled out: this runs between repetitions
        delta.syscalls_read -= overhead.syscalls_read
        delta.syscalls_write -= overhead.syscalls_write
        delta.chars_read -= overhead.chars_read
        delta.chars_written -= overhead.chars_written
        if self.scope == "thread" and delta.cpu_ns > delta.time_ns:
            # The excess is the clock reads just outside the wall window (see before()).
            delta.cpu_ns = delta.time_ns
        return delta

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CounterProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
