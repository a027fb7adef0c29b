"""What a finished case adds to the run's warnings (iobench.engine.checks.case_warnings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from iobench.cli import cli
from iobench.engine.checks import case_warnings, is_false
from tests.helpers import ONE_REP

OK = {"experiment": "rw-buffer", "case": "mode=write,bs=4096", "status": "ok", "cache": "warm"}


def row(**values: object) -> dict[str, object]:
    return {"status": "ok", **values}


def test_a_clean_case_warns_nothing() -> None:
    rows = [row(integrity_ok=True, cache_verified=True, direct_verified=True), row(integrity_ok=None)]
    assert case_warnings(OK, rows) == []


def test_failed_and_unsupported_cases_say_why() -> None:
    failed = {**OK, "status": "failed", "reason": "ENOSPC"}
    assert case_warnings(failed, [{"status": "failed"}]) == ["mode=write,bs=4096 (rw-buffer) failed: ENOSPC"]
    unsupported = {**OK, "status": "unsupported", "reason": "no O_DIRECT"}
    assert case_warnings(unsupported, []) == ["mode=write,bs=4096 (rw-buffer) unsupported: no O_DIRECT"]


def test_failed_data_checks_are_counted() -> None:
    rows = [row(integrity_ok=True), row(integrity_ok=False), row(integrity_ok=np.bool_(False))]
    assert case_warnings(OK, rows) == [
        "rw-buffer mode=write,bs=4096: its own data check failed (integrity_ok=False) in 2 of 3 "
        "repetition(s); those repetitions did not do what the case says"
    ]


def test_cache_not_achieved_names_the_worst_residency() -> None:
    rows = [row(cache_verified=False, resident_before=0.5), row(cache_verified="False", resident_before=1.0)]
    assert case_warnings(OK, rows) == [
        "rw-buffer mode=write,bs=4096: cache=warm was not achieved in 2 repetition(s) "
        "(up to 100% of the file resident before timing)"
    ]


def test_unverified_direct_io_carries_the_rows_note() -> None:
    note = "O_DIRECT not honoured on tmpfs: ...; this is a page-cache number, not a direct-IO number"
    rows = [row(direct_verified=False, direct_note=note), row(direct_verified=True, direct_note="")]
    assert case_warnings({**OK, "experiment": "direct-io"}, rows) == [
        f"direct-io mode=write,bs=4096: O_DIRECT was not verified in 1 of 2 repetition(s) ({note})"
    ]
    assert case_warnings(OK, [row(direct_verified=False)]) == [
        "rw-buffer mode=write,bs=4096: O_DIRECT was not verified in 1 of 1 repetition(s); "
        "its numbers are not direct-IO numbers"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(False, True), (np.bool_(False), True), ("False", True), (" false ", True), (True, False), (None, False),
     (0, False), (0.0, False), (float("nan"), False), ("", False)],
)  # fmt: skip
def test_only_an_explicit_false_is_false(value: object, expected: bool) -> None:
    assert is_false(value) is expected


def test_a_run_counts_a_failed_data_check_in_its_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: a repetition whose own check fails is a warning in meta.json."""
    from iobench.experiments.rw_buffer import RwBuffer

    monkeypatch.setattr(RwBuffer, "_integrity_ok", lambda self: False)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["run", "rw-buffer", "--mode", "write", "--bs", "4096", "--file-size", "64KiB", "--dir", str(tmp_path),
         "--out", str(out), "-q", *ONE_REP],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run_dir,) = list(out.iterdir())
    warnings = json.loads((run_dir / "meta.json").read_text())["warnings"]
    assert [w for w in warnings if "data check failed" in w] == [
        "rw-buffer mode=write,file_size=65536,bs=4096,cache=warm: its own data check failed (integrity_ok=False) in "
        "1 of 1 repetition(s); those repetitions did not do what the case says"
    ]
