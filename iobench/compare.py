"""Regression detection between two result sets: the gate behind `iobench compare`.

Method, per case: the Hodges-Lehmann estimate of the shift between the two sides'
log(metric) samples (the median of all pairwise differences), with the distribution-free
confidence interval that inverts the Mann-Whitney test (Moses' interval; both from
``iobench.stats.hodges_lehmann``). Why this and not a bootstrap: timing samples are few
(5-20), skewed and have long right tails; the rank method needs no normality, is robust to a
stray slow repetition, gives the same answer every time for the same data, and is honest at
small n (3 against 3 can never be significant at 95%, and says so).

Everything is decided on the log scale, where swapping the sides negates the interval
exactly: compare(a, b) says "slower" exactly when compare(b, a) says "faster". The limit is
log-symmetric too: a 5% threshold means a ratio of 1.05 either way (5% slower, or 1.05x
faster = -4.8%). With L = log(1 + max(threshold, noise floor)) and the interval [lo, hi] of
the log shift in the "worse" direction:

* slower:    lo > L          (the whole interval is beyond the limit, however wide it is)
* faster:    hi < -L
* unchanged: -L <= lo and hi <= L (the whole interval is within the limit)
* noisy:     anything else: the interval crosses the limit, so the data cannot tell.

Identical samples (a run compared with itself) are "unchanged" with a zero-width interval:
they are the same measurement, not two draws that happen to agree.

Repetitions of one run are not independent of the machine's state at the time, so on a
shared machine two runs of the same code can differ by more than their repetitions vary
(measured here: up to 36% between runs 15 s apart). A side may therefore be several runs
(a baseline folder of runs): from the spread of the per-run medians comes that case's
measured noise floor (the 95% interval of the difference between the two sides' mean run were
the code the same; with one new run, the prediction interval for one more run), and the limit
is the larger of it and the threshold.

A gate judges many cases at once, and each floor at 95% would let one of twenty unchanged
cases land beyond it by chance: measured on this project's machine over 41 runs of ci.toml,
30 of 117 A/A gates (5 base runs against 3 later runs of the same code, 12 cases) flagged a
case. Each floor is therefore taken at 1 - 0.05/m for m cases compared (Bonferroni), so that
a gate on unchanged code stays clean 95% of the time (5 of the same 117 flagged); the
repetitions' own interval stays at 95% (with 5 repetitions a side no tighter level is reachable).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from iobench.errors import IobenchError
from iobench.metrics import case_params, format_param, higher_is_better
from iobench.results import ResultSet
from iobench.stats import hodges_lehmann, min_reps_for_significance

#: Metrics where a larger value is better besides the ones the metric registry declares so.
HIGHER_IS_BETTER = {"throughput"}
#: Below this many repetitions on either side, a 95% rank interval cannot exclude 0.
MIN_REPS = min_reps_for_significance()
#: What must agree for two runs to be from the same machine (meta section, key, label).
MACHINE_KEYS = (
    ("host", "cpu_model", "CPU"),
    ("host", "kernel", "kernel"),
    ("target", "fs_type", "filesystem"),
    ("target", "block_device", "device"),
)
#: Differences worth a warning that do not make it another machine.
OTHER_HOST_KEYS = (("host", "cpu_count", "CPU count"),)
#: The chance that a gate on unchanged code flags any case through its noise floors.
FAMILY_ERROR = 0.05
#: Verdicts, worst first (the order of every table).
VERDICTS = ("slower", "missing", "noisy", "faster", "unchanged")


class CompareError(IobenchError):
    """Two result sets that cannot be compared (nothing in common, unknown metric)."""


class DifferentMachinesError(CompareError):
    """The two sides ran on different machines; their difference would measure the machine."""


@dataclass(frozen=True)
class Judgement:
    """The verdict on one case's two samples."""

    change: float  # estimated relative change of the metric, new vs base (+0.12 = 12% more)
    ci_low: float  # 95% interval of that change
    ci_high: float
    limit: float  # the larger of threshold and noise floor, as a ratio (0.05 = 1.05x either way)
    verdict: str  # slower | faster | unchanged | noisy
    reason: str
    #: Noisy, and the interval reaches beyond the limit on the worse side: --fail-on-noisy fails it.
    could_regress: bool = False


@dataclass(frozen=True)
class CaseComparison:
    """The verdict for one case present in both sides."""

    experiment: str
    case: str
    label: str  # the case's parameters in human units, the ones that vary first (bs=64KiB ...)
    base_reps: int
    new_reps: int
    base_median: float
    new_median: float
    change: float
    ci_low: float
    ci_high: float
    #: How far the sides' runs may differ on the same code (their run-to-run spread); None: unmeasured.
    noise_floor: float | None
    limit: float
    verdict: str
    reason: str
    could_regress: bool


@dataclass(frozen=True)
class MissingCase:
    """A case measured in BASE that NEW does not have a measurement of."""

    experiment: str
    case: str
    label: str
    status: str  # failed | unsupported | absent
    reason: str


@dataclass(frozen=True)
class Side:
    """What one side of the comparison is: its run ids and the code they measured."""

    runs: list[str]
    #: ``git describe`` (or the commit) of each distinct source the runs came from, when recorded.
    git: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, runs: Sequence[ResultSet]) -> Side:
        described, commits = [], []
        for run in runs:
            info = run.meta.get("git")
            if not isinstance(info, dict):
                continue  # older runs, or a run started outside a git repository
            commit = str(info.get("commit") or "")
            name = str(info.get("describe") or commit[:12])
            if name and name not in described:
                described.append(name)
            if commit and commit not in commits:
                commits.append(commit)
        return cls([run.run_id for run in runs], described, commits)

    def describe(self) -> str:
        """``run 20261121-170102-3fa9, git v0.1-3-gabc1234`` / ``5 runs (first .. last), git unknown``."""
        if len(self.runs) == 1:
            which = f"run {self.runs[0]}"
        else:
            which = f"{len(self.runs)} runs ({self.runs[0]} .. {self.runs[-1]})"
        return f"{which}, git {', '.join(self.git) if self.git else 'unknown'}"


@dataclass(frozen=True)
class Comparison:
    """Everything `iobench compare` reports."""

    metric: str
    threshold: float
    cases: list[CaseComparison]
    missing: list[MissingCase]
    warnings: list[str]
    only_in_new: list[str]
    base: Side
    new: Side
    #: The confidence of each case's noise floor (1 - FAMILY_ERROR / cases compared).
    floor_confidence: float = 0.95

    @property
    def regressions(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.verdict == "slower"]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(VERDICTS, 0)
        for case in self.cases:
            counts[case.verdict] += 1
        counts["missing"] = len(self.missing)
        return counts

    def gate_failures(self, allow_missing: bool = False, fail_on_noisy: bool = False) -> list[str]:
        """Why the gate fails (empty: it passes), one phrase per reason."""
        reasons = []
        if self.regressions:
            reasons.append(f"{len(self.regressions)} case(s) slower")
        if self.missing and not allow_missing:
            reasons.append(f"{len(self.missing)} case(s) missing or failed in NEW (--allow-missing accepts)")
        risky = [c for c in self.cases if c.verdict == "noisy" and c.could_regress]
        if risky and fail_on_noisy:
            reasons.append(f"{len(risky)} case(s) too noisy to rule out a slowdown (--fail-on-noisy)")
        return reasons

    def noise_floor_summary(self) -> str:
        """The noise floor used, in one phrase: how it was measured and its range."""
        floors = [c.noise_floor for c in self.cases if c.noise_floor is not None]
        if not floors:
            return "not measured (one run a side; a baseline of several runs measures it)"
        return (
            f"measured per case from the spread between runs ({len(self.base.runs)} base, "
            f"{len(self.new.runs)} new), each at {self.floor_confidence:.3g} confidence so that unchanged "
            f"code flags none of {len(self.cases)} cases 95% of the time: median {statistics.median(floors):.0%}, "
            f"largest {max(floors):.0%}"
        )

    def as_dict(self, allow_missing: bool = False, fail_on_noisy: bool = False) -> dict[str, Any]:
        """The JSON form: an unmeasured noise floor is null, infinite bounds are null too."""
        failures = self.gate_failures(allow_missing, fail_on_noisy)
        return {
            "metric": self.metric,
            "threshold": self.threshold,
            "floor_confidence": self.floor_confidence,
            "base": asdict(self.base),
            "new": asdict(self.new),
            "gate": {"passed": not failures, "failures": failures},
            "counts": self.counts(),
            "warnings": self.warnings,
            "missing": [asdict(m) for m in self.missing],
            "only_in_new": self.only_in_new,
            "cases": [{k: _json_number(v) for k, v in asdict(c).items()} for c in self.cases],
        }


def _json_number(value: Any) -> Any:
    """NaN and infinities are not JSON: null (an interval that could not be computed)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metric_values(frame: pd.DataFrame, metric: str) -> pd.Series:
    """The metric per row; ``throughput`` is derived (bytes per second), never stored."""
    if metric == "throughput":
        from iobench.metrics import rep_values  # bytes / elapsed: one definition, in metrics

        values = rep_values(frame, "bytes_per_s")
        if values is None:
            raise CompareError("metric 'throughput' needs the bytes and elapsed_ns columns")
        return values
    if metric not in frame:
        raise CompareError(f"metric {metric!r} is not a column of these results")
    values = pd.to_numeric(frame[metric], errors="coerce")
    if values.isna().all():
        raise CompareError(f"metric {metric!r} has no numeric values")
    return values


def noise_floor(
    base_medians: Sequence[float], new_medians: Sequence[float] = (), confidence: float = 0.95
) -> float | None:
    """How far the new side's runs may land from the base side's on the same code.

    From the run-to-run spread: the standard deviation of log run medians around each side's
    mean, pooled over both sides (k1 + k2 - 2 degrees of freedom), times Student t and
    sqrt(1/k1 + 1/k2), as a ratio: the two-sided ``confidence`` interval of the difference
    between the two sides' mean run, were the code the same. With one new run (or none given)
    this is the prediction interval for one more run, exp(t * sd * sqrt(1 + 1/k)) - 1. None
    when neither side has two runs: unmeasured (not zero).
    """
    sides = [[math.log(m) for m in medians if m == m and m > 0] for medians in (base_medians, new_medians)]
    dof = sum(len(logs) - 1 for logs in sides if logs)
    if dof < 1:
        return None
    squares = sum(sum((x - statistics.fmean(logs)) ** 2 for x in logs) for logs in sides if logs)
    spread = math.sqrt(squares / dof)
    k1, k2 = (max(len(logs), 1) for logs in sides)
    return math.expm1(t_quantile(1 - (1 - confidence) / 2, dof) * spread * math.sqrt(1 / k1 + 1 / k2))


def t_quantile(probability: float, dof: int) -> float:
    """Student's t quantile (scipy's; compare is not on the measuring path)."""
    from scipy.special import stdtrit

    return float(stdtrit(dof, probability))


def floor_confidence(cases: int) -> float:
    """Each case's noise-floor confidence when ``cases`` are judged together (Bonferroni)."""
    return 1 - FAMILY_ERROR / max(cases, 1)


def judge(
    base: Sequence[float],
    new: Sequence[float],
    threshold: float,
    floor: float | None = None,
    higher_is_better: bool = False,
) -> Judgement:
    """The verdict on two samples of one case (the rule in this module's docstring)."""
    base_values, new_values = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    limit_log = max(math.log1p(threshold), math.log1p(floor) if floor else 0.0)
    limit = math.expm1(limit_log)
    bound = f"{_pct(limit)} noise floor" if floor and floor > threshold else f"{_pct(limit)} threshold"
    nan, inf = math.nan, math.inf
    if (base_values <= 0).any() or (new_values <= 0).any():
        return Judgement(
            nan, -inf, inf, limit, "noisy", "non-positive values cannot be compared as ratios", True
        )
    if len(base_values) == len(new_values) and np.array_equal(np.sort(base_values), np.sort(new_values)):
        return Judgement(0.0, 0.0, 0.0, limit, "unchanged", "identical samples")
    shift, low, high = hodges_lehmann(np.log(base_values), np.log(new_values))
    change, ci_low, ci_high = math.expm1(shift), math.expm1(low), math.expm1(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        reason = (
            f"{len(base_values)} and {len(new_values)} repetitions: "
            f"{MIN_REPS} a side are needed for a 95% interval"
        )
        return Judgement(change, ci_low, ci_high, limit, "noisy", reason, True)
    # The interval of the log shift in the "worse" direction: exact negation for higher-is-better.
    worse_low, worse_high = (-high, -low) if higher_is_better else (low, high)
    if worse_low > limit_log:
        return Judgement(change, ci_low, ci_high, limit, "slower", f"whole interval beyond the {bound}")
    if worse_high < -limit_log:
        return Judgement(change, ci_low, ci_high, limit, "faster", f"whole interval beyond the {bound}")
    if worse_low >= -limit_log and worse_high <= limit_log:
        return Judgement(change, ci_low, ci_high, limit, "unchanged", f"whole interval within the {bound}")
    could_regress = worse_high > limit_log
    side = "could be slower" if could_regress else "could be faster"
    if could_regress and worse_low < -limit_log:
        side = "could be slower or faster"
    return Judgement(
        change, ci_low, ci_high, limit, "noisy", f"interval crosses the {bound}: {side}", could_regress
    )


def _pct(ratio: float) -> str:
    """0.05 -> '5%', 0.1234 -> '12.3%': three significant digits, no trailing zeros."""
    return f"{ratio * 100:.3g}%"


def _meta_value(run: ResultSet, section: str, key: str) -> Any:
    part = run.meta.get(section)
    return part.get(key) if isinstance(part, dict) else None


def _values(runs: Sequence[ResultSet], section: str, key: str) -> list[str]:
    found = []
    for run in runs:
        value = _meta_value(run, section, key)
        if value is not None and str(value) not in found:
            found.append(str(value))
    return found


def machine_differences(base: Sequence[ResultSet], new: Sequence[ResultSet]) -> list[str]:
    """What makes the two sides different machines (CPU, kernel, filesystem, device)."""
    found = []
    for section, key, label in MACHINE_KEYS:
        left, right = _values(base, section, key), _values(new, section, key)
        if len(set(left) | set(right)) > 1:
            found.append(f"{label} {', '.join(left) or '?'} (base) vs {', '.join(right) or '?'} (new)")
    return found


def host_warnings(base: Sequence[ResultSet], new: Sequence[ResultSet]) -> list[str]:
    """Differences short of another machine, facts that could not be checked, unfinished runs."""
    found = []
    for section, key, label in OTHER_HOST_KEYS:
        left, right = _values(base, section, key), _values(new, section, key)
        if len(set(left) | set(right)) > 1:
            found.append(f"{label} differs: {', '.join(left)} (base) vs {', '.join(right)} (new)")
    for section, key, label in MACHINE_KEYS:
        for runs, name in ((base, "base"), (new, "new")):
            if any(_meta_value(run, section, key) is None for run in runs):
                found.append(f"the {name} side does not record its {label}: same machine not checked")
    for runs, name in ((base, "base"), (new, "new")):
        for run in runs:
            if run.meta.get("status") != "complete":
                found.append(f"the {name} run {run.run_id} is {run.meta.get('status')}, not complete")
    return found


@dataclass
class _SideData:
    samples: dict[tuple[str, str], np.ndarray]
    #: Each case's median per run (the run-to-run spread gives the noise floor).
    run_medians: dict[tuple[str, str], list[float]]
    #: (experiment, case) -> (status, reason) of cases that have no good repetition.
    failures: dict[tuple[str, str], tuple[str, str]]


def _side(runs: Sequence[ResultSet], metric: str) -> _SideData:
    """Pooled samples per (experiment, case), each case's noise floor, and failed cases."""
    frames = [run.frame for run in runs if len(run.frame)]
    data = _SideData({}, {}, {})
    if not frames:
        return data
    frame = pd.concat(frames, ignore_index=True)
    ok = frame[frame["status"] == "ok"]
    if not ok.empty:
        values = metric_values(ok, metric)
        for key, index in ok.groupby(["experiment", "case"]).groups.items():
            data.samples[key] = values[index].dropna().to_numpy(float)
            per_run = values[index].groupby(ok.loc[index, "run_id"]).median().tolist()
            data.run_medians[key] = per_run
    for row in frame[frame["status"] != "ok"].itertuples():
        key = (row.experiment, row.case)
        if key not in data.samples:
            reason = str(getattr(row, "status_reason", "") or "")
            data.failures[key] = (str(row.status), "" if reason == "nan" else reason)
    return data


def _experiment_class(name: str) -> Any:
    from iobench.experiments import get_experiment

    try:
        return get_experiment(name)
    except IobenchError:
        return None  # results of an experiment this installation lacks: raw values


def _human(experiment_cls: Any, name: str, raw: str) -> str:
    """A case-id value as the experiment spells it (65536 -> 64KiB); raw when unknown."""
    if experiment_cls is None:
        return raw
    value: Any = raw
    for convert in (int, float):
        try:
            value = convert(raw)
            break
        except ValueError:
            continue
    try:
        return format_param(experiment_cls, name, value)
    except (ValueError, TypeError, ArithmeticError):
        return raw


def case_labels(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    """Per (experiment, case): its ``name=value`` parts in human units, split into the
    parameters that vary between that experiment's cases (first) and the ones that do not."""
    by_experiment: dict[str, list[str]] = {}
    for experiment, case in keys:
        by_experiment.setdefault(experiment, []).append(case)
    labels = {}
    for experiment, cases in by_experiment.items():
        cls = _experiment_class(experiment)
        parsed = {case: case_params(case) for case in cases}
        seen: dict[str, set[str]] = {}
        for pairs in parsed.values():
            for name, value in pairs:
                seen.setdefault(name, set()).add(value)
        varying = {name for name, values in seen.items() if len(values) > 1}
        for case, pairs in parsed.items():
            parts = [(name, f"{name}={_human(cls, name, value)}") for name, value in pairs]
            labels[(experiment, case)] = (
                [text for name, text in parts if name in varying],
                [text for name, text in parts if name not in varying],
            )
    return labels


def compare(
    base: ResultSet | list[ResultSet],
    new: ResultSet | list[ResultSet],
    metric: str = "elapsed_ns",
    threshold: float = 0.05,
    cross_machine: bool = False,
) -> Comparison:
    """Compare every case of BASE with NEW; each side is one run or several.

    DifferentMachinesError when the sides ran on different machines, unless ``cross_machine``.
    """
    base_runs = base if isinstance(base, list) else [base]
    new_runs = new if isinstance(new, list) else [new]
    differences = machine_differences(base_runs, new_runs)
    if differences and not cross_machine:
        raise DifferentMachinesError(
            f"the runs come from different machines ({'; '.join(differences)}): the comparison would "
            "measure the machine, not the code; compare runs from one machine or pass --cross-machine"
        )
    left, right = _side(base_runs, metric), _side(new_runs, metric)
    common = [key for key in left.samples if key in right.samples]
    absent = [key for key in left.samples if key not in right.samples]
    if not common and not absent:
        raise CompareError("the base has no measured case to compare")
    if not common and not any(key in right.failures for key in absent):
        raise CompareError("the two runs have no case in common (same experiments and parameters)")
    labels = {key: " ".join(v + c) for key, (v, c) in case_labels([*left.samples, *right.failures]).items()}
    confidence = floor_confidence(len(common))
    cases = [_compare_case(key, left, right, labels[key], metric, threshold, confidence) for key in common]
    missing = []
    for key in absent:
        status, reason = right.failures.get(key, ("absent", "not in the new run(s)"))
        missing.append(MissingCase(key[0], key[1], labels[key], status, reason or status))
    warnings = _warnings(base_runs, new_runs, differences, cases)
    return Comparison(
        metric=metric,
        threshold=threshold,
        cases=cases,
        missing=missing,
        warnings=warnings,
        only_in_new=[f"{e} {c}" for e, c in right.samples if (e, c) not in left.samples],
        base=Side.of(base_runs),
        new=Side.of(new_runs),
        floor_confidence=confidence,
    )


def _compare_case(
    key: tuple[str, str],
    left: Any,
    right: Any,
    label: str,
    metric: str,
    threshold: float,
    confidence: float = 0.95,
) -> CaseComparison:
    """The verdict on one case both sides measured."""
    experiment, case = key
    base_values, new_values = left.samples[key], right.samples[key]
    floor = noise_floor(left.run_medians[key], right.run_medians[key], confidence)
    higher = metric in HIGHER_IS_BETTER or higher_is_better(metric, _experiment_class(experiment))
    result = judge(base_values, new_values, threshold, floor, higher)
    return CaseComparison(
        experiment=experiment,
        case=case,
        label=label,
        base_reps=len(base_values),
        new_reps=len(new_values),
        base_median=float(np.median(base_values)),
        new_median=float(np.median(new_values)),
        change=result.change,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        noise_floor=floor,
        limit=result.limit,
        verdict=result.verdict,
        reason=result.reason,
        could_regress=result.could_regress,
    )


def _warnings(
    base_runs: list[ResultSet], new_runs: list[ResultSet], differences: list[str], cases: list[CaseComparison]
) -> list[str]:
    """What the reader of a comparison must know beside the verdicts."""
    warnings = [f"machines differ (--cross-machine): {d}" for d in differences]
    warnings += list(dict.fromkeys(host_warnings(base_runs, new_runs)))
    if len(base_runs) < 2 and len(new_runs) < 2:
        warnings.append(
            "single runs on both sides: the run-to-run noise floor is not measured, so machine drift "
            "can look like a change (compare against a baseline of several runs: make baseline)"
        )
    noisy = [c for c in cases if c.verdict == "noisy"]
    if noisy:
        warnings.append(f"{len(noisy)} case(s) too noisy to judge (more repetitions or runs would help)")
    return warnings


# ------------------------------------------------------------------ rendering


def _percent(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:+.1%}"


def _interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)) or low <= -1:
        return "none"
    return f"{_percent(low)} .. {_percent(high)}"


def _limit(case: CaseComparison) -> str:
    floor = case.noise_floor
    if floor is not None and floor > 0 and math.isclose(case.limit, floor):
        return f"{_pct(case.limit)} (floor)"
    return _pct(case.limit)


HEADERS = ["verdict", "experiment", "case", "change", "95% interval", "limit", "reps", "why"]


def render_rows(comparison: Comparison) -> list[list[str]]:
    """Table rows shared by the text and Markdown formats, worst first; missing cases too."""
    rows = []
    for m in comparison.missing:
        rows.append(["missing", m.experiment, m.label, "-", "-", "-", "-", f"{m.status} in NEW: {m.reason}"])
    order = {verdict: i for i, verdict in enumerate(VERDICTS)}
    for c in sorted(
        comparison.cases, key=lambda c: (order[c.verdict], -(c.change if c.change == c.change else 0))
    ):
        rows.append(
            [
                c.verdict,
                c.experiment,
                c.label,
                _percent(c.change),
                _interval(c.ci_low, c.ci_high),
                _limit(c),
                f"{c.base_reps}/{c.new_reps}",
                c.reason,
            ]
        )
    rows.sort(key=lambda row: order[row[0]])  # stable: keeps the change order within a verdict
    return rows


def headline(comparison: Comparison) -> str:
    """``1 slower, 0 missing, 2 faster, 9 unchanged, 0 too noisy``."""
    counts = comparison.counts()
    return (
        f"{counts['slower']} slower, {counts['missing']} missing, {counts['faster']} faster, "
        f"{counts['unchanged']} unchanged, {counts['noisy']} too noisy"
    )


def rule_text(comparison: Comparison) -> str:
    """The decision rule, one sentence, with this comparison's numbers."""
    return (
        f"Metric `{comparison.metric}`. A case is slower (or faster) when the whole 95% interval of its "
        f"change (Hodges-Lehmann shift of log values, Mann-Whitney interval) lies beyond the limit: "
        f"{comparison.threshold:.0%} either way on the log scale, or the case's measured run-to-run noise "
        f"floor if larger (taken at {comparison.floor_confidence:.3g} per case, so that unchanged code "
        "flags no case 95% of the time); noisy when the interval crosses the limit."
    )


def render_markdown(comparison: Comparison, allow_missing: bool = False, fail_on_noisy: bool = False) -> str:
    """A pull-request comment / job summary: what was compared, the rule, the table, the gate."""
    failures = comparison.gate_failures(allow_missing, fail_on_noisy)
    lines = [
        f"### iobench compare: {headline(comparison)}",
        "",
        f"- **Base**: {_md_side(comparison.base)}",
        f"- **New**: {_md_side(comparison.new)}",
        f"- **Noise floor**: {comparison.noise_floor_summary()}",
        f"- **Gate**: {'fails: ' + '; '.join(failures) if failures else 'passes'}",
        "",
        rule_text(comparison),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in render_rows(comparison)
    ]
    if comparison.warnings:
        lines += ["", *[f"> warning: {w}" for w in comparison.warnings]]
    return "\n".join(lines) + "\n"


def _md_side(side: Side) -> str:
    runs = (
        ", ".join(f"`{r}`" for r in side.runs)
        if len(side.runs) <= 3
        else (f"{len(side.runs)} runs, `{side.runs[0]}` .. `{side.runs[-1]}`")
    )
    git = ", ".join(f"`{g}`" for g in side.git) if side.git else "unknown"
    return f"{runs}; git {git}"
