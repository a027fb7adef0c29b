"""The TUN relay: a TUN device in each namespace, joined by a forked process running the C
delay line (``_relay.c``). Used where the kernel has no ``sch_netem``.

The TUN devices are not persistent: each lives as long as a descriptor of it is open, and the
relay child holds the only ones, so the devices vanish with it. The child stops when its
control pipe becomes readable: a byte from ``stop()``, or end of file when this process died.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from iobench.netemu.ns import LinkError, entered
from iobench.osutil.children import read_until

try:
    from iobench.netemu import _relay  # type: ignore[attr-defined]
except ImportError:  # built without a compiler: VirtualLink says so
    _relay = None

TUN_PATH = "/dev/net/tun"
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
#: Seconds the relay may take to hand back its counters once asked to stop.
STOP_TIMEOUT_S = 10.0


def relay_built() -> bool:
    """Whether the C extension ``iobench.netemu._relay`` was built."""
    return _relay is not None


def open_tun(namespace: str, device: str) -> int:
    """Create TUN device ``device`` (layer 3, no packet-info header) inside ``namespace``; returns
    its descriptor. The device belongs to the namespace /dev/net/tun was opened in."""
    with entered(namespace):
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", device.encode(), _IFF_TUN | _IFF_NO_PI))
        except BaseException:
            os.close(fd)
            raise
    return fd


@dataclass
class RelayProcess:
    """A running relay child: stop it to get its counters and its CPU time."""

    pid: int
    control_fd: int
    result_fd: int
    counters: dict[str, Any] | None = field(default=None)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, Any]:
        """Ask the relay to stop; its per-direction counters (``a_to_b``: client to peer,
        ``b_to_a``), plus ``cpu_user_s`` / ``cpu_system_s`` of the child. Idempotent."""
        if self.counters is not None:
            return self.counters
        with contextlib.suppress(OSError):
            os.write(self.control_fd, b"s")
        try:
            data, ended = read_until(self.result_fd, time.monotonic() + timeout_s)
            if not ended:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        finally:
            os.close(self.result_fd)
            os.close(self.control_fd)
        _, status, usage = os.wait4(self.pid, 0)
        try:
            ok, value = json.loads(data or b"[false, null]")
        except ValueError:
            ok, value = False, "unreadable result"
        if not ok:
            why = value or (
                f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
                if os.WIFSIGNALED(status)
                else f"exit status {os.WEXITSTATUS(status)}"
            )
            self.counters = {"error": f"relay {self.pid}: {why}"}
        else:
            self.counters = value
        self.counters["cpu_user_s"] = usage.ru_utime
        self.counters["cpu_system_s"] = usage.ru_stime
        return self.counters


def _child(fd_a: int, fd_b: int, control_r: int, result_w: int, args: tuple[Any, ...]) -> None:
    """In the forked child: keep only our four descriptors, run the delay line, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    keep = {fd_a, fd_b, control_r, result_w}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    try:
        payload: list[Any] = [True, _relay.run(fd_a, fd_b, control_r, *args)]
    except BaseException as exc:
        payload = [False, f"{type(exc).__name__}: {exc}"]
    data = memoryview(json.dumps(payload).encode())
    while data:
        data = data[os.write(result_w, data) :]


def start(
    fd_a: int, fd_b: int, delay_ns: int, rate_bps: int, loss: float, seed: int, limit: int
) -> RelayProcess:
    """Fork the relay over TUN descriptors ``fd_a`` (client side) and ``fd_b`` (peer side).
    The caller closes its own copies of the two descriptors afterwards."""
    if _relay is None:
        raise LinkError("iobench.netemu._relay was not built")
    control_r, control_w = os.pipe2(os.O_CLOEXEC)
    result_r, result_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except BaseException:
        for fd in (control_r, control_w, result_r, result_w):
            os.close(fd)
        raise
    if pid == 0:  # never returns
        code = 0
        try:
            _child(fd_a, fd_b, control_r, result_w, (delay_ns, rate_bps, loss, seed, limit))
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(control_r)
    os.close(result_w)
    return RelayProcess(pid, control_w, result_r)


def child_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a live child used so far, from /proc (for rate measurements)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick
