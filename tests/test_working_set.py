"""Rows say what one repetition touches and whether that fits the last-level cache; the book
tables show it. A warm pass over a set that fits measures the CPU cache, not DRAM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iobench import hostinfo
from iobench.engine.protocol import Protocol
from iobench.engine.runner import run_case
from iobench.experiments import get_experiment
from iobench.report.tables import FITS_LLC_TITLE, book_table, table_legend

KIB = 1024
ONE = Protocol(warmup=0, min_reps=1, max_reps=1, engine="python")


def _rows(tmp_path: Path, name: str, **case: Any) -> list[dict[str, Any]]:
    experiment = get_experiment(name)
    full = {p.name: (p.default[0] if p.sweep else p.default) for p in experiment.params} | case
    result = run_case(experiment, full, ONE, tmp_path)
    if result.summary["status"] == "unsupported":
        pytest.skip(result.summary["reason"])
    assert result.summary["status"] == "ok", result.summary
    return result.rows


@pytest.mark.parametrize(
    ("name", "case", "touched"),
    [
        ("page-cache", {"file_size": 64 * KIB, "bs": 4 * KIB, "cache": "warm"}, 64 * KIB + 4 * KIB + 16 * 8),
        (
            "mmap-read",
            {"method": "readinto", "file_size": 64 * KIB, "bs": 4 * KIB, "cache": "warm"},
            68 * KIB,
        ),
        ("direct-io", {"io": "buffered", "file_size": 64 * KIB, "bs": 4 * KIB}, 68 * KIB),
        ("zero-copy", {"method": "sendfile", "file_size": 64 * KIB, "bs": 4 * KIB}, 2 * 64 * KIB + 4 * KIB),
    ],
)
def test_file_experiments_record_their_working_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, case: dict[str, Any], touched: int
) -> None:
    monkeypatch.setattr(hostinfo, "_llc_bytes", lambda cpu: 100 * KIB)
    (row,) = _rows(tmp_path, name, **case)
    assert row["working_set_bytes"] == touched
    assert row["fits_llc"] is (touched <= 100 * KIB)


@pytest.mark.parametrize(
    ("name", "case"),
    [
        ("mmap-read", {"method": "mmap-touch", "file_size": 64 * KIB, "cache": "warm"}),  # one byte a page
        ("direct-io", {"io": "direct", "file_size": 64 * KIB, "bs": 4 * KIB}),  # skips the page cache
    ],
)
def test_cases_that_do_not_pass_over_cached_pages_record_none(
    tmp_path: Path, name: str, case: dict[str, Any]
) -> None:
    (row,) = _rows(tmp_path, name, **case)
    assert "working_set_bytes" not in row and "fits_llc" not in row


def _record(bs: int, **extra: Any) -> dict[str, Any]:
    return {
        "experiment": "rw-buffer",
        "case": f"mode=read,file_size=1048576,bs={bs},cache=warm",
        "mode": "read",
        "file_size": 1 << 20,
        "bs": bs,
        "cache": "warm",
        "reps": 8,
        "elapsed_ns": 1e6,
        **extra,
    }


def test_the_book_table_says_which_cases_fit_the_llc() -> None:
    experiment = get_experiment("rw-buffer")
    records = [
        _record(4096, fits_llc=True, working_set_bytes=(1 << 20) + 4096),
        _record(65536, fits_llc=False, working_set_bytes=(1 << 20) + 65536),
    ]
    ((_, table),) = book_table(records, experiment)
    cells = table[FITS_LLC_TITLE]
    assert [cell.text for cell in cells] == ["yes", "no"]
    assert cells[0].detail == "working set 1.004 MiB"
    assert any(line.startswith(f"{FITS_LLC_TITLE}: whether") for line in table_legend(records, experiment))


def test_tables_without_the_fact_have_no_such_column_or_note() -> None:
    experiment = get_experiment("rw-buffer")
    records = [_record(4096), _record(65536)]
    ((_, table),) = book_table(records, experiment)
    assert FITS_LLC_TITLE not in table.columns
    assert not any(line.startswith(FITS_LLC_TITLE) for line in table_legend(records, experiment))
