"""The folio sizes of a file's page cache, read from the kernel's own page tables.

How: map the file read-only, fault in the pages ``mincore`` says are resident (nothing is
read from the disk, so the layout measured is the layout found), then look each page up:
``/proc/self/pagemap`` gives its physical frame number (PFN; 8 bytes per virtual page, PFN
in bits 0-54 when bit 63 "present" is set) and ``/proc/kpageflags`` that frame's flags (8
bytes per PFN). A folio of more than one page is a head page (KPF_COMPOUND_HEAD) followed,
in file order and in physically consecutive frames, by tail pages (KPF_COMPOUND_TAIL); a page
with neither flag is a folio of its own. Both files need CAP_SYS_ADMIN: without it pagemap
reports PFN 0 and kpageflags cannot be opened, and the histogram is unknown with that reason.
See Documentation/admin-guide/mm/pagemap.rst in the kernel tree.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from iobench.osutil import libc

PAGE = mmap.PAGESIZE
PAGEMAP = "/proc/self/pagemap"
KPAGEFLAGS = "/proc/kpageflags"
#: Bits of a /proc/kpageflags entry (include/uapi/linux/kernel-page-flags.h).
KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16
KPF_HUGE = 1 << 17
KPF_THP = 1 << 22
_PRESENT = 1 << 63
_PFN_MASK = (1 << 55) - 1


@dataclass
class FolioLayout:
    """Folio sizes of the resident part of one file: ``histogram`` maps a folio's size in pages
    to how many such folios there are; ``unknown`` says why there is none."""

    histogram: dict[int, int] = field(default_factory=dict)
    pages_seen: int = 0
    unknown: str = ""

    @property
    def known(self) -> bool:
        return not self.unknown and self.pages_seen > 0

    @property
    def folios(self) -> int:
        return sum(self.histogram.values())

    def pages_p50(self) -> float:
        """The folio size (pages) that holds the file's median resident page: a byte-weighted
        median, so a few large folios count for the bytes they hold."""
        if not self.known:
            return float("nan")
        half = self.pages_seen / 2
        counted = 0
        for size in sorted(self.histogram):
            counted += size * self.histogram[size]
            if counted >= half:
                return float(size)
        return float(max(self.histogram))

    def share_in_large(self) -> float:
        """Fraction of the resident pages that sit in folios of more than one page."""
        if not self.known:
            return float("nan")
        large = sum(size * n for size, n in self.histogram.items() if size > 1)
        return large / self.pages_seen

    def histogram_json(self) -> str:
        """``{"1": 4096}``: folio size in pages -> folios, sizes ascending (a text column)."""
        return json.dumps({str(k): self.histogram[k] for k in sorted(self.histogram)})


def unavailable_reason() -> str:
    """Why the folio layout cannot be read here ('' when it can)."""
    try:
        fd = os.open(KPAGEFLAGS, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return f"{KPAGEFLAGS}: {exc.strerror} (reading page flags needs root: CAP_SYS_ADMIN)"
    os.close(fd)
    return ""


def _read_exact(fd: int, length: int, offset: int) -> bytes:
    data = b""
    while len(data) < length:
        chunk = os.pread(fd, length - len(data), offset + len(data))
        if not chunk:
            break
        data += chunk
    return data


def _fault_in_resident(address: int, size: int) -> list[int]:
    """Read one byte of every resident page of the mapping (never one that is not resident:
    that would read it from the disk and change the layout); returns their indexes."""
    pages = (size + PAGE - 1) // PAGE
    vector = libc.residency(address, size)
    resident = [i for i in range(pages) if vector[i] & 1]
    for index in resident:
        ctypes.c_char.from_address(address + index * PAGE).value  # noqa: B018 - the read faults it in
    return resident


def _pfns(address: int, indexes: list[int]) -> dict[int, int]:
    """Page index -> PFN for the mapped pages (0 when the kernel hides PFNs from us)."""
    if not indexes:
        return {}
    first, last = indexes[0], indexes[-1]
    fd = os.open(PAGEMAP, os.O_RDONLY | os.O_CLOEXEC)
    try:
        raw = _read_exact(fd, (last - first + 1) * 8, (address // PAGE + first) * 8)
    finally:
        os.close(fd)
    entries = struct.unpack(f"<{len(raw) // 8}Q", raw)
    found = {}
    for index in indexes:
        entry = entries[index - first]
        if entry & _PRESENT:
            found[index] = entry & _PFN_MASK
    return found


def _flags(pfns: list[int]) -> dict[int, int]:
    """PFN -> its kpageflags word, reading runs of consecutive frames in one pread each."""
    flags: dict[int, int] = {}
    fd = os.open(KPAGEFLAGS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        ordered = sorted(set(pfns))
        start = 0
        while start < len(ordered):
            end = start
            while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
                end += 1
            count = end - start + 1
            raw = _read_exact(fd, count * 8, ordered[start] * 8)
            for offset, word in enumerate(struct.unpack(f"<{len(raw) // 8}Q", raw)):
                flags[ordered[start] + offset] = word
            start = end + 1
    finally:
        os.close(fd)
    return flags


def folio_sizes(page_pfns: list[tuple[int, int]], flags: dict[int, int]) -> dict[int, int]:
    """Folio size (pages) -> count, from (page index, PFN) in file order and each PFN's flags.

    A head page starts a folio; each following tail whose page index and PFN both advance by
    one belongs to it. A tail with no head before it (its head is not resident or not mapped)
    starts a folio of its own, so nothing is counted twice.
    """
    sizes: Counter[int] = Counter()
    current = 0
    previous: tuple[int, int] | None = None
    for index, pfn in page_pfns:
        word = flags.get(pfn, 0)
        continues = (
            word & KPF_COMPOUND_TAIL
            and previous is not None
            and current > 0
            and index == previous[0] + 1
            and pfn == previous[1] + 1
        )
        if continues:
            current += 1
        else:
            if current:
                sizes[current] += 1
            current = 1
        previous = (index, pfn)
    if current:
        sizes[current] += 1
    return dict(sizes)


def file_folio_layout(path: Path | str) -> FolioLayout:
    """The folio-size histogram of the file's resident pages (unknown with a reason without
    CAP_SYS_ADMIN, for an empty file, or when nothing of it is cached)."""
    reason = unavailable_reason()
    if reason:
        return FolioLayout(unknown=reason)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return FolioLayout(unknown="the file is empty")
        address = libc.map_memory(size, fd=fd, prot=mmap.PROT_READ)
        try:
            resident = _fault_in_resident(address, size)
            ordered = sorted(_pfns(address, resident).items())
            # Flags while the pages are still mapped by us: mapped pages are not reclaimed.
            flags = _flags([pfn for _, pfn in ordered if pfn])
        finally:
            libc.unmap(address, size)
    finally:
        os.close(fd)
    if not resident:
        return FolioLayout(unknown="no page of the file is in the page cache")
    if not any(pfn for _, pfn in ordered):
        return FolioLayout(unknown=f"{PAGEMAP} shows no frame numbers (needs CAP_SYS_ADMIN)")
    return FolioLayout(folio_sizes(ordered, flags), len(ordered))
