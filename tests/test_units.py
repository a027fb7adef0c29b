from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iobench import units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
        ("1", 1),
        ("0", 0),
        ("4k", 4096),
        ("4K", 4096),
        ("4KiB", 4096),
        ("4kib", 4096),
        ("1M", 1 << 20),
        ("16MiB", 16 << 20),
        ("1.5GiB", 3 << 29),
        ("100MB", 100_000_000),
        ("2kB", 2000),
        ("64B", 64),
        (" 8 KiB ", 8192),
        (512, 512),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert units.parse_size(text) == expected


@pytest.mark.parametrize("text", ["4Q", "", "KiB", "-1", "1.5", "abc", "1e6", "0.3KiB", "4 K i B"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(units.UnitError):
        units.parse_size(text)


def test_parse_size_rejects_non_strings() -> None:
    for value in (True, 1.5, -3, None, [1]):
        with pytest.raises(units.UnitError):
            units.parse_size(value)  # type: ignore[arg-type]


def test_parse_size_negative_message_is_clear() -> None:
    with pytest.raises(units.UnitError, match="negative"):
        units.parse_size("-1")


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("250ms", 250_000_000),
        ("10s", 10**10),
        ("1.5s", 1_500_000_000),
        ("2m", 120 * 10**9),
        ("500us", 500_000),
        ("7", 7 * 10**9),
        (3, 3 * 10**9),
        ("100ns", 100),
    ],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert units.parse_duration(text) == ns


@pytest.mark.parametrize("text", ["10x", "", "-1s", "fast"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(units.UnitError):
        units.parse_duration(text)


def test_parse_percent() -> None:
    assert units.parse_percent("5%") == 5.0
    assert units.parse_percent("2.5") == 2.5
    assert units.parse_percent(10) == 10.0
    with pytest.raises(units.UnitError):
        units.parse_percent("five")
    with pytest.raises(units.UnitError):
        units.parse_percent("-1%")


def test_formatting() -> None:
    assert units.format_size(4096) == "4 KiB"
    assert units.format_size(1536) == "1.5 KiB"
    assert units.format_size(1) == "1 B"
    assert units.format_size(100_000_000) == "95.37 MiB"
    assert units.format_rate(812.5 * (1 << 20)) == "812.5 MiB/s"
    assert units.format_duration(320) == "320 ns"
    assert units.format_duration(12_500) == "12.5 µs"
    assert units.format_duration(1_420_000_000) == "1.42 s"
    assert units.format_duration(125e9) == "2 min 5 s"
    assert units.format_size(float("nan")) == "-"


def test_exact_size_labels() -> None:
    assert units.format_size_exact(4096) == "4KiB"
    assert units.format_size_exact(1_000_000) == "1MB"
    assert units.format_size_exact(100 * 2**20) == "100MiB"
    assert units.format_size_exact(1) == "1B"
    assert units.format_size_exact(1_000_001) == "1000001B"
    assert units.format_size_exact(0) == "0B"


@settings(deadline=None)  # correctness, not speed: a loaded machine must not fail it
@given(st.integers(min_value=0, max_value=1 << 50))
def test_exact_size_labels_round_trip(num_bytes: int) -> None:
    assert units.parse_size(units.format_size_exact(num_bytes)) == num_bytes


@settings(deadline=None)  # correctness, not speed: a loaded machine must not fail it
@given(st.integers(min_value=0, max_value=1 << 50))
def test_size_round_trips_through_binary_format(num_bytes: int) -> None:
    # Exact for whole units; the formatter keeps 4 significant digits otherwise.
    text = units.format_size(num_bytes).replace(" ", "")
    parsed = units.parse_size(text) if "." not in text else None
    if parsed is not None:
        assert parsed == num_bytes or num_bytes >= 10_000
    assert units.parse_size(str(num_bytes)) == num_bytes


@settings(deadline=None)  # correctness, not speed: a loaded machine must not fail it
@given(st.text(max_size=20))
def test_parse_size_never_raises_anything_but_unit_error(text: str) -> None:
    try:
        value = units.parse_size(text)
    except units.UnitError:
        return
    assert isinstance(value, int) and value >= 0
