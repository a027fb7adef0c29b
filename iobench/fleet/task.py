"""What a Dask worker runs for iobench: start the measuring child and hand back its answer.

These functions execute inside the worker process (shipped by reference: iobench must be
installed there, which ``cluster.check_versions`` verifies before any case). The task thread
only waits in the kernel for the child to exit; the measuring happens in the child.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

#: How much of the child's stderr a failure message quotes.
_STDERR_TAIL = 400
#: Seconds a pair's ``iobench serve`` may take to say it listens, and to stop once told.
SERVE_START_S = 30.0
SERVE_STOP_S = 10.0
_LISTENING = re.compile(r"listening on (\S+) \(iobench ")
#: The serves this worker process started for fleet pairs, by id: the start task returns while
#: its serve runs on, a later stop task finds it here. Ids stopped before their start finished
#: are remembered, so a start that loses that race stops its own serve.
_SERVES: dict[str, subprocess.Popen] = {}
_STOPPED: set[str] = set()
_SERVES_LOCK = threading.Lock()


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


def start_serve(serve_id: str, bind: str, token: str) -> dict[str, Any]:
    """Start a pair's peer: ``iobench serve --bind BIND --port 0`` as a child of this worker
        process that outlives the task. The token goes in its environment (never in argv, which
        every user of the host can read). Its stdin is a pipe whose other end only this process
        holds: when the worker dies, even by SIGKILL, the serve reads EOF and stops
        (PR_SET_PDEATHSIG would not do: it fires when the *thread* that forked exits, and Dask's
        task threads come and go). ``{"address": "IP:PORT", "pid": n, "host": {...}}`` (what the
    serve's welcome says about its host) once it listens, or
        ``{"error": ...}``."""
    # Its stderr: an unlinked file of its own (nobody reads a pipe once it listens, and a full
    # pipe would stall it); this task quotes its tail when the serve does not start.
    with tempfile.TemporaryFile() as log:
        command = [
            sys.executable,
            "-m",
            "iobench",
            "serve",
            "--bind",
            bind,
            "--port",
            "0",
            "--exit-on-stdin-eof",
        ]
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "IOBENCH_PEER_TOKEN": token},
                # Its own session: a Ctrl-C meant for a worker's terminal, or a signal to the
                # worker's process group, leaves the stopping to the pipe and the stop task.
                start_new_session=True,
            )
        except OSError as exc:
            return {"error": f"cannot start iobench serve: {exc}"}
        with _SERVES_LOCK:
            _SERVES[serve_id] = proc
        line = _first_line(proc, SERVE_START_S)
        found = _LISTENING.search(line)
        with _SERVES_LOCK:
            cancelled = serve_id in _STOPPED
        if found is not None and not cancelled:
            from iobench.peer.server import host_facts

            return {"address": found.group(1), "pid": proc.pid, "host": host_facts()}
        stop_serve(serve_id)
        if cancelled:
            return {"error": "stopped before it started"}
        log.seek(0)
        tail = log.read().decode(errors="replace").strip().splitlines()[-1:] or [line.strip()]
    return {"error": f"iobench serve did not start: {tail[0][-_STDERR_TAIL:] or 'no output'}"}


class ServeLease:
    """What the start task leaves in the worker's memory: the serve's answer, and the serve's
    lifetime. Dask keeps a task's result on the worker while a client holds its future; when
    the worker drops it (the fleet client released it, or left the cluster, even killed by
    SIGKILL), this object goes and stops its serve. Copies sent elsewhere (the client's)
    stop nothing."""

    def __init__(self, serve_id: str, answer: dict[str, Any], owner: bool = True) -> None:
        self.serve_id = serve_id
        self.answer = answer
        self._owner = owner

    def __reduce__(self) -> tuple[Any, ...]:
        return (ServeLease, (self.serve_id, self.answer, False))

    def __del__(self) -> None:
        if self._owner:
            # Off the thread that dropped it (the worker's event loop): stopping waits. At
            # interpreter exit no thread can start: the pipe on the serve's stdin does it then.
            with contextlib.suppress(Exception):
                threading.Thread(target=stop_serve, args=(self.serve_id,), daemon=True).start()


def lease_serve(serve_id: str, bind: str, token: str) -> ServeLease:
    """``start_serve``, its serve held for as long as Dask keeps this task's result."""
    return ServeLease(serve_id, start_serve(serve_id, bind, token))


def _first_line(proc: subprocess.Popen, timeout_s: float) -> str:
    """The serve's first stdout line, or "" when it exits or stays silent for ``timeout_s``."""
    from iobench.osutil.children import read_until

    assert proc.stdout is not None
    text, _ = read_until(proc.stdout.fileno(), time.monotonic() + timeout_s, stop=b"\n")
    return text.decode(errors="replace").split("\n", 1)[0]


def stop_serve(serve_id: str) -> dict[str, Any]:
    """Stop a pair's serve (SIGTERM: it kills and reaps its handlers; SIGKILL after
    ``SERVE_STOP_S``); ``{"stopped": pid or None, "status": exit status}``."""
    with _SERVES_LOCK:
        proc = _SERVES.pop(serve_id, None)
        if proc is None:
            _STOPPED.add(serve_id)  # a start still under way stops its serve itself
            return {"stopped": None, "status": None}
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(SERVE_STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(SERVE_STOP_S)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    return {"stopped": proc.pid, "status": proc.returncode}


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
