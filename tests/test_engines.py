"""Both engines make the same system calls and move the same bytes, loop by loop.

Each loop runs under both modules on real files; the kernel's own counters
(/proc/thread-self/io) and the data on disk must agree exactly.
"""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import sys
import time
from array import array
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from iobench.errors import ExitCode
from iobench.loops import engines, pyloops
from tests.helpers import IOBENCH, ONE_REP
from tests.straced import syscalls_of_this_thread

native = engines._load_native()[0]
needs_native = pytest.mark.skipif(native is None, reason="the C extension is not built here")
MODULES = [pytest.param(pyloops, id="python"), pytest.param(native, id="native", marks=needs_native)]


def syscalls() -> tuple[int, int]:
    """(read syscalls, write syscalls) of this thread so far, as the kernel counts them.

    One open and one pread: the pread is the only read counted by the next snapshot.
    """
    fd = os.open("/proc/thread-self/io", os.O_RDONLY)
    try:
        text = os.pread(fd, 4096, 0).decode()
    finally:
        os.close(fd)
    fields = dict(line.split(": ") for line in text.splitlines())
    return int(fields["syscr"]), int(fields["syscw"])


def counted(function, *args):  # type: ignore[no-untyped-def]
    """Call function; return (its result, read syscalls, write syscalls) it made.

    The two reads of /proc/thread-self/io count as one read each (the first is counted
    by the second snapshot), so one is taken off.
    """
    before = syscalls()
    result = function(*args)
    after = syscalls()
    return result, after[0] - before[0] - 1, after[1] - before[1]


def random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("loops", MODULES)
@pytest.mark.parametrize(("size", "block"), [(10_000, 1), (65536, 4096), (100_001, 4096), (0, 512)])
def test_read_all_counts_every_read(loops: ModuleType, tmp_path: Path, size: int, block: int) -> None:
    random_file(tmp_path / "f", size)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        (moved, calls), reads, writes = counted(loops.read_all, fd, bytearray(block))
    finally:
        os.close(fd)
    expected_calls = -(-size // block) + 1  # every block, then the read that returns 0
    assert (moved, calls) == (size, expected_calls)
    assert (reads, writes) == (expected_calls, 0)


@pytest.mark.parametrize("loops", MODULES)
@pytest.mark.parametrize(("size", "block"), [(10_000, 1), (100_001, 4096), (4096, 4096)])
def test_write_all_writes_the_pattern(loops: ModuleType, tmp_path: Path, size: int, block: int) -> None:
    buffer = bytearray(os.urandom(block))
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        (moved, calls), reads, writes = counted(loops.write_all, fd, buffer, size)
    finally:
        os.close(fd)
    expected_calls = -(-size // block)
    assert (moved, calls, reads, writes) == (size, expected_calls, 0, expected_calls)
    assert (tmp_path / "out").read_bytes() == (bytes(buffer) * (size // block + 1))[:size]


@pytest.mark.parametrize("loops", MODULES)
def test_copy_all_is_exact(loops: ModuleType, tmp_path: Path) -> None:
    data = random_file(tmp_path / "src", 70_001)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        (moved, read_calls, write_calls), reads, writes = counted(loops.copy_all, src, dst, bytearray(4096))
    finally:
        os.close(src)
        os.close(dst)
    assert (moved, read_calls, write_calls) == (70_001, 19, 18)
    assert (reads, writes) == (19, 18)
    assert (tmp_path / "dst").read_bytes() == data


@pytest.mark.parametrize("loops", MODULES)
def test_positioned_reads_and_writes(loops: ModuleType, tmp_path: Path) -> None:
    data = random_file(tmp_path / "f", 8 * 4096)
    offsets = array("q", [7 * 4096, 0, 3 * 4096])
    buffer = bytearray(4096)
    fd = os.open(tmp_path / "f", os.O_RDWR)
    try:
        (moved, calls), reads, writes = counted(loops.pread_at, fd, buffer, offsets)
        assert (moved, calls, reads, writes) == (3 * 4096, 3, 3, 0)
        assert bytes(buffer) == data[3 * 4096 : 4 * 4096]  # the last offset read
        record = bytes(range(256)) * 16
        (moved, calls), reads, writes = counted(loops.pwrite_at, fd, record, array("q", [4096, 5 * 4096]))
        assert (moved, calls, reads, writes) == (2 * 4096, 2, 0, 2)
    finally:
        os.close(fd)
    content = (tmp_path / "f").read_bytes()
    assert content[4096 : 2 * 4096] == record and content[5 * 4096 : 6 * 4096] == record
    assert content[:4096] == data[:4096]


@pytest.mark.parametrize("loops", MODULES)
@pytest.mark.parametrize(("sync", "every", "expected_syncs"), [(0, 1, 0), (1, 1, 5), (2, 1, 5), (1, 2, 2)])
def test_write_sync_times_each_write(
    loops: ModuleType, tmp_path: Path, sync: int, every: int, expected_syncs: int
) -> None:
    buffer = bytearray(os.urandom(4096))
    latencies = array("q", bytes(8 * 5))
    fd = os.open(tmp_path / "s", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        (moved, writes, syncs), _, write_calls = counted(
            loops.write_sync, fd, buffer, 4 * 4096 + 100, sync, every, latencies
        )
    finally:
        os.close(fd)
    assert (moved, writes, syncs, write_calls) == (4 * 4096 + 100, 5, expected_syncs, 5)
    assert all(latency > 0 for latency in latencies)
    assert (tmp_path / "s").read_bytes() == (bytes(buffer) * 5)[: 4 * 4096 + 100]


@pytest.mark.parametrize("loops", MODULES)
def test_touch_pages_and_copy_out(loops: ModuleType, tmp_path: Path) -> None:
    page = mmap.PAGESIZE
    data = random_file(tmp_path / "m", 4 * page + 10)
    with open(tmp_path / "m", "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ)
    try:
        assert loops.touch_pages(mapping, 5, page, False) == sum(data[i * page] for i in range(5))
        buffer = bytearray(3000)
        assert loops.copy_out(mapping, buffer) == len(data)
        tail = len(data) % 3000
        assert bytes(buffer[:tail]) == data[-tail:]  # the last chunk copied is the tail
    finally:
        mapping.close()
    anonymous = mmap.mmap(-1, 3 * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        assert loops.touch_pages(anonymous, 3, page, True) == 3
        assert [anonymous[i * page] for i in range(3)] == [1, 1, 1]
    finally:
        anonymous.close()


def check_null_calls(loops: ModuleType) -> None:
    """The kernel's evidence that null_calls made its calls: read(fd, 0) counted in
    /proc/thread-self/io, getppid seen by strace one by one, the vDSO clock never entering the
    kernel yet taking the time a clock read takes."""
    fd = os.open("/dev/zero", os.O_RDONLY)
    try:
        result, reads, _ = counted(loops.null_calls, "read0", 1000, fd)
    finally:
        os.close(fd)
    assert (result, reads) == (1000, 1000)
    with syscalls_of_this_thread(("getppid", "clock_gettime")) as seen:
        assert loops.null_calls("getppid", 1000) == 1000
        assert loops.null_calls("vdso-clock", 1000) == 1000
    assert seen["getppid"] == 1000  # every call reached the kernel
    assert seen.count("clock_gettime", "CLOCK_MONOTONIC") == 0  # served by the vDSO, in user space
    calls = 200_000
    start = time.perf_counter_ns()
    loops.null_calls("vdso-clock", calls)
    per_call = (time.perf_counter_ns() - start) / calls
    # A clock read costs a few ns at least (rdtsc alone takes ~10 cycles); a loop that skipped
    # it would finish 200,000 iterations in far less. Upper bound: a slow VM's syscall fallback.
    assert 2 <= per_call <= 5_000, per_call


def check_read_all(loops: ModuleType, folder: Path) -> None:
    """read_all's evidence: the kernel counted every read and the buffer holds the file's end."""
    data = random_file(folder / "evidence", 10_000)
    buffer = bytearray(4096)
    fd = os.open(folder / "evidence", os.O_RDONLY)
    try:
        (moved, calls), reads, _ = counted(loops.read_all, fd, buffer)
    finally:
        os.close(fd)
    assert (moved, calls, reads) == (10_000, 4, 4)
    assert bytes(buffer[: 10_000 % 4096]) == data[-(10_000 % 4096) :]


@pytest.mark.parametrize("loops", MODULES)
def test_null_calls_reach_the_kernel(loops: ModuleType) -> None:
    check_null_calls(loops)


@pytest.mark.parametrize("loops", MODULES)
def test_read_all_evidence(loops: ModuleType, tmp_path: Path) -> None:
    check_read_all(loops, tmp_path)


@pytest.mark.parametrize("faked", ["read0", "getppid", "vdso-clock"])
@pytest.mark.parametrize("module", MODULES)
def test_a_stub_loop_fails_the_evidence_checks(
    module: ModuleType, faked: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Mutation check: a loop that returns the expected result without making its calls (one
    kind at a time, the others real) must be caught, or the checks above would pass a stub."""
    real = module.null_calls

    def stub(kind: str, count: int, fd: int = -1) -> int:
        return count if kind == faked else real(kind, count, fd)

    monkeypatch.setattr(module, "null_calls", stub)
    with pytest.raises(AssertionError):
        check_null_calls(module)
    monkeypatch.setattr(module, "read_all", lambda fd, buffer: (10_000, 4))
    with pytest.raises(AssertionError):
        check_read_all(module, tmp_path)


@pytest.mark.parametrize("loops", MODULES)
def test_errors_are_oserrors(loops: ModuleType, tmp_path: Path) -> None:
    fd = os.open(tmp_path / "w", os.O_WRONLY | os.O_CREAT)
    os.close(fd)
    with pytest.raises(OSError) as caught:
        loops.read_all(fd, bytearray(16))  # closed descriptor
    assert caught.value.errno == 9  # EBADF


@needs_native
def test_native_loop_stops_on_a_signal() -> None:
    """Ctrl-C must end even a billion-call loop: the C loop runs Python's handlers."""

    class Alarm(Exception):
        pass

    def raise_alarm(signum: int, frame: object) -> None:
        raise Alarm

    previous = signal.signal(signal.SIGALRM, raise_alarm)
    fd = os.open("/dev/zero", os.O_RDONLY)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Alarm):
            native.null_calls("read0", 10**12, fd)  # days of calls, were it not stopped
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(fd)


def test_engine_resolution() -> None:
    assert engines.engine_for("python", True) == "python"
    assert engines.engine_for("auto", False) == "python"
    assert engines.engine_for("native", False) == "python"  # no native twin: rows say python
    built = "native" if engines.native_available() else "python"
    assert engines.engine_for("auto", True) == built
    with pytest.raises(ValueError, match="unknown engine"):
        engines.engine_for("fortran", True)


def _run_rw(tmp_path: Path, engine: str, *extra_python: str) -> subprocess.CompletedProcess[str]:
    """``iobench run rw-buffer`` in a fresh interpreter (optionally with a prelude)."""
    prelude = "".join(f"{line}; " for line in extra_python)
    code = f"import sys; {prelude}from iobench.cli import main; sys.argv = ['iobench'] + sys.argv[1:]; main()"
    args = ["run", "rw-buffer", "--mode", "copy", "--file-size", "64KiB", "--bs", "1KiB", "--cache", "warm"]
    args += [*ONE_REP, "--engine", engine, "--out", str(tmp_path), "--dir", str(tmp_path), "-q"]
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False
    )


def _only_run(tmp_path: Path) -> pd.DataFrame:
    (run,) = [p for p in tmp_path.iterdir() if (p / "results.csv").exists()]
    return pd.read_csv(run / "results.csv")


@needs_native
@pytest.mark.timeout(60)
def test_both_engines_give_the_same_counts_through_the_cli(tmp_path: Path) -> None:
    frames = {}
    for engine in ("python", "native"):
        out = tmp_path / engine
        out.mkdir()
        done = subprocess.run(
            [
                *IOBENCH,
                *("run", "rw-buffer", "--mode", "copy", "--file-size", "64KiB", "--bs", "1,4KiB"),
                *(
                    "--cache",
                    "warm",
                    *ONE_REP,
                    "--engine",
                    engine,
                    "--out",
                    str(out),
                    "--dir",
                    str(out),
                    "-q",
                ),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        frames[engine] = _only_run(out).sort_values("bs").reset_index(drop=True)
    python, native_rows = frames["python"], frames["native"]
    assert set(python["engine"]) == {"python"} and set(native_rows["engine"]) == {"native"}
    for column in ("bytes", "ops", "syscalls_read", "syscalls_write", "integrity_ok"):
        assert python[column].tolist() == native_rows[column].tolist(), column
    assert python["syscalls_read"].tolist() == [65537, 17]


@pytest.mark.timeout(60)
def test_without_the_extension_auto_falls_back_and_native_is_refused(tmp_path: Path) -> None:
    hide = "sys.modules['iobench.loops._native'] = None"  # import fails, as with no compiler
    done = _run_rw(tmp_path, "auto", hide)
    assert done.returncode == 0, done.stderr
    assert set(_only_run(tmp_path)["engine"]) == {"python"}
    refused = _run_rw(tmp_path / "x", "native", hide)
    assert refused.returncode == ExitCode.USAGE
    assert refused.stderr.strip().startswith("Error: engine: native was asked for but the C extension")
    assert "Traceback" not in refused.stderr


def test_meta_and_rows_name_the_engine(tmp_path: Path) -> None:
    done = _run_rw(tmp_path, "python")
    assert done.returncode == 0, done.stderr
    (run,) = [p for p in tmp_path.iterdir() if (p / "meta.json").exists()]
    meta = (run / "meta.json").read_text()
    assert '"engine": "python"' in meta and '"native_engine": ' in meta
    assert set(_only_run(tmp_path)["engine"]) == {"python"}


@pytest.mark.timeout(120)
def test_a_build_without_a_compiler_still_installs(tmp_path: Path) -> None:
    """optional=True: no compiler means a warning and no extension, not a failed install."""
    pytest.importorskip("setuptools")
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "iobench" / "loops").mkdir(parents=True)
    (tmp_path / "setup.py").write_text((root / "setup.py").read_text())
    for name in ("_native.c", "_async.c", "_async.h", "_uring_net.c"):
        (tmp_path / "iobench" / "loops" / name).write_text((root / "iobench/loops" / name).read_text())
    env = {**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"}
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.rglob("*.so"))
    assert "failed" in (done.stdout + done.stderr).lower()


def test_extension_source_matches_the_installed_module() -> None:
    """A stale build would measure old code: the .so must be newer than its source."""
    if native is None:
        pytest.skip("the C extension is not built here")
    built = Path(native.__file__)
    for name in ("_native.c", "_async.c", "_async.h", "_uring_net.c"):
        source = Path(engines.__file__).with_name(name)
        assert built.stat().st_mtime >= source.stat().st_mtime, f"rebuild: make install ({built}, {name})"
