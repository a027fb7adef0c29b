"""Matplotlib, set up before its first import: no writes outside the report, no chatter.

Importing matplotlib writes a font cache and a config folder under $HOME (~/.cache/matplotlib,
~/.config/matplotlib), or, when HOME is not writable, makes /tmp/matplotlib-* and says so on
stderr. A report must write only into its own folder, so matplotlib gets a private temporary
config folder (removed at exit) unless the user chose one with MPLCONFIGDIR. Its log messages
("building the font cache") and the warnings drawing odd data gives (log scale of no positive
value, NumPy's invalid value in log of a zero or negative time from a hand-edited run) would
add lines to the report command's output that say nothing about the runs: they are silenced.

Imported for these side effects by ``iobench.report.figures``, before ``import matplotlib``.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import warnings

#: Where warnings are silenced: raised in iobench's or its plotting libraries' own code
#: (a script that uses iobench keeps its own warnings).
QUIET_MODULES = r"(iobench|matplotlib|numpy|pandas)(\..*)?$"


def private_config_dir() -> str | None:
    """Point MPLCONFIGDIR at a new temporary folder removed at exit; None when the user set one."""
    if os.environ.get("MPLCONFIGDIR"):
        return None
    folder = tempfile.mkdtemp(prefix="iobench-matplotlib-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["MPLCONFIGDIR"] = folder
    return folder


def quiet() -> None:
    """No matplotlib log lines below errors, no Runtime/User warnings from the drawing code."""
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    for category in (RuntimeWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=QUIET_MODULES)


private_config_dir()
quiet()
