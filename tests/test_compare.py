"""Regression verdicts on synthetic result sets with known shifts, and through the CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from iobench.cli import cli
from iobench.compare import (
    CompareError,
    DifferentMachinesError,
    compare,
    floor_confidence,
    hodges_lehmann,
    judge,
    noise_floor,
    t_quantile,
)
from iobench.errors import ExitCode, ResultsError
from iobench.results import COMMON_COLUMNS, RunStore, load_run, load_runs

MACHINE = {
    "host": {"cpu_model": "X", "kernel": "6", "cpu_count": 2},
    "target": {"fs_type": "ext4", "block_device": "vda"},
}


def samples(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, sigma, n))


def write_run(
    folder: Path,
    cases: dict[str, np.ndarray | tuple[str, str]],
    meta: dict[str, Any] | None = None,
    experiment: str = "syscall",
) -> Path:
    """A run folder holding the given elapsed_ns samples per case; a (status, reason) pair
    instead of samples records the case as failed or unsupported, as the runner does."""
    writer = RunStore.create(folder, {**MACHINE, **(meta or {})})
    for case, values in cases.items():
        template = {c: 0 for c in COMMON_COLUMNS if c != "run_id"}
        template.update(experiment=experiment, case=case, engine="python", target_fs="ext4", bytes=1000)
        template.update(part.split("=", 1) for part in case.split(",") if "=" in part)  # parameter columns
        if isinstance(values, tuple):
            status, reason = values
            rows = [{**template, "rep": 0, "status": status, "status_reason": reason, "elapsed_ns": 0}]
            writer.commit(rows, {"experiment": experiment, "case": case, "status": status})
            continue
        rows = [
            {**template, "rep": rep, "status": "ok", "status_reason": "", "elapsed_ns": float(value)}
            for rep, value in enumerate(values, start=1)
        ]
        writer.commit(rows, {"experiment": experiment, "case": case, "status": "ok"})
    writer.finish("complete")
    return writer.path


def invoke(*args: Any, columns: int = 200) -> Any:
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(cli, ["compare", *map(str, args)])


# --- the statistics ----------------------------------------------------------------------


def test_hodges_lehmann_recovers_a_known_shift() -> None:
    base = np.arange(10.0)
    estimate, low, high = hodges_lehmann(base, base + 10.0)
    assert estimate == 10.0 and 0 < low <= 10.0 <= high
    overlapping = hodges_lehmann(base, base + 1.0)
    assert overlapping[0] == 1.0 and overlapping[1] < 0 < overlapping[2]  # not significant


def test_three_against_three_can_never_be_significant() -> None:
    _, low, high = hodges_lehmann(np.array([1.0, 2, 3]), np.array([10.0, 11, 12]))
    assert (low, high) == (-math.inf, math.inf)
    verdict = judge([1.0, 2, 3], [10.0, 11, 12], 0.05)
    assert (
        verdict.verdict == "noisy"
        and verdict.reason == "3 and 3 repetitions: 4 a side are needed for a 95% interval"
    )


@pytest.mark.parametrize(
    ("shift", "sigma", "verdict"),
    [
        (0.00, 0.02, "unchanged"),  # identical code
        (0.03, 0.01, "unchanged"),  # real but below the 5% threshold
        (0.20, 0.02, "slower"),  # a real 20% slowdown
        (-0.20, 0.02, "faster"),
        (0.00, 0.50, "noisy"),  # too noisy to judge either way
        (0.20, 0.50, "noisy"),
    ],
)
def test_verdicts_for_known_shifts(shift: float, sigma: float, verdict: str) -> None:
    rng = np.random.default_rng(7)
    base = samples(rng, 1e6, sigma, 12)
    new = samples(rng, 1e6 * (1 + shift), sigma, 12)
    assert judge(base, new, 0.05).verdict == verdict


def test_identical_code_is_rarely_significant_and_never_a_regression() -> None:
    rng = np.random.default_rng(11)
    verdicts = [
        judge(samples(rng, 1e6, 0.03, 10), samples(rng, 1e6, 0.03, 10), 0.05).verdict for _ in range(200)
    ]
    assert verdicts.count("slower") == 0


def test_twenty_percent_is_caught_almost_always() -> None:
    rng = np.random.default_rng(13)
    verdicts = [
        judge(samples(rng, 1e6, 0.03, 10), samples(rng, 1.2e6, 0.03, 10), 0.05).verdict for _ in range(200)
    ]
    assert verdicts.count("slower") >= 195


def test_throughput_is_higher_is_better() -> None:
    rng = np.random.default_rng(3)
    base, new = samples(rng, 100.0, 0.01, 10), samples(rng, 80.0, 0.01, 10)
    assert judge(base, new, 0.05, higher_is_better=True).verdict == "slower"


def test_noise_floor_is_a_prediction_interval() -> None:
    assert noise_floor([100.0]) is None  # unmeasured, not zero
    assert noise_floor([100.0, 100.0, 100.0]) == 0.0
    wide, narrow = noise_floor([100.0, 110.0, 95.0]), noise_floor([100.0, 101.0, 99.5, 100.5, 100.2])
    assert wide is not None and narrow is not None and wide > 0.2 and narrow < 0.05


def test_the_noise_floor_pools_both_sides_runs() -> None:
    base, new = [100.0, 110.0, 95.0, 105.0, 98.0], [100.0, 104.0]
    assert noise_floor(base, new) == pytest.approx(noise_floor(new, base), rel=1e-12)
    assert noise_floor(base, [101.0]) == noise_floor(base)  # one new run: the prediction interval
    # Two runs alone give t(0.975, 1) = 12.7: pooled with the base's spread the floor stays usable.
    alone = noise_floor(new)
    pooled = noise_floor(base, new)
    assert alone is not None and pooled is not None and pooled < 0.2 < alone
    assert noise_floor([100.0], [120.0]) is None


def test_t_quantile_agrees_with_the_run_paths_table() -> None:
    from iobench.stats import t_quantile_975

    for dof in (1, 2, 5, 6, 12, 30, 100):
        assert t_quantile(0.975, dof) == pytest.approx(t_quantile_975(dof), rel=2e-3)
    assert t_quantile(1 - 0.05 / 24, 6) == pytest.approx(4.486, rel=1e-3)  # Bonferroni, 12 cases


def simulated_gate(rng: np.random.Generator, cases: int, confidence: float) -> int:
    """Cases an A/A gate flags: 5 base runs against 3 new runs of the same code, each run
    shifted by machine drift (sd 10% between runs, as measured here) with 10 repetitions of 1%
    spread around its own level."""
    flagged = 0
    for _ in range(cases):
        levels = np.exp(rng.normal(0.0, 0.10, 8))
        runs = [samples(rng, 1e6 * level, 0.01, 10) for level in levels]
        base, new = runs[:5], runs[5:]
        floor = noise_floor([np.median(r) for r in base], [np.median(r) for r in new], confidence)
        verdict = judge(np.concatenate(base), np.concatenate(new), 0.05, floor).verdict
        flagged += verdict in ("slower", "faster")
    return flagged


def test_a_gate_on_unchanged_code_flags_no_case_nineteen_times_in_twenty() -> None:
    """Family-wise: 12 cases whose floors were each taken at 95% flagged a case in a quarter
    of the A/A gates measured here; at 1 - 0.05/12 about one gate in twenty."""
    rng = np.random.default_rng(2026)
    gates = 200
    per_case = [simulated_gate(rng, 12, 0.95) for _ in range(gates)]
    family = [simulated_gate(rng, 12, floor_confidence(12)) for _ in range(gates)]
    assert sum(1 for f in per_case if f) / gates > 0.2  # the old rule: the test can tell
    assert sum(1 for f in family if f) / gates <= 0.08
    assert floor_confidence(1) == 0.95 and floor_confidence(12) == pytest.approx(1 - 0.05 / 12)


def test_the_floor_widens_with_the_cases_judged_together(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for side, drifts in (("base", (1.0, 1.04, 0.96, 1.02, 0.98)), ("new", (1.01, 0.99))):
        for drift in drifts:
            cases = {f"call={c}": samples(rng, 1e6 * drift, 0.01, 10) for c in "abcdefghijkl"}
            write_run(tmp_path / "twelve" / side, cases)
            write_run(tmp_path / "one" / side, {"call=a": cases["call=a"]})
    many = compare(*(load_runs(tmp_path / "twelve" / side) for side in ("base", "new")))
    alone = compare(*(load_runs(tmp_path / "one" / side) for side in ("base", "new")))
    assert many.floor_confidence == pytest.approx(1 - 0.05 / 12) and alone.floor_confidence == 0.95
    (case_a,) = [c for c in many.cases if c.case.endswith("call=a")]
    assert case_a.noise_floor is not None and alone.cases[0].noise_floor is not None
    assert case_a.noise_floor > 1.5 * alone.cases[0].noise_floor
    assert f"each at {many.floor_confidence:.3g} confidence" in many.noise_floor_summary()


def test_two_new_runs_do_not_hide_a_fifty_percent_slowdown(tmp_path: Path) -> None:
    """Taking the larger of each side's own floor let two new runs (t = 12.7) hide anything."""
    rng = np.random.default_rng(31)
    for drift in (1.0, 1.03, 0.97, 1.01, 0.99):
        write_run(tmp_path / "base", {"call=a": samples(rng, 1e6 * drift, 0.01, 10)})
    for drift in (1.47, 1.53):
        write_run(tmp_path / "new", {"call=a": samples(rng, 1e6 * drift, 0.01, 10)})
    (case,) = compare(load_runs(tmp_path / "base"), load_runs(tmp_path / "new")).cases
    assert case.verdict == "slower" and case.noise_floor is not None and case.noise_floor < 0.2


MIRROR = {"slower": "faster", "faster": "slower", "unchanged": "unchanged", "noisy": "noisy"}


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 14),
    m=st.integers(2, 14),
    shift=st.floats(-2.5, 2.5),  # log ratio: from 12x faster to 12x slower
    spread=st.sampled_from([0.0, 0.001, 0.02, 0.1, 0.3, 1.0]),
    threshold=st.sampled_from([0.0, 0.01, 0.05, 0.5]),
    floor=st.sampled_from([None, 0.0, 0.03, 0.2]),
    higher=st.booleans(),
)
def test_verdicts_are_symmetric(
    seed: int,
    n: int,
    m: int,
    shift: float,
    spread: float,
    threshold: float,
    floor: float | None,
    higher: bool,
) -> None:
    """compare(a, b) says slower exactly when compare(b, a) says faster, and so on."""
    rng = np.random.default_rng(seed)
    a = 1e6 * np.exp(rng.normal(0.0, spread, n))
    b = 1e6 * np.exp(shift + rng.normal(0.0, spread, m))
    forward, backward = judge(a, b, threshold, floor, higher), judge(b, a, threshold, floor, higher)
    assert backward.verdict == MIRROR[forward.verdict]
    swap = {"slower": "faster", "faster": "slower"}
    if "could be" in forward.reason:  # which way a noisy case could go mirrors too
        assert backward.reason == re.sub(r"slower|faster", lambda w: swap[w.group()], forward.reason).replace(
            "faster or slower", "slower or faster"
        )
    if math.isfinite(forward.ci_high):  # the log interval negates exactly
        assert math.log1p(forward.ci_low) == pytest.approx(-math.log1p(backward.ci_high), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(1.0, 1e12, allow_nan=False), min_size=1, max_size=20),
    threshold=st.sampled_from([0.0, 0.05]),
    floor=st.sampled_from([None, 0.0, 0.1]),
)
def test_identical_samples_are_always_unchanged(
    values: list[float], threshold: float, floor: float | None
) -> None:
    shuffled = list(reversed(values))
    result = judge(values, shuffled, threshold, floor)
    assert (result.verdict, result.change, result.ci_low, result.ci_high) == ("unchanged", 0.0, 0.0, 0.0)


def test_a_whole_interval_beyond_the_limit_is_slower_however_wide() -> None:
    rng = np.random.default_rng(2026)
    base = samples(rng, 1e6, 0.10, 5)
    for factor in (10.0, 1.5):
        new = base * factor * np.exp(rng.normal(0.0, 0.10, 5))
        result = judge(base, new, 0.05)
        assert result.verdict == "slower", (factor, result)
        assert result.ci_high - result.ci_low > 0.5  # wider than the old width limit allowed


def test_noisy_only_when_the_interval_crosses_the_limit() -> None:
    base = [100.0, 101.0, 102.0, 103.0, 104.0]
    crossing = judge(base, [103.0, 104.0, 106.0, 108.0, 110.0], 0.05)  # about +4%, interval 0%..+9%
    assert (
        crossing.verdict == "noisy"
        and crossing.could_regress
        and "crosses the 5% threshold" in crossing.reason
    )
    within = judge(base, [101.0, 102.0, 103.0, 104.0, 105.0], 0.05)
    assert within.verdict == "unchanged" and within.reason == "whole interval within the 5% threshold"
    maybe_faster = judge(base, [93.0, 95.0, 97.0, 99.0, 101.0], 0.05)
    assert maybe_faster.verdict == "noisy" and not maybe_faster.could_regress


def test_the_limit_is_log_symmetric() -> None:
    """5% means a ratio of 1.05 either way: 1/1.05 is as far as 1.05 is."""
    base = [100.0] * 4 + [100.0001]
    assert judge(base, [x * 1.06 for x in base], 0.05).verdict == "slower"
    assert judge(base, [x / 1.06 for x in base], 0.05).verdict == "faster"
    assert judge(base, [x / 1.04 for x in base], 0.05).verdict == "unchanged"
    # Applied in ratio units (the old rule), -5.5% would count; on logs it is 1.058x, beyond 5%.
    assert judge(base, [x * 0.945 for x in base], 0.05).verdict == "faster"


# --- whole result sets -------------------------------------------------------------------


def test_run_to_run_drift_is_not_a_regression_with_a_baseline_of_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    # Each run of the same code lands somewhere within about +-10%; repetitions agree closely.
    drifts = [0.95, 1.08, 1.00, 0.92, 1.05]
    base_runs = [
        write_run(tmp_path / "base", {"call=a": samples(rng, 1e6 * d, 0.01, 10)}) for d in drifts[:4]
    ]
    new = write_run(tmp_path / "new", {"call=a": samples(rng, 1e6 * drifts[4], 0.01, 10)})
    single = compare(load_run(base_runs[0]), load_run(new))  # the 0.95 run against the 1.05 one
    assert single.cases[0].verdict == "slower"  # a single base run cannot tell drift from change
    assert single.cases[0].noise_floor is None
    assert any("noise floor is not measured" in w for w in single.warnings)
    result = compare(load_runs(tmp_path / "base"), load_run(new))
    floor = result.cases[0].noise_floor
    assert result.cases[0].verdict == "unchanged" and floor is not None and floor > 0.1


def test_a_real_slowdown_beyond_the_floor_is_flagged(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    for drift in (1.00, 1.01, 0.99, 1.005):
        write_run(
            tmp_path / "base",
            {"call=a": samples(rng, 1e6 * drift, 0.01, 10), "call=b": samples(rng, 5e5, 0.01, 10)},
        )
    new = write_run(
        tmp_path / "new", {"call=a": samples(rng, 1.25e6, 0.01, 10), "call=b": samples(rng, 5e5, 0.01, 10)}
    )
    result = compare(load_runs(tmp_path / "base"), load_run(new))
    verdicts = {c.case: c.verdict for c in result.cases}
    assert verdicts == {"call=a": "slower", "call=b": "unchanged"}
    assert [c.case for c in result.regressions] == ["call=a"]


def test_whole_result_sets_compare_symmetrically(tmp_path: Path) -> None:
    rng = np.random.default_rng(40)
    shifts = {f"call=c{i}": float(shift) for i, shift in enumerate(rng.normal(0.0, 0.15, 12))}
    for side, runs in (("a", 3), ("b", 2)):
        for _ in range(runs):
            drift = float(np.exp(rng.normal(0.0, 0.02)))
            cases = {
                case: samples(rng, 1e6 * drift * (math.exp(shift) if side == "b" else 1.0), 0.05, 6)
                for case, shift in shifts.items()
            }
            write_run(tmp_path / side, cases)
    forward = compare(load_runs(tmp_path / "a"), load_runs(tmp_path / "b"))
    backward = compare(load_runs(tmp_path / "b"), load_runs(tmp_path / "a"))
    verdicts = {c.case: c.verdict for c in backward.cases}
    assert {c.case: MIRROR[c.verdict] for c in forward.cases} == verdicts
    assert set(verdicts.values()) >= {"slower", "faster"}  # the example covers both outcomes


def test_nothing_in_common_cannot_be_compared(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = write_run(tmp_path / "a", {"call=a": samples(rng, 1.0, 0.01, 5)})
    b = write_run(tmp_path / "b", {"call=b": samples(rng, 1.0, 0.01, 5)})
    with pytest.raises(CompareError, match="no case in common"):
        compare(load_run(a), load_run(b))
    with pytest.raises(CompareError, match="metric 'nope'"):
        compare(load_run(a), load_run(a), metric="nope")


def test_other_machines_cannot_be_compared_unless_asked(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    a = write_run(tmp_path / "a", {"call=a": samples(rng, 1.0, 0.01, 5)})
    for section, key, label in (
        ("host", "cpu_model", "CPU"),
        ("host", "kernel", "kernel"),
        ("target", "fs_type", "filesystem"),
        ("target", "block_device", "device"),
    ):
        other = {section: {**MACHINE[section], key: "other"}}
        b = write_run(tmp_path / key, {"call=a": samples(rng, 1.0, 0.01, 5)}, other)
        with pytest.raises(
            DifferentMachinesError, match=f"{label} {MACHINE[section][key]} \\(base\\) vs other"
        ):
            compare(load_run(a), load_run(b))
        warnings = compare(load_run(a), load_run(b), cross_machine=True).warnings
        assert (
            f"machines differ (--cross-machine): {label} {MACHINE[section][key]} (base) vs other (new)"
            in warnings
        )


def test_a_cpu_count_difference_is_only_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    a = write_run(tmp_path / "a", {"call=a": samples(rng, 1.0, 0.01, 5)})
    b = write_run(
        tmp_path / "b", {"call=a": samples(rng, 1.0, 0.01, 5)}, {"host": {**MACHINE["host"], "cpu_count": 4}}
    )
    assert "CPU count differs: 2 (base) vs 4 (new)" in compare(load_run(a), load_run(b)).warnings


# --- the command -------------------------------------------------------------------------


def _pair(tmp_path: Path, shift: float) -> tuple[Path, Path]:
    rng = np.random.default_rng(21)
    for drift in (1.0, 1.005, 0.995):
        write_run(tmp_path / "base", {"call=a": samples(rng, 1e6 * drift, 0.01, 10)})
    write_run(tmp_path / "new", {"call=a": samples(rng, 1e6 * (1 + shift), 0.01, 10)})
    return tmp_path / "base", tmp_path / "new"


@pytest.mark.parametrize(
    ("shift", "code"), [(0.0, ExitCode.OK), (0.03, ExitCode.OK), (0.25, ExitCode.REGRESSION)]
)
def test_compare_exit_codes(tmp_path: Path, shift: float, code: int) -> None:
    base, new = _pair(tmp_path, shift)
    result = invoke(base, new)
    assert result.exit_code == code, result.output


@pytest.mark.parametrize("factor", [10.0, 1.5])
def test_big_slowdowns_at_five_reps_fail_the_gate(tmp_path: Path, factor: float) -> None:
    """The old rule called these "noisy: interval too wide" and exited 0."""
    rng = np.random.default_rng(2026)
    base_values = samples(rng, 1e6, 0.10, 5)
    base = write_run(tmp_path / "base", {"call=getppid,calls=500000": base_values})
    new = write_run(
        tmp_path / "new", {"call=getppid,calls=500000": base_values * factor * np.exp(rng.normal(0, 0.1, 5))}
    )
    result = invoke(base, new, "--format", "json")
    assert result.exit_code == ExitCode.REGRESSION, result.output
    (case,) = json.loads(result.stdout)["cases"]
    assert case["verdict"] == "slower" and case["ci_low"] > 0.05
    assert invoke(base, new).exit_code == ExitCode.REGRESSION
    assert invoke(new, base).exit_code == ExitCode.OK  # the other way round: faster


def test_fail_on_noisy_fails_only_cases_that_could_be_slower(tmp_path: Path) -> None:
    base_values = [100.0, 101.0, 102.0, 103.0, 104.0]
    base = write_run(tmp_path / "base", {"call=a": np.array(base_values), "call=b": np.array(base_values)})
    new = write_run(
        tmp_path / "new",
        {
            "call=a": np.array([103.0, 104.0, 106.0, 108.0, 110.0]),
            "call=b": np.array([93.0, 95.0, 97.0, 99.0, 101.0]),
        },
    )
    plain = invoke(base, new, "--format", "json")
    assert plain.exit_code == ExitCode.OK
    assert [c["verdict"] for c in json.loads(plain.stdout)["cases"]] == ["noisy", "noisy"]
    strict = invoke(base, new, "--fail-on-noisy")
    assert strict.exit_code == ExitCode.REGRESSION
    assert "gate: fails: 1 case(s) too noisy to rule out a slowdown (--fail-on-noisy)" in strict.stdout
    only_faster = write_run(tmp_path / "faster", {"call=b": np.array([93.0, 95.0, 97.0, 99.0, 101.0])})
    assert (
        invoke(
            write_run(tmp_path / "b", {"call=b": np.array(base_values)}), only_faster, "--fail-on-noisy"
        ).exit_code
        == ExitCode.OK
    )


def test_missing_and_failed_cases_fail_the_gate_in_every_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    base = write_run(
        tmp_path / "base",
        {
            "call=a": samples(rng, 1e6, 0.01, 6),
            "call=b": samples(rng, 1e6, 0.01, 6),
            "call=c": samples(rng, 1e6, 0.01, 6),
        },
    )
    new = write_run(
        tmp_path / "new",
        {
            "call=a": samples(rng, 1e6, 0.01, 6),
            "call=b": ("failed", "OSError: [Errno 28] No space left on device"),
        },
    )
    text = invoke(base, new)
    assert text.exit_code == ExitCode.REGRESSION
    assert (
        re.search(r"missing +call=b", text.stdout)
        and "failed in NEW: OSError: [Errno 28] No space left on device" in text.stdout
    )
    assert (
        re.search(r"missing +call=c", text.stdout) and "absent in NEW: not in the new run(s)" in text.stdout
    )
    assert "gate: fails: 2 case(s) missing or failed in NEW (--allow-missing accepts)" in text.stdout
    markdown = invoke(base, new, "--format", "md")
    assert markdown.exit_code == ExitCode.REGRESSION
    assert markdown.stdout.startswith(
        "### iobench compare: 0 slower, 2 missing, 0 faster, 1 unchanged, 0 too noisy"
    )
    assert (
        "| missing | syscall | call=b | - | - | - | - | failed in NEW: OSError: [Errno 28] No space left on device |"
        in markdown.stdout
    )
    assert "| missing | syscall | call=c |" in markdown.stdout
    data = json.loads(invoke(base, new, "--format", "json").stdout)
    assert data["counts"]["missing"] == 2 and data["gate"]["passed"] is False
    assert [(m["case"], m["status"]) for m in data["missing"]] == [("call=b", "failed"), ("call=c", "absent")]
    allowed = invoke(base, new, "--allow-missing")
    assert (
        allowed.exit_code == ExitCode.OK
        and re.search(r"missing +call=b", allowed.stdout)
        and "gate: passes" in allowed.stdout
    )


def test_a_case_unsupported_in_new_is_missing(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    base = write_run(
        tmp_path / "base", {"call=a": samples(rng, 1e6, 0.01, 6), "call=b": samples(rng, 1e6, 0.01, 6)}
    )
    new = write_run(
        tmp_path / "new", {"call=a": samples(rng, 1e6, 0.01, 6), "call=b": ("unsupported", "needs root")}
    )
    data = json.loads(invoke(base, new, "--format", "json").stdout)
    assert data["missing"] == [
        {
            "experiment": "syscall",
            "case": "call=b",
            "label": "call=b",
            "status": "unsupported",
            "reason": "needs root",
        }
    ]
    assert invoke(base, new).exit_code == ExitCode.REGRESSION


def test_different_machines_exit_2_with_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    base = write_run(tmp_path / "base", {"call=a": samples(rng, 1e6, 0.01, 6)})
    new = write_run(
        tmp_path / "new", {"call=a": samples(rng, 1e6, 0.01, 6)}, {"host": {**MACHINE["host"], "kernel": "7"}}
    )
    result = invoke(base, new)
    assert result.exit_code == ExitCode.USAGE and result.stdout == ""
    assert result.stderr == (
        "Error: the runs come from different machines (kernel 6 (base) vs 7 (new)): the comparison would "
        "measure the machine, not the code; compare runs from one machine or pass --cross-machine\n"
    )
    crossed = invoke(base, new, "--cross-machine")
    assert (
        crossed.exit_code == ExitCode.OK
        and "machines differ (--cross-machine): kernel 6 (base) vs 7 (new)" in crossed.stderr
    )


def test_output_names_the_runs_and_their_git_commits(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    git = {"git": {"describe": "v0.1-4-gabc1234-dirty", "commit": "abc1234" + "0" * 33}}
    base = write_run(tmp_path / "base", {"call=a": samples(rng, 1e6, 0.01, 6)}, git)
    new = write_run(tmp_path / "new", {"call=a": samples(rng, 1e6, 0.01, 6)})  # an older run: no "git"
    text = invoke(base, new).stdout
    assert f"base: run {base.name}, git v0.1-4-gabc1234-dirty\n" in text
    assert f"new:  run {new.name}, git unknown\n" in text
    markdown = invoke(base, new, "--format", "md").stdout
    assert f"- **Base**: `{base.name}`; git `v0.1-4-gabc1234-dirty`" in markdown
    assert f"- **New**: `{new.name}`; git unknown" in markdown
    data = json.loads(invoke(base, new, "--format", "json").stdout)
    assert data["base"] == {
        "runs": [base.name],
        "git": ["v0.1-4-gabc1234-dirty"],
        "commits": ["abc1234" + "0" * 33],
    }
    assert data["new"] == {"runs": [new.name], "git": [], "commits": []}


def test_json_reports_an_unmeasured_noise_floor_as_null(tmp_path: Path) -> None:
    base, new = _pair(tmp_path, 0.0)
    single = json.loads(invoke(next(base.iterdir()), new, "--format", "json").stdout)
    assert single["cases"][0]["noise_floor"] is None
    several = json.loads(invoke(base, new, "--format", "json").stdout)
    assert isinstance(several["cases"][0]["noise_floor"], float)
    assert (
        "Noise floor**: measured per case from the spread between runs (3 base, 1 new)"
        in invoke(base, new, "--format", "md").stdout
    )


def test_the_table_shows_varying_parameters_first_in_human_units_and_wraps(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    cases = {
        f"mode=read,file_size=4194304,bs={bs},cache=warm": samples(rng, 1e6, 0.01, 6) for bs in (4096, 65536)
    }
    base = write_run(tmp_path / "base", cases, experiment="rw-buffer")
    new = write_run(tmp_path / "new", cases, experiment="rw-buffer")
    for columns in (80, 60):
        text = invoke(base, new, columns=columns).stdout
        assert "bs=64KiB" in text and "bs=4KiB" in text and "file_size=4MiB" in text, text
        assert "65536" not in text and "4194304" not in text
        assert (
            max(
                len(line)
                for line in text.splitlines()
                if not line.startswith(("base:", "new:", "noise", "elapsed_ns:"))
            )
            <= columns
        )
        first = next(line for line in text.splitlines() if "bs=64KiB" in line)
        assert first.index("bs=64KiB") < first.index("mode=read") if "mode=read" in first else True
    markdown = invoke(base, new, "--format", "md").stdout
    assert "| unchanged | rw-buffer | bs=4KiB mode=read file_size=4MiB cache=warm |" in markdown


def test_compare_formats(tmp_path: Path) -> None:
    base, new = _pair(tmp_path, 0.25)
    markdown = invoke(base, new, "--format", "md").stdout
    assert markdown.startswith("### iobench compare: 1 slower, 0 missing, 0 faster, 0 unchanged, 0 too noisy")
    assert "| slower | syscall | call=a | +2" in markdown
    assert "- **Gate**: fails: 1 case(s) slower" in markdown
    data = json.loads(invoke(base, new, "--format", "json").stdout)
    assert data["counts"]["slower"] == 1 and data["cases"][0]["verdict"] == "slower"
    text = invoke(base, new, "--threshold", "50%")
    assert text.exit_code == ExitCode.OK and "0 slower" in text.stdout


def test_compare_input_errors_exit_2(tmp_path: Path) -> None:
    base, new = _pair(tmp_path, 0.0)
    for args, message in (
        ([tmp_path / "nope", new], "is neither an iobench run nor a folder of runs"),
        ([base, new, "--metric", "nope"], "metric 'nope' is not a column"),
        ([base, new, "--threshold", "x"], "--threshold: 'x' is not a percentage"),
    ):
        result = invoke(*args)
        assert (
            result.exit_code == ExitCode.USAGE and message in result.stderr and result.stderr.count("\n") == 1
        )
    schema = next(new.iterdir()) / "meta.json"
    meta = json.loads(schema.read_text())
    schema.write_text(json.dumps({**meta, "schema_version": 99}))
    with pytest.raises(ResultsError, match="schema version 99"):
        load_runs(new)


def test_a_noisy_run_compared_with_itself_is_unchanged(tmp_path: Path) -> None:
    """The old rule judged this "noisy" (the interval of a sample against itself is wide)."""
    rng = np.random.default_rng(12)
    for _ in range(3):
        write_run(
            tmp_path / "base", {"call=a": samples(rng, 1e6, 0.5, 6), "call=b": samples(rng, 1e3, 1.0, 5)}
        )
    for side in (tmp_path / "base", next((tmp_path / "base").iterdir())):
        data = json.loads(invoke(side, side, "--format", "json").stdout)
        assert [(c["verdict"], c["change"], c["ci_low"], c["ci_high"]) for c in data["cases"]] == [
            ("unchanged", 0.0, 0.0, 0.0)
        ] * 2


def test_a_real_run_compared_with_itself_is_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "run",
        "syscall",
        "--call",
        "getppid,python",
        "--calls",
        "20000",
        "--warmup",
        "0",
        "--min-reps",
        "6",
        "--max-reps",
        "6",
        "--dir",
        str(tmp_path),
        "--out",
        str(out),
        "-q",
    ]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (run,) = list(out.iterdir())
    result = invoke(run, run, "--format", "json", "--fail-on-noisy")
    assert result.exit_code == ExitCode.OK
    data = json.loads(result.stdout)
    assert data["counts"]["slower"] == 0 and data["counts"]["unchanged"] == 2
    assert all(c["change"] == 0 and c["ci_low"] == c["ci_high"] == 0 for c in data["cases"])
