"""The source relations in scope: can pgferry read them all, and can CDC replay them.

Missing USAGE or SELECT, row-level security and unreadable large objects make the copy
fail or come out silently incomplete. Tables without a usable replica identity, unlogged
tables and large objects are what CDC cannot replay after the copy.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.filters import Filters
from pgferry.catalog.inspect import LARGE_OBJECT_RIGHTS_SQL, PREFLIGHT_TABLES_SQL
from pgferry.catalog.row_identity import Problem, RowIdentity
from pgferry.catalog.target import check_source_reads
from pgferry.checks.preflight.facts import LISTED, PreflightOptions, RoleFacts, ScopeTable
from pgferry.checks.preflight.session import guarded_check
from pgferry.checks.report import Report
from pgferry.errors import InputError
from pgferry.text import listed


def replica_identity_problem(t: ScopeTable) -> str | None:
    """Why CDC could not replay UPDATE/DELETE on `t`, or None."""
    problem = t.identity.problem
    if problem is None:
        return None
    return {
        Problem.NO_KEY: "no primary key",
        Problem.NOTHING: "REPLICA IDENTITY NOTHING",
        Problem.INDEX_DROPPED: "its replica identity index is gone",
        Problem.INDEX_INVALID: "its replica identity index is not valid",
    }[problem]


def read_scope_tables(conn: psycopg.Connection[Any]) -> list[ScopeTable]:
    return [
        ScopeTable(
            oid=r[0],
            schema=r[1],
            name=r[2],
            relkind=r[3],
            persistence=r[4],
            identity=RowIdentity.of(r[5], r[9], r[10], r[11]),
            rls=r[6],
            can_select=r[7],
            schema_usage=r[8],
            parent_oids=tuple(r[12]),
            tablespaces=tuple(r[13]),
            float_columns=r[14],
        )
        for r in conn.execute(PREFLIGHT_TABLES_SQL).fetchall()
    ]


def check_read_privileges(
    report: Report, conn: psycopg.Connection[Any], tables: list[ScopeTable], user: str
) -> None:
    """USAGE on every schema and SELECT on every table and sequence in scope.

    Tables whose data is excluded count too: pg_dump locks every table it dumps, and
    ACCESS SHARE needs SELECT.
    """
    name = "source.read_privileges"
    readable_kinds = {"r", "p", "m", "S"}
    problems: list[str] = []
    fixes: list[str] = []
    role = sql.Identifier(user).as_string(conn)
    by_schema: dict[str, list[ScopeTable]] = {}
    for t in tables:
        if t.relkind in readable_kinds:
            by_schema.setdefault(t.schema, []).append(t)
    for schema, members in sorted(by_schema.items()):
        ident = sql.Identifier(schema).as_string(conn)
        if not members[0].schema_usage:
            problems.append(f"no USAGE on schema {schema}")
            fixes.append(f"GRANT USAGE ON SCHEMA {ident} TO {role};")
        for kind, label in (("table", "TABLES"), ("sequence", "SEQUENCES")):
            denied = [
                t
                for t in members
                if not t.can_select and (t.relkind == "S") == (kind == "sequence")
            ]
            if not denied:
                continue
            problems.append(
                f"no SELECT on {len(denied)} {kind}(s) of {schema}: "
                + ", ".join(str(t.qualname) for t in denied[:LISTED])
            )
            if len(denied) <= 3:
                targets = ", ".join(
                    sql.Identifier(t.schema, t.name).as_string(conn) for t in denied
                )
                keyword = "SEQUENCE " if kind == "sequence" else ""
                fixes.append(f"GRANT SELECT ON {keyword}{targets} TO {role};")
            else:
                fixes.append(f"GRANT SELECT ON ALL {label} IN SCHEMA {ident} TO {role};")
    if problems:
        report.fail(
            name,
            f"{user} cannot read everything in scope: " + "; ".join(problems),
            " ".join(fixes) + " (as the owner or a superuser), or exclude them with a filter",
        )
    else:
        count = sum(len(m) for m in by_schema.values())
        report.ok(name, f"{user} can read the {count} tables and sequences in scope")


def check_rls(
    report: Report,
    conn: psycopg.Connection[Any],
    tables: list[ScopeTable],
    filters: Filters,
    role: RoleFacts,
) -> None:
    """Row-level security would make the copy silently incomplete."""
    name = "source.rls"
    candidates = [
        t
        for t in tables
        if t.rls
        and t.relkind == "r"
        and t.can_select
        and t.qualname not in filters.exclude_table_data
    ]
    if not candidates:
        report.ok(name, "no table in scope has row-level security enabled")
        return
    with guarded_check(report, name):
        try:
            check_source_reads(conn, [t.oid for t in candidates])
        except InputError as exc:
            report.fail(
                name,
                exc.message,
                exc.fix,
                tables=[str(t.qualname) for t in candidates],
            )
            return
        why = "a superuser" if role.superuser else "BYPASSRLS" if role.bypassrls else "the owner"
        report.ok(name, f"{len(candidates)} table(s) with row-level security: {role.user} is {why}")


def check_replica_identity(
    report: Report, tables: list[ScopeTable], filters: Filters, opts: PreflightOptions
) -> None:
    """Tables in scope whose UPDATEs and DELETEs CDC could not replay."""
    name = "source.replica_identity"
    problems = [
        (t, why)
        for t in tables
        if t.relkind == "r"
        and t.persistence == "p"
        and t.qualname not in filters.exclude_table_data
        and (why := replica_identity_problem(t)) is not None
    ]
    if not problems:
        report.ok(name, "every table in scope has a usable replica identity")
        return
    shown = listed([f"{t.qualname} ({why})" for t, why in problems], LISTED)
    message = f"{len(problems)} table(s) without a usable replica identity: {shown}"
    if not opts.follow:
        report.skip(name, message + " (matters only with --follow)")
        return
    first = problems[0][0]
    fix = (
        "pgferry fix-replica-identity --source ... (uses a unique index or FULL), or "
        f"ALTER TABLE {sql.Identifier(first.schema, first.name).as_string()} "
        "REPLICA IDENTITY FULL; per table"
    )
    if opts.plugin == "pgoutput":
        report.fail(
            name,
            message + ": --plugin pgoutput would publish them, and a published table "
            "without one makes the source's own UPDATEs and DELETEs on it fail",
            fix,
            tables=[str(t.qualname) for t, _ in problems],
        )
        return
    report.warn(
        name,
        message + ": CDC cannot replay their UPDATEs and DELETEs",
        fix,
        tables=[str(t.qualname) for t, _ in problems],
    )


def check_special_tables(report: Report, tables: list[ScopeTable], opts: PreflightOptions) -> None:
    """Unlogged, foreign and other tables that need a decision."""
    unlogged = [t for t in tables if t.relkind in ("r", "p") and t.persistence == "u"]
    if unlogged and opts.follow:
        report.warn(
            "source.unlogged_tables",
            f"{len(unlogged)} unlogged table(s): their changes are not in the WAL, so CDC "
            "cannot replay them after the copy: "
            + ", ".join(str(t.qualname) for t in unlogged[:LISTED]),
            "ALTER TABLE ... SET LOGGED on the source before starting, or exclude them, or "
            "accept that they are copied once",
        )
    floats = [t for t in tables if t.relkind in ("r", "p") and t.float_columns]
    if floats and opts.follow and opts.plugin == "wal2json" and not opts.wal2json_numeric_as_string:
        report.warn(
            "source.wal2json_numbers",
            f"{len(floats)} table(s) have numeric, real or double precision columns, and "
            "wal2json 2.5 decodes NaN and Infinity in them as NULL: changed rows holding "
            "such values would arrive wrong: "
            + ", ".join(str(t.qualname) for t in floats[:LISTED]),
            "use --plugin pgoutput (the default) or test_decoding, or wal2json >= 2.6 with "
            "--wal2json-numeric-as-string",
        )
    foreign = [t for t in tables if t.relkind == "f"]
    if foreign:
        report.ok(
            "source.foreign_tables",
            f"{len(foreign)} foreign table(s): their definitions migrate, not their remote "
            "data: " + ", ".join(str(t.qualname) for t in foreign[:LISTED]),
        )


def check_large_objects(
    report: Report, conn: psycopg.Connection[Any], opts: PreflightOptions
) -> None:
    """Large objects: whether this role can read every one."""
    name = "source.large_objects"
    with guarded_check(report, name):
        count, unreadable = conn.execute(LARGE_OBJECT_RIGHTS_SQL).fetchone()  # type: ignore[misc]
        if unreadable:
            report.fail(
                name,
                f"{unreadable} of {count} large object(s) cannot be read by this role",
                "GRANT SELECT ON LARGE OBJECT oid TO role; (as their owner), connect as a "
                "superuser, or clone with --skip-large-objects",
            )
        elif count and opts.follow:
            report.warn(
                name,
                f"{count} large object(s): they are copied once; CDC does not replicate "
                "later changes to them",
                "avoid changing large objects during the migration, or copy them again "
                "after the cutover (pgferry copy blobs)",
            )
        else:
            report.ok(name, f"{count} large object(s)" if count else "no large objects")
