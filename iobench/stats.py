"""Statistics: the stopping rule's interval, percentiles, intervals for a median, and the
comparison of two samples that both `iobench compare` and every report sentence use.

Pure Python where the measuring process needs it (no numpy or scipy import on the run path:
they cost start-up time, memory and, with BLAS, threads). numpy is imported only by the
two-sample comparison, which runs in reports and compare.

One rule for "A differs from B", used everywhere: the Hodges-Lehmann shift between the two
samples' logarithms with its distribution-free 95% interval (Moses; the inversion of the
Mann-Whitney test). On logs the interval is symmetric: swapping A and B negates it exactly,
so "A is slower than B" holds exactly when "B is faster than A" does. The difference is
*measurable* only when the interval excludes 0; otherwise the honest statement is "no
measurable difference (within the interval)".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

#: Two-sided 95% Student-t quantiles t(0.975, dof) for dof 1..30 (standard tables).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959963984540054


def t_quantile_975(dof: int) -> float:
    """t(0.975, dof) without scipy: a table to 30, then the Cornish-Fisher expansion
    (error < 1e-4 beyond 30 degrees of freedom)."""
    if dof < 1:
        raise ValueError("degrees of freedom must be at least 1")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * dof)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)
    )


def ci_halfwidth_pct(samples: Sequence[float]) -> float:
    """95% Student-t confidence half-width of the mean, as a percentage of the mean.

    Infinite with fewer than two samples (nothing is known about the spread yet).
    """
    n = len(samples)
    if n < 2:
        return math.inf
    mean = sum(samples) / n
    if mean == 0:
        return math.inf
    variance = sum((x - mean) ** 2 for x in samples) / (n - 1)
    return 100.0 * t_quantile_975(n - 1) * math.sqrt(variance / n) / abs(mean)


def percentiles(samples: Sequence[int], *quantiles: float) -> list[int]:
    """Nearest-rank percentiles (0 < q <= 1) of integer samples; 0s when there are none."""
    ordered = sorted(samples)
    if not ordered:
        return [0 for _ in quantiles]
    return [ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))] for q in quantiles]


def median(samples: Sequence[float]) -> float:
    """The median (mean of the middle two for an even count); NaN when empty."""
    ordered = sorted(samples)
    n = len(ordered)
    if n == 0:
        return math.nan
    mid = n // 2
    return float(ordered[mid]) if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True)
class MedianInterval:
    """A distribution-free interval for a median: order statistics of the sample."""

    low: float
    high: float
    #: The coverage these order statistics give (binomial); >= 0.95 unless too few samples.
    confidence: float


def median_interval(samples: Sequence[float], confidence: float = 0.95) -> MedianInterval:
    """The narrowest order-statistic interval with at least ``confidence`` coverage.

    With fewer than 6 samples no such interval exists: it is then min..max, with the
    coverage that gives (93.8% for 5, 87.5% for 4, 75% for 3), so a reader sees how little
    a few repetitions say.
    """
    ordered = sorted(float(x) for x in samples)
    n = len(ordered)
    if n == 0:
        return MedianInterval(math.nan, math.nan, 0.0)

    if n > 200:
        # Normal approximation to Binomial(n, 1/2): exact enough (< 0.1% off) and O(1).
        chosen = max(1, math.floor((n - _Z975 * math.sqrt(n)) / 2))
        return MedianInterval(ordered[chosen - 1], ordered[n - chosen], confidence)
    # Coverage of (x_(j), x_(n+1-j)), 1-based, is 1 - 2 P(Binomial(n, 1/2) <= j-1); the
    # binomial coefficients are built up incrementally (exact integers).
    total = 2**n
    tail = 0  # sum of C(n, i) for i < j
    term = 1  # C(n, j - 1)
    chosen = 1
    tail += term  # j = 1: P(B <= 0)
    for j in range(2, (n + 1) // 2 + 1):
        term = term * (n - (j - 2)) // (j - 1)  # C(n, j - 1) from C(n, j - 2)
        if 1 - 2 * (tail + term) / total < confidence:
            break
        tail += term
        chosen = j
    return MedianInterval(ordered[chosen - 1], ordered[n - chosen], 1 - 2 * tail / total)


class RunningMean:
    """Mean and variance updated one sample at a time (Welford): the stopping rule's interval
    after each repetition without going over all of them again."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (value - self.mean)

    def ci_halfwidth_pct(self) -> float:
        """Same as ``ci_halfwidth_pct`` of every sample added so far."""
        if self.count < 2 or self.mean == 0:
            return math.inf
        variance = self._m2 / (self.count - 1)
        return 100.0 * t_quantile_975(self.count - 1) * math.sqrt(variance / self.count) / abs(self.mean)


# ------------------------------------------------------------------ two samples


@lru_cache(maxsize=512)
def _mann_whitney_k(n: int, m: int, confidence: float) -> int:
    """Order statistic index k of Moses' interval: the largest k with P(U <= k - 1) <= alpha/2.

    Exact null distribution of U (counts of arrangements) while n*m is small, the normal
    approximation with continuity correction beyond. -1: no interval reaches the confidence.
    """
    alpha_half = (1 - confidence) / 2
    if n * m <= 400:
        counts = _u_distribution(n, m)
        total = math.comb(n + m, n)
        cumulative = 0
        k = 0
        while k < len(counts):
            cumulative += counts[k]
            if cumulative / total > alpha_half:
                break
            k += 1
        return k - 1 if k else -1
    z = _normal_quantile(1 - alpha_half)
    return math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12) - 0.5)


def _u_distribution(n: int, m: int) -> list[int]:
    """Counts of each U value (0..n*m) over all arrangements of n and m samples (no ties).

    f(i, j)[u] = f(i-1, j)[u-j] + f(i, j-1)[u]: the largest of the i+j values belongs to one
    sample or the other.
    """
    size = n * m + 1
    previous = [[1] + [0] * (size - 1) for _ in range(n + 1)]  # j = 0: only U = 0
    for j in range(1, m + 1):
        current = [[1] + [0] * (size - 1)]
        for i in range(1, n + 1):
            row = previous[i][:]
            below = current[i - 1]
            for u in range(j, size):
                row[u] += below[u - j]
            current.append(row)
        previous = current
    return previous[n]


def _normal_quantile(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (
        -39.69683028665376,
        220.9460984245205,
        -275.9285104469687,
        138.3577518672690,
        -30.66479806614716,
        2.506628274631,
    )
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572)
    c = (
        -0.007784894002430293,
        -0.3223964580411365,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    )
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    low = 0.02425
    if p < low:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    if p > 1 - low:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (
        ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1
    )  # fmt: skip


def hodges_lehmann(base: Any, new: Any, confidence: float = 0.95) -> tuple[float, float, float]:
    """Shift estimate of ``new - base`` and its distribution-free confidence interval.

    Moses' interval: with the n*m pairwise differences sorted, the bounds are the (k+1)-th
    smallest and largest, k from the Mann-Whitney U distribution. When the samples are too
    small for the confidence level (3 against 3 at 95%), the interval is infinite.
    Identical samples give a zero-width interval at 0.
    """
    import numpy as np

    base_values = np.asarray(base, dtype=float)
    new_values = np.asarray(new, dtype=float)
    differences = np.sort(np.subtract.outer(new_values, base_values).ravel())
    n, m = len(base_values), len(new_values)
    if n == 0 or m == 0:
        return math.nan, -math.inf, math.inf
    estimate = float(np.median(differences))
    k = _mann_whitney_k(min(n, m), max(n, m), confidence)
    if k < 0:
        return estimate, -math.inf, math.inf
    return estimate, float(differences[k]), float(differences[n * m - 1 - k])


@dataclass(frozen=True)
class Difference:
    """How ``b`` differs from ``a``, as a ratio of typical values (b / a) with its interval.

    ``ratio`` 2.0 means b is twice a; ``low``..``high`` is the 95% interval of that ratio.
    """

    ratio: float
    low: float
    high: float
    n_a: int
    n_b: int

    @property
    def measurable(self) -> bool:
        """The interval excludes "no difference" (a ratio of 1)."""
        return self.low > 1 or self.high < 1

    @property
    def decided(self) -> bool:
        """The samples were large enough for a finite interval."""
        return math.isfinite(self.low) and math.isfinite(self.high) and self.low > 0

    @property
    def within(self) -> float:
        """The largest relative change the interval allows (0.07 = within ±7%)."""
        if not self.decided:
            return math.inf
        return max(abs(self.high - 1), abs(1 - self.low), abs(1 / self.low - 1) if self.low else math.inf)

    def swapped(self) -> Difference:
        """The same comparison seen from the other side (a / b)."""
        return Difference(
            1 / self.ratio, 1 / self.high, 1 / self.low if self.low else math.inf, self.n_b, self.n_a
        )


def difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference | None:
    """``b`` against ``a`` on the log scale; None when a sample is empty or not all positive."""
    values_a = [float(x) for x in a if x == x]
    values_b = [float(x) for x in b if x == x]
    if not values_a or not values_b or min(values_a) <= 0 or min(values_b) <= 0:
        return None
    shift, low, high = hodges_lehmann(
        [math.log(x) for x in values_a], [math.log(x) for x in values_b], confidence
    )
    return Difference(
        ratio=math.exp(shift),
        low=math.exp(low) if math.isfinite(low) else 0.0,
        high=math.exp(high) if math.isfinite(high) else math.inf,
        n_a=len(values_a),
        n_b=len(values_b),
    )


def min_reps_for_significance(confidence: float = 0.95) -> int:
    """The smallest equal sample size at which two fully separated samples are significant."""
    n = 1
    while _mann_whitney_k(n, n, confidence) < 0:
        n += 1
    return n
