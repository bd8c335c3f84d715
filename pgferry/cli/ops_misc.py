"""`pgferry params`, `fix-replica-identity`, `target-clean`, `stop` and `diagnose`.

Each prints a human report (colour on a terminal, plain otherwise) or, with --json, one
JSON document on stdout; questions go to stderr. Exit codes: 0 fine, 1 a FAIL (see each
command's help), 2 bad usage (including a change refused without --yes off a terminal),
3 bad input, 4 connection failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pgferry.cli.common import (
    add_dir,
    add_filters,
    add_logging_flags,
    add_source,
    add_target,
    resolve_conn,
    resolve_dir,
    resolve_filters,
    resolve_optional_conn,
)
from pgferry.cli.env import env_value
from pgferry.errors import InputError, UsageError
from pgferry.ops import diagnose as diag_ops
from pgferry.ops import params as params_ops
from pgferry.ops import replica_identity as ri
from pgferry.ops import stop as stop_ops
from pgferry.ops import target_clean as tc
from pgferry.ops.report import Report
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.identity import refuse_same_database
from pgferry.pg.sessions import dir_tag
from pgferry.state.store import Meta
from pgferry.ui.console import make_console

log = logging.getLogger(__name__)


def register(sub: Any) -> None:

    p = sub.add_parser(
        "params",
        help="compare the source's and the target's settings",
        description="Compare pg_settings of the source and the target, grouped, with units "
        "normalised and what each change needs (session, reload, restart). Exit code 1 "
        "(FAIL) when the encoding, LC_COLLATE, LC_CTYPE, collation provider differ, or a "
        "collation the source's columns use is missing on the target; other differences "
        "that change application behaviour (TimeZone, DateStyle, search_path, "
        "preload libraries, major version, ...) are WARN, exit code 0.",
    )
    add_source(p)
    add_target(p)
    add_filters(p)
    p.add_argument("--all", action="store_true", help="every setting, not only the relevant ones")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_logging_flags(p)
    p.set_defaults(handler=handle_params)

    p = sub.add_parser(
        "fix-replica-identity",
        help="set a replica identity on the source tables CDC could not update/delete",
        description="List the tables in scope whose UPDATEs and DELETEs CDC cannot apply "
        "(no primary key, REPLICA IDENTITY NOTHING, or an identity index that is gone), "
        "propose USING INDEX on a suitable unique index, else FULL, and apply the "
        "statements after confirmation, each in its own transaction. Exit code 1 when a "
        "statement failed.",
    )
    add_source(p)
    add_filters(p)
    p.add_argument("--dry-run", action="store_true", help="only show the statements")
    p.add_argument("--yes", "-y", action="store_true", help="apply without asking")
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="give up on a table whose lock is not granted in time (default 5)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_logging_flags(p)
    p.set_defaults(handler=handle_fix_replica_identity)

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

    p = sub.add_parser(
        "diagnose",
        help="why is the copy slow or stuck? (locks, waits, progress, autovacuum)",
        description="Sample pgferry's sessions on the target (and the source when given) "
        "twice, --seconds apart: lock waits and their blockers, wait events, bytes "
        "copied per second, autovacuum on the same tables; on the source, the COPY TO "
        "sessions, transactions holding back xmin and the slots' retained WAL. Exit code "
        "1 when a session made no progress and was blocked the whole window.",
    )
    add_target(p)
    add_source(p)
    p.add_argument(
        "--dir",
        metavar="DIR",
        help="only the sessions of the migration on DIR (default: every pgferry session)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        metavar="N",
        help="sampling window in seconds (default 5)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_logging_flags(p)
    p.set_defaults(handler=handle_diagnose)


# -- helpers -------------------------------------------------------------------------------


def _console() -> Console:
    """Colour on a terminal, plain 140-column text otherwise (like Report.render)."""
    return make_console()


def _print_json(payload: dict[str, Any]) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def confirm(question: str, *, yes: bool, refusal: str) -> bool:
    """True when the user agrees (or --yes); refuse outright when nobody can answer."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            f"{refusal}: stdin is not a terminal, so nobody can confirm",
            fix="pass --yes to confirm non-interactively (or --dry-run to only look)",
        )
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


# -- params --------------------------------------------------------------------------------


def handle_params(args: argparse.Namespace) -> int:
    source, target = resolve_conn(args, "source"), resolve_conn(args, "target")
    result = params_ops.compare_params(source, target, resolve_filters(args))
    if args.json:
        _print_json(result.to_json(args.all))
    else:
        params_ops.render(_console(), result, show_all=args.all)
    return result.exit_code()


# -- fix-replica-identity ------------------------------------------------------------------


def handle_fix_replica_identity(args: argparse.Namespace) -> int:
    source = resolve_conn(args, "source")
    if args.lock_timeout <= 0:
        raise InputError("--lock-timeout must be positive", fix="give seconds, e.g. 5")
    plan = ri.plan_fixes(source, resolve_filters(args))
    payload: dict[str, Any] = {
        "server": plan.server,
        "tables_checked": plan.checked,
        "grants_needed": plan.grants_needed(),
        "fixes": [_fix_json(f) for f in plan.fixes],
        "dry_run": args.dry_run,
        "applied": False,
        "results": [],
    }
    console = _console()
    if not args.json:
        _render_fix_plan(console, plan)
    if not plan.fixes or args.dry_run:
        if args.json:
            _print_json(payload)
        return 0
    question = f"Apply these {len(plan.fixes)} statement(s) on the source {plan.server}?"
    if not confirm(question, yes=args.yes, refusal="not changing the source's tables"):
        if args.json:
            _print_json(payload)
        else:
            console.print("Nothing changed.")
        return 0
    results = ri.apply_fixes(source, plan.fixes, lock_timeout=args.lock_timeout, role=plan.role)
    report = Report("Replica identity changes")
    report.facts["source"] = plan.server
    for r in results:
        name = str(r.fix.table.qualname)
        if r.outcome == ri.Outcome.APPLIED:
            report.ok(name, f"REPLICA IDENTITY {r.fix.proposal}")
        else:
            state = f" [{r.sqlstate}]" if r.sqlstate else ""
            report.fail(name, f"REPLICA IDENTITY {r.fix.proposal}: {r.error}{state}", r.hint)
    if args.json:
        payload["applied"] = True
        payload["results"] = [
            {
                "table": str(r.fix.table.qualname),
                "outcome": str(r.outcome),
                "error": r.error,
                "sqlstate": r.sqlstate,
                "hint": r.hint,
            }
            for r in results
        ]
        payload.update(report.to_json())
        _print_json(payload)
    else:
        report.render()
    return report.exit_code()


def _fix_json(f: ri.Fix) -> dict[str, Any]:
    return {
        "table": str(f.table.qualname),
        "schema": f.table.schema,
        "name": f.table.name,
        "problem": str(f.problem),
        "proposal": str(f.identity),
        "index": f.index,
        "statement": f.statement.as_string(),
        "partition_of": [str(a) for a in f.table.ancestors],
        "owner": f.table.owner,
        "can_alter": f.table.can_alter,
        "notes": list(f.notes) + ([ri.FULL_COST] if f.identity == ri.Identity.FULL else []),
    }


def _render_fix_plan(console: Console, plan: ri.FixPlan) -> None:
    if not plan.fixes:
        console.print(
            f"All {plan.checked} table(s) in scope on {plan.server} have a replica identity "
            "CDC can use."
        )
        return
    table = Table(
        title=f"{len(plan.fixes)} of {plan.checked} table(s) CDC could not update/delete",
        title_justify="left",
    )
    table.add_column("Table", overflow="fold")
    table.add_column("Problem", overflow="fold")
    table.add_column("Proposal", overflow="fold")
    table.add_column("Notes", overflow="fold")
    for f in plan.fixes:
        style = "yellow" if f.identity == ri.Identity.FULL else "green"
        table.add_row(
            escape(str(f.table.qualname)),
            str(f.problem),
            f"[{style}]{escape(f.proposal)}[/]",
            escape("\n".join(f.notes)),
        )
    console.print(table)
    if any(f.identity == ri.Identity.FULL for f in plan.fixes):
        console.print(f"[yellow]{escape(ri.FULL_COST)}[/]")
    console.print("Statements:")
    for f in plan.fixes:
        console.print(f.statement.as_string() + ";", markup=False, highlight=False)
    grants = plan.grants_needed()
    if grants:
        console.print(
            f"[yellow]{plan.role} does not own some of these tables[/]: only their owner (or a "
            "superuser) can change them. Grant the owners' roles first, revoke them after:"
        )
        for line in grants:
            console.print(f"  {line};", markup=False, highlight=False)


# -- target-clean --------------------------------------------------------------------------


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
    console = _console()
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
            _render_clean_plan(console, plan)
        if plan.empty or args.dry_run:
            if args.json:
                _print_json({**plan.to_json(), "dry_run": args.dry_run, "results": []})
            return 0
        question = (
            f"Drop all of this from the database {plan.database} on {plan.server}? "
            "This cannot be undone."
        )
        if not confirm(question, yes=args.yes, refusal="not dropping anything"):
            if args.json:
                _print_json({**plan.to_json(), "dry_run": False, "results": []})
            else:
                console.print("Nothing dropped.")
            return 0

        def progress(item: tc.Item) -> None:
            log.debug("dropping %s %s", item.kind, item.name)

        results = tc.execute_plan(conn, plan, lock_timeout=args.lock_timeout, progress=progress)
        after = tc.plan_clean(conn, keep, sorted(origins), server=target.short())
    report = _clean_report(plan, results, after)
    if args.json:
        _print_json(
            {
                **plan.to_json(),
                "dry_run": False,
                "results": [r.to_json() for r in results],
                "left": [i.to_json() for i in after.items],
                **report.to_json(),
            }
        )
    else:
        report.render()
    return report.exit_code()


def _recorded_origin(args: argparse.Namespace) -> str | None:
    """The origin the migration in --dir recorded, when --dir (or PGCOPYDB_DIR) is given."""
    if not (args.dir or env_value("DIR")):
        return None
    from pgferry.state.store import StateStore

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
    dropped = [r for r in results if r.outcome == tc.Outcome.DROPPED]
    report.ok("dropped", f"{len(dropped)} of {len(results)} item(s) dropped")
    for r in results:
        if r.outcome == tc.Outcome.FAILED:
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


def _render_clean_plan(console: Console, plan: tc.CleanPlan) -> None:
    if plan.empty:
        console.print(f"Nothing to drop: the database {plan.database} on {plan.server} is clean.")
    else:
        table = Table(
            title=f"What will be dropped from {plan.database} on {plan.server}",
            title_justify="left",
        )
        table.add_column("Kind", no_wrap=True)
        table.add_column("Name", overflow="fold")
        table.add_column("Details", overflow="fold")
        for item in plan.items:
            table.add_row(str(item.kind), escape(item.name), escape(item.detail))
        console.print(table)
    if plan.collateral:
        console.print(
            f"[bold yellow]Also dropped from what is kept[/] (they depend on what goes): "
            f"{len(plan.collateral)}"
        )
        for line in plan.collateral:
            console.print(f"  - {line}", markup=False)
    if plan.kept:
        console.print("Kept:")
        for name, why in plan.kept:
            console.print(f"  - {name}: {why}", markup=False)
    if plan.unsupported:
        console.print("Left in place (pgferry cannot drop them): " + ", ".join(plan.unsupported))
    if plan.other_origins:
        console.print(
            "Other replication origins on this cluster (not dropped; --origin NAME drops one): "
            + ", ".join(plan.other_origins),
            markup=False,
        )
    if plan.other_sessions:
        console.print(
            f"[yellow]{plan.other_sessions} other session(s) are connected to "
            f"{plan.database}[/]: a drop waits at most --lock-timeout for their locks."
        )


# -- stop ----------------------------------------------------------------------------------


def handle_stop(args: argparse.Namespace) -> int:
    if args.grace < 0:
        raise InputError("--grace must be 0 or more seconds", fix="give seconds, e.g. 30")
    path = resolve_dir(args)
    result = stop_ops.stop_migration(path, grace=args.grace)
    if args.json:
        _print_json(result.to_json())
        return result.exit_code()
    console = _console()
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


# -- diagnose ------------------------------------------------------------------------------


def handle_diagnose(args: argparse.Namespace) -> int:
    if args.seconds < 0:
        raise InputError("--seconds must be 0 or more", fix="give seconds, e.g. 5")
    target = resolve_conn(args, "target")
    source: ConnInfo | None = None
    if args.source or env_value("SOURCE_PGURI"):
        source = resolve_conn(args, "source")
    tag = None
    running: dict[str, int] = {}
    if args.dir or env_value("DIR"):
        path = resolve_dir(args)
        tag = dir_tag(path)
        running = _running_units(path)
    result = diag_ops.diagnose(target, source, tag=tag, seconds=args.seconds, store_running=running)
    if args.json:
        _print_json(result.to_json())
    else:
        diag_ops.render(_console(), result)
    return result.exit_code()


def _running_units(path: Any) -> dict[str, int]:
    from pgferry.state.store import StateStore

    try:
        store = StateStore.open_dir(path, readonly=True)
    except InputError:
        return {}
    try:
        return {kind: n for (kind, status), n in store.counts().items() if status == "running"}
    finally:
        store.close()
