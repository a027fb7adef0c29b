"""placeholder."""

from iobench.experiments.base import Experiment


class AsyncSend(Experiment):
    """placeholder"""

    name = "zz-async_send"
    summary = ""
    seed_idea = ""
    params = ()
