"""Regression detection between two result sets.

Method, per case: the Hodges-Lehmann estimate of the shift between the two runs' log(metric)
samples (the median of all pairwise differences), with the distribution-free confidence
interval that inverts the Mann-Whitney test (Moses' interval: order statistics of those
differences). Why this and not a bootstrap: timing samples are few (5-20), skewed and have
long right tails; the rank method needs no normality, is robust to a stray slow repetition,
gives the same answer every time for the same data (no resampling), and is honest at small
n (3 against 3 can never be significant at 95%, and says so). Logs turn the shift into a
ratio: exp(shift) - 1 is "12% slower".

A case is a regression only when the interval excludes "no change" (significant) AND the
estimated change is beyond the threshold: significance alone flags harmless noise-level
shifts on identical code; a threshold alone flags one unlucky run.

Repetitions of one run are not independent of the machine's state at the time, so on a
shared machine two runs of the same code can differ by more than their repetitions vary
(measured here: up to 36% between runs 15 s apart). A side may therefore be several runs
(a baseline folder of runs): from the per-run medians comes that case's measured noise
floor (a 95% prediction interval for one more run of the same code), and the change must
exceed it as well as the threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from iobench.errors import IobenchError
from iobench.results import ResultSet
from iobench.stats import hodges_lehmann

#: Metrics where a larger value is better; everything else (times, faults, calls) is cost.
HIGHER_IS_BETTER = {"throughput"}
#: Below this many repetitions on either side, a 95% rank interval cannot exclude 0.
MIN_REPS = 4
#: A case whose interval is wider than this (ratio units) cannot be judged either way.
MAX_CI_WIDTH = 0.5


class CompareError(IobenchError):
    """Two result sets that cannot be compared (nothing in common, unknown metric)."""


@dataclass(frozen=True)
class CaseComparison:
    """The verdict for one case present in both runs."""

    experiment: str
    case: str
    base_reps: int
    new_reps: int
    base_median: float
    new_median: float
    change: float  # estimated relative change of the metric, new vs base (+0.12 = 12% more)
    ci_low: float
    ci_high: float
    noise_floor: (
        float  # how far another run of the same code may land, from either side's runs (0: unmeasured)
    )
    verdict: str  # slower | faster | unchanged | noisy
    reason: str


@dataclass(frozen=True)
class Comparison:
    """Everything `iobench compare` reports."""

    metric: str
    threshold: float
    cases: list[CaseComparison]
    warnings: list[str]
    only_in_base: list[str]
    only_in_new: list[str]

    @property
    def regressions(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.verdict == "slower"]

    def counts(self) -> dict[str, int]:
        counts = {"slower": 0, "faster": 0, "unchanged": 0, "noisy": 0}
        for case in self.cases:
            counts[case.verdict] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "threshold": self.threshold,
            "counts": self.counts(),
            "warnings": self.warnings,
            "only_in_base": self.only_in_base,
            "only_in_new": self.only_in_new,
            "cases": [asdict(c) for c in self.cases],
        }


def metric_values(frame: pd.DataFrame, metric: str) -> pd.Series:
    """The metric per row; ``throughput`` is derived (bytes per second), never stored."""
    if metric == "throughput":
        return frame["bytes"] / (frame["elapsed_ns"] / 1e9)
    if metric not in frame:
        raise CompareError(f"metric {metric!r} is not a column of these results")
    values = pd.to_numeric(frame[metric], errors="coerce")
    if values.isna().all():
        raise CompareError(f"metric {metric!r} has no numeric values")
    return values


def noise_floor(run_medians: list[float]) -> float:
    """How far one more run's median may land from these runs' on the same code.

    The 95% prediction interval for a new observation from k run medians (on logs, Student
    t with k-1 degrees of freedom), as a ratio: exp(t * sd * sqrt(1 + 1/k)) - 1. Wide with 3
    runs, tighter with more. 0 when fewer than 2 runs: unmeasured.
    """
    from scipy.stats import t

    logs = [math.log(m) for m in run_medians if m and m == m and m > 0]
    k = len(logs)
    if k < 2:
        return 0.0
    spread = float(np.std(logs, ddof=1))
    return math.expm1(float(t.ppf(0.975, k - 1)) * spread * math.sqrt(1 + 1 / k))


def judge(
    base: np.ndarray, new: np.ndarray, threshold: float, higher_is_better: bool = False
) -> tuple[float, float, float, str, str]:
    """(change, ci_low, ci_high, verdict, reason) for two samples of one case.

    ``threshold`` here is already the larger of the user's threshold and the noise floor.
    """
    if len(base) < MIN_REPS or len(new) < MIN_REPS:
        return math.nan, -math.inf, math.inf, "noisy", f"fewer than {MIN_REPS} repetitions on a side"
    if (base <= 0).any() or (new <= 0).any():
        return math.nan, -math.inf, math.inf, "noisy", "non-positive values cannot be compared as ratios"
    shift, low, high = hodges_lehmann(np.log(base), np.log(new))
    change, ci_low, ci_high = math.expm1(shift), math.expm1(low), math.expm1(high)
    worse_sign = -1 if higher_is_better else 1
    if ci_high - ci_low > MAX_CI_WIDTH:
        return (
            change,
            ci_low,
            ci_high,
            "noisy",
            f"95% interval {ci_low:+.0%}..{ci_high:+.0%} is too wide to judge",
        )
    significant = low > 0 or high < 0
    if significant and worse_sign * change > threshold:
        return change, ci_low, ci_high, "slower", "significant and beyond the threshold"
    if significant and -worse_sign * change > threshold:
        return change, ci_low, ci_high, "faster", "significant and beyond the threshold"
    reason = "within the threshold" if significant else "not significant"
    return change, ci_low, ci_high, "unchanged", reason


def host_warnings(base: ResultSet, new: ResultSet) -> list[str]:
    """What differs between the two runs' machines and targets."""
    found = []
    checks = (
        ("host", "cpu_model", "CPU"),
        ("host", "cpu_count", "CPU count"),
        ("host", "kernel", "kernel"),
        ("target", "fs_type", "target filesystem"),
        ("target", "block_device", "target device"),
    )
    for section, key, label in checks:
        left = base.meta.get(section, {}).get(key)
        right = new.meta.get(section, {}).get(key)
        if left != right:
            found.append(
                f"{label} differs: {left} (base) vs {right} (new); the comparison may measure the machine"
            )
    for run, name in ((base, "base"), (new, "new")):
        if run.meta.get("status") != "complete":
            found.append(f"the {name} run is {run.meta.get('status')}, not complete")
    return found


def _side(
    runs: list[ResultSet], metric: str
) -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], float]]:
    """Pooled samples per (experiment, case), and each case's noise floor across the runs."""
    frames = [run.ok_rows() for run in runs]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        return {}, {}
    values = metric_values(frame, metric)
    samples, floors = {}, {}
    for key, index in frame.groupby(["experiment", "case"]).groups.items():
        samples[key] = values[index].dropna().to_numpy(float)
        per_run = values[index].groupby(frame.loc[index, "run_id"]).median().tolist()
        floors[key] = noise_floor(per_run)
    return samples, floors


def compare(
    base: ResultSet | list[ResultSet],
    new: ResultSet | list[ResultSet],
    metric: str = "elapsed_ns",
    threshold: float = 0.05,
) -> Comparison:
    """Compare every case the two sides share; each side is one run or several."""
    base_runs = base if isinstance(base, list) else [base]
    new_runs = new if isinstance(new, list) else [new]
    base_groups, base_floors = _side(base_runs, metric)
    new_groups, new_floors = _side(new_runs, metric)
    common = [key for key in base_groups if key in new_groups]
    if not common:
        raise CompareError("the two runs have no case in common (same experiments and parameters)")
    higher = metric in HIGHER_IS_BETTER
    cases = []
    for experiment, case in common:
        left, right = base_groups[(experiment, case)], new_groups[(experiment, case)]
        floor = max(base_floors[(experiment, case)], new_floors[(experiment, case)])
        change, low, high, verdict, reason = judge(left, right, max(threshold, floor), higher)
        if floor > threshold and verdict == "unchanged" and reason == "within the threshold":
            reason = f"within the measured noise floor ({floor:.0%})"
        cases.append(
            CaseComparison(
                experiment=experiment,
                case=case,
                base_reps=len(left),
                new_reps=len(right),
                base_median=float(np.median(left)) if len(left) else math.nan,
                new_median=float(np.median(right)) if len(right) else math.nan,
                change=change,
                ci_low=low,
                ci_high=high,
                noise_floor=floor,
                verdict=verdict,
                reason=reason,
            )
        )
    warnings = list(dict.fromkeys(w for b in base_runs for n in new_runs for w in host_warnings(b, n)))
    if len(base_runs) < 2 and len(new_runs) < 2:
        warnings.append(
            "single runs on both sides: the run-to-run noise floor is not measured, so machine drift "
            "can look like a change (compare against a baseline of several runs: make baseline)"
        )
    noisy = [c for c in cases if c.verdict == "noisy"]
    if noisy:
        warnings.append(f"{len(noisy)} case(s) too noisy to judge (more repetitions would help)")
    return Comparison(
        metric=metric,
        threshold=threshold,
        cases=cases,
        warnings=warnings,
        only_in_base=[f"{e} {c}" for e, c in base_groups if (e, c) not in new_groups],
        only_in_new=[f"{e} {c}" for e, c in new_groups if (e, c) not in base_groups],
    )


def _percent(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:+.1%}"


def render_rows(comparison: Comparison) -> list[list[str]]:
    """Table rows shared by the text and Markdown formats, worst first."""
    order = {"slower": 0, "noisy": 1, "faster": 2, "unchanged": 3}
    rows = []
    for c in sorted(
        comparison.cases, key=lambda c: (order[c.verdict], -(c.change if c.change == c.change else 0))
    ):
        rows.append(
            [
                c.verdict,
                c.experiment,
                c.case,
                _percent(c.change),
                f"{_percent(c.ci_low)} .. {_percent(c.ci_high)}",
                f"{c.noise_floor:.0%}" if c.noise_floor else "-",
                f"{c.base_reps}/{c.new_reps}",
                c.reason,
            ]
        )
    return rows


HEADERS = ["verdict", "experiment", "case", "change", "95% CI", "noise floor", "reps", "why"]


def render_markdown(comparison: Comparison) -> str:
    """A pull-request comment / job summary."""
    counts = comparison.counts()
    lines = [
        f"### iobench compare: {counts['slower']} slower, {counts['faster']} faster, "
        f"{counts['unchanged']} unchanged, {counts['noisy']} too noisy",
        "",
        f"Metric `{comparison.metric}`, threshold {comparison.threshold:.0%} (or the case's measured "
        "run-to-run noise floor, if larger); Hodges-Lehmann shift, 95% Mann-Whitney interval.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in render_rows(comparison)]
    if comparison.warnings:
        lines += ["", *[f"> warning: {w}" for w in comparison.warnings]]
    return "\n".join(lines) + "\n"
