"""`pgferry fix-replica-identity`: give the tables CDC cannot update a replica identity."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pgferry.admin import replica_identity as ri
from pgferry.checks.report import Report
from pgferry.cli.common import (
    add_filters,
    add_logging_flags,
    add_source,
    confirm,
    print_json,
    resolve_conn,
    resolve_filters,
)
from pgferry.errors import InputError
from pgferry.ui.admin import render_fix_plan
from pgferry.ui.console import make_console
from pgferry.ui.report import render_report

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
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
    console = make_console()
    if not args.json:
        render_fix_plan(console, plan)
    if not plan.fixes or args.dry_run:
        if args.json:
            print_json(payload)
        return 0
    question = f"Apply these {len(plan.fixes)} statement(s) on the source {plan.server}?"
    if not confirm(question, yes=args.yes, refusal="not changing the source's tables"):
        if args.json:
            print_json(payload)
        else:
            console.print("Nothing changed.")
        return 0
    results = ri.apply_fixes(source, plan.fixes, lock_timeout=args.lock_timeout, role=plan.role)
    report = Report("Replica identity changes")
    report.facts["source"] = plan.server
    for r in results:
        name = str(r.fix.table.qualname)
        if r.outcome == ri.FixOutcome.APPLIED:
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
        print_json(payload)
    else:
        render_report(report)
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
