"""The command line: parse, call the core, print. Nothing is measured here.

Every error a user can cause ends as one line on stderr and exit status 2; an interrupted
run exits 130 after keeping what it finished.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from iobench import __version__, hostinfo
from iobench.config import DEFAULT_CONFIG, find_config, load_config
from iobench.engine.progress import make_progress
from iobench.engine.protocol import PROTOCOL_PARAMS, Protocol
from iobench.engine.runner import PlanEntry
from iobench.engine.session import TIME_BUDGET, check_target_dir, pin_cpu, run_plan
from iobench.errors import ExitCode, IobenchError
from iobench.experiments import all_experiments, get_experiment
from iobench.experiments.base import Experiment
from iobench.params import Kind, Param, resolve
from iobench.results import RunWriter, latest_run, load_run, load_runs
from iobench.units import format_size

DEFAULT_OUT = "results"


class _RawChecked(click.ParamType):
    """Checks a value against its Param declaration but hands the raw string on.

    The core parses each value exactly once (so a duration is never read twice in two units).
    """

    def __init__(self, param: Param) -> None:
        self.param = param
        self.name = param.kind.value

    def convert(self, value: Any, option: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            self.param.parse(value, self.param.option)  # raises ParamError: one line, exit 2
        return value


def _param_option(param: Param, envvar: str | None = None) -> click.Option:
    default_text = param.describe_default()
    help_text = f"{param.help} [default: {default_text}]"
    if param.sweep:
        help_text += " Several values: comma-separated."
    return click.Option(
        [param.option],
        type=_RawChecked(param),
        default=None,
        metavar=param.metavar,
        envvar=envvar,
        show_envvar=envvar is not None,
        help=help_text,
    )


def _protocol_options() -> list[click.Option]:
    return [_param_option(p, envvar=f"IOBENCH_{p.name.upper()}") for p in PROTOCOL_PARAMS]


def _dir_option(purpose: str) -> click.Option:
    """``--dir``, shared by sysinfo and every run command (IOBENCH_DIR; default: here)."""
    return click.Option(
        ["--dir", "target_dir"],
        type=click.Path(path_type=Path),
        default=Path("."),
        envvar="IOBENCH_DIR",
        show_envvar=True,
        help=f"{purpose} [default: .]",
    )


def _run_options() -> list[click.Option]:
    """Options every run command shares: where scratch files go, where results land, output."""
    return [
        _dir_option("Folder where a private scratch folder is made for test files."),
        click.Option(
            ["--out", "out_dir"],
            type=click.Path(path_type=Path),
            default=Path(DEFAULT_OUT),
            envvar="IOBENCH_OUT",
            show_envvar=True,
            help=f"Folder where the run folder lands. [default: {DEFAULT_OUT}/]",
        ),
        click.Option(["--quiet", "-q"], is_flag=True, help="No progress display."),
        click.Option(
            ["--cpu"],
            type=int,
            default=None,
            envvar="IOBENCH_CPU",
            help="Pin the measuring process to this CPU (fewer migrations, steadier numbers).",
        ),
        _param_option(TIME_BUDGET, envvar="IOBENCH_MAX_TIME"),
        *_protocol_options(),
    ]


def _pop_protocol(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the protocol flags from ``kwargs``; return those given (raw strings)."""
    given = {p.name: kwargs.pop(p.name, None) for p in PROTOCOL_PARAMS}
    return {name: value for name, value in given.items() if value is not None}


class IobenchGroup(click.Group):
    """A group whose errors are one line: ``Error: ...`` and the right exit status."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any) -> Any:
        extra["standalone_mode"] = False
        try:
            rv = super().main(args, prog_name or "iobench", **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            _fail(f"{exc.format_message()}{hint}", ExitCode.USAGE)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except IobenchError as exc:
            _fail(str(exc), exc.exit_code)
        except click.Abort:
            _fail("interrupted", ExitCode.INTERRUPTED)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                sys.exit(ExitCode.OK)
            raise
        sys.exit(rv if isinstance(rv, int) else ExitCode.OK)


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(int(code))


@click.group(cls=IobenchGroup)
@click.version_option(__version__, prog_name="iobench")
def cli() -> None:
    """Measure what IO really costs on this machine.

    Real system calls, every repetition recorded (results/<run>/results.csv), the kernel's
    own counters in each row, reports you can check.

    \b
    Examples:
      iobench list
      iobench sysinfo --dir /data
      iobench run rw-buffer --mode copy --file-size 16MiB --bs 1,256,4096 --cache cold
      iobench run sweep quick.toml
      iobench report
    """


@cli.command("list")
def list_command() -> None:
    """List experiments, their parameters and defaults.

    Example: iobench list
    """
    for experiment in all_experiments():
        click.echo(f"{experiment.name}: {experiment.summary}")
        click.echo(f"  seed idea: {experiment.seed_idea}")
        for param in experiment.params:
            choices = f" (one of {', '.join(param.choices)})" if param.choices else ""
            many = ", sweepable" if param.sweep else ""
            click.echo(f"  {param.option} {param.metavar}  default {param.describe_default()}{choices}{many}")
            click.echo(f"      {param.help}")
        click.echo("")
    click.echo("Repetition protocol (every run command; config [protocol]; IOBENCH_<NAME>):")
    for param in PROTOCOL_PARAMS:
        click.echo(f"  {param.option} {param.metavar}  default {param.describe_default()}  {param.help}")


@cli.command("sysinfo", params=[_dir_option("Folder to describe.")])
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def sysinfo_command(target_dir: Path, as_json: bool) -> None:
    """Show host and target-folder facts and what could skew results.

    Example: iobench sysinfo --dir /mnt/nvme --json
    """
    check_target_dir(target_dir)
    host = hostinfo.host_facts()
    target = hostinfo.target_facts(target_dir)
    warnings = hostinfo.warnings_for(host, target)
    if as_json:
        click.echo(json.dumps({"host": host, "target": target, "warnings": warnings}, indent=2))
        return
    memlock = host["rlimit_memlock"]
    lines = [
        ("kernel", f"{host['kernel']} ({host['machine']})"),
        (
            "cpu",
            f"{host['cpu_model']} x{host['cpu_count']} ({host['cpus_usable']} usable)"
            + (", under a hypervisor" if host["hypervisor"] else ""),
        ),
        (
            "memory",
            f"{format_size(host['memory_total_bytes'])} total, "
            f"{format_size(host['memory_available_bytes'])} available",
        ),
        ("python", f"{host['python']} ({host['python_implementation']})"),
        ("user", f"euid {host['euid']}" + (" (root)" if host["is_root"] else "")),
        ("load average", " ".join(f"{v:.2f}" for v in host["load_average"])),
        ("cpu governor", host["cpu_governor"] or "not readable"),
        (
            "RLIMIT_MEMLOCK",
            f"soft {_limit_text(memlock['soft'])}, hard {_limit_text(memlock['hard'])}",
        ),
        ("target", target["path"]),
        (
            "filesystem",
            f"{target['fs_type']} on {target['mount_source']} at {target['mount_point']}",
        ),
        ("mount options", f"{target['mount_options']} ({target['super_options']})"),
        ("block device", target["block_device"] or "none"),
        ("IO scheduler", target["scheduler"] or "n/a"),
        ("rotational", {True: "yes", False: "no", None: "n/a"}[target["rotational"]]),
        (
            "free space",
            f"{format_size(target['free_bytes'])} of {format_size(target['total_bytes'])}",
        ),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key:<{width}}  {value}")
    for warning in warnings:
        click.echo(f"warning: {warning}")


def _limit_text(value: int | None) -> str:
    return "unlimited" if value is None else format_size(value)


class RunGroup(click.Group):
    """``run sweep`` plus one command per registered experiment, built from its params."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["sweep", *(e.name for e in all_experiments())]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "sweep":
            return sweep_command
        try:
            return _experiment_command(get_experiment(name))
        except IobenchError:
            return None

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = click.utils.make_str(args[0]) if args else ""
        if args and not name.startswith("-") and self.get_command(ctx, name) is None:
            get_experiment(name)  # raises UnknownExperimentError naming the known ones
        return super().resolve_command(ctx, args)


@cli.group("run", cls=RunGroup)
def run_group() -> None:
    """Run one experiment, or a sweep from a config.

    \b
    Examples:
      iobench run rw-buffer --mode read --bs 4096 --file-size 1MiB
      iobench run sweep                # bench_configs/quick.toml
      iobench run sweep tlpi.toml --dir /mnt/disk
    """


def _execute(
    entries: list[PlanEntry],
    target_dir: Path,
    out_dir: Path,
    quiet: bool,
    config: dict[str, Any],
    max_time: str | None,
    resume: RunWriter | None = None,
    cpu: int | None = None,
) -> None:
    meta = {"command": ["iobench", *sys.argv[1:]], "config": config, "cpu_pinned": pin_cpu(cpu)}
    budget = TIME_BUDGET.parse(max_time) if max_time is not None else None
    writer = run_plan(entries, target_dir, out_dir, make_progress(quiet), meta, budget, resume)
    _print_tables(writer.rows, writer.meta)
    for warning in writer.meta.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    if writer.meta["status"] == "stopped":
        click.echo(
            f"stopped: {writer.meta['error']}; continue with: iobench run sweep --resume {writer.path}",
            err=True,
        )
    click.echo(f"results: {writer.path}")


def _print_tables(rows: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> None:
    """The run's book tables in the terminal: medians ± their interval, marks and a legend."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from iobench.hostinfo import cpu_tick_ns
    from iobench.metrics import summarize
    from iobench.report.tables import book_table, describe_group, table_legend

    if not rows:
        return
    meta = meta or {}
    host = meta.get("host") or {}
    tick = (
        (host["cpu_tick_ns"], host.get("cpu_tick_source", "")) if host.get("cpu_tick_ns") else cpu_tick_ns()
    )
    summary = summarize(pd.DataFrame(rows), cases=meta.get("cases") or (), tick_ns=tick[0])
    if summary.empty:
        return
    width = max(140, Console().width)
    console = Console(soft_wrap=False, width=width)
    for experiment_name in summary["experiment"].unique():
        experiment = get_experiment(str(experiment_name))
        for key, frame in book_table(summary, experiment):
            table = Table(
                title=f"{experiment_name}: {describe_group(experiment, key)}",
                title_justify="left",
            )
            for index, column in enumerate(frame.columns):
                # One line per row: "12.3 ms ±4%" split over two lines reads as two values.
                table.add_column(column, justify="left" if index == 0 else "right", no_wrap=True)
            for row in frame.itertuples(index=False):
                table.add_row(*(str(v) for v in row))
            wide = console.options.update(width=1000, max_width=1000)
            console.width = max(width, console.measure(table, options=wide).maximum)
            console.print(table)
        for line in table_legend(summary[summary["experiment"] == experiment_name], experiment, [tick]):
            console.print(line, style="dim", highlight=False, soft_wrap=True)


def _experiment_command(experiment: type[Experiment]) -> click.Command:
    def callback(
        target_dir: Path, out_dir: Path, quiet: bool, max_time: str | None, cpu: int | None, **kwargs: Any
    ) -> None:
        protocol = Protocol.from_values(_pop_protocol(kwargs))
        values = resolve(experiment.params, {k: v for k, v in kwargs.items() if v is not None})
        entry = PlanEntry(experiment, values, protocol)
        config = {"file": None, "entries": [entry.describe()]}
        _execute([entry], target_dir, out_dir, quiet, config, max_time, cpu=cpu)

    return click.Command(
        experiment.name,
        callback=callback,
        params=[*(_param_option(p) for p in experiment.params), *_run_options()],
        help=f"{experiment.summary}.\n\nSeed idea: {experiment.seed_idea}\n\n"
        f"Example: iobench run {experiment.name} "
        + " ".join(f"{p.option} {p.format(p.default)}" for p in experiment.params[:2]),
        short_help=experiment.summary,
    )


def _sweep(
    config: str | None,
    only: str | None,
    resume: str | None,
    target_dir: Path,
    out_dir: Path,
    quiet: bool,
    max_time: str | None,
    cpu: int | None,
    **kwargs: Any,
) -> None:
    if resume is not None:
        if config is not None or only is not None:
            raise click.UsageError("--resume continues a run with its own config: give no CONFIG or --only")
        run_path = _run_path(resume, out_dir)
        writer = RunWriter.reopen(run_path, ["iobench", *sys.argv[1:]])
        entries = [PlanEntry.from_description(e) for e in writer.meta["config"]["entries"]]
        if any(value is not None for value in _pop_protocol(kwargs).values()):
            raise click.UsageError("--resume keeps the run's own protocol: give no protocol options")
        _execute(entries, target_dir, run_path.parent, quiet, writer.meta["config"], max_time, writer, cpu)
        return
    names = [name.strip() for name in only.split(",") if name.strip()] if only else None
    plan = load_config(find_config(config), _pop_protocol(kwargs), only=names)
    summary = {
        "file": str(plan.source),
        "description": plan.description,
        "entries": [entry.describe() for entry in plan.entries],
    }
    _execute(plan.entries, target_dir, out_dir, quiet, summary, max_time, cpu=cpu)


sweep_command = click.Command(
    "sweep",
    callback=_sweep,
    params=[
        click.Argument(["config"], required=False),
        click.Option(["--only"], metavar="NAME[,...]", help="Run only these experiments' entries."),
        click.Option(
            ["--resume"],
            metavar="RUN",
            help="Continue an interrupted or stopped run (a folder, or a run id under --out): "
            "finished cases are kept, the rest run.",
        ),
        *_run_options(),
    ],
    help=(
        f"Run every experiment entry of a TOML config (default {DEFAULT_CONFIG}).\n\n"
        "CONFIG is a path, or a name looked up in ./bench_configs (quick, tlpi). Protocol "
        "flags given here override the config's [protocol] tables.\n\n"
        "Example: iobench run sweep full --only syscall,page-fault --dir /mnt/disk"
    ),
    short_help="Run a sweep from bench_configs/*.toml.",
)


def _results_option(purpose: str) -> click.Option:
    """``--results``: where run ids are looked up (report, compare; IOBENCH_OUT)."""
    return click.Option(
        ["--results", "results_dir"],
        type=click.Path(path_type=Path),
        default=Path(DEFAULT_OUT),
        envvar="IOBENCH_OUT",
        show_envvar=True,
        help=f"Folder the runs are in, {purpose}. [default: {DEFAULT_OUT}/]",
    )


@cli.command("report", params=[_results_option("for run ids and the default")])
@click.argument("runs", nargs=-1)
@click.option(
    "--format",
    "formats",
    default="html,md,png",
    show_default=True,
    metavar="LIST",
    help="Comma-separated: html (one self-contained file, figures embedded), md (Markdown for a "
    "PR comment or CI summary; see --md-images), png, svg (one file per figure).",
)
@click.option(
    "--md-images",
    "md_images",
    type=click.Choice(["inline", "links", "none"]),
    default="links",
    show_default=True,
    help="Figures in report.md: links (relative paths to the PNG/SVG files written with it), "
    "inline (PNG data URIs: one self-contained file for viewers that render them; GitHub's "
    "Markdown, job summaries included, drops data URIs), none (tables and text only).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the report goes. [default: <first run>/report]",
)
def report_command(
    runs: tuple[str, ...], formats: str, md_images: str, results_dir: Path, out_dir: Path | None
) -> None:
    """Write a report of runs (default: the latest): report.html, report.md and figures.

    RUNS are run folders or run ids under --results. Several runs (two machines, before and
    after a change) share figures: one series per run.

    Example: iobench report 20261121-170102-3fa9 20261122-091500-77aa --format html,md
    """
    from iobench.report import build_report, parse_formats

    chosen = parse_formats(formats)
    paths = [_run_path(r, results_dir) for r in runs] or [latest_run(results_dir)]
    loaded = [load_run(p) for p in paths]
    destination = out_dir or (paths[0] / "report")
    for path in build_report(loaded, destination, chosen, md_images=md_images):
        click.echo(str(path))


@cli.command("compare", params=[_results_option("for run ids")])
@click.argument("base")
@click.argument("new")
@click.option(
    "--threshold",
    default="5%",
    show_default=True,
    help="Smallest change that counts, as a percentage of the base.",
)
@click.option(
    "--metric",
    default="elapsed_ns",
    show_default=True,
    help="Column to compare (lower is better), or 'throughput' (bytes/s, higher is better).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "md", "json"]),
    default="text",
    show_default=True,
    help="text for a terminal, md for a PR comment or job summary, json for tools.",
)
@click.pass_context
def compare_command(
    ctx: click.Context,
    base: str,
    new: str,
    threshold: str,
    metric: str,
    output_format: str,
    results_dir: Path,
) -> None:
    """Compare two runs case by case; exit 1 when a case is significantly slower.

    BASE and NEW are runs, or folders of runs (a baseline of several runs measures each
    case's run-to-run noise floor). Per case: the change (Hodges-Lehmann shift on logs), its
    95% interval (Mann-Whitney) and a verdict. A case is "slower" only when the change is
    significant and beyond both --threshold and the noise floor. Exit 0: no regression;
    1: regression; 2: the runs cannot be compared.

    Example: iobench compare results/baselines/ci results/20261121-170102-3fa9 --format md
    """
    from iobench.compare import compare, render_markdown

    limit = Param("threshold", Kind.PERCENT, 5.0, "", minimum=0, maximum=1000).parse(threshold, "--threshold")
    base_runs = load_runs(_run_path(base, results_dir))
    new_runs = load_runs(_run_path(new, results_dir))
    result = compare(base_runs, new_runs, metric, limit / 100)
    if output_format == "json":
        click.echo(json.dumps(result.as_dict(), indent=2, default=str))
    elif output_format == "md":
        click.echo(render_markdown(result), nl=False)
    else:
        _print_comparison(result)
    ctx.exit(ExitCode.REGRESSION if result.regressions else ExitCode.OK)


def _print_comparison(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from iobench.compare import HEADERS, render_rows

    counts = result.counts()
    table = Table(
        title=f"{result.metric}: {counts['slower']} slower, {counts['faster']} faster, "
        f"{counts['unchanged']} unchanged, {counts['noisy']} too noisy "
        f"(threshold {result.threshold:.0%})",
        title_justify="left",
    )
    for header in HEADERS:
        table.add_column(header)
    colours = {"slower": "red", "faster": "green", "noisy": "yellow", "unchanged": ""}
    for row in render_rows(result):
        table.add_row(*row, style=colours[row[0]])
    Console(soft_wrap=False, width=max(140, Console().width)).print(table)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


def _run_path(run: str, results_dir: Path) -> Path:
    given = Path(run)
    if given.is_dir() or given.parent != Path("."):
        return given
    return results_dir / run


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="iobench")
