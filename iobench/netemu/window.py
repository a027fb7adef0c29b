"""The TCP receive window a fixed SO_RCVBUF allows, and the kernel facts that decide it.

The bandwidth-delay law: a sender can have at most one receive window unacknowledged, so
throughput <= window / RTT. What window does SO_RCVBUF=64 KiB give?

- ``setsockopt(SO_RCVBUF, n)`` sets ``sk_rcvbuf = 2n`` (capped by net.core.rmem_max before
  doubling) and locks it: autotuning no longer grows it. getsockopt returns ``2n``.
- The kernel counts skb overhead (``truesize``) against ``sk_rcvbuf``, so only part of it is
  window: ``tcp_win_from_space(sk, space)``.
  * Linux < 6.6: ``space - (space >> tcp_adv_win_scale)`` (adv_win_scale > 0; for <= 0:
    ``space >> -adv_win_scale``); the default 1 gives half.
  * Linux >= 6.6 (commit dfa2f0483360 "tcp: get rid of sysctl_tcp_adv_win_scale"): the sysctl
    is obsolete and ``space * scaling_ratio >> 8`` is used, where ``scaling_ratio`` is per
    socket, starts at 128 (half) and is re-measured from received packets as
    ``skb->len * 256 / skb->truesize`` (``tcp_measure_rcv_mss``). When it changes on a socket
    whose buffer is locked, ``window_clamp`` is recomputed as ``tcp_win_from_space(sk_rcvbuf)``.
    The ratio depends on the driver (how big its buffers are for a packet): loopback's 64 KiB
    packets give ~250/256, 1500-byte TUN packets about 150/256.
- ``getsockopt(TCP_WINDOW_CLAMP)`` returns ``window_clamp``: once data has arrived it is exactly
  the window the receiver may advertise at most, and ``window_clamp * 256 / sk_rcvbuf`` is the
  ratio in force. ``expected_window_bytes`` uses it; before any data (or on older kernels) it
  falls back to the adv_win_scale formula. TCP_INFO's ``tcpi_rcv_wnd`` (Linux 6.2+: the window
  last advertised) and ``tcpi_rcv_ssthresh`` show the window actually offered.
"""

from __future__ import annotations

import platform
import socket
import struct
from typing import Any

#: struct tcp_info offsets (uapi linux/tcp.h) of the fields read here.
_TCPI_RCV_MSS = 20
_TCPI_RCV_SSTHRESH = 64
_TCPI_RCV_SPACE = 96
_TCPI_SND_WND = 228
_TCPI_RCV_WND = 232  # Linux 6.2+
_TCP_INFO_LEN = 512

SYSCTLS = {
    "net.ipv4.tcp_rmem": "/proc/sys/net/ipv4/tcp_rmem",
    "net.ipv4.tcp_wmem": "/proc/sys/net/ipv4/tcp_wmem",
    "net.ipv4.tcp_adv_win_scale": "/proc/sys/net/ipv4/tcp_adv_win_scale",
    "net.core.rmem_max": "/proc/sys/net/core/rmem_max",
    "net.core.wmem_max": "/proc/sys/net/core/wmem_max",
}


def kernel_has_scaling_ratio(release: str | None = None) -> bool:
    """Linux 6.6 or later: the per-socket scaling_ratio replaced tcp_adv_win_scale."""
    release = release or platform.release()
    try:
        major, minor = (int(part) for part in release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 6)


def tcp_facts() -> dict[str, str]:
    """The sysctls that decide TCP windows, as the calling thread's namespace sees them
    (tcp_rmem/wmem/adv_win_scale are per namespace; core rmem/wmem_max are global)."""
    facts = {}
    for name, path in SYSCTLS.items():
        try:
            with open(path) as handle:
                facts[name] = " ".join(handle.read().split())
        except OSError:
            facts[name] = ""
    facts["kernel"] = platform.release()
    facts["window_rule"] = (
        "space * scaling_ratio / 256 (per socket, measured from received packets)"
        if kernel_has_scaling_ratio()
        else "space - space >> tcp_adv_win_scale"
    )
    return facts


def window_from_space(space: int, adv_win_scale: int = 1, scaling_ratio: int | None = None) -> int:
    """``tcp_win_from_space``: how much of ``space`` buffer bytes is advertisable window."""
    if scaling_ratio is not None:
        return (space * scaling_ratio) >> 8
    if adv_win_scale <= 0:
        return space >> -adv_win_scale
    return space - (space >> adv_win_scale)


def _adv_win_scale() -> int:
    try:
        with open(SYSCTLS["net.ipv4.tcp_adv_win_scale"]) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 1


def tcp_info(sock: socket.socket) -> dict[str, int]:
    """The receive-side TCP_INFO fields this module uses (those the kernel fills)."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    fields = {
        "tcpi_rcv_mss": _TCPI_RCV_MSS,
        "tcpi_rcv_ssthresh": _TCPI_RCV_SSTHRESH,
        "tcpi_rcv_space": _TCPI_RCV_SPACE,
        "tcpi_snd_wnd": _TCPI_SND_WND,
        "tcpi_rcv_wnd": _TCPI_RCV_WND,
    }
    return {name: struct.unpack_from("I", raw, at)[0] for name, at in fields.items() if at + 4 <= len(raw)}


def window_facts(sock: socket.socket) -> dict[str, Any]:
    """Everything that decides ``sock``'s receive window, and the window itself
    (``window_bytes``) with how it was derived (``window_source``)."""
    rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    clamp = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_WINDOW_CLAMP)
    facts: dict[str, Any] = {"rcvbuf": rcvbuf, "window_clamp": clamp, **tcp_info(sock)}
    formula = window_from_space(rcvbuf, _adv_win_scale())
    if kernel_has_scaling_ratio() and 0 < clamp <= rcvbuf:
        # window_clamp == tcp_win_from_space(sk_rcvbuf) with the socket's measured ratio
        facts["scaling_ratio"] = (clamp * 256 + rcvbuf - 1) // rcvbuf
        facts["window_bytes"] = clamp
        facts["window_source"] = "TCP_WINDOW_CLAMP = SO_RCVBUF * scaling_ratio / 256"
    else:
        facts["window_bytes"] = min(formula, clamp) if clamp > 0 else formula
        facts["window_source"] = "SO_RCVBUF - SO_RCVBUF >> tcp_adv_win_scale"
    return facts


def expected_window_bytes(sock: socket.socket) -> int:
    """The receive window a socket with a fixed SO_RCVBUF can offer at most, in bytes (see the
    module docstring). Call it on the receiving socket after some data arrived: on Linux >= 6.6
    the ratio is measured from the packets received."""
    return int(window_facts(sock)["window_bytes"])
