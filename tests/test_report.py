"""Reports: HTML and Markdown structure, figures, explanations from the numbers, --format."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from iobench.cli import cli
from iobench.experiments import all_experiments, get_experiment
from iobench.experiments.base import Experiment
from iobench.experiments.rw_buffer import RwBuffer
from iobench.explain import plateau
from iobench.metrics import summarize
from iobench.report import build_report, parse_formats
from iobench.report.model import build_model
from tests.report_data import FLAT, STEEP, make_run, write_run


def _summary(run):
    return summarize(run.frame)


def test_one_run_html_is_self_contained_with_a_section_per_experiment(tmp_path: Path) -> None:
    run = make_run("20260101-000000-aaaa", speed=STEEP, lost=300)
    written = build_report([run], tmp_path, ("html", "md", "png"))
    html = (tmp_path / "report.html").read_text()
    assert re.findall(r'<section class="experiment" id="(exp-[^"]+)"', html) == [
        "exp-rw-buffer",
        "exp-file-concurrency",
    ]
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    assert all(
        src.startswith("data:image/png;base64,") for src in re.findall(r'<img[^>]* src="([^"]+)"', html)
    )
    assert html.count("<img") >= 3  # throughput, stacked CPU, records lost
    assert "What this shows" in html and 'href="#exp-rw-buffer"' in html
    assert (tmp_path / "rw-buffer-throughput.png") in written
    markdown = (tmp_path / "report.md").read_text()
    assert "## rw-buffer" in markdown and "## file-concurrency" in markdown
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (tmp_path / link).is_file()


def test_markdown_only_has_no_image_links(tmp_path: Path) -> None:
    written = build_report([make_run("20260101-000000-aaaa", speed=STEEP)], tmp_path, ("md",))
    assert written == [tmp_path / "report.md"]
    assert "![" not in (tmp_path / "report.md").read_text()


def test_svg_on_request(tmp_path: Path) -> None:
    build_report([make_run("20260101-000000-aaaa", speed=STEEP)], tmp_path, ("svg",))
    assert (tmp_path / "rw-buffer-throughput.svg").read_text().lstrip().startswith("<?xml")
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "report.html").exists()


def test_explanations_follow_the_numbers() -> None:
    steep = RwBuffer.explain(_summary(make_run("a", speed=STEEP)))
    flat = RwBuffer.explain(_summary(make_run("a", speed=FLAT)))
    assert steep != flat
    assert any("every larger buffer still paid a measurable 5% or more up to 64KiB" in s for s in steep)
    assert any(
        "TLPI §13.1, Table 13-1 (Kerrisk 2010)" in s and "Here larger buffers still paid" in s for s in steep
    )
    assert any("beyond bs=4KiB the next size did not gain a measurable 5%" in s for s in flat)
    assert any("This run agrees: bs=64KiB against 4KiB" in s for s in flat)
    assert any("the kernel took 75% of its CPU time" in s for s in steep)


def test_racing_writer_losses_are_counted() -> None:
    concurrency = get_experiment("file-concurrency")
    lost = " ".join(concurrency.explain(_summary(make_run("a", lost=300))))
    none = " ".join(concurrency.explain(_summary(make_run("a", lost=0))))
    assert "lost 300 of 4,000 records (8%)" in lost and "WriteFile (Microsoft Win32 API reference)" in lost
    assert "lost none of 4,000 records" in none and "WriteFile" not in none


def test_explain_returns_nothing_when_cases_are_absent() -> None:
    import pandas as pd

    for experiment in all_experiments():
        names = [p.name for p in experiment.params] + [c.metric for c in experiment.columns]
        empty = pd.DataFrame(columns=list(dict.fromkeys([*names, "bytes", "ops", "bytes_per_s"])))
        assert experiment.explain(empty) == [], experiment.name


def test_generic_hooks_work_without_overrides() -> None:
    class Plain(Experiment):
        # A new experiment that declares nothing for reports.
        name = "rw-buffer"
        params = RwBuffer.params

    specs = Plain.report_figures()
    assert [s.kind for s in specs] == ["metric", "percentiles"]
    sentences = Plain.explain(_summary(make_run("a", speed=STEEP)))
    assert sentences and "Elapsed ranges from" in sentences[0]


def test_plateau() -> None:
    import pandas as pd

    rows = pd.DataFrame({"bs": [1, 2, 4, 8], "bytes_per_s": [1.0, 2.0, 2.05, 4.0]})
    assert plateau(rows, "bs") == 2
    assert plateau(rows.iloc[:2], "bs") is None


def test_several_runs_one_series_each(tmp_path: Path) -> None:
    before = make_run("20260101-000000-aaaa", speed=STEEP, hostname="alpha")
    after = make_run("20260102-000000-bbbb", speed=FLAT, hostname="beta")
    model = build_model([before, after])
    section = model.sections[0]
    # Series are named by what tells the runs apart (here the host), not by raw run ids.
    assert [label for label, _ in section.explanations] == ["alpha", "beta"]
    assert len(section.tables) == 2
    axes = section.figures[0].figure.axes[0]
    assert sorted(axes.get_legend_handles_labels()[1]) == ["alpha", "beta"]
    build_report([before, after], tmp_path, ("html",))
    html = (tmp_path / "report.html").read_text()
    assert html.count('class="run"') == 2
    assert "run id <code>20260101-000000-aaaa</code>" in html  # each label is tied to its run id


def test_run_labels_name_what_differs() -> None:
    from iobench.report.model import run_labels

    one = make_run("20260101-000000-aaaa")
    same_host = [make_run("20260101-000000-aaaa"), make_run("20260102-000000-bbbb")]
    same_host[0].meta["started"], same_host[1].meta["started"] = "2026-01-01T09:15:00", "2026-01-02T17:40:00"
    assert run_labels([one]) == {"20260101-000000-aaaa": "20260101-000000-aaaa"}
    assert list(run_labels(same_host).values()) == ["01-01 09:15", "01-02 17:40"]
    same_host[0].meta["git"] = {"describe": "v1.2-3-gabc"}
    same_host[1].meta["git"] = {"describe": "v1.2-4-gdef"}
    assert list(run_labels(same_host).values()) == ["v1.2-3-gabc", "v1.2-4-gdef"]
    twins = [make_run("20260101-000000-aaaa"), make_run("20260101-000000-bbbb")]
    assert list(run_labels(twins).values()) == ["aaaa", "bbbb"]


def test_unsupported_cases_are_listed_with_their_reason(tmp_path: Path) -> None:
    run = make_run("20260101-000000-aaaa", speed=STEEP, unsupported=True, fs_type="tmpfs",
                   warnings=["target is tmpfs: cold cache impossible"])  # fmt: skip
    build_report([run], tmp_path, ("html", "md"))
    html = (tmp_path / "report.html").read_text()
    assert 'id="exp-direct-io"' in html and "O_DIRECT refused a misaligned buffer" in html
    assert "target is tmpfs" in html and "on tmpfs" in html
    assert "1 case(s) did not run" in (tmp_path / "report.md").read_text()


def test_empty_run(tmp_path: Path) -> None:
    build_report([make_run("20260101-000000-aaaa")], tmp_path, ("html", "md"))
    assert "No repetitions finished" in (tmp_path / "report.html").read_text()
    assert "No repetitions finished" in (tmp_path / "report.md").read_text()


def test_parse_formats() -> None:
    assert parse_formats("HTML, md,md") == ("html", "md")


@pytest.mark.parametrize(
    ("value", "message"),
    [("pdf", "--format: 'pdf' is not one of html, md, png, svg"), (",", "--format: choose one or more")],
)
def test_cli_bad_format_is_one_line_exit_2(tmp_path: Path, value: str, message: str) -> None:
    write_run(tmp_path, make_run("20260101-000000-aaaa", speed=STEEP))
    result = CliRunner().invoke(cli, ["report", "--results", str(tmp_path), "--format", value])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_formats_and_default_latest(tmp_path: Path) -> None:
    write_run(tmp_path, make_run("20260101-000000-aaaa", speed=STEEP))
    write_run(tmp_path, make_run("20260102-000000-bbbb", speed=FLAT))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["report", "--out", str(tmp_path), "--format", "md,png", "--report-dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "20260102-000000-bbbb" in (out / "report.md").read_text()
    assert (out / "rw-buffer-throughput.png").is_file() and not (out / "report.html").exists()


# --- socket experiments: explanations from synthetic summaries ------------------------------

SOCK = {"transfer": 1 << 20, "chunk": 65536}


def _sock(transport, buffers, bufsize, rcv, snd, rate, rcv_end=None, peer=5e5):
    requested = bufsize if buffers != "unset" else None
    return SOCK | {
        "transport": transport, "buffers": buffers, "bufsize": bufsize, "rate": rate,
        "requested_rcvbuf": requested if buffers in ("rcvbuf", "both") else None,
        "requested_sndbuf": requested if buffers in ("sndbuf", "both") else None,
        "effective_rcvbuf": rcv, "effective_sndbuf": snd, "effective_rcvbuf_end": rcv_end or rcv,
        "peer_cpu_ns": peer,
    }  # fmt: skip


def test_sock_buffer_explanation_follows_the_numbers() -> None:
    from tests.report_data import socket_summary

    sock = get_experiment("sock-buffer")
    autotuned = sock.explain(
        socket_summary("sock-buffer", [
            _sock("tcp", "unset", 0, 131072, 16384, 1e9, rcv_end=6 << 20),
            _sock("tcp", "rcvbuf", 0, 2304, 16384, 1e7),
            _sock("tcp", "rcvbuf", 65536, 131072, 16384, 5e8),
            _sock("tcp", "sndbuf", 0, 131072, 4608, 8e8),
        ])
    )  # fmt: skip
    text = " ".join(autotuned)
    assert "SO_RCVBUF=0 became 2,304 bytes on TCP" in text and "SO_SNDBUF=0 became 4,608 bytes" in text
    assert "64KiB became 128 KiB (doubled)" in text and "net.core.rmem_max" not in text
    assert "SO_RCVBUF=0 ran at 9.5 MiB/s, 100x slower" in text
    assert "autotuning grew SO_RCVBUF from 128 KiB to 6 MiB" in text
    assert "(Jones & Ohlund 2002)" in text
    capped = " ".join(
        sock.explain(
            socket_summary("sock-buffer", [
                _sock("unix", "unset", 0, 212992, 212992, 2e9),
                _sock("unix", "both", 0, 4608, 4608, 2e9),
                _sock("unix", "both", 1 << 20, 425984, 425984, 2e9),
            ])
        )
    )  # fmt: skip
    assert "SO_RCVBUF=0 became 4,608 bytes on Unix" in capped
    assert "1MiB became 416 KiB (capped)" in capped and "above net.core.rmem_max is cut" in capped
    assert "doubles" not in capped  # the same report shows the request was capped, not doubled
    assert "both set to 0 ran at" in capped and "no measurable difference" in capped
    assert "SO_RCVBUF stayed at 208 KiB (no autotuning seen)" in capped
    assert capped != text


def _zbr(strategy, n, size, held, rate, kernel=0.0, pool=4):
    return {
        "strategy": strategy, "connections": n, "recv_buffer": size, "msg_size": 512, "messages": 100,
        "burst": 8, "pool_buffers": pool, "rate": rate, "buffer_bytes_held": held,
        "rss_buffers_bytes": held * 0.9, "kernel_tcp_mem_idle_delta_bytes": kernel,
        "lat_p50_ns": 30_000, "lat_p99_ns": 90_000, "recv0_idle": "EAGAIN", "recv0_returned": 0,
        "recv0_left_queued": 1,
    }  # fmt: skip


def test_zero_byte_recv_explanation_follows_the_numbers() -> None:
    from tests.report_data import socket_summary

    zbr = get_experiment("zero-byte-recv")
    small = " ".join(
        zbr.explain(
            socket_summary("zero-byte-recv", [
                _zbr("prepost", 256, 65536, 256 * 65536, 4e7),
                _zbr("zero-byte", 256, 65536, 4 * 65536, 4e7),
            ])
        )
    )  # fmt: skip
    assert "prepost held 16 MiB of receive buffers for 256 connections (256 x 64KiB" in small
    assert "zero-byte held 256 KiB (a pool of 4 buffers" in small and "64x less" in small
    assert "changed the kernel's TCP memory by 0 B" in small and "(Jones & Ohlund 2002)" in small
    assert "held next to nothing in the kernel" in small and "cost no measurable throughput" in small
    big = " ".join(
        zbr.explain(
            socket_summary("zero-byte-recv", [
                _zbr("prepost", 1000, 16384, 1000 * 16384, 4e7, kernel=8 << 20),
                _zbr("zero-byte", 1000, 16384, 2 * 16384, 2e7, kernel=8 << 20, pool=2),
            ])
        )
    )  # fmt: skip
    assert "for 1,000 connections (1,000 x 16KiB" in big and "500x less" in big
    assert "moved the kernel's TCP memory by 8 MiB (/proc/net/sockstat), a system-wide counter" in big
    assert "Zero-byte against prepost: 2.0x slower; borrowing a pool buffer only after readiness cost" in big
    assert "Jones & Ohlund" not in big  # the kernel counter moved: no claim about what it held


def _as(mode, concurrency=4, rate=1e8, **metrics):
    return {
        "mode": mode, "concurrency": concurrency, "msg_size": 1024, "writer_msg_size": 262144,
        "messages": 50, "rate": rate,
    } | metrics  # fmt: skip


def test_async_send_explanation_follows_the_numbers() -> None:
    from tests.report_data import socket_summary

    send = get_experiment("async-send")
    echo = {"lat_p50_ns": 40_000, "lat_p99_ns": 400_000}
    torn = " ".join(
        send.explain(
            socket_summary("async-send", [
                _as("inflight-100-200-150", 1, order_ok=True, sizes_ok=True, send_calls=1),
                _as("threads-sendall", ops=200, interleaved_messages=159, sizes_ok=False),
                _as("threads-locked", ops=200, interleaved_messages=0, sizes_ok=True),
                _as("echo-threads", rate=1e7, ctx_vol=212, ops=200, **echo),
                _as("echo-asyncio", rate=3e7, ctx_vol=28, ops=200, **echo),
            ])
        )
    )  # fmt: skip
    assert "arrived in order and each whole" in torn and "WSASend (Microsoft Win32 API reference)" in torn
    assert "4 threads calling sendall() on one socket with 256KiB messages tore 159 of 200" in torn
    assert "Under a lock the same writers tore 0" in torn
    assert "fastest first: asyncio 28.6 MiB/s, then threads 9.5 MiB/s (3.0x slower than asyncio)" in torn
    assert "asyncio 0.14, threads 1.06" in torn
    broken = " ".join(
        send.explain(
            socket_summary("async-send", [
                _as("inflight-random", 1, order_ok=False, sizes_ok=True, send_calls=3),
                _as("threads-sendall", ops=200, interleaved_messages=0, sizes_ok=True),
                _as("echo-selectors", 1, rate=1e7, ctx_vol=20, ops=50, **echo),
                _as("echo-selectors", 16, rate=4e7, ctx_vol=80, ops=800, **echo),
            ])
        )
    )  # fmt: skip
    assert "in 3 sendmsg() call(s), arrived OUT OF ORDER" in broken and "needs a look" in broken
    assert "call order" not in broken
    assert "tore none of 200 this time" in broken
    assert "Throughput at 16 connections against 1: selectors 4.0x faster" in broken


def _zc(method, size, rate, completions, copied, enobufs=0, uid=0, limit=8 << 20):
    return {
        "method": method, "msg_size": size, "transfer": 1 << 20, "rate": rate, "zc_sends": completions,
        "zc_completions": completions, "zc_copied": copied, "enobufs": enobufs, "ran_as_uid": uid,
        "memlock_limit": limit, "send_calls": completions or 256,
    }  # fmt: skip


def test_msg_zerocopy_explanation_follows_the_numbers() -> None:
    from tests.report_data import socket_summary

    zc = get_experiment("msg-zerocopy")
    loopback = " ".join(
        zc.explain(
            socket_summary("msg-zerocopy", [
                _zc("send", 65536, 2e9, 0, 0),
                _zc("zerocopy", 65536, 1e9, 16, 16),
                _zc("zerocopy-unprivileged", 65536, 5e8, 16, 16, enobufs=18, uid=65534),
            ])
        )
    )  # fmt: skip
    assert "at 64KiB zerocopy 953.7 MiB/s vs send 1.9 GiB/s, 2.0x slower" in loopback
    assert "All 32 completions" in loopback and "copied the data anyway" in loopback
    assert "up to 2.0x slower than plain send" in loopback
    assert "as uid 65534, RLIMIT_MEMLOCK 8 MiB" in loopback and "ENOBUFS up to 18 times" in loopback
    assert "as root got 0: root is exempt" in loopback and "CAP_IPC_LOCK" in loopback
    nic = " ".join(
        zc.explain(
            socket_summary("msg-zerocopy", [
                _zc("send", 4096, 1e9, 0, 0),
                _zc("zerocopy", 4096, 1.5e9, 256, 100, uid=1000),
                _zc("zerocopy-unprivileged", 4096, 1e9, 256, 100, uid=1000, limit=64 << 10),
            ])
        )
    )  # fmt: skip
    assert "1.5x faster" in nic and "200 of 512 completions were flagged COPIED" in nic
    assert "RLIMIT_MEMLOCK 64 KiB) the zerocopy sender got no ENOBUFS" in nic
    assert "ran as uid 1000 too (not root)" in nic


@pytest.mark.parametrize("name", ["sock-buffer", "zero-byte-recv", "async-send", "msg-zerocopy"])
def test_socket_explanations_are_empty_without_cases(name: str) -> None:
    import pandas as pd

    assert get_experiment(name).explain(pd.DataFrame()) == []


def test_not_run_cases_are_grouped_by_reason_in_the_header() -> None:
    from iobench.report.model import not_run_summary

    rows = [
        ("direct-io", "bs=4096", "unsupported", "EINVAL: O_DIRECT refused a misaligned buffer of 4096 bytes"),
        (
            "direct-io",
            "bs=65536",
            "unsupported",
            "EINVAL: O_DIRECT refused a misaligned buffer of 65536 bytes",
        ),
        ("async-send", "c=64", "unsupported", "31.25 GiB from 64 writers is more than the receiver can hold"),
        ("direct-io", "bs=1", "failed", "ENOSPC"),
    ]
    assert not_run_summary(rows) == [
        ("direct-io", 2, "unsupported", "EINVAL: O_DIRECT refused a misaligned buffer of 4096 bytes"),
        ("async-send", 1, "unsupported", "31.25 GiB from 64 writers is more than the receiver can hold"),
        ("direct-io", 1, "failed", "ENOSPC"),
    ]


def test_a_line_never_joins_different_cases_at_one_x() -> None:
    """mmap-read's series are method and cache; with several madvise values per bs a line would
    zigzag through them, so advice gets lines of its own."""
    from iobench.experiments import get_experiment
    from iobench.report.figures import _series_keys

    experiment = get_experiment("mmap-read")
    rows = pd.DataFrame(
        [
            {
                "run_id": "r",
                "method": "mmap-copy",
                "file_size": 1,
                "bs": bs,
                "advice": advice,
                "cache": "warm",
            }
            for bs in (4096, 65536)
            for advice in ("none", "random")
        ]
    )
    assert _series_keys(experiment, rows, "bs") == ["advice"]
    one_advice = rows[rows["advice"] == "none"]
    assert _series_keys(experiment, one_advice, "bs") == []


# --- tables: medians with their interval, marks, legend ----------------------------------------


def _rw_rows(elapsed: list[float], **extra) -> pd.DataFrame:
    """rw-buffer read rows of one case, one per elapsed value (1 MiB moved each)."""
    return pd.DataFrame(
        [
            {
                "run_id": "r", "experiment": "rw-buffer", "case": "mode=read,file_size=1048576,bs=4096,cache=warm",
                "rep": rep, "status": "ok", "mode": "read", "file_size": 1 << 20, "bs": 4096, "cache": "warm",
                "elapsed_ns": e, "cpu_ns": e, "user_ns": e / 4, "sys_ns": e, "bytes": 1 << 20, "ops": 257,
                "syscalls_read": 257, "syscalls_write": 0,
            }
            | {k: (v[rep - 1] if isinstance(v, list) else v) for k, v in extra.items()}
            for rep, e in enumerate(elapsed, start=1)
        ]
    )  # fmt: skip


def _table(summary: pd.DataFrame, experiment=RwBuffer) -> pd.DataFrame:
    from iobench.report.tables import book_table

    tables = book_table(summary, experiment)
    assert len(tables) == 1
    return tables[0][1]


def test_cells_show_the_median_with_its_interval() -> None:
    elapsed = [1.00e6, 1.02e6, 1.03e6, 1.05e6, 1.10e6, 1.20e6, 1.30e6, 1.50e6]
    table = _table(summarize(_rw_rows(elapsed)))
    cell = table["Elapsed"][0]
    # Median 1.075 ms; of 8 values only min..max covers the median with >= 95% (99.2%).
    assert str(cell) == "1.07 ms ±40%" and cell.detail == "95% interval 1 ms – 1.5 ms"
    # Throughput = bytes / median elapsed (930.2 MiB/s), its interval from elapsed's: 1 MiB
    # in 1.5 ms is 666.7 MiB/s, 28% below.
    assert str(table["Throughput"][0]) == "930.2 MiB/s ±28%"
    assert table["Throughput"][0].detail == "95% interval 666.7 MiB/s – 1000.0 MiB/s"
    assert str(table["read()s"][0]) == "257"  # every repetition agreed: no ±
    assert str(table["Reps"][0]) == "8"


def test_reps_marks_few_repetitions_an_early_stop_and_a_failed_check() -> None:
    from iobench.report.tables import table_legend

    rows = _rw_rows([1e6, 1.1e6, 1.2e6, 5e6], integrity_ok=[True, True, True, False])
    cases = [{"experiment": "rw-buffer", "case": rows["case"][0], "stop_reason": "max_case_time",
              "ci_halfwidth_pct": 23.4}]  # fmt: skip
    summary = summarize(rows, cases=cases)
    table = _table(summary)
    assert str(table["bs"][0]) == "4KiB ✗"
    reps = table["Reps"][0]
    assert str(reps) == "4 †‡✗"
    assert "stopped at max_case_time before its CI target (stopping rule's CI ±23.4%)" in reps.detail
    assert "data check failed in 1 of 4" in reps.detail
    # The failed repetition (5 ms) is left out of the median: 1.1 ms, not 1.15 ms.
    assert str(table["Elapsed"][0]).startswith("1.1 ms ")
    assert "min – max of 3 reps" in table["Elapsed"][0].detail
    legend = " ".join(table_legend(summary, RwBuffer, [(4_000_000, "CONFIG_HZ=250 in /proc/config.gz")]))
    # The medians rest on the 3 repetitions that passed the check.
    assert "† fewer than 6 repetitions (1 of 1 cases)" in legend
    assert "covers the median with 75% at 3 reps" in legend
    assert "‡ stopped at its repetition or time limit" in legend and "up to ±23%" in legend
    assert "✗ the case's own data check (integrity_ok) failed" in legend
    assert "tick 4 ms (CONFIG_HZ=250 in /proc/config.gz)" in legend


def test_a_legend_says_only_what_its_tables_need() -> None:
    from iobench.report.tables import table_legend

    summary = summarize(_rw_rows([1e6] * 6), cases=[{"experiment": "rw-buffer", "case":
                        "mode=read,file_size=1048576,bs=4096,cache=warm", "stop_reason": "ci_target"}])  # fmt: skip
    legend = " ".join(table_legend(summary, RwBuffer))
    assert "Each cell: the median" in legend
    assert "†" not in legend and "‡" not in legend and "✗" not in legend
    assert str(_table(summary)["Reps"][0]) == "6"


def test_the_cpu_split_never_exceeds_the_total_and_shows_a_dash_below_50_ticks() -> None:
    # getrusage per repetition: user + system = 1.25 x the exact total (tick sampling).
    enough = _rw_rows([2e8] * 5)  # 5 x 250 ms of user+system: 125 ticks of 10 ms
    table = _table(summarize(enough))
    total, user, system = (table[c][0] for c in ("Total CPU", "User CPU", "System CPU"))
    assert (str(total), str(user), str(system)) == ("200 ms", "40 ms", "160 ms")
    few = _table(summarize(_rw_rows([1e6] * 5)))
    assert str(few["User CPU"][0]) == "–" and str(few["System CPU"][0]) == "–"
    assert "fewer than 50 scheduler ticks" in few["User CPU"][0].detail


def test_relative_columns_carry_the_interval_of_the_ratio() -> None:
    sync = get_experiment("sync-write")
    rows = []
    for mode, scale in (("buffered", 1.0), ("O_SYNC", 30.0)):
        for rep, e in enumerate((1.0e6, 1.1e6, 1.2e6, 1.3e6, 1.4e6, 1.5e6), start=1):
            rows.append({"run_id": "r", "experiment": "sync-write", "case": f"mode={mode}", "rep": rep,
                         "status": "ok", "mode": mode, "total": 1 << 18, "bs": 4096, "sync_every": 8,
                         "elapsed_ns": e * scale, "cpu_ns": 1e5, "bytes": 1 << 18})  # fmt: skip
    table = _table(summarize(pd.DataFrame(rows)), sync)
    from iobench.stats import difference

    buffered = (1.0e6, 1.1e6, 1.2e6, 1.3e6, 1.4e6, 1.5e6)
    ratio = difference(buffered, [30 * e for e in buffered])
    spread = 100 * max(ratio.high - ratio.ratio, ratio.ratio - ratio.low) / ratio.ratio
    assert [str(c) for c in table["vs buffered"]] == ["1", f"{ratio.ratio:.3g} ±{spread:.0f}%"]
    assert table["vs buffered"][1].detail == f"95% interval {ratio.low:.3g} – {ratio.high:.3g}"


def test_html_cells_hold_the_interval_and_the_legend_follows_the_tables(tmp_path: Path) -> None:
    run = make_run("20260101-000000-aaaa", speed=STEEP)
    build_report([run], tmp_path, ("html", "md"))
    html = (tmp_path / "report.html").read_text()
    assert re.search(
        r'<td title="min – max of 5 reps: [^"]+ \(covers the median with 94%\)">[\d.]+ \S+ ±\d+%</td>', html
    )
    assert '<ul class="legend">' in html and "Hover a cell for its interval." in html
    markdown = (tmp_path / "report.md").read_text()
    assert "<sub>† fewer than 6 repetitions (5 of 5 cases)" in markdown


@pytest.mark.parametrize("mode", ["inline", "links", "none"])
def test_md_images(tmp_path: Path, mode: str) -> None:
    write_run(tmp_path, make_run("20260101-000000-aaaa", speed=STEEP))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "--out",
            str(tmp_path),
            "--format",
            "md,png",
            "--md-images",
            mode,
            "--report-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    markdown = (out / "report.md").read_text()
    sources = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    if mode == "none":
        assert sources == []
    elif mode == "links":
        assert sources == ["rw-buffer-throughput.png", "rw-buffer-stacked-cpu.png"]
        assert all((out / s).is_file() for s in sources)
    else:
        import base64

        assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
        assert base64.b64decode(sources[0].split(",", 1)[1]).startswith(b"\x89PNG")


def test_md_images_inline_needs_no_png_files(tmp_path: Path) -> None:
    written = build_report(
        [make_run("20260101-000000-aaaa", speed=STEEP)], tmp_path, ("md",), md_images="inline"
    )
    assert written == [tmp_path / "report.md"]
    assert (tmp_path / "report.md").read_text().count("](data:image/png;base64,") == 2


def test_md_images_bad_value_is_one_line_exit_2(tmp_path: Path) -> None:
    write_run(tmp_path, make_run("20260101-000000-aaaa", speed=STEEP))
    result = CliRunner().invoke(cli, ["report", "--out", str(tmp_path), "--md-images", "base64"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "'base64' is not one of 'inline', 'links', 'none'" in result.output


def test_terminal_tables_show_intervals_marks_and_the_legend(capsys: pytest.CaptureFixture[str]) -> None:
    from iobench.api import Run
    from iobench.cli import _print_tables

    meta = {
        "host": {"cpu_tick_ns": 4_000_000, "cpu_tick_source": "CONFIG_HZ=250 in /boot/config"},
        "cases": [],
    }
    _print_tables(Run(_rw_rows([1e6, 1.1e6, 1.2e6]), meta))
    out = capsys.readouterr().out
    assert "1.1 ms ±9%" in out and "3 †" in out
    assert "† fewer than 6 repetitions" in out and "tick 4 ms (CONFIG_HZ=250 in /boot/config)" in out


def test_cases_whose_data_check_failed_are_counted_in_the_run_warnings(tmp_path: Path) -> None:
    run = make_run("20260101-000000-aaaa", lost=300)  # write-racing lost records in every rep
    build_report([run], tmp_path, ("html", "md"))
    markdown = (tmp_path / "report.md").read_text()
    assert (
        "- file-concurrency mode=write-racing,threads=4: the data check failed in 5 of 5 repetitions "
        "(the medians include them: none passed)"
    ) in markdown
    assert "mode=pwrite,threads=4: the data check" not in markdown
    assert "| write-racing ✗ |" in markdown


def test_a_cell_whose_repetitions_agree_says_so() -> None:
    from iobench.report.estimates import Estimate
    from iobench.report.tables import estimate_cell

    same = estimate_cell(Estimate(0.0, 0.0, 0.0, 8, 0.99), "count")
    assert (same.text, same.detail) == ("0", "every repetition gave 0")
    zero_median = estimate_cell(Estimate(0.0, 0.0, 2.0, 8, 0.99), "count")
    assert (zero_median.text, zero_median.detail) == ("0", "95% interval 0 – 2")  # no ± around a median of 0
