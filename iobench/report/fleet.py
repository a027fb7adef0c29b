"""Host vs fleet median: which host of a fleet run is an outlier, case by case.

Per case and host: the host's median, the fleet median (the median of the hosts' medians:
each host counts once, however many repetitions it ran), and the host against the fleet
median as a ratio with its 95% interval: ``stats.difference`` (Hodges-Lehmann on the log
scale, Moses' interval) against the other hosts' repetitions, each host's moved to the
fleet median (``_reference``), the test compare and the explanations use. A host is flagged
"slower" when the ratio is at least 1 + threshold (20%) *and* the interval lies wholly above
1 (significant); "faster" the mirror image; "noisy" when the estimate is beyond the threshold
but the interval still holds 1; "too few reps" when the samples cannot give an interval.
With two hosts the fleet median is halfway between them, so a host is flagged only when it
is 20% off that midpoint (about 1.5x the other host), and as a pair, one slower and one
faster: two hosts cannot say which one is odd.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from iobench import stats
from iobench.compare import case_labels
from iobench.metrics import COMMON_METRICS, format_value
from iobench.results import ResultSet

#: A host this much slower (or faster) than the fleet median, significantly, is flagged.
OUTLIER_THRESHOLD = 0.20


@dataclass(frozen=True)
class HostVsFleet:
    """One host's value of one case against the fleet."""

    host: str
    experiment: str
    case: str
    reps: int
    host_median: float
    fleet_median: float
    #: Host / fleet median (Hodges-Lehmann on the log scale) and its 95% interval.
    ratio: float
    low: float
    high: float
    verdict: str

    @property
    def outlier(self) -> bool:
        return self.verdict in ("slower", "faster")


def _verdict(found: stats.Difference | None, threshold: float) -> str:
    if found is None or not found.decided:
        return "too few reps"
    beyond = found.ratio >= 1 + threshold or found.ratio <= 1 / (1 + threshold)
    if not beyond:
        return "ok"
    if found.ratio > 1 and found.low > 1:
        return "slower"
    if found.ratio < 1 and found.high < 1:
        return "faster"
    return "noisy"


def _samples(runs: Mapping[str, ResultSet], metric: str) -> dict[tuple[str, str], dict[str, list[float]]]:
    """(experiment, case) -> host -> the metric's values of its repetitions that ran."""
    by_case: dict[tuple[str, str], dict[str, list[float]]] = {}
    for host, run in runs.items():
        frame = run.frame
        if frame.empty or metric not in frame or "status" not in frame:
            continue
        ok = frame[frame["status"] == "ok"]
        for (experiment, case), group in ok.groupby(["experiment", "case"], sort=False):
            values = [float(v) for v in pd.to_numeric(group[metric], errors="coerce").dropna()]
            if values:
                by_case.setdefault((str(experiment), str(case)), {})[host] = values
    return by_case


def _reference(
    hosts: Mapping[str, list[float]], medians: Mapping[str, float], host: str, centre: float
) -> list[float]:
    """The fleet as one sample to test ``host`` against: every other host's repetitions, each
    host's moved (on the log scale) so that its median sits at the fleet median ``centre``.
    The spread left is the hosts' own repetition noise; the host's own samples stay out (they
    would pull the reference towards themselves), and pooling the others unmoved would let one
    slow host make every normal one look fast."""
    return [
        math.exp(math.log(v) - math.log(medians[name]) + math.log(centre))
        for name, values in hosts.items()
        if name != host and medians[name] > 0
        for v in values
        if v > 0
    ]


def host_vs_fleet(
    runs: Mapping[str, ResultSet], metric: str = "elapsed_ns", threshold: float = OUTLIER_THRESHOLD
) -> list[HostVsFleet]:
    """Every host of every case measured by at least two hosts, against the fleet median."""
    rows = []
    for (experiment, case), hosts in _samples(runs, metric).items():
        if len(hosts) < 2:
            continue
        medians = {host: stats.median(values) for host, values in hosts.items()}
        if min(medians.values()) <= 0:
            continue  # no ratio of a zero or negative value
        # On the log scale (where the ratios are): two hosts' fleet median is their geometric
        # midpoint, so one is exactly as far above it as the other is below.
        fleet_median = math.exp(stats.median([math.log(m) for m in medians.values()]))
        for host, values in hosts.items():
            found = stats.difference(_reference(hosts, medians, host, fleet_median), values)
            rows.append(
                HostVsFleet(
                    host, experiment, case, len(values), medians[host], fleet_median,
                    found.ratio if found else float("nan"), found.low if found else 0.0,
                    found.high if found else float("inf"), _verdict(found, threshold),
                )
            )  # fmt: skip
    return rows


def _ratio(value: float) -> str:
    if value != value or value in (0.0, float("inf")):
        return "?"
    # A bound just off 1 keeps a third decimal: "1.00x" would hide why it is significant.
    return f"{value:.3f}x" if f"{value:.2f}" == "1.00" and value != 1 else f"{value:.2f}x"


def fleet_table(rows: list[HostVsFleet], metric: str = "elapsed_ns") -> pd.DataFrame:
    """The table as reports show it: outliers first, then by case and host."""
    ordered = sorted(rows, key=lambda r: (not r.outlier, r.experiment, r.case, r.host))
    unit = {m.name: m.unit for m in COMMON_METRICS}.get(metric, "count")
    labels = case_labels({(r.experiment, r.case) for r in rows})
    return pd.DataFrame(
        [
            {
                "verdict": r.verdict,
                "host": r.host,
                "case": " ".join(
                    [r.experiment, *labels[(r.experiment, r.case)][0], *labels[(r.experiment, r.case)][1]]
                ),
                "host median": format_value(r.host_median, unit),
                "fleet median": format_value(r.fleet_median, unit),
                "host / fleet": _ratio(r.ratio),
                "95% interval": f"{_ratio(r.low)} to {_ratio(r.high)}",
                "reps": r.reps,
            }
            for r in ordered
        ],
        columns=[
            "verdict",
            "host",
            "case",
            "host median",
            "fleet median",
            "host / fleet",
            "95% interval",
            "reps",
        ],
    )


def fleet_notes(rows: list[HostVsFleet], threshold: float = OUTLIER_THRESHOLD) -> list[str]:
    """The headline (which hosts are outliers) and how to read the table."""
    outliers = [r for r in rows if r.outlier]
    if not rows:
        headline = "No case was measured by two hosts: nothing to compare."
    elif outliers:
        hosts = sorted({r.host for r in outliers})
        headline = (
            f"Outliers: {len(outliers)} of {len(rows)} host-cases, on host{'s' if len(hosts) > 1 else ''} "
            f"{', '.join(hosts)}."
        )
    else:
        headline = f"No host is an outlier in any of the {len(rows)} host-cases."
    return [
        headline,
        f"A host is flagged slower (faster) when it is at least {threshold:.0%} slower (faster) than the "
        "fleet median and the 95% interval of that ratio (Hodges-Lehmann, log scale) excludes 1; "
        "noisy: beyond the threshold but not significant. Fleet median: the median of the hosts' medians (geometric for an even count); "
        "the interval comes from the other hosts' repetitions moved to it. host / fleet is the Hodges-Lehmann "
        "estimate (the median of all pairwise ratios), which can differ from the ratio of the two medians "
        "when repetitions spread widely.",
    ]


@dataclass
class FleetSection:
    """What a fleet report adds: the host vs fleet median table and its notes."""

    table: pd.DataFrame
    notes: list[str]
    rows: list[HostVsFleet]


def fleet_section(runs: Mapping[str, ResultSet], threshold: float = OUTLIER_THRESHOLD) -> FleetSection:
    """The table and notes for a fleet's host runs (host name -> run)."""
    rows = host_vs_fleet(runs, threshold=threshold)
    return FleetSection(fleet_table(rows), fleet_notes(rows, threshold), rows)


def describe(section: Any) -> str:
    """The table as plain text (for a terminal and the demo's log)."""
    lines = [*section.notes[:1]]
    if not section.table.empty:
        lines.append(section.table.to_string(index=False))
    return "\n".join(lines)
