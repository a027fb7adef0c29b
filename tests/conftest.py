"""Shared fixtures: folders on a real disk and on tmpfs, a tiny protocol, a CLI runner."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from iobench import hostinfo
from iobench.engine.protocol import Protocol


def fs_type(path: Path) -> str | None:
    return hostinfo.target_facts(path)["fs_type"]


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    """A folder on a filesystem backed by a block device (where a cold cache can be made)."""
    kind = fs_type(tmp_path)
    if kind in hostinfo.MEMORY_FILESYSTEMS:
        pytest.skip(f"the test temp folder is on {kind}; a cold page cache needs a disk-backed folder")
    return tmp_path


@pytest.fixture
def shm_dir() -> Path:
    """A folder on tmpfs, where fadvise(DONTNEED) cannot drop anything."""
    if not os.path.isdir("/dev/shm") or fs_type(Path("/dev/shm")) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm on this machine")
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="iobench-test-") as folder:
        yield Path(folder)


@pytest.fixture
def tiny_protocol() -> Protocol:
    return Protocol(warmup=0, min_reps=2, max_reps=2, max_case_time=30 * 10**9, target_ci=100.0)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
