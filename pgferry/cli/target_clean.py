"""`pgferry target-clean`: empty the target database for a fresh start (asks first)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pgferry.admin import target_clean as tc
from pgferry.checks.report import Report
from pgferry.cli.common import (
    add_logging_flags,
    add_source,
    add_target,
    confirm,
    print_json,
    resolve_conn,
    resolve_dir,
    resolve_optional_conn,
)
from pgferry.cli.env import env_value
from pgferry.errors import InputError
from pgferry.pg.identity import refuse_same_database
from pgferry.state.store import Meta, StateStore
from pgferry.ui.admin import render_clean_plan
from pgferry.ui.console import make_console
from pgferry.ui.report import render_report

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "target-clean",
        help="drop every user object from the target database (asks first)",
        description="Drop every non-system schema (public is kept, emptied), every "
        "extension but plpgsql, large objects, publications, subscriptions, event "
        "triggers, user-defined casts, languages, foreign-data wrappers, servers and "
        "access methods, and pgferry's replication origins from the target database, "
        "except what --keep names. Shows exactly what will go and asks first. Refuses "
        "while pgferry sessions are connected to the database (--force to override). "
        "Exit code 1 when a drop failed or something is left. With --source (or "
        "PGCOPYDB_SOURCE_PGURI), refuses a target that is that source.",
    )
    add_target(p)
    add_source(p)
    p.add_argument(
        "--dir",
        metavar="DIR",
        help="also drop the replication origin the migration on DIR recorded",
    )
    p.add_argument(
        "--keep",
        action="append",
        nargs="+",
        default=[],
        metavar="NAME",
        help="a schema (kept with its content) or an extension (kept with what it needs) "
        "to keep; repeatable",
    )
    p.add_argument(
        "--origin",
        action="append",
        default=[],
        metavar="NAME",
        help="replication origin to drop; repeatable (origins are cluster-wide; default: pgferry)",
    )
    p.add_argument("--dry-run", action="store_true", help="only show what would go")
    p.add_argument("--yes", "-y", action="store_true", help="drop without asking")
    p.add_argument(
        "--force", action="store_true", help="run even while pgferry sessions are connected"
    )
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up on an object whose lock is not granted in time (default 10)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_logging_flags(p)
    p.set_defaults(handler=handle_target_clean)


def handle_target_clean(args: argparse.Namespace) -> int:
    target = resolve_conn(args, "target")
    source = resolve_optional_conn(args, "source")
    if source is not None:
        refuse_same_database(source, target)
    keep = sorted({name for group in args.keep for name in group})
    origins = set(args.origin or tc.DEFAULT_ORIGINS)
    recorded = _recorded_origin(args)
    if recorded:
        origins.add(recorded)
    console = make_console()
    with tc.connect(target) as conn:
        plan = tc.plan_clean(conn, keep, sorted(origins), server=target.short())
        if plan.pgferry_sessions and not args.force:
            shown = ", ".join(f"{pid} ({app})" for pid, app in plan.pgferry_sessions[:5])
            raise InputError(
                f"{len(plan.pgferry_sessions)} pgferry session(s) are connected to the target "
                f"database {plan.database}: {shown}: a migration is running",
                fix="stop it first (pgferry stop --dir DIR), or pass --force",
            )
        if not args.json:
            render_clean_plan(console, plan)
        if plan.empty or args.dry_run:
            if args.json:
                print_json({**plan.to_json(), "dry_run": args.dry_run, "results": []})
            return 0
        question = (
            f"Drop all of this from the database {plan.database} on {plan.server}? "
            "This cannot be undone."
        )
        if not confirm(question, yes=args.yes, refusal="not dropping anything"):
            if args.json:
                print_json({**plan.to_json(), "dry_run": False, "results": []})
            else:
                console.print("Nothing dropped.")
            return 0

        def progress(item: tc.Item) -> None:
            log.debug("dropping %s %s", item.kind, item.name)

        results = tc.execute_plan(conn, plan, lock_timeout=args.lock_timeout, progress=progress)
        after = tc.plan_clean(conn, keep, sorted(origins), server=target.short())
    report = _clean_report(plan, results, after)
    if args.json:
        print_json(
            {
                **plan.to_json(),
                "dry_run": False,
                "results": [r.to_json() for r in results],
                "left": [i.to_json() for i in after.items],
                **report.to_json(),
            }
        )
    else:
        render_report(report)
    return report.exit_code()


def _recorded_origin(args: argparse.Namespace) -> str | None:
    """The origin the migration in --dir recorded, when --dir (or PGCOPYDB_DIR) is given."""
    if not (args.dir or env_value("DIR")):
        return None
    try:
        store = StateStore.open_dir(resolve_dir(args), readonly=True)
    except InputError:
        return None
    try:
        return store.get_meta(Meta.CDC_ORIGIN)
    finally:
        store.close()


def _clean_report(plan: tc.CleanPlan, results: list[tc.ItemResult], after: tc.CleanPlan) -> Report:
    report = Report("Target clean")
    report.facts["target"] = f"{plan.server} (database {plan.database})"
    dropped = [r for r in results if r.outcome == tc.DropOutcome.DROPPED]
    report.ok("dropped", f"{len(dropped)} of {len(results)} item(s) dropped")
    for r in results:
        if r.outcome == tc.DropOutcome.FAILED:
            state = f" [{r.sqlstate}]" if r.sqlstate else ""
            fix = None
            if r.sqlstate == "55P03":
                fix = "a session holds a lock on it: end it, or raise --lock-timeout"
            elif r.sqlstate == "42501":
                fix = "connect as the owner or a superuser"
            report.fail(f"{r.item.kind}.{r.item.name}", f"not dropped: {r.error}{state}", fix)
    if after.items:
        shown = ", ".join(f"{i.kind} {i.name}" for i in after.items[:10])
        report.fail(
            "left",
            f"{len(after.items)} item(s) are still there: {shown}",
            fix="see the errors above; run pgferry target-clean again once they are fixed",
        )
    else:
        report.ok("left", "nothing left to drop: only what was kept remains")
    if after.unsupported:
        report.warn(
            "not_droppable",
            "pgferry does not know how to drop: " + ", ".join(after.unsupported[:10]),
            fix="drop them by hand",
        )
    return report
