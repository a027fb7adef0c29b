"""What the emulated-link tests (tests/test_netemu.py, tests/test_netns_peer.py) share."""

from __future__ import annotations

import pytest

from iobench.errors import LinkUnsupported
from iobench.netemu import check_support


def unsupported_reason() -> str | None:
    """Why this process cannot build an emulated link here (not root, no ``ip``...), or None."""
    try:
        check_support()
    except LinkUnsupported as exc:
        return str(exc)
    return None


#: Skips a test, with the reason, where no link can be built.
needs_link = pytest.mark.skipif(unsupported_reason() is not None, reason=unsupported_reason() or "")
