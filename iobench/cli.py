"""The command line: parse, call the API (``iobench.api``), print. Nothing is measured or
decided here.

Every error a user can cause ends as one line on stderr and exit status 2; an interrupted
run exits 130 after keeping what it finished; a run in which a case failed exits 3.
Imports are deferred to the command that needs them, so ``--help`` and ``list`` start fast.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from iobench import __version__
from iobench.errors import ExitCode, IobenchError, RunInterrupted
from iobench.interrupts import TERMINATING, Terminated, termination_raises
from iobench.params import Kind, Param

DEFAULT_OUT = "results"
DEFAULT_CONFIG = "quick.toml"
#: Linux limits every filesystem shares: one name (NAME_MAX) and a whole path (PATH_MAX - 1).
NAME_MAX = 255
PATH_MAX = 4095
#: Longer error messages are cut in the middle: one line a person can read.
_MESSAGE_MAX = 600
#: Address space (ulimit -v) below which loading numpy, pandas, scipy and pyarrow fails in ways
#: no handler catches (OpenBLAS exit(1) or spinning, a SystemError, a half-loaded module). On
#: a 2-CPU x86-64 host a run needed ~400 MiB, report and compare up to ~600 MiB; OpenBLAS and
#: malloc reserve more per CPU, hence a base plus a share per CPU (an estimate, not a bound).
MIN_ADDRESS_SPACE_BASE = 512 << 20
MIN_ADDRESS_SPACE_PER_CPU = 64 << 20
#: Commands that never load numpy: they work under any ulimit -v.
_LIGHT_COMMANDS = {"list", "columns", "sysinfo", "clean", "serve"}


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


def path_problem(text: str) -> str | None:
    """Why ``text`` cannot be a usable path, or None. Checked when the option is read, so the
    message names the option instead of an OS error deep in a run."""
    if not text.strip():
        return "an empty path; give a folder (. for the current one)"
    if "\x00" in text:
        return "a path cannot contain a NUL byte"
    encoded = os.fsencode(text)
    if len(encoded) > PATH_MAX:
        return f"the path is {len(encoded)} bytes long; Linux allows {PATH_MAX}"
    longest = max(len(part) for part in encoded.split(b"/"))
    if longest > NAME_MAX:
        return f"a name in the path is {longest} bytes long; Linux allows {NAME_MAX}"
    return None


class CheckedPath(click.Path):
    """click.Path that refuses, with one line, paths no system call would take."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            problem = path_problem(value)
            if problem:
                self.fail(problem, param, ctx)
        return super().convert(value, param, ctx)


def _checked_path(kind: click.Path) -> CheckedPath:
    return CheckedPath(
        exists=kind.exists,
        file_okay=kind.file_okay,
        dir_okay=kind.dir_okay,
        writable=kind.writable,
        readable=kind.readable,
        resolve_path=kind.resolve_path,
        allow_dash=kind.allow_dash,
        path_type=kind.type,
        executable=kind.executable,
    )


class IobenchCommand(click.Command):
    """Every iobench command: an option given twice is refused, paths are checked.

    A repeated option is refused rather than letting the last one win: ``--bs 1 --bs 4096``
    most likely means a sweep of both, and measuring only 4096 would give a run that looks
    complete but is not what was asked (a sweep takes one option: ``--bs 1,4096``). Flags
    (``-q -q``) are harmless and allowed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param.type) is click.Path:
                param.type = _checked_path(param.type)

    def invoke(self, ctx: click.Context) -> Any:
        if self.name not in _LIGHT_COMMANDS:
            _check_address_space()
        return super().invoke(ctx)

    def make_parser(self, ctx: click.Context) -> Any:
        parser = super().make_parser(ctx)
        parse = parser.parse_args

        def parse_once(args: list[str]) -> Any:
            opts, rest, order = parse(args)
            _refuse_repeats(order)
            return opts, rest, order

        parser.parse_args = parse_once
        return parser


def _address_space_limit() -> int | None:
    """The soft RLIMIT_AS (ulimit -v) in bytes; None when unlimited."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def _check_address_space() -> None:
    """One line instead of a crash when ulimit -v is too small to load what a command needs."""
    soft = _address_space_limit()
    needed = MIN_ADDRESS_SPACE_BASE + MIN_ADDRESS_SPACE_PER_CPU * (os.cpu_count() or 1)
    if soft is not None and soft < needed:
        raise IobenchError(
            f"not enough memory to start: ulimit -v allows {soft >> 20} MiB of address space; iobench "
            f"needs about {needed >> 20} MiB here (numpy, pandas and their math libraries reserve it as they load)"
        )


def _refuse_repeats(order: Sequence[click.Parameter]) -> None:
    seen: dict[str, int] = {}
    for param in order:
        if isinstance(param, click.Option) and not (param.is_flag or param.count or param.multiple):
            seen[param.opts[0]] = seen.get(param.opts[0], 0) + 1
    for option, times in seen.items():
        if times > 1:
            param = next(p for p in order if isinstance(p, click.Option) and p.opts[0] == option)
            sweep = isinstance(param.type, _RawChecked) and param.type.param.sweep
            hint = f" (several values go in one, comma-separated: {option} A,B)" if sweep else ""
            raise click.UsageError(f"{option} given {times} times; give it once{hint}")


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


def _protocol_params() -> tuple[Param, ...]:
    from iobench.engine.protocol import PROTOCOL_PARAMS

    return PROTOCOL_PARAMS


def _protocol_options() -> list[click.Option]:
    return [_param_option(p, envvar=f"IOBENCH_{p.name.upper()}") for p in _protocol_params()]


def _dir_option(purpose: str) -> click.Option:
    """``--dir``, shared by sysinfo, clean and every run command (IOBENCH_DIR; default: here)."""
    return click.Option(
        ["--dir", "target_dir"],
        type=CheckedPath(path_type=Path),
        default=Path("."),
        envvar="IOBENCH_DIR",
        show_envvar=True,
        help=f"{purpose} [default: .]",
    )


def _out_option(purpose: str) -> click.Option:
    """``--out``: the results folder, for every command (IOBENCH_OUT; default results/)."""
    return click.Option(
        ["--out", "out_dir"],
        type=CheckedPath(path_type=Path),
        default=Path(DEFAULT_OUT),
        envvar="IOBENCH_OUT",
        show_envvar=True,
        help=f"The results folder: {purpose} [default: {DEFAULT_OUT}/]",
    )


def _run_options() -> list[click.Option]:
    """Options every run command shares: where scratch files go, where results land, output."""
    from iobench.engine.protocol import TIME_BUDGET

    return [
        _dir_option("Folder where a private scratch folder is made for test files."),
        _out_option("where the run folder lands."),
        click.Option(["--quiet", "-q"], is_flag=True, help="No progress display."),
        click.Option(
            ["--json", "as_json"],
            is_flag=True,
            help="Print the run's per-case summary as JSON on stdout (progress and tables go to stderr).",
        ),
        click.Option(["--rows"], is_flag=True, help="With --json: include every repetition row."),
        click.Option(
            ["--cpu"],
            type=int,
            default=None,
            envvar="IOBENCH_CPU",
            help="Pin the measuring process to this CPU (fewer migrations, steadier numbers).",
        ),
        click.Option(
            ["--peer"],
            metavar="HOST[:PORT]|netns",
            default=None,
            envvar="IOBENCH_PEER",
            show_envvar=True,
            help="Socket experiments: run the peer on the 'iobench serve' at HOST (port 7300 unless "
            "given) instead of forking it here; 'netns': on a virtual host in a network namespace "
            "behind an emulated link (--rtt, --rate, --loss; needs root).",
        ),
        click.Option(
            ["--peer-token"],
            default=None,
            envvar="IOBENCH_PEER_TOKEN",
            show_envvar=True,
            help="The token the --peer server wants (its --token).",
        ),
        _param_option(TIME_BUDGET, envvar="IOBENCH_MAX_TIME"),
        *_protocol_options(),
        *_cluster_options(),
    ]


def _cluster_options() -> list[click.Option]:
    """A fleet run: the same plan on every worker of a Dask cluster (``iobench[fleet]``)."""
    return [
        click.Option(
            ["--cluster"],
            metavar="tcp://HOST:PORT",
            envvar="IOBENCH_CLUSTER",
            show_envvar=True,
            help="Run on every worker of this Dask scheduler at once, one case at a time per host; "
            "results go to a fleet folder (fleet.json + one run per host) under --out.",
        ),
        click.Option(
            ["--hosts"],
            metavar="NAME[,...]",
            help="With --cluster: only these workers (names, or patterns such as node-*). [default: all]",
        ),
        click.Option(
            ["--pairs"],
            metavar="CLIENT:PEER[,...]",
            envvar="IOBENCH_PAIRS",
            show_envvar=True,
            help="With --cluster: socket experiments between hosts. Each CLIENT runs the plan; its "
            "peer is an 'iobench serve' started on PEER for the run (PEER runs no cases).",
        ),
        click.Option(
            ["--cluster-timeout"],
            type=click.FloatRange(min=0.1, max=3600),
            default=10.0,
            envvar="IOBENCH_CLUSTER_TIMEOUT",
            show_envvar=True,
            help="Seconds to reach the scheduler before giving up (exit 2). [default: 10]",
        ),
    ]


def _pop_cluster(kwargs: dict[str, Any], peer: str | None = None) -> dict[str, Any]:
    """Remove the cluster options from ``kwargs``; the API's keywords (none without --cluster)."""
    cluster = kwargs.pop("cluster", None)
    hosts = kwargs.pop("hosts", None)
    timeout = kwargs.pop("cluster_timeout", None)
    pairs = kwargs.pop("pairs", None)
    if not cluster:
        if hosts:
            raise click.UsageError("--hosts chooses workers of a --cluster: give --cluster too")
        if pairs:
            raise click.UsageError("--pairs pairs hosts of a fleet run: give --cluster too")
        return {}
    if not cluster.strip():
        raise click.UsageError("--cluster: give the scheduler's address (tcp://HOST:8786)")
    found = {"cluster": cluster.strip(), "hosts": hosts, "cluster_timeout": timeout}
    if pairs:
        if peer:
            raise click.UsageError("--pairs starts each pair's peer on its peer host: give no --peer")
        found["pairs"] = pairs
    return found


def _pop_protocol(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the protocol flags from ``kwargs``; return those given (raw strings)."""
    given = {p.name: kwargs.pop(p.name, None) for p in _protocol_params()}
    return {name: value for name, value in given.items() if value is not None}


class IobenchGroup(click.Group):
    """A group whose errors are one line: ``Error: ...`` and the right exit status."""

    command_class = IobenchCommand

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any) -> Any:
        extra["standalone_mode"] = False
        try:
            # SIGTERM/SIGHUP anywhere in a command end it like Ctrl-C, with one line.
            with termination_raises():
                rv = super().main(args, prog_name or "iobench", **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(ExitCode.USAGE)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            _fail(f"{exc.format_message()}{hint}", ExitCode.USAGE)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except IobenchError as exc:
            _fail(str(exc), exc.exit_code)
        except (click.Abort, KeyboardInterrupt, Terminated):
            _fail("interrupted", ExitCode.INTERRUPTED)
        except MemoryError:
            _fail("not enough memory to run (check ulimit -v)", ExitCode.USAGE)
        except ImportError as exc:
            limit = _address_space_limit()
            if limit is None:
                raise  # a module really missing: a broken install, worth its traceback
            # Under ulimit -v a library that cannot map its code fails to import (or says so
            # only in a chained cause): not a broken install.
            _fail(
                f"not enough memory to load {exc.name or 'a module'} (ulimit -v allows {limit >> 20} MiB)",
                ExitCode.USAGE,
            )
        except RecursionError:
            _fail("input nested too deeply to read", ExitCode.USAGE)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                sys.exit(ExitCode.OK)
            if exc.errno == errno.ENAMETOOLONG:
                _fail(f"a path is too long: {exc.filename or exc}", ExitCode.USAGE)
            raise
        sys.exit(rv if isinstance(rv, int) else ExitCode.OK)


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {one_line(message)}", err=True)
    sys.exit(int(code))


def one_line(message: str) -> str:
    """``message`` as one printable line: control characters (a newline in a path, a NUL)
    and undecodable bytes escaped, an overlong message cut in the middle."""
    text = "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape", "backslashreplace").decode()
        for ch in message.strip()
    )
    if len(text) > _MESSAGE_MAX:
        half = _MESSAGE_MAX // 2
        text = f"{text[:half]} ... ({len(text) - 2 * half} characters left out) ... {text[-half:]}"
    return text


@click.group(cls=IobenchGroup, no_args_is_help=True)
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
      iobench compare results/baselines/ci results/<run>
    """


@cli.command("list")
def list_command() -> None:
    """List experiments, their parameters and defaults.

    Example: iobench list
    """
    from iobench.experiments import describe_all

    for info in describe_all().values():
        click.echo(f"{info.name}: {info.summary}")
        click.echo(f"  idea: {info.idea}")
        for param in info.params:
            choices = f" (one of {', '.join(param.choices)})" if param.choices else ""
            many = ", sweepable" if param.sweep else ""
            click.echo(f"  {param.option} {param.metavar}  default {param.describe_default()}{choices}{many}")
            click.echo(f"      {param.help}")
        click.echo("")
    click.echo("Repetition protocol (every run command; config [protocol]; IOBENCH_<NAME>):")
    for param in _protocol_params():
        click.echo(f"  {param.option} {param.metavar}  default {param.describe_default()}  {param.help}")


@cli.command("columns")
@click.argument("experiment", required=False)
@click.option(
    "--format", "output_format", type=click.Choice(["text", "md", "json"]), default="text", show_default=True
)
def columns_command(experiment: str | None, output_format: str) -> None:
    """The data dictionary: every result column, its unit, dtype and meaning.

    With EXPERIMENT, the columns that experiment's runs hold; without, all of them.

    Example: iobench columns rw-buffer --format md
    """
    from iobench.dictionary import columns, derived_columns, render_markdown
    from iobench.experiments import all_experiments, get_experiment

    chosen = [get_experiment(experiment)] if experiment else all_experiments()
    docs = columns(chosen)
    if output_format == "md":
        click.echo(render_markdown([*docs, *derived_columns()]), nl=False)
        return
    if output_format == "json":
        rows = [
            {"name": d.name, "unit": d.unit, "dtype": d.dtype, "kind": d.kind, "meaning": d.meaning,
             "experiments": list(d.experiments), "choices": list(d.choices)}
            for d in [*docs, *derived_columns()]
        ]  # fmt: skip
        click.echo(json.dumps(rows, indent=2))
        return
    every = [*docs, *derived_columns()]
    width = max(len(d.name) for d in every)
    for doc in every:
        derived = " (derived, not stored)" if doc.kind == "derived" else ""
        click.echo(f"{doc.name:<{width}}  {doc.unit:<9} {doc.dtype:<8} {doc.meaning}{derived}")


@cli.command("sysinfo", params=[_dir_option("Folder to describe.")])
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def sysinfo_command(target_dir: Path, as_json: bool) -> None:
    """Show host and target-folder facts and what could skew results.

    Also lists scratch folders that killed runs left under --dir (remove them with
    `iobench clean`).

    Example: iobench sysinfo --dir /mnt/nvme --json
    """
    from iobench import hostinfo, scratch
    from iobench.units import format_size

    scratch.check_target_dir(target_dir)
    host = hostinfo.host_facts()
    target = hostinfo.target_facts(target_dir)
    warnings = hostinfo.warnings_for(host, target)
    left = scratch.leftovers(target_dir)
    warnings += [f"{line}: restore it with: iobench clean" for line in scratch.left_settings()]
    for item in left:
        warnings.append(
            f"leftover scratch folder {item.path} ({format_size(item.size_bytes)}) from a run that was killed; "
            f"remove it with: iobench clean --dir {target_dir}"
        )
    if as_json:
        leftovers = [{"path": str(i.path), "size_bytes": i.size_bytes, "run": i.run} for i in left]
        click.echo(
            json.dumps(
                {"host": host, "target": target, "warnings": warnings, "leftovers": leftovers}, indent=2
            )
        )
        return
    lines = hostinfo.describe(host, target)
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        click.echo(f"{key:<{width}}  {value}")
    for warning in warnings:
        click.echo(f"warning: {warning}")


@cli.command(
    "clean",
    params=[
        _dir_option("Folder whose leftover scratch folders to remove."),
        _out_option("where runs killed mid-way are marked crashed."),
    ],
)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def clean_command(target_dir: Path, out_dir: Path, dry_run: bool) -> None:
    """Remove what killed runs left behind: scratch folders (their test files) under --dir,
    system settings they changed (written back, as root), the network namespaces of --peer netns
    runs (as root), and mark their runs under --out as crashed. Folders of running iobench processes are never
    touched (each holds a lock).

    Example: iobench clean --dir /mnt/disk
    """
    from iobench import scratch
    from iobench.results import list_runs, mark_if_crashed, read_meta
    from iobench.units import format_size

    scratch.check_target_dir(target_dir)
    for item in scratch.leftovers(target_dir):
        click.echo(f"{'would remove' if dry_run else 'removed'} {item.path} ({format_size(item.size_bytes)})")
        if not dry_run:
            scratch.remove(item)
    if dry_run:
        for line in scratch.left_settings():
            click.echo(f"would restore: {line}")
    else:
        for line in scratch.restore_left_settings():
            click.echo(line)
    for name in _stale_namespaces(dry_run):
        click.echo(f"{'would remove' if dry_run else 'removed'} network namespace {name} and its processes")
    for path in list_runs(out_dir):
        try:
            meta = read_meta(path)
        except IobenchError:
            continue
        if not dry_run and mark_if_crashed(path, meta):
            click.echo(f"marked {path} crashed (continue it with: iobench run sweep --resume {path})")


def _stale_namespaces(dry_run: bool) -> list[str]:
    """The virtual hosts (--peer netns) of killed runs: listed, or removed with what runs in
    them; nothing without root or ``ip``."""
    import os

    from iobench.netemu import ns

    if os.geteuid() != 0 or ns.ip_command() is None:
        return []
    return ns.stale() if dry_run else ns.cleanup_stale()


class RunGroup(click.Group):
    """``run sweep`` plus one command per registered experiment, built from its params."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from iobench.experiments import all_experiments

        return ["sweep", *(e.name for e in all_experiments())]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from iobench.experiments import get_experiment

        if name == "sweep":
            return sweep_command
        try:
            return _experiment_command(get_experiment(name))
        except IobenchError:
            return None

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        from iobench.experiments import get_experiment

        name = click.utils.make_str(args[0]) if args else ""
        if args and not name.startswith("-") and self.get_command(ctx, name) is None:
            get_experiment(name)  # raises UnknownExperimentError naming the known ones
        return super().resolve_command(ctx, args)


@cli.command("serve")
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Control port (0: any free port, printed) [default: 7300].",
)
@click.option(
    "--token",
    default=None,
    envvar="IOBENCH_PEER_TOKEN",
    show_envvar=True,
    help="Shared token clients must give (--peer-token); required unless --bind is loopback.",
)
@click.option(
    "--max-clients",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Clients served at once; others get a busy answer (one at a time keeps runs apart).",
)
@click.option("--timeout", "timeout_s", type=float, default=None, hidden=True)
# A fleet pair's serve (--pairs) is started with its stdin a pipe from the Dask worker: EOF
# there means the worker is gone, and the serve must not outlive it.
@click.option("--exit-on-stdin-eof", is_flag=True, hidden=True)
def serve_command(
    bind: str,
    port: int | None,
    token: str | None,
    max_clients: int,
    timeout_s: float | None,
    exit_on_stdin_eof: bool,
) -> None:
    """Run the peer end of the socket experiments for a client on another host.

    Serves sock-buffer, zero-copy (file to TCP socket) and msg-zerocopy's receiver,
    zero-byte-recv's sender and async-send's echo client and receiver to
    `iobench run ... --peer HOST[:PORT]` (the sender and echo client connect back to the
    client's address). Prints one line once listening; Ctrl-C or SIGTERM stops it.

    \b
    Examples:
      iobench serve                               # 127.0.0.1:7300
      iobench serve --bind 0.0.0.0 --token s3cret
    """
    from iobench.peer.address import DEFAULT_PORT
    from iobench.peer.server import DEFAULT_TIMEOUT_S, ServeConfig, serve

    config = ServeConfig(
        bind=bind,
        port=DEFAULT_PORT if port is None else port,
        token=token,
        timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
        max_clients=max_clients,
        exit_on_stdin_eof=exit_on_stdin_eof,
    )
    try:
        serve(config, lambda line: click.echo(line) or sys.stdout.flush())
    except (KeyboardInterrupt, Terminated):
        click.echo("iobench serve: stopped", err=True)


@cli.group("run", cls=RunGroup, no_args_is_help=True)
def run_group() -> None:
    """Run one experiment, or a sweep from a config.

    \b
    Examples:
      iobench run rw-buffer --mode read --bs 4096 --file-size 1MiB
      iobench run sweep                # bench_configs/quick.toml
      iobench run sweep tlpi.toml --dir /mnt/disk
    """


def _drive(events: Any, quiet: bool, as_json: bool, with_rows: bool, note: str | None = None) -> None:
    """Render a run's events, then its tables (stderr with --json), then where it is.

    ``note`` is printed once the run has started (so a refused run prints only its error)."""
    from iobench.engine.events import CaseFinished, RunFinished, RunStarted
    from iobench.render import make_renderer

    renderer = make_renderer(quiet)
    run = started = None
    recorded = 0
    try:
        for event in events:
            if isinstance(event, RunStarted):
                started = event
                if note:
                    click.echo(note, err=True)
            recorded += isinstance(event, CaseFinished)
            if renderer is not None:
                renderer(event)
            if isinstance(event, RunFinished):
                run = event.run
    except (KeyboardInterrupt, Terminated):
        # The signal landed here, between two of the run's events: closing the run marks it
        # interrupted (finished cases are already recorded) and removes its scratch folder.
        events.close()
        raise _interrupted_between_events(started, recorded, run) from None
    finally:
        if renderer is not None and hasattr(renderer, "close"):
            renderer.close()
    assert run is not None
    if hasattr(run, "hosts"):
        _report_fleet(run, as_json, with_rows)
    else:
        _report_run(run, as_json, with_rows)


def _report_fleet(fleet: Any, as_json: bool, with_rows: bool) -> None:
    """Per host: its status and what did not run; where the fleet is; exit 3 when a case failed."""
    if as_json:
        data = {
            "fleet": str(fleet.path),
            "status": fleet.status,
            "hosts": {name: run.summary_records(with_rows) for name, run in fleet.hosts.items()},
        }
        click.echo(json.dumps(data, indent=2, default=str))
    for name, run in fleet.hosts.items():
        cases = run.meta.get("cases", [])
        ok = sum(1 for c in cases if c.get("status") == "ok")
        line = f"host {name}: {run.status}, {ok} of {len(cases)} recorded cases ok"
        if run.meta.get("error"):
            line += f" ({run.meta['error']})"
        click.echo(line, err=True)
    for warning in fleet.meta.get("warnings") or []:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"results: {fleet.path} (report: iobench report {fleet.path})", err=as_json)
    failed = fleet.failed_cases
    if failed:
        click.echo(
            f"{len(failed)} case(s) failed; exit status {int(ExitCode.CASES_FAILED)}",
            err=True,
        )
        sys.exit(ExitCode.CASES_FAILED)


def _interrupted_between_events(started: Any, recorded: int, run: Any) -> RunInterrupted:
    """The message for a signal that reached the CLI rather than the measuring loop."""
    if run is not None:
        return RunInterrupted(
            f"interrupted after the run ended: every case is kept in {run.path or 'memory'}"
        )
    if started is None:
        return RunInterrupted("interrupted before the first case; nothing was measured")
    from iobench.session import interrupted_mid_run

    return interrupted_mid_run(started.done + recorded, started.total, started.path)


def _report_run(run: Any, as_json: bool, with_rows: bool) -> None:
    """Tables, warnings, where the results are, and the exit status (3: a case failed).

    Ctrl-C while this prints does not lose anything: the run is already complete on disk.
    """
    try:
        if as_json:
            click.echo(json.dumps(run.summary_records(with_rows), indent=2, default=str))
        _print_tables(run, err=as_json)
        for warning in run.meta.warnings:
            click.echo(f"warning: {warning}", err=True)
        if run.status == "stopped":
            click.echo(
                f"stopped: {run.meta.get('error')}; continue with: iobench run sweep --resume {run.path}",
                err=True,
            )
    except (KeyboardInterrupt, Terminated):
        click.echo("", err=True)
    click.echo(f"results: {run.path or 'not written (no --out)'}", err=as_json)
    failed = run.failed_cases
    if failed:
        click.echo(
            f"{len(failed)} case(s) failed (see the warnings above); exit status {int(ExitCode.CASES_FAILED)}",
            err=True,
        )
        sys.exit(ExitCode.CASES_FAILED)


def _print_tables(run: Any, err: bool = False) -> None:
    """The run's book tables in the terminal: medians ± their interval, marks and a legend."""
    from rich.console import Console
    from rich.table import Table

    from iobench.experiments import get_experiment
    from iobench.hostinfo import cpu_tick_ns
    from iobench.report.tables import book_table, describe_group, table_legend

    summary = run.case_summaries()  # plain records: the run never loads pandas for its tables
    if not summary:
        return
    host = run.meta.host
    tick = (
        (host["cpu_tick_ns"], host.get("cpu_tick_source", "")) if host.get("cpu_tick_ns") else cpu_tick_ns()
    )
    width = max(140, Console().width)
    console = Console(soft_wrap=False, width=width, stderr=err)
    for experiment_name in dict.fromkeys(str(r["experiment"]) for r in summary):
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
        mine = [r for r in summary if r["experiment"] == experiment_name]
        for line in table_legend(mine, experiment, [tick]):
            console.print(line, style="dim", highlight=False, soft_wrap=True)


def _experiment_command(experiment: Any) -> click.Command:
    def callback(
        target_dir: Path,
        out_dir: Path,
        quiet: bool,
        as_json: bool,
        rows: bool,
        max_time: str | None,
        cpu: int | None,
        peer: str | None,
        peer_token: str | None,
        **kwargs: Any,
    ) -> None:
        from iobench.api import current_command, run_iter

        protocol = _pop_protocol(kwargs)
        fleet = _pop_cluster(kwargs, peer)
        note = _min_reps_note(protocol, sweep=False)
        params = {k: v for k, v in kwargs.items() if v is not None}
        events = run_iter(
            experiment.name,
            dir=target_dir,
            out=out_dir,
            cpu=cpu,
            max_time=max_time,
            command=current_command(),
            peer=peer,
            peer_token=peer_token,
            **fleet,
            **params,
            **protocol,
        )
        _drive(events, quiet, as_json, rows, note)

    return IobenchCommand(
        experiment.name,
        callback=callback,
        params=[*(_param_option(p) for p in experiment.params), *_run_options()],
        help=f"{experiment.summary}.\n\nThe idea: {experiment.seed_idea}\n\n"
        f"Example: iobench run {experiment.name} "
        + " ".join(f"{p.option} {p.format(p.default)}" for p in experiment.params[:2]),
        short_help=experiment.summary,
    )


def _min_reps_note(protocol: dict[str, Any], sweep: bool) -> str | None:
    """What to say when a max_reps given without min_reps lowers min_reps (the default's, or
    for a sweep the config's); None when nothing is lowered."""
    from iobench.stats import min_reps_for_significance

    if "max_reps" not in protocol or "min_reps" in protocol:
        return None
    by_name = {p.name: p for p in _protocol_params()}
    high = by_name["max_reps"].parse(protocol["max_reps"], "--max-reps")
    default = by_name["min_reps"].default
    needed = min_reps_for_significance()
    why = f" (with fewer than {needed} repetitions a side no difference can be shown at 95%)"
    why = why if high < needed else ""
    if sweep:
        return f"note: --max-reps {high} without --min-reps: min_reps is lowered to {high} where it is larger{why}"
    if high < default:
        return f"note: min_reps lowered from its default {default} to {high} to fit --max-reps {high}{why}"
    return None


def _sweep(
    config: str | None,
    only: str | None,
    resume: str | None,
    target_dir: Path,
    out_dir: Path,
    quiet: bool,
    as_json: bool,
    rows: bool,
    max_time: str | None,
    cpu: int | None,
    peer: str | None,
    peer_token: str | None,
    **kwargs: Any,
) -> None:
    from iobench.api import current_command, resume_iter, sweep_iter

    protocol = _pop_protocol(kwargs)
    fleet = _pop_cluster(kwargs, peer)
    if resume is not None:
        if config is not None or only is not None:
            raise click.UsageError("--resume continues a run with its own config: give no CONFIG or --only")
        if protocol:
            raise click.UsageError("--resume keeps the run's own protocol: give no protocol options")
        if fleet.get("hosts") or fleet.get("pairs"):
            raise click.UsageError(
                "--resume of a fleet run keeps its own hosts and pairs: give no --hosts or --pairs"
            )
        events = resume_iter(
            _run_path(resume, out_dir),
            dir=target_dir,
            cpu=cpu,
            max_time=max_time,
            command=current_command(),
            peer=peer,
            peer_token=peer_token,
            cluster=fleet.get("cluster"),
            cluster_timeout=fleet.get("cluster_timeout"),
        )
        _drive(events, quiet, as_json, rows)
        return
    note = _min_reps_note(protocol, sweep=True)
    names = None
    if only is not None:
        names = [name.strip() for name in only.split(",") if name.strip()]
        if not names:
            raise click.UsageError("--only: give at least one experiment name")
    events = sweep_iter(
        config,
        only=names,
        dir=target_dir,
        out=out_dir,
        cpu=cpu,
        max_time=max_time,
        command=current_command(),
        peer=peer,
        peer_token=peer_token,
        **fleet,
        **protocol,
    )
    _drive(events, quiet, as_json, rows, note)


sweep_command = IobenchCommand(
    "sweep",
    callback=_sweep,
    params=[
        click.Argument(["config"], required=False),
        click.Option(["--only"], metavar="NAME[,...]", help="Run only these experiments' entries."),
        click.Option(
            ["--resume"],
            metavar="RUN",
            help="Continue an interrupted, stopped or crashed run (a folder, or a run id under --out): "
            "finished cases are kept, the rest run. Refused while another process writes that run.",
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
    """``--out``: the results folder, where run ids are looked up (report, compare; IOBENCH_OUT).

    ``--results`` is accepted as an older spelling."""
    return click.Option(
        ["--out", "--results", "results_dir"],
        type=CheckedPath(path_type=Path),
        default=Path(DEFAULT_OUT),
        envvar="IOBENCH_OUT",
        show_envvar=True,
        help=f"The results folder, {purpose}. [default: {DEFAULT_OUT}/]",
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
    "--report-dir",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the report goes. [default: <first run>/report]",
)
def report_command(
    runs: tuple[str, ...], formats: str, md_images: str, results_dir: Path, out_dir: Path | None
) -> None:
    """Write a report of runs (default: the latest): report.html, report.md and figures.

    RUNS are run folders or run ids under --out. Several runs (two machines, before and
    after a change) share figures: one series per run.

    Example: iobench report 20261121-170102-3fa9 20261122-091500-77aa --format html,md
    """
    from iobench.fleet.folder import host_runs, is_fleet
    from iobench.report import build_report, parse_formats
    from iobench.results import latest_run, load_run

    chosen = parse_formats(formats)
    paths = [_run_path(r, results_dir) for r in runs] or [latest_run(results_dir)]
    fleet = None
    if any(is_fleet(p) for p in paths):
        if len(paths) > 1:
            raise click.UsageError("report one fleet folder at a time (its hosts are its series)")
        fleet = {name: load_run(path) for name, path in host_runs(paths[0]).items()}
        if not fleet:
            raise IobenchError(f"{paths[0]} is a fleet folder without any host's run")
        loaded = list(fleet.values())
    else:
        loaded = [load_run(p) for p in paths]
    destination = out_dir or (paths[0] / "report")
    try:
        written = build_report(loaded, destination, chosen, md_images=md_images, fleet=fleet)
    except OSError as exc:
        raise IobenchError(f"cannot write the report in {destination}: {exc.strerror or exc}") from None
    for path in written:
        click.echo(str(path))
    if fleet is not None:
        from iobench.report.fleet import describe, fleet_section

        click.echo(describe(fleet_section(fleet)), err=True)


@cli.command("compare", params=[_results_option("for run ids")])
@click.argument("base")
@click.argument("new")
@click.option(
    "--threshold",
    default="5%",
    show_default=True,
    help="Smallest change that counts, either way on the log scale (5%: 1.05x slower or faster).",
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
@click.option(
    "--fail-on-noisy",
    is_flag=True,
    help="Also fail when a case is too noisy to rule out a slowdown beyond the limit (strict gates).",
)
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Do not fail when a case of BASE is missing, failed or unsupported in NEW (still reported).",
)
@click.option(
    "--cross-machine",
    is_flag=True,
    help="Compare runs from different machines (CPU, kernel, filesystem or device differ) anyway.",
)
@click.pass_context
def compare_command(
    ctx: click.Context,
    base: str,
    new: str,
    threshold: str,
    metric: str,
    output_format: str,
    fail_on_noisy: bool,
    allow_missing: bool,
    cross_machine: bool,
    results_dir: Path,
) -> None:
    """Compare two runs case by case; exit 1 on a regression.

    BASE and NEW are runs, or folders of runs (a baseline of several runs measures each
    case's run-to-run noise floor, taken at 1 - 0.05/cases so that unchanged code flags no
    case 95% of the time). Per case: the change (Hodges-Lehmann shift of the log
    values), its 95% interval (Mann-Whitney) and a verdict. The limit is --threshold, or the
    noise floor when larger, either way on the log scale. slower/faster: the whole interval
    is beyond the limit; unchanged: the whole interval is within it; noisy: it crosses it.

    \b
    Exit 0: no regression.
    Exit 1: a case is slower; or a case of BASE is missing or failed in NEW (unless
            --allow-missing); or, with --fail-on-noisy, a noisy case could be slower.
    Exit 2: the runs cannot be compared (unreadable, nothing in common, different
            machines without --cross-machine).

    Example: iobench compare results/baselines/ci results/20261121-170102-3fa9 --format md
    """
    from iobench.compare import compare, render_markdown
    from iobench.fleet.folder import is_fleet
    from iobench.results import load_runs

    limit = Param("threshold", Kind.PERCENT, 5.0, "", minimum=0, maximum=1000).parse(threshold, "--threshold")
    base_path, new_path = _run_path(base, results_dir), _run_path(new, results_dir)
    if is_fleet(base_path) or is_fleet(new_path):
        options = (metric, limit / 100, output_format, fail_on_noisy, allow_missing, cross_machine)
        ctx.exit(_compare_fleets(base_path, new_path, *options))
    base_runs = load_runs(base_path)
    new_runs = load_runs(new_path)
    result = compare(base_runs, new_runs, metric, limit / 100, cross_machine=cross_machine)
    if output_format == "json":
        data = result.as_dict(allow_missing, fail_on_noisy)
        click.echo(json.dumps(data, indent=2, default=str))
    elif output_format == "md":
        click.echo(render_markdown(result, allow_missing, fail_on_noisy), nl=False)
    else:
        _print_comparison(result, allow_missing, fail_on_noisy)
    failed = result.gate_failures(allow_missing, fail_on_noisy)
    ctx.exit(ExitCode.REGRESSION if failed else ExitCode.OK)


def _compare_fleets(
    base: Path,
    new: Path,
    metric: str,
    limit: float,
    output_format: str,
    fail_on_noisy: bool,
    allow_missing: bool,
    cross_machine: bool,
) -> int:
    """Two fleet runs compared host by host (each host's run against its own earlier run);
    the exit status is the worst host's. A host in only one fleet is named, and fails the
    gate unless --allow-missing."""
    from iobench.compare import compare, render_markdown
    from iobench.fleet.folder import host_runs, is_fleet
    from iobench.results import load_runs

    if not (is_fleet(base) and is_fleet(new)):
        one = base if is_fleet(base) else new
        raise click.UsageError(
            f"{one} is a fleet run: compare it with another fleet run (host by host), or pick one "
            f"host's run folder inside it"
        )
    base_hosts, new_hosts = host_runs(base), host_runs(new)
    common = [name for name in base_hosts if name in new_hosts]
    missing = [name for name in base_hosts if name not in new_hosts]
    if not common:
        raise IobenchError(f"the fleets {base} and {new} have no host in common")
    status = ExitCode.OK
    as_json: dict[str, Any] = {"hosts": {}, "missing_hosts": missing}
    for name in common:
        result = compare(
            load_runs(base_hosts[name]),
            load_runs(new_hosts[name]),
            metric,
            limit,
            cross_machine=cross_machine,
        )
        if result.gate_failures(allow_missing, fail_on_noisy):
            status = ExitCode.REGRESSION
        if output_format == "json":
            as_json["hosts"][name] = result.as_dict(allow_missing, fail_on_noisy)
        elif output_format == "md":
            click.echo(f"## Host `{name}`\n")
            click.echo(render_markdown(result, allow_missing, fail_on_noisy), nl=False)
        else:
            click.echo(f"host {name}:")
            _print_comparison(result, allow_missing, fail_on_noisy)
    if output_format == "json":
        click.echo(json.dumps(as_json, indent=2, default=str))
    for name in missing:
        click.echo(f"warning: host {name} of {base} is missing in {new}", err=True)
    if missing and not allow_missing:
        status = ExitCode.REGRESSION
    return int(status)


#: The colour of each verdict in the terminal table.
_VERDICT_COLOURS = {"slower": "red", "missing": "red", "faster": "green", "noisy": "yellow", "unchanged": ""}


def _print_comparison(result: Any, allow_missing: bool, fail_on_noisy: bool) -> None:
    """The terminal form: what was compared, then a table that wraps (never cuts) to the width.

    The case cell starts with the parameters that tell the cases apart, in human units; the
    experiment and the parameters all cases share follow, dimmed.
    """
    from rich.console import Console

    from iobench.compare import headline

    console = Console(highlight=False)
    for line in (
        f"base: {result.base.describe()}",
        f"new:  {result.new.describe()}",
        f"noise floor: {result.noise_floor_summary()}",
        f"{result.metric}: {headline(result)} (threshold {result.threshold:.0%})",
    ):
        console.print(line, soft_wrap=True)
    table, blocks, cells = _comparison_rows(result)
    if _columns_fit(table, cells, console.width):
        console.print(table)
    else:  # too narrow for the columns' shortest words: one block per case, wrapped
        for head, detail in blocks:
            console.print(head)
            console.print(detail)
    failures = result.gate_failures(allow_missing, fail_on_noisy)
    console.print(f"gate: {'fails: ' + '; '.join(failures) if failures else 'passes'}", soft_wrap=True)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


def _comparison_rows(result: Any) -> tuple[Any, list[tuple[Any, Any]], list[list[str]]]:
    """Each case of the comparison three ways: a row of the table, a (head, detail) block for a
    terminal too narrow for it, and its cells as plain text (to measure)."""
    from rich.text import Text

    from iobench.compare import case_labels, render_rows

    parts = case_labels(
        [(c.experiment, c.case) for c in result.cases] + [(m.experiment, m.case) for m in result.missing]
    )
    labels = {(c.experiment, c.label): parts[(c.experiment, c.case)] for c in result.cases}
    labels.update({(m.experiment, m.label): parts[(m.experiment, m.case)] for m in result.missing})
    table = _comparison_table(
        max((len(p) for varying, fixed in parts.values() for p in varying + fixed), default=4)
    )
    blocks, cells = [], []
    for verdict, experiment, label, *rest in render_rows(result):
        varying, fixed = labels.get((experiment, label), ([label], []))
        case = Text(" ".join(varying))
        case.append((" " if varying else "") + " ".join([*fixed, f"({experiment})"]), style="dim")
        table.add_row(verdict, case, *rest, style=_VERDICT_COLOURS[verdict])
        cells.append([verdict, case.plain, *rest])
        change, interval, limit, reps, why = rest
        detail = f"{change} [{interval}], limit {limit}, reps {reps}: {why}" if change != "-" else why
        blocks.append((Text(f"{verdict} ", style=_VERDICT_COLOURS[verdict]) + case, Text(f"  {detail}")))
    return table, blocks, cells


def _comparison_table(longest: int) -> Any:
    """The empty table; ``longest`` is the longest word of a case cell."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD)
    for header in ("verdict", "case", "change", "95% interval", "limit", "reps", "why"):
        # Every column folds: a narrow terminal gets more lines, never a cut-off case.
        wide = header in ("case", "why")  # these two share what room there is
        table.add_column(
            header,
            overflow="fold",
            min_width=min(longest, 24) if header == "case" else None,
            ratio=1 if wide else None,
        )
    return table


def _columns_fit(table: Any, cells: list[list[str]], width: int) -> bool:
    """Whether every column can hold its longest word with a space either side (below that,
    rich would cut)."""
    words = [
        max(len(word) for row in [[c.header for c in table.columns], *cells] for word in str(row[i]).split())
        for i in range(len(table.columns))
    ]
    return sum(words) + 2 * len(words) + 1 <= width


def _run_path(run: str, results_dir: Path) -> Path:
    given = Path(run)
    if given.is_dir() or given.parent != Path("."):
        return given
    return results_dir / run


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="iobench")
    finally:
        # The command is done (its results written, its status and message chosen): a SIGINT,
        # SIGTERM or SIGHUP during the interpreter's own shutdown (a few hundred ms once pandas
        # and pyarrow are loaded) would only turn a finished exit into a silent kill (-2).
        for signum in (signal.SIGINT, *TERMINATING):
            signal.signal(signum, signal.SIG_IGN)
