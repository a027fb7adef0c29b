"""Small statistics used while measuring: the confidence interval that decides when to stop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=256)
def _t_quantile(dof: int) -> float:
    from scipy.stats import t  # deferred: scipy import costs ~0.3 s at start-up

    return float(t.ppf(0.975, dof))


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
    return 100.0 * _t_quantile(n - 1) * math.sqrt(variance / n) / abs(mean)


def percentiles(samples: Sequence[int], *quantiles: float) -> list[int]:
    """Nearest-rank percentiles (0 < q <= 1) of integer samples; 0s when there are none."""
    ordered = sorted(samples)
    if not ordered:
        return [0 for _ in quantiles]
    return [ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))] for q in quantiles]
