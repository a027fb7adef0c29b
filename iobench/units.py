"""Human units <-> base units (bytes, nanoseconds). The one place for parsing and formatting.

Sizes follow dd and fio: a bare ``K``/``M``/``G``/``T`` suffix and the ``KiB`` forms are powers
of 1024; ``kB``/``MB``/``GB``/``TB`` are powers of 1000 (so TLPI's "100 MB" is ``100MB``).
"""

from __future__ import annotations

import math
import re
import reprlib
from fractions import Fraction
from typing import Any

#: The largest count, size (bytes) or duration (ns) anything accepts: it must fit the int64
#: columns of the results.
LARGEST = 2**63 - 1
#: Digits after the point that a number may have: more only spell out noise, and refusing them
#: early keeps the exact arithmetic below cheap.
_MAX_DECIMALS = 18

# ASCII only: Python's \d also matches other scripts' digits ("４", "٤"), and float()/int()
# read them and underscores ("1_0" as 10); a value the user did not mean to give is refused.
_NUMBER = r"(\d+(?:\.\d+)?)"
_SIZE_RE = re.compile(rf"^{_NUMBER}\s*([a-zA-Z]*)$", re.ASCII)
_DURATION_RE = re.compile(rf"^{_NUMBER}\s*([a-zA-Z\u00b5\u03bc]*)$", re.ASCII)
_PERCENT_RE = re.compile(rf"^{_NUMBER}\s*%?$", re.ASCII)
_COUNT_RE = re.compile(r"^([+-]?)(\d+)$", re.ASCII)
_BITRATE_RE = re.compile(rf"^{_NUMBER}\s*([a-zA-Z]*)$", re.ASCII)

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

_DURATION_NS = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,  # MICRO SIGN, what most keyboards type
    "\u03bcs": 10**3,  # GREEK SMALL LETTER MU, what some fonts and systems produce instead
    "ms": 10**6,
    "s": 10**9,
    "": 10**9,
    "m": 60 * 10**9,
    "min": 60 * 10**9,
    "h": 3600 * 10**9,
}

#: tc's spellings of link rates (bits per second, powers of 1000), as `tc qdisc ... rate` takes them.
_BITRATE = {"": 1, "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 40
_SHOWN.maxother = 40
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = 4
_SHOWN.maxlevel = 2


class UnitError(ValueError):
    """A string that is not a valid size, duration or percentage."""


def shown(value: Any) -> str:
    """A value as an error message quotes it: repr, at most ~40 characters, on one line
    (a 5,000-digit number or a list nested 600 deep is shown by its start)."""
    return _SHOWN.repr(value)


def _hint(text: str) -> str:
    """Why a near-number was refused, when the reason is not obvious."""
    if "_" in text:
        return " (no underscores: write 1000, not 1_000)"
    if any(ch.isdigit() and not ch.isascii() for ch in text):
        return " (use the digits 0-9)"
    return ""


def _decimal(number: str, text: Any) -> Fraction:
    """``number`` (digits, maybe a point and more digits) as an exact fraction, refusing
    magnitudes past LARGEST before any arithmetic (int() of 5,000 digits raises, float() of
    400 gives inf)."""
    whole, _, decimals = number.partition(".")
    if len(whole.lstrip("0")) > len(str(LARGEST)):
        raise UnitError(f"{shown(text)} is too large")
    if len(decimals) > _MAX_DECIMALS:
        raise UnitError(f"{shown(text)} has more than {_MAX_DECIMALS} digits after the point")
    return Fraction(int(whole or "0") * 10 ** len(decimals) + int(decimals or "0"), 10 ** len(decimals))


def parse_size(text: str | int) -> int:
    """Parse ``4096``, ``4KiB``, ``4k``, ``1M``, ``100MB`` or ``1.5GiB`` into bytes.

    Raises UnitError for anything else, including fractional byte counts and sizes past
    LARGEST.
    """
    if isinstance(text, bool):
        raise UnitError(f"{text!r} is not a size")
    if isinstance(text, int):
        if text < 0:
            raise UnitError(f"{shown(text)} is negative; a size must be 0 or more bytes")
        if text > LARGEST:
            raise UnitError(f"{shown(text)} is too large")
        return text
    if isinstance(text, float):
        raise UnitError(f"{shown(text)} is not a whole number of bytes; give a size like 4096 or 4KiB")
    if not isinstance(text, str):
        raise UnitError(f"{shown(text)} is not a size")
    stripped = text.strip()
    if stripped.startswith("-"):
        raise UnitError(f"{shown(text)} is negative; a size must be 0 or more bytes")
    match = _SIZE_RE.match(stripped)
    if not match:
        raise UnitError(f"{shown(text)} is not a size (examples: 4096, 4KiB, 1M, 100MB){_hint(text)}")
    number, suffix = match.group(1), match.group(2).lower()
    multiplier = _BINARY.get(suffix) or _IEC.get(suffix) or _SI.get(suffix)
    if multiplier is None:
        raise UnitError(
            f"{shown(text)} is not a size: unknown unit {shown(match.group(2))} "
            "(use B, KiB, MiB, GiB, K, M, G, kB, MB)"
        )
    value = _decimal(number, text) * multiplier
    if value.denominator != 1:
        raise UnitError(f"{shown(text)} is not a whole number of bytes")
    if value > LARGEST:
        raise UnitError(f"{shown(text)} is too large")
    return int(value)


def parse_duration(text: str | int | float) -> int:
    """Parse ``250ms``, ``10s``, ``1.5s``, ``2m``, ``500us``/``500µs``/``500μs`` (a bare
    number means seconds) into ns, rounded down to a whole ns."""
    if isinstance(text, bool):
        raise UnitError(f"{text!r} is not a duration")
    if isinstance(text, int | float):
        if math.isnan(text) or math.isinf(text) or text < 0:
            raise UnitError(f"{shown(text)} is not a valid duration")
        value = Fraction(text) * 10**9  # exact: 1e300 s is refused below, not overflowed
    elif isinstance(text, str):
        match = _DURATION_RE.match(text.strip())
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _DURATION_NS:
            raise UnitError(f"{shown(text)} is not a duration (examples: 250ms, 10s, 1.5s, 2m){_hint(text)}")
        value = _decimal(match.group(1), text) * _DURATION_NS[unit]
    else:
        raise UnitError(f"{shown(text)} is not a duration")
    if value > LARGEST:
        raise UnitError(f"{shown(text)} is too long")
    return int(value)


def parse_percent(text: str | int | float) -> float:
    """Parse ``5%``, ``5`` or ``2.5%`` into a percentage (5.0)."""
    if isinstance(text, bool):
        raise UnitError(f"{text!r} is not a percentage")
    if isinstance(text, int | float):
        if isinstance(text, int) and abs(text) > LARGEST:
            raise UnitError(f"{shown(text)} is too large")
        value = float(text)
    elif isinstance(text, str):
        match = _PERCENT_RE.match(text.strip())
        if not match:
            raise UnitError(f"{shown(text)} is not a percentage (examples: 5%, 2.5%){_hint(text)}")
        value = float(_decimal(match.group(1), text))
    else:
        raise UnitError(f"{shown(text)} is not a percentage")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise UnitError(f"{shown(text)} is not a valid percentage")
    return value


def parse_count(text: str | int) -> int:
    """Parse a whole number (``5000``, ``+5``, ``-1``) of at most LARGEST in magnitude."""
    if isinstance(text, bool):
        raise UnitError(f"{text!r} is not a whole number")
    if isinstance(text, int):
        value = text
    elif isinstance(text, str):
        match = _COUNT_RE.match(text.strip())
        if not match:
            raise UnitError(f"{shown(text)} is not a whole number{_hint(text)}")
        sign, digits = match.groups()
        if len(digits.lstrip("0")) > len(str(LARGEST)):
            raise UnitError(f"{shown(text)} is too large")
        value = -int(digits) if sign == "-" else int(digits)
    else:
        raise UnitError(f"{shown(text)} is not a whole number")
    if abs(value) > LARGEST:
        raise UnitError(f"{shown(text)} is too large")
    return value


def parse_bitrate(text: str | int) -> int:
    """Parse a link rate as tc spells it, ``100mbit``, ``1gbit``, ``2.5gbit`` or a bare number of
    bits per second, into bits per second (0: no limit)."""
    if isinstance(text, bool):
        raise UnitError(f"{text!r} is not a rate")
    if isinstance(text, int):
        if not 0 <= text <= LARGEST:
            raise UnitError(f"{shown(text)} is not a valid rate")
        return text
    if not isinstance(text, str):
        raise UnitError(f"{shown(text)} is not a rate")
    match = _BITRATE_RE.match(text.strip())
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _BITRATE:
        raise UnitError(f"{shown(text)} is not a rate (examples: 100mbit, 1gbit, 2.5gbit){_hint(text)}")
    value = _decimal(match.group(1), text) * _BITRATE[unit]
    if value.denominator != 1:
        raise UnitError(f"{shown(text)} is not a whole number of bits per second")
    if value > LARGEST:
        raise UnitError(f"{shown(text)} is too large")
    return int(value)


def format_bitrate(bits_per_second: int) -> str:
    """The shortest exact tc spelling: 10**9 -> '1gbit', 2500000 -> '2500kbit', 0 -> '0'."""
    if not bits_per_second:
        return "0"
    for unit in ("tbit", "gbit", "mbit", "kbit"):
        if bits_per_second % _BITRATE[unit] == 0:
            return f"{bits_per_second // _BITRATE[unit]}{unit}"
    return f"{bits_per_second}bit"


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
