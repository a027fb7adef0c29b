"""SIGTERM and SIGHUP as exceptions, like SIGINT's KeyboardInterrupt.

Left to their default, SIGTERM (a CI job cancelled, `kill`) and SIGHUP (a closed terminal, a
dropped ssh session) kill the process on the spot: no message, scratch files left behind.
Raised as ``Terminated`` instead, they unwind through the same paths as Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def termination_raises() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise Terminated in the main thread. Nests: the
    previous handlers come back on exit. Outside the main thread it changes nothing (Python
    runs handlers only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = {signum: signal.signal(signum, handler) for signum in TERMINATING}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)
