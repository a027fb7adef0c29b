from __future__ import annotations

from pathlib import Path

import pytest

from iobench.config import MAX_CONFIG_BYTES, find_config, load_config
from iobench.errors import ConfigError, ParamError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


GOOD = """
description = "test"
[protocol]
min_reps = 2
max_case_time = "3s"

[[experiment]]
name = "rw-buffer"
mode = ["read", "copy"]
file_size = "64KiB"
bs = [512, "4KiB"]
cache = "warm"
[experiment.protocol]
max_reps = 4
"""


def test_good_config(tmp_path: Path) -> None:
    plan = load_config(write(tmp_path, GOOD))
    (entry,) = plan.entries
    assert entry.experiment.name == "rw-buffer"
    assert entry.values == {
        "mode": ("read", "copy"),
        "file_size": (65536,),
        "bs": (512, 4096),
        "cache": ("warm",),
        "source_write_bs": (1 << 20,),
    }
    assert entry.protocol.min_reps == 2
    assert entry.protocol.max_reps == 4
    assert entry.protocol.max_case_time == 3 * 10**9
    assert len(entry.cases()) == 4


def test_cases_that_measure_the_same_are_run_once(tmp_path: Path) -> None:
    text = GOOD.replace('mode = ["read", "copy"]', 'mode = ["read", "write"]').replace(
        'cache = "warm"', 'cache = ["warm", "cold"]'
    )
    (entry,) = load_config(write(tmp_path, text)).entries
    cases = entry.cases()
    # read: 2 bs x 2 caches; write: the cache does not apply, so 2 bs once each
    assert len(cases) == 6
    assert sorted((c["bs"], c["cache"]) for c in cases if c["mode"] == "write") == [
        (512, "warm"),
        (4096, "warm"),
    ]


def test_command_line_overrides_beat_config(tmp_path: Path) -> None:
    plan = load_config(write(tmp_path, GOOD), {"max_reps": "7", "max_case_time": "250ms", "warmup": None})
    protocol = plan.entries[0].protocol
    assert (protocol.max_reps, protocol.max_case_time, protocol.min_reps) == (7, 250 * 10**6, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[experiment]\nname=", "invalid TOML"),
        ("", "no \\[\\[experiment\\]\\] entries"),
        ("colour = 1\n[[experiment]]\nname='rw-buffer'", "unknown key 'colour'"),
        ("[[experiment]]\nname='nope'", "unknown experiment 'nope'"),
        ("[[experiment]]\nbs = 1", "has no name"),
        ("[[experiment]]\nname='rw-buffer'\nbs = '4Q'", r"\[rw-buffer #1\] bs: '4Q' is not a size"),
        ("[[experiment]]\nname='rw-buffer'\nbs = 0", "below the minimum"),
        ("[[experiment]]\nname='rw-buffer'\nmode = 'append'", "not one of read, write, copy"),
        ("[[experiment]]\nname='rw-buffer'\nbsize = 1", "unknown parameter 'bsize'"),
        ("[protocol]\nmin_reps = 5\nmax_reps = 2\n[[experiment]]\nname='rw-buffer'", "larger than max_reps"),
        ("[protocol]\nmax_case_time = 'soon'\n[[experiment]]\nname='rw-buffer'", "not a duration"),
        ("protocol = 3\n[[experiment]]\nname='rw-buffer'", "must be a table"),
        ("experiment = 'rw-buffer'", "array of tables"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert "sweep.toml" in str(info.value)
    assert "\n" not in str(info.value).strip() or "invalid TOML" in str(info.value)


def test_only_keeps_named_entries() -> None:
    plan = load_config(REPO / "bench_configs" / "quick.toml", only=["syscall", "page-lock"])
    assert [e.experiment.name for e in plan.entries] == ["syscall", "page-lock"]
    with pytest.raises(ConfigError, match=r"tlpi\.toml has no entry for 'syscall'"):
        load_config(REPO / "bench_configs" / "tlpi.toml", only=["syscall"])


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")


def test_find_config_by_bare_name() -> None:
    assert find_config("quick") == REPO / "bench_configs" / "quick.toml"
    assert find_config(None).name == "quick.toml"
    assert find_config("tlpi.toml").is_file()


@pytest.mark.parametrize("name", ["quick.toml", "tlpi.toml", "full.toml"])
def test_shipped_configs_validate(name: str) -> None:
    plan = load_config(REPO / "bench_configs" / name)
    assert plan.entries and plan.description


def test_tlpi_config_is_book_scale() -> None:
    copy, sync = load_config(REPO / "bench_configs" / "tlpi.toml").entries
    assert (copy.experiment.name, sync.experiment.name) == ("rw-buffer", "sync-write")
    assert sync.values["total"] == (1_000_000,) and sync.values["mode"] == ("buffered", "O_SYNC")
    entry = copy
    assert entry.values["mode"] == ("copy",)
    assert entry.values["file_size"] == (100_000_000,)
    assert entry.values["bs"] == tuple(2**k for k in range(17))
    assert entry.values["cache"] == ("cold",)


# --- hostile configs (issue 14) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[experiment]]\nname = 'syscall'\ncalls = " + "[" * 600 + "]" * 600, "nested too deeply"),
        (
            "[protocol]\nmax_case_time = 1e300\n[[experiment]]\nname = 'syscall'",
            r"max_case_time: 1e\+300 is too long",
        ),
        ("[protocol]\nmax_case_time = inf\n[[experiment]]\nname = 'syscall'", "not a valid duration"),
        (
            "[protocol]\nmin_reps = 'lots'\n[[experiment]]\nname = 'syscall'",
            "min_reps: 'lots' is not a whole number",
        ),
        ("[[experiment]]\nname = 'syscall'\ncalls = '1_0'", "no underscores"),
        ("[[experiment]]\nname = 'syscall'\ncalls = " + "9" * 30, "invalid TOML|too large"),
        ("description = 5\n[[experiment]]\nname = 'syscall'", "description must be text"),
    ],
)
def test_hostile_configs_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert str(info.value).startswith("sweep.toml")


def test_unreadable_config_files(tmp_path: Path) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe" + "x = 1".encode("utf-16-le"))
    with pytest.raises(ConfigError, match=r"binary\.toml: not UTF-8 text \(byte 0\)"):
        load_config(binary)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config(big)
    with pytest.raises(ConfigError, match="is not a file"):
        load_config(Path("/dev/zero"))
    with pytest.raises(ConfigError, match="not an empty string"):
        find_config("")
    with pytest.raises(ConfigError, match="NUL byte"):
        find_config("qu\x00ick")


def test_max_reps_alone_lowers_the_min_reps_in_its_way(tmp_path: Path) -> None:
    # The config asks for min_reps = 2; --max-reps 1 (a command-line override) wins over it.
    plan = load_config(write(tmp_path, GOOD), {"max_reps": "1"})
    assert (plan.entries[0].protocol.min_reps, plan.entries[0].protocol.max_reps) == (1, 1)
    # Both given on the command line and in conflict: that is the user's own contradiction.
    with pytest.raises(ConfigError, match=r"min_reps \(3\) is larger than max_reps \(1\)"):
        load_config(write(tmp_path, GOOD), {"max_reps": "1", "min_reps": "3"})
    # In the config itself, too.
    text = GOOD.replace("min_reps = 2", "min_reps = 5").replace("max_reps = 4", "max_reps = 3")
    with pytest.raises(ConfigError, match=r"min_reps \(5\) is larger than max_reps \(3\)"):
        load_config(write(tmp_path, text))


def test_max_reps_below_the_default_min_reps() -> None:
    from iobench.engine.protocol import Protocol

    protocol = Protocol.from_values({"max_reps": "2"})
    assert (protocol.min_reps, protocol.max_reps) == (2, 2)
    with pytest.raises(ParamError, match=r"min_reps \(5\) is larger than max_reps \(2\)"):
        Protocol.from_values({"max_reps": "2", "min_reps": "5"})
