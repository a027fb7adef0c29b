"""Does this filesystem really do O_DIRECT, or accept the flag and go through the page cache?

tmpfs (since Linux 6.6) opens files with O_DIRECT and serves them from memory; other
filesystems may fall back to buffered IO. The flag being accepted proves nothing, so a small
probe file is written and read with O_DIRECT and the page cache is asked (cachestat or mincore) whether
its pages ended up there.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iobench.engine import cache
from iobench.errors import UnsupportedCase
from iobench.hostinfo import target_facts
from iobench.loops.buffers import page_aligned_buffer
from iobench.osutil.files import NEW_FILE_FLAGS

#: Probe size: a few pages, aligned for any logical block size up to 16 KiB.
PROBE_BYTES = 64 << 10


@dataclass(frozen=True)
class DirectEvidence:
    """What the probe saw: fractions of the probe file in the page cache (0..1)."""

    after_write: float
    after_evict: float
    after_read: float

    @property
    def honoured(self) -> bool:
        """O_DIRECT kept the data out of the page cache both ways."""
        return self.after_write < 0.01 and self.after_evict < 0.01 and self.after_read < 0.01

    def reason(self) -> str:
        """Why O_DIRECT is not honoured ("" when it is)."""
        if self.honoured:
            return ""
        if self.after_write >= 0.01:
            return f"a file written with O_DIRECT was {self.after_write:.0%} in the page cache right after"
        if self.after_evict >= 0.01:
            return (
                f"its pages cannot be dropped from the page cache ({self.after_evict:.0%} stayed after "
                "fsync + fadvise(DONTNEED))"
            )
        return f"a file read with O_DIRECT was {self.after_read:.0%} in the page cache right after"


def direct_verdict(reason: str, folder: Path, consequence: str) -> dict[str, Any]:
    """A row's ``direct_verified``/``direct_note``: verified when ``reason`` (why O_DIRECT was
    not honoured) is empty; else a note naming the filesystem, the reason and ``consequence``
    (what the number is instead)."""
    if not reason:
        return {"direct_verified": True, "direct_note": ""}
    fs = target_facts(folder).get("fs_type") or "this filesystem"
    return {
        "direct_verified": False,
        "direct_note": f"O_DIRECT not honoured on {fs}: {reason}; {consequence}",
    }


def probe_direct_io(folder: Path) -> DirectEvidence:
    """Write, evict and read back a small probe file in ``folder`` with O_DIRECT.

    OSError (EINVAL) when the filesystem refuses O_DIRECT at open; the probe file is removed.
    """
    path = Path(folder) / ".o_direct-probe"
    buffer = page_aligned_buffer(PROBE_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_DIRECT | NEW_FILE_FLAGS, 0o600)
        try:
            os.write(fd, buffer)
            os.fsync(fd)
        finally:
            os.close(fd)
        after_write = cache.resident_fraction(path)
        cache.evict(path)
        after_evict = cache.resident_fraction(path)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.readv(fd, [buffer])
        finally:
            os.close(fd)
        return DirectEvidence(after_write, after_evict, cache.resident_fraction(path))
    finally:
        path.unlink(missing_ok=True)
        buffer.close()


def probe_for_case(folder: Path) -> DirectEvidence:
    """``probe_direct_io`` for a case that asked for O_DIRECT: a filesystem that refuses the
    flag at open (EINVAL) makes the case unsupported, with the reason."""
    try:
        return probe_direct_io(folder)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise UnsupportedCase(
                f"EINVAL: this filesystem refuses O_DIRECT at open ({exc.strerror})"
            ) from None
        raise
