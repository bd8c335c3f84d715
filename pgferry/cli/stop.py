"""`pgferry stop`: halt the migration running on DIR, leaving it resumable."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pgferry.admin import stop as stop_ops
from pgferry.cli.common import (
    add_dir,
    add_logging_flags,
    print_json,
    resolve_dir,
)
from pgferry.errors import InputError
from pgferry.ui.console import make_console

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "stop",
        help="stop the migration running on DIR (resumable)",
        description="Send SIGTERM to the pgferry holding DIR, wait up to --grace seconds "
        "for it to stop its workers and exit, then SIGKILL it and its children. DIR "
        "stays resumable. Exit code 0 when it stopped or nothing was running, 1 when "
        "processes survived.",
    )
    add_dir(p)
    p.add_argument(
        "--grace",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait after SIGTERM before SIGKILL (default 60)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_logging_flags(p)
    p.set_defaults(handler=handle_stop)


def handle_stop(args: argparse.Namespace) -> int:
    if args.grace < 0:
        raise InputError("--grace must be 0 or more seconds", fix="give seconds, e.g. 30")
    path = resolve_dir(args)
    result = stop_ops.stop_migration(path, grace=args.grace)
    if args.json:
        print_json(result.to_json())
        return result.exit_code()
    console = make_console()
    if result.outcome == stop_ops.StopOutcome.NOTHING:
        console.print(f"Nothing to stop: no pgferry is running on {result.dir}.")
        return 0
    if result.outcome == stop_ops.StopOutcome.STOPPED:
        line = (
            f"[green]Stopped[/] pgferry (pid {result.pid}) on {result.dir}: it exited "
            f"{result.seconds:.1f}s after SIGTERM"
        )
    elif result.outcome == stop_ops.StopOutcome.KILLED:
        line = (
            f"[yellow]Killed[/] pgferry (pid {result.pid}) on {result.dir}: still running "
            f"{args.grace:g}s after SIGTERM, so SIGKILL went to {len(result.killed)} process(es)"
        )
    else:
        line = (
            f"[bold red]Still running[/]: pid(s) {', '.join(map(str, result.survivors))} "
            "survived SIGKILL"
        )
    console.print(line)
    if result.run_status:
        console.print(f"Last run: {result.command} ({result.run_status})", markup=False)
    for kind, statuses in sorted(result.units.items()):
        parts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        console.print(f"  {kind}: {parts}", markup=False)
    for step in result.next_steps():
        console.print(f"- {step}", markup=False)
    return result.exit_code()
