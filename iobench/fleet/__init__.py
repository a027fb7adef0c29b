"""Fleet runs: the same plan on every host of a Dask cluster, one case at a time per host.

- ``cluster``: connect within a bounded time, choose hosts, check versions, quiet workers.
- ``executor``: keeps one case in flight per host; notices a worker lost mid-case.
- ``task``: what the worker runs: the measuring child process, and the quieting.
- ``child``: ``python -m iobench.fleet.child``, the process that measures one case.
- ``folder``: the fleet folder (fleet.json + one run folder per host).
- ``run``: the fleet run itself (events, like a local run's).

Nothing here imports ``distributed`` at import time: only a run with a cluster loads it.
"""
