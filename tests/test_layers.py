"""The package's layers, checked by importing each in a fresh interpreter: lower layers never
pull in higher ones, and the fast paths (--help, list, a run) stay free of heavy libraries."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import iobench
from iobench.experiments import all_experiments, builtin_modules

PACKAGE = Path(iobench.__file__).parent


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("iobench.stats", {"numpy", "scipy", "pandas", "iobench.experiments", "iobench.engine"}),
        ("iobench.metrics", {"pandas", "numpy", "iobench.experiments", "iobench.report"}),
        ("iobench.engine.runner", {"iobench.experiments", "iobench.report", "pandas", "scipy", "matplotlib"}),
        ("iobench.engine.counters", {"iobench.experiments", "pandas"}),
        ("iobench.results", {"iobench.experiments", "iobench.report", "pandas", "numpy"}),
        ("iobench.plan", {"iobench.experiments", "iobench.report", "pandas"}),
        ("iobench.explain", {"iobench.report", "iobench.experiments", "matplotlib"}),
        ("iobench.experiments", {"iobench.report", "pandas", "numpy", "scipy", "matplotlib", "iobench.cli"}),
        ("iobench.session", {"iobench.report", "iobench.cli", "pandas", "scipy", "matplotlib", "click"}),
        ("iobench.api", {"iobench.report", "iobench.cli", "pandas", "scipy", "matplotlib", "click"}),
        ("iobench.cli", {"pandas", "numpy", "scipy", "matplotlib", "iobench.experiments", "iobench.session"}),
    ],
)
def test_a_layer_imports_nothing_above_it(module: str, forbidden: set[str]) -> None:
    loaded = _modules_after(f"import {module}")
    assert not forbidden & loaded, f"{module} pulled in {sorted(forbidden & loaded)}"


def test_a_run_never_imports_pandas_scipy_or_matplotlib(tmp_path: Path) -> None:
    """A whole `iobench run`, tables and results.parquet included, in a fresh interpreter."""
    statement = (
        "from iobench.cli import main; import sys\n"
        "try:\n"
        f"    main(['run', 'rw-buffer', '--mode', 'read', '--bs', '4096', '--file-size', '64KiB', '--cache', 'warm', "
        f"'--dir', {str(tmp_path)!r}, '--out', {str(tmp_path / 'out')!r}, '--warmup', '0', '--min-reps', '2', "
        "'--max-reps', '2', '-q'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    # Without results.parquet: pyarrow, when installed, loads pandas itself.
    env = {**os.environ, "IOBENCH_PARQUET": "0"}
    done = subprocess.run(
        [sys.executable, "-c", statement], capture_output=True, text=True, check=True, env=env
    )
    loaded = set(done.stdout.split())
    assert "rw-buffer: mode=read" in done.stdout  # the tables printed
    assert not {"pandas", "scipy", "matplotlib", "numpy", "pyarrow"} & loaded
    (run,) = list((tmp_path / "out").iterdir())
    assert not (run / "results.parquet").exists()
    meta = json.loads((run / "meta.json").read_text())
    assert 10 << 20 < meta["peak_rss_measuring_bytes"] < 120 << 20


def test_no_module_imports_the_cli_or_a_cycle_back_up() -> None:
    """Static check: no package module imports iobench.cli, and engine/ imports neither the
    registry nor reports (type-only imports under TYPE_CHECKING are allowed)."""
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts)
        tree = ast.parse(path.read_text())
        type_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in type_only or not isinstance(node, ast.ImportFrom | ast.Import):
                continue
            targets = (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            )
            for target in targets:
                if name not in ("iobench.cli", "iobench.__main__"):
                    assert target != "iobench.cli", f"{name} imports the CLI"
                if name.startswith("iobench.engine"):
                    assert not target.startswith(
                        ("iobench.experiments", "iobench.report", "iobench.session")
                    ), f"{name} imports {target}"
                if name.startswith("iobench.experiments"):
                    assert not target.startswith(("iobench.report", "iobench.session", "iobench.api")), (
                        f"{name} imports {target}"
                    )


def test_every_experiment_module_registers_itself_and_pyproject_lists_none() -> None:
    registered = {
        e.__module__.rsplit(".", 1)[-1] for e in all_experiments() if e.__module__.startswith("iobench.")
    }
    assert registered == set(builtin_modules())
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert "iobench.experiments.rw_buffer" not in pyproject  # built-ins need no entry to edit


def test_a_new_module_with_register_shows_up_in_list(tmp_path: Path) -> None:
    """Adding an experiment is adding one file: the registry finds it with no other edit."""
    module = PACKAGE / "experiments" / "zz_probe_for_test.py"
    module.write_text(
        "from iobench.experiments import register\n"
        "from iobench.experiments.base import Experiment\n"
        "@register\n"
        "class Probe(Experiment):\n"
        "    name = 'zz-probe'\n    summary = 'a test probe'\n    seed_idea = 'none'\n    params = ()\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "iobench", "list"], capture_output=True, text=True, check=True
        )
    finally:
        module.unlink()
    assert "zz-probe: a test probe" in done.stdout
