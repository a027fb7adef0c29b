"""The four page-cache experiments' "what this shows" follows their numbers (issue 18): opposite
data give opposite sentences, a gap inside the noise is said to be one, a cause is named only
when its own counter shows it, and missing data give no claim."""

from __future__ import annotations

from typing import Any

from iobench.experiments import get_experiment
from tests.report_data import case_summary

MIB = 1 << 20
NAN = float("nan")


def says(name: str, cases: list[dict[str, Any]]) -> str:
    experiment = get_experiment(name)
    return " ".join(experiment.explain(case_summary(experiment, cases)))


def took(rate: float, moved: float = MIB) -> float:
    return moved / rate * 1e9


# ------------------------------------------------------------------ folio-layout


def _folios(small: float, large: float, p50_small: float = 1, p50_large: float = 256) -> list[dict[str, Any]]:
    return [
        {"layout": "written", "write_bs": 4096, "read_bs": MIB, "elapsed_ns": took(small), "folio_pages_p50": p50_small},
        {"layout": "written", "write_bs": MIB, "read_bs": MIB, "elapsed_ns": took(large), "folio_pages_p50": p50_large},
    ]  # fmt: skip


def test_folio_layout_small_writes_slower_gives_the_lesson() -> None:
    text = says("folio-layout", _folios(2e9, 6e9))
    assert "the file written in 4KiB writes (median page in a 1-page folio) read at 1.9 GiB/s" in text
    assert "the one written in 1MiB writes (median page in a 256-page folio) at 5.6 GiB/s" in text
    assert "small writes against large: 3.0x slower." in text
    assert "The lesson from this run: a file written by small writes keeps its small folios" in text
    assert "evicting" not in text  # no cold-readahead case measured


def test_folio_layout_opposite_data_opposite_sentence_and_no_lesson() -> None:
    text = says("folio-layout", _folios(6e9, 2e9))
    assert "small writes against large: 3.0x faster." in text
    assert "lesson" not in text


def test_folio_layout_noise_and_a_cause_not_shown() -> None:
    noise = says("folio-layout", _folios(5e9, 5.01e9))
    assert "small writes against large: no measurable difference" in noise and "lesson" not in noise
    # Slower, but the folio sizes did not differ: the layout is not named as the cause.
    same_folios = says("folio-layout", _folios(2e9, 6e9, p50_small=4, p50_large=4))
    assert "3.0x slower" in same_folios and "lesson" not in same_folios


def test_folio_layout_readahead_against_small_writes() -> None:
    evicted = {"layout": "cold-readahead", "write_bs": 4096, "read_bs": MIB, "folio_pages_p50": 128}
    faster = says("folio-layout", [*_folios(2e9, 6e9), evicted | {"elapsed_ns": took(5e9)}])
    assert "The file evicted and read back once as cat does (median page in a 128-page folio)" in faster
    assert "against leaving it as 4KiB writes made it, 2.5x faster." in faster
    assert "evicting the file and reading it back once (as cat does) gives it large folios again" in faster
    slower = says("folio-layout", [*_folios(2e9, 6e9), evicted | {"elapsed_ns": took(1e9)}])
    assert "2.0x slower." in slower and "evicting" not in slower


def test_folio_layout_unknown_histogram_is_said_and_never_used() -> None:
    unknown = {"folio_pages_p50": NAN, "folio_unknown_reason": "/proc/kpageflags: Permission denied"}
    cases = [case | unknown for case in _folios(2e9, 6e9)]
    text = says("folio-layout", cases)
    assert text.startswith("The folio sizes are unknown in this run: /proc/kpageflags: Permission denied.")
    assert "(folio size unknown)" in text and "3.0x slower" in text and "lesson" not in text


def test_folio_layout_one_write_size_gives_no_comparison() -> None:
    assert says("folio-layout", _folios(2e9, 6e9)[:1]) == ""


# ------------------------------------------------------------------ readahead


def _reads(
    plain: float, other: float, method: str = "fadvise-random", pattern: str = "sequential"
) -> list[dict]:
    return [
        {
            "pattern": pattern,
            "method": "plain",
            "elapsed_ns": took(plain),
            "dev_read_bytes": MIB,
            "dev_reads": 1,
        },
        {
            "pattern": pattern,
            "method": method,
            "elapsed_ns": took(other),
            "dev_read_bytes": MIB,
            "dev_reads": 256,
        },
    ]


def test_readahead_request_sizes_and_fadvise_random_follow_the_data() -> None:
    slow = says("readahead", _reads(1e9, 3e7))
    assert "Sequential cold reads, the disk's average request: plain 1 MiB per request" in slow
    assert "fadvise-random 4 KiB per request" in slow
    assert (
        "Sequential cold reads with posix_fadvise(RANDOM) (read-ahead off for the file): 28.6 MiB/s against "
        "953.7 MiB/s without, 33x slower." in slow
    )
    fast = says("readahead", _reads(3e7, 1e9))
    assert "33x faster." in fast
    noise = says("readahead", _reads(1e9, 1.001e9))
    assert "no measurable difference" in noise


def test_readahead_setting_ranking_and_missing_data() -> None:
    cases = [
        {
            "method": "plain",
            "read_ahead": "0",
            "elapsed_ns": took(3e7),
            "dev_read_bytes": MIB,
            "dev_reads": 256,
        },
        {
            "method": "plain",
            "read_ahead": "2MiB",
            "elapsed_ns": took(1e9),
            "dev_read_bytes": MIB,
            "dev_reads": 2,
        },
    ]
    text = says("readahead", cases)
    assert (
        "Sequential cold reads by read-ahead setting, fastest first: read_ahead_kb=2MiB (512 KiB requests)"
        in text
    )
    assert "then read_ahead_kb=0 (4 KiB requests)" in text and "33x slower than read_ahead_kb=2MiB" in text
    assert says("readahead", cases[:1]) == ""


# ------------------------------------------------------------------ dirty-throttle


def _throttle(before: float, after: float, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "bytes": 256 * MIB,
            "rate_before_cliff": [before * f for f in (0.98, 0.99, 1.0, 1.01, 1.02)],
            "rate_after_cliff": [after * f for f in (0.98, 0.99, 1.0, 1.01, 1.02)],
            "cliff_written_bytes": 96 * MIB,
            "dirty_threshold_bytes": 128 * MIB,
            "fsync_ns": 2e7,
            "elapsed_ns": 3e8,
        }
        | extra
    ]


def test_dirty_throttle_cliff_follows_the_data() -> None:
    slow = says("dirty-throttle", _throttle(2e9, 5e8))
    assert slow.startswith(
        "With the machine's thresholds (dirty threshold 128 MiB), writing 256 MiB: the throttle point came after "
        "96 MiB; the writer ran at 1.9 GiB/s before it and 476.8 MiB/s after (after against before: 4.0x slower)."
    )
    assert "The final fsync took 20 ms of the 300 ms." in slow
    assert "(after against before: 4.0x faster)" in says("dirty-throttle", _throttle(5e8, 2e9))
    assert "no measurable difference" in says("dirty-throttle", _throttle(1e9, 1.0001e9))


def test_dirty_throttle_without_a_cliff_says_why() -> None:
    text = says(
        "dirty-throttle",
        _throttle(NAN, NAN, cliff_written_bytes=NAN, peak_dirty_bytes=40 * MIB, size_capped_by="max_bytes"),
    )
    assert (
        "dirty memory never reached the throttle point (peak dirty + write-back 40 MiB), so no cliff shows "
        in text
    )
    assert "(the file was capped by max_bytes)." in text
    assert "faster" not in text and "slower" not in text


# ------------------------------------------------------------------ huge-pages


def _faults(
    never: float, madvise: float, t_never: float = 4e6, t_madvise: float = 5e5
) -> list[dict[str, Any]]:
    return [
        {"memory": "anon", "thp": "never", "faults": never, "elapsed_ns": t_never, "huge_mapped_bytes": 0},
        {
            "memory": "anon",
            "thp": "madvise",
            "faults": madvise,
            "elapsed_ns": t_madvise,
            "huge_mapped_bytes": MIB,
        },
    ]


def test_huge_pages_faults_follow_the_data() -> None:
    fewer = says("huge-pages", _faults(256, 0.5))
    assert fewer.startswith(
        "anon: thp=never 256 faults per MiB (0% mapped huge); thp=madvise 0.5 faults per MiB (100% mapped huge)"
    )
    assert "(one fault per 4 KiB page would be 256 per MiB, one per 2 MiB huge page 0.5)" in fewer
    assert "thp=madvise against never: 512x fewer faults and 8.0x faster per MiB." in fewer
    more = says("huge-pages", _faults(0.5, 256, 5e5, 4e6))
    assert "512x more faults and 8.0x slower per MiB" in more
    same = says("huge-pages", _faults(256, 256.01, 4e6, 4.001e6))
    assert "no measurable difference" in same


def test_huge_pages_missing_data_gives_no_claim() -> None:
    assert says("huge-pages", [{"memory": "anon", "thp": "never", "faults": NAN}]) == ""
