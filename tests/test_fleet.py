"""Fleet runs on Dask distributed: a real scheduler and real `dask worker` processes on this
machine, each worker one "host" (its --name).

The cluster runs in processes of its own and every fleet client is a subprocess (the CLI, or
`python -c` for the API): a dask Client leaves threads in its process, and other tests of
this suite count the threads of the pytest process around timed windows. The CliRunner tests
are those that never load dask (a refused scheduler is found by a TCP check first).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import iobench
from iobench.cli import cli
from iobench.errors import ClusterError
from iobench.fleet.cluster import Host, choose_hosts
from tests.dask_processes import DASK, DaskProcesses, case_rows, needs_dask, run_iobench

BIN = Path(sys.executable).parent
IOBENCH = BIN / "iobench"
#: Tiny cases: 2 repetitions of a few thousand getppid() calls.
TINY = ["--call", "getppid", "--calls", "1000,2000", "--min-reps", "2", "--max-reps", "2", "--warmup", "0"]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcesses]:
    """Scheduler + hosts h1, h2 (this iobench), old (reports iobench 0.0.1), bare (no iobench)."""
    if not DASK.exists():
        pytest.skip("Dask distributed is not installed (pip install 'iobench[fleet]')")
    folder = tmp_path_factory.mktemp("dask")
    (folder / "old_iobench.py").write_text("import iobench\niobench.__version__ = '0.0.1'\n")
    (folder / "no_iobench.py").write_text("import sys\nsys.modules['iobench'] = None\n")
    cluster = DaskProcesses(folder)
    try:
        cluster.scheduler()
        cluster.workers(
            ("h1", None),
            ("h2", None),
            ("old", str(folder / "old_iobench.py")),
            ("bare", str(folder / "no_iobench.py")),
        )
        yield cluster
    finally:
        cluster.stop()


@needs_dask
def test_a_fleet_run_measures_every_case_on_each_host_and_reports_per_host(
    dask_cluster: DaskProcesses, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_iobench(
        "run", "syscall", *TINY, "--cluster", dask_cluster.address, "--hosts", "h*",
        "--dir", str(tmp_path), "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "host h1: complete, 2 of 2 recorded cases ok" in done.stderr
    assert "host h2: complete, 2 of 2 recorded cases ok" in done.stderr
    (fleet,) = out.iterdir()
    assert fleet.name.startswith("fleet-")
    data = json.loads((fleet / "fleet.json").read_text())
    assert data["status"] == "complete" and sorted(data["hosts"]) == ["h1", "h2"]
    for name, host in data["hosts"].items():
        run = fleet / host["run"]
        meta = json.loads((run / "meta.json").read_text())
        assert meta["status"] == "complete"
        assert meta["fleet"]["host"] == name and meta["fleet"]["worker"] == host["worker"]
        # the profiler and the system monitor were stopped on the worker, and it is recorded
        assert {"profile", "monitor"} <= set(meta["fleet"]["dask"]["stopped"])
        assert meta["fleet"]["dask"]["distributed"]
        rows = case_rows(run)
        assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
        assert {(r["host"], r["worker"]) for r in rows} == {(name, host["worker"])}
        assert "host,worker" in (run / "results.csv").read_text().splitlines()[0]
    # the worker ran the case in a child: one thread there while measuring
    summaries = [
        json.loads(line)["summary"]
        for line in (fleet / data["hosts"]["h1"]["run"] / "cases.jsonl").read_text().splitlines()
    ]
    assert {s["process_threads"] for s in summaries} == {1}

    report = CliRunner().invoke(cli, ["report", str(fleet), "--format", "md,png"])
    assert report.exit_code == 0, report.output
    text = (fleet / "report" / "report.md").read_text()
    assert "## Hosts vs fleet median" in text
    for host in ("h1", "h2"):
        for calls in (1000, 2000):
            assert f" | {host} | syscall calls={calls} call=getppid | " in text
    assert "## Run `h1` (complete)" in text and "## Run `h2` (complete)" in text
    assert list((fleet / "report").glob("syscall-*.png"))

    loaded = iobench.load(fleet)
    assert isinstance(loaded, iobench.Fleet) and sorted(loaded.hosts) == ["h1", "h2"]
    assert set(loaded.frame["host"]) == {"h1", "h2"}

    # a second fleet run, compared host by host
    again = run_iobench(
        "run", "syscall", *TINY, "--cluster", dask_cluster.address, "--hosts", "h1,h2",
        "--dir", str(tmp_path), "--out", str(out), "-q",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    first, second = sorted(out.glob("fleet-*"))
    compared = CliRunner().invoke(cli, ["compare", str(first), str(second), "--allow-missing"])
    assert compared.exit_code in (0, 1), compared.output
    assert "host h1:" in compared.output and "host h2:" in compared.output


@needs_dask
def test_a_sweep_config_runs_on_the_fleet_through_the_api(
    dask_cluster: DaskProcesses, tmp_path: Path
) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[protocol]\nwarmup = 0\nmin_reps = 2\nmax_reps = 2\n\n"
        '[[experiment]]\nname = "syscall"\ncall = "getppid"\ncalls = [1000, 3000]\n'
    )
    code = (
        "import iobench, sys\n"
        f"fleet = iobench.sweep({str(config)!r}, cluster={dask_cluster.address!r}, hosts='h1,h2', "
        f"dir={str(tmp_path)!r}, out={str(tmp_path / 'out')!r})\n"
        "print(type(fleet).__name__, fleet.status, sorted(fleet.hosts), len(fleet.frame))\n"
        "print(sorted(set(fleet.frame['host'])))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Fleet complete ['h1', 'h2'] 8", "['h1', 'h2']"]


@needs_dask
def test_a_worker_killed_mid_case_fails_that_case_and_resume_reruns_only_what_is_missing(
    dask_cluster: DaskProcesses, tmp_path: Path
) -> None:
    dask_cluster.workers(("k1", None), ("k2", None))
    out = tmp_path / "out"
    # three cases of about a second each per host: the kill lands inside k2's second case
    args = ["run", "syscall", "--call", "getppid", "--calls", "1000000,1000001,1000002", "--min-reps", "3",
            "--max-reps", "3", "--warmup", "0", "--cluster", dask_cluster.address, "--hosts", "k1,k2",
            "--dir", str(tmp_path), "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen([str(IOBENCH), *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "] k2: " in line:
                dask_cluster.kill("k2")  # k2's next case is in flight now
                break
        _, tail = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = "".join(lines) + tail
    assert proc.returncode == 3, stderr
    assert "host k1: complete, 3 of 3 recorded cases ok" in stderr
    assert "host k2: failed, 1 of 2 recorded cases ok (worker lost during syscall" in stderr
    (fleet,) = out.iterdir()
    data = json.loads((fleet / "fleet.json").read_text())
    k1, k2 = fleet / data["hosts"]["k1"]["run"], fleet / data["hosts"]["k2"]["run"]
    meta = json.loads((k2 / "meta.json").read_text())
    lost = [c for c in meta["cases"] if c["status"] == "failed"]
    assert len(lost) == 1 and lost[0]["reason"].startswith("worker lost (")
    assert [c["case"] for c in meta["not_run"]] == ["call=getppid,calls=1000002"]
    k1_journal = (k1 / "cases.jsonl").read_bytes()
    report = CliRunner().invoke(cli, ["report", str(fleet), "--format", "md"])
    assert report.exit_code == 0, report.output
    text = (fleet / "report" / "report.md").read_text()
    assert "## Run `k2` (failed)" in text
    assert "- `k2: call=getppid,calls=1000001`: failed: worker lost (" in text
    assert "- `k2: call=getppid,calls=1000002`: not run: worker lost earlier in the run" in text

    dask_cluster.workers(("k2", None))  # the host comes back (a new worker, same name)
    resumed = run_iobench("run", "sweep", "--resume", str(fleet), "--cluster", dask_cluster.address)
    assert resumed.returncode == 0, resumed.stderr
    ran = [line for line in resumed.stderr.splitlines() if line.startswith("[")]
    assert len(ran) == 2 and all("] k2: " in line for line in ran), resumed.stderr
    assert (k1 / "cases.jsonl").read_bytes() == k1_journal
    meta = json.loads((k2 / "meta.json").read_text())
    assert meta["status"] == "complete" and [c["status"] for c in meta["cases"]] == ["ok"] * 3
    assert "not_run" not in meta
    assert json.loads((fleet / "fleet.json").read_text())["status"] == "complete"


@needs_dask
@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        ("h1,old", "host old ({worker}) runs iobench 0.0.1; this client runs iobench {version}: install the same version on every host"),
        ("bare", "host bare ({worker}) runs iobench none (iobench is not installed there); this client runs iobench {version}: install the same version on every host"),
    ],
)  # fmt: skip
def test_a_worker_with_another_iobench_is_refused_before_any_case(
    dask_cluster: DaskProcesses, tmp_path: Path, hosts: str, expected: str
) -> None:
    out = tmp_path / "out"
    done = run_iobench(
        "run", "syscall", *TINY, "--cluster", dask_cluster.address, "--hosts", hosts,
        "--dir", str(tmp_path), "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    name = hosts.split(",")[-1]
    worker = line.split("(", 1)[1].split(")", 1)[0]
    assert worker.startswith("tcp://127.0.0.1:")
    assert line == "Error: " + expected.format(worker=worker, version=iobench.__version__)
    assert name in line
    assert not out.exists()  # nothing written, nothing measured


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = _refused_port()
    address = f"tcp://127.0.0.1:{port}"
    expected = f"Error: cannot reach the Dask scheduler at {address} within 1.5 s (Connection refused)\n"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["run", "syscall", *TINY, "--cluster", address, "--cluster-timeout", "1.5", "--out", str(tmp_path)],
    )
    assert result.exit_code == 2 and result.output == expected
    env = {**os.environ, "IOBENCH_CLUSTER": address, "IOBENCH_CLUSTER_TIMEOUT": "1.5"}
    done = subprocess.run(
        [str(IOBENCH), "run", "syscall", *TINY, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr == expected
    assert list(tmp_path.iterdir()) == []


@needs_dask
def test_a_scheduler_address_where_something_else_answers_is_one_line(tmp_path: Path) -> None:
    """An HTTP server where the scheduler should be: its reply's first bytes read as a frame
    length of gigabytes (MemoryError inside dask): one line, exit 2, never "not enough memory"."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        stop = threading.Event()

        def answer() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(2)
                    with contextlib.suppress(OSError):
                        conn.recv(4096)
                        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        try:
            done = run_iobench(
                "run", "syscall", *TINY, "--cluster", address, "--cluster-timeout", "3", timeout=60
            )
        finally:
            stop.set()
            thread.join(5)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert "memory" not in line
    assert line.startswith(f"Error: {address} does not answer as a Dask scheduler (") or line.startswith(
        f"Error: cannot reach the Dask scheduler at {address} within 3 s ("
    )


@needs_dask
def test_a_scheduler_that_accepts_but_never_answers_times_out_within_the_bound(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        done = run_iobench(
            "run", "syscall", *TINY, "--cluster", address, "--cluster-timeout", "1", timeout=30
        )
        took = time.monotonic() - started
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"Error: cannot reach the Dask scheduler at {address} within 1 s (")
    assert took < 15  # the bound plus start-up, never dask's default retries


def test_hosts_without_cluster_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["run", "syscall", "--hosts", "h1"])
    assert result.exit_code == 2
    assert "--hosts chooses workers of a --cluster: give --cluster too" in result.output


def test_choose_hosts_by_name_and_pattern() -> None:
    hosts = [Host(n, f"tcp://10.0.0.{i}:1", f"10.0.0.{i}", 1) for i, n in enumerate(["a1", "a2", "b1"])]
    assert [h.name for h in choose_hosts(hosts, None)] == ["a1", "a2", "b1"]
    assert [h.name for h in choose_hosts(hosts, "a*")] == ["a1", "a2"]
    assert [h.name for h in choose_hosts(hosts, "b1,a*,a1")] == ["b1", "a1", "a2"]
    with pytest.raises(ClusterError, match=r"^--hosts: no worker is named 'c\*' \(workers: a1, a2, b1\)$"):
        choose_hosts(hosts, "c*")
    twins = [*hosts, Host("a1", "tcp://10.0.0.9:1", "10.0.0.9", 1)]
    with pytest.raises(ClusterError, match="two workers are named 'a1'"):
        choose_hosts(twins, None)


def test_a_local_run_never_imports_dask(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom iobench.cli import main\n"
        "try:\n"
        f"    main(['run', 'syscall', *{TINY!r}, '--dir', {str(tmp_path)!r}, '--out', {str(tmp_path / 'o')!r}, '-q'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'iobench')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**os.environ, "IOBENCH_PARQUET": "0"},
    )  # fmt: skip
    modules = done.stdout.strip().splitlines()[-1]
    assert "'dask" not in modules and "'distributed" not in modules
    assert "iobench.fleet" not in modules


def test_row_context_is_stamped_on_every_row_of_a_local_run(tmp_path: Path) -> None:
    from iobench.api import experiment_entry
    from iobench.experiments import get_experiment
    from iobench.session import RunRequest, execute

    entry = experiment_entry(
        "syscall", {"call": "getppid", "calls": [100, 200]}, {"min_reps": 2, "max_reps": 2, "warmup": 0}
    )
    request = RunRequest([entry], get_experiment, target_dir=tmp_path, out_dir=None,
                         row_context={"host": "here", "worker": "local"})  # fmt: skip
    rows = execute(request).rows
    assert len(rows) == 4 and {(r["host"], r["worker"]) for r in rows} == {("here", "local")}
    assert {r["case"] for r in rows} == {"call=getppid,calls=100", "call=getppid,calls=200"}


def _host_run(host: str, values: dict[str, list[float]]) -> object:
    import pandas as pd

    from iobench.results import ResultSet

    rows = [
        {"experiment": "syscall", "case": case, "rep": i + 1, "status": "ok", "elapsed_ns": v, "host": host}
        for case, samples in values.items()
        for i, v in enumerate(samples)
    ]
    return ResultSet(pd.DataFrame(rows), {"run_id": host, "fleet": {"host": host}})


def test_the_outlier_table_flags_a_significantly_slower_host_only() -> None:
    from iobench.report.fleet import describe, fleet_section

    steady = [100.0 + i for i in range(10)]
    runs = {
        "a": _host_run("a", {"calls=1": steady, "calls=2": steady, "calls=3": [100.0, 300.0, 100.0, 300.0]}),
        "b": _host_run("b", {"calls=1": [v * 1.5 for v in steady], "calls=2": [v * 1.05 for v in steady],
                             "calls=3": [130.0, 390.0, 130.0, 390.0]}),
        "c": _host_run("c", {"calls=1": steady, "calls=2": steady, "calls=3": [100.0, 300.0, 100.0, 300.0]}),
    }  # fmt: skip
    section = fleet_section(runs)
    verdicts = {(r.host, r.case): r.verdict for r in section.rows}
    assert verdicts[("b", "calls=1")] == "slower"  # 1.5x, interval wholly above 1.2
    assert verdicts[("a", "calls=1")] == "ok" and verdicts[("c", "calls=1")] == "ok"
    assert verdicts[("b", "calls=2")] == "ok"  # 5% slower: significant, but under the 20% threshold
    assert verdicts[("b", "calls=3")] == "noisy"  # 1.3x, but 4 noisy samples cannot show it
    (slow,) = [r for r in section.rows if r.outlier]
    assert slow.fleet_median == pytest.approx(104.5) and slow.host_median == 156.75
    assert section.notes[0] == "Outliers: 1 of 9 host-cases, on host b."
    text = describe(section)
    assert text.splitlines()[2].split()[:3] == ["slower", "b", "syscall"]


def test_the_fleet_modules_load_no_dask_and_the_child_no_pandas() -> None:
    code = (
        "import sys\nimport iobench.fleet.run, iobench.fleet.cluster, iobench.fleet.executor\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'pandas', 'matplotlib'}))\n"
        "import iobench.fleet.child\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
