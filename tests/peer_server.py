"""A real ``iobench serve`` subprocess for the peer tests (tests/test_peer*.py)."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest

#: The servers' default --timeout in these tests (seconds): a frame, an idle gap, a role's accept.
TIMEOUT = 0.5
LINE = re.compile(r"^iobench serve: listening on 127\.0\.0\.1:(\d+) \(iobench (\S+)\)$")


@dataclass
class Served:
    """A running ``iobench serve`` subprocess."""

    proc: subprocess.Popen
    port: int
    line: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> tuple[int, str, str]:
        """SIGTERM, then its exit status, the rest of stdout and its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err


def start_server(*args: str, timeout: float = TIMEOUT) -> Served:
    """Start ``iobench serve --port 0 --timeout T`` and wait (at most 20 s) for its one line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "iobench", "serve", "--port", "0", "--timeout", str(timeout), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    if not ready:
        proc.kill()
        pytest.fail("iobench serve printed nothing within 20 s")
    line = proc.stdout.readline().rstrip("\n")
    match = LINE.match(line)
    if not match:
        proc.kill()
        pytest.fail(f"unexpected first line {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}")
    return Served(proc, int(match.group(1)), line)
