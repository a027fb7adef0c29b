"""The measuring process of a fleet run: ``python -m iobench.fleet.child``, started by a Dask
task on the worker's host, one process per case (or per host-facts request).

Why a child: a Dask worker runs tasks in a thread of a process whose event loop sends
heartbeats, samples profiles and polls system monitors. Measuring there would put all that
inside the timed section (and a second thread in the process makes every read()/write() take
the file-position lock). The child imports no dask: it is the same single-threaded process
as ``iobench run``, pinned to ``--cpu`` when one is given.

Input: one pickled request on stdin (a dict; the spec is a ``CaseSpec``). Output: one JSON
object on stdout, and nothing else there (anything an experiment prints goes to stderr).

- ``{"mode": "case", "spec", "dir", "target_fs", "clock_origin_unix_ns"}`` ->
  ``{"rows": [...], "summary": {...}}``, or ``{"error": "..."}`` when the case could not start.
- ``{"mode": "facts", "entries", "dir", "cpu"}`` -> ``{"facts", "warnings", "iobench_version"}``,
  or ``{"error": "..."}`` (an unusable --dir or --cpu on that host, a case that cannot fit).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

from iobench import __version__
from iobench.errors import IobenchError


def run_case_request(request: dict[str, Any]) -> dict[str, Any]:
    """Measure the request's one case in a private scratch folder under its ``dir``."""
    from iobench.engine.runner import CaseSpaceError
    from iobench.execute import LocalExecutor
    from iobench.experiments import get_experiment
    from iobench.scratch import check_target_dir, private_scratch
    from iobench.session import pin_cpu

    spec = request["spec"]
    target = check_target_dir(Path(request["dir"]))
    pin_cpu(spec.cpu)
    # Rows count t_start_ns from the run's clock origin: its wall-clock instant, mapped onto
    # this host's monotonic clock (hosts' monotonic clocks have unrelated zeros).
    origin = time.perf_counter_ns() - (time.time_ns() - int(request["clock_origin_unix_ns"]))
    with private_scratch(target) as scratch:
        executor = LocalExecutor(get_experiment, scratch, None, request.get("target_fs", ""), origin)
        try:
            result = executor.run(spec)
        except CaseSpaceError as exc:
            return {"rows": exc.result.rows, "summary": exc.result.summary, "space_error": str(exc)}
    return {"rows": result.rows, "summary": result.summary}


def facts_request(request: dict[str, Any]) -> dict[str, Any]:
    """This host's facts for the run's meta.json, after the checks a local run makes first."""
    from iobench.experiments import get_experiment
    from iobench.plan import PlanEntry, plan_cases
    from iobench.scratch import check_target_dir, restore_left_settings
    from iobench.session import _check_space, _facts, pin_cpu

    target = check_target_dir(Path(request["dir"]))
    entries = [PlanEntry.from_description(e, get_experiment) for e in request["entries"]]
    cpu = request.get("cpu")
    pin_cpu(cpu)  # refuses a CPU this host does not have, before any case
    _check_space(plan_cases(entries, (), cpu), get_experiment, target)
    restored = restore_left_settings()
    facts, warnings = _facts(entries, target, cpu)
    return {"facts": facts, "warnings": warnings + restored, "iobench_version": __version__}


def main() -> int:
    """Read one request, answer it on stdout; 0 even for a refused request (it says why)."""
    request = pickle.loads(sys.stdin.buffer.read())
    out = os.fdopen(os.dup(1), "w")
    # Anything printed while measuring goes to stderr: stdout carries exactly one JSON object.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        if request.get("mode") == "facts":
            answer = facts_request(request)
        else:
            answer = run_case_request(request)
    except IobenchError as exc:
        answer = {"error": str(exc)}
    out.write(json.dumps(answer, default=str))
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
