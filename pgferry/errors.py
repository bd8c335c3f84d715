"""One exception hierarchy for everything pgferry reports to its user.

Each error carries the one-line message the CLI prints, an optional fix (what the user
should do about it) and the process exit code. Tracebacks are only shown with --debug.
"""

from __future__ import annotations

import errno
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


class TableRewritten(StepFailed):
    """A table was truncated or rewritten on the source after the copy's snapshot: its
    copy must be taken again under a newer snapshot."""


class Interrupted(PgferryError):
    exit_code = ExitCode.INTERRUPTED


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def from_os_error(exc: BaseException) -> PgferryError | None:
    """A local file system failure (disk full, read-only, no permission) as one line that
    names the fix; None for anything else, which stays an internal error.

    SQLite (the state store) reports the same conditions in words rather than errno.
    """
    import sqlite3

    where = f": {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
    code = exc.errno if isinstance(exc, OSError) else None
    text = str(exc).lower() if isinstance(exc, sqlite3.OperationalError) else ""
    if code in _NO_SPACE or "disk is full" in text:
        return EnvironmentProblem(
            f"no space left on the device{where}",
            fix="free space on the work directory's file system (or move it), then run "
            "the same command again (with --resume once it had started)",
        )
    if code == errno.EROFS or "readonly database" in text:
        return InputError(
            f"read-only file system{where}",
            fix="choose a --dir on a writable file system",
        )
    if code in (errno.EACCES, errno.EPERM):
        return InputError(f"permission denied{where}", fix="choose a --dir this user can write to")
    return None
