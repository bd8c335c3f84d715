"""One exception hierarchy for everything pgferry reports to its user.

Each error carries the one-line message the CLI prints, an optional fix (what the user
should do about it) and the process exit code. Tracebacks are only shown with --debug.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; documented in docs/exit-codes.md."""

    OK = 0
    FAILED = 1  # the migration ran and a step failed; DIR is resumable
    USAGE = 2  # bad command line
    BAD_INPUT = 3  # invalid option value, filter file, state of DIR or of the target
    CONNECTION = 4  # cannot connect or authenticate to a server
    ENVIRONMENT = 5  # missing or unsuitable local tool (pg_dump, initdb, disk)
    INTERRUPTED = 6  # stopped by a signal (Ctrl-C, SIGTERM, pgferry stop); resumable
    INTERNAL = 70  # a bug in pgferry


class PgferryError(Exception):
    """Base class: a user-facing message, an optional fix, an exit code."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def one_line(self) -> str:
        """The message and the fix as a single line."""
        text = " ".join(self.message.split())
        if self.fix:
            text += f" (fix: {' '.join(self.fix.split())})"
        return text


class UsageError(PgferryError):
    exit_code = ExitCode.USAGE


class InputError(PgferryError):
    """Bad input: option values, filter files, DIR state, a target that is not empty."""

    exit_code = ExitCode.BAD_INPUT


class ConnectionFailed(PgferryError):
    exit_code = ExitCode.CONNECTION


class EnvironmentProblem(PgferryError):
    exit_code = ExitCode.ENVIRONMENT


class StepFailed(PgferryError):
    """A unit of work failed during a run; the state store has the details."""

    exit_code = ExitCode.FAILED


class Interrupted(PgferryError):
    exit_code = ExitCode.INTERRUPTED
