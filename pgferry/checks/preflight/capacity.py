"""Room on each server for what pgferry opens: sessions for the workers and their helpers
on both sides, and parallel workers for the target's index builds.

Running short of either does not stop a migration, it stalls or slows it: WARN lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from pgferry.catalog.plan import MAX_PARALLEL_MAINTENANCE
from pgferry.checks.preflight.session import guarded_check
from pgferry.checks.report import Check, Report, Verdict
from pgferry.pg.activity import CONNECTION_COUNTS_SQL

# Sessions pgferry opens besides the workers (catalog, snapshot, large objects, apply).
EXTRA_SOURCE_SESSIONS = 3
EXTRA_TARGET_SESSIONS = 3


def judge_connections(side: str, available: int, needed: int, detail: str) -> Check:
    name = f"{side}.connections"
    if available < needed:
        return Check(
            name,
            Verdict.WARN,
            f"about {available} more sessions can open ({detail}); pgferry opens up to {needed}",
            "raise max_connections (restart) or the role's CONNECTION LIMIT, close idle "
            "sessions, or lower --table-jobs/--index-jobs",
        )
    return Check(name, Verdict.PASS, f"{available} sessions can open, pgferry needs up to {needed}")


def judge_parallel_workers(
    index_jobs: int, max_worker_processes: int, max_parallel_workers: int
) -> Check:
    """pgferry gives the last big index builds up to MAX_PARALLEL_MAINTENANCE workers each,
    taken from the target's max_parallel_workers (within max_worker_processes)."""
    name = "target.parallel_workers"
    wanted = min(max(index_jobs - 1, 0), MAX_PARALLEL_MAINTENANCE)
    message = (
        f"max_worker_processes = {max_worker_processes}, max_parallel_workers = "
        f"{max_parallel_workers}, --index-jobs {index_jobs} (pgferry sets "
        "max_parallel_maintenance_workers per index build)"
    )
    if max_parallel_workers < wanted or max_worker_processes < wanted:
        return Check(
            name,
            Verdict.WARN,
            f"{message}: the last index builds can use up to {wanted} parallel workers, "
            "the target gives fewer",
            f"raise max_parallel_workers and max_worker_processes (restart) to at least "
            f"{wanted + 2} for the migration, or lower --index-jobs",
        )
    return Check(name, Verdict.PASS, message)


def check_connections(
    report: Report,
    conn: psycopg.Connection[Any],
    side: str,
    settings: Mapping[str, str],
    needed: int,
    superuser: bool,
) -> None:
    """Whether the server has enough free connection slots for pgferry's sessions."""
    with guarded_check(report, f"{side}.connections"):
        used, mine, in_db, role_limit, db_limit = conn.execute(CONNECTION_COUNTS_SQL).fetchone()  # type: ignore[misc]
        reserved = 0 if superuser else int(settings.get("superuser_reserved_connections", 0))
        reserved += 0 if superuser else int(settings.get("reserved_connections", 0))
        limits = [(int(settings["max_connections"]) - reserved - used, "max_connections")]
        if role_limit >= 0:
            limits.append((role_limit - mine, "the role's connection limit"))
        if db_limit >= 0:
            limits.append((db_limit - in_db, "the database's connection limit"))
        available, what = min(limits)
        report.checks.append(judge_connections(side, available, needed, f"limited by {what}"))
