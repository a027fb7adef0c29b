"""The measuring process runs one thread while it times: no display ticker, no library pool.

A second thread, even an idle one, shares the process's file table, and then the kernel takes a
file reference and the f_pos lock on every read()/write(): 1-byte reads measured ~16% slower.
The runner records the count when timing begins (``process_threads`` in the case's record) and
the run warns when it is not 1.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import threading
from pathlib import Path

from iobench.engine.checks import case_warnings
from tests.helpers import IOBENCH, ONE_REP

RUN = ["run", "rw-buffer", "--mode", "read,write", "--bs", "4KiB", "--file-size", "64KiB", "--cache", "warm"]


def _cases(out: Path) -> list[dict]:
    (meta,) = out.glob("*/meta.json")
    return json.loads(meta.read_text())["cases"]


def test_a_run_without_a_terminal_measures_in_one_thread(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [*IOBENCH, *RUN, *ONE_REP, "--dir", str(tmp_path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "IOBENCH_PARQUET": "0"},
    )
    assert done.returncode == 0, done.stderr
    cases = _cases(out)
    assert [case["process_threads"] for case in cases] == [1, 1]
    assert "threads when timing began" not in done.stderr


def test_the_live_bar_on_a_terminal_starts_no_thread(tmp_path: Path) -> None:
    out = tmp_path / "out"
    controller, terminal = pty.openpty()
    shown: list[bytes] = []

    def drain() -> None:  # keep the terminal's buffer from filling up and blocking the run
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO once the run has closed its side
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [*IOBENCH, *RUN, *ONE_REP, "--dir", str(tmp_path), "--out", str(out)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=60,
            env={**os.environ, "IOBENCH_PARQUET": "0", "TERM": "xterm"},
        )
    finally:
        os.close(terminal)
        reader.join(timeout=5)
        os.close(controller)
    assert done.returncode == 0
    assert b"rw-buffer mode=read" in b"".join(shown)  # the live display really drew on the terminal
    assert [case["process_threads"] for case in _cases(out)] == [1, 1]


def test_more_than_one_thread_is_a_warning() -> None:
    summary = {"experiment": "rw-buffer", "case": "mode=read,bs=1", "status": "ok", "process_threads": 3}
    assert case_warnings(summary, [{"status": "ok"}]) == [
        "rw-buffer mode=read,bs=1: the measuring process had 3 threads when timing began (1 expected): "
        "a shared file table makes every read()/write() take a file reference and the position lock, "
        "so per-call costs read high"
    ]
    assert case_warnings({**summary, "process_threads": 1}, [{"status": "ok"}]) == []
