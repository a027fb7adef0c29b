"""Regression verdicts on synthetic result sets with known shifts, and through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from iobench.cli import cli
from iobench.compare import CompareError, compare, hodges_lehmann, judge, noise_floor
from iobench.errors import ExitCode, ResultsError
from iobench.results import COMMON_COLUMNS, RunStore, load_run, load_runs


def samples(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, sigma, n))


def write_run(folder: Path, cases: dict[str, np.ndarray], host: dict | None = None) -> Path:
    """A run folder holding the given elapsed_ns samples per case."""
    writer = RunStore.create(
        folder, {"host": host or {"cpu_model": "X", "kernel": "6"}, "target": {"fs_type": "ext4"}}
    )
    for case, values in cases.items():
        rows = []
        for rep, value in enumerate(values, start=1):
            row = {c: 0 for c in COMMON_COLUMNS if c != "run_id"}
            row.update(
                experiment="syscall",
                case=case,
                rep=rep,
                status="ok",
                status_reason="",
                engine="python",
                target_fs="ext4",
                elapsed_ns=float(value),
                bytes=1000,
                **dict(part.split("=", 1) for part in case.split(",")),
            )
            rows.append(row)
        writer.commit(rows, {"experiment": "syscall", "case": case, "status": "ok"})
    writer.finish("complete")
    return writer.path


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
    assert judge(base, new, 0.05)[3] == verdict


def test_identical_code_is_rarely_significant_and_never_a_regression() -> None:
    rng = np.random.default_rng(11)
    verdicts = [judge(samples(rng, 1e6, 0.03, 10), samples(rng, 1e6, 0.03, 10), 0.05)[3] for _ in range(200)]
    assert verdicts.count("slower") == 0


def test_twenty_percent_is_caught_almost_always() -> None:
    rng = np.random.default_rng(13)
    verdicts = [
        judge(samples(rng, 1e6, 0.03, 10), samples(rng, 1.2e6, 0.03, 10), 0.05)[3] for _ in range(200)
    ]
    assert verdicts.count("slower") >= 195


def test_throughput_is_higher_is_better() -> None:
    rng = np.random.default_rng(3)
    base, new = samples(rng, 100.0, 0.01, 10), samples(rng, 80.0, 0.01, 10)
    assert judge(base, new, 0.05, higher_is_better=True)[3] == "slower"


def test_noise_floor_is_a_prediction_interval() -> None:
    assert noise_floor([100.0]) == 0.0
    assert noise_floor([100.0, 100.0, 100.0]) == 0.0
    wide, narrow = noise_floor([100.0, 110.0, 95.0]), noise_floor([100.0, 101.0, 99.5, 100.5, 100.2])
    assert wide > 0.2 and narrow < 0.05


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
    assert any("noise floor is not measured" in w for w in single.warnings)
    result = compare(load_runs(tmp_path / "base"), load_run(new))
    assert result.cases[0].verdict == "unchanged" and result.cases[0].noise_floor > 0.1


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


def test_nothing_in_common_cannot_be_compared(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = write_run(tmp_path / "a", {"call=a": samples(rng, 1.0, 0.01, 5)})
    b = write_run(tmp_path / "b", {"call=b": samples(rng, 1.0, 0.01, 5)})
    with pytest.raises(CompareError, match="no case in common"):
        compare(load_run(a), load_run(b))
    with pytest.raises(CompareError, match="metric 'nope'"):
        compare(load_run(a), load_run(a), metric="nope")


def test_host_differences_are_warned(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    a = write_run(
        tmp_path / "a", {"call=a": samples(rng, 1.0, 0.01, 5)}, {"cpu_model": "EPYC", "kernel": "6.18"}
    )
    b = write_run(
        tmp_path / "b", {"call=a": samples(rng, 1.0, 0.01, 5)}, {"cpu_model": "Xeon", "kernel": "6.18"}
    )
    warnings = compare(load_run(a), load_run(b)).warnings
    assert any(w.startswith("CPU differs: EPYC (base) vs Xeon (new)") for w in warnings)


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
    result = CliRunner().invoke(cli, ["compare", str(base), str(new)])
    assert result.exit_code == code, result.output


def test_compare_formats(tmp_path: Path) -> None:
    base, new = _pair(tmp_path, 0.25)
    runner = CliRunner()
    markdown = runner.invoke(cli, ["compare", str(base), str(new), "--format", "md"]).stdout
    assert markdown.startswith("### iobench compare: 1 slower, 0 faster, 0 unchanged, 0 too noisy")
    assert "| slower | syscall | call=a | +2" in markdown
    data = json.loads(runner.invoke(cli, ["compare", str(base), str(new), "--format", "json"]).stdout)
    assert data["counts"]["slower"] == 1 and data["cases"][0]["verdict"] == "slower"
    text = runner.invoke(cli, ["compare", str(base), str(new), "--threshold", "50%"])
    assert text.exit_code == ExitCode.OK and "0 slower" in text.stdout


def test_compare_input_errors_exit_2(tmp_path: Path) -> None:
    base, new = _pair(tmp_path, 0.0)
    runner = CliRunner()
    for args, message in (
        (["compare", str(tmp_path / "nope"), str(new)], "is neither an iobench run nor a folder of runs"),
        (["compare", str(base), str(new), "--metric", "nope"], "metric 'nope' is not a column"),
        (["compare", str(base), str(new), "--threshold", "x"], "--threshold: 'x' is not a percentage"),
    ):
        result = runner.invoke(cli, args)
        assert (
            result.exit_code == ExitCode.USAGE and message in result.stderr and result.stderr.count("\n") == 1
        )
    schema = next(new.iterdir()) / "meta.json"
    meta = json.loads(schema.read_text())
    schema.write_text(json.dumps({**meta, "schema_version": 99}))
    with pytest.raises(ResultsError, match="schema version 99"):
        load_runs(new)


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
    result = CliRunner().invoke(cli, ["compare", str(run), str(run), "--format", "json"])
    assert result.exit_code == ExitCode.OK
    data = json.loads(result.stdout)
    assert data["counts"]["slower"] == 0 and data["counts"]["unchanged"] == 2
    assert all(c["change"] == 0 for c in data["cases"])
