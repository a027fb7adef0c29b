"""Hostile inputs end in one clear line and exit 2, never a traceback (issue 14).

The corpus is tests/hostile_inputs.py; here it runs whole through click's CliRunner, and a
sample covering every command through real processes. Also the smaller defects the issue
lists: matplotlib kept out of ``run`` and out of $HOME, msg-zerocopy without privileges.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import IOBENCH, ONE_REP
from tests.hostile_inputs import (
    Hostile,
    cli_runner_invoke,
    corpus,
    run_corpus,
    sample,
    subprocess_invoke,
)


def _report(counts: dict[str, int], problems: list[tuple[Hostile, str]]) -> str:
    lines = [f"{case.name}: {found[:1200]}" for case, found in problems]
    lines.append(
        f"tried {counts['tried']}, clean {counts['clean']}, traceback {counts['traceback']}, "
        f"unexpected {counts['unexpected']}, skipped {counts['skipped']}"
    )
    return "\n".join(lines)


@pytest.mark.timeout(300)
def test_the_whole_corpus_ends_cleanly_in_process() -> None:
    # ~1400 inputs in ~10 s: every option of every experiment, configs, damaged run folders.
    problems: list[tuple[Hostile, str]] = []
    counts = run_corpus(cli_runner_invoke, problems=problems)
    print(_report(counts, problems))
    assert counts["tried"] >= 300
    assert counts["traceback"] == 0, _report(counts, problems)
    assert counts["clean"] == counts["tried"], _report(counts, problems)
    assert counts["expect:ok"] >= 50 and counts["expect:usage"] >= 250


@pytest.mark.timeout(300)
def test_a_sample_ends_cleanly_in_real_processes() -> None:
    chosen = sample()
    commands = {case.argv[0] if case.argv else "" for case in chosen}
    assert {"", "run", "list", "columns", "sysinfo", "clean", "report", "compare"} <= commands
    assert any("--resume" in case.argv for case in chosen)
    problems: list[tuple[Hostile, str]] = []
    counts = run_corpus(subprocess_invoke, chosen, problems)
    assert counts["tried"] == len(chosen) and counts["clean"] == len(chosen), _report(counts, problems)


def test_corpus_names_are_unique_and_classes_known() -> None:
    cases = corpus()
    assert len({c.name for c in cases}) == len(cases) >= 300
    assert {c.expect for c in cases} == {"usage", "ok", "help"}


def test_no_arguments_print_usage_without_error(runner) -> None:  # type: ignore[no-untyped-def]
    from iobench.cli import cli

    for argv, usage in (([], "Usage: iobench [OPTIONS] COMMAND"), (["run"], "Usage: iobench run [OPTIONS]")):
        result = runner.invoke(cli, argv, prog_name="iobench")
        assert result.exit_code == 2
        assert result.stdout.startswith(usage) and "Error" not in result.stdout
        assert result.stderr == ""


def test_a_repeated_option_is_refused_naming_it(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from iobench.cli import cli

    args = ["run", "rw-buffer", "--dir", str(tmp_path), "--bs", "1", "--bs", "4096", "--file-size", "4KiB"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --bs given 2 times; give it once (several values go in one, comma-separated: --bs A,B)\n"
    )
    assert not list(tmp_path.iterdir())  # refused before anything was made


def test_max_reps_alone_lowers_min_reps_and_says_so(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from iobench.cli import cli

    args = ["run", "syscall", "--call", "getppid", "--calls", "10", "--warmup", "0", "--max-reps", "2"]
    result = runner.invoke(cli, [*args, "--dir", str(tmp_path), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.stderr
    assert (
        "note: min_reps lowered from its default 5 to 2 to fit --max-reps 2 (with fewer than 4 "
        "repetitions a side no difference can be shown at 95%)\n"
    ) in result.stderr
    (run,) = (tmp_path / "out").iterdir()
    (entry,) = json.loads((run / "meta.json").read_text())["config"]["entries"]
    assert (entry["protocol"]["min_reps"], entry["protocol"]["max_reps"]) == (2, 2)


def test_path_options_refuse_what_no_system_call_takes(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from iobench.cli import cli

    long_name = str(tmp_path / ("n" * 300))
    cases = [
        (
            ["sysinfo", "--dir", long_name],
            "'--dir' (env var: 'IOBENCH_DIR'): a name in the path is 300 bytes long; Linux allows 255",
        ),
        (
            ["run", "syscall", "--out", ""],
            "'--out' (env var: 'IOBENCH_OUT'): an empty path; give a folder (. for the current one)",
        ),
        (["report", "--report-dir", ""], "Invalid value for '--report-dir': an empty path"),
        (
            ["compare", "a", "b", "--out", "x\x00"],
            "'--out' / '--results' (env var: 'IOBENCH_OUT'): a path cannot contain a NUL byte",
        ),
        (["clean", "--dir", "/" + "a/" * 2100], "the path is 4201 bytes long; Linux allows 4095"),
    ]
    for argv, message in cases:
        result = runner.invoke(cli, argv)
        assert result.exit_code == 2, argv
        assert result.stderr.startswith("Error: ") and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1


def test_error_messages_stay_on_one_line() -> None:
    from iobench.cli import one_line

    assert one_line("--dir /tmp/a\nb does not exist") == "--dir /tmp/a\\nb does not exist"
    assert one_line("bad \udcff byte\x00") == "bad \\udcff byte\\x00"
    long = one_line("x" * 5000)
    assert len(long) < 700 and "(4400 characters left out)" in long


# --- smaller defects ---------------------------------------------------------------------------


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.timeout(120)
def test_run_does_not_import_matplotlib(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom iobench.cli import main\n"
        "try:\n"
        f"    main(['run', 'syscall', '--call', 'getppid', '--calls', '10', *{ONE_REP!r}, '-q',\n"
        f"          '--dir', {str(tmp_path)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
    )
    done = _python(code, {**os.environ, "HOME": str(tmp_path)}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .cache, no .config


@pytest.mark.timeout(120)
def test_report_writes_only_its_own_files_and_says_nothing_else(tmp_path: Path) -> None:
    from tests.hostile_inputs import make_template_run

    run = make_template_run(tmp_path / "out")
    home = tmp_path / "home"  # a file: HOME is not a usable folder (matplotlib then spills into TMPDIR)
    home.write_text("")
    scratch_tmp = tmp_path / "tmp"
    scratch_tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MPLCONFIGDIR"}
    env.update(HOME=str(home), TMPDIR=str(scratch_tmp), XDG_CACHE_HOME="", XDG_CONFIG_HOME="")
    done = subprocess.run(
        [*IOBENCH, "report", str(run), "--report-dir", str(tmp_path / "report"), "--format", "png,md"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "Matplotlib created a temporary cache directory", no font-cache note
    assert list(scratch_tmp.iterdir()) == []  # the private config folder is gone at exit
    assert home.read_text() == ""
    written = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert "report.md" in written and any(name.endswith(".png") for name in written)


def test_mplsetup_keeps_a_users_own_config_dir(tmp_path: Path) -> None:
    code = "import os\nfrom iobench.report import mplsetup\nprint(os.environ['MPLCONFIGDIR'])\n"
    mine = str(tmp_path / "mine")
    done = _python(code, {**os.environ, "MPLCONFIGDIR": mine}, tmp_path)
    assert done.stdout.strip() == mine
    env = {k: v for k, v in os.environ.items() if k != "MPLCONFIGDIR"}
    done = _python(code, {**env, "TMPDIR": str(tmp_path)}, tmp_path)
    private = Path(done.stdout.strip())
    assert private.parent == tmp_path and private.name.startswith("iobench-matplotlib-")
    assert not private.exists()  # removed at exit


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to nobody needs root")
@pytest.mark.timeout(60)
def test_unprivileged_zerocopy_is_unsupported_with_the_reason_not_failed() -> None:
    from iobench.engine.protocol import Protocol
    from iobench.engine.runner import run_case
    from iobench.experiments import get_experiment

    experiment = get_experiment("msg-zerocopy")
    case = {"method": "zerocopy-unprivileged", "msg_size": 65536, "transfer": 1 << 20}
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o777)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: an ordinary user
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                result = run_case(experiment, case, Protocol(warmup=0, min_reps=1, max_reps=1), Path(folder))
                os.write(write_end, json.dumps(result.summary).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            summary = json.loads(pipe.read())
        os.waitpid(pid, 0)
    assert summary["status"] == "unsupported", summary
    assert summary["reason"].startswith(
        "needs CAP_NET_ADMIN (root) to grow the send queue past net.core.wmem_max"
    )
    assert "as uid 65534 the zerocopy method already measures an unprivileged sender" in summary["reason"]


def _address_space_200_mib() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (200 << 20, 200 << 20))


@pytest.mark.timeout(120)
def test_ulimit_v_200_mib_is_one_line_not_a_crash(tmp_path: Path) -> None:
    # It was an OpenBLAS "Memory allocation still failed" and exit 1, or a traceback, after
    # the run was recorded; now the heavy commands refuse to start and say why.
    args = ["run", "syscall", "--call", "getppid", "--calls", "10", *ONE_REP, "--dir", str(tmp_path)]
    for argv in ([*args, "--out", str(tmp_path / "out")], ["report", "--out", str(tmp_path)]):
        done = subprocess.run(
            [*IOBENCH, *argv],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_address_space_200_mib,
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "Error: not enough memory to start: ulimit -v allows 200 MiB of address space; iobench needs about "
        ), done.stderr
    assert not (tmp_path / "out").exists()
    listed = subprocess.run(
        [*IOBENCH, "list"], capture_output=True, text=True, timeout=120, preexec_fn=_address_space_200_mib
    )
    assert listed.returncode == 0 and "rw-buffer" in listed.stdout  # light commands still work
