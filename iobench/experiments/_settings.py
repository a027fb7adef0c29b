"""What the page-cache experiments (folio-layout, readahead, dirty-throttle, huge-pages) share:
the system settings in force, recorded in every row; the ``allow_tuning`` parameter; and the
one way a case changes a setting (root, ``allow_tuning=yes``, recorded and restored).

A private module (the leading underscore keeps the registry from loading it as an experiment).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from iobench.errors import UnsupportedCase
from iobench.metrics import Metric
from iobench.osutil import sysfs, tuning
from iobench.params import choice_param

ALLOW_TUNING = choice_param(
    "allow_tuning",
    ("no", "yes"),
    "yes: as root, the case may change the system setting it names (recorded under /run/iobench "
    "first, restored after the case, even after a failure or Ctrl-C; after a kill, by the next run "
    "or `iobench clean`). no: such a case is unsupported, with why.",
    default=("no",),
)

#: The settings every row of these experiments records (what was in force while it ran).
SETTINGS_METRICS = (
    Metric(
        "setting_read_ahead_bytes",
        "Read-ahead",
        "size",
        "read_ahead_kb of the disk under --dir while the case ran (in bytes; NaN without a block device).",
    ),
    Metric(
        "setting_dirty_background_ratio",
        "dirty_background_ratio",
        "fraction",
        "vm.dirty_background_ratio in force: dirty memory share where background write-back starts "
        "(unused while dirty_background_bytes is not 0).",
    ),
    Metric(
        "setting_dirty_ratio",
        "dirty_ratio",
        "fraction",
        "vm.dirty_ratio in force: dirty memory share where writers are throttled (unused while dirty_bytes is not 0).",
    ),
    Metric(
        "setting_dirty_background_bytes",
        "dirty_background_bytes",
        "size",
        "vm.dirty_background_bytes in force (0: the ratio applies).",
    ),
    Metric("setting_dirty_bytes", "dirty_bytes", "size", "vm.dirty_bytes in force (0: the ratio applies)."),
    Metric(
        "setting_thp",
        "THP mode",
        "text",
        "/sys/kernel/mm/transparent_hugepage/enabled in force: always, madvise or never ('' without THP).",
    ),
    Metric(
        "settings_changed",
        "Settings changed",
        "text",
        "The system settings this case changed (path=value; restored afterwards), '' when none.",
    ),
)


def settings_in_force(folder: Path, tuned: tuning.Tuning | None = None) -> dict[str, Any]:
    """The row's record of the settings in force now, for files under ``folder``."""
    device = sysfs.block_device(folder)
    read_ahead = device.read_ahead_kb() if device else None
    dirty = sysfs.dirty_settings()

    def number(value: int | None, scale: float = 1.0) -> float:
        return math.nan if value is None else value * scale

    changed = ";".join(f"{c.path}={c.value}" for c in tuned.changes) if tuned else ""
    return {
        "setting_read_ahead_bytes": number(read_ahead, 1024),
        "setting_dirty_background_ratio": number(dirty["dirty_background_ratio"], 0.01),
        "setting_dirty_ratio": number(dirty["dirty_ratio"], 0.01),
        "setting_dirty_background_bytes": number(dirty["dirty_background_bytes"]),
        "setting_dirty_bytes": number(dirty["dirty_bytes"]),
        "setting_thp": sysfs.thp_mode() or "",
        "settings_changed": changed,
    }


def restore_left_over() -> None:
    """Put back what a killed run changed, before this case reads the settings in force (root
    only: nobody else could have changed them, nor can write them back)."""
    if os.geteuid() == 0:
        tuning.restore_abandoned()


def restore(tuned: tuning.Tuning | None) -> None:
    """Put back what a case changed (teardown); RuntimeError naming every setting that could
    not be written back."""
    if tuned is not None:
        errors = tuned.restore()
        if errors:
            raise RuntimeError("; ".join(errors))


def require_tuning(case: dict[str, Any], what: str, context: str = "") -> None:
    """Refuse (UnsupportedCase) a case that must change ``what`` unless it runs as root with
    ``allow_tuning=yes``; ``context`` adds why it matters (a disk shared with the system)."""
    suffix = f" ({context})" if context else ""
    if case.get("allow_tuning") != "yes":
        raise UnsupportedCase(
            f"this case changes {what}, a system setting: it needs allow_tuning=yes{suffix}"
        )
    refusal = tuning.tuning_refusal(what)
    if refusal:
        raise UnsupportedCase(refusal + suffix)
