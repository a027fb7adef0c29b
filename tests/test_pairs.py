"""Paired fleet runs (``--pairs CLIENT:PEER``): a real scheduler and workers h1, h2, h3 on this
machine; the client of a pair runs the socket case, an ``iobench serve`` started on the peer's
worker is its peer, and that serve is gone once the run ends, however it ends.

Fleet clients run as subprocesses (a dask Client leaves threads in its process); the
refusals that come before any connection run in CliRunner too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from iobench.cli import cli
from iobench.errors import ParamError
from iobench.fleet.pairs import Pair, parse_pairs
from tests.dask_processes import (
    DASK,
    DaskProcesses,
    case_rows,
    cmdline,
    descendants,
    needs_dask,
    run_iobench,
    serves_below,
)

IOBENCH = Path(sys.executable).parent / "iobench"
#: One tiny TCP case: 256 KiB twice to the peer.
CASE = ["sock-buffer", "--transport", "tcp", "--buffers", "unset", "--transfer", "256KiB",
        "--warmup", "0", "--min-reps", "2", "--max-reps", "2"]  # fmt: skip
ADDRESS = re.compile(r"^127\.0\.0\.1:(\d+)$")


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcesses]:
    """Scheduler + hosts h1, h2, h3 (this iobench)."""
    if not DASK.exists():
        pytest.skip("Dask distributed is not installed (pip install 'iobench[fleet]')")
    cluster = DaskProcesses(tmp_path_factory.mktemp("dask"))
    try:
        cluster.scheduler()
        cluster.workers(("h1", None), ("h2", None), ("h3", None))
        yield cluster
    finally:
        cluster.stop()


def _wait_until(condition, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


@needs_dask
def test_a_paired_run_measures_against_a_serve_on_the_peer_host_and_stops_it(
    dask_cluster: DaskProcesses, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_iobench(*["run", *CASE], "--cluster", dask_cluster.address, "--pairs", "h1:h2",
                    "--dir", str(tmp_path), "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "host h1: complete, 1 of 1 recorded cases ok" in done.stderr
    assert (
        "warning: pair h1:h2 is on one machine (127.0.0.1): its socket cases measure loopback" in done.stderr
    )
    (fleet,) = out.iterdir()
    data = json.loads((fleet / "fleet.json").read_text())
    assert data["status"] == "complete"
    assert list(data["hosts"]) == ["h1"]  # the peer host runs no cases of its own
    assert data["pairs"] == [{"client": "h1", "peer": "h2"}]
    run = fleet / data["hosts"]["h1"]["run"]
    meta = json.loads((run / "meta.json").read_text())
    peer = meta["peer"]
    assert sorted(peer) == ["address", "host", "peer_host", "pid", "worker"]  # never the token
    expected = {"hostname": os.uname().nodename, "kernel": os.uname().release, "cpus": os.cpu_count()}
    assert {key: peer["host"].get(key) for key in expected} == expected  # the serve's host facts
    assert ADDRESS.match(peer["address"]) and peer["peer_host"] == "h2"
    assert peer["worker"] == data["hosts"]["h1"]["peer"]["worker"] != data["hosts"]["h1"]["worker"]
    assert meta["fleet"]["peer_host"] == "h2"
    rows = case_rows(run)
    assert len(rows) == 2
    assert {(r["status"], r["peer"], r["peer_host"], r["host"], r["integrity_ok"]) for r in rows} == {
        ("ok", peer["address"], "h2", "h1", True)
    }
    assert {r["bytes"] for r in rows} == {256 * 1024}
    assert "peer,host,worker,peer_host" in (run / "results.csv").read_text().splitlines()[0]
    # the serve ran under h2's worker, and nothing of it is left
    assert serves_below(dask_cluster.pid("h2")) == []
    assert cmdline(peer["pid"]) == ""

    # the API: a second run gets a serve of its own (a new port, a new token)
    code = (
        "import iobench\n"
        f"fleet = iobench.run('sock-buffer', transport='tcp', buffers='unset', transfer='256KiB', warmup=0, "
        f"min_reps=2, max_reps=2, cluster={dask_cluster.address!r}, pairs='h1:h2', dir={str(tmp_path)!r}, "
        f"out={str(tmp_path / 'api')!r})\n"
        "rows = fleet.hosts['h1'].records()\n"
        "print(fleet.status, sorted(fleet.hosts), sorted({(r['peer_host'], r['integrity_ok']) for r in rows}))\n"
        "print(fleet.hosts['h1'].meta['peer']['address'])\n"
    )
    api = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "IOBENCH_PARQUET": "0"})  # fmt: skip
    assert api.returncode == 0, api.stderr
    summary, address = api.stdout.splitlines()
    assert summary == "complete ['h1'] [('h2', True)]"
    assert ADDRESS.match(address) and address != peer["address"]
    assert serves_below(dask_cluster.pid("h2")) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--pairs", "h1:h2"],
         "Error: --pairs pairs hosts of a fleet run: give --cluster too (see 'iobench run sock-buffer --help')"),
        (["--cluster", "tcp://127.0.0.1:9", "--pairs", "h1:h2", "--peer", "127.0.0.1:7300"],
         "Error: --pairs starts each pair's peer on its peer host: give no --peer (see 'iobench run sock-buffer --help')"),
        (["--cluster", "tcp://127.0.0.1:9", "--peer", "127.0.0.1:7300"],
         "Error: --peer with --cluster: to run the socket peers on other fleet hosts, give --pairs CLIENT:PEER"),
        (["--cluster", "tcp://127.0.0.1:9", "--pairs", "h1:h2", "--hosts", "h3"],
         "Error: --pairs names the hosts of the run (the pairs' clients): give no --hosts"),
        (["--cluster", "tcp://127.0.0.1:9", "--pairs", "h1"],
         "Error: --pairs: 'h1' is not CLIENT:PEER (give CLIENT:PEER[,CLIENT:PEER...], worker names)"),
        (["--cluster", "tcp://127.0.0.1:9", "--pairs", "h1:h1"],
         "Error: --pairs: h1:h1: a host cannot be its own peer"),
        (["--cluster", "tcp://127.0.0.1:9", "--pairs", "h1:h2,h3:h1"],
         "Error: --pairs: host h1 is in two pairs (h1:h2, h3:h1): a host is one pair's client or one pair's peer"),
    ],
)  # fmt: skip
def test_bad_pairings_and_options_are_refused_with_one_line_before_connecting(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", *CASE, *args, "--out", str(out)], prog_name="iobench")
    assert result.exit_code == 2
    assert result.output == expected + "\n"
    assert not out.exists()


def test_a_resumed_fleet_keeps_its_own_pairs(tmp_path: Path) -> None:
    args = ["run", "sweep", "--resume", str(tmp_path), "--cluster", "tcp://127.0.0.1:9", "--pairs", "h1:h2"]
    result = CliRunner().invoke(cli, args, prog_name="iobench")
    assert result.exit_code == 2
    assert result.output == (
        "Error: --resume of a fleet run keeps its own hosts and pairs: give no --hosts or --pairs "
        "(see 'iobench run sweep --help')\n"
    )


def test_pairs_refused_in_a_real_process_and_through_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "IOBENCH_PAIRS": "h1:h2,h2:h3", "IOBENCH_CLUSTER": "tcp://127.0.0.1:9"}
    done = subprocess.run([str(IOBENCH), "run", *CASE, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=30, env=env)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "Error: --pairs: host h2 is in two pairs (h1:h2, h2:h3): a host is one pair's client or one pair's peer\n"
    )
    assert not (tmp_path / "out").exists()


def test_parse_pairs() -> None:
    assert parse_pairs(None) == [] and parse_pairs(" ") == []
    assert parse_pairs(" a:b , c:d ") == [Pair("a", "b"), Pair("c", "d")]
    with pytest.raises(ParamError, match=r"^--pairs: 'a:b:c' is not CLIENT:PEER"):
        parse_pairs("a:b:c")
    with pytest.raises(ParamError, match=r"^--pairs: '' is not CLIENT:PEER"):
        parse_pairs("a:b,")
    with pytest.raises(ParamError, match=r"^--pairs: host b is in two pairs \(a:b, b:c\)"):
        parse_pairs("a:b,b:c")


@needs_dask
def test_an_unknown_host_is_refused_with_one_line_before_any_case(
    dask_cluster: DaskProcesses, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_iobench(*["run", *CASE], "--cluster", dask_cluster.address, "--pairs", "h1:nope",
                    "--dir", str(tmp_path), "--out", str(out))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "Error: --pairs h1:nope: no worker is named 'nope' (workers: h1, h2, h3)\n"
    assert not out.exists()
    assert serves_below(dask_cluster.pid("h2")) == []


def test_a_serve_stops_when_the_process_that_started_it_dies(tmp_path: Path) -> None:
    """The worker side without Dask: start_serve in a stand-in worker process, then SIGKILL it."""
    code = (
        "import json, time\n"
        "from iobench.fleet.task import start_serve, stop_serve\n"
        "print(json.dumps(start_serve('kept', '127.0.0.1', 'tok-kept-123')), flush=True)\n"
        "print(json.dumps(start_serve('stopped', '127.0.0.1', 'tok-stopped')), flush=True)\n"
        "print(json.dumps(stop_serve('stopped')), flush=True)\n"
        "print(json.dumps(start_serve('bad', '192.0.2.1', 'tok-bad')), flush=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        kept, stopped, stop_answer, bad, ready = (worker.stdout.readline().strip() for _ in range(5))
        assert ready == "ready", (kept, stopped, stop_answer, bad)
        kept_answer = json.loads(kept)
        assert ADDRESS.match(kept_answer["address"])
        pid = kept_answer["pid"]
        assert "iobench serve --bind 127.0.0.1 --port 0" in cmdline(pid)
        assert "tok-kept-123" not in cmdline(pid)  # argv is readable by every user of the host
        assert b"IOBENCH_PEER_TOKEN=tok-kept-123\0" in Path(f"/proc/{pid}/environ").read_bytes()
        assert json.loads(stop_answer) == {"stopped": json.loads(stopped)["pid"], "status": 0}
        assert json.loads(bad) == {
            "error": "iobench serve did not start: Error: cannot listen on 192.0.2.1:0: Cannot assign requested address"
        }
        assert serves_below(worker.pid) == [pid]
        worker.kill()
        worker.wait(10)
        assert _wait_until(lambda: cmdline(pid) == "" or _state(pid) == "Z", 10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2 :].split()[0]


@needs_dask
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_client_ended_by_a_signal_leaves_no_serve(
    dask_cluster: DaskProcesses, tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGTERM: the client stops its serves on the way out. SIGKILL: nothing runs in the client;
    the scheduler drops its tasks' results, and with the start task's the serve stops."""
    # long enough to still be running when the serve is found: 200 repetitions of 64 MiB
    args = ["run", "sock-buffer", "--transport", "tcp", "--buffers", "unset", "--transfer", "64MiB",
            "--warmup", "0", "--min-reps", "200", "--max-reps", "200", "--cluster", dask_cluster.address,
            "--pairs", "h3:h2", "--dir", str(tmp_path), "--out", str(tmp_path / "out"), "-q"]  # fmt: skip
    client = subprocess.Popen([str(IOBENCH), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "IOBENCH_PARQUET": "0"})  # fmt: skip
    peer_worker, client_worker = dask_cluster.pid("h2"), dask_cluster.pid("h3")

    def measuring() -> bool:  # the serve listens and h3's measuring child runs the case
        children = [cmdline(p) for p in descendants(client_worker)]
        return serves_below(peer_worker) != [] and any("iobench.fleet.child" in c for c in children)

    try:
        assert _wait_until(lambda: measuring() or client.poll() is not None, 30)
        assert client.poll() is None, client.communicate()
        client.send_signal(signum)
        _, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    if signum == signal.SIGTERM:
        assert client.returncode == 130, err
        assert err.startswith("Error: interrupted; finished cases kept in "), err
    else:
        assert client.returncode == -signal.SIGKILL
    assert _wait_until(lambda: serves_below(peer_worker) == [], 5), [
        cmdline(p) for p in serves_below(peer_worker)
    ]


@needs_dask
def test_a_peer_host_lost_mid_case_stops_its_client_and_its_serve_goes_with_it(
    dask_cluster: DaskProcesses, tmp_path: Path
) -> None:
    dask_cluster.workers(("c9", None), ("p9", None))
    out = tmp_path / "out"
    # two long cases: the kill lands in the first, the second is not run
    args = ["run", "sock-buffer", "--transport", "tcp", "--buffers", "unset", "--transfer", "64MiB,32MiB",
            "--warmup", "0", "--min-reps", "200", "--max-reps", "200", "--cluster", dask_cluster.address,
            "--pairs", "c9:p9", "--dir", str(tmp_path), "--out", str(out), "-q"]  # fmt: skip
    client = subprocess.Popen([str(IOBENCH), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "IOBENCH_PARQUET": "0"})  # fmt: skip
    try:
        peer_worker, client_worker = dask_cluster.pid("p9"), dask_cluster.pid("c9")

        def measuring() -> bool:  # the serve listens and c9's measuring child runs the case
            children = [cmdline(p) for p in descendants(client_worker)]
            return serves_below(peer_worker) != [] and any("iobench.fleet.child" in c for c in children)

        assert _wait_until(lambda: measuring() or client.poll() is not None, 30)
        serves = serves_below(peer_worker)
        dask_cluster.kill("p9")
        _, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    assert client.returncode == 3, err
    assert "host c9: failed, 0 of 1 recorded cases ok (peer host lost during sock-buffer " in err
    (fleet,) = out.iterdir()
    data = json.loads((fleet / "fleet.json").read_text())
    meta = json.loads((fleet / data["hosts"]["c9"]["run"] / "meta.json").read_text())
    (lost,) = meta["cases"]
    assert lost["status"] == "failed" and lost["reason"].startswith("peer host lost (p9 at tcp://127.0.0.1:")
    assert len(meta["not_run"]) == 1 and meta["not_run"][0]["reason"] == "peer host lost earlier in the run"
    # the worker died by SIGKILL: its serve read EOF on stdin and stopped by itself
    assert serves and _wait_until(lambda: all(cmdline(p) == "" or _state(p) == "Z" for p in serves), 5)
