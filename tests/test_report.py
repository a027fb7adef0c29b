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
    assert [label for label, _ in section.explanations] == ["alpha aaaa", "beta bbbb"]
    assert len(section.tables) == 2
    axes = section.figures[0].figure.axes[0]
    assert sorted(axes.get_legend_handles_labels()[1]) == ["alpha aaaa", "beta bbbb"]
    build_report([before, after], tmp_path, ("html",))
    assert (tmp_path / "report.html").read_text().count('class="run"') == 2


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
