"""One estimate per case and column: the value a table cell or a figure point shows, and its
95% interval. Tables and figures both read it, so they never disagree.

Rules (one home for each):

- Throughput is bytes / median elapsed, its interval from the elapsed median's interval
  (``iobench.metrics.summarize`` computes both).
- Elapsed is the summary's median with its order-statistic interval.
- User and system CPU are the summary's tick-accumulated split: no interval (one split per
  case, not per repetition), NaN where too few ticks accumulated.
- Any other column: the median of its per-repetition values (divided per repetition by
  ``per`` when that was recorded per repetition too) with ``iobench.stats.median_interval``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from iobench import stats

#: Columns whose summary value is the tick-accumulated split, never a per-repetition median.
CPU_SPLIT = frozenset({"user_ns", "sys_ns"})
#: Columns whose interval the summary computes (from elapsed's median interval): the summary
#: columns of (value, low, high).
SUMMARY_INTERVALS = {
    "bytes_per_s": ("bytes_per_s", "bytes_per_s_low", "bytes_per_s_high"),
    "elapsed_ns": ("elapsed_ns", "elapsed_low_ns", "elapsed_high_ns"),
}
#: Below this many repetitions no order-statistic interval reaches 95% coverage.
FULL_COVERAGE_REPS = 6


@dataclass(frozen=True)
class Estimate:
    """A case's value of one column with its interval (NaN bounds: no interval)."""

    value: float
    low: float = math.nan
    high: float = math.nan
    reps: int = 0
    #: Coverage of low..high: 0.95, or less with fewer than 6 repetitions.
    confidence: float = math.nan

    @property
    def has_interval(self) -> bool:
        """Whether low..high is known (finite)."""
        return all(math.isfinite(v) for v in (self.value, self.low, self.high))

    @property
    def spread_pct(self) -> float:
        """The larger side of the interval as a percentage of the value (NaN without one)."""
        if not self.has_interval or self.value == 0:
            return math.nan
        return 100 * max(self.high - self.value, self.value - self.low) / abs(self.value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _from_samples(values: Sequence[float], scale: float) -> Estimate:
    finite = [v * scale for v in values if math.isfinite(v)]
    if not finite:
        return Estimate(math.nan)
    interval = stats.median_interval(finite)
    return Estimate(stats.median(finite), interval.low, interval.high, len(finite), interval.confidence)


def counted_reps(record: Mapping[str, Any]) -> int:
    """The repetitions behind the case's medians: all of them, less those whose data check
    failed while others passed (``summarize`` leaves those out)."""
    samples = record.get("samples")
    if isinstance(samples, Mapping) and samples.get("elapsed_ns"):
        return len(samples["elapsed_ns"])
    reps = _number(record.get("reps"))
    return int(reps) if math.isfinite(reps) else 0


def per_rep_values(record: Mapping[str, Any], metric: str, per: str | None = None) -> list[float] | None:
    """The case's per-repetition values of ``metric`` (each divided by ``per``), or None when
    the summary kept no samples of it."""
    samples = record.get("samples")
    if not isinstance(samples, Mapping) or metric not in samples:
        return None
    values = [float(v) for v in samples[metric]]
    if per is None:
        return values
    divisors = samples.get(per)
    if divisors is not None and len(divisors) == len(values):
        return [v / d if d else math.nan for v, d in zip(values, divisors, strict=True)]
    constant = _number(record.get(per))
    return [v / constant if constant else math.nan for v in values]


def estimate(record: Mapping[str, Any], metric: str, per: str | None = None, scale: float = 1.0) -> Estimate:
    """The value and interval of ``metric`` (divided by ``per``, times ``scale``) for one
    summary row (``iobench.metrics.summarize``)."""
    reps = counted_reps(record)
    if metric in SUMMARY_INTERVALS and per is None:
        value, low, high = (_number(record.get(k)) for k in SUMMARY_INTERVALS[metric])
        return Estimate(
            value * scale, low * scale, high * scale, reps, _number(record.get("elapsed_confidence"))
        )
    if metric in CPU_SPLIT:
        divisor = _number(record.get(per)) if per else 1.0
        value = _number(record.get(metric))
        return Estimate(value / divisor * scale if divisor else math.nan, reps=reps)
    values = per_rep_values(record, metric, per)
    if values is not None:
        return _from_samples(values, scale)
    value = _number(record.get(metric))
    if per is not None:
        divisor = _number(record.get(per))
        value = value / divisor if divisor else math.nan
    return Estimate(value * scale, reps=reps)


def relative(
    record: Mapping[str, Any], base: Mapping[str, Any], metric: str, per: str | None = None
) -> Estimate:
    """``record``'s column as a multiple of ``base``'s: the Hodges-Lehmann ratio of their
    repetitions with its 95% interval (``iobench.stats.difference``); the ratio of the two
    estimates, without an interval, when the samples cannot give one."""
    if record is base or (record.get("run_id"), record.get("case")) == (base.get("run_id"), base.get("case")):
        return Estimate(1.0)  # the reference itself, exactly
    mine, theirs = per_rep_values(record, metric, per), per_rep_values(base, metric, per)
    if mine and theirs and metric not in CPU_SPLIT:
        diff = stats.difference(theirs, mine)
        if diff is not None:
            low, high = (diff.low, diff.high) if diff.decided else (math.nan, math.nan)
            return Estimate(
                diff.ratio, low, high, min(diff.n_a, diff.n_b), 0.95 if diff.decided else math.nan
            )
    value, reference = estimate(record, metric, per).value, estimate(base, metric, per).value
    return Estimate(value / reference if reference else math.nan)
