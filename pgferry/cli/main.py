"""The `pgferry` command: parse, call one function, print, exit with a meaningful code."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from pgferry import __version__, events
from pgferry import log as pflog
from pgferry.errors import ExitCode, PgferryError

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our usage code, takes flags only as pgcopydb spells them
    (no abbreviations: `--sourc` would slip past the password hiding), and never echoes
    a password it could not place."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        from pgferry.pg.secrets import mask_text

        line = f"{self.prog}: error: {mask_text(message)} (fix: see {self.prog} --help)\n"
        if _BAD_VALUE.match(message):
            # Understood, but not a valid value: bad input, like --table-jobs 0.
            self.exit(int(ExitCode.BAD_INPUT), line)
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE), line)


# argparse's words for a flag whose value has the wrong type or is not one of its choices.
_BAD_VALUE = re.compile(r"argument \S+: invalid (choice|\S+ value):")


# Command modules, in the order their commands appear in --help. Each has register(sub).
COMMAND_MODULES = (
    "clone",
    "copy",
    "dump",
    "stream",
    "follow",
    "cutover",
    "snapshot",
    "ops_preflight",
    "ops_status",
    "ops_verify",
    "params",
    "replica_identity",
    "target_clean",
    "stop",
    "diagnose",
    "listing",
    "compare",
    "metrics",
    "misc",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(
        prog="pgferry",
        description="Move a live PostgreSQL database to another PostgreSQL server.",
    )
    parser.add_argument("--version", action="version", version=f"pgferry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"pgferry.cli.{name}").register(sub)
    return parser


def _level(args: argparse.Namespace) -> int:
    if getattr(args, "debug", False):
        return logging.DEBUG
    if getattr(args, "quiet", False):
        return logging.ERROR
    return logging.INFO


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        hide_passwords_from_ps(sys.argv[1:])
    import os

    os.umask(0o077)  # everything pgferry writes (DIR, dumps, CDC files, logs) is private
    parser = build_parser()
    args = parser.parse_args(argv)
    pflog.setup(_level(args))
    _thread_failures_in_one_line(getattr(args, "debug", False))
    handler: Handler = args.handler
    try:
        return handler(args)
    except PgferryError as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        logging.getLogger("pgferry").error("%s", exc.one_line())
        events.emit("error", exc.one_line(), command=args.command, exit_code=int(exc.exit_code))
        return int(exc.exit_code)
    except KeyboardInterrupt:
        logging.getLogger("pgferry").error("interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader of our output went away (pgferry list schema | head): nothing to say.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        from pgferry.errors import from_os_error
        from pgferry.pg.conninfo import scrub

        local = from_os_error(exc)
        if local is not None:
            logging.getLogger("pgferry").error("%s", local.one_line())
            return int(local.exit_code)

        logging.getLogger("pgferry").error(
            "internal error: %s (run with --debug for the traceback)",
            scrub(" ".join(str(exc).split()) or type(exc).__name__),
        )
        return int(ExitCode.INTERNAL)
    finally:
        events.flush()


def _thread_failures_in_one_line(debug: bool) -> None:
    """A worker thread's failure reaches the user through whoever waits on the thread;
    its traceback (and one from a log file that can no longer be written, on a full
    disk) is shown only with --debug, like every other traceback."""
    import threading

    logging.raiseExceptions = debug
    if debug:
        return

    def one_line(hook: threading.ExceptHookArgs) -> None:
        from pgferry.pg.conninfo import scrub

        name = hook.thread.name if hook.thread is not None else "a thread"
        logging.getLogger("pgferry").warning(
            "%s stopped: %s (run with --debug for the traceback)",
            name,
            scrub(" ".join(str(hook.exc_value).split()) or hook.exc_type.__name__),
        )

    threading.excepthook = one_line


def run() -> None:
    sys.exit(main())


def hide_passwords_from_ps(args: list[str]) -> None:
    """Move passwords from --source/--target into the environment.

    Other users see a process's argv (ps, /proc); a password typed in a URI would stay
    there for hours. The password travels on in PGFERRY_<ROLE>_PASSWORD instead, so that
    sys.argv (which --detach re-runs) holds none either. The entry point has already
    overwritten the command line `ps` shows; where the kernel did not allow that, we
    re-run ourselves with the clean arguments.
    """
    import os

    from pgferry.pg.conninfo import move_passwords
    from pgferry.pg.secrets import hide_own_argv

    if os.environ.get("PGFERRY_ARGV_CLEAN") == "1":
        return
    env = dict(os.environ)
    new_args = move_passwords(list(args), env)
    if new_args == list(args):
        return
    if hide_own_argv():
        os.environ.update(env)
        sys.argv[1:] = new_args
        return
    env["PGFERRY_ARGV_CLEAN"] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "pgferry", *new_args], env)
