"""A virtual second host with a real RTT, on one machine (docs/NETEMU.md).

``VirtualLink(LinkSpec(...))`` makes two network namespaces joined by an emulated link (netem on
a veth pair, or a packet-level TUN relay where the kernel has no sch_netem); ``measure_link``
measures what the link really does; ``expected_window_bytes`` gives the receive window a fixed
SO_RCVBUF allows, for the bandwidth-delay law.
"""

from iobench.errors import LinkUnsupported
from iobench.netemu.link import LinkSpec, VirtualLink, check_support
from iobench.netemu.measure import measure_link
from iobench.netemu.ns import LinkError, cleanup_stale
from iobench.netemu.window import expected_window_bytes, window_facts

__all__ = [
    "LinkError",
    "LinkSpec",
    "LinkUnsupported",
    "VirtualLink",
    "check_support",
    "cleanup_stale",
    "expected_window_bytes",
    "measure_link",
    "window_facts",
]
