"""The target side: its version, that it takes writes, the privileges to create the schema
and (for --follow) to apply changes, our replication origin, leftovers of earlier tools,
and that it is empty.

`target_checks` runs them in report order, then, when the source could be read, the
checks in `compat` that compare the two.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from pgferry.catalog import providers
from pgferry.catalog.facts import current_role, role_names, schema_names
from pgferry.catalog.filters import Filters, QualifiedName, quote_ident
from pgferry.catalog.inscope import table_in_scope
from pgferry.catalog.inspect import FUNCTION_RIGHTS_SQL
from pgferry.catalog.target import user_objects
from pgferry.checks.preflight.capacity import (
    EXTRA_TARGET_SESSIONS,
    check_connections,
    judge_parallel_workers,
)
from pgferry.checks.preflight.compat import cross_checks
from pgferry.checks.preflight.facts import LISTED, PreflightOptions, SourceFacts
from pgferry.checks.preflight.scope import scoped_tables
from pgferry.checks.preflight.session import fetch_one, guarded_check
from pgferry.checks.report import Check, Report, Verdict
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.replication import ORIGIN_FUNCTIONS, list_origins
from pgferry.pg.settings import read_settings, reset_value, set_settings
from pgferry.text import listed

_LEFTOVER_SCHEMAS = ("pgferry", "pgcopydb")

_TARGET_SETTINGS = (
    "server_version",
    "server_version_num",
    "max_connections",
    "superuser_reserved_connections",
    "reserved_connections",
    "max_worker_processes",
    "max_parallel_workers",
)


# What a move to an older major cannot promise (README, "Across major versions").
DOWNGRADE_LIMITS = (
    "pg_dump's output is made for servers of its own major or newer: settings and syntax "
    "the older server lacks fail the restore (pg_dump 17 sets transaction_timeout, for "
    "one), and so do objects using features it lacks"
)


def judge_target_version(
    source_major: int | None,
    target_major: int,
    target_version: str,
    *,
    allow_downgrade: bool = False,
) -> Check:
    """A target older than the source is refused, unless --allow-downgrade."""
    name = "target.version"
    if source_major is None:
        return Check(name, Verdict.PASS, f"PostgreSQL {target_version}")
    if target_major < source_major:
        older = f"PostgreSQL {target_version} is older than the source ({source_major})"
        if allow_downgrade:
            return Check(
                name,
                Verdict.WARN,
                f"{older}; --allow-downgrade: {DOWNGRADE_LIMITS}",
                "a failed restore names the object; exclude it with a filter file or "
                "--ignore-restore-errors N, or migrate to a newer major",
            )
        return Check(
            name,
            Verdict.FAIL,
            f"{older}: {DOWNGRADE_LIMITS}",
            f"migrate to PostgreSQL {source_major} or newer, or accept the limits with "
            "--allow-downgrade",
        )
    return Check(name, Verdict.PASS, f"PostgreSQL {target_version} (source {source_major})")


def _in_scope(
    rows: list[tuple[str, str, str | None, str | None]], filters: Filters
) -> list[tuple[str, str, str | None, str | None]]:
    """The rows of objects the filters keep: by schema, and relations by name too."""
    kept = []
    for row in rows:
        schema, rel = row[2], row[3]
        if schema is not None:
            if schema in filters.exclude_schema or (
                filters.include_only_schema and schema not in filters.include_only_schema
            ):
                continue
            if rel is not None and not table_in_scope(filters, QualifiedName(schema, rel)):
                continue
        kept.append(row)
    return kept


def judge_roles(
    in_use: list[tuple[str, str, str | None, str | None]],
    present: frozenset[str],
    *,
    no_owner: bool,
    no_acl: bool,
    create_roles: bool = False,
) -> Check:
    """The roles the restore names (owners unless --no-owner, grantees unless --no-acl)
    must exist on the target: the pre-data restore stops at the first one that does not."""
    name = "target.roles"
    needed: dict[str, dict[str, int]] = {}
    for role, how, _schema, _rel in in_use:
        if (how == "owner" and no_owner) or (how == "grantee" and no_acl):
            continue
        needed.setdefault(role, {}).setdefault(how, 0)
        needed[role][how] += 1
    missing = sorted(r for r in needed if r not in present)
    if not missing:
        return Check(name, Verdict.PASS, f"the {len(needed)} role(s) the restore names exist")
    if create_roles:
        return Check(
            name,
            Verdict.PASS,
            f"{len(missing)} role(s) the restore names are missing on the target; --roles "
            f"creates them first: {listed(missing, LISTED)}",
        )
    shown = [
        f"{quote_ident(r)} ("
        + ", ".join(f"{'owns' if how == 'owner' else 'granted on'} {n}"
                    for how, n in sorted(needed[r].items(), key=lambda kv: kv[0] != "owner"))
        + ")"
        for r in missing
    ]  # fmt: skip
    return Check(
        name,
        Verdict.FAIL,
        f"{len(missing)} role(s) own or are granted objects the clone creates but do not "
        f"exist on the target: {listed(shown, LISTED)}",
        "create them on the target first (roles are the cluster's: pg_dumpall --roles-only "
        "on the source, then psql on the target, or CREATE ROLE), or clone with --no-owner "
        "(owners) and --no-acl (privileges)",
        {"missing_roles": missing},
    )


def judge_target_empty(
    objects: list[str], *, drop_if_exists: bool, resume: bool, dbname: str
) -> Check:
    name = "target.empty"
    if not objects:
        return Check(name, Verdict.PASS, f"target database {dbname} holds no user objects")
    shown = listed(objects, LISTED)
    if resume:
        return Check(
            name, Verdict.PASS, f"resuming: the target holds {len(objects)} objects ({shown})"
        )
    if drop_if_exists:
        return Check(
            name,
            Verdict.WARN,
            f"target database {dbname} is not empty: --drop-if-exists drops and recreates "
            f"the objects the source defines: {shown}",
            "make sure this is the right target database",
        )
    return Check(
        name,
        Verdict.FAIL,
        f"target database {dbname} is not empty: {shown}",
        "use an empty database, add --drop-if-exists to replace what the source defines, or "
        "empty it with pgferry target-clean",
        {"objects": objects},
    )


def target_checks(
    report: Report,
    info: ConnInfo,
    conn: psycopg.Connection[Any],
    src: SourceFacts | None,
    filters: Filters,
    opts: PreflightOptions,
) -> None:
    """Every target check; the ones comparing with the source need `src`."""
    settings = read_settings(conn, _TARGET_SETTINGS)
    major = int(settings["server_version_num"]) // 10000
    report.checks.append(
        judge_target_version(
            src.major if src else None,
            major,
            settings["server_version"],
            allow_downgrade=opts.allow_downgrade,
        )
    )
    with guarded_check(report, "target.provider"):
        report.facts["target provider"] = providers.describe(providers.detect_provider(conn))
    if src is not None and src.roles_in_use is not None:
        with guarded_check(report, "target.roles"):
            in_use = _in_scope(src.roles_in_use, filters)
            present = role_names(conn, {r for r, _, _, _ in in_use})
            report.checks.append(
                judge_roles(
                    in_use,
                    present,
                    no_owner=opts.no_owner,
                    no_acl=opts.no_acl,
                    create_roles=opts.create_roles,
                )
            )
    user, superuser = current_role(conn)
    with guarded_check(report, "target.writable"):
        in_recovery = fetch_one(conn, "SELECT pg_catalog.pg_is_in_recovery()")
        read_only = reset_value(conn, "default_transaction_read_only")
        if in_recovery:
            report.fail(
                "target.writable", "the target is a standby (read-only)", "connect to the primary"
            )
        elif read_only == "on":
            report.fail(
                "target.writable",
                "default_transaction_read_only is on for this role or database",
                sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = off;")
                .format(sql.Identifier(info.dbname))
                .as_string(conn),
            )
        else:
            report.ok("target.writable", "the target accepts writes")
    _check_target_privileges(report, conn, info, user, superuser, src, filters)
    if opts.follow:
        _check_cdc_privileges(report, conn, user, superuser)
    with guarded_check(report, "target.origin"):
        _judge_origin(report, opts, opts.origin in list_origins(conn))
    with guarded_check(report, "target.leftover_schema"):
        found = sorted(schema_names(conn, _LEFTOVER_SCHEMAS))
        if found and not opts.resume:
            report.warn(
                "target.leftover_schema",
                f"schema(s) left by an earlier migration tool: {', '.join(found)}",
                "; ".join(
                    sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(s)).as_string(conn)
                    for s in found
                )
                + "; (after checking that nothing uses them)",
            )
    with guarded_check(report, "target.empty"):
        report.checks.append(
            judge_target_empty(
                user_objects(conn, extensions=False),
                drop_if_exists=opts.drop_if_exists,
                resume=opts.resume,
                dbname=info.dbname,
            )
        )
    check_connections(
        report,
        conn,
        "target",
        settings,
        opts.table_jobs + opts.index_jobs + EXTRA_TARGET_SESSIONS,
        superuser,
    )
    report.checks.append(
        judge_parallel_workers(
            opts.index_jobs,
            int(settings["max_worker_processes"]),
            int(settings["max_parallel_workers"]),
        )
    )
    if src is not None:
        cross_checks(report, conn, major, superuser, src, filters)


def _judge_origin(report: Report, opts: PreflightOptions, exists: bool) -> None:
    name = "target.origin"
    fix = (
        f"pgferry cleanup --target ... --origin {opts.origin} (if it is a leftover), "
        "or use --origin"
    )
    if not exists:
        if opts.follow and opts.resume:
            report.warn(
                name,
                f"replication origin {opts.origin} does not exist: a --follow resume needs it "
                "(it records what was applied)",
                "if it was dropped, start over: pgferry cleanup, empty the target, "
                "clone --follow --restart",
            )
        else:
            report.ok(name, f"no replication origin named {opts.origin}")
    elif opts.follow and opts.resume:
        report.ok(name, f"replication origin {opts.origin} exists and will be resumed")
    elif opts.follow:
        report.fail(name, f"replication origin {opts.origin} already exists on the target", fix)
    else:
        report.warn(name, f"replication origin {opts.origin} is left on the target", fix)


def _check_target_privileges(
    report: Report,
    conn: psycopg.Connection[Any],
    info: ConnInfo,
    user: str,
    superuser: bool,
    src: SourceFacts | None,
    filters: Filters,
) -> None:
    name = "target.privileges"
    with guarded_check(report, name):
        create_db, public_exists, create_public = conn.execute(
            "SELECT has_database_privilege(current_database(), 'CREATE'), "
            "to_regnamespace('public') IS NOT NULL, "
            "to_regnamespace('public') IS NOT NULL AND has_schema_privilege('public', 'CREATE')"
        ).fetchone()  # type: ignore[misc]
        role = sql.Identifier(user).as_string(conn)
        problems, fixes = [], []
        if not create_db:
            problems.append(f"no CREATE on database {info.dbname} (needed to create schemas)")
            fixes.append(
                f"GRANT CREATE ON DATABASE {sql.Identifier(info.dbname).as_string(conn)} TO {role};"
            )
        uses_public = src is not None and any(
            t.schema == "public" for t in scoped_tables(src.tables or [], filters)
        )
        if public_exists and uses_public and not create_public:
            problems.append("no CREATE on schema public, where the source has tables")
            fixes.append(f"GRANT CREATE ON SCHEMA public TO {role};")
        if problems:
            report.fail(name, f"{user} on the target: " + "; ".join(problems), " ".join(fixes))
            return
        report.ok(
            name,
            f"{user} can create schemas and objects"
            + (" (superuser)" if superuser else " (not a superuser)"),
        )


def _check_cdc_privileges(
    report: Report, conn: psycopg.Connection[Any], user: str, superuser: bool
) -> None:
    """CDC apply sets session_replication_role and records progress in an origin."""
    name = "target.cdc_privileges"
    if superuser:
        report.ok(name, f"{user} is a superuser")
        return
    role = sql.Identifier(user).as_string(conn)
    problems, fixes = [], []
    with guarded_check(report, name):
        try:
            with conn.transaction(force_rollback=True):
                set_settings(conn, {"session_replication_role": "replica"}, local=True)
        except pgerrors.InsufficientPrivilege:
            problems.append("cannot set session_replication_role (apply disables triggers with it)")
            fixes.append(
                f"GRANT SET ON PARAMETER session_replication_role TO {role}; (PostgreSQL 15+, "
                "as a superuser; on managed services use the admin role)"
            )
        rows = conn.execute(
            FUNCTION_RIGHTS_SQL,
            ([f"pg_catalog.{f}" for f in ORIGIN_FUNCTIONS],),
        ).fetchall()
        denied = [r[0] for r in rows if r[1] or not r[2]]
        if any(r[1] for r in rows):
            problems.append("replication origins are superuser-only on this server version")
            fixes.append("connect to the target as a superuser for --follow")
        elif denied:
            problems.append("no EXECUTE on " + ", ".join(denied))
            fixes.append(
                f"GRANT EXECUTE ON FUNCTION {', '.join('pg_catalog.' + d for d in denied)} "
                f"TO {role}; (as a superuser)"
            )
        if problems:
            report.fail(
                name, f"{user} cannot apply changes: " + "; ".join(problems), " ".join(fixes)
            )
        else:
            report.ok(name, f"{user} can set session_replication_role and use replication origins")
