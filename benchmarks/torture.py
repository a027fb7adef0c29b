"""`make torture`: iobench under hostile inputs and injected faults, counted.

Every trial runs the real command line in a child process, injects one fault, then checks what
the *next* command finds. Per category it prints how many trials were made and how many ended
with a clear one-line error, a traceback, lost data (a case the run reported as finished but
that its results do not hold, or a case missing after the repair), or files left behind after
the repair (scratch folders, temporary files). The target: 0 tracebacks, 0 lost, 0 left.

    python benchmarks/torture.py [--quick] [--seed N] [--only CATEGORY,...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IOBENCH = [str(Path(sys.executable).with_name("iobench"))]

#: Many cases with many repetitions: a large results file, so commits take real time and a
#: signal at a random moment often lands inside one (the scenario users hit).
HEAVY = """
[protocol]
warmup = 0
min_reps = 3000
max_reps = 3000
max_case_time = "60s"

[[experiment]]
name = "syscall"
call = "getppid"
calls = [{calls}]
"""

COPY = """
[protocol]
warmup = 0
min_reps = 20
max_reps = 20

[[experiment]]
name = "rw-buffer"
mode = "copy"
file_size = "{size}"
bs = [4096, 16384, 65536]
cache = "warm"
"""

OUT_FILLER = """
[protocol]
warmup = 0
min_reps = 3
max_reps = 3

[[experiment]]
name = "syscall"
call = "getppid"
calls = 1000

[[experiment]]
name = "sync-write"
mode = "O_SYNC"
total = "1536KiB"
bs = "64KiB"

[[experiment]]
name = "syscall"
call = "vdso-clock"
calls = 1000
"""


@dataclass
class Tally:
    """One category's counts."""

    tried: int = 0
    clear: int = 0
    traceback: int = 0
    lost: int = 0
    left: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Trial:
    """What one child process did."""

    code: int
    stdout: str
    stderr: str

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr or "Traceback" in self.stdout

    @property
    def one_line_error(self) -> bool:
        lines = [line for line in self.stderr.splitlines() if line.startswith("Error: ")]
        return self.code != 0 and len(lines) == 1 and not self.traceback


def iobench(
    args: list[str], timeout: float = 300, env: dict | None = None, preexec: Callable | None = None
) -> Trial:
    done = subprocess.run(
        [*IOBENCH, *args], capture_output=True, text=True, timeout=timeout, env=env, preexec_fn=preexec
    )
    return Trial(done.returncode, done.stdout, done.stderr)


def reported_cases(stderr: str) -> list[str]:
    """Cases the run said were finished (its one-line-per-case progress)."""
    return [line.split("] ", 1)[1].split(":", 1)[0] for line in stderr.splitlines() if line.startswith("[")]


def journal_labels(run: Path) -> set[str]:
    """Cases the run folder holds, as labels comparable with the progress lines."""
    from iobench.experiments import get_experiment
    from iobench.metrics import case_params
    from iobench.plan import case_label
    from iobench.results import load_run

    labels = set()
    for case in load_run(run).meta["cases"]:
        experiment = get_experiment(case["experiment"])
        values = {}
        for name, raw in case_params(case["case"]):
            param = next(p for p in experiment.params if p.name == name)
            values[name] = param.parse(raw, name) if not param.sweep else param.parse(raw, name)[0]
        labels.add(case_label(experiment, values))
    return labels


def leftovers(folders: list[Path]) -> int:
    """Scratch folders and temporary files that should not exist once a run is repaired."""
    count = 0
    for folder in folders:
        if not folder.exists():
            continue
        for path in folder.rglob("*"):
            if (path.name.startswith("iobench-") and path.is_dir()) or path.name.startswith(
                (".meta.json.", ".results.csv.", ".cases.jsonl.")
            ):
                count += 1
    return count


def check_after_fault(tally: Tally, first: Trial, out: Path, scratch: Path, expect_cases: int) -> None:
    """After a fault: was every reported case kept? Then resume, and check it is whole."""
    tally.tried += 1
    if first.traceback:
        tally.traceback += 1
        tally.notes.append(first.stderr[-300:])
    runs = sorted(out.iterdir()) if out.exists() else []
    if not runs:
        tally.clear += int(first.code != 0 and not first.traceback)
        return
    run = runs[0]
    said = set(reported_cases(first.stderr))
    held = journal_labels(run)
    missing = said - held
    if missing:
        tally.lost += len(missing)
        tally.notes.append(f"reported but not kept: {sorted(missing)}")
    if first.code in (0, 2, 130) and not first.traceback:
        tally.clear += 1
    else:
        last = first.stderr.strip().splitlines()[-1:] or ["(nothing on stderr)"]
        tally.notes.append(f"exit {first.code}: {last[0]}")
    resumed = iobench(["run", "sweep", "--resume", str(run), "--dir", str(scratch), "-q"])
    if resumed.traceback:
        tally.traceback += 1
        tally.notes.append(resumed.stderr[-300:])
    from iobench.results import load_run

    final = load_run(run)
    complete = final.meta["status"] == "complete" and len(final.meta["cases"]) == expect_cases
    duplicates = final.frame.groupby("case")["rep"].apply(lambda reps: reps.duplicated().any()).any()
    if not complete or duplicates:
        tally.lost += 1
        tally.notes.append(
            f"after resume: {final.meta['status']}, {len(final.meta['cases'])} cases, dup={duplicates}"
        )
    tally.left += leftovers([scratch, run])


def workdir(base: Path, name: str) -> tuple[Path, Path, Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    scratch, out = folder / "scratch", folder / "out"
    scratch.mkdir()
    return folder, scratch, out


def signal_trial(
    base: Path, rng: random.Random, signum: int, window: tuple[float, float], heavy: bool
) -> tuple[Trial, Path, Path, int]:
    folder, scratch, out = workdir(base, "sig")
    cases = 12 if heavy else 3
    config = folder / "sweep.toml"
    if heavy:
        config.write_text(HEAVY.format(calls=", ".join(str(n) for n in range(1, cases + 1))))
    else:
        config.write_text(COPY.format(size="2MiB"))
    child = subprocess.Popen(
        [*IOBENCH, "run", "sweep", str(config), "--dir", str(scratch), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(rng.uniform(*window))
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signum)
    stdout, stderr = child.communicate(timeout=300)
    return Trial(child.returncode, stdout, stderr), out, scratch, cases


def category_signals(base: Path, rng: random.Random, trials: int) -> Tally:
    tally = Tally()
    for index in range(trials):
        signum = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)[index % 3]
        trial, out, scratch, cases = signal_trial(base, rng, signum, (0.3, 2.5), heavy=False)
        check_after_fault(tally, trial, out, scratch, cases)
    return tally


def category_commit_signals(base: Path, rng: random.Random, trials: int) -> Tally:
    tally = Tally()
    for index in range(trials):
        signum = (signal.SIGINT, signal.SIGTERM)[index % 2]
        trial, out, scratch, cases = signal_trial(base, rng, signum, (0.8, 6.0), heavy=True)
        check_after_fault(tally, trial, out, scratch, cases)
    return tally


def category_sigkill(base: Path, rng: random.Random, trials: int) -> Tally:
    tally = Tally()
    for index in range(trials):
        trial, out, scratch, cases = signal_trial(base, rng, signal.SIGKILL, (0.3, 3.0), heavy=index % 2 == 0)
        trial.code = 130  # killed: nothing to say for itself; what counts is what the next command finds
        check_after_fault(tally, trial, out, scratch, cases)  # the resume removes the leftover scratch
    return tally


def mount_tmpfs(size: str) -> Path | None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return None
    folder = Path(tempfile.mkdtemp(prefix="iobench-torture-tmpfs-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        folder.rmdir()
        return None
    return folder


def unmount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], check=False)
    folder.rmdir()


def category_full_out(base: Path, rng: random.Random, trials: int) -> Tally:
    """--out on an 8 MiB tmpfs with little room: the sync-write case's rows do not fit."""
    tally = Tally()
    for _ in range(trials):
        mount = mount_tmpfs("8m")
        if mount is None:
            tally.notes.append("skipped: mounting a tmpfs needs root")
            return tally
        try:
            ballast = mount / "ballast"
            ballast.write_bytes(b"\0" * (8 * 2**20 - rng.randint(48, 96) * 1024))
            folder, scratch, _ = workdir(base, "fullout")
            config = folder / "sweep.toml"
            config.write_text(OUT_FILLER)
            out = mount / "out"
            first = iobench(["run", "sweep", str(config), "--dir", str(scratch), "--out", str(out)])
            tally.tried += 1
            if first.traceback:
                tally.traceback += 1
                tally.notes.append(first.stderr[-300:])
            elif first.code == 2 and first.one_line_error and "is full" in first.stderr:
                tally.clear += 1
            elif first.code == 0:
                tally.clear += 1  # it fitted after all
            runs = sorted(out.iterdir()) if out.exists() else []
            if runs:
                said = set(reported_cases(first.stderr))
                held = journal_labels(runs[0])
                tally.lost += len(said - held)
                ballast.unlink()  # the user frees space, then resumes
                resumed = iobench(["run", "sweep", "--resume", str(runs[0]), "--dir", str(scratch), "-q"])
                tally.traceback += int(resumed.traceback)
                from iobench.results import load_run

                final = load_run(runs[0])
                if final.meta["status"] != "complete" or len(final.meta["cases"]) != 3:
                    tally.lost += 1
                    tally.notes.append(
                        f"after freeing space: {final.meta['status']} {len(final.meta['cases'])}"
                    )
                tally.left += leftovers([scratch, runs[0]])
        finally:
            unmount(mount)
    return tally


def category_full_dir(base: Path, rng: random.Random, trials: int) -> Tally:
    """--dir on a small tmpfs that another process fills while the run goes on."""
    tally = Tally()
    for _ in range(trials):
        mount = mount_tmpfs("24m")
        if mount is None:
            tally.notes.append("skipped: mounting a tmpfs needs root")
            return tally
        try:
            folder, _, out = workdir(base, "fulldir")
            config = folder / "sweep.toml"
            # Long enough that the neighbour fills the disk in the middle of a case.
            config.write_text(
                COPY.format(size="4MiB").replace(
                    "min_reps = 20\nmax_reps = 20", "min_reps = 400\nmax_reps = 400"
                )
            )
            child = subprocess.Popen(
                [*IOBENCH, "run", "sweep", str(config), "--dir", str(mount), "--out", str(out)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(rng.uniform(0.2, 1.5))
            try:  # a neighbour fills the disk (it may be full already: the run's own files)
                with open(mount / "filler", "wb") as filler:
                    while True:
                        filler.write(b"\0" * (1 << 20))
                        filler.flush()
            except OSError:
                pass
            stdout, stderr = child.communicate(timeout=300)
            first = Trial(child.returncode, stdout, stderr)
            (mount / "filler").unlink(missing_ok=True)
            check_after_fault(tally, first, out, mount, 3)
        finally:
            unmount(mount)
    return tally


FD_SWEEP = """
[protocol]
warmup = 0
min_reps = 1
max_reps = 1

[[experiment]]
name = "file-concurrency"
mode = "pwrite"
threads = 64
records = 10

[[experiment]]
name = "rw-buffer"
mode = "copy"
file_size = "256KiB"
bs = 4096
cache = "warm"

[[experiment]]
name = "context-switch"
mode = "process-pipe"
round_trips = 200
"""


def category_fd_limit(base: Path, rng: random.Random, trials: int) -> Tally:
    """RLIMIT_NOFILE 64: the case that needs more fails with the limit named, the others run."""
    tally = Tally()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    for _ in range(trials):
        folder, scratch, out = workdir(base, "fd")
        config = folder / "sweep.toml"
        config.write_text(FD_SWEEP)
        trial = iobench(
            ["run", "sweep", str(config), "--dir", str(scratch), "--out", str(out)], preexec=limit
        )
        tally.tried += 1
        tally.traceback += int(trial.traceback)
        runs = sorted(out.iterdir()) if out.exists() else []
        if not runs:
            tally.notes.append(trial.stderr[-300:])
            continue
        from iobench.results import load_run

        cases = load_run(runs[0]).meta["cases"]
        statuses = [c["status"] for c in cases]
        # A clear outcome: exit 3, the descriptor-hungry case failed naming the limit, the rest ok.
        named = any("64" in str(c.get("reason", "")) for c in cases if c["status"] != "ok")
        if trial.code == 3 and statuses[1:] == ["ok", "ok"] and named:
            tally.clear += 1
        else:
            tally.notes.append(f"fd limit: exit {trial.code}, {statuses}")
        tally.left += leftovers([scratch, runs[0]])
    return tally


def category_memory_limit(base: Path, rng: random.Random, trials: int) -> Tally:
    tally = Tally()
    for index in range(trials):
        megabytes = (200, 120, 300)[index % 3]

        def limit(mb: int = megabytes) -> None:
            resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))

        _folder, scratch, out = workdir(base, "mem")
        args = (
            ["--help"],
            ["list"],
            ["run", "syscall", "--calls", "100", "--dir", str(scratch), "--out", str(out)],
        )[index % 3]
        trial = iobench(args, preexec=limit)
        tally.tried += 1
        tally.traceback += int(trial.traceback)
        if trial.code == 0 or trial.one_line_error:
            tally.clear += 1
        else:
            tally.notes.append(f"memory {megabytes} MB {args[0]}: exit {trial.code} {trial.stderr[-200:]}")
        tally.left += leftovers([scratch])
    return tally


def category_concurrent(base: Path, rng: random.Random, trials: int) -> Tally:
    """Two runs into one --out at once, and two resumes of one run at once."""
    tally = Tally()
    for _ in range(trials):
        folder, scratch, out = workdir(base, "conc")
        config = folder / "sweep.toml"
        config.write_text(COPY.format(size="1MiB"))
        args = ["run", "sweep", str(config), "--dir", str(scratch), "--out", str(out), "-q"]
        pair = [
            subprocess.Popen([*IOBENCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        results = [Trial(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in pair]
        tally.tried += 1
        runs = sorted(out.iterdir())
        from iobench.results import load_run

        whole = len(runs) == 2 and all(
            load_run(r).meta["status"] == "complete" and len(load_run(r).meta["cases"]) == 3 for r in runs
        )
        tally.traceback += sum(t.traceback for t in results)
        tally.clear += int(whole and all(t.code == 0 for t in results))
        tally.lost += int(not whole)
        # Two resumes of one stopped run: exactly one runs, the other is refused in one line.
        stopped = iobench([*args[:-1], "--max-time", "1ns", "-q"])
        run = sorted(out.iterdir())[-1]
        resume = ["run", "sweep", "--resume", str(run), "--dir", str(scratch), "-q"]
        both = [
            subprocess.Popen([*IOBENCH, *resume], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outcomes = [Trial(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in both]
        tally.tried += 1
        codes = sorted(t.code for t in outcomes)
        refused_clearly = all(
            t.code == 0 or (t.one_line_error and "being written by another" in t.stderr) for t in outcomes
        )
        final = load_run(run)
        if (
            stopped.code == 0
            and codes[0] == 0
            and refused_clearly
            and final.meta["status"] == "complete"
            and len(final.meta["cases"]) == 3
        ):
            tally.clear += 1
        else:
            tally.notes.append(f"two resumes: codes {codes}, status {final.meta['status']}")
        tally.traceback += sum(t.traceback for t in outcomes)
        tally.left += leftovers([scratch, *sorted(out.iterdir())])
    return tally


def _corpus_tally(subprocess_mode: bool, every: int) -> Tally:
    sys.path.insert(0, str(ROOT))
    from tests import hostile_inputs as hostile  # the test suite's corpus: one list, two users

    tally = Tally()
    cases = hostile.corpus()[::every]
    if subprocess_mode:  # an argv or environment cannot carry a NUL byte into a real process
        cases = [c for c in cases if "\0" not in "".join(c.argv) + "".join(str(v) for _, v in c.env)]
    invoke = hostile.subprocess_invoke if subprocess_mode else hostile.cli_runner_invoke
    problems: list[tuple[object, str]] = []
    counts = hostile.run_corpus(invoke, cases, problems)
    tally.tried = counts["tried"]
    tally.clear = counts["clean"]
    tally.traceback = counts["traceback"]
    tally.notes.extend(f"{getattr(case, 'name', case)}: {found}" for case, found in problems)
    return tally


def category_bad_inputs(base: Path, rng: random.Random, trials: int) -> Tally:
    """The test suite's whole hostile-input corpus, run in-process (click's runner)."""
    return _corpus_tally(subprocess_mode=False, every=1)


def category_bad_inputs_processes(base: Path, rng: random.Random, every: int) -> Tally:
    """Every ``every``-th entry of the corpus through the installed command, as real processes."""
    return _corpus_tally(subprocess_mode=True, every=every)


CATEGORIES: dict[str, tuple[Callable[[Path, random.Random, int], Tally], int, int]] = {
    # name: (function, trials, trials with --quick)
    "bad inputs (in-process)": (category_bad_inputs, 1, 1),
    "bad inputs (real processes)": (category_bad_inputs_processes, 4, 20),
    "signals at random moments": (category_signals, 18, 4),
    "signals during commit": (category_commit_signals, 14, 3),
    "SIGKILL": (category_sigkill, 14, 3),
    "full --dir": (category_full_dir, 8, 2),
    "full --out": (category_full_out, 10, 2),
    "fd limit": (category_fd_limit, 4, 1),
    "memory limit": (category_memory_limit, 6, 3),
    "concurrent runs/resumes": (category_concurrent, 6, 1),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few trials per category")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", default="", help="comma-separated category names")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    chosen = [c.strip() for c in options.only.split(",") if c.strip()] or list(CATEGORIES)
    base = Path(tempfile.mkdtemp(prefix="iobench-torture-", dir=ROOT))
    table: dict[str, Tally] = {}
    started = time.monotonic()
    try:
        for name in chosen:
            function, trials, quick = CATEGORIES[name]
            began = time.monotonic()
            table[name] = function(base, rng, quick if options.quick else trials)
            print(
                f"{name}: {table[name].tried} tried in {time.monotonic() - began:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    header = ("category", "tried", "clear error/ok", "traceback", "data lost", "files left")
    rows = [(n, t.tried, t.clear, t.traceback, t.lost, t.left) for n, t in table.items()]
    totals = tuple(sum(r[i] for r in rows) for i in range(1, 6))
    print(f"\nmake torture (seed {seed}, {time.monotonic() - started:.0f} s)\n")
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * 5)
    for row in [*rows, ("total", *totals)]:
        print("| " + " | ".join(str(v) for v in row) + " |")
    notes = [(n, note) for n, t in table.items() for note in t.notes[:3]]
    if notes:
        print("\nnotes:")
        for name, note in notes:
            print(f"- {name}: {note.strip()[:300]}")
    if options.json:
        options.json.write_text(json.dumps({n: t.__dict__ for n, t in table.items()}, indent=2))
    bad = totals[2] + totals[3] + totals[4]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
