"""Pure-Python inner loops: one read()/write() syscall per call, nothing else.

``io.FileIO`` (unbuffered) is used for its ``readinto``: one ``read(2)`` into a buffer that
already exists, so the loop allocates nothing. Locals are bound once so each iteration is a
method call and a compare; the interpreter's share is what remains (see the native engine).
"""

from __future__ import annotations

import io


def read_all(source: io.FileIO, buffer: bytearray) -> tuple[int, int]:
    """Read until EOF with ``len(buffer)``-byte reads; returns (bytes, read calls incl. EOF)."""
    readinto = source.readinto
    total = 0
    calls = 0
    while True:
        got = readinto(buffer)
        calls += 1
        if not got:
            return total, calls
        total += got


def write_all(sink: io.FileIO, buffer: bytearray, size: int) -> tuple[int, int]:
    """Write ``size`` bytes as whole ``len(buffer)`` writes plus one short tail write.

    Returns (bytes, write calls). A short write (rare on files) is finished off and counted.
    """
    write = sink.write
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


def copy_all(source: io.FileIO, sink: io.FileIO, buffer: bytearray) -> tuple[int, int, int]:
    """TLPI's copy.c: read into the buffer, write what was read, until EOF.

    Returns (bytes, read calls incl. EOF, write calls).
    """
    readinto = source.readinto
    write = sink.write
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


def _finish(write, rest: memoryview) -> int:  # type: ignore[no-untyped-def]
    calls = 0
    while rest:
        written = write(rest)
        calls += 1
        rest = rest[written:]
    return calls
