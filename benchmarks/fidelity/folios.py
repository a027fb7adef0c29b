"""Folio sizes of files in the page cache (root only: /proc/self/pagemap PFNs, /proc/kpageflags).

How a file was written decides how its page cache is laid out, and that moves the speed of a warm
read: here one 32 MiB write gave 2 MiB folios, 1 MiB writes 1 MiB folios, 4 KiB writes 4 KiB
folios, and 64 KiB reads of the last ran at a third of the speed of the others.

    sudo python benchmarks/fidelity/folios.py FILE...

The counting is the folio-layout experiment's (`iobench.osutil.kpageflags`); each file is read
through first, so that every page is cached.
"""

from __future__ import annotations

import mmap
import sys

from iobench.osutil.kpageflags import file_folio_layout


def folio_sizes(path: str) -> dict[int, int]:
    """{folio size in bytes: how many} for the file's pages, caching them all first.

    OSError naming the reason when the layout cannot be read (not root, an empty file)."""
    with open(path, "rb") as file:
        while file.read(1 << 20):
            pass
    layout = file_folio_layout(path)
    if not layout.known:
        raise OSError(f"{path}: {layout.unknown}")
    return {pages * mmap.PAGESIZE: count for pages, count in sorted(layout.histogram.items())}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for path in argv:
        sizes = folio_sizes(path)
        print(f"{path}: " + ", ".join(f"{count} x {size // 1024} KiB" for size, count in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
