"""What a Dask worker runs for iobench: start the measuring child and hand back its answer.

These functions execute inside the worker process (shipped by reference: iobench must be
installed there, which ``cluster.check_versions`` verifies before any case). The task thread
only waits in the kernel for the child to exit; the measuring happens in the child.
"""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
from typing import Any

#: How much of the child's stderr a failure message quotes.
_STDERR_TAIL = 400


def run_child(request: dict[str, Any]) -> dict[str, Any]:
    """Run ``python -m iobench.fleet.child`` with ``request``; its JSON answer, or
    ``{"error": ...}`` saying how the child died."""
    done = subprocess.run(
        [sys.executable, "-m", "iobench.fleet.child"],
        input=pickle.dumps(request),
        capture_output=True,
        check=False,
    )
    if done.returncode == 0:
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            return answer
    if done.returncode < 0:
        how = f"was killed by {signal.Signals(-done.returncode).name}"
    else:
        how = f"exited with status {done.returncode}"
    tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
    detail = f": {tail[0][-_STDERR_TAIL:]}" if tail[0] else ""
    return {"error": f"the measuring process {how}{detail}"}


def quiet_worker(dask_worker: Any = None) -> dict[str, Any]:
    """Stop what a worker (or nanny) does periodically that would take CPU from the measuring
    child on the same host: the statistical profiler (every 10 ms by default) and the
    system monitor (every 500 ms) and the memory monitor (RSS every 100 ms). Heartbeats stay: the scheduler needs them to notice a dead
    worker. Returns the settings now in force, for the run's meta.json."""
    import dask
    import distributed

    stopped = []
    callbacks = getattr(dask_worker, "periodic_callbacks", {})
    for name in ("profile", "profile-cycle", "monitor", "memory_monitor"):
        callback = callbacks.get(name)
        if callback is not None and callback.is_running():
            callback.stop()
            stopped.append(name)
    keys = (
        "distributed.worker.profile.enabled",
        "distributed.worker.profile.interval",
        "distributed.admin.system-monitor.interval",
        "distributed.admin.system-monitor.gil.enabled",
        "distributed.admin.system-monitor.disk",
    )
    return {
        "distributed": distributed.__version__,
        "dask": dask.__version__,
        "config": {key: str(dask.config.get(key, default=None)) for key in keys},
        "stopped": stopped,
        "running": sorted(name for name, cb in callbacks.items() if cb.is_running()),
        "nthreads": getattr(dask_worker, "state", None) and dask_worker.state.nthreads,
    }
