"""context-switch: two processes or two threads ping-pong one byte (seeds 000, 003)."""

from __future__ import annotations

import os
import queue
import resource
import threading
import time
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iobench.errors import UnsupportedCase
from iobench.experiments import register
from iobench.experiments.base import Column, Experiment, FigureSpec
from iobench.metrics import LAT_MAX, LAT_P50, LAT_P99
from iobench.metrics import Metric as M
from iobench.osutil.children import Child, fork_child, ready
from iobench.params import Kind, Param, choice_param
from iobench.stats import percentiles

if TYPE_CHECKING:
    import pandas as pd

_WAIT_S = 60.0


def _echo_over_pipes(
    inbound: int, outbound: int, round_trips: int, parked: Callable[[], None]
) -> tuple[int, int]:
    """The partner's loop: read a byte, write it back; returns its (voluntary, involuntary) switches.

    ``parked`` is called once everything is set up, just before the first wait for a byte."""
    read, write = os.read, os.write
    before = resource.getrusage(resource.RUSAGE_THREAD)
    parked()
    for _ in range(round_trips):
        byte = read(inbound, 1)
        if not byte:
            break
        write(outbound, byte)
    after = resource.getrusage(resource.RUSAGE_THREAD)
    return after.ru_nvcsw - before.ru_nvcsw, after.ru_nivcsw - before.ru_nivcsw


@register
class ContextSwitch(Experiment):
    """Round trips of one byte between two processes or two threads."""

    name = "context-switch"
    has_peers = True
    summary = "round-trip latency and context switches of a one-byte ping-pong"
    seed_idea = (
        "every blocking hand-off between two tasks costs the kernel a context switch; "
        "threads and processes pay it alike, and Python threads add the GIL hand-off."
    )
    params = (
        choice_param(
            "mode",
            ("process-pipe", "thread-pipe", "thread-queue"),
            "process-pipe: a forked child echoes over two pipes; thread-pipe: a thread does the "
            "same; thread-queue: two threads hand a token over queue.SimpleQueue (a lock, i.e. "
            "a futex, no pipe).",
        ),
        Param(
            "round_trips",
            Kind.INT,
            (5000,),
            "Round trips per repetition.",
            sweep=True,
            minimum=1,
            maximum=10**8,
        ),
    )

    columns = (
        Column("Mean RTT", "elapsed_ns", "duration", per="ops"),
        Column("p50 RTT", "lat_p50_ns", "duration"),
        Column("p99 RTT", "lat_p99_ns", "duration"),
        Column("Max RTT", "lat_max_ns", "duration"),
        Column("Switches/RT here", "ctx_vol", "ratio", per="ops"),
        Column("Switches/RT peer", "peer_ctx_vol", "ratio", per="ops"),
        Column("Involuntary here", "ctx_invol"),
        Column("read()s", "syscalls_read"),
    )

    figures = (
        FigureSpec(
            "percentiles", title="Round-trip latency (p50, p99; the max is in the table)",
            metrics=("lat_p50_ns", "lat_p99_ns"),
            unit="duration", log_y=True,
        ),
        FigureSpec("metric", title="Voluntary switches per round trip", metric="ctx_vol", per="ops",
                   unit="ratio", y_label="switches per round trip"),
    )  # fmt: skip

    metrics = (
        LAT_P50,
        LAT_P99,
        LAT_MAX,
        M(
            "peer_ctx_vol",
            "Partner voluntary switches",
            "count",
            "Voluntary context switches of the ping-pong partner.",
            "lower",
        ),
        M(
            "peer_ctx_invol",
            "Partner involuntary switches",
            "count",
            "Involuntary context switches of the partner.",
            "lower",
        ),
        M("peer_cpu_ns", "Partner CPU", "duration", "CPU time of the partner process or thread.", "lower"),
    )

    @classmethod
    def explain(cls, summary: pd.DataFrame) -> list[str]:
        """Round-trip p50/p99 and switches per round trip per mode, and the modes ranked by median
        round trip where the gaps are measurable."""
        from iobench import explain as ex
        from iobench.units import format_duration

        modes = [m for m in ex.distinct(summary, "mode") if ex.one(summary, "lat_p50_ns", mode=m) is not None]
        if not modes:
            return []
        parts = []
        for mode in modes:
            p50, p99 = ex.one(summary, "lat_p50_ns", mode=mode), ex.one(summary, "lat_p99_ns", mode=mode)
            switches = ex.value(summary, "ctx_vol", per="ops", mode=mode)
            details = [f"p99 {format_duration(p99)}"] if p99 is not None else []
            if switches is not None:
                details.append(f"{switches:.2g} voluntary switches per round trip here")
            parts.append(f"{mode} {format_duration(p50)}" + (f" ({', '.join(details)})" if details else ""))
        out = ["Median round trip: " + "; ".join(parts) + "."]
        ranking = ex.rank(summary, "lat_p50_ns", [(m, {"mode": m}) for m in modes], higher_is_better=False)
        if ranking is not None:
            out.append(
                "By median round trip, "
                + ex.ranking_sentence(ranking, format_duration, higher_is_better=False)
                + "."
            )
        return out

    # Defaults so teardown works even when prepare never ran.
    _child: Child | None = None
    _fds: list[int] = []  # noqa: RUF012 - replaced per instance, never mutated in place

    def prepare(self) -> None:
        self.round_trips: int = self.case["round_trips"]
        self.mode: str = self.case["mode"]
        # One slot per round trip, allocated and touched before timing.
        self.latencies = array("q", bytes(8 * self.round_trips))
        self._thread: threading.Thread | None = None
        self._peer: dict[str, Any] = {}

    def before_rep(self) -> dict[str, Any]:
        self._peer = {}
        if self.mode == "thread-queue":
            self._to_peer: Any = queue.SimpleQueue()
            self._from_peer: Any = queue.SimpleQueue()
            parked = threading.Event()
            self._thread = threading.Thread(target=self._queue_peer, args=(parked,), daemon=True)
            self._thread.start()
            self._await_parked(parked)
            return {}
        to_peer_r, to_peer_w = os.pipe()
        self._fds = [to_peer_r, to_peer_w]  # kept at once: teardown closes them if the next pipe fails
        from_peer_r, from_peer_w = os.pipe()
        self._fds = [*self._fds, from_peer_r, from_peer_w]
        self._out, self._in = to_peer_w, from_peer_r
        round_trips = self.round_trips
        if self.mode == "process-pipe":

            def child() -> tuple[int, int]:
                # Hold only our own ends: a parent that dies then reads as EOF here, not a hang.
                os.close(to_peer_w)
                os.close(from_peer_r)
                return _echo_over_pipes(to_peer_r, from_peer_w, round_trips, ready)

            self._child = fork_child(child, wait_ready=True)
            # Likewise: if the child dies, our read() returns EOF instead of blocking forever.
            os.close(to_peer_r)
            os.close(from_peer_w)
            self._fds = [to_peer_w, from_peer_r]
        else:
            parked = threading.Event()

            def peer() -> None:
                self._peer["switches"] = _echo_over_pipes(to_peer_r, from_peer_w, round_trips, parked.set)

            self._thread = threading.Thread(target=peer, daemon=True)
            self._thread.start()
            self._await_parked(parked)
        return {}

    def _await_parked(self, parked: threading.Event) -> None:
        """The partner thread's start-up must be over before the first round trip is timed."""
        if not parked.wait(_WAIT_S):
            raise RuntimeError(f"the echo thread did not start within {_WAIT_S:g} s")

    def _queue_peer(self, parked: threading.Event) -> None:
        get, put = self._to_peer.get, self._from_peer.put
        before = resource.getrusage(resource.RUSAGE_THREAD)
        parked.set()
        for _ in range(self.round_trips):
            put(get(timeout=_WAIT_S))
        after = resource.getrusage(resource.RUSAGE_THREAD)
        self._peer["switches"] = (after.ru_nvcsw - before.ru_nvcsw, after.ru_nivcsw - before.ru_nivcsw)

    def run_once(self) -> dict[str, Any]:
        clock = time.perf_counter_ns
        latencies = self.latencies
        if self.mode == "thread-queue":
            put, get = self._to_peer.put, self._from_peer.get
            for index in range(self.round_trips):
                start = clock()
                put(1)
                get(timeout=_WAIT_S)
                latencies[index] = clock() - start
        else:
            read, write, out_fd, in_fd = os.read, os.write, self._out, self._in
            for index in range(self.round_trips):
                start = clock()
                write(out_fd, b"x")
                if not read(in_fd, 1):
                    raise UnsupportedCase("the echo partner went away mid-run")
                latencies[index] = clock() - start
        return {"bytes": self.round_trips, "ops": self.round_trips}

    def after_rep(self) -> dict[str, Any]:
        if self._child is not None:
            (peer_vol, peer_invol), usage = self._child.wait(_WAIT_S)
            self._child = None
            peer_cpu_ns = round((usage.ru_utime + usage.ru_stime) * 1e9)
        else:
            assert self._thread is not None
            self._thread.join(_WAIT_S)
            if self._thread.is_alive():
                raise RuntimeError("echo thread did not finish")
            peer_vol, peer_invol = self._peer["switches"]
            peer_cpu_ns = None
        self._close_fds()
        p50, p99, worst = percentiles(self.latencies, 0.50, 0.99, 1.0)
        return {
            "lat_p50_ns": p50,
            "lat_p99_ns": p99,
            "lat_max_ns": worst,
            "peer_ctx_vol": peer_vol,
            "peer_ctx_invol": peer_invol,
            "peer_cpu_ns": peer_cpu_ns,
        }

    def _close_fds(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def teardown(self) -> None:
        if self._child is not None:
            self._child.kill()
        self._close_fds()  # a thread blocked in read() sees EOF and ends
