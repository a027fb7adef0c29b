"""After `make install`: say so, and fail, when a C extension did not build although it could.

setup.py marks the extensions optional so that a machine without a compiler or Python's headers
still installs (iobench then runs its pure-Python loops). The cost is that a compile error is
only a warning, hidden by ``pip --quiet``, and an edited C file silently leaves the old module in
place. Where a compiler and Python.h are both present, each module must be newer than its sources:
every C source and header in its folder (each folder builds one module; setup.py names them).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("iobench/loops/_native", "iobench/netemu/_relay")


def stale_modules() -> list[str]:
    """The modules missing or older than one of their sources."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    stale = []
    for module in MODULES:
        built = ROOT / f"{module}{suffix}"
        folder = built.parent
        sources = [*folder.glob("*.c"), *folder.glob("*.h")]
        # A source dated in the future (clock skew, an unpacked archive) says nothing: left out, it
        # cannot make every build stale forever.
        now = time.time()
        dates = [source.stat().st_mtime for source in sources]
        newest = max((date for date in dates if date <= now), default=0.0)
        if not built.exists() or built.stat().st_mtime < newest:
            stale.append(module.replace("/", "."))
    return stale


def main() -> int:
    # The compiler setuptools uses: $CC, else the one Python was built with ("ccache gcc" -> ccache).
    command = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    compiler = shutil.which(command[0]) if command else None
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if not compiler or not headers:
        return 0  # the pure-Python loops, as setup.py intends; `--engine native` says why
    stale = stale_modules()
    if stale:
        print(
            f"install: {', '.join(stale)} did not build from the current sources (a compile error?); "
            f"see the compiler's messages with: {sys.executable} -m pip install -e . -v",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
