"""Human units <-> base units (bytes, nanoseconds). The one place for parsing and formatting.

Sizes follow dd and fio: a bare ``K``/``M``/``G``/``T`` suffix and the ``KiB`` forms are powers
of 1024; ``kB``/``MB``/``GB``/``TB`` are powers of 1000 (so TLPI's "100 MB" is ``100MB``).
"""

from __future__ import annotations

import math
import re

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_BINARY = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_IEC = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SI = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}

_EXACT_UNITS = (
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 10**12),
    ("GB", 10**9),
    ("MB", 10**6),
    ("kB", 10**3),
)

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Zµ]*)\s*$")
_DURATION_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "": 10**9,
    "m": 60 * 10**9,
    "min": 60 * 10**9,
    "h": 3600 * 10**9,
}


class UnitError(ValueError):
    """A string that is not a valid size, duration or percentage."""


def parse_size(text: str | int) -> int:
    """Parse ``4096``, ``4KiB``, ``4k``, ``1M``, ``100MB`` or ``1.5GiB`` into bytes.

    Raises UnitError for anything else, including fractional byte counts.
    """
    if isinstance(text, bool):
        raise UnitError(f"{text!r} is not a size")
    if isinstance(text, int):
        if text < 0:
            raise UnitError(f"{text} is negative; a size must be 0 or more bytes")
        return text
    if isinstance(text, float):
        raise UnitError(f"{text!r} is not a whole number of bytes; give a size like 4096 or 4KiB")
    if not isinstance(text, str):
        raise UnitError(f"{text!r} is not a size")
    stripped = text.strip()
    if stripped.startswith("-"):
        raise UnitError(f"{text!r} is negative; a size must be 0 or more bytes")
    match = _SIZE_RE.match(stripped)
    if not match:
        raise UnitError(f"{text!r} is not a size (examples: 4096, 4KiB, 1M, 100MB)")
    number, suffix = match.group(1), match.group(2).lower()
    multiplier = _BINARY.get(suffix) or _IEC.get(suffix) or _SI.get(suffix)
    if multiplier is None:
        raise UnitError(
            f"{text!r} is not a size: unknown unit {match.group(2)!r} (use B, KiB, MiB, GiB, K, M, G, kB, MB)"
        )
    value = float(number) * multiplier if "." in number else int(number) * multiplier
    if value != int(value):
        raise UnitError(f"{text!r} is not a whole number of bytes")
    return int(value)


def parse_duration(text: str | int | float) -> int:
    """Parse ``250ms``, ``10s``, ``1.5s``, ``2m``, ``500us`` (a bare number means seconds) into ns."""
    if isinstance(text, bool):
        raise UnitError(f"{text!r} is not a duration")
    if isinstance(text, int | float):
        if text < 0 or math.isnan(text) or math.isinf(text):
            raise UnitError(f"{text!r} is not a valid duration")
        return int(text * 10**9)
    if not isinstance(text, str):
        raise UnitError(f"{text!r} is not a duration")
    match = _DURATION_RE.match(text)
    if not match or match.group(2).lower() not in _DURATION_NS:
        raise UnitError(f"{text!r} is not a duration (examples: 250ms, 10s, 1.5s, 2m)")
    return int(float(match.group(1)) * _DURATION_NS[match.group(2).lower()])


def parse_percent(text: str | int | float) -> float:
    """Parse ``5%``, ``5`` or ``2.5%`` into a percentage (5.0)."""
    if isinstance(text, bool):
        raise UnitError(f"{text!r} is not a percentage")
    if isinstance(text, int | float):
        value = float(text)
    elif isinstance(text, str):
        try:
            value = float(text.strip().removesuffix("%"))
        except ValueError:
            raise UnitError(f"{text!r} is not a percentage (examples: 5%, 2.5%)") from None
    else:
        raise UnitError(f"{text!r} is not a percentage")
    if math.isnan(value) or value < 0:
        raise UnitError(f"{text!r} is not a valid percentage")
    return value


def format_size(num_bytes: float) -> str:
    """Binary-prefixed, at most 4 significant digits: 4096 -> '4 KiB', 1536 -> '1.5 KiB'."""
    if num_bytes is None or (isinstance(num_bytes, float) and math.isnan(num_bytes)):
        return "-"
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            text = f"{value:.4g}" if unit != "B" else f"{int(value)}"
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_size_exact(num_bytes: int) -> str:
    """The shortest exact spelling, for labels that must parse back: 4096 -> '4KiB',
    1000000 -> '1MB', 1000001 -> '1000001B'."""
    options = [f"{num_bytes}B"]
    if num_bytes:
        for unit, factor in _EXACT_UNITS:
            if num_bytes % factor == 0:
                options.append(f"{num_bytes // factor}{unit}")
    return min(options, key=len)


def format_rate(bytes_per_second: float) -> str:
    """Throughput with a binary prefix: '812.3 MiB/s'."""
    if bytes_per_second is None or math.isnan(bytes_per_second):
        return "-"
    value = float(bytes_per_second)
    for unit in ("B/s", "KiB/s", "MiB/s", "GiB/s"):
        if abs(value) < 1024 or unit == "GiB/s":
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(nanoseconds: float) -> str:
    """Pick a readable unit: '320 ns', '12.5 µs', '3.20 ms', '1.42 s', '2 min 5 s'."""
    if nanoseconds is None or math.isnan(nanoseconds):
        return "-"
    ns = float(nanoseconds)
    if abs(ns) < 1_000:
        return f"{ns:.0f} ns"
    if abs(ns) < 1_000_000:
        return f"{ns / 1e3:.3g} µs"
    if abs(ns) < 1_000_000_000:
        return f"{ns / 1e6:.3g} ms"
    if abs(ns) < 60e9:
        return f"{ns / 1e9:.3g} s"
    minutes, seconds = divmod(ns / 1e9, 60)
    return f"{int(minutes)} min {seconds:.0f} s"
