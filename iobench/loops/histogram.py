"""The latency histogram the async loops fill in C, read from Python.

Buckets are exact below 32 ns, then 32 per power of two (each under 3.2% of its value wide),
up to 2^64 ns: 1,920 uint64 counts. ``_async.c`` has the same ``bucket_of`` (a test checks
them against each other). A histogram is an ``array('Q')``: the C loop adds to it, so the
repetitions of a case, or cases of several runs, merge by adding counts. Rows carry it as text
(``encode``: only the buckets that counted), which ``decode`` and ``merge`` read back.

Percentiles are read off the buckets: the value reported for a bucket is its midpoint, so it
is within half a bucket (1.6%) of the true order statistic; the maximum is tracked exactly
beside the histogram.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping

SUB_BITS = 5
SUB = 1 << SUB_BITS
BUCKETS = (64 - SUB_BITS + 1) * SUB
#: The first field of an encoded histogram: the layout, so a future layout is never misread.
LAYOUT = f"log2x{SUB}"


def new() -> array:
    """An empty histogram (all counts zero)."""
    return array("Q", bytes(8 * BUCKETS))


def bucket_of(ns: int) -> int:
    """The bucket of a latency in nanoseconds (negative values count as 0)."""
    value = max(0, int(ns))
    if value < SUB:
        return value
    shift = value.bit_length() - 1 - SUB_BITS
    return (shift + 1) * SUB + (value >> shift) - SUB


def bounds(index: int) -> tuple[int, int]:
    """The smallest and largest latency (ns) that fall in bucket ``index``."""
    if not 0 <= index < BUCKETS:
        raise ValueError(f"bucket {index} outside 0..{BUCKETS - 1}")
    if index < SUB:
        return index, index
    shift = index // SUB - 1
    low = (SUB + index % SUB) << shift
    return low, low + (1 << shift) - 1


def midpoint(index: int) -> float:
    """The value a percentile falling in bucket ``index`` reports."""
    low, high = bounds(index)
    return (low + high) / 2


def add(histogram: array, ns: int) -> None:
    """Count one latency (the pure-Python loops' side of the C ``lat_add``)."""
    histogram[bucket_of(ns)] += 1


def percentile(counts: Mapping[int, int] | array, fraction: float, maximum: float | None = None) -> float:
    """The ``fraction`` quantile (0 < fraction <= 1) of the counted latencies: the midpoint of the
    bucket holding the ceil(fraction x n)-th value, never above ``maximum`` when it is known.
    NaN when nothing was counted."""
    items = _items(counts)
    total = sum(count for _, count in items)
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(fraction * total - 1e-9))
    seen = 0
    for index, count in items:
        seen += count
        if seen >= rank:
            value = midpoint(index)
            return min(value, maximum) if maximum is not None else value
    raise AssertionError("unreachable: rank <= total")


def total(counts: Mapping[int, int] | array) -> int:
    """How many latencies the histogram counted."""
    return sum(count for _, count in _items(counts))


def encode(counts: Mapping[int, int] | array) -> str:
    """``log2x32;1041:3,1042:17,...``: the buckets that counted, for a row's text column."""
    return LAYOUT + ";" + ",".join(f"{index}:{count}" for index, count in _items(counts))


def decode(text: str) -> dict[int, int]:
    """The counts of an ``encode``d histogram; ValueError for another layout or bad text."""
    layout, _, body = str(text).partition(";")
    if layout != LAYOUT:
        raise ValueError(f"not a {LAYOUT} histogram: {str(text)[:40]!r}")
    counts: dict[int, int] = {}
    for part in filter(None, body.split(",")):
        index, _, count = part.partition(":")
        bucket, number = int(index), int(count)
        if not 0 <= bucket < BUCKETS or number < 0:
            raise ValueError(f"bad bucket {part!r}")
        counts[bucket] = counts.get(bucket, 0) + number
    return counts


def merge(histograms: Iterable[Mapping[int, int] | array | str]) -> dict[int, int]:
    """Several histograms (arrays, dicts or encoded text) added into one."""
    merged: dict[int, int] = {}
    for histogram in histograms:
        counts = decode(histogram) if isinstance(histogram, str) else histogram
        for index, count in _items(counts):
            merged[index] = merged.get(index, 0) + count
    return merged


def _items(counts: Mapping[int, int] | array) -> list[tuple[int, int]]:
    if isinstance(counts, Mapping):
        return sorted((int(i), int(c)) for i, c in counts.items() if c)
    return [(index, count) for index, count in enumerate(counts) if count]
