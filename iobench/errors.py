"""Exceptions the core raises and the exit codes the CLI turns them into.

The core never imports click: it raises these, and ``cli.py`` maps them to a one-line
message and an exit status.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit status iobench uses."""

    OK = 0
    #: compare: a case got significantly worse (or went missing).
    REGRESSION = 1
    #: Bad input, an unusable folder, runs that cannot be compared, a full results disk.
    USAGE = 2
    #: A run finished, but at least one case failed (not merely unsupported on this host).
    CASES_FAILED = 3
    INTERRUPTED = 130


class IobenchError(Exception):
    """A problem the user can fix (bad input, unusable folder); exits with status 2."""

    exit_code: ExitCode = ExitCode.USAGE


class ParamError(IobenchError):
    """A parameter value that cannot be parsed or is out of range."""


class ConfigError(IobenchError):
    """A sweep config that cannot be read or does not validate."""


class UnknownExperimentError(IobenchError):
    """An experiment name that is not in the registry."""


class TargetDirError(IobenchError):
    """A --dir or --out folder that is missing, not a folder, or not writable."""


class InsufficientSpaceError(IobenchError):
    """The target folder has less free space than a case needs."""


class ResultsError(IobenchError):
    """A results folder that is missing, incomplete or of an unknown schema."""


class ResultsFullError(IobenchError):
    """The results folder ran out of space while recording a case (what was recorded stays)."""


class RunLockedError(IobenchError):
    """Another live process is writing the run folder."""


class ClusterError(IobenchError):
    """A fleet run's cluster: the scheduler cannot be reached, no worker matches --hosts, or a
    worker runs another iobench (or none)."""


class UnsupportedCase(Exception):
    """Raised by an experiment when this host cannot run a case; the reason is recorded."""


class RunInterrupted(IobenchError):
    """SIGINT or SIGTERM arrived mid-run; finished cases were kept."""

    exit_code = ExitCode.INTERRUPTED


class LinkUnsupported(UnsupportedCase):
    """This host cannot emulate a network link between namespaces (not root, no ``ip``, no
    TUN device, neither sch_netem nor the relay extension); the reason is one sentence."""
