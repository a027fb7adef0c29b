"""What runs inside the timed (wall-clock) window of a CounterProbe: the timed code alone.

Whatever runs between the wall-clock reads is timed with every repetition. Building the
snapshot there (``dataclasses.replace``, ~4 us) and the two CPU-clock reads (a syscall each, ~1 us
on a VM) cost 2-5% of a 200 us repetition; these tests pin the order instead of timing it.
"""

from __future__ import annotations

import time
import types

import pytest

from iobench.engine import counters


@pytest.mark.parametrize("scope", ["thread", "process"])
def test_the_wall_clock_is_the_last_read_before_and_the_first_after_the_timed_code(
    monkeypatch, scope
) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []
    real_init = counters.Snapshot.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        events.append("snapshot")
        real_init(self, *args, **kwargs)

    def clock(name: str, real):  # type: ignore[no-untyped-def]
        return lambda: events.append(name) or real()

    fake_time = types.SimpleNamespace(
        perf_counter_ns=clock("wall", time.perf_counter_ns),
        thread_time_ns=clock("cpu", time.thread_time_ns),
        process_time_ns=clock("cpu", time.process_time_ns),
    )
    monkeypatch.setattr(counters.Snapshot, "__init__", init)
    monkeypatch.setattr(counters, "time", fake_time)
    probe = counters.CounterProbe(scope)
    try:
        events.clear()
        before = probe.before()
        assert events[-2:] == ["cpu", "wall"]  # no snapshot built, no CPU clock read after "wall"
        events.clear()
        delta = probe.after(before)
        assert events[:2] == ["wall", "cpu"]  # and none before it in after()
    finally:
        probe.close()
    assert delta.time_ns >= 0 and delta.cpu_ns >= 0


def test_one_threads_cpu_never_exceeds_the_wall_time_around_it() -> None:
    """The CPU clock brackets the wall clock (its reads stay out of the timed window), so a
    busy thread's raw CPU delta can exceed the wall delta by a clock read; it is capped."""
    with counters.CounterProbe("thread") as probe:
        for _ in range(200):
            before = probe.before()
            total = sum(range(2000))  # pure CPU: raw CPU ~ wall time
            delta = probe.after(before)
            assert total and 0 < delta.cpu_ns <= delta.time_ns
