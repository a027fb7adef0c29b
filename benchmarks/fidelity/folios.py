"""Folio sizes of files in the page cache (root only: /proc/self/pagemap PFNs, /proc/kpageflags).

How a file was written decides how its page cache is laid out, and that moves the speed of a warm
read: here one 32 MiB write gave 2 MiB folios, 1 MiB writes 1 MiB folios, 4 KiB writes 4 KiB
folios, and 64 KiB reads of the last ran at a third of the speed of the others.

    sudo python benchmarks/fidelity/folios.py FILE...
"""

from __future__ import annotations

import collections
import ctypes
import mmap
import os
import struct
import sys

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_COMPOUND_TAIL = 1 << 16  # KPF_COMPOUND_TAIL: a page that continues the folio before it
_PFN_MASK = (1 << 55) - 1


def folio_sizes(path: str) -> dict[int, int]:
    """{folio size in bytes: how many} for the file's pages, mapping (and so caching) them all."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pages = -(-size // mmap.PAGESIZE)
        base = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        try:
            touched = 0
            for page in range(pages):  # fault every page in, so pagemap has its PFN
                touched += ctypes.c_char.from_address(base + page * mmap.PAGESIZE).value[0]
            with open("/proc/self/pagemap", "rb") as pagemap, open("/proc/kpageflags", "rb") as flags:
                pagemap.seek(base // mmap.PAGESIZE * 8)
                entries = struct.unpack(f"{pages}Q", pagemap.read(8 * pages))
                sizes: collections.Counter[int] = collections.Counter()
                run = 0
                for entry in entries:
                    flags.seek((entry & _PFN_MASK) * 8)
                    if struct.unpack("Q", flags.read(8))[0] & _COMPOUND_TAIL:
                        run += 1
                        continue
                    if run:
                        sizes[run * mmap.PAGESIZE] += 1
                    run = 1
                if run:
                    sizes[run * mmap.PAGESIZE] += 1
        finally:
            _libc.munmap(base, size)
    finally:
        os.close(fd)
    return dict(sorted(sizes.items()))


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
