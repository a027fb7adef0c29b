"""Pure-Python inner loops: the same system calls as the native module, one per call.

Every function has the same name, arguments and results as its twin in ``_native.c``; the
tests run both and compare syscall counts, bytes and data. ``io.FileIO`` (unbuffered) is
used for its ``readinto``: one ``read(2)`` into a buffer that already exists, so the loop
allocates nothing. Locals are bound once so each iteration is a call and a compare; the
interpreter's share is what remains, and what the native engine takes out.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from typing import Any

from iobench.loops.histogram import bucket_of as _bucket

Buffer = Any  # bytes-like: bytearray, memoryview, mmap, array


def _file(fd: int, mode: str) -> io.FileIO:
    # A view of the caller's descriptor: closing it leaves the descriptor open.
    return io.FileIO(fd, mode, closefd=False)


def read_all(fd: int, buffer: Buffer) -> tuple[int, int]:
    """Read until EOF with ``len(buffer)``-byte reads; returns (bytes, read calls incl. EOF)."""
    readinto = _file(fd, "rb").readinto
    total = 0
    calls = 0
    while True:
        got = readinto(buffer)
        calls += 1
        if not got:
            return total, calls
        total += got


def write_all(fd: int, buffer: Buffer, size: int) -> tuple[int, int]:
    """Write ``size`` bytes as whole ``len(buffer)`` writes plus one short tail write.

    Returns (bytes, write calls). A short write (rare on files) is finished off and counted.
    """
    write = _file(fd, "wb").write
    block = len(buffer)
    full, tail = divmod(size, block)
    calls = 0
    for _ in range(full):
        written = write(buffer)
        calls += 1
        if written != block:
            calls += _finish(write, memoryview(buffer)[written:])
    if tail:
        view = memoryview(buffer)[:tail]
        written = write(view)
        calls += 1
        if written != tail:
            calls += _finish(write, view[written:])
    return size, calls


def copy_all(source: int, sink: int, buffer: Buffer) -> tuple[int, int, int]:
    """TLPI's copy.c: read into the buffer, write what was read, until EOF.

    Returns (bytes, read calls incl. EOF, write calls).
    """
    readinto = _file(source, "rb").readinto
    write = _file(sink, "wb").write
    view = memoryview(buffer)
    block = len(buffer)
    total = reads = writes = 0
    while True:
        got = readinto(buffer)
        reads += 1
        if not got:
            return total, reads, writes
        written = write(buffer if got == block else view[:got])
        writes += 1
        if written != got:
            writes += _finish(write, view[written:got])
        total += got


def pread_at(fd: int, buffer: Buffer, offsets: Buffer) -> tuple[int, int]:
    """One ``pread`` of ``len(buffer)`` bytes at each offset; returns (bytes, calls)."""
    preadv, target = os.preadv, [buffer]
    total = 0
    for offset in offsets:
        total += preadv(fd, target, offset)
    return total, len(offsets)


def pwrite_at(fd: int, buffer: Buffer, offsets: Buffer) -> tuple[int, int]:
    """One ``pwrite`` of the whole buffer at each offset; returns (bytes, calls)."""
    pwrite = os.pwrite
    total = 0
    for offset in offsets:
        total += pwrite(fd, buffer, offset)
    return total, len(offsets)


_SYNCS: dict[int, Callable[[int], None] | None] = {0: None, 1: os.fsync, 2: os.fdatasync}


def write_sync(
    fd: int, buffer: Buffer, size: int, sync: int, every: int, latencies: Buffer
) -> tuple[int, int, int]:
    """``size`` bytes in ``len(buffer)`` writes, with fsync (1) or fdatasync (2) after every
    ``every``-th write (0: none). Each write's time, its sync included, goes to ``latencies``.

    Returns (bytes, writes, syncs). A short write raises OSError.
    """
    write, clock, sync_call = os.write, time.perf_counter_ns, _SYNCS[sync]
    view = memoryview(buffer)
    block = len(buffer)
    remaining = size
    index = syncs = 0
    while remaining:
        chunk = view if remaining >= block else view[:remaining]
        start = clock()
        written = write(fd, chunk)
        if sync_call is not None and (index + 1) % every == 0:
            sync_call(fd)
            syncs += 1
        latencies[index] = clock() - start
        index += 1
        if written != len(chunk):
            raise OSError(f"short write: {written} of {len(chunk)} bytes")
        remaining -= written
    return size, index, syncs


def touch_pages(mapping: Buffer, pages: int, page_size: int, write: bool) -> int:
    """Read (or write 1 to) one byte in each page; returns a checksum (pages when writing)."""
    if write:
        for offset in range(0, pages * page_size, page_size):
            mapping[offset] = 1
        return pages
    total = 0
    for offset in range(0, pages * page_size, page_size):
        total += mapping[offset]
    return total


def copy_out(source: Buffer, buffer: Buffer) -> int:
    """Copy the whole source out through ``buffer``, ``len(buffer)`` bytes at a time."""
    view = memoryview(source)
    block, size = len(buffer), len(view)
    try:
        for offset in range(0, size - block + 1, block):
            buffer[:] = view[offset : offset + block]
        tail = size % block
        if tail:
            buffer[:tail] = view[size - tail :]
    finally:
        view.release()
    return size


def null_calls(kind: str, count: int, fd: int = -1) -> int:
    """``count`` calls of getppid, read(fd, 0) or the vDSO clock; returns count."""
    if kind == "read0":
        read = os.read  # called directly: a wrapper would add a Python frame per call
        for _ in range(count):
            read(fd, 0)
        return count
    function = {"getppid": os.getppid, "vdso-clock": time.monotonic_ns}[kind]
    for _ in range(count):
        function()
    return count


def psync_run(
    fd: int, buffer: Buffer, bs: int, offsets: Buffer, writes: bytes, hist: Buffer, stamp: int = 0
) -> dict[str, int]:
    """One ``pread``/``pwrite`` of ``bs`` bytes per offset (``writes[i]`` 1: write), each timed
    into ``hist`` (iobench.loops.histogram); with a non-zero ``stamp`` a write's first 16 bytes
    are its offset and the stamp (int64, little-endian), as the C loops write them.

    Returns the counters the native twin returns (bytes, ios, short, submit_calls, ...).
    """
    if len(writes) != len(offsets) or bs <= 0 or len(buffer) < bs or (stamp and bs < 16):
        raise ValueError("psync_run: one direction per offset, a buffer of bs bytes (16 to stamp)")
    tag = stamp.to_bytes(8, "little", signed=True)
    clock, preadv, pwrite = time.perf_counter_ns, os.preadv, os.pwrite
    view = memoryview(buffer)[:bs]
    target = [view]
    total = shorts = lat_sum = lat_max = 0
    lat_min = -1
    started = clock()
    try:
        for offset, writing in zip(offsets, writes, strict=True):
            if writing and stamp:
                view[:16] = offset.to_bytes(8, "little", signed=True) + tag
            start = clock()
            moved = pwrite(fd, view, offset) if writing else preadv(fd, target, offset)
            took = clock() - start
            hist[_bucket(took)] += 1
            lat_sum += took
            lat_max = max(lat_max, took)
            lat_min = took if lat_min < 0 else min(lat_min, took)
            total += moved
            shorts += moved != bs
        ended = clock()
    finally:
        view.release()
    return {
        "bytes": total,
        "ios": len(offsets),
        "short": shorts,
        "submit_calls": len(offsets),
        "reap_calls": 0,
        "enter_calls": 0,
        "wakeups": 0,
        "submit_ns": 0,
        "loop_ns": ended - started,
        "lat_sum_ns": lat_sum,
        "lat_max_ns": lat_max,
        "lat_min_ns": lat_min,
        "retries": 0,
        "looks": len(offsets),  # each call returns its own IO
    }


def _finish(write: Callable[[Buffer], int], rest: memoryview) -> int:
    calls = 0
    while rest:
        written = write(rest)
        calls += 1
        rest = rest[written:]
    return calls
