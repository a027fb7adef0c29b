"""How often the compare gate flags unchanged code (A/A), from runs of one code version.

    python benchmarks/gate_aa.py FOLDER [FOLDER ...] [--base 5] [--new 3]

Every run under the folders (e.g. 20 runs of `iobench run sweep ci --out F`, taken over some
time) is ordered by its run id (start time); each gate compares BASE consecutive runs with
NEW consecutive runs that start 0, 3, 6 or 10 runs after them, as `make bench-check` would on
unchanged code. Prints how many gates flagged any case (the family-wise false-alarm rate; the
rule aims at 5%) and the limits the gate used (what it could have caught).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from iobench.compare import compare
from iobench.results import load_run


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--base", type=int, default=5)
    parser.add_argument("--new", type=int, default=3)
    options = parser.parse_args()
    paths = sorted(
        (run for folder in options.folders for run in folder.iterdir() if (run / "meta.json").exists()),
        key=lambda path: path.name,
    )
    runs = [load_run(path) for path in paths]
    gates = flagged_gates = flagged_cases = 0
    limits: list[float] = []
    for start in range(len(runs)):
        for gap in (0, 3, 6, 10):
            first_new = start + options.base + gap
            if first_new + options.new > len(runs):
                continue
            comparison = compare(
                runs[start : start + options.base], runs[first_new : first_new + options.new]
            )
            flagged = [case for case in comparison.cases if case.verdict in ("slower", "faster")]
            gates += 1
            flagged_gates += bool(flagged)
            flagged_cases += len(flagged)
            limits += [case.limit for case in comparison.cases]
            for case in flagged:
                print(
                    f"  gate at run {start} (+{gap}): {case.verdict} {case.experiment} {case.label} {case.change:+.1%}"
                )
    if not gates:
        print(f"need at least {options.base + options.new} runs, found {len(runs)}", file=sys.stderr)
        return 2
    print(
        f"{len(runs)} runs, {gates} A/A gates ({options.base} base runs vs {options.new} new): "
        f"{flagged_gates} flagged a case ({flagged_gates / gates:.0%}), {flagged_cases} case verdicts in all; "
        f"limits median {statistics.median(limits):.0%}, largest {max(limits):.0%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
