"""tools/check_native.py: `make install` fails when a C extension did not build from its sources."""

from __future__ import annotations

import importlib.util
import os
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "check_native.py"


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("check_native", TOOL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "MODULES", ("pkg/_fast",))  # its sources: pkg/*.c, pkg/*.h
    (tmp_path / "pkg").mkdir()
    return module


def _touch(path: Path, when: float) -> None:
    path.touch()
    os.utime(path, (when, when))


def test_a_module_older_than_a_source_or_missing_is_stale(check: Any, tmp_path: Path) -> None:
    now = time.time()
    built = tmp_path / f"pkg/_fast{sysconfig.get_config_var('EXT_SUFFIX')}"
    _touch(tmp_path / "pkg/_fast.c", now - 100)
    _touch(tmp_path / "pkg/_fast.h", now - 100)
    assert check.stale_modules() == ["pkg._fast"]  # never built
    _touch(built, now - 50)
    assert check.stale_modules() == []
    _touch(tmp_path / "pkg/_fast.h", now - 10)  # a header edited after the build
    assert check.stale_modules() == ["pkg._fast"]
    _touch(built, now - 5)
    _touch(tmp_path / "pkg/_fast.c", now + 3600)  # a clock ahead cannot make it stale forever
    assert check.stale_modules() == []


def test_without_a_compiler_nothing_is_demanded(
    check: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    _touch(check.ROOT / "pkg/_fast.c", time.time())
    _touch(check.ROOT / "pkg/_fast.h", time.time())
    monkeypatch.setenv("CC", "no-such-compiler-here")
    assert check.main() == 0
    monkeypatch.setenv("CC", "ccache-or-not cc")  # the first word is the program
    assert check.main() == 0
    monkeypatch.setenv("CC", "cc -O2")
    if check.shutil.which("cc") is None:
        pytest.skip("no cc here")
    assert check.main() == 1
    assert "pkg._fast did not build from the current sources" in capsys.readouterr().err
