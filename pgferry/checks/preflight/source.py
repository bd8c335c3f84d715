"""The source side: its version, the role, transactions that hold it back, and the facts
the other sides need.

`source_checks` runs every check a read-only session can make on the source, in report
order, handing over to the provider, replication, table and capacity checks, and returns
the `SourceFacts` the target and local checks compare against. The XID-age and prepared-
transaction rules live here because a long migration holds a snapshot: whatever already
holds back vacuum gets worse while it runs.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog import providers
from pgferry.catalog.facts import (
    all_tables_publications,
    catalog_object_count,
    database_size,
    event_trigger_names,
    extension_versions,
    schema_names,
)
from pgferry.catalog.filters import Filters, QualifiedName
from pgferry.catalog.inspect import (
    INDEX_NAMES_SQL,
    OLDEST_DATABASE_XID_SQL,
    ROLE_RIGHTS_SQL,
    ROLES_IN_USE_SQL,
)
from pgferry.checks.preflight.capacity import EXTRA_SOURCE_SESSIONS, check_connections
from pgferry.checks.preflight.facts import (
    LISTED,
    PreflightOptions,
    RoleFacts,
    SourceFacts,
    SourceNames,
)
from pgferry.checks.preflight.provider import check_provider
from pgferry.checks.preflight.replication import (
    check_long_transactions,
    check_max_slot_wal_keep_size,
    check_slots,
    judge_replication_role,
    judge_wal_level,
    judge_wal_sender_timeout,
)
from pgferry.checks.preflight.scope import scoped_tables
from pgferry.checks.preflight.session import fetch_one, guarded_check
from pgferry.checks.preflight.tables import (
    check_large_objects,
    check_read_privileges,
    check_replica_identity,
    check_rls,
    check_special_tables,
    read_scope_tables,
)
from pgferry.checks.report import Check, Report, Verdict
from pgferry.pg.activity import WAL_RATE_SQL
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.settings import read_settings
from pgferry.text import human_duration

# pgferry's catalog queries use pg_attribute.attgenerated (PostgreSQL 12).
MIN_SOURCE_MAJOR = 12

# pgcopydb's (PlanetScale fork) XID wraparound guard: warn at 75%, fail at 95% of 2^31.
XID_LIMIT = 2**31
XID_WARN_FRACTION = 0.75
XID_FAIL_FRACTION = 0.95


_SOURCE_SETTINGS = (
    "wal_level",
    "max_replication_slots",
    "max_wal_senders",
    "wal_sender_timeout",
    "max_slot_wal_keep_size",
    "max_connections",
    "superuser_reserved_connections",
    "reserved_connections",
    "server_version",
    "server_version_num",
    "server_encoding",
)


def judge_source_version(major: int, version: str, in_recovery: bool, follow: bool) -> Check:
    name = "source.version"
    standby = " (a standby)" if in_recovery else ""
    if major < MIN_SOURCE_MAJOR:
        return Check(
            name,
            Verdict.FAIL,
            f"PostgreSQL {version}{standby}: pgferry needs {MIN_SOURCE_MAJOR} or newer",
            "upgrade the source, or migrate it with pg_dump/pg_restore",
        )
    if in_recovery and follow and major < 16:
        return Check(
            name,
            Verdict.FAIL,
            f"PostgreSQL {version} standby: logical decoding on a standby needs PostgreSQL 16",
            "connect to the primary for --follow",
        )
    return Check(name, Verdict.PASS, f"PostgreSQL {version}{standby}")


def judge_prepared_transactions(prepared: list[tuple[str, str, int]], *, follow: bool) -> Check:
    """`prepared`: (gid, database, age in seconds) of every pending prepared transaction."""
    name = "source.prepared_transactions"
    if not prepared:
        return Check(name, Verdict.PASS, "no prepared transactions")
    shown = ", ".join(
        f"{gid!r} in {db} ({human_duration(age)} old)" for gid, db, age in prepared[:LISTED]
    )
    fix = "finish them: COMMIT PREPARED 'gid'; or ROLLBACK PREPARED 'gid'; (in their database)"
    if follow:
        return Check(
            name,
            Verdict.FAIL,
            f"{len(prepared)} prepared transaction(s) pending: creating the replication slot "
            f"waits until they finish: {shown}",
            fix,
            {"prepared": [gid for gid, _, _ in prepared]},
        )
    return Check(
        name,
        Verdict.WARN,
        f"{len(prepared)} prepared transaction(s) pending (their changes are not in the copy "
        f"until they commit; they hold back vacuum): {shown}",
        fix,
    )


def judge_xid_age(datname: str, age: int) -> Check:
    name = "source.xid_age"
    fraction = age / XID_LIMIT
    message = f"oldest unfrozen transaction ID: age {age:,} in {datname} ({fraction:.0%} of 2^31)"
    fix = (
        f'VACUUM (FREEZE, VERBOSE) the oldest tables of "{datname}" first (pg_class ordered by '
        "age(relfrozenxid)), and let anti-wraparound autovacuum finish: a long migration holds "
        "a snapshot that stops freezing"
    )
    if fraction >= XID_FAIL_FRACTION:
        return Check(name, Verdict.FAIL, message + ": too close to wraparound", fix)
    if fraction >= XID_WARN_FRACTION:
        return Check(name, Verdict.WARN, message, fix)
    return Check(name, Verdict.PASS, message)


def source_checks(
    report: Report,
    info: ConnInfo,
    conn: psycopg.Connection[Any],
    filters: Filters,
    opts: PreflightOptions,
) -> SourceFacts:
    """Every source check that a read-only session can make; returns what it learnt."""
    settings = read_settings(conn, _SOURCE_SETTINGS)
    major = int(settings["server_version_num"]) // 10000
    in_recovery = bool(fetch_one(conn, "SELECT pg_is_in_recovery()"))
    report.checks.append(
        judge_source_version(major, settings["server_version"], in_recovery, opts.follow)
    )
    user, superuser, replication, bypassrls, managed = conn.execute(
        ROLE_RIGHTS_SQL, (list(providers.MANAGED_REPLICATION_ROLES),)
    ).fetchone()  # type: ignore[misc]
    role = RoleFacts(user, superuser, replication, bypassrls, tuple(managed))
    provider = check_provider(report, info, conn, filters)
    facts = SourceFacts(
        major=major,
        version=settings["server_version"],
        user=role.user,
        superuser=role.superuser,
        provider=provider,
        encoding=settings.get("server_encoding"),
        wal_level=settings["wal_level"],
    )
    report.facts["source provider"] = providers.describe(provider)

    report.checks.append(
        judge_wal_level(settings["wal_level"], follow=opts.follow, provider=provider)
    )
    check = judge_replication_role(role, follow=opts.follow, provider=provider)
    facts.can_replicate = check.verdict == Verdict.PASS
    report.checks.append(check)
    check_slots(report, conn, settings, opts, info.dbname)
    report.checks.append(
        judge_wal_sender_timeout(
            int(settings["wal_sender_timeout"]), follow=opts.follow, user=role.user
        )
    )
    check_max_slot_wal_keep_size(report, settings, opts)
    with guarded_check(report, "source.prepared_transactions"):
        rows = conn.execute(
            "SELECT gid, database, extract(epoch FROM now() - prepared)::int8 "
            "FROM pg_prepared_xacts ORDER BY prepared"
        ).fetchall()
        report.checks.append(
            judge_prepared_transactions([(r[0], r[1], r[2]) for r in rows], follow=opts.follow)
        )
    if opts.follow:
        check_long_transactions(report, conn)
    with guarded_check(report, "source.xid_age"):
        datname, age = fetch_one(conn, OLDEST_DATABASE_XID_SQL)
        report.checks.append(judge_xid_age(datname, age))
    check_connections(
        report, conn, "source", settings, opts.table_jobs + EXTRA_SOURCE_SESSIONS, role.superuser
    )
    with guarded_check(report, "source.connect_privilege"):
        if fetch_one(conn, "SELECT has_database_privilege(current_database(), 'CONNECT')"):
            report.ok("source.connect_privilege", "CONNECT on the database")
        else:
            report.fail(
                "source.connect_privilege",
                f"{role.user} has no CONNECT privilege on {info.dbname}: pgferry's other "
                "sessions would be refused",
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {};")
                .format(sql.Identifier(info.dbname), sql.Identifier(role.user))
                .as_string(conn),
            )
    with guarded_check(report, "source.tables"):
        facts.tables = read_scope_tables(conn)
    if facts.tables is not None:
        in_scope = scoped_tables(facts.tables, filters)
        check_read_privileges(report, conn, in_scope, role.user)
        check_rls(report, conn, in_scope, filters, role)
        check_replica_identity(report, in_scope, filters, opts)
        check_special_tables(report, in_scope, opts)
    check_large_objects(report, conn, opts)
    _read_source_facts(report, conn, facts, filters)
    return facts


def _read_source_facts(
    report: Report, conn: psycopg.Connection[Any], facts: SourceFacts, filters: Filters
) -> None:
    """What the target checks and the local checks compare against."""
    with guarded_check(report, "source.catalog"):
        facts.size = database_size(conn)
        facts.extensions = extension_versions(conn)
        facts.event_triggers = sorted(event_trigger_names(conn))
        facts.all_tables_publications = all_tables_publications(conn)
    with guarded_check(report, "source.roles"):
        facts.roles_in_use = [tuple(r) for r in conn.execute(ROLES_IN_USE_SQL)]  # type: ignore[misc]
        facts.catalog_objects = catalog_object_count(conn)
        schemas = schema_names(conn)
        relations = frozenset(
            t.qualname for t in facts.tables or [] if t.relkind in ("r", "p", "m", "f")
        )
        indexes: frozenset[QualifiedName] = frozenset()
        if filters.exclude_index:
            indexes = frozenset(QualifiedName(r[0], r[1]) for r in conn.execute(INDEX_NAMES_SQL))
        facts.names = SourceNames(
            schemas=schemas,
            relations=relations,
            indexes=indexes,
            extensions=frozenset(facts.extensions) | {"plpgsql"},
            event_triggers=frozenset(facts.event_triggers),
        )
    if facts.major >= 14:
        with guarded_check(report, "source.wal_rate"):
            row = conn.execute(WAL_RATE_SQL).fetchone()
            if row is not None and row[1] and row[1] > 3600:
                facts.wal_bytes_per_second = row[0] / row[1]
