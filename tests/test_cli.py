"""The CLI through click's CliRunner: commands, help, tables, results and every user error."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from iobench.cli import cli
from iobench.errors import ExitCode
from iobench.experiments import all_experiments

TINY = ["--file-size", "64KiB", "--bs", "4096,65536", "--warmup", "0", "--min-reps", "1", "--max-reps", "2"]


def run_dir(out: Path) -> Path:
    (path,) = [p for p in out.iterdir() if p.is_dir()]
    return path


def invoke(runner: CliRunner, args: list[str], **kwargs):  # type: ignore[no-untyped-def]
    return runner.invoke(cli, args, catch_exceptions=False, **kwargs)


def test_list_shows_experiments_params_and_protocol(runner: CliRunner) -> None:
    result = invoke(runner, ["list"])
    assert result.exit_code == 0
    for text in (
        "rw-buffer:",
        "--bs SIZE[,...]",
        "default 1B,16B,256B,4KiB,64KiB",
        "--max-case-time",
        "--cache warm|cold",
    ):
        assert text in result.output


@pytest.mark.parametrize(
    "command",
    [[], ["list"], ["sysinfo"], ["run"], ["run", "sweep"], ["report"]]
    + [["run", e.name] for e in all_experiments()],
)
def test_every_command_has_help_with_an_example(runner: CliRunner, command: list[str]) -> None:
    result = invoke(runner, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output or "example" in result.output
    if len(command) == 2 and command[0] == "run" and command[1] != "sweep":
        experiment = next(e for e in all_experiments() if e.name == command[1])
        for param in experiment.params:
            assert param.option in result.output
        for option in ("--dir", "--out", "--min-reps", "--max-case-time", "--target-ci"):
            assert option in result.output


def test_sysinfo_json(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, ["sysinfo", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 0
    facts = json.loads(result.stdout)
    assert facts["target"]["path"] == str(tmp_path.resolve())
    assert facts["target"]["fs_type"]
    for key in ("kernel", "cpu_model", "cpu_count", "memory_total_bytes", "python", "rlimit_memlock"):
        assert key in facts["host"]
    assert isinstance(facts["warnings"], list)


def test_sysinfo_text_on_tmpfs_warns(runner: CliRunner, shm_dir: Path) -> None:
    result = invoke(runner, ["sysinfo", "--dir", str(shm_dir)])
    assert result.exit_code == 0
    assert "filesystem      tmpfs" in result.output
    assert "warning: target is tmpfs: page cache and fsync results do not describe a disk" in result.output


def test_run_prints_book_table_and_writes_rows(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(
        runner,
        [
            "run",
            "rw-buffer",
            "--mode",
            "copy",
            "--cache",
            "cold",
            *TINY,
            "--dir",
            str(tmp_path),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    for header in (
        "bs",
        "Elapsed",
        "Total CPU",
        "User CPU",
        "System CPU",
        "read()s",
        "write()s",
        "Throughput",
    ):
        assert header in result.stdout
    assert "17" in result.stdout  # 64 KiB / 4 KiB + EOF read()s
    frame = pd.read_csv(run_dir(out) / "results.csv")
    assert set(frame["bs"]) == {4096, 65536}
    assert (frame[frame["bs"] == 4096]["syscalls_read"] == 17).all()
    assert (frame[frame["bs"] == 4096]["syscalls_write"] == 16).all()
    meta = json.loads((run_dir(out) / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert meta["config"]["entries"][0]["values"]["bs"] == "4KiB,64KiB"
    assert meta["host"]["kernel"] and meta["target"]["fs_type"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("iobench-")]  # scratch removed


def test_environment_variable_then_flag_precedence(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "run",
        "rw-buffer",
        "--mode",
        "read",
        "--bs",
        "65536",
        "--file-size",
        "64KiB",
        "--cache",
        "warm",
        "--warmup",
        "0",
        "--target-ci",
        "0",
        "--dir",
        str(tmp_path),
        "--out",
        str(out),
        "-q",
    ]
    assert invoke(runner, args, env={"IOBENCH_MAX_REPS": "3", "IOBENCH_MIN_REPS": "1"}).exit_code == 0
    assert len(pd.read_csv(run_dir(out) / "results.csv")) == 3
    for path in out.iterdir():
        import shutil

        shutil.rmtree(path)
    assert (
        invoke(
            runner, [*args, "--max-reps", "2"], env={"IOBENCH_MAX_REPS": "3", "IOBENCH_MIN_REPS": "1"}
        ).exit_code
        == 0
    )
    assert len(pd.read_csv(run_dir(out) / "results.csv")) == 2


def test_report_writes_html_png_and_markdown(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        invoke(
            runner,
            [
                "run",
                "rw-buffer",
                "--mode",
                "read,write",
                "--cache",
                "warm",
                *TINY,
                "--dir",
                str(tmp_path),
                "--out",
                str(out),
                "-q",
            ],
        ).exit_code
        == 0
    )
    result = invoke(runner, ["report", "--results", str(out)])
    assert result.exit_code == 0, result.output
    report = run_dir(out) / "report"
    png = report / "rw-buffer-throughput.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    markdown = (report / "report.md").read_text()
    assert "| bs | Elapsed | Total CPU | User CPU | System CPU |" in markdown
    assert "mode=read" in markdown and "mode=write" in markdown
    assert "](rw-buffer-throughput.png)" in markdown and "What this shows" in markdown
    assert (report / "report.html").stat().st_size > 10_000


def _bad(tmp_path: Path) -> list[tuple[list[str], str]]:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[[experiment]\n")
    base = ["run", "rw-buffer", "--dir", str(tmp_path), "--out", str(tmp_path / "o")]
    return [
        ([*base, "--bs", "0"], "--bs: 0B is below the minimum 1B"),
        ([*base, "--bs", "4Q"], "--bs: '4Q' is not a size"),
        ([*base, "--file-size", "-1"], "--file-size: '-1' is negative"),
        ([*base, "--mode", "append"], "--mode: 'append' is not one of read, write, copy"),
        ([*base, "--cache", "lukewarm"], "--cache: 'lukewarm' is not one of warm, cold"),
        ([*base, "--max-case-time", "soon"], "--max-case-time: 'soon' is not a duration"),
        ([*base, "--min-reps", "5", "--max-reps", "2"], "min_reps (5) is larger than max_reps (2)"),
        (
            ["run", "nosuch"],
            f"unknown experiment 'nosuch' (known: {', '.join(e.name for e in all_experiments())})",
        ),
        (["run", "rw-buffer", "--dir", str(tmp_path / "missing")], "does not exist"),
        (["run", "rw-buffer", "--dir", str(a_file)], "is not a folder"),
        (["run", "sweep", str(bad_toml), "--dir", str(tmp_path)], "bad.toml: invalid TOML"),
        (["run", "sweep", str(tmp_path / "nope.toml")], "does not exist"),
        (["run", "rw-buffer", "--bogus"], "No such option"),
        (["sysinfo", "--dir", str(tmp_path / "missing")], "does not exist"),
        (["report", "--results", str(tmp_path / "empty")], "no runs in"),
        (["report", str(tmp_path)], "has no meta.json"),
    ]


def test_bad_input_is_one_line_and_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    for args, message in _bad(tmp_path):
        result = runner.invoke(cli, args)
        assert result.exit_code == ExitCode.USAGE, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.output
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
