"""A corpus of hostile invocations of the iobench command line, and a runner for it.

Data, not tests: ``tests/test_hostile_inputs.py`` runs it through click's CliRunner (and a
sample through real processes); ``make torture`` can reuse ``run_corpus``. Each ``Hostile``
is an argv (with placeholders for its private work folder), environment variables, files to
write first (TOML configs), or damage done to a copy of a real run folder, and the outcome
class it must end in:

- ``usage``: exit status 2 and exactly one stderr line, starting ``Error: ``;
- ``ok``: exit status 0;
- ``failed``: exit status 3 (the run finished, a case failed);
- ``help``: the usage text on stdout, no ``Error:`` anywhere, exit status 2.

None of them may ever print a traceback. Placeholders in argv and env values: ``@TMP@`` is
the case's own empty work folder (also the current folder), ``@RUN@`` a copy of a real,
finished two-case run folder (after the case's damage), ``@RO@`` a read-only tmpfs mount
(root only; cases needing it are skipped otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import IOBENCH, ONE_REP

OUTCOMES = ("usage", "ok", "failed", "help")
#: A path component longer than any filesystem allows (NAME_MAX is 255 bytes).
LONG_NAME = "n" * 300
HUGE_FRACTION = "9" * 400 + ".5"
HUGE_INT = "9" * 5000
DEEP_TOML_ARRAY = "[" * 600 + "]" * 600

#: One small, quick case of every experiment (also used by the descriptor-hygiene test).
TINY_CASES: dict[str, dict[str, str]] = {
    "async-io": {"method": "io_uring", "qd": "8", "file_size": "64KiB", "direct": "off", "cache": "warm"},
    "async-send": {"mode": "inflight-100-200-150", "concurrency": "1", "messages": "2"},
    "context-switch": {"mode": "thread-queue", "round_trips": "10"},
    "direct-io": {"mode": "read", "io": "buffered", "file_size": "64KiB", "bs": "4KiB", "cache": "warm"},
    "file-concurrency": {"mode": "pwrite", "threads": "2", "records": "4", "record_size": "4KiB"},
    "mmap-read": {"method": "read", "file_size": "64KiB", "bs": "4KiB", "advice": "none", "cache": "warm"},
    "msg-zerocopy": {"method": "send", "msg_size": "4KiB", "transfer": "64KiB"},
    "page-cache": {"pattern": "sequential", "cache": "warm", "file_size": "64KiB", "bs": "4KiB"},
    "page-fault": {"mode": "anon", "size": "64KiB", "readahead": "off"},
    "page-lock": {"mode": "lock", "size": "64KiB"},
    "rw-buffer": {"mode": "read", "file_size": "64KiB", "bs": "4096", "cache": "warm"},
    "sock-buffer": {"transport": "unix", "buffers": "unset", "transfer": "64KiB", "chunk": "4KiB"},
    "stdio-buffer": {"records": "100", "record_size": "100", "buffer_size": "512"},
    "sync-write": {"mode": "buffered", "total": "64KiB", "bs": "4KiB", "sync_every": "1"},
    "syscall": {"call": "getppid", "calls": "10"},
    "zero-byte-recv": {
        "strategy": "prepost",
        "connections": "2",
        "messages": "4",
        "burst": "1",
        "pool_buffers": "1",
    },
    "zero-copy": {"method": "sendfile", "file_size": "64KiB", "bs": "4KiB"},
    "folio-layout": {"layout": "written", "write_bs": "64KiB", "read_bs": "64KiB", "file_size": "256KiB"},
    "readahead": {"pattern": "sequential", "method": "plain", "file_size": "256KiB"},
    "dirty-throttle": {"max_bytes": "4MiB", "threshold_multiple": "1", "samples_per_second": "200"},
    "huge-pages": {"memory": "anon", "thp": "never", "size": "2MiB"},
}


def tiny_argv(experiment: str, **overrides: str) -> list[str]:
    """``run EXPERIMENT`` with its tiny case, one repetition, results under @TMP@."""
    values = {**TINY_CASES[experiment], **overrides}
    argv = ["run", experiment, "--dir", "@TMP@", "--out", "@TMP@/out", "-q", *ONE_REP]
    for name, value in values.items():
        argv += ["--" + name.replace("_", "-"), value]
    return argv


# ------------------------------------------------------------------ run-folder damage

Damage = Callable[[Path], None]


def _edit_meta(change: Callable[[dict[str, Any]], Any]) -> Damage:
    def damage(run: Path) -> None:
        meta = json.loads((run / "meta.json").read_text())
        change(meta)
        (run / "meta.json").write_text(json.dumps(meta))

    return damage


def _set_meta(key: str, value: Any) -> Damage:
    return _edit_meta(lambda meta: meta.__setitem__(key, value))


def _drop_meta(key: str) -> Damage:
    return _edit_meta(lambda meta: meta.pop(key, None))


def _edit_protocol(**values: Any) -> Damage:
    def change(meta: dict[str, Any]) -> None:
        for entry in meta["config"]["entries"]:
            entry["protocol"].update(values)

    return _edit_meta(change)


def _edit_entries(change: Callable[[dict[str, Any]], Any]) -> Damage:
    def edit(meta: dict[str, Any]) -> None:
        for entry in meta["config"]["entries"]:
            change(entry)

    return _edit_meta(edit)


def _write(name: str, data: str | bytes) -> Damage:
    def damage(run: Path) -> None:
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return damage


def _remove(name: str) -> Damage:
    def damage(run: Path) -> None:
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

    return damage


def _edit_journal_rows(change: Callable[[dict[str, Any]], Any]) -> Damage:
    """Change every repetition row of cases.jsonl (the record of truth)."""

    def damage(run: Path) -> None:
        lines = []
        for line in (run / "cases.jsonl").read_text().splitlines():
            record = json.loads(line)
            for row in record["rows"]:
                change(row)
            lines.append(json.dumps(record))
        (run / "cases.jsonl").write_text("".join(line + "\n" for line in lines))

    return damage


def _row_set(column: str, value: Any) -> Damage:
    return _edit_journal_rows(lambda row: row.__setitem__(column, value))


def _row_drop(column: str) -> Damage:
    return _edit_journal_rows(lambda row: row.pop(column, None))


def _as_schema_1(then: Damage | None = None) -> Damage:
    """Make the run a schema-1 run (results.csv + meta.json, no journal), then damage it."""

    def damage(run: Path) -> None:
        (run / "cases.jsonl").unlink()
        _set_meta("schema_version", 1)(run)
        if then is not None:
            then(run)

    return damage


def _csv_edit(change: Callable[[list[list[str]]], Any]) -> Damage:
    def damage(run: Path) -> None:
        import csv

        with open(run / "results.csv", newline="") as handle:
            table = list(csv.reader(handle))
        change(table)
        with open(run / "results.csv", "w", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows(table)

    return damage


def _csv_drop(column: str) -> Damage:
    def change(table: list[list[str]]) -> None:
        index = table[0].index(column)
        for row in table:
            del row[index]

    return _csv_edit(change)


def _csv_set(column: str, value: str) -> Damage:
    def change(table: list[list[str]]) -> None:
        index = table[0].index(column)
        for row in table[1:]:
            row[index] = value

    return _csv_edit(change)


def _all_unsupported(run: Path) -> None:
    """Every case recorded as unsupported: one row each, no measurement columns."""
    lines = []
    for line in (run / "cases.jsonl").read_text().splitlines():
        record = json.loads(line)
        keep = ("experiment", "case", "engine", "target_fs", "call", "calls")
        record["rows"] = [
            {
                **{k: record["rows"][0][k] for k in keep},
                "rep": 0,
                "status": "unsupported",
                "status_reason": "not here",
            }
        ]
        record["summary"] = {**record["summary"], "status": "unsupported", "reason": "not here"}
        lines.append(json.dumps(record))
    (run / "cases.jsonl").write_text("".join(line + "\n" for line in lines))


def _chain(*damages: Damage) -> Damage:
    def damage(run: Path) -> None:
        for each in damages:
            each(run)

    return damage


# ------------------------------------------------------------------ the corpus


@dataclass(frozen=True)
class Hostile:
    """One hostile invocation and the outcome class it must end in."""

    name: str
    argv: tuple[str, ...]
    expect: str
    env: tuple[tuple[str, str], ...] = ()
    #: Files written into the work folder first: (relative path, text or bytes).
    files: tuple[tuple[str, str | bytes], ...] = ()
    #: Damage done to the copy of the template run (@RUN@) before the command runs.
    damage: Damage | None = field(default=None, compare=False)
    #: "root" (a read-only mount): skipped where it cannot be had.
    needs: frozenset[str] = frozenset()
    #: Substrings the output (stdout + stderr) must contain.
    says: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert self.expect in OUTCOMES, self.expect

    @property
    def uses_run(self) -> bool:
        return any("@RUN@" in part for part in (*self.argv, *(v for _, v in self.env)))

    @property
    def exec_safe(self) -> bool:
        """Whether a real process can be given this argv (no NUL bytes in argv or env)."""
        return not any("\x00" in part for part in (*self.argv, *(v for _, v in self.env)))


def _h(name: str, argv: Sequence[str], expect: str, **kwargs: Any) -> Hostile:
    """A Hostile from friendlier spellings: env and files as dicts, needs as a set, says as a str."""
    kwargs["env"] = tuple(kwargs.get("env", {}).items()) if isinstance(kwargs.get("env"), dict) else ()
    if "files" in kwargs:
        kwargs["files"] = tuple(kwargs["files"].items())
    if "needs" in kwargs:
        kwargs["needs"] = frozenset(kwargs["needs"])
    if "says" in kwargs and isinstance(kwargs["says"], str):
        kwargs["says"] = (kwargs["says"],)
    return Hostile(name, tuple(argv), expect, **kwargs)


TINY_TOML = """
[protocol]
warmup = 0
min_reps = 1
max_reps = 1

[[experiment]]
name = "syscall"
call = "getppid"
calls = 10
"""


def _toml(body: str, protocol: str = "warmup = 0\nmin_reps = 1\nmax_reps = 1") -> str:
    return f"[protocol]\n{protocol}\n\n{body}"


def _sweep(name: str, toml: str | bytes, expect: str, *extra: str, **kwargs: Any) -> Hostile:
    files = {"sweep.toml": toml}
    argv = ["run", "sweep", "@TMP@/sweep.toml", "--dir", "@TMP@", "--out", "@TMP@/out", "-q", *extra]
    return _h(f"sweep: {name}", argv, expect, files=files, **kwargs)


def _commands_and_help() -> list[Hostile]:
    cases = [
        _h("no arguments", [], "help", says="Usage: iobench"),
        _h("run, no arguments", ["run"], "help", says="Usage: iobench run"),
        _h("--help", ["--help"], "ok"),
        _h("--version", ["--version"], "ok"),
        _h("unknown command", ["frobnicate"], "usage"),
        _h("unknown command, unicode", ["rün"], "usage"),
        _h("unknown command, NUL", ["li\x00st"], "usage"),
        _h("unknown top option", ["--frobnicate"], "usage"),
        _h("unknown experiment", ["run", "nosuch"], "usage"),
        _h("experiment name with a newline", ["run", "rw-buffer\nsyscall"], "usage"),
        _h("experiment name empty", ["run", ""], "usage"),
        _h("experiment name 5000 characters", ["run", "x" * 5000], "usage"),
        _h("list", ["list"], "ok"),
        _h("list with an argument", ["list", "extra"], "usage"),
        _h("list with an option", ["list", "--json"], "usage"),
        _h("columns", ["columns"], "ok"),
        _h("columns of one experiment as md", ["columns", "rw-buffer", "--format", "md"], "ok"),
        _h("columns json", ["columns", "--format", "json"], "ok"),
        _h("columns of an unknown experiment", ["columns", "nosuch"], "usage"),
        _h("columns, unknown format", ["columns", "--format", "xml"], "usage"),
        _h("columns, two experiments", ["columns", "rw-buffer", "syscall"], "usage"),
        _h("columns, NUL in the name", ["columns", "rw-buffer\x00"], "usage"),
        _h("columns, --format twice", ["columns", "--format", "md", "--format", "json"], "usage"),
        _h("run EXPERIMENT --help", ["run", "rw-buffer", "--help"], "ok"),
        _h("run sweep --help", ["run", "sweep", "--help"], "ok"),
        _h("sysinfo", ["sysinfo", "--dir", "@TMP@"], "ok"),
        _h("sysinfo --json", ["sysinfo", "--dir", "@TMP@", "--json"], "ok"),
        _h("sysinfo of /proc", ["sysinfo", "--dir", "/proc"], "ok"),
        _h("sysinfo, missing --dir", ["sysinfo", "--dir", "@TMP@/nope"], "usage"),
        _h("sysinfo, --dir is a file", ["sysinfo", "--dir", "/etc/hostname"], "usage"),
        _h("sysinfo, --dir /dev/null", ["sysinfo", "--dir", "/dev/null"], "usage"),
        _h("sysinfo, --dir empty", ["sysinfo", "--dir", ""], "usage"),
        _h("sysinfo, --dir NUL", ["sysinfo", "--dir", "@TMP@/\x00"], "usage"),
        _h("sysinfo, --dir long component", ["sysinfo", "--dir", f"@TMP@/{LONG_NAME}"], "usage"),
        _h("sysinfo, --dir 5000-char path", ["sysinfo", "--dir", "@TMP@/" + "a/" * 2500], "usage"),
        _h("sysinfo, --dir newline", ["sysinfo", "--dir", "@TMP@/a\nb"], "usage"),
        _h("sysinfo, --dir twice", ["sysinfo", "--dir", "@TMP@", "--dir", "/tmp"], "usage"),
        _h("sysinfo, IOBENCH_DIR long", ["sysinfo"], "usage", env={"IOBENCH_DIR": f"/tmp/{LONG_NAME}"}),
        _h("sysinfo, IOBENCH_DIR missing", ["sysinfo"], "usage", env={"IOBENCH_DIR": "@TMP@/nope"}),
        _h("sysinfo, --json twice", ["sysinfo", "--dir", "@TMP@", "--json", "--json"], "ok"),
        _h("clean, dry run", ["clean", "--dir", "@TMP@", "--out", "@TMP@/out", "--dry-run"], "ok"),
        _h("clean", ["clean", "--dir", "@TMP@", "--out", "@TMP@/out"], "ok"),
        _h("clean, missing --dir", ["clean", "--dir", "@TMP@/nope"], "usage"),
        _h("clean, --dir long", ["clean", "--dir", f"/tmp/{LONG_NAME}"], "usage"),
        _h("clean, --out long", ["clean", "--dir", "@TMP@", "--out", f"/tmp/{LONG_NAME}"], "usage"),
        _h("clean, --out NUL", ["clean", "--dir", "@TMP@", "--out", "a\x00b"], "usage"),
        _h("clean, --out is a file", ["clean", "--dir", "@TMP@", "--out", "/etc/hostname"], "ok"),
        _h(
            "clean, damaged run in --out",
            ["clean", "--dir", "@TMP@", "--out", "@RUN@/.."],
            "ok",
            damage=_write("meta.json", "{"),
        ),
    ]
    return cases


def _without(argv: Sequence[str], *options: str) -> list[str]:
    """``argv`` less the given options and their values."""
    out = list(argv)
    for option in options:
        at = out.index(option)
        del out[at : at + 2]
    return out


def _run_options() -> list[Hostile]:
    """Options every run command has, on ``run syscall`` (the quickest experiment)."""
    base = tiny_argv("syscall")
    no_out = _without(base, "--out")
    no_dir = _without(base, "--out", "--dir")
    cases = [
        _h("run syscall tiny", base, "ok"),
        _h("run syscall, a value with spaces", [*_without(base, "--calls"), "--calls", " 10 "], "ok"),
        _h("run syscall, duplicated flag -q -q", [*base, "-q"], "ok"),
        _h("run, --json --rows", [*base, "--json", "--rows"], "ok"),
        _h("run, --rows without --json", [*base, "--rows"], "ok"),
        _h("run, --out empty", [*no_out, "--out", ""], "usage", says="--out"),
        _h("run, --out blank", [*no_out, "--out", "   "], "usage"),
        _h("run, --out long component", [*no_out, "--out", f"@TMP@/{LONG_NAME}"], "usage"),
        _h("run, --out long nested", [*no_out, "--out", f"@TMP@/a/{LONG_NAME}/b"], "usage"),
        _h("run, --out NUL", [*no_out, "--out", "@TMP@/o\x00ut"], "usage"),
        _h("run, --out /proc/x", [*no_out, "--out", "/proc/x"], "usage"),
        _h("run, --out /dev/null", [*no_out, "--out", "/dev/null"], "usage"),
        _h("run, --out an existing file", [*no_out, "--out", "/etc/hostname"], "usage"),
        _h("run, --out under a file", [*no_out, "--out", "/etc/hostname/out"], "usage"),
        _h("run, --out read-only mount", [*no_out, "--out", "@RO@/out"], "usage", needs={"root"}),
        _h("run, --out twice", [*base, "--out", "@TMP@/other"], "usage"),
        _h("run, IOBENCH_OUT long", no_out, "usage", env={"IOBENCH_OUT": f"@TMP@/{LONG_NAME}"}),
        _h("run, IOBENCH_OUT empty is unset", no_out, "ok", env={"IOBENCH_OUT": ""}),
        _h("run, --dir empty", [*no_dir, "--dir", ""], "usage"),
        _h("run, --dir missing", [*no_dir, "--dir", "@TMP@/nope"], "usage"),
        _h("run, --dir a file", [*no_dir, "--dir", "/etc/hostname"], "usage"),
        _h("run, --dir /dev/null", [*no_dir, "--dir", "/dev/null"], "usage"),
        _h("run, --dir /proc", [*no_dir, "--dir", "/proc"], "usage"),
        _h("run, --dir long component", [*no_dir, "--dir", f"@TMP@/{LONG_NAME}"], "usage"),
        _h("run, --dir NUL", [*no_dir, "--dir", "@TMP@\x00"], "usage"),
        _h("run, --dir newline", [*no_dir, "--dir", "@TMP@/x\ny"], "usage"),
        _h("run, --dir a non-UTF-8 byte", [*no_dir, "--dir", "@TMP@/\udcff"], "usage"),
        _h("run, --out a non-UTF-8 byte", [*no_out, "--out", "/proc/\udcff/x"], "usage"),
        _h("run, --dir read-only mount", [*no_dir, "--dir", "@RO@"], "usage", needs={"root"}),
        _h("run, --dir twice", [*base, "--dir", "/tmp"], "usage"),
        _h("run, IOBENCH_DIR long", no_dir, "usage", env={"IOBENCH_DIR": f"/tmp/{LONG_NAME}"}),
        _h("run, --cpu -1", [*base, "--cpu", "-1"], "usage"),
        _h("run, --cpu 99999", [*base, "--cpu", "99999"], "usage"),
        _h("run, --cpu abc", [*base, "--cpu", "abc"], "usage"),
        _h("run, --cpu huge", [*base, "--cpu", HUGE_INT], "usage"),
        _h("run, --cpu 0", [*base, "--cpu", "0"], "ok"),
        _h("run, IOBENCH_CPU abc", base, "usage", env={"IOBENCH_CPU": "abc"}),
        _h("run, --max-time huge", [*base, "--max-time", HUGE_FRACTION], "usage"),
        _h("run, --max-time 5000 digits", [*base, "--max-time", HUGE_INT], "usage"),
        _h("run, --max-time 0", [*base, "--max-time", "0"], "usage"),
        _h("run, --max-time -1s", [*base, "--max-time", "-1s"], "usage"),
        _h("run, --max-time 1_0", [*base, "--max-time", "1_0"], "usage"),
        _h("run, --max-time inf", [*base, "--max-time", "inf"], "usage"),
        _h("run, --max-time 1e3", [*base, "--max-time", "1e3"], "usage"),
        _h("run, --max-time 1 hour", [*base, "--max-time", "1h"], "ok"),
        _h("run, --max-time Greek mu", [*base, "--max-time", "5μs"], "ok"),
        _h("run, IOBENCH_MAX_TIME huge", base, "usage", env={"IOBENCH_MAX_TIME": HUGE_FRACTION}),
        _h("run, IOBENCH_MAX_TIME words", base, "usage", env={"IOBENCH_MAX_TIME": "ten seconds"}),
        _h("run, --max-case-time huge", [*base, "--max-case-time", HUGE_FRACTION], "usage"),
        _h("run, --max-case-time 5000 digits", [*base, "--max-case-time", HUGE_INT], "usage"),
        _h("run, --max-case-time Greek mu", [*base, "--max-case-time", "900μs"], "ok"),
        _h("run, --max-case-time micro sign", [*base, "--max-case-time", "900µs"], "ok"),
        _h("run, --max-case-time 0.1ns", [*base, "--max-case-time", "0.1ns"], "usage"),
        _h("run, --max-case-time 25h", [*base, "--max-case-time", "25h"], "usage"),
        _h("run, --max-case-time nan", [*base, "--max-case-time", "nan"], "usage"),
        _h("run, IOBENCH_MAX_CASE_TIME huge", base, "usage", env={"IOBENCH_MAX_CASE_TIME": HUGE_INT}),
        _h("run, --target-ci 1_0", [*base, "--target-ci", "1_0"], "usage"),
        _h("run, --target-ci inf", [*base, "--target-ci", "inf"], "usage"),
        _h("run, --target-ci nan", [*base, "--target-ci", "nan"], "usage"),
        _h("run, --target-ci -5", [*base, "--target-ci", "-5"], "usage"),
        _h("run, --target-ci 101%", [*base, "--target-ci", "101%"], "usage"),
        _h("run, --target-ci huge", [*base, "--target-ci", HUGE_FRACTION], "usage"),
        _h("run, --target-ci 1e2", [*base, "--target-ci", "1e2"], "usage"),
        _h("run, --target-ci %%", [*base, "--target-ci", "5%%"], "usage"),
        _h("run, --target-ci full-width digits", [*base, "--target-ci", "５"], "usage"),
        _h("run, --target-ci 2.5%", [*base, "--target-ci", "2.5%"], "ok"),
        _h("run, IOBENCH_TARGET_CI 1_0", base, "usage", env={"IOBENCH_TARGET_CI": "1_0"}),
        _h("run, --warmup -1", [*base, "--warmup", "-1"], "usage"),
        _h("run, --warmup 101", [*base, "--warmup", "101"], "usage"),
        _h("run, --warmup 1_0", [*base, "--warmup", "1_0"], "usage"),
        _h("run, --warmup 5000 digits", [*base, "--warmup", HUGE_INT], "usage"),
        _h("run, --warmup twice", [*base, "--warmup", "0"], "usage"),
        _h("run, IOBENCH_WARMUP lots", _without(base, "--warmup"), "usage", env={"IOBENCH_WARMUP": "lots"}),
        _h("run, IOBENCH_WARMUP 1_0", _without(base, "--warmup"), "usage", env={"IOBENCH_WARMUP": "1_0"}),
        _h(
            "run, IOBENCH_MIN_REPS huge",
            _without(base, "--min-reps"),
            "usage",
            env={"IOBENCH_MIN_REPS": HUGE_INT},
        ),
        _h("run, IOBENCH_ENGINE unknown", base, "usage", env={"IOBENCH_ENGINE": "turbo"}),
        _h("run, IOBENCH_WARMUP -- flag wins", base, "ok", env={"IOBENCH_WARMUP": "lots of"}),
        _h(
            "run, --min-reps 0",
            [*_without(base, "--min-reps"), "--min-reps", "0"],
            "usage",
            says="--min-reps",
        ),
        _h(
            "run, --min-reps above --max-reps",
            [*_without(base, "--min-reps", "--max-reps"), "--min-reps", "3", "--max-reps", "2"],
            "usage",
            says="min_reps (3) is larger than max_reps (2)",
        ),
        _h(
            "run, --max-reps 2 alone",
            [*_without(base, "--min-reps", "--max-reps"), "--max-reps", "2"],
            "ok",
            says="note: min_reps lowered from its default 5 to 2 to fit --max-reps 2",
        ),
        _h("run, --max-reps 1 alone", [*_without(base, "--min-reps", "--max-reps"), "--max-reps", "1"], "ok"),
        _h(
            "run, IOBENCH_MAX_REPS 2 alone",
            _without(base, "--min-reps", "--max-reps"),
            "ok",
            env={"IOBENCH_MAX_REPS": "2"},
            says="min_reps lowered",
        ),
        _h(
            "run, --max-reps 10001",
            [*_without(base, "--max-reps"), "--max-reps", "10001"],
            "usage",
            says="above the maximum",
        ),
        _h("run, --engine NATIVE", [*base, "--engine", "NATIVE"], "usage"),
        _h("run, --engine empty", [*base, "--engine", ""], "usage"),
        _h("run, --engine python", [*base, "--engine", "python"], "ok"),
        _h("run, --engine native,python", [*base, "--engine", "native,python"], "usage"),
        _h("run, option=value form", [*_without(base, "--calls"), "--calls=10"], "ok"),
        _h("run, option without value", [*base, "--calls"], "usage"),
        _h("run, stray argument", [*base, "extra"], "usage"),
        _h("run, --calls and --calls=", [*base, "--calls=20"], "usage", says="--calls given 2 times"),
    ]
    return cases


#: Hostile values per parameter kind: (label, value). All must be refused.
_BAD_SIZES = (
    ("negative", "-1"),
    ("unicode minus", "\u22121"),
    ("fraction of a byte", "1.5"),
    ("400 digits and .5", HUGE_FRACTION),
    ("5000 digits", HUGE_INT),
    ("2**64", str(2**64)),
    ("underscore", "1_024"),
    ("exponent", "1e3"),
    ("hex", "0x10"),
    ("unknown unit", "4XiB"),
    ("full-width digits", "４KiB"),
    ("empty", ""),
    ("commas only", ",,"),
    ("the same value twice", "4KiB,4096"),
    ("inf", "inf"),
    ("NUL", "4\x00096"),
    ("newline", "4\n096"),
    ("2000 values", ",".join(str(n) for n in range(1, 2001))),
)
_BAD_INTS = (
    ("negative", "-5"),
    ("underscore", "1_0"),
    ("decimal", "2.0"),
    ("exponent", "1e3"),
    ("5000 digits", HUGE_INT),
    ("2**63", str(2**63)),
    ("full-width digit", "９"),
    ("arabic-indic digit", "\u0664"),
    ("word", "lots"),
    ("empty", ""),
    ("the same value twice", "2,2"),
    ("with a unit", "10KiB"),
)
_BAD_DURATIONS = (
    ("negative", "-1ms"),
    ("unknown unit", "10xs"),
    ("exponent", "1e3ms"),
    ("underscore", "1_0ms"),
    ("5000 digits", HUGE_INT + "ms"),
    ("full-width digits", "１０ms"),
    ("word", "soon"),
    ("empty", ""),
    ("the same value twice", "10ms,0.01s"),
    ("inf", "inf"),
    ("NUL", "10\x00ms"),
    ("above the maximum", "1h"),
)
_BAD_PERCENTS = (
    ("negative", "-1%"),
    ("unit", "1ms"),
    ("two signs", "1%%"),
    ("exponent", "1e1%"),
    ("word", "some"),
    ("empty", ""),
    ("the same value twice", "1%,1"),
    ("nan", "nan"),
    ("above the maximum", "51%"),
)
_BAD_RATES = (
    ("negative", "-1gbit"),
    ("bytes, not bits", "1GB"),
    ("fraction of a bit", "1.5bit"),
    ("exponent", "1e9"),
    ("underscore", "1_000mbit"),
    ("word", "fast"),
    ("empty", ""),
    ("the same value twice", "1gbit,1000mbit"),
    ("2**64", str(2**64)),
    ("above the maximum", "101gbit"),
)
_BAD_CHOICES = (
    ("unknown", "nosuch"),
    ("upper case", "READ"),
    ("empty", ""),
    ("commas only", ","),
    ("NUL", "send\x00"),
    ("5000 characters", "x" * 5000),
    ("the same twice", None),  # filled in with the first choice, twice
)


def _param_cases() -> list[Hostile]:
    """Every option of every experiment with values that must be refused (and the edges).

    Each error must name the option: a refusal for another reason would hide a hole."""
    from iobench.experiments import all_experiments
    from iobench.params import Kind

    cases = []
    for experiment in all_experiments():
        base = tiny_argv(experiment.name)
        for param in experiment.params:
            # The tiny value is dropped: a repeated option is a case of its own.
            rest = _without(base, param.option) if param.option in base else base
            bad = {
                Kind.SIZE: _BAD_SIZES,
                Kind.INT: _BAD_INTS,
                Kind.DURATION: _BAD_DURATIONS,
                Kind.PERCENT: _BAD_PERCENTS,
                Kind.BITRATE: _BAD_RATES,
            }.get(param.kind, _BAD_CHOICES)
            for label, value in bad:
                if value is None:
                    value = f"{param.choices[0]},{param.choices[0]}"
                if label == "negative" and param.minimum is not None and param.minimum < 0:
                    continue
                name = f"{experiment.name} {param.option} {label}"
                cases.append(_h(name, [*rest, param.option, value], "usage", says=param.option))
            # Bare numbers are bytes or counts only (a bare duration is seconds): the lists above
            # hold the other kinds' limits.
            if param.maximum is not None and param.kind in (Kind.SIZE, Kind.INT):
                above = [*rest, param.option, str(int(param.maximum) + 1)]
                name = f"{experiment.name} {param.option} above maximum"
                cases.append(_h(name, above, "usage", says=f"{param.option}: {int(param.maximum) + 1}"))
            if param.minimum is not None and param.minimum > 0 and param.kind in (Kind.SIZE, Kind.INT):
                below = [*rest, param.option, str(int(param.minimum) - 1)]
                name = f"{experiment.name} {param.option} below minimum"
                cases.append(_h(name, below, "usage", says="below the minimum"))
        # An option the tiny command already gives (the link parameters come first and are not).
        first = next((p for p in experiment.params if p.option in base), experiment.params[0])
        again = [*base, first.option, first.format(first.default)]
        cases.append(
            _h(f"{experiment.name} {first.option} given twice", again, "usage", says="given 2 times")
        )
    return cases


def _valid_edges() -> list[Hostile]:
    """Odd but valid spellings: these must run."""
    return [
        _h("rw-buffer, spaces around sizes", tiny_argv("rw-buffer", bs=" 4k , 8KiB "), "ok"),
        _h("rw-buffer, 0.5KiB is 512 bytes", tiny_argv("rw-buffer", bs="0.5KiB"), "ok"),
        _h("rw-buffer, trailing comma", tiny_argv("rw-buffer", bs="4096,"), "ok"),
        _h("rw-buffer, leading zeros", tiny_argv("rw-buffer", bs="0004096"), "ok"),
        _h("rw-buffer, kB (1000s)", tiny_argv("rw-buffer", bs="4kB"), "ok"),
        _h("syscall, +10 calls", tiny_argv("syscall", calls="+10"), "ok"),
        *(_h(f"{name} tiny", tiny_argv(name), "ok") for name in TINY_CASES),
        # Every case unsupported (O_DIRECT refuses a misaligned buffer): still a run, exit 0.
        _h(
            "direct-io, every case unsupported",
            tiny_argv("direct-io", io="direct", align="misaligned"),
            "ok",
        ),
        _h(
            "report of a run whose every case is unsupported",
            ["report", "--out", "@RUN@/..", "--report-dir", "@TMP@/r", "--format", "md"],
            "ok",
            damage=_all_unsupported,
        ),
    ]


def _sweeps() -> list[Hostile]:
    body = '[[experiment]]\nname = "syscall"\ncall = "getppid"\ncalls = 10\n'
    nested = '[[experiment]]\nname = "syscall"\ncalls = ' + DEEP_TOML_ARRAY + "\n"
    cases = [
        _sweep("tiny config", TINY_TOML, "ok"),
        _sweep("tiny config, --only syscall", TINY_TOML, "ok", "--only", "syscall"),
        _sweep("--only ,,", TINY_TOML, "usage", "--only", ",,"),
        _sweep("--only empty", TINY_TOML, "usage", "--only", ""),
        _sweep("--only unknown", TINY_TOML, "usage", "--only", "rw-buffer"),
        _sweep("--only twice", TINY_TOML, "usage", "--only", "syscall", "--only", "syscall"),
        _sweep("--max-reps 1 over the config", TINY_TOML, "ok", "--max-reps", "1"),
        _sweep(
            "--max-reps 2 over a config with min_reps 5",
            _toml(body, "min_reps = 5\nwarmup = 0"),
            "ok",
            "--max-reps",
            "2",
        ),
        _sweep("--min-reps 3 over max_reps 1", TINY_TOML, "usage", "--min-reps", "3"),
        _sweep("--out empty", TINY_TOML, "usage", "--out", ""),
        _sweep("empty file", "", "usage"),
        _sweep("only a description", 'description = "x"\n', "usage"),
        _sweep("invalid TOML", "[[experiment]\nname=", "usage"),
        _sweep("binary garbage", bytes(range(256)) * 4, "usage"),
        _sweep("UTF-16", TINY_TOML.encode("utf-16"), "usage"),
        _sweep("NUL in the file", TINY_TOML + "\x00", "usage"),
        _sweep("array nested 600 deep", nested, "usage"),
        _sweep("protocol array nested 600 deep", _toml(body, "min_reps = " + DEEP_TOML_ARRAY), "usage"),
        _sweep(
            "inline tables nested 600 deep", _toml(body + "x = " + "{a=" * 600 + "1" + "}" * 600), "usage"
        ),
        _sweep("max_case_time = 1e300", _toml(body, "max_case_time = 1e300"), "usage"),
        _sweep("max_case_time = inf", _toml(body, "max_case_time = inf"), "usage"),
        _sweep("max_case_time = nan", _toml(body, "max_case_time = nan"), "usage"),
        _sweep("max_case_time = -1", _toml(body, "max_case_time = -1"), "usage"),
        _sweep("max_case_time = 1e-300", _toml(body, "max_case_time = 1e-300"), "usage"),
        _sweep("max_case_time = huge string", _toml(body, f'max_case_time = "{HUGE_FRACTION}"'), "usage"),
        _sweep("max_case_time = true", _toml(body, "max_case_time = true"), "usage"),
        _sweep("max_case_time = a date", _toml(body, "max_case_time = 1979-05-27"), "usage"),
        _sweep(
            "max_case_time = Greek mu",
            _toml(body, 'warmup = 0\nmin_reps = 1\nmax_reps = 1\nmax_case_time = "900μs"'),
            "ok",
        ),
        _sweep("min_reps = 'lots'", _toml(body, 'min_reps = "lots"'), "usage"),
        _sweep("min_reps = 1.5", _toml(body, "min_reps = 1.5"), "usage"),
        _sweep("min_reps = 2**64", _toml(body, f"min_reps = {2**63 - 1}"), "usage"),
        _sweep("target_ci = '1_0'", _toml(body, 'target_ci = "1_0"'), "usage"),
        _sweep("unknown protocol key", _toml(body, "speed = 11"), "usage"),
        _sweep("protocol is a number", "protocol = 5\n" + body, "usage"),
        _sweep("entry protocol is a list", body + "protocol = [1]\n", "usage"),
        _sweep("entry protocol engine unknown", body + '[experiment.protocol]\nengine = "x"\n', "usage"),
        _sweep("unknown top key", "colour = 1\n" + body, "usage"),
        _sweep("experiment is a table", '[experiment]\nname = "syscall"\n', "usage"),
        _sweep("experiment is a string", 'experiment = "syscall"\n', "usage"),
        _sweep("experiment = []", "experiment = []\n", "usage"),
        _sweep("experiment entry is a number", "experiment = [1]\n", "usage"),
        _sweep("no name", "[[experiment]]\ncalls = 10\n", "usage"),
        _sweep("name is a number", "[[experiment]]\nname = 5\n", "usage"),
        _sweep("name unknown", '[[experiment]]\nname = "nosuch"\n', "usage"),
        _sweep("name with NUL", '[[experiment]]\nname = "sys\\u0000call"\n', "usage"),
        _sweep("name 10000 characters", f'[[experiment]]\nname = "{"x" * 10000}"\n', "usage"),
        _sweep("unknown parameter", body + "colour = 1\n", "usage"),
        _sweep("calls = -1", _toml('[[experiment]]\nname = "syscall"\ncalls = -1\n'), "usage"),
        _sweep("calls = 2**63", _toml(f'[[experiment]]\nname = "syscall"\ncalls = {2**63 - 1}\n'), "usage"),
        _sweep("calls = true", _toml('[[experiment]]\nname = "syscall"\ncalls = true\n'), "usage"),
        _sweep("calls = 1.0", _toml('[[experiment]]\nname = "syscall"\ncalls = 1.0\n'), "usage"),
        _sweep("calls = []", _toml('[[experiment]]\nname = "syscall"\ncalls = []\n'), "usage"),
        _sweep("calls = [[1]]", _toml('[[experiment]]\nname = "syscall"\ncalls = [[1]]\n'), "usage"),
        _sweep("calls = {a = 1}", _toml('[[experiment]]\nname = "syscall"\ncalls = {a = 1}\n'), "usage"),
        _sweep("calls = '1_0'", _toml('[[experiment]]\nname = "syscall"\ncalls = "1_0"\n'), "usage"),
        _sweep(
            "calls = 3000 values",
            _toml(
                '[[experiment]]\nname = "syscall"\ncalls = ['
                + ",".join(str(n) for n in range(1, 3001))
                + "]\n"
            ),
            "usage",
        ),
        _sweep(
            "a million cases",
            _toml(
                '[[experiment]]\nname = "rw-buffer"\nbs = ['
                + ",".join(str(n) for n in range(1, 1001))
                + "]\nfile_size = ["
                + ",".join(str(n) for n in range(1, 1001))
                + "]\n"
            ),
            "usage",
        ),
        _sweep("bs = 1.5", _toml('[[experiment]]\nname = "rw-buffer"\nbs = 1.5\n'), "usage"),
        _sweep("bs = 1e300", _toml('[[experiment]]\nname = "rw-buffer"\nbs = 1e300\n'), "usage"),
        _sweep(
            "file_size = '400 digits.5'",
            _toml(f'[[experiment]]\nname = "rw-buffer"\nfile_size = "{HUGE_FRACTION}"\n'),
            "usage",
        ),
        _sweep(
            "bs = 5000 digits", _toml(f'[[experiment]]\nname = "rw-buffer"\nbs = "{HUGE_INT}"\n'), "usage"
        ),
        _sweep("mode = 'READ'", _toml('[[experiment]]\nname = "rw-buffer"\nmode = "READ"\n'), "usage"),
        _sweep("mode = 5", _toml('[[experiment]]\nname = "rw-buffer"\nmode = 5\n'), "usage"),
        _sweep("description = 5", "description = 5\n" + TINY_TOML, "usage"),
        _sweep("the same entry twice", TINY_TOML + body, "ok"),
        _h(
            "sweep: missing config",
            ["run", "sweep", "@TMP@/nope.toml", "--dir", "@TMP@", "--out", "@TMP@/o"],
            "usage",
        ),
        _h("sweep: config is a folder", ["run", "sweep", "@TMP@", "--dir", "@TMP@"], "usage"),
        _h("sweep: config is /dev/zero", ["run", "sweep", "/dev/zero", "--dir", "@TMP@"], "usage"),
        _h("sweep: config name with NUL", ["run", "sweep", "qu\x00ick", "--dir", "@TMP@"], "usage"),
        _h(
            "sweep: config long component",
            ["run", "sweep", f"@TMP@/{LONG_NAME}.toml", "--dir", "@TMP@"],
            "usage",
        ),
        _h("sweep: config empty name", ["run", "sweep", "", "--dir", "@TMP@", "--out", "@TMP@/o"], "usage"),
        _h("sweep: two configs", ["run", "sweep", "quick", "tlpi", "--dir", "@TMP@"], "usage"),
        _h("sweep: unknown config name", ["run", "sweep", "nosuch", "--dir", "@TMP@"], "usage"),
    ]
    return cases


def _resume(name: str, expect: str, damage: Damage | None = None, *extra: str, **kwargs: Any) -> Hostile:
    argv = ["run", "sweep", "--resume", "@RUN@", "--dir", "@TMP@", "-q", *extra]
    return _h(f"resume: {name}", argv, expect, damage=damage, **kwargs)


def _report(
    name: str, expect: str, damage: Damage | None = None, formats: str = "md", **kwargs: Any
) -> Hostile:
    argv = ["report", "@RUN@", "--report-dir", "@TMP@/report", "--format", formats]
    return _h(f"report: {name}", argv, expect, damage=damage, **kwargs)


def _compare(name: str, expect: str, damage: Damage | None = None, *extra: str, **kwargs: Any) -> Hostile:
    argv = ["compare", "@RUN@", "@RUN@", "--format", "json", *extra]
    return _h(f"compare: {name}", argv, expect, damage=damage, **kwargs)


#: Damage to a finished run that every reader must refuse with one line.
_BROKEN_RUNS: tuple[tuple[str, Damage], ...] = (
    ("meta.json missing", _remove("meta.json")),
    ("meta.json cut short", _write("meta.json", '{"schema_version": 2, "run_')),
    ("meta.json a list", _write("meta.json", "[]")),
    ("meta.json binary", _write("meta.json", bytes(range(256)))),
    ("meta.json nested 600 deep", _write("meta.json", "[" * 600 + "]" * 600)),
    ("meta.json nested 100000 deep", _write("meta.json", '{"a":' * 100000 + "1" + "}" * 100000)),
    ("meta.json is a folder", lambda run: ((run / "meta.json").unlink(), (run / "meta.json").mkdir())),
    ("meta host 'x'", _set_meta("host", "x")),
    ("meta target 5", _set_meta("target", 5)),
    ("meta schema_version 99", _set_meta("schema_version", 99)),
    ("meta schema_version '2'", _set_meta("schema_version", "2")),
    ("meta schema_version missing", _drop_meta("schema_version")),
    ("meta cases 5", _set_meta("cases", 5)),
    ("meta cases [5]", _set_meta("cases", [5])),
    ("meta warnings [5]", _set_meta("warnings", [5])),
    ("meta status 5", _set_meta("status", 5)),
    ("meta run_id a list", _set_meta("run_id", [1])),
    ("cases.jsonl garbage line", _write("cases.jsonl", "garbage\n")),
    ("cases.jsonl a list per line", _write("cases.jsonl", "[]\n")),
    (
        "cases.jsonl case id a number",
        _write("cases.jsonl", '{"summary": {"case": 5, "experiment": "x"}, "rows": []}\n'),
    ),
    (
        "cases.jsonl rows a dict",
        _write("cases.jsonl", '{"summary": {"case": "a", "experiment": "x"}, "rows": {}}\n'),
    ),
    ("cases.jsonl nested 100000 deep", _write("cases.jsonl", "[" * 100000 + "]" * 100000 + "\n")),
    ("rows without bytes", _row_drop("bytes")),
    ("rows without elapsed_ns", _row_drop("elapsed_ns")),
    ("rows without calls (a parameter)", _row_drop("calls")),
    ("rows without experiment", _row_drop("experiment")),
    ("rows without status", _row_drop("status")),
    ("rows elapsed_ns 'abc'", _row_set("elapsed_ns", "abc")),
    ("rows elapsed_ns 'inf'", _row_set("elapsed_ns", "inf")),
    ("rows elapsed_ns null", _row_set("elapsed_ns", None)),
    ("rows elapsed_ns a list", _row_set("elapsed_ns", [1, 2])),
    ("rows bytes 'lots'", _row_set("bytes", "lots")),
    ("schema 1: without bytes", _as_schema_1(_csv_drop("bytes"))),
    ("schema 1: without run_id", _as_schema_1(_csv_drop("run_id"))),
    ("schema 1: without calls", _as_schema_1(_csv_drop("calls"))),
    ("schema 1: elapsed_ns abc", _as_schema_1(_csv_set("elapsed_ns", "abc"))),
    ("schema 1: elapsed_ns inf", _as_schema_1(_csv_set("elapsed_ns", "inf"))),
    ("schema 1: empty results.csv", _as_schema_1(_write("results.csv", ""))),
    ("schema 1: binary results.csv", _as_schema_1(_write("results.csv", bytes(range(1, 256)) * 8))),
)

#: Odd but readable runs: reports must go through, and comparisons (a run without rows has
#: nothing to compare: those expect "usage").
_ODD_RUNS: tuple[tuple[str, Damage | None], ...] = (
    ("untouched", None),
    ("torn journal tail", lambda run: (run / "cases.jsonl").open("a").write('{"summary": {"ca')),
    ("results.csv garbage (a view)", _write("results.csv", "garbage")),
    ("results.csv missing (a view)", _remove("results.csv")),
    ("rows without user_ns", _row_drop("user_ns")),
    ("rows without run_id", _row_drop("run_id")),
    ("rows elapsed_ns 0", _row_set("elapsed_ns", 0)),
    ("rows elapsed_ns negative", _row_set("elapsed_ns", -5)),
    ("rows bytes 0", _row_set("bytes", 0)),
    ("meta host missing", _drop_meta("host")),
    ("meta config missing", _drop_meta("config")),
    ("meta unicode run_id", _set_meta("run_id", "rün-\u2603")),
    ("meta status running (crashed)", _set_meta("status", "running")),
    ("schema 1 run", _as_schema_1()),
    ("schema 1: without user_ns", _as_schema_1(_csv_drop("user_ns"))),
    ("schema 1: without results.csv", _as_schema_1(_remove("results.csv"))),
    (
        "schema 1: results.csv a folder",
        _as_schema_1(_chain(_remove("results.csv"), lambda run: (run / "results.csv").mkdir())),
    ),
)
_NOTHING_TO_COMPARE = {"schema 1: without results.csv", "schema 1: results.csv a folder"}

#: Meta damage that only --resume reads (the plan it continues).
_BROKEN_RESUMES: tuple[tuple[str, Damage], ...] = (
    ("meta lacks config", _drop_meta("config")),
    ("meta config a string", _set_meta("config", "x")),
    ("meta config without entries", _set_meta("config", {})),
    ("meta config entries a string", _edit_meta(lambda m: m["config"].__setitem__("entries", "x"))),
    ("meta config entries [5]", _edit_meta(lambda m: m["config"].__setitem__("entries", [5]))),
    ("meta entry experiment unknown", _edit_entries(lambda e: e.__setitem__("experiment", "nosuch"))),
    ("meta entry experiment missing", _edit_entries(lambda e: e.pop("experiment"))),
    ("meta entry values missing", _edit_entries(lambda e: e.pop("values"))),
    ("meta entry values bad", _edit_entries(lambda e: e["values"].__setitem__("calls", "lots"))),
    ("meta entry values unknown key", _edit_entries(lambda e: e["values"].__setitem__("colour", 1))),
    ("meta entry values huge", _edit_entries(lambda e: e["values"].__setitem__("calls", HUGE_INT))),
    ("meta entry protocol a list", _edit_entries(lambda e: e.__setitem__("protocol", [1]))),
    ("protocol max_reps 'lots'", _edit_protocol(max_reps="lots")),
    ("protocol max_reps 1e300", _edit_protocol(max_reps=1e300)),
    ("protocol max_case_time 'huge'", _edit_protocol(max_case_time=HUGE_FRACTION)),
    ("protocol min_reps above max_reps", _edit_protocol(min_reps=9, max_reps=2)),
    ("protocol unknown key", _edit_protocol(speed=11)),
    ("protocol engine 'turbo'", _edit_protocol(engine="turbo")),
    ("protocol target_ci NaN", _edit_protocol(target_ci=float("nan"))),
    ("meta resumed 'x'", _set_meta("resumed", "x")),
    ("meta resumed 5", _set_meta("resumed", 5)),
    ("meta cases {}", _set_meta("cases", {})),
    ("meta owner 'x'", _set_meta("owner", "x")),
    ("meta clock_origin 'x'", _set_meta("clock_origin", "x")),
)

_ODD_RESUMES: tuple[tuple[str, Damage | None], ...] = (
    ("complete run", None),
    ("status running (crashed)", _set_meta("status", "running")),
    ("torn journal tail", lambda run: (run / "cases.jsonl").open("a").write('{"summary"')),
    ("journal emptied (every case runs again)", _write("cases.jsonl", "")),
    (
        "meta clock_origin unix_ns a string",
        _edit_meta(lambda m: m["clock_origin"].__setitem__("unix_ns", "x")),
    ),
    ("meta resumed [5]", _set_meta("resumed", [5])),
    ("meta scratch a path outside", _set_meta("scratch", "/etc")),
    ("meta scratch 5", _set_meta("scratch", 5)),
    ("schema 1 run", _as_schema_1()),
    ("schema 1: a case listed without rows", _as_schema_1(_csv_edit(lambda t: t.__delitem__(slice(1, 3))))),
)


def _run_folders() -> list[Hostile]:
    cases: list[Hostile] = []
    for label, damage in _BROKEN_RUNS:
        cases.append(_report(label, "usage", damage))
        cases.append(_compare(label, "usage", damage))
        cases.append(_resume(label, "usage", damage))
    for label, damage in _ODD_RUNS:
        cases.append(_report(label, "ok", damage))
        cases.append(_compare(label, "usage" if label in _NOTHING_TO_COMPARE else "ok", damage))
    cases.append(
        _resume("schema 1: results.csv a folder", "usage", dict(_ODD_RUNS)["schema 1: results.csv a folder"])
    )
    for label, damage in _BROKEN_RESUMES:
        cases.append(_resume(label, "usage", damage))
    for label, damage in _ODD_RESUMES:
        cases.append(_resume(label, "ok", damage))
    rep = ["--report-dir", "@TMP@/report"]
    cases += [
        _report("figures of zero timings", "ok", _row_set("elapsed_ns", 0), "png"),
        _report("figures of negative timings", "ok", _row_set("elapsed_ns", -5), "svg"),
        _report("every format", "ok", None, "html,md,png,svg"),
        _h(
            "report: --report-dir /proc/x",
            ["report", "@RUN@", "--report-dir", "/proc/x", "--format", "md"],
            "usage",
        ),
        _h(
            "report: --report-dir an existing file",
            ["report", "@RUN@", "--report-dir", "/etc/hostname"],
            "usage",
        ),
        _h(
            "report: --report-dir under a file",
            ["report", "@RUN@", "--report-dir", "/etc/hostname/r"],
            "usage",
        ),
        _h(
            "report: --report-dir read-only mount",
            ["report", "@RUN@", "--report-dir", "@RO@/r", "--format", "md"],
            "usage",
            needs={"root"},
        ),
        _h(
            "report: --report-dir long component",
            ["report", "@RUN@", "--report-dir", f"@TMP@/{LONG_NAME}"],
            "usage",
        ),
        _h("report: --report-dir NUL", ["report", "@RUN@", "--report-dir", "@TMP@/\x00"], "usage"),
        _h("report: --report-dir empty", ["report", "@RUN@", "--report-dir", ""], "usage"),
        _h("report: --report-dir twice", ["report", "@RUN@", *rep, *rep], "usage"),
        _h("report: --format empty", ["report", "@RUN@", *rep, "--format", ""], "usage"),
        _h("report: --format ,,", ["report", "@RUN@", *rep, "--format", ",,"], "usage"),
        _h("report: --format pdf", ["report", "@RUN@", *rep, "--format", "pdf"], "usage"),
        _h("report: --format NUL", ["report", "@RUN@", *rep, "--format", "md\x00"], "usage"),
        _h("report: no runs in --out", ["report", "--out", "@TMP@"], "usage"),
        _h("report: --out missing", ["report", "--out", "@TMP@/nope"], "usage"),
        _h("report: --out long component", ["report", "--out", f"@TMP@/{LONG_NAME}"], "usage"),
        _h("report: --out NUL", ["report", "--out", "@TMP@/\x00"], "usage"),
        _h("report: run id long", ["report", LONG_NAME, "--out", "@TMP@"], "usage"),
        _h("report: run path long", ["report", f"@TMP@/{LONG_NAME}", *rep], "usage"),
        _h("report: run id with NUL", ["report", "a\x00b", "--out", "@TMP@"], "usage"),
        _h("report: unknown run id", ["report", "nosuch", "--out", "@TMP@"], "usage"),
        _h("report: run is a file", ["report", "/etc/hostname", *rep], "usage"),
        _h("report: run is /", ["report", "/", *rep], "usage"),
        _h("report: same run twice", ["report", "@RUN@", "@RUN@", *rep, "--format", "md"], "ok"),
        _h("report: the run's folder of runs", ["report", "--out", "@RUN@/..", *rep, "--format", "md"], "ok"),
        _h("compare: missing base", ["compare", "@TMP@/nope", "@RUN@"], "usage"),
        _h("compare: missing new", ["compare", "@RUN@", "@TMP@/nope"], "usage"),
        _h("compare: one argument", ["compare", "@RUN@"], "usage"),
        _h("compare: three arguments", ["compare", "@RUN@", "@RUN@", "@RUN@"], "usage"),
        _h("compare: base long component", ["compare", f"@TMP@/{LONG_NAME}", "@RUN@"], "usage"),
        _h("compare: --out long, run ids", ["compare", "a", "b", "--out", f"@TMP@/{LONG_NAME}"], "usage"),
        _h("compare: NUL in base", ["compare", "@RUN@\x00", "@RUN@"], "usage"),
        _h("compare: empty folder", ["compare", "@TMP@", "@RUN@"], "usage"),
        _h("compare: --threshold abc", ["compare", "@RUN@", "@RUN@", "--threshold", "abc"], "usage"),
        _h("compare: --threshold -5%", ["compare", "@RUN@", "@RUN@", "--threshold", "-5%"], "usage"),
        _h("compare: --threshold 1_0", ["compare", "@RUN@", "@RUN@", "--threshold", "1_0"], "usage"),
        _h("compare: --threshold huge", ["compare", "@RUN@", "@RUN@", "--threshold", HUGE_FRACTION], "usage"),
        _h("compare: --threshold nan", ["compare", "@RUN@", "@RUN@", "--threshold", "nan"], "usage"),
        _h("compare: --threshold inf", ["compare", "@RUN@", "@RUN@", "--threshold", "inf"], "usage"),
        _h(
            "compare: --threshold twice",
            ["compare", "@RUN@", "@RUN@", "--threshold", "5", "--threshold", "6"],
            "usage",
        ),
        _h("compare: --metric nosuch", ["compare", "@RUN@", "@RUN@", "--metric", "nosuch"], "usage"),
        _h("compare: --metric empty", ["compare", "@RUN@", "@RUN@", "--metric", ""], "usage"),
        _h("compare: --format xml", ["compare", "@RUN@", "@RUN@", "--format", "xml"], "usage"),
        _h("compare: text", ["compare", "@RUN@", "@RUN@"], "ok"),
        _h(
            "compare: md, throughput",
            ["compare", "@RUN@", "@RUN@", "--format", "md", "--metric", "throughput"],
            "ok",
        ),
        _h("compare: --threshold 0", ["compare", "@RUN@", "@RUN@", "--threshold", "0"], "ok"),
        _h("resume: missing run", ["run", "sweep", "--resume", "@TMP@/nope", "--dir", "@TMP@"], "usage"),
        _h("resume: empty", ["run", "sweep", "--resume", "", "--dir", "@TMP@"], "usage"),
        _h("resume: NUL", ["run", "sweep", "--resume", "@RUN@\x00", "--dir", "@TMP@"], "usage"),
        _h(
            "resume: long component",
            ["run", "sweep", "--resume", f"@TMP@/{LONG_NAME}", "--dir", "@TMP@"],
            "usage",
        ),
        _h(
            "resume: run id long under --out",
            ["run", "sweep", "--resume", LONG_NAME, "--out", "@TMP@", "--dir", "@TMP@"],
            "usage",
        ),
        _h(
            "resume: with a config", ["run", "sweep", "quick", "--resume", "@RUN@", "--dir", "@TMP@"], "usage"
        ),
        _h(
            "resume: with --only",
            ["run", "sweep", "--only", "syscall", "--resume", "@RUN@", "--dir", "@TMP@"],
            "usage",
        ),
        _h(
            "resume: with --min-reps",
            ["run", "sweep", "--resume", "@RUN@", "--dir", "@TMP@", "--min-reps", "2"],
            "usage",
        ),
        _h(
            "resume: twice",
            ["run", "sweep", "--resume", "@RUN@", "--resume", "@RUN@", "--dir", "@TMP@"],
            "usage",
        ),
        _h("resume: --dir missing", ["run", "sweep", "--resume", "@RUN@", "--dir", "@TMP@/nope"], "usage"),
        _h("resume: a file", ["run", "sweep", "--resume", "/etc/hostname", "--dir", "@TMP@"], "usage"),
    ]
    return cases


#: Names of the cases run in real processes too: every command, the issue's examples.
SAMPLE = (
    "no arguments",
    "run, no arguments",
    "--version",
    "list",
    "columns, unknown format",
    "sysinfo, --dir long component",
    "clean, --out long",
    "run, --out long component",
    "run, --dir newline",
    "run, --dir a non-UTF-8 byte",
    "run, --max-time huge",
    "run, IOBENCH_MAX_TIME huge",
    "rw-buffer --bs 5000 digits",
    "run, --max-reps 2 alone",
    "run, --dir twice",
    "sweep: array nested 600 deep",
    "sweep: max_case_time = 1e300",
    "sweep: --only ,,",
    "resume: meta lacks config",
    "resume: protocol max_reps 'lots'",
    "report: --report-dir /proc/x",
    "report: figures of negative timings",
    "report: meta host 'x'",
    "compare: --threshold 1_0",
    "compare: schema 1: without bytes",
)


def sample() -> list[Hostile]:
    """The SAMPLE cases, in that order."""
    by_name = {case.name: case for case in corpus()}
    return [by_name[name] for name in SAMPLE]


def corpus() -> list[Hostile]:
    """Every hostile invocation, hand-written ones first."""
    cases = [
        *_commands_and_help(),
        *_run_options(),
        *_valid_edges(),
        *_sweeps(),
        *_run_folders(),
        *_param_cases(),
    ]
    names = Counter(case.name for case in cases)
    repeated = [name for name, count in names.items() if count > 1]
    assert not repeated, f"corpus names must be unique: {repeated[:5]}"
    return cases


# ------------------------------------------------------------------ running it


@dataclass
class Outcome:
    """What one invocation did."""

    exit_code: int | None
    stdout: str
    stderr: str
    #: An exception that escaped the CLI (CliRunner only), as text.
    escaped: str = ""
    timed_out: bool = False

    @property
    def traceback(self) -> bool:
        return bool(self.escaped) or "Traceback (most recent call last)" in self.stdout + self.stderr


Invoke = Callable[[list[str], dict[str, str | None], Path], Outcome]


def problem(case: Hostile, outcome: Outcome) -> str | None:
    """Why ``outcome`` is not what ``case`` expects; None when it is."""
    if outcome.timed_out:
        return "timed out"
    if outcome.traceback:
        return f"traceback: {outcome.escaped or outcome.stderr[-800:]}"
    lines = outcome.stderr.splitlines()
    found = f"exit {outcome.exit_code}, stderr {outcome.stderr[-400:]!r}"
    if case.expect == "usage":
        if outcome.exit_code != 2 or len(lines) != 1 or not lines[0].startswith("Error: "):
            return f"expected one 'Error: ' line and exit 2; got {found}"
    elif case.expect == "help":
        if (
            outcome.exit_code != 2
            or "Error" in outcome.stdout + outcome.stderr
            or "Usage:" not in outcome.stdout
        ):
            return f"expected usage text without 'Error' and exit 2; got {found}"
    elif case.expect == "ok" and outcome.exit_code != 0:
        return f"expected exit 0; got {found}"
    elif case.expect == "failed" and outcome.exit_code != 3:
        return f"expected exit 3; got {found}"
    text = outcome.stdout + outcome.stderr
    if case.expect != "usage" and "Warning:" in outcome.stderr:
        return f"a Python warning on stderr: {outcome.stderr[-400:]!r}"
    for words in case.says:
        if words not in text:
            return f"output lacks {words!r}: {found}"
    return None


def _substitute(text: str, places: dict[str, Path]) -> str:
    for token, path in places.items():
        text = text.replace(token, str(path))
    return text


@contextlib.contextmanager
def read_only_mount() -> Iterator[Path | None]:
    """A small read-only tmpfs (root only); None where it cannot be made."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="iobench-ro-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "iobench-ro", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        folder.rmdir()
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)
        folder.rmdir()


def make_template_run(out: Path) -> Path:
    """A real finished run of two tiny syscall cases (the source of every @RUN@)."""
    from iobench.api import run

    out.parent.mkdir(parents=True, exist_ok=True)
    result = run(
        "syscall", call="getppid", calls=[10, 20], warmup=0, min_reps=2, max_reps=2, out=out, dir=out.parent
    )
    assert result.path is not None and result.status == "complete", result
    return result.path


def run_corpus(
    invoke: Invoke,
    cases: Sequence[Hostile] | None = None,
    problems: list[tuple[Hostile, str]] | None = None,
) -> Counter[str]:
    """Run ``cases`` (default: the whole corpus) through ``invoke``; count what happened.

    Keys: ``tried``, ``clean`` (the expected outcome), ``traceback``, ``unexpected`` (no
    traceback but not the expected outcome), ``skipped`` (needs root), and per outcome class
    ``expect:<class>``. Each problem is appended to ``problems`` when given.
    """
    counts: Counter[str] = Counter()
    chosen = list(corpus() if cases is None else cases)
    with tempfile.TemporaryDirectory(prefix="iobench-hostile-") as root_name, read_only_mount() as ro:
        root = Path(root_name)
        template = make_template_run(root / "template" / "out") if any(c.uses_run for c in chosen) else None
        for number, case in enumerate(chosen):
            if "root" in case.needs and ro is None:
                counts["skipped"] += 1
                continue
            work = root / f"case-{number}"
            work.mkdir()
            places: dict[str, Path] = {"@TMP@": work}
            if ro is not None:
                places["@RO@"] = ro
            if template is not None and case.uses_run:
                run = work / "runs" / template.name
                shutil.copytree(template, run)
                if case.damage is not None:
                    case.damage(run)
                places["@RUN@"] = run
            for name, data in case.files:
                (work / name).write_bytes(data.encode() if isinstance(data, str) else data)
            argv = [_substitute(part, places) for part in case.argv]
            env = {key: _substitute(value, places) for key, value in case.env}
            outcome = invoke(argv, env, work)
            counts["tried"] += 1
            counts[f"expect:{case.expect}"] += 1
            found = problem(case, outcome)
            if found is None:
                counts["clean"] += 1
            else:
                counts["traceback" if outcome.traceback else "unexpected"] += 1
                if problems is not None:
                    problems.append((case, found))
            shutil.rmtree(work, ignore_errors=True)
    return counts


def _clean_environment(extra: dict[str, str | None]) -> dict[str, str | None]:
    """Every IOBENCH_* variable of this process unset, then the case's own."""
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("IOBENCH_")}
    env.update(extra)
    return env


def cli_runner_invoke(argv: list[str], env: dict[str, str | None], cwd: Path) -> Outcome:
    """Run the CLI in this process with click's CliRunner (fast)."""
    from click.testing import CliRunner

    from iobench.cli import cli

    previous = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, argv, env=_clean_environment(env), prog_name="iobench")
    finally:
        os.chdir(previous)
    escaped = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        escaped = "".join(traceback.format_exception(result.exception)).strip()
    return Outcome(result.exit_code, result.stdout, result.stderr, escaped)


def subprocess_invoke(
    argv: list[str], env: dict[str, str | None], cwd: Path, timeout_s: float = 120
) -> Outcome:
    """Run the installed ``iobench`` console script as a real process."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("IOBENCH_")}
    full.update({k: v for k, v in env.items() if v is not None})
    try:
        done = subprocess.run(
            [*IOBENCH, *argv], env=full, cwd=cwd, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        return Outcome(None, str(exc.stdout or ""), str(exc.stderr or ""), timed_out=True)
    return Outcome(done.returncode, done.stdout, done.stderr)


def main() -> int:
    """``python -m tests.hostile_inputs [--subprocess]``: the counts and every problem."""
    invoke = subprocess_invoke if "--subprocess" in sys.argv else cli_runner_invoke
    problems: list[tuple[Hostile, str]] = []
    counts = run_corpus(invoke, problems=problems)
    for case, found in problems:
        print(f"{case.name}: {found}")
    print(
        f"hostile inputs: tried {counts['tried']}, clean {counts['clean']}, traceback {counts['traceback']}, "
        f"unexpected {counts['unexpected']}, skipped {counts['skipped']}"
    )
    return 0 if counts["tried"] == counts["clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
