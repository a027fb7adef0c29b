"""Bits several test modules share."""

from __future__ import annotations

import sys
from pathlib import Path

#: The installed console script, next to this interpreter.
IOBENCH = [str(Path(sys.executable).with_name("iobench"))]

#: Protocol flags for a single recorded repetition and no warmup.
ONE_REP = ["--warmup", "0", "--min-reps", "1", "--max-reps", "1"]
