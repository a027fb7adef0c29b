"""Facts about the host and the target folder, and the warnings they imply.

Everything here is read, never assumed: /proc/self/mountinfo for the filesystem, /sys for the
block device's scheduler and rotational flag, getrlimit for limits. Facts that cannot be read
are None, not guessed.
"""

from __future__ import annotations

import functools
import gzip
import os
import platform
import re
import resource
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from iobench.units import format_size

#: Filesystems whose data lives in RAM: the page cache is the storage.
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}
#: Filesystems stacked on another one (what reaches a disk depends on the lower layer).
STACKED_FILESYSTEMS = {
    "overlay",
    "fuse",
    "fuse.fuse-overlayfs",
    "aufs",
    "9p",
    "virtiofs",
    "nfs",
    "nfs4",
    "cifs",
}

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo."""

    device: str  # "major:minor"
    mount_point: str
    mount_options: str
    fs_type: str
    source: str
    super_options: str


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse /proc/self/mountinfo (see proc(5)); optional fields end at the "-" separator."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 7:
            continue
        sep = fields.index("-")
        after = fields[sep + 1 :]
        mounts.append(
            Mount(
                device=fields[2],
                mount_point=_unescape(fields[4]),
                mount_options=fields[5],
                fs_type=after[0] if after else "",
                source=_unescape(after[1]) if len(after) > 1 else "",
                super_options=after[2] if len(after) > 2 else "",
            )
        )
    return mounts


def find_mount(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount holding ``path``: same device number, deepest mount point containing it."""
    real = os.path.realpath(path)
    st_dev = os.stat(real).st_dev
    device = f"{os.major(st_dev)}:{os.minor(st_dev)}"

    def contains(mount: Mount) -> bool:
        point = mount.mount_point.rstrip("/") + "/"
        return real == mount.mount_point or (real + "/").startswith(point)

    containing = [m for m in mounts if contains(m)]
    same_device = [m for m in containing if m.device == device]
    candidates = same_device or containing
    return max(candidates, key=lambda m: len(m.mount_point), default=None)


def block_device_facts(device: str) -> dict[str, Any]:
    """Name, IO scheduler and rotational flag of the whole disk behind ``major:minor``."""
    sys_path = Path("/sys/dev/block") / device
    if not sys_path.exists():
        return {"block_device": None, "scheduler": None, "rotational": None}
    node = sys_path.resolve()
    if (node / "partition").exists():
        node = node.parent
    scheduler_text = _read(node / "queue" / "scheduler")
    active = None
    if scheduler_text:
        match = re.search(r"\[([^\]]+)\]", scheduler_text)
        active = match.group(1) if match else scheduler_text
    rotational = _read(node / "queue" / "rotational")
    return {
        "block_device": node.name,
        "scheduler": active,
        "rotational": None if rotational is None else rotational == "1",
    }


def target_facts(directory: Path) -> dict[str, Any]:
    """Filesystem, mount, device and free space of the folder where scratch files go."""
    directory = Path(directory)
    mountinfo = _read("/proc/self/mountinfo") or ""
    mount = find_mount(directory, parse_mountinfo(mountinfo))
    usage = shutil.disk_usage(directory)
    facts: dict[str, Any] = {
        "path": os.path.realpath(directory),
        "fs_type": mount.fs_type if mount else None,
        "mount_point": mount.mount_point if mount else None,
        "mount_source": mount.source if mount else None,
        "mount_options": mount.mount_options if mount else None,
        "super_options": mount.super_options if mount else None,
        "free_bytes": usage.free,
        "total_bytes": usage.total,
    }
    if mount:
        facts.update(block_device_facts(mount.device))
    else:
        facts.update(block_device=None, scheduler=None, rotational=None)
    return facts


def _cpu_model() -> str | None:
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "cpu model", "Processor"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or None


_CACHE_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)\s*$", re.IGNORECASE)
_CACHE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_cache_size(text: str | None) -> int | None:
    """A cache size as sysfs writes it (``32768K``; ``M``/``G`` and plain bytes accepted)."""
    match = _CACHE_SIZE.match(text or "")
    return int(match.group(1)) * _CACHE_UNITS[match.group(2).upper()] if match else None


def _sysfs_cpu_caches(directory: Path) -> list[dict[str, Any]]:
    """Data and unified caches from ``cpuN/cache/index*/`` (instruction caches skipped)."""
    caches = []
    for index in sorted(directory.glob("index*")):
        kind = _read(index / "type")
        level = _read(index / "level")
        size = parse_cache_size(_read(index / "size"))
        if kind not in ("Data", "Unified") or not (level or "").isdigit() or not size:
            continue
        caches.append(
            {
                "level": int(level or 0),
                "type": kind,
                "size_bytes": size,
                "shared_cpus": _read(index / "shared_cpu_list"),
            }
        )
    return caches


def llc_facts(cpu: int | None = None, sysfs: Path = Path("/sys/devices/system/cpu")) -> dict[str, Any]:
    """The last-level cache of ``cpu`` (default: the first CPU this process may run on).

    From sysfs (``cache/index*/level, type, size, shared_cpu_list``): the highest-level data or
    unified cache. Whether a case's working set fits it decides whether a warm read measures
    the cache or DRAM. No fallback to glibc's ``getconf LEVEL3_CACHE_SIZE``: it comes from
    CPUID and can be the whole package's L3 (384 MiB on this project's AMD EPYC VM, where
    sysfs gives each CPU's L3 as 32 MiB). Unknown facts are None.
    """
    if cpu is None:
        cpu = min(os.sched_getaffinity(0))
    directory = sysfs / f"cpu{cpu}" / "cache"
    caches = _sysfs_cpu_caches(directory)
    if not caches:
        return {
            "llc_bytes": None,
            "llc_level": None,
            "llc_shared_cpus": None,
            "llc_source": f"{directory}: not readable",
        }
    last = max(caches, key=lambda cache: cache["level"])
    return {
        "llc_bytes": last["size_bytes"],
        "llc_level": last["level"],
        "llc_shared_cpus": last["shared_cpus"],
        "llc_source": str(directory),
    }


def fits_llc(working_set_bytes: int | None, llc_bytes: int | None) -> bool | None:
    """Whether a working set fits the last-level cache (None when either is unknown)."""
    if working_set_bytes is None or not llc_bytes:
        return None
    return working_set_bytes <= llc_bytes


@functools.cache
def _llc_bytes(cpu: int) -> int | None:
    return llc_facts(cpu)["llc_bytes"]


def working_set(bytes_touched: int) -> dict[str, Any]:
    """A row's ``working_set_bytes`` and ``fits_llc``: does what one repetition touches fit the
    last-level cache of the first CPU this process may run on (the one ``--cpu`` pins)?"""
    llc = _llc_bytes(min(os.sched_getaffinity(0)))
    return {"working_set_bytes": bytes_touched, "fits_llc": fits_llc(bytes_touched, llc)}


def _limit(which: int) -> dict[str, int | None]:
    soft, hard = resource.getrlimit(which)

    def norm(value: int) -> int | None:
        return None if value == resource.RLIM_INFINITY else value

    return {"soft": norm(soft), "hard": norm(hard)}


def host_facts() -> dict[str, Any]:
    """Kernel, CPU, memory, Python, privileges, limits and noise facts of this machine."""
    memory = psutil.virtual_memory()
    cpuinfo = _read("/proc/cpuinfo") or ""
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "hypervisor": bool(re.search(r"^flags\s*:.*\bhypervisor\b", cpuinfo, re.MULTILINE)),
        "memory_total_bytes": memory.total,
        "memory_available_bytes": memory.available,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "euid": os.geteuid(),
        "is_root": os.geteuid() == 0,
        "rlimit_memlock": _limit(resource.RLIMIT_MEMLOCK),
        "rlimit_nofile": _limit(resource.RLIMIT_NOFILE),
        "load_average": list(os.getloadavg()),
        "cpu_governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        **llc_facts(),
        "damon_pageout_after_s": damon_pageout_after_s(),
    }


DAMON_ADMIN = Path("/sys/kernel/mm/damon/admin")


def damon_pageout_after_s(root: Path = DAMON_ADMIN) -> float | None:
    """How long memory may sit idle before a running DAMON ``pageout`` scheme reclaims it
    (the shortest over running kdamonds), or None when none runs. Such a host evicts page
    cache that nobody touches: a file made "warm" can go cold between repetitions."""
    shortest: float | None = None
    for kdamond in sorted(root.glob("kdamonds/[0-9]*")):
        if _read(kdamond / "state") != "on":
            continue
        for context in kdamond.glob("contexts/[0-9]*"):
            aggregation_us = _read(context / "monitoring_attrs" / "intervals" / "aggr_us")
            for scheme in context.glob("schemes/[0-9]*"):
                min_age = _read(scheme / "access_pattern" / "age" / "min")
                if _read(scheme / "action") != "pageout" or not (min_age and aggregation_us):
                    continue
                try:
                    seconds = int(min_age) * int(aggregation_us) / 1e6
                except ValueError:
                    continue
                shortest = seconds if shortest is None else min(shortest, seconds)
    return shortest


#: The tick assumed when the kernel's CONFIG_HZ cannot be read (HZ=100, the lowest common value).
ASSUMED_TICK_NS = 10_000_000
_CONFIG_HZ = re.compile(r"^CONFIG_HZ=(\d+)\s*$", re.MULTILINE)


def parse_config_hz(config: str) -> int | None:
    """CONFIG_HZ from a kernel config text (``CONFIG_HZ=250``); None when absent."""
    match = _CONFIG_HZ.search(config)
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


def _kernel_config(path: Path) -> str | None:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
                return handle.read()
        return path.read_text(encoding="utf-8", errors="replace")
    except (OSError, EOFError):
        return None


def cpu_tick_ns(config_paths: tuple[Path, ...] | None = None) -> tuple[int, str]:
    """The scheduler tick in ns and where that figure comes from.

    getrusage splits CPU time into user and system by sampling the mode at each tick, so the
    tick (1 s / CONFIG_HZ) is the resolution of that split. It is read from /proc/config.gz or
    /boot/config-<release>; when neither can be read, 10 ms (HZ=100) is assumed and the source
    says so.
    """
    if config_paths is None:
        config_paths = (Path("/proc/config.gz"), Path(f"/boot/config-{platform.release()}"))
    for path in config_paths:
        text = _kernel_config(path)
        hz = parse_config_hz(text) if text is not None else None
        if hz:
            return 1_000_000_000 // hz, f"CONFIG_HZ={hz} in {path}"
    return ASSUMED_TICK_NS, "assumed 10 ms (HZ=100): CONFIG_HZ not readable from the kernel config"


def warnings_for(host: dict[str, Any], target: dict[str, Any] | None) -> list[str]:
    """Plain sentences about what could make results misleading on this host."""
    found: list[str] = []
    if target:
        fs = target.get("fs_type")
        if fs in MEMORY_FILESYSTEMS:
            found.append(
                f"target is {fs}: page cache and fsync results do not describe a disk, "
                "and a cold cache cannot be made there"
            )
        elif fs in STACKED_FILESYSTEMS:
            found.append(f"target is {fs}: what reaches a disk depends on the layer below it")
        if target.get("rotational"):
            found.append(
                f"the kernel reports target disk {target.get('block_device')} as rotational "
                "(virtual disks often claim so): if it is, seeks dominate small random IO"
            )
        if fs not in MEMORY_FILESYSTEMS and target.get("block_device") is None:
            found.append("no block device found for the target: disk bytes may not be attributable")
    if host.get("hypervisor"):
        found.append(
            "running under a hypervisor: the disk is virtual and the host's own cache may serve "
            "'cold' reads faster than a real disk would"
        )
    # The load average counts the whole machine, so it is weighed against all its CPUs.
    cpus = host.get("cpu_count") or host.get("cpus_usable") or 1
    load1 = (host.get("load_average") or [0])[0]
    if load1 > 0.5 * cpus:
        found.append(f"load average {load1:.2f} on {cpus} CPUs: other work may disturb the timings")
    damon = host.get("damon_pageout_after_s")
    if damon is not None:
        found.append(
            f"DAMON reclaims memory idle for {damon:g} s (a pageout scheme): page cache untouched that long is "
            "evicted, so a warm file can go cold between repetitions (each row's resident_before shows it)"
        )
    governor = host.get("cpu_governor")
    if governor and governor != "performance":
        found.append(f"CPU frequency governor is {governor!r}, not 'performance': clock speed may vary")
    available = host.get("memory_available_bytes")
    if available is not None and available < 1 << 30:
        found.append(f"only {format_size(available)} of memory available: the page cache will be small")
    return found


def _limit_text(value: int | None) -> str:
    return "unlimited" if value is None else format_size(value)


def host_line(host: dict[str, Any]) -> str:
    """The host in one line, for report headers."""
    memory = format_size(host.get("memory_total_bytes") or 0)
    return (
        f"{host.get('hostname')}: kernel {host.get('kernel')}, {host.get('cpu_model')} x{host.get('cpu_count')}"
        f"{' (VM)' if host.get('hypervisor') else ''}, {memory} RAM, Python {host.get('python')}"
    )


def target_line(target: dict[str, Any]) -> str:
    """The target folder in one line, for report headers."""
    return (
        f"{target.get('path')} on {target.get('fs_type')} ({target.get('mount_source')}, device "
        f"{target.get('block_device')}, scheduler {target.get('scheduler')}, "
        f"{'rotational' if target.get('rotational') else 'non-rotational'})"
    )


def llc_text(host: dict[str, Any]) -> str:
    size = host.get("llc_bytes")
    if not size:
        return "not readable"
    shared = host.get("llc_shared_cpus")
    where = f", shared by CPUs {shared}" if shared else ""
    return f"{format_size(size)} L{host.get('llc_level')} (the last-level cache{where})"


def describe(host: dict[str, Any], target: dict[str, Any]) -> list[tuple[str, str]]:
    """Host and target facts as (label, text) lines: sysinfo prints them, reports show them."""
    memlock = host.get("rlimit_memlock") or {}
    rotational = {True: "yes", False: "no", None: "n/a"}[target.get("rotational")]
    return [
        ("kernel", f"{host.get('kernel')} ({host.get('machine')})"),
        (
            "cpu",
            f"{host.get('cpu_model')} x{host.get('cpu_count')} ({host.get('cpus_usable')} usable)"
            + (", under a hypervisor" if host.get("hypervisor") else ""),
        ),
        (
            "memory",
            f"{format_size(host.get('memory_total_bytes') or 0)} total, "
            f"{format_size(host.get('memory_available_bytes') or 0)} available",
        ),
        ("LLC", llc_text(host)),
        ("python", f"{host.get('python')} ({host.get('python_implementation')})"),
        ("user", f"euid {host.get('euid')}" + (" (root)" if host.get("is_root") else "")),
        ("load average", " ".join(f"{v:.2f}" for v in host.get("load_average") or [])),
        ("cpu governor", host.get("cpu_governor") or "not readable"),
        (
            "RLIMIT_MEMLOCK",
            f"soft {_limit_text(memlock.get('soft'))}, hard {_limit_text(memlock.get('hard'))}",
        ),
        ("target", str(target.get("path"))),
        (
            "filesystem",
            f"{target.get('fs_type')} on {target.get('mount_source')} at {target.get('mount_point')}",
        ),
        ("mount options", f"{target.get('mount_options')} ({target.get('super_options')})"),
        ("block device", target.get("block_device") or "none"),
        ("IO scheduler", target.get("scheduler") or "n/a"),
        ("rotational", rotational),
        (
            "free space",
            f"{format_size(target.get('free_bytes') or 0)} of {format_size(target.get('total_bytes') or 0)}",
        ),
    ]


def peak_rss_bytes() -> int | None:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: that survives
    exec and so carries the peak of the process that forked us."""
    text = _read("/proc/self/status") or ""
    match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def git_facts(directory: Path | None = None) -> dict[str, Any] | None:
    """``git describe --always --dirty`` and the commit of the repository holding
    ``directory`` (default: the working directory), or None outside one / without git."""
    import subprocess

    where = str(directory or Path.cwd())
    try:
        describe = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=where, capture_output=True, text=True, timeout=5
        )
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if describe.returncode != 0 or commit.returncode != 0:
        return None
    return {"describe": describe.stdout.strip(), "commit": commit.stdout.strip(), "directory": where}
