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


# --- hostile numbers (issue 14): one clear UnitError, never OverflowError/ValueError ---------

HUGE_FRACTION = "9" * 400 + ".5"
HUGE_INT = "9" * 5000


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (units.parse_size, HUGE_FRACTION, "too large"),
        (units.parse_size, HUGE_INT, "too large"),
        (units.parse_size, str(2**63), "too large"),
        (units.parse_size, "9999999999999999999TiB", "too large"),
        (units.parse_size, "1." + "0" * 30 + "1", "digits after the point"),
        (units.parse_duration, HUGE_FRACTION, "too large"),
        (units.parse_duration, HUGE_INT, "too large"),
        (units.parse_duration, "9999999999999999h", "too long"),
        (units.parse_duration, 1e300, "too long"),
        (units.parse_percent, HUGE_FRACTION, "too large"),
        (units.parse_count, HUGE_INT, "too large"),
        (units.parse_count, 2**63, "too large"),
    ],
)
def test_numbers_too_large_are_refused_by_name(parse, text, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(units.UnitError, match=message) as info:
        parse(text)
    assert len(str(info.value)) < 120  # the value is shown by its start, not all 5,000 digits


def test_largest_values_still_parse() -> None:
    assert units.parse_size(str(units.LARGEST)) == units.LARGEST
    assert units.parse_count(str(-units.LARGEST)) == -units.LARGEST
    assert units.parse_duration(f"{units.LARGEST}ns") == units.LARGEST


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (units.parse_size, "1_024"),
        (units.parse_duration, "1_0s"),
        (units.parse_percent, "1_0"),
        (units.parse_count, "1_0"),
    ],
)
def test_underscores_are_refused_not_read_as_digit_groups(parse, text) -> None:  # type: ignore[no-untyped-def]
    # float("1_0") and int("1_0") are 10: a typo would silently become another number.
    with pytest.raises(units.UnitError, match="no underscores"):
        parse(text)


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (units.parse_size, "４KiB"),
        (units.parse_count, "\u0664"),
        (units.parse_percent, "５"),
        (units.parse_duration, "٣s"),
    ],
)
def test_only_ascii_digits(parse, text) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(units.UnitError, match="digits 0-9"):
        parse(text)


def test_greek_mu_and_micro_sign_are_both_microseconds() -> None:
    assert (
        units.parse_duration("5\u03bcs")
        == units.parse_duration("5\u00b5s")
        == units.parse_duration("5us")
        == 5000
    )


def test_decimal_sizes_and_durations_are_exact() -> None:
    # Through float, 0.3 s was 299999999 ns and 0.1 MiB-style fractions drifted.
    assert units.parse_duration("0.3s") == 300_000_000
    assert units.parse_duration(0.3) == 299_999_999  # a TOML float is binary already: exact value, floored
    assert units.parse_size("0.0009765625KiB") == 1
    assert units.parse_size("1.1MB") == 1_100_000


def test_parse_count() -> None:
    assert units.parse_count(" +5 ") == 5
    assert units.parse_count("-3") == -3
    assert units.parse_count(7) == 7
    for bad in ("", "2.0", "1e3", "0x10", "lots", True, 1.0, None, [1]):
        with pytest.raises(units.UnitError, match="not a whole number"):
            units.parse_count(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["inf", "nan", "1e2", "-5", "5%%"])
def test_parse_percent_rejects(text: str) -> None:
    with pytest.raises(units.UnitError):
        units.parse_percent(text)


def test_nonfinite_percent_and_duration_values_are_refused() -> None:
    for value in (float("inf"), float("nan"), -1.0):
        with pytest.raises(units.UnitError):
            units.parse_percent(value)
        with pytest.raises(units.UnitError):
            units.parse_duration(value)


def test_shown_keeps_messages_short_and_on_one_line() -> None:
    assert len(units.shown("9" * 5000)) <= 45
    assert "\n" not in units.shown("a\nb") and "\\x00" in units.shown("a\x00b")
    deep: list = []
    for _ in range(600):
        deep = [deep]
    assert len(units.shown(deep)) < 45
