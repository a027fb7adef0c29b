"""Every experiment's "what this shows" follows its numbers: the direction of each claim comes
from the data, a gap inside the noise is said to be one, a published number is a labelled
citation, and missing data gives no claim (and no crash).

Synthetic summaries are made the way real ones are: repetition rows (case ids from
``iobench.params.case_id``) through results.csv and ``iobench.metrics.summarize``, five
repetitions a case so that a real gap is significant.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from iobench import explain as ex
from iobench.experiments import all_experiments, get_experiment
from iobench.metrics import summarize
from tests.report_data import case_rows, case_summary

MIB = 1 << 20


def says(name: str, cases: list[dict[str, Any]], **options: Any) -> str:
    """The explanation of ``cases`` of experiment ``name``, as one string."""
    experiment = get_experiment(name)
    return " ".join(experiment.explain(case_summary(experiment, cases, **options)))


def took(rate: float, moved: float = MIB) -> float:
    """elapsed_ns that gives ``rate`` bytes/s for ``moved`` bytes."""
    return moved / rate * 1e9


# ------------------------------------------------------------------ helpers in iobench.explain


def test_rank_puts_unmeasurable_gaps_in_one_tier_and_orders_by_the_data() -> None:
    from iobench.experiments.mmap_read import MmapRead

    def summary(read_rate: float) -> pd.DataFrame:
        return case_summary(
            MmapRead,
            [
                {"method": "readinto", "elapsed_ns": took(8e9), "bytes": MIB},
                {"method": "mmap-copy", "elapsed_ns": took(8.05e9), "bytes": MIB},
                {"method": "read", "elapsed_ns": took(read_rate), "bytes": MIB},
            ],
        )

    cases = [(m, {"method": m}) for m in ("readinto", "mmap-copy", "read")]
    slow = ex.rank(summary(4e9), "bytes_per_s", cases)
    assert slow is not None and slow.decided
    assert [[r.label for r in tier] for tier in slow.tiers] == [["mmap-copy", "readinto"], ["read"]]
    fast = ex.rank(summary(16e9), "bytes_per_s", cases)
    assert fast is not None
    assert [[r.label for r in tier] for tier in fast.tiers] == [["read"], ["mmap-copy", "readinto"]]
    sentence = ex.ranking_sentence(slow, str)
    assert sentence.startswith("fastest first: mmap-copy") and "(no measurable difference)" in sentence
    assert "then read" in sentence and "2.0x slower than mmap-copy" in sentence


def test_tested_plateau_needs_a_measurable_gain_and_enough_repetitions() -> None:
    from iobench.experiments.rw_buffer import RwBuffer

    def sweep(rates: dict[int, float], reps: int = 5) -> pd.DataFrame:
        cases = [
            {"mode": "read", "cache": "warm", "bs": bs, "elapsed_ns": took(r)} for bs, r in rates.items()
        ]
        return case_summary(RwBuffer, cases, reps=reps)

    steep = ex.tested_plateau(sweep({1: 1e6, 16: 1e7, 256: 1e8}), "bs", mode="read")
    assert steep is not None and steep.decided and steep.stop is None
    flat = ex.tested_plateau(sweep({1: 1e6, 16: 1e7, 256: 1.02e7}), "bs", mode="read")
    assert flat is not None and flat.decided and flat.stop == 16
    few = ex.tested_plateau(sweep({1: 1e6, 16: 1e7}, reps=3), "bs", mode="read")
    assert few is not None and not few.decided


def test_samples_never_use_one_repetitions_tick_sampled_split() -> None:
    from iobench.experiments.syscall import Syscall

    summary = case_summary(Syscall, [{"call": "getppid", "user_ns": 1e5, "sys_ns": 9e5}])
    assert ex.samples(summary, "user_ns", call="getppid") is None  # tick noise per repetition
    assert ex.system_share(summary, call="getppid") is None  # 5 ms of CPU: far below 50 ticks
    assert "below the tick resolution" in (ex.cpu_split_text(summary, call="getppid") or "")


def test_against_reference_reads_the_interval() -> None:
    from iobench.stats import Difference

    assert ex.against_reference(Difference(12, 11, 13, 5, 5), 34) == "below"
    assert ex.against_reference(Difference(40, 36, 44, 5, 5), 34) == "above"
    assert ex.against_reference(Difference(33, 20, 50, 5, 5), 34) == "consistent with"
    assert ex.against_reference(Difference(12, 0.0, float("inf"), 3, 3), 34) is None


# ------------------------------------------------------------------ sync-write


def _sync(buffered: float, o_sync: float, bs: int = 4096, **more: float) -> list[dict[str, Any]]:
    cases = [
        {"mode": "buffered", "bs": bs, "elapsed_ns": buffered},
        {"mode": "O_SYNC", "bs": bs, "elapsed_ns": o_sync},
    ]
    return cases + [{"mode": mode, "bs": bs, "elapsed_ns": ns} for mode, ns in more.items()]


def test_sync_write_quotes_tlpi_13_3_right_and_compares_like_with_like() -> None:
    slow = says("sync-write", _sync(1e7, 1.2e8))
    assert "12x slower at bs=4KiB" in slow
    assert (
        "TLPI §13.3, Table 13-3 (Kerrisk 2010): writing 1 million bytes in 4096-byte writes took 0.01 s "
        "without O_SYNC and 0.34 s with it (about 34x" in slow
    )
    assert "with the disk's write cache disabled, the O_SYNC run took about 4 s" in slow
    assert "0.34 s buffered" not in slow and "about 12x" not in slow  # the old misquote
    assert "below the book's 34x for a disk whose write cache is on" in slow
    assert "above the book's 34x" in says("sync-write", _sync(1e7, 1e9))


def test_sync_write_directions_come_from_the_data() -> None:
    faster = says(
        "sync-write", _sync(2e7, 1e7, **{"fsync-each": 1e8, "fdatasync-each": 1.5e8, "fsync-end": 2e8})
    )
    assert "O_SYNC against plain buffered writes of the same bytes: 2.0x faster at bs=4KiB" in faster
    assert "fdatasync after every write against fsync after every write at bs=4KiB: 1.5x slower." in faster
    assert "may skip flushing metadata" not in faster
    assert "One fsync at the end instead of one after every write at bs=4KiB: 2.0x slower." in faster
    slower = says(
        "sync-write", _sync(1e7, 1e8, **{"fsync-each": 2e8, "fdatasync-each": 1e8, "fsync-end": 2e7})
    )
    assert (
        "fsync after every write at bs=4KiB: 2.0x faster (fdatasync(2) may skip flushing metadata" in slower
    )
    assert "One fsync at the end instead of one after every write at bs=4KiB: 10x faster." in slower


def test_sync_write_noise_and_missing_data() -> None:
    noise = says("sync-write", _sync(1e7, 1.01e7), spread=0.05)
    assert (
        "O_SYNC against plain buffered writes of the same bytes: no measurable difference (within ±" in noise
    )
    assert "below the book's 34x" in noise  # about 1x, with its interval, is still far below 34x
    assert says("sync-write", [{"mode": "buffered", "bs": 4096}]) == ""
    few = says("sync-write", _sync(1e7, 1.2e8), reps=3)
    assert "too few repetitions to tell (3 and 3" in few and "cannot be set against the book" in few


# ------------------------------------------------------------------ rw-buffer


def _rw(
    rates: dict[int, float], cache: str = "warm", split: bool = True, mode: str = "read"
) -> list[dict[str, Any]]:
    cases = []
    for bs, rate in rates.items():
        elapsed = took(rate)
        case = {"mode": mode, "cache": cache, "bs": bs, "elapsed_ns": elapsed, "ops": MIB // bs + 1}
        if split:  # 60x the elapsed time over five repetitions: enough scheduler ticks
            case |= {"user_ns": elapsed * 15, "sys_ns": elapsed * 45}
        cases.append(case)
    return cases


def test_rw_buffer_smallest_against_largest_and_the_calls_verdict() -> None:
    steep = says("rw-buffer", _rw({1: 1e6, 4096: 2e9, 65536: 8e9}))
    assert "bs=64KiB against bs=1B: 8,000x faster" in steep
    assert (
        "at least 99% of its time is per-call cost, so most of the cost is the calls, not the bytes" in steep
    )
    assert "the kernel took 75% of its CPU time" in steep
    upside_down = says("rw-buffer", _rw({1: 8e9, 65536: 1e9}))
    assert "bs=64KiB against bs=1B: 8.0x slower" in upside_down
    assert "the cost is the calls" not in upside_down and "was still faster" in upside_down


def test_rw_buffer_cold_against_warm_says_faster_when_it_is() -> None:
    slower = says("rw-buffer", _rw({4096: 2e9, 65536: 8e9}) + _rw({4096: 1e9, 65536: 2e9}, cache="cold"))
    assert "At bs=64KiB, a cold-cache read against a warm one: 4.0x slower." in slower
    faster = says("rw-buffer", _rw({4096: 2e9, 65536: 4e9}) + _rw({4096: 1e9, 65536: 8e9}, cache="cold"))
    assert "a cold-cache read against a warm one: 2.0x faster." in faster
    assert "0.5x slower" not in faster  # the old wording of a faster case


def test_rw_buffer_noise_split_below_resolution_and_missing_data() -> None:
    noise = says("rw-buffer", _rw({4096: 2e9, 65536: 2.02e9}, split=False), spread=0.05)
    assert "bs=64KiB against bs=4KiB: no measurable difference (within ±" in noise
    assert "per-call cost did not show" in noise and "the cost is the calls" not in noise
    assert "This run agrees: bs=64KiB against 4KiB, no measurable difference" in noise
    assert "user/system CPU split is below the tick resolution" in noise
    assert says("rw-buffer", _rw({4096: 2e9})) == ""


# ------------------------------------------------------------------ page-cache


def _pc(
    cold: float, warm: float, rand: float | None = None, advised: float | None = None, disk: int = 16 * MIB
):
    per = {"ops": 4096, "bytes": 16 * MIB}
    cases = [
        {"pattern": "sequential", "cache": "cold", "elapsed_ns": cold * 4096, "disk_read_bytes": disk} | per,
        {"pattern": "sequential", "cache": "warm", "elapsed_ns": warm * 4096, "disk_read_bytes": 0} | per,
    ]
    if rand is not None:
        cases.append(
            {"pattern": "random", "cache": "cold", "elapsed_ns": rand * 4096, "disk_read_bytes": disk} | per
        )
    if advised is not None:
        cases.append(
            {"pattern": "sequential", "cache": "cold", "advice": "random", "elapsed_ns": advised * 4096} | per
        )
    return cases


def test_page_cache_directions_and_the_cause_named_only_with_disk_bytes() -> None:
    disk = says("page-cache", _pc(2000, 500, rand=50000, advised=20000))
    assert "cold against warm: 4.0x slower" in disk and "the page cache is the difference" in disk
    assert "in file order, 25x slower: read-ahead serves a reader" in disk
    assert "POSIX_FADV_RANDOM disables file read-ahead" in disk and "2 µs without: 10.0x slower" in disk
    opposite = says("page-cache", _pc(500, 2000, rand=250, advised=250))
    assert "cold against warm: 4.0x faster" in opposite and "the page cache is the difference" not in opposite
    assert "in file order, 2.0x faster" in opposite and "read-ahead serves" not in opposite
    assert "500 ns without: 2.0x faster" in opposite


def test_page_cache_noise_ram_backed_and_missing_data() -> None:
    ram = says("page-cache", _pc(500, 505, disk=0), spread=0.05)
    assert "cold against warm: no measurable difference (within ±" in ram
    assert "read nothing from the block layer" in ram and "the page cache is the difference" not in ram
    assert says("page-cache", [{"pattern": "sequential", "cache": "cold"}]) == ""


# ------------------------------------------------------------------ direct-io


def _dio(rates: dict[int, tuple[float, float]], mode: str = "read", **direct_metrics: Any):
    cases = []
    for bs, (direct, buffered) in rates.items():
        moved = 8 * MIB
        cases.append(
            {"mode": mode, "io": "direct", "bs": bs, "elapsed_ns": took(direct, moved), "bytes": moved}
            | direct_metrics
        )
        cases.append(
            {"mode": mode, "io": "buffered", "bs": bs, "elapsed_ns": took(buffered, moved), "bytes": moved}
        )
    return cases


def test_direct_io_trend_is_said_only_when_the_data_shows_it() -> None:
    catches_up = says(
        "direct-io", _dio({4096: (1e8, 1e9), 65536: (6.4e9, 6.5e9), 1 << 20: (2e9, 1e9)}), spread=0.03
    )
    assert "at bs=4KiB, 10x slower" in catches_up and "at bs=1MiB, 2.0x faster" in catches_up
    assert "slower below bs=64KiB and not measurably slower from there on" in catches_up
    ahead = says("direct-io", _dio({4096: (2e9, 1e9), 65536: (4e9, 2e9)}))
    assert "at bs=4KiB, 2.0x faster" in ahead and "never measurably slower" in ahead
    assert "catches up" not in ahead and "slower below" not in ahead


def test_direct_io_noise_cache_not_bypassed_and_missing_data() -> None:
    noise = says("direct-io", _dio({65536: (6.4e9, 6.5e9)}), spread=0.05)
    assert "at bs=64KiB, no measurable difference (within ±" in noise
    assert "only catches up with large blocks" not in noise  # the old fixed sentence
    cached = says("direct-io", _dio({65536: (6.4e9, 6.5e9)}, resident_after=1.0))
    assert "not bypassed for O_DIRECT read bs=64KiB (100% cached after)" in cached
    assert "not bypassed" not in says("direct-io", _dio({65536: (1e9, 2e9)}, resident_after=0.0))
    assert says("direct-io", [{"mode": "read", "io": "buffered"}]) == ""


# ------------------------------------------------------------------ mmap-read


def _mm(rates: dict[str, float], cache: str = "warm", page: int = 4096, **touch: Any) -> list[dict[str, Any]]:
    size = 16 * MIB
    cases = []
    for method, rate in rates.items():
        case = {
            "method": method,
            "cache": cache,
            "elapsed_ns": took(rate, size),
            "bytes": size,
            "page_size": page,
        }
        if method == "mmap-touch":
            case |= {"ops": size // page, "pages_touched": size // page} | touch
        cases.append(case)
    return cases


def test_mmap_read_ranks_only_the_copying_methods_in_the_data_order() -> None:
    warm = says("mmap-read", _mm({"mmap-touch": 70e9, "mmap-copy": 8e9, "read": 4e9, "readinto": 8.05e9}))
    assert "fastest first: readinto" in warm and "(no measurable difference), then read" in warm
    assert "mmap-touch touched 17,089,844 pages/s (4 KiB pages)" in warm
    assert "not ranked against the methods that copy" in warm
    ranked = warm.split("fastest first:")[1].split(".")[0]
    assert "mmap-touch" not in ranked  # one byte per page is not bytes/s
    flipped = says("mmap-read", _mm({"mmap-copy": 2e9, "read": 8e9, "readinto": 4e9}))
    assert "fastest first: read 7.5 GiB/s, then readinto" in flipped


def test_mmap_read_faults_use_the_page_size_in_force() -> None:
    touch = {"minflt": 200, "majflt": 30}
    small = says("mmap-read", _mm({"mmap-touch": 2e9}, cache="cold", **touch))
    assert "where one fault per 4 KiB page would be 256" in small and "about 18 pages per fault" in small
    big_pages = says("mmap-read", _mm({"mmap-touch": 2e9}, cache="cold", page=16384, **touch))
    assert "where one fault per 16 KiB page would be 64" in big_pages and "(16 KiB pages)" in big_pages
    each = says("mmap-read", _mm({"mmap-touch": 2e9}, cache="cold", minflt=4096, majflt=0))
    assert "about one fault per page" in each and "pages per fault" not in each


def test_mmap_read_noise_and_missing_data() -> None:
    noise = says("mmap-read", _mm({"read": 4e9, "readinto": 4.04e9}), spread=0.05)
    assert "no measurable difference between read" in noise and "fastest first" not in noise
    assert says("mmap-read", _mm({"read": 4e9})) == ""


# ------------------------------------------------------------------ stdio-buffer


def _stdio(rates: dict[int, tuple[float, int]], flushed: tuple[float, int] | None = None):
    moved = 5_000_000
    cases = [
        {"buffer_size": size, "elapsed_ns": took(rate, moved), "bytes": moved, "syscalls_write": calls}
        for size, (rate, calls) in rates.items()
    ]
    if flushed is not None:
        largest = max(rates)
        cases.append(
            {"buffer_size": largest, "flush_every": 100, "elapsed_ns": took(flushed[0], moved), "bytes": moved,
             "syscalls_write": flushed[1]}
        )  # fmt: skip
    return cases


def test_stdio_buffer_directions_and_what_a_flush_is() -> None:
    good = says(
        "stdio-buffer", _stdio({0: (5e6, 50000), 4096: (1e8, 1221), 65536: (1.01e8, 77)}, flushed=(5e7, 500))
    )
    assert (
        "buffer_size=64KiB against 0B cut write() calls from 50,000 to 77; writing the records: 20x faster"
        in good
    )
    assert "Past buffer_size=4KiB the next size did not gain a measurable 5%" in good
    assert (
        "Flushing every 100 records at buffer_size=64KiB, against never: 2.0x slower, with 500 write()"
        in good
    )
    bad = says("stdio-buffer", _stdio({0: (1e8, 50000), 65536: (5e7, 60000)}, flushed=(1e8, 60000)))
    assert "raised write() calls from 50,000 to 60,000; writing the records: 2.0x slower" in bad
    assert "against never: 2.0x faster" in bad and "a flush is a write()" not in bad


def test_stdio_buffer_noise_and_missing_data() -> None:
    noise = says("stdio-buffer", _stdio({0: (1e8, 50000), 65536: (1.01e8, 77)}), spread=0.05)
    assert (
        "cut write() calls from 50,000 to 77; writing the records: no measurable difference (within ±"
        in noise
    )
    assert says("stdio-buffer", _stdio({0: (1e8, 50000)})) == ""


# ------------------------------------------------------------------ zero-copy


def _zc(rates: dict[str, tuple[float, float]], user: dict[str, float] | None = None) -> list[dict[str, Any]]:
    moved, cases = 32 * MIB, []
    for method, (rate, cpu_share) in rates.items():
        elapsed = took(rate, moved)
        case = {"method": method, "elapsed_ns": elapsed, "bytes": moved, "cpu_ns": elapsed * cpu_share}
        if user is not None and method in user:
            total = elapsed * cpu_share * 60
            case |= {"user_ns": total * user[method], "sys_ns": total * (1 - user[method])}
        cases.append(case)
    return cases


def test_zero_copy_cpu_and_ranking_follow_the_data() -> None:
    usual = says(
        "zero-copy",
        _zc({"read-write": (2e9, 1.0), "sendfile": (4e9, 0.5), "splice": (4.05e9, 0.5)}, user={"read-write": 0.3, "sendfile": 0.0}),
    )  # fmt: skip
    assert "sendfile 134 ms, 4.0x less CPU" in usual
    assert (
        "fastest first: splice 3.8 GiB/s and sendfile 3.7 GiB/s (no measurable difference), then read-write"
        in usual
    )
    assert (
        "User-space CPU per GiB" in usual
        and "read-write 161 ms, sendfile 0 ns, splice below the tick" in usual
    )
    odd = says("zero-copy", _zc({"read-write": (4e9, 0.5), "sendfile": (2e9, 1.0)}))
    assert "sendfile 537 ms, 4.0x more CPU" in odd and "fastest first: read-write" in odd


def test_zero_copy_noise_and_missing_data() -> None:
    noise = says("zero-copy", _zc({"tcp-sendall": (1e9, 1.0), "tcp-sendfile": (1.01e9, 1.0)}), spread=0.05)
    assert "File to a loopback TCP socket, no measurable difference between" in noise
    assert says("zero-copy", _zc({"sendfile": (4e9, 0.5)})) == ""


# ------------------------------------------------------------------ file-concurrency


def test_file_concurrency_losses_and_reads_in_flight_follow_the_data() -> None:
    def racing(lost: int) -> list[dict[str, Any]]:
        common = {"threads": 4, "records_written": 8000}
        return [
            {"mode": "write-racing", "records_lost": lost} | common,
            {"mode": "pwrite", "records_lost": 0} | common,
        ]

    lost = says("file-concurrency", racing(300))
    assert "lost 300 of 8,000 records (4%): each descriptor has its own offset" in lost
    assert "By contrast pwrite lost 0." in lost and "WriteFile (Microsoft Win32 API reference)" in lost
    none = says("file-concurrency", racing(0))
    assert (
        "lost none of 8,000 records this time" in none
        and "WriteFile" not in none
        and "By contrast" not in none
    )

    def reads(one: float, eight: float) -> list[dict[str, Any]]:
        return [{"mode": "pread-threads", "threads": t, "elapsed_ns": e} for t, e in ((1, one), (8, eight))]

    assert "pread-threads: 8 reads in flight against 1: 2.0x faster." in says(
        "file-concurrency", reads(2e6, 1e6)
    )
    assert "pread-threads: 8 reads in flight against 1: 2.0x slower." in says(
        "file-concurrency", reads(1e6, 2e6)
    )
    noise = says("file-concurrency", reads(1e6, 1.01e6), spread=0.05)
    assert "against 1: no measurable difference (within ±" in noise
    assert says("file-concurrency", [{"mode": "pread-threads", "threads": 1}]) == ""


# ------------------------------------------------------------------ syscall


def _calls(per_call: dict[str, float], split: dict[str, float] | None = None) -> list[dict[str, Any]]:
    cases = []
    for call, ns in per_call.items():
        elapsed = ns * 200_000
        case = {"call": call, "elapsed_ns": elapsed, "ops": 200_000, "bytes": 0}
        if split and call in split:
            case |= {"user_ns": elapsed * 20 * (1 - split[call]), "sys_ns": elapsed * 20 * split[call]}
        cases.append(case)
    return cases


def test_syscall_comparisons_follow_the_data() -> None:
    usual = says("syscall", _calls({"getppid": 300, "python": 30, "vdso-clock": 20}, split={"getppid": 0.8}))
    assert "A null syscall (getppid, from the C loop) took 300 ns per call" in usual
    assert "the kernel took 80% of its CPU time" in usual
    assert "getppid against it: 10.0x slower." in usual and "against getppid: 15x faster" in usual
    assert "vdso(7) (Linux man-pages)" in usual
    assert "the mode switch itself" not in usual  # a claim the numbers cannot make
    odd = says("syscall", _calls({"getppid": 30, "python": 300, "vdso-clock": 60}))
    assert "getppid against it: 10.0x faster." in odd and "against getppid: 2.0x slower" in odd
    assert "user/system CPU split is below the tick resolution" in odd


def test_syscall_noise_and_missing_data() -> None:
    noise = says("syscall", _calls({"getppid": 100, "python": 101}), spread=0.05)
    assert "getppid against it: no measurable difference (within ±" in noise
    assert says("syscall", _calls({"python": 30})) == ""


# ------------------------------------------------------------------ context-switch


def _pingpong(p50: dict[str, float], spread: float = 0.02) -> list[dict[str, Any]]:
    spreads = [1 - spread, 1 - spread / 2, 1, 1 + spread / 2, 1 + spread]
    return [
        {
            "mode": m,
            "lat_p50_ns": [v * f for f in spreads],
            "lat_p99_ns": v * 3,
            "ctx_vol": 10000,
            "ops": 5000,
        }
        for m, v in p50.items()
    ]


def test_context_switch_ranking_follows_the_data() -> None:
    one = says(
        "context-switch", _pingpong({"process-pipe": 10_000, "thread-pipe": 10_100, "thread-queue": 30_000})
    )
    assert "process-pipe 10 µs (p99 30 µs, 2 voluntary switches per round trip here)" in one
    assert "fastest first: process-pipe 10 µs and thread-pipe 10.1 µs (no measurable difference), then" in one
    assert "thread-queue 30 µs (3.0x slower than process-pipe)" in one
    other = says("context-switch", _pingpong({"process-pipe": 30_000, "thread-queue": 10_000}))
    assert (
        "fastest first: thread-queue 10 µs, then process-pipe 30 µs (3.0x slower than thread-queue)" in other
    )


def test_context_switch_noise_and_missing_data() -> None:
    noise = says("context-switch", _pingpong({"process-pipe": 10_000, "thread-pipe": 10_100}, spread=0.1))
    assert "no measurable difference between" in noise and "fastest first" not in noise
    assert says("context-switch", [{"mode": "process-pipe"}]) == ""


# ------------------------------------------------------------------ page-fault


def test_page_fault_names_the_mechanism_only_when_the_counts_show_it() -> None:
    pages = 4096
    one_each = says(
        "page-fault",
        [
            {"mode": "anon", "pages": pages, "minflt": pages + 3},
            {"mode": "cow", "pages": pages, "minflt": pages},
        ],
    )
    assert "1.00 minor faults per page (demand paging" in one_each and "(copy-on-write" in one_each
    fewer = says("page-fault", [{"mode": "cow", "pages": pages, "minflt": pages // 8}])
    assert "0.12 minor faults per page, fewer than one per page (about 8 pages mapped per fault)" in fewer
    assert "copy-on-write" not in fewer

    def file_modes(off: float, on: float) -> list[dict[str, Any]]:
        return [
            {
                "mode": "file-cold",
                "readahead": "off",
                "pages": pages,
                "majflt": pages,
                "minflt": 0,
                "elapsed_ns": off,
            },
            {
                "mode": "file-cold",
                "readahead": "on",
                "pages": pages,
                "majflt": 10,
                "minflt": 200,
                "elapsed_ns": on,
            },
        ]

    assert "its time per page against without: 4.0x faster" in says("page-fault", file_modes(4e7, 1e7))
    assert "its time per page against without: 2.0x slower" in says("page-fault", file_modes(1e7, 2e7))
    noise = says("page-fault", file_modes(1e7, 1.01e7), spread=0.05)
    assert "against without: no measurable difference (within ±" in noise
    assert says("page-fault", [{"mode": "anon"}]) == ""


# ------------------------------------------------------------------ page-lock


def _locks(per_page: dict[int, float], spread: float = 0.02) -> list[dict[str, Any]]:
    spreads = [1 - spread, 1 - spread / 2, 1, 1 + spread / 2, 1 + spread]
    return [
        {"mode": "lock", "size": size, "pages": size // 4096, "mlock_ns": [size // 4096 * ns * f for f in spreads],
         "mlock_minflt": size // 4096, "locked": True, "limit_bytes": 8 * MIB}
        for size, ns in per_page.items()
    ]  # fmt: skip


def _over(mode: str, locked: bool, uid: int) -> dict[str, Any]:
    refused = {} if locked else {"mlock_errno": "ENOMEM"}
    return {"mode": mode, "locked": locked, "ran_as_uid": uid, "requested_bytes": 8 * MIB + 4096,
            "limit_bytes": 8 * MIB} | refused  # fmt: skip


def test_page_lock_refusal_and_cost_follow_the_data() -> None:
    refused = says("page-lock", [*_locks({65536: 1000, 4 * MIB: 500}), _over("over-limit", False, 65534)])
    assert "RLIMIT_MEMLOCK was 8 MiB per process here" in refused
    assert "(Jones & Ohlund 2002)" in refused and "mlock(2) (Linux man-pages)" in refused
    assert "as uid 65534 was refused with ENOMEM" in refused
    assert "faulted every page in" in refused and "4MiB against 64KiB: 2.0x faster" in refused
    allowed = says("page-lock", [*_locks({65536: 500, 4 * MIB: 1000}), _over("over-limit", True, 0)])
    assert "as uid 0 succeeded: root is exempt (CAP_IPC_LOCK)" in allowed and "refused" not in allowed
    assert "4MiB against 64KiB: 2.0x slower" in allowed
    noise = says("page-lock", _locks({65536: 1000, 4 * MIB: 1010}, spread=0.1))
    assert "4MiB against 64KiB: no measurable difference (within ±" in noise
    assert says("page-lock", [{"mode": "lock"}]) == ""


# ------------------------------------------------------------------ sock-buffer


def _sock(transport: str, buffers: str, bufsize: int, rcv: float, snd: float, rate: float, **more: Any):
    requested = None if buffers == "unset" else bufsize
    return {
        "transport": transport, "buffers": buffers, "bufsize": bufsize, "elapsed_ns": took(rate, 8 * MIB),
        "bytes": 8 * MIB, "requested_rcvbuf": requested if buffers in ("rcvbuf", "both") else None,
        "requested_sndbuf": requested if buffers in ("sndbuf", "both") else None, "effective_rcvbuf": rcv,
        "effective_sndbuf": snd, "effective_rcvbuf_end": more.pop("rcv_end", rcv), "peer_cpu_ns": 5e5,
    } | more  # fmt: skip


def test_sock_buffer_says_doubled_or_capped_per_case() -> None:
    doubled = says("sock-buffer", [_sock("tcp", "rcvbuf", 65536, 131072, 16384, 1e9)])
    assert "SO_RCVBUF on TCP: 64KiB became 128 KiB (doubled)" in doubled
    assert "the kernel doubles a request" in doubled and "rmem_max" not in doubled
    capped = says("sock-buffer", [_sock("unix", "both", 1 << 20, 425984, 425984, 1e9)])
    assert "SO_RCVBUF on Unix: 1MiB became 416 KiB (capped)" in capped and "above net.core.rmem_max" in capped
    assert "doubles" not in capped  # the old "Linux doubles every request"
    raised = says("sock-buffer", [_sock("tcp", "rcvbuf", 256, 2304, 16384, 1e9)])
    assert "256B became 2.25 KiB (raised)" in raised and "raised to it" in raised


def test_sock_buffer_zero_against_unset_follows_the_data() -> None:
    base = _sock("tcp", "unset", 0, 131072, 16384, 1e9, rcv_end=6 << 20)
    slow = says("sock-buffer", [base, _sock("tcp", "rcvbuf", 0, 2304, 16384, 1e7)])
    assert "SO_RCVBUF=0 became 2,304 bytes on TCP" in slow and "(Jones & Ohlund 2002)" in slow
    assert "SO_RCVBUF=0 ran at 9.5 MiB/s, 100x slower" in slow
    assert "autotuning grew SO_RCVBUF from 128 KiB to 6 MiB" in slow
    fast = says("sock-buffer", [base, _sock("tcp", "rcvbuf", 0, 2304, 16384, 2e9)])
    assert "SO_RCVBUF=0 ran at 1.9 GiB/s, 2.0x faster" in fast
    noise = says("sock-buffer", [base, _sock("tcp", "rcvbuf", 0, 2304, 16384, 1.01e9)], spread=0.05)
    assert "SO_RCVBUF=0 ran at" in noise and "no measurable difference (within ±" in noise
    none = says("sock-buffer", [_sock("tcp", "rcvbuf", 0, 0, 16384, 1e9)])
    assert "still left a kernel buffer" not in none and "left no buffer at all" in none


def test_sock_buffer_missing_data() -> None:
    assert says("sock-buffer", [{"transport": "tcp", "buffers": "unset", "bufsize": 0}]) == ""


# ------------------------------------------------------------------ zero-byte-recv


def _zbr(strategy: str, held: float, rate: float, kernel: float = 0.0, **more: Any) -> dict[str, Any]:
    return {
        "strategy": strategy, "connections": 256, "recv_buffer": 65536, "msg_size": 512, "pool_buffers": 4,
        "elapsed_ns": took(rate, 1_024_000), "bytes": 1_024_000, "buffer_bytes_held": held,
        "rss_buffers_bytes": held * 0.9, "kernel_tcp_mem_idle_delta_bytes": kernel, "lat_p50_ns": 30_000,
        "lat_p99_ns": 90_000,
    } | more  # fmt: skip


def test_zero_byte_recv_reads_what_recv0_returned() -> None:
    probe = {"recv0_idle": "EAGAIN", "recv0_left_queued": 1}
    zero = says("zero-byte-recv", [_zbr("prepost", 256 * 65536, 4e7, recv0_returned=0, **probe)])
    assert 'with data queued it returned 0 and left 1 byte(s) queued: it only says "readable"' in zero
    one = says(
        "zero-byte-recv",
        [_zbr("prepost", 256 * 65536, 4e7, recv0_returned=1, recv0_idle="EAGAIN", recv0_left_queued=0)],
    )
    assert "with data queued it returned 1 and left 0 byte(s) queued." in one
    assert "returned 0" not in one and "readable" not in one


def test_zero_byte_recv_kernel_memory_and_strategies_follow_the_data() -> None:
    small = says("zero-byte-recv", [_zbr("prepost", 256 * 65536, 4e7), _zbr("zero-byte", 4 * 65536, 4e7)])
    assert "zero-byte held 256 KiB (a pool of 4 buffers plus partial messages), 64x less" in small
    assert "0 B per idle socket" in small and "held next to nothing in the kernel" in small
    assert "Zero-byte against prepost: no measurable difference" not in small or "within ±" in small
    moved = says(
        "zero-byte-recv",
        [
            _zbr("prepost", 256 * 65536, 4e7, kernel=8 * MIB),
            _zbr("zero-byte", 4 * 65536, 2e7, kernel=8 * MIB),
        ],
    )
    assert "a system-wide counter other sockets move too" in moved and "Jones & Ohlund" not in moved
    assert (
        "Zero-byte against prepost: 2.0x slower; borrowing a pool buffer only after readiness cost throughput"
        in moved
    )
    faster = says("zero-byte-recv", [_zbr("prepost", 256 * 65536, 2e7), _zbr("zero-byte", 4 * 65536, 4e7)])
    assert (
        "Zero-byte against prepost: 2.0x faster; borrowing a pool buffer only after readiness cost no throughput"
        in faster
    )
    noise = says("zero-byte-recv", [_zbr("prepost", 1, 4e7), _zbr("zero-byte", 1, 4.04e7)], spread=0.05)
    assert "no measurable difference (within ±" in noise and "cost no measurable throughput" in noise
    assert says("zero-byte-recv", [{"strategy": "prepost"}]) == ""


# ------------------------------------------------------------------ async-send


def _as(mode: str, concurrency: int = 4, rate: float = 1e8, **metrics: Any) -> dict[str, Any]:
    return {"mode": mode, "concurrency": concurrency, "elapsed_ns": took(rate), "ops": 200} | metrics


def test_async_send_checks_and_echo_ranking_follow_the_data() -> None:
    echo = {"lat_p50_ns": 40_000, "lat_p99_ns": 400_000}
    good = says("async-send", [
        _as("inflight-100-200-150", 1, order_ok=True, sizes_ok=True, send_calls=1),
        _as("threads-sendall", interleaved_messages=159),
        _as("echo-threads", rate=1e7, ctx_vol=212, **echo),
        _as("echo-asyncio", rate=3e7, ctx_vol=28, **echo),
    ])  # fmt: skip
    assert "arrived in order and each whole" in good and "WSASend (Microsoft Win32 API reference)" in good
    assert "tore 159 of 200 messages (80%)" in good
    assert "fastest first: asyncio 28.6 MiB/s, then threads 9.5 MiB/s (3.0x slower than asyncio)" in good
    assert "measurably the most with a blocking thread per connection" in good
    bad = says("async-send", [
        _as("inflight-random", 1, order_ok=False, sizes_ok=True, send_calls=3),
        _as("threads-sendall", interleaved_messages=0),
        _as("echo-threads", rate=3e7, ctx_vol=28, **echo),
        _as("echo-asyncio", rate=1e7, ctx_vol=212, **echo),
    ])  # fmt: skip
    assert "arrived OUT OF ORDER" in bad and "call order" not in bad and "tore none of 200" in bad
    assert "fastest first: threads 28.6 MiB/s, then asyncio 9.5 MiB/s" in bad
    assert "measurably the most with a blocking thread" not in bad


def test_async_send_noise_and_missing_data() -> None:
    noise = says(
        "async-send", [_as("echo-selectors", rate=1e7), _as("echo-asyncio", rate=1.01e7)], spread=0.05
    )
    assert "By throughput, no measurable difference between" in noise
    scaling = says(
        "async-send",
        [_as("echo-selectors", 1, rate=1e7), _as("echo-selectors", 16, rate=1.01e7)],
        spread=0.05,
    )
    assert "Throughput at 16 connections against 1: selectors no measurable difference" in scaling
    single = says("async-send", [{"mode": "echo-threads"}])  # one case: a fact, nothing to compare
    assert single.startswith("Echo at 1 connection(s): threads") and "faster" not in single
    assert "slower" not in single and "measurable" not in single


# ------------------------------------------------------------------ msg-zerocopy


def _mz(method: str, rate: float, completions: int, copied: int, **more: Any) -> dict[str, Any]:
    return {"method": method, "msg_size": 65536, "elapsed_ns": took(rate, 16 * MIB), "bytes": 16 * MIB,
            "zc_completions": completions, "zc_copied": copied} | more  # fmt: skip


def test_msg_zerocopy_follows_the_data() -> None:
    loopback = says("msg-zerocopy", [
        _mz("send", 2e9, 0, 0, ran_as_uid=0),
        _mz("zerocopy", 1e9, 16, 16, ran_as_uid=0, enobufs=0),
        _mz("zerocopy-unprivileged", 5e8, 16, 16, enobufs=18, ran_as_uid=65534, memlock_limit=8 * MIB),
    ])  # fmt: skip
    assert "at 64KiB zerocopy 953.7 MiB/s vs send 1.9 GiB/s, 2.0x slower" in loopback
    assert "All 32 completions" in loopback and "up to 2.0x slower than plain send" in loopback
    assert (
        "ENOBUFS up to 18 times" in loopback and "msg_zerocopy.rst (Linux kernel documentation)" in loopback
    )
    assert "as root got 0: root is exempt" in loopback
    nic = says("msg-zerocopy", [
        _mz("send", 1e9, 0, 0), _mz("zerocopy", 2e9, 256, 16),
        _mz("zerocopy-unprivileged", 1e9, 256, 16, enobufs=0, ran_as_uid=1000, memlock_limit=64 << 10),
    ])  # fmt: skip
    assert "2.0x faster" in nic and "32 of 512 completions were flagged COPIED" in nic
    assert "got no ENOBUFS" in nic and "msg_zerocopy.rst" not in nic
    noise = says("msg-zerocopy", [_mz("send", 1e9, 0, 0), _mz("zerocopy", 1.01e9, 16, 16)], spread=0.05)
    assert "no measurable difference (within ±" in noise and "nowhere measurably slower" in noise
    assert "up to" not in noise
    assert says("msg-zerocopy", [{"method": "send"}]) == ""


# ------------------------------------------------------------------ every experiment


@pytest.mark.parametrize("name", [e.name for e in all_experiments()])
def test_missing_metrics_give_no_claim_and_no_crash(name: str) -> None:
    """One case, the experiment's own metrics absent or all NaN: facts at most, no comparison,
    no citation (nothing to set it against)."""
    experiment = get_experiment(name)
    case = {"elapsed_ns": 1e6}
    metrics = [
        c.metric for c in experiment.columns if c.metric not in ("elapsed_ns", "bytes_per_s", "cpu_ns")
    ]
    for cases in ([case], [case | dict.fromkeys(metrics, float("nan"))]):
        sentences = experiment.explain(case_summary(experiment, cases))
        assert all(isinstance(s, str) and s for s in sentences)
        text = " ".join(sentences)
        assert "nan" not in text.split() and "nan " not in text.lower()
        for claim in (
            "faster",
            "slower",
            "measurable",
            "TLPI",
            "Jones & Ohlund",
            "WriteFile",
            "WSASend",
            "doubles",
        ):
            assert claim not in text, (name, claim, text)


@pytest.mark.parametrize("name", [e.name for e in all_experiments()])
def test_no_seed_numbers_in_user_facing_text(name: str) -> None:
    experiment = get_experiment(name)
    assert "seed" not in experiment.seed_idea.lower()
    assert not experiment.seed_idea[:3].isdigit(), experiment.seed_idea


def test_summaries_from_the_frame_and_from_csv_say_the_same() -> None:
    from iobench.experiments.sync_write import SyncWrite

    cases = _sync(1e7, 1.2e8)
    frame = pd.DataFrame(case_rows(SyncWrite, cases))
    assert SyncWrite.explain(summarize(frame)) == SyncWrite.explain(case_summary(SyncWrite, cases))


def test_mmap_read_table_shows_pages_touched_per_second_for_touch_only() -> None:
    from iobench.experiments.mmap_read import MmapRead
    from iobench.report.tables import book_table

    summary = case_summary(MmapRead, _mm({"mmap-touch": 70e9, "readinto": 8e9}))
    ((_, table),) = book_table(summary, MmapRead)
    by_method = {str(m): str(c) for m, c in zip(table["method"], table["Pages touched/s"], strict=True)}
    assert by_method["mmap-touch"].startswith("17,089,844 ±") and by_method["readinto"] == "-"
    rates = {str(m): str(c) for m, c in zip(table["method"], table["Throughput"], strict=True)}
    assert rates["mmap-touch"] == "-" and "GiB/s" in rates["readinto"]  # touch is not ranked by bytes/s
    throughput = next(f for f in MmapRead.figures if f.kind == "throughput")
    assert ("method", ("mmap-copy", "read", "readinto")) in throughput.where


def test_zero_byte_recv_names_the_threads_strategy_and_the_probed_socket() -> None:
    probe = {"recv0_idle": "EAGAIN", "recv0_left_queued": 1, "recv0_returned": 0, "recv0_socket": "tcp"}
    cases = [
        _zbr("prepost", 256 * 65536, 4e7, **probe),
        _zbr("zero-byte", 4 * 65536, 4e7),
        _zbr("zero-byte-threads", 4 * 65536, 2e7, recv0_calls=2000),
    ]
    text = says("zero-byte-recv", cases)
    assert "A real 0-byte recv() on the case's own TCP connection, while idle, failed with EAGAIN" in text
    assert "waited in 2,000 blocking 0-byte recv() calls per repetition" in text
    assert "Zero-byte-threads against prepost: 2.0x slower." in text
    without = says("zero-byte-recv", cases[:2])
    assert "zero-byte-threads" not in without.lower()


# ------------------------------------------------------------------ async-io


def _aio(method: str, qd: int, iops: float, direct: str = "on", spread: float = 0.02, **metrics: Any):
    """An async-io case: ``iops`` per repetition spread by +-spread, 1,000 IOs each."""
    values = [iops * (1 + spread * f) for f in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    return {"method": method, "qd": qd, "direct": direct, "iops": values, "ops": 1000} | metrics


def test_async_io_depth_gains_and_losses_follow_the_data() -> None:
    gain = says("async-io", [_aio("io_uring", 1, 2e4), _aio("io_uring", 16, 6e4)])
    assert "io_uring at qd 16 against 1: 60,000 vs 20,000 IOPS, 3.0x more" in gain
    loss = says("async-io", [_aio("io_uring", 1, 6e4), _aio("io_uring", 16, 2e4)])
    assert "io_uring at qd 16 against 1: 20,000 vs 60,000 IOPS, 3.0x fewer" in loss
    noise = says("async-io", [_aio("io_uring", 1, 2e4, spread=0.1), _aio("io_uring", 16, 2.04e4, spread=0.1)])
    assert "no measurable difference (within ±" in noise and "more" not in noise.split("IOPS,")[1][:12]


def test_async_io_says_libaio_is_synchronous_only_when_the_data_does() -> None:
    buffered = {"direct": "off", "cache": "cold"}
    sync = says(
        "async-io",
        [
            _aio("libaio", 1, 2.5e4, submit_share=0.98, **buffered),
            _aio("libaio", 8, 2.45e4, spread=0.05, submit_share=0.99, **buffered),
        ],
    )
    assert "libaio on buffered IO (randread bs=4KiB buffered (cold cache)) was synchronous" in sync
    assert "99% of the loop at qd 8 was spent inside io_submit" in sync
    assert "fio HOWTO, ioengine=libaio (fio documentation): Linux may only support queued behavior" in sync
    queued = says(
        "async-io",
        [
            _aio("libaio", 1, 2.5e4, submit_share=0.3, **buffered),
            _aio("libaio", 8, 7.5e4, submit_share=0.2, **buffered),
        ],
    )
    assert "synchronous" not in queued and "libaio on buffered IO gained from depth here" in queued
    direct = says("async-io", [_aio("libaio", 1, 2e4, submit_share=0.3), _aio("libaio", 8, 2e4)])
    assert "buffered" not in direct and "fio HOWTO" not in direct


def test_async_io_ranks_methods_and_counts_calls_only_where_measured() -> None:
    cases = [
        _aio("psync", 1, 2e4, syscalls_per_io=1.0),
        _aio("libaio", 8, 5e4, syscalls_per_io=0.25),
        _aio("io_uring", 8, 1e5, syscalls_per_io=0.125),
    ]
    text = says("async-io", cases)
    assert (
        "qd 8, most IOPS first: io_uring 100,000 IOPS, then libaio 50,000 IOPS (2.0x fewer IOPS than io_uring)"
        in text
    )
    assert (
        "system calls per IO: psync 1 (pread/pwrite, qd 1), libaio 0.25 (io_submit + io_getevents, qd 8)"
        in text
    )
    swapped = says("async-io", [cases[0], _aio("libaio", 8, 1e5), _aio("io_uring", 8, 5e4)])
    assert "most IOPS first: libaio 100,000 IOPS, then io_uring 50,000 IOPS" in swapped
    tied = says("async-io", [_aio("libaio", 8, 5e4, spread=0.1), _aio("io_uring", 8, 5.1e4, spread=0.1)])
    assert "no measurable difference between" in tied
    assert says("async-io", [{"method": "io_uring"}]) == ""


# ------------------------------------------------------------------ io_uring socket strategies


def test_zero_byte_recv_bufring_says_k_not_n_only_when_it_held_less() -> None:
    ring = {"pool_buffers": 4, "enobufs_completions": 12, "recv_rearms": 12}
    less = says(
        "zero-byte-recv", [_zbr("prepost", 256 * 65536, 4e7), _zbr("uring-bufring", 4 * 65536, 4e7, **ring)]
    )
    assert "uring-bufring held 256 KiB for 256 connections: a ring of 4 buffers of 64KiB" in less
    assert "64x less than prepost's 16 MiB" in less and "memory held follows K, not N" in less
    assert "The ring ran dry 12 times per repetition" in less and "armed again 12 times" in less
    more = says(
        "zero-byte-recv",
        [_zbr("prepost", 4 * 65536, 4e7, connections=4), _zbr("uring-bufring", 8 * 65536, 4e7, connections=4,
                                                               pool_buffers=8, enobufs_completions=0)],
    )  # fmt: skip
    assert "no less than prepost's" in more and "follows K, not N" not in more and "never ran dry" in more
    faster = says("zero-byte-recv", [_zbr("prepost", 1, 2e7), _zbr("uring-bufring", 1, 4e7, **ring)])
    assert "uring-bufring against prepost at 256 connections: 2.0x faster" in faster
    noise = says(
        "zero-byte-recv", [_zbr("prepost", 1, 4e7), _zbr("uring-bufring", 1, 4.04e7, **ring)], spread=0.05
    )
    assert "uring-bufring against prepost at 256 connections: no measurable difference" in noise
    assert "uring-bufring" not in says("zero-byte-recv", [{"strategy": "uring-bufring"}])


def test_async_send_uring_guarantees_follow_the_data() -> None:
    def uring(mode: str, ok: bool, short: int, late: int) -> dict[str, Any]:
        return _as(mode, 16, order_ok=ok, sizes_ok=ok, short_sends=short, completed_out_of_order=late)

    seen = says("async-send", [
        uring("uring-unlinked-waitall", False, 0, 150), uring("uring-linked-waitall", True, 0, 0),
        uring("uring-linked", False, 160, 20),
    ])  # fmt: skip
    assert "uring-linked (16 sends in flight): 160 sends completed short" in seen
    assert (
        "Only the linked chain kept the stream" in seen
        and "A link orders the sends but does not make them whole" in seen
    )
    both = says("async-send", [
        uring("uring-unlinked-waitall", True, 0, 0), uring("uring-linked-waitall", True, 0, 0),
        uring("uring-linked", True, 0, 0),
    ])  # fmt: skip
    assert "Only the linked chain" not in both and "does not make them whole" not in both
    assert "the 200 messages arrived in order and whole" in both
    assert "io_uring sends" not in says("async-send", [{"mode": "uring-linked"}])


def test_msg_zerocopy_uring_send_zc_follows_the_data() -> None:
    send = _mz("send", 2e9, 0, 0)
    copied = says("msg-zerocopy", [send, _mz("uring-send-zc", 1e9, 16, 16, zc_sends=16)])
    assert (
        "io_uring IORING_OP_SEND_ZC over loopback TCP: at 64KiB 953.7 MiB/s vs send 1.9 GiB/s, 2.0x slower"
        in copied
    )
    assert "16 of them carried IORING_NOTIF_USAGE_ZC_COPIED: the kernel copied every one" in copied
    skipped = says("msg-zerocopy", [send, _mz("uring-send-zc", 4e9, 16, 4, zc_sends=16)])
    assert "2.0x faster" in skipped and "the other 12 really skipped the copy" in skipped
    noise = says("msg-zerocopy", [send, _mz("uring-send-zc", 2.02e9, 16, 16, zc_sends=16)], spread=0.05)
    assert "no measurable difference (within ±" in noise
    assert "SEND_ZC" not in says("msg-zerocopy", [{"method": "uring-send-zc"}])
