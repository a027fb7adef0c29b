"""``--peer netns``: the socket experiments against a virtual host over an emulated link.

The link tests need root and ``ip`` (skipped with the reason otherwise); the parameter and
refusal tests run everywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

import iobench
from iobench.cli import cli
from iobench.engine.protocol import Protocol
from iobench.execute import LocalExecutor
from iobench.experiments import get_experiment
from iobench.experiments.base import Experiment
from iobench.netemu import ns
from iobench.osutil.children import run_in_child
from iobench.params import Kind, Param
from iobench.peer.address import NetnsPeer, parse_peer
from iobench.peer.netns import LINK_PARAM_NAMES, LINK_PARAMS
from iobench.plan import PlanEntry, plan_cases
from iobench.units import UnitError, format_bitrate, parse_bitrate

from .netns_support import needs_link

MS = 1_000_000
TINY = {"warmup": 0, "min_reps": 3, "max_reps": 3}


def _namespaces() -> list[str]:
    return ns.listed()


def _serve_processes() -> list[str]:
    done = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if "iobench serve --bind 10.231." in line]


# -- parameters and refusals (no root needed) ------------------------------------------------------


def test_bitrate_parses_tc_spellings_and_formats_them_back() -> None:
    assert parse_bitrate("1gbit") == 10**9
    assert parse_bitrate("100mbit") == 10**8
    assert parse_bitrate("2.5gbit") == 2_500_000_000
    assert parse_bitrate("64kbit") == 64_000
    assert parse_bitrate("0") == 0
    for value in (10**9, 10**8, 2_500_000_000, 64_000, 1234):
        assert parse_bitrate(format_bitrate(value)) == value
    assert format_bitrate(2_500_000_000) == "2500mbit"
    for bad in ("1gb", "fast", "-1gbit", "1.5bit", True):
        with pytest.raises(UnitError):
            parse_bitrate(bad)  # type: ignore[arg-type]


def test_every_experiment_with_a_remote_peer_takes_the_link_parameters() -> None:
    from iobench.experiments import all_experiments

    for experiment in all_experiments():
        names = {p.name for p in experiment.params}
        assert (names >= LINK_PARAM_NAMES) == experiment.remote_peer, experiment.name
    rate = next(p for p in get_experiment("sock-buffer").params if p.name == "rate")
    assert rate.kind is Kind.BITRATE and rate.parse("1gbit,100mbit") == (10**9, 10**8)


def test_loopback_case_ids_do_not_change_with_the_link_parameters() -> None:
    """At their defaults the link parameters are left out of ids: old baselines still match."""
    sock = get_experiment("sock-buffer")
    entry = PlanEntry(sock, {p.name: p.default for p in sock.params} | {"transport": ("tcp",)}, Protocol())
    ids = [spec.case_id for spec in plan_cases([entry])]
    assert ids and all(not case_id.startswith(("rtt=", "rate=", "loss=")) for case_id in ids)
    assert "transport=tcp,buffers=unset,bufsize=0,transfer=8388608,chunk=65536" in ids


def test_cases_without_a_peer_are_not_repeated_per_link() -> None:
    """zero-copy's file-to-file methods have no peer: one case each, whatever --rtt lists."""
    zero_copy = get_experiment("zero-copy")
    values = {p.name: p.default for p in zero_copy.params} | {"rtt": (MS, 10 * MS)}
    specs = plan_cases([PlanEntry(zero_copy, values, Protocol())], peer=NetnsPeer())
    per_method: dict[str, int] = {}
    for spec in specs:
        per_method[spec.params["method"]] = per_method.get(spec.params["method"], 0) + 1
    file_counts = {per_method[m] for m in ("read-write", "sendfile", "copy_file_range", "splice")}
    tcp_counts = {per_method[m] for m in ("tcp-sendall", "tcp-sendfile")}
    assert tcp_counts == {2 * next(iter(file_counts))}, per_method


def test_link_parameters_without_peer_netns_are_refused_with_one_line(tmp_path: Path) -> None:
    args = [
        "run",
        "sock-buffer",
        "--rtt",
        "10ms",
        "--transport",
        "tcp",
        "--dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "--rtt, --rate and --loss describe an emulated link; they need --peer netns" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    done = subprocess.run(
        [sys.executable, "-m", "iobench", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "need --peer netns" in done.stderr


def test_parse_peer_netns_is_the_virtual_host() -> None:
    peer = parse_peer("netns")
    assert isinstance(peer, NetnsPeer) and str(peer) == "netns"
    assert peer.token and peer.token not in repr(peer)


def _netns_run_as_nobody() -> tuple[Any, ...]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        run = iobench.run(
            "sock-buffer", transport="tcp", buffers="rcvbuf", bufsize="64KiB", transfer="64KiB",
            rtt="10ms", peer="netns", out=None, dir=folder, **TINY,
        )  # fmt: skip
    (row,) = run.records()
    return row["status"], row["status_reason"], row["peer"], dict(run.meta["peer"]), os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_without_root_the_cases_are_unsupported_with_the_reason() -> None:
    get_experiment("sock-buffer")  # load modules before giving up root
    (status, reason, peer, meta, uid), _ = run_in_child(_netns_run_as_nobody, drop_root=True, timeout_s=60)
    assert uid != 0
    assert status == "unsupported"
    assert reason.startswith("an emulated link needs root (network namespaces take CAP_SYS_ADMIN)")
    assert peer == "netns"
    assert meta["address"] == "netns" and meta["unsupported"].startswith("an emulated link needs root")


# -- over a real emulated link ---------------------------------------------------------------------


@needs_link
def test_fixed_window_runs_at_window_over_rtt_at_10ms(tmp_path: Path) -> None:
    """The bandwidth-delay law through the whole stack: sock-buffer, --peer netns, RTT 10 ms.

    SO_RCVBUF 64 KiB is locked at 128 KiB and the window at 128 KiB x scaling_ratio / 256
    (TCP_WINDOW_CLAMP, read by the receiver: peer_window_bytes). One window per round trip:
    throughput <= window / RTT (the link's minimum ping-pong RTT). Bounds: at most 1.10 (the
    window is a hard cap; 10% for RTT measured a little long), at least 0.70 (2 MiB is ~26
    round trips, of which slow start takes ~3, and the relay releases packets late on a busy
    machine)."""
    run = iobench.run(
        "sock-buffer", transport="tcp", buffers="rcvbuf", bufsize="64KiB", transfer="2MiB",
        rtt="10ms", peer="netns", out=tmp_path / "out", dir=tmp_path, **TINY,
    )  # fmt: skip
    rows = run.records()
    assert [row["status"] for row in rows] == ["ok"] * 3
    for row in rows:
        assert row["peer"] == "netns" and row["integrity_ok"]
        assert row["link_emulator"] in ("netem", "tun-relay")
        assert row["link_rtt_ns"] == 10 * MS
        assert 10 * MS <= row["link_rtt_min_ns"] < 13 * MS
        assert 64 << 10 < row["peer_window_bytes"] <= 128 << 10
    (summary,) = run.case_summaries()
    limit = summary["peer_window_bytes"] / summary["link_rtt_min_ns"] * 1e9
    ratio = summary["bytes_per_s"] / limit
    assert 0.70 <= ratio <= 1.10, (ratio, summary["bytes_per_s"], limit)
    meta = json.loads(next((tmp_path / "out").iterdir()).joinpath("meta.json").read_text())
    (link,) = meta["links"]
    assert link["link_rtt_ns"] == 10 * MS
    assert link["link_emulator"] == "netem" or link["relay_counters"]["a_to_b"]["relayed"] > 1000
    sentences = get_experiment("sock-buffer").explain(run.summary)
    law = [s for s in sentences if "throughput <= min(window / RTT, link rate)" in s]
    assert law and law[0].startswith("Over the emulated link (RTT 10ms): ")
    assert "SO_RCVBUF 64KiB (window 80 KiB, 2 MiB sent)" in law[0] and "the window limits" in law[0]
    assert _namespaces() == []


class _FailsOverTheLink(Experiment):
    """A peer experiment whose timed window fails: the link must still go away."""

    name = "fails-over-the-link"
    summary = "test only"
    seed_idea = "test only"
    remote_peer = True
    # What experiments.register adds to a remote-peer experiment (not registered: the
    # registry is the package's, and other tests list it).
    params: ClassVar[tuple[Param, ...]] = LINK_PARAMS

    def run_once(self) -> dict[str, Any]:
        raise RuntimeError("broken on purpose")


@needs_link
def test_a_failed_case_still_tears_the_link_down(tmp_path: Path) -> None:
    experiment = _FailsOverTheLink
    entry = PlanEntry(experiment, {"rtt": (MS,), "rate": (0,), "loss": (0.0,)}, Protocol(**TINY))
    specs = plan_cases([entry], peer=NetnsPeer())
    executor = LocalExecutor(lambda name: experiment, tmp_path)
    (result,) = list(executor.map(specs))
    (row,) = result.rows
    assert row["status"] == "failed" and row["status_reason"] == "RuntimeError: broken on purpose"
    assert row["peer"] == "netns" and row["link_rtt_ns"] == MS
    assert _namespaces() == [] and _serve_processes() == []


@needs_link
def test_sigint_during_a_netns_run_leaves_no_namespace_or_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [
        sys.executable, "-m", "iobench", "run", "sock-buffer", "--peer", "netns", "--rtt", "50ms",
        "--transport", "tcp", "--buffers", "rcvbuf", "--bufsize", "64KiB", "--transfer", "4MiB",
        "--warmup", "0", "--min-reps", "5", "--max-reps", "5", "--dir", str(tmp_path), "--out", str(out), "-q",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not _serve_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _serve_processes(), "the virtual host never started"
        time.sleep(1.5)  # into the measuring
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert _namespaces() == [] and _serve_processes() == []
    (run,) = list(out.iterdir())
    assert json.loads((run / "meta.json").read_text())["status"] == "interrupted"
    assert os.path.exists(run / "meta.json")


def test_a_rate_below_the_slowest_link_is_refused_with_one_line(tmp_path: Path) -> None:
    args = ["run", "sock-buffer", "--peer", "netns", "--rate", "1bit", "--transport", "tcp", "--buffers", "unset",
            "--dir", str(tmp_path), "--out", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.endswith("--rate 1bit is below the slowest link iobench emulates (64kbit; 0 for no limit)")
    assert not (tmp_path / "out").exists()


@needs_link
def test_after_sigkill_the_server_ends_and_clean_removes_the_namespaces(tmp_path: Path) -> None:
    """SIGKILL leaves no handler to tear down: the server inside sees its stdin close and ends;
    the namespaces wait for `iobench clean` (or the next link)."""
    argv = [
        sys.executable, "-m", "iobench", "run", "sock-buffer", "--peer", "netns", "--rtt", "50ms",
        "--transport", "tcp", "--buffers", "rcvbuf", "--bufsize", "64KiB", "--transfer", "4MiB",
        "--warmup", "0", "--min-reps", "5", "--max-reps", "5", "--dir", str(tmp_path), "--out", str(tmp_path / "out"), "-q",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _serve_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _serve_processes(), "the virtual host never started"
    finally:
        process.kill()
        process.wait()
    mine = [name for name in _namespaces() if name.startswith(f"iobench-{process.pid}-")]
    assert len(mine) == 2
    deadline = time.monotonic() + 10
    while _serve_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _serve_processes() == []
    done = subprocess.run(
        [sys.executable, "-m", "iobench", "clean", "--dir", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in mine:
        assert f"removed network namespace {name} and its processes" in done.stdout
    assert not set(mine) & set(_namespaces())
