"""What a run will measure: entries (an experiment with sweep values and a protocol) and the
flat list of cases they expand to.

``plan_cases`` is pure: the same entries and the same set of finished cases always give the
same CaseSpecs, and a CaseSpec is a small picklable value (the experiment by name, plain
parameter values, the protocol), so an executor may run it in this process, in a child, or on
another machine.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iobench.engine.protocol import Protocol
from iobench.params import case_id, expand_cases, left_out_of_id, resolve
from iobench.peer.address import NetnsPeer, PeerAddress
from iobench.peer.netns import LINK_PARAM_NAMES

if TYPE_CHECKING:
    from iobench.experiments.base import Experiment

#: name -> experiment class (``iobench.experiments.get_experiment``, or a test's own).
Lookup = Callable[[str], "type[Experiment]"]


@dataclass(frozen=True)
class PlanEntry:
    """One experiment with its resolved parameter values (sweeps as tuples) and protocol."""

    experiment: type[Experiment]
    values: dict[str, Any]
    protocol: Protocol

    @classmethod
    def from_description(cls, description: dict[str, Any], lookup: Lookup) -> PlanEntry:
        """The entry back from ``describe()`` (its size labels are exact, so values round-trip)."""
        from iobench.errors import ParamError

        if not isinstance(description, dict) or not isinstance(description.get("experiment"), str):
            raise ParamError("a plan entry must name its experiment")
        experiment = lookup(description["experiment"])
        values = description.get("values")
        if not isinstance(values, dict):
            raise ParamError(f"the {experiment.name} entry has no parameter values")
        resolved = resolve(experiment.params, values, f"{experiment.name} ")
        protocol = Protocol.from_record(description.get("protocol", {}), f"{experiment.name} protocol")
        return cls(experiment, resolved, protocol)

    def describe(self) -> dict[str, Any]:
        """The entry as meta.json records it: human values, resolved protocol."""
        return {
            "experiment": self.experiment.name,
            "values": {p.name: p.format(self.values[p.name]) for p in self.experiment.params},
            "protocol": self.protocol.as_dict(),
        }

    def cases(self) -> list[dict[str, Any]]:
        """Every combination of the sweep values, without cases that would measure the same."""
        unique: dict[tuple, dict[str, Any]] = {}
        for case in expand_cases(self.experiment.params, self.values):
            ignored = self.experiment.irrelevant_params(case)
            if not self.experiment.uses_peer(case):
                ignored |= LINK_PARAM_NAMES  # no peer, no link: one case, not one per RTT
            key = tuple((name, value) for name, value in case.items() if name not in ignored)
            unique.setdefault(key, case)
        return list(unique.values())


@dataclass(frozen=True)
class CaseSpec:
    """One case to measure, as a plain value an executor can ship anywhere."""

    #: 1-based position in the whole plan (finished cases keep their numbers).
    index: int
    total: int
    experiment: str
    params: dict[str, Any]
    case_id: str
    protocol: Protocol
    label: str
    #: Pin the measuring process to this CPU (None: free).
    cpu: int | None = None
    #: Where socket experiments run their peer (``--peer``; None: forked on this host).
    #: ``NetnsPeer``: the virtual host of ``--peer netns`` (the executor builds its links).
    peer: PeerAddress | NetnsPeer | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.experiment, self.case_id)


def case_label(experiment: type[Experiment], case: dict[str, Any]) -> str:
    """Human label: ``rw-buffer mode=copy file_size=1MiB bs=4KiB cache=cold``."""
    parts = " ".join(
        f"{p.name}={p.format(case[p.name])}" for p in experiment.params if not left_out_of_id(p, case)
    )
    return f"{experiment.name} {parts}"


def plan_cases(
    entries: Sequence[PlanEntry],
    done: Collection[tuple[str, str]] = (),
    cpu: int | None = None,
    peer: PeerAddress | NetnsPeer | None = None,
) -> list[CaseSpec]:
    """The cases still to run, in plan order: every entry's cases minus ``done``
    ((experiment, case id) pairs). A case listed by two entries runs once."""
    all_cases = [(entry, case) for entry in entries for case in entry.cases()]
    total = len(all_cases)
    specs = []
    seen = set(done)
    for index, (entry, case) in enumerate(all_cases, start=1):
        key = (entry.experiment.name, case_id(entry.experiment.params, case))
        if key in seen:
            continue
        seen.add(key)
        specs.append(
            CaseSpec(
                index,
                total,
                key[0],
                dict(case),
                key[1],
                entry.protocol,
                case_label(entry.experiment, case),
                cpu,
                peer,
            )
        )
    return specs


def count_cases(entries: Sequence[PlanEntry]) -> int:
    """How many cases the entries expand to."""
    return sum(len(entry.cases()) for entry in entries)
