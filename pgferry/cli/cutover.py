"""`pgferry cutover`: end a live migration in one command (see cdc.cutover)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pgferry.cli.common import (
    add_dir,
    add_logging_flags,
    add_notify_flags,
    add_source,
    add_target,
    resolve_conn,
    resolve_dir,
    start_notify,
)
from pgferry.errors import InputError, UsageError
from pgferry.text import parse_size


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cutover",
        help="end a live migration: check, fence, wait, apply, verify, in one command",
        description="With clone --follow (or follow) running on DIR: check that apply is "
        "caught up, optionally fence the source, wait until nothing writes to it, set "
        "the end position there, wait for apply to reach it (the sequences are synced "
        "then), verify the target, and say what to do next. Exits non-zero at the step "
        "that failed; everything stays resumable and the command can run again.",
    )
    add_source(p)
    add_target(p)
    add_dir(p)
    p.add_argument(
        "--max-lag",
        metavar="SIZE",
        default="64MB",
        help="refuse to start while apply is further behind the source (default 64MB)",
    )
    p.add_argument(
        "--fence",
        action="store_true",
        help="make the source database read-only for new sessions first "
        "(ALTER DATABASE ... SET default_transaction_read_only), shown and asked before",
    )
    p.add_argument(
        "--app-role",
        action="append",
        default=[],
        metavar="ROLE",
        help="with --fence: end this role's open sessions on the source (repeatable)",
    )
    p.add_argument(
        "--unfence", action="store_true", help="undo --fence on the source, and nothing else"
    )
    p.add_argument(
        "--quiet-seconds",
        type=float,
        default=3.0,
        metavar="S",
        help="how long the source must go without a write transaction (default 3)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="how long to wait for the source to be quiet, and for apply (default 600)",
    )
    p.add_argument("--full", action="store_true", help="verify every row (default: quick)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before fencing")
    add_notify_flags(p)
    add_logging_flags(p)
    p.set_defaults(handler=handle_cutover)


def handle_cutover(args: argparse.Namespace) -> int:
    from pgferry.cdc.cutover import CutoverOptions, run_cutover, run_unfence
    from pgferry.ui.report import render_report

    source = resolve_conn(args, "source")
    if args.unfence:
        was = run_unfence(source)
        print(
            f"the source database {source.dbname} accepts writes again"
            + ("" if was else " (it was not fenced)")
        )
        return 0
    if args.app_role and not args.fence:
        raise UsageError("--app-role goes with --fence", fix="add --fence, or drop --app-role")
    try:
        max_lag = parse_size(args.max_lag)
    except ValueError as exc:
        raise InputError(f"--max-lag: {exc}", fix="give a size such as 16MB") from None
    if args.quiet_seconds < 0 or args.timeout <= 0:
        raise InputError(
            "--quiet-seconds must be 0 or more and --timeout more than 0",
            fix="give seconds, e.g. --quiet-seconds 3 --timeout 600",
        )
    workdir = resolve_dir(args)
    start_notify(args, workdir)
    result = run_cutover(
        CutoverOptions(
            source=source,
            target=resolve_conn(args, "target"),
            dir=workdir,
            max_lag=max_lag,
            fence=args.fence,
            app_roles=tuple(args.app_role),
            quiet_seconds=args.quiet_seconds,
            timeout=args.timeout,
            full=args.full,
        ),
        confirm=lambda question: _confirm(question, args.yes),
    )
    if result.report is not None:
        render_report(result.report)
    print("cutover done:")
    for line in result.steps:
        print(f"  {line}")
    print(
        "next: switch the application to the target; then pgferry cleanup --dir "
        f"{workdir} drops the slot, the publication and the origin"
        + (
            "; the source stays read-only (pgferry cutover --unfence undoes it)"
            if args.fence
            else ""
        )
    )
    return 0


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{question} needs a confirmation", fix="run with --yes")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
