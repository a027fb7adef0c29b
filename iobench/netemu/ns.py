"""Network namespaces: names, the ``ip``/``tc`` commands, entering one from a thread, leftovers.

A namespace is made with ``ip netns add`` (a bind mount under /run/netns), so it outlives
the process that made it: its name carries that process's pid (``iobench-<pid>-<n>-client``)
so that ``cleanup_stale()`` can tell the leftovers of a dead process from a live link's.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator

#: Every namespace iobench makes starts with this.
PREFIX = "iobench-"
NETNS_DIR = "/run/netns"
_NAME = re.compile(rf"^{PREFIX}(\d+)-(\d+)-(client|peer)$")
_CLONE_NEWNET = 0x40000000
#: Seconds any one ``ip``/``tc`` command may take.
COMMAND_TIMEOUT_S = 20.0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


class LinkError(RuntimeError):
    """An ``ip``/``tc`` command or a system call failed while a link was built or torn down."""


def ip_command() -> str | None:
    """The path of ``ip`` (iproute2), or None."""
    return shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(p, os.X_OK)), None
    )


def tc_command() -> str | None:
    """The path of ``tc`` (iproute2), or None."""
    return shutil.which("tc") or next(
        (p for p in ("/usr/sbin/tc", "/sbin/tc") if os.access(p, os.X_OK)), None
    )


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command (no shell), output captured; LinkError with its stderr when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LinkError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise LinkError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.returncode}")
    return done


def setns(fd: int) -> None:
    """setns(2) for a network namespace: moves the calling *thread* only."""
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Within the block the calling thread lives in namespace ``name``: sockets, TUN devices
    and child processes it makes belong there. Back in the thread's own namespace on exit."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(own)
    finally:
        os.close(own)


def names(pid: int, seq: int) -> tuple[str, str]:
    """(client, peer) namespace names of link number ``seq`` of process ``pid``."""
    return f"{PREFIX}{pid}-{seq}-client", f"{PREFIX}{pid}-{seq}-peer"


def listed() -> list[str]:
    """Every iobench namespace that exists now (``ip netns list``; /run/netns without ``ip``)."""
    ip = ip_command()
    if ip is not None:
        out = run([ip, "netns", "list"], check=False).stdout
        found = [line.split()[0] for line in out.splitlines() if line.strip()]
    else:
        try:
            found = os.listdir(NETNS_DIR)
        except FileNotFoundError:
            found = []
    return sorted(name for name in found if name.startswith(PREFIX))


def pids_in(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (``ip netns pids``)."""
    ip = ip_command()
    if ip is None:
        return []
    out = run([ip, "netns", "pids", name], check=False).stdout
    return [int(word) for word in out.split() if word.isdigit()]


def kill_all_in(name: str) -> list[int]:
    """SIGKILL every process in namespace ``name`` but this one; returns the pids."""
    killed = []
    for pid in pids_in(name):
        if pid == os.getpid():
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def delete(name: str) -> None:
    """Remove namespace ``name`` (its veth and TUN devices go with it once no process holds it)."""
    ip = ip_command()
    if ip is not None:
        done = run([ip, "netns", "del", name], check=False)
        if done.returncode == 0 or name not in listed():
            return
        raise LinkError(f"ip netns del {name} failed: {done.stderr.strip()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale() -> list[str]:
    """The namespaces of iobench processes that are no longer alive (e.g. after SIGKILL). (A dead
    process's pid reused by another process hides its leftovers until that one ends too.)"""
    found = []
    for name in listed():
        match = _NAME.match(name)
        if match is not None and not _alive(int(match.group(1))):
            found.append(name)
    return found


def cleanup_stale() -> list[str]:
    """Remove the namespaces (and kill their processes) left by iobench processes that are no
    longer alive; a live process's links are left alone. Returns the names removed."""
    removed = []
    for name in stale():
        kill_all_in(name)
        delete(name)
        removed.append(name)
    return removed
