"""`pgferry preflight`: everything that would make a migration fail or lose data, checked
before anything is written.

The checks read the source, the target and this machine, and end up in one PASS/WARN/FAIL
`Report`, every WARN and FAIL with the exact fix. The rules are pure functions (`judge_*`,
`table_in_scope`, `unmatched_filter_names`) over facts the thin I/O code reads, so each
one is unit tested without a server.

Both sides are read in read-only sessions with statement and lock timeouts (the helper
scripts' belt): a busy source cannot hang preflight and preflight cannot write to it. The
one exception is the decoding plugin probe, which creates and drops a temporary slot.
A side that cannot be reached is a FAIL line, not an exception, and its checks are skipped.
A query that fails is reported as "not checked", never read as an empty answer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from pgferry.catalog.filters import FilterError, Filters, QualifiedName, parse_filters
from pgferry.catalog.queries import SYSTEM_SCHEMA_FILTER
from pgferry.cdc.follow import PLUGINS
from pgferry.clone.scheduler import MAX_PARALLEL_MAINTENANCE
from pgferry.clone.target import check_source_reads, user_objects
from pgferry.errors import EnvironmentProblem, InputError, PgferryError
from pgferry.ops import providers
from pgferry.ops.report import Check, Report, Verdict
from pgferry.pg.binaries import find_dump_tools
from pgferry.pg.conninfo import ConnInfo
from pgferry.state.workdir import default_dir
from pgferry.ui.format import human_bytes, human_duration

log = logging.getLogger(__name__)

# The read-only belt: no writes, no hanging on a busy server.
READ_ONLY_SETTINGS = {
    "default_transaction_read_only": "on",
    "statement_timeout": "30s",
    "lock_timeout": "5s",
    "idle_in_transaction_session_timeout": "60s",
}
# Creating a logical slot waits for every transaction running at that moment.
PROBE_SETTINGS = {"statement_timeout": "10s", "lock_timeout": "5s"}

# pgferry's catalog queries use pg_attribute.attgenerated (PostgreSQL 12).
MIN_SOURCE_MAJOR = 12
# pgcopydb's (PlanetScale fork) XID wraparound guard: warn at 75%, fail at 95% of 2^31.
XID_LIMIT = 2**31
XID_WARN_FRACTION = 0.75
XID_FAIL_FRACTION = 0.95
LONG_TRANSACTION_SECONDS = 300
# DIR holds the schema dump, logs and the state store at least; CDC files come on top.
DISK_HEADROOM = 256 * 1024 * 1024
# Conservative COPY throughput per table job, to guess how long the copy runs.
COPY_BYTES_PER_SECOND_PER_JOB = 25 * 1024 * 1024
# Sessions pgferry opens besides the workers (catalog, snapshot, large objects, apply).
EXTRA_SOURCE_SESSIONS = 3
EXTRA_TARGET_SESSIONS = 3
_LISTED = 10  # names shown in one message
_LEFTOVER_SCHEMAS = ("pgferry", "pgcopydb")
# What the CDC apply session calls on the target (cdc/apply.py, cdc/follow.py).
ORIGIN_FUNCTIONS = (
    "pg_replication_origin_create(text)",
    "pg_replication_origin_advance(text, pg_lsn)",
    "pg_replication_origin_oid(text)",
    "pg_replication_origin_progress(text, boolean)",
    "pg_replication_origin_session_setup(text)",
    "pg_replication_origin_session_progress(boolean)",
    "pg_replication_origin_xact_setup(pg_lsn, timestamp with time zone)",
    "pg_replication_origin_drop(text)",
)


@dataclass(frozen=True)
class PreflightOptions:
    """What the migration will be asked to do."""

    follow: bool = False
    plugin: str = "test_decoding"
    slot: str = "pgferry"
    origin: str = "pgferry"
    workdir: Path = field(default_factory=default_dir)
    table_jobs: int = 4
    index_jobs: int = 4
    drop_if_exists: bool = False
    resume: bool = False


def run_preflight(
    source: ConnInfo,
    target: ConnInfo,
    filters: Filters,
    *,
    follow: bool,
    plugin: str = "test_decoding",
    slot: str = "pgferry",
    origin: str = "pgferry",
    workdir: Path | None = None,
    table_jobs: int = 4,
    index_jobs: int = 4,
    drop_if_exists: bool = False,
    resume: bool = False,
    filters_error: FilterError | None = None,
) -> Report:
    """Check the source, the target and this machine for the migration described.

    `filters_error` is a filter file that did not parse: it is reported as a FAIL and the
    other checks then cover every object. Never raises for a server problem: connection
    failures and failed queries are lines of the report.
    """
    opts = PreflightOptions(
        follow=follow,
        plugin=plugin,
        slot=slot,
        origin=origin,
        workdir=(workdir or default_dir()).expanduser().absolute(),
        table_jobs=table_jobs,
        index_jobs=index_jobs,
        drop_if_exists=drop_if_exists,
        resume=resume,
    )
    report = Report(title="pgferry preflight")
    report.facts.update(
        {
            "source": source.short(),
            "target": target.short(),
            "migration": ("clone --follow" if follow else "clone")
            + (" --resume" if resume else "")
            + (f" (plugin {plugin}, slot {slot}, origin {origin})" if follow else ""),
            "dir": str(opts.workdir),
        }
    )
    check_filter_file(report, filters, filters_error)
    src: SourceFacts | None = None
    with contextlib.ExitStack() as stack:
        src_conn = _open(report, source, stack)
        if src_conn is not None:
            try:
                src = source_checks(report, source, src_conn, filters, opts)
            except psycopg.Error as exc:
                report.fail("source.checks", f"source checks stopped: {_error_text(exc)}")
            if src is not None and opts.follow:
                probe_replication(report, source, src, opts)
        tgt_conn = _open(report, target, stack)
        if tgt_conn is not None:
            try:
                target_checks(report, target, tgt_conn, src, filters, opts)
            except psycopg.Error as exc:
                report.fail("target.checks", f"target checks stopped: {_error_text(exc)}")
    local_checks(report, src, filters, opts)
    return report


# ---------------------------------------------------------------------------------------------
# Facts read from the source, used by checks on the other sides


@dataclass(frozen=True)
class ScopeTable:
    """A relation of the source, with what the checks need to know about it."""

    oid: int
    schema: str
    name: str
    relkind: str  # r, p, m, f, S
    persistence: str  # p, u
    replident: str  # d, n, f, i
    rls: bool
    can_select: bool
    schema_usage: bool
    has_pk: bool
    has_replident_index: bool
    parent_oids: tuple[int, ...]
    tablespaces: tuple[str, ...]  # of the table and its indexes, when not the default

    @property
    def qualname(self) -> QualifiedName:
        return QualifiedName(self.schema, self.name)


@dataclass(frozen=True)
class SourceNames:
    """Object names of the source, to match filter entries against."""

    schemas: frozenset[str] = frozenset()
    relations: frozenset[QualifiedName] = frozenset()  # tables, matviews, foreign tables
    indexes: frozenset[QualifiedName] = frozenset()
    extensions: frozenset[str] = frozenset()
    event_triggers: frozenset[str] = frozenset()


@dataclass
class SourceFacts:
    """What the source told us; fields stay None when their query failed."""

    major: int
    version: str
    user: str
    superuser: bool
    provider: str | None
    size: int | None = None
    encoding: str | None = None
    wal_level: str | None = None
    extensions: dict[str, str] | None = None  # name -> version, plpgsql left out
    event_triggers: list[str] | None = None
    all_tables_publications: list[str] | None = None
    tables: list[ScopeTable] | None = None
    names: SourceNames | None = None
    can_replicate: bool | None = None
    catalog_objects: int = 0
    wal_bytes_per_second: float | None = None


# ---------------------------------------------------------------------------------------------
# Pure rules


def table_in_scope(
    filters: Filters, table: QualifiedName, ancestors: Iterable[QualifiedName]
) -> bool:
    """Whether the filters keep `table` (a partition or child follows its ancestors)."""
    if filters.include_only_schema and table.schema not in filters.include_only_schema:
        return False
    if table.schema in filters.exclude_schema:
        return False
    family = [table, *ancestors]
    if filters.include_only_table and not any(t in filters.include_only_table for t in family):
        return False
    return not any(t in filters.exclude_table for t in family)


def extensions_in_scope(filters: Filters, extensions: Mapping[str, str]) -> dict[str, str]:
    """The source's extensions the migration creates on the target."""
    return {
        name: version
        for name, version in extensions.items()
        if name not in filters.exclude_extension
        and (not filters.include_only_extension or name in filters.include_only_extension)
    }


def unmatched_filter_names(filters: Filters, names: SourceNames) -> list[str]:
    """Filter entries naming nothing on the source, as `file:line: [section] name ...`."""
    known: dict[str, frozenset[Any]] = {
        "include-only-schema": names.schemas,
        "exclude-schema": names.schemas,
        "include-only-table": names.relations,
        "exclude-table": names.relations,
        "exclude-table-data": names.relations,
        "exclude-index": names.indexes,
        "include-only-extension": names.extensions,
        "exclude-extension": names.extensions,
        "exclude-event-trigger": names.event_triggers,
    }
    out: list[str] = []
    seen: set[tuple[str, Any]] = set()
    for entry in filters.entries:
        key = (entry.section, entry.key())
        if key in seen or entry.key() in known[entry.section]:
            continue
        seen.add(key)
        out.append(
            f"{filters.path or '<filters>'}:{entry.line}: [{entry.section}] {entry} "
            "matches nothing on the source"
        )
    return out


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


def judge_wal_level(wal_level: str, *, follow: bool, provider: str | None) -> Check:
    name = "source.wal_level"
    if wal_level == "logical":
        return Check(name, Verdict.PASS, "wal_level = logical")
    if not follow:
        return Check(
            name,
            Verdict.SKIP,
            f"wal_level = {wal_level}: enough without --follow (CDC needs logical)",
        )
    return Check(
        name,
        Verdict.FAIL,
        f"wal_level = {wal_level}: --follow needs logical decoding (wal_level = logical)",
        providers.wal_level_fix(provider),
    )


@dataclass(frozen=True)
class RoleFacts:
    user: str
    superuser: bool
    replication: bool
    bypassrls: bool = False
    managed_replication_roles: tuple[str, ...] = ()  # e.g. rds_replication, when a member


def judge_replication_role(role: RoleFacts, *, follow: bool, provider: str | None) -> Check:
    name = "source.replication_role"
    if role.superuser:
        return Check(name, Verdict.PASS, f"{role.user} is a superuser")
    if role.replication:
        return Check(name, Verdict.PASS, f"{role.user} has the REPLICATION attribute")
    if role.managed_replication_roles:
        return Check(
            name,
            Verdict.PASS,
            f"{role.user} is a member of {', '.join(role.managed_replication_roles)}",
        )
    message = f"{role.user} is neither a superuser nor has REPLICATION"
    if not follow:
        return Check(name, Verdict.SKIP, message + " (needed only for --follow)")
    return Check(
        name,
        Verdict.FAIL,
        message + ": it cannot create the replication slot --follow needs",
        providers.replication_fix(provider, role.user),
    )


def judge_capacity(
    name: str, what: str, used: int, maximum: int, needed: int, *, follow: bool, fix: str
) -> Check:
    """Free replication slots or WAL senders against what --follow takes."""
    free = maximum - used
    message = f"{used} of {maximum} {what} in use, {free} free"
    if not follow:
        return Check(name, Verdict.PASS if free > 0 else Verdict.SKIP, message)
    if free < needed:
        return Check(
            name,
            Verdict.FAIL,
            f"{message}: --follow needs {needed}",
            fix,
            {"used": used, "max": maximum, "needed": needed},
        )
    return Check(name, Verdict.PASS, message, details={"used": used, "max": maximum})


@dataclass(frozen=True)
class SlotFacts:
    name: str
    slot_type: str
    database: str | None
    plugin: str | None
    active: bool
    wal_status: str | None  # PostgreSQL 13+: reserved, extended, unreserved, lost


def judge_leftover_slot(
    slot: str, found: SlotFacts | None, *, follow: bool, resume: bool, plugin: str, dbname: str
) -> Check:
    """Our slot: a leftover blocks a fresh --follow; a resumed one needs it intact."""
    name = "source.slot"
    cleanup = (
        f"pgferry cleanup --source ... --slot-name {slot} (if it is a leftover), or use --slot-name"
    )
    if found is None:
        if follow and resume:
            return Check(
                name,
                Verdict.WARN,
                f"replication slot {slot} does not exist: a --follow resume needs it, unless "
                "the previous run stopped before creating it",
                "if it was dropped, the changes since are lost: start over (pgferry cleanup, "
                "empty the target, clone --follow --restart)",
            )
        return Check(name, Verdict.PASS, f"no replication slot named {slot}")
    where = (
        f"{found.slot_type} slot in database {found.database}"
        if found.database
        else f"{found.slot_type} slot"
    )
    state = "active" if found.active else "inactive"
    if not (follow and resume):
        verdict = Verdict.FAIL if follow else Verdict.WARN
        extra = "" if follow else ": it holds back WAL on the source"
        return Check(
            name,
            verdict,
            f"replication slot {slot} already exists ({where}, {state}){extra}",
            cleanup,
        )
    if found.slot_type != "logical" or found.database != dbname:
        return Check(
            name,
            Verdict.FAIL,
            f"replication slot {slot} is a {where}, not a logical slot of {dbname}",
            "use the --slot-name of the migration being resumed",
        )
    if found.wal_status == "lost":
        return Check(
            name,
            Verdict.FAIL,
            f"replication slot {slot} was invalidated (wal_status lost): changes are missing",
            "start over: pgferry cleanup, empty the target, clone --follow --restart",
        )
    if found.active:
        return Check(
            name,
            Verdict.WARN,
            f"replication slot {slot} is in use by another session",
            "stop the pgferry still running on it (pgferry stop --dir DIR) before resuming",
        )
    message = f"replication slot {slot} exists and will be resumed ({found.plugin})"
    if found.plugin and found.plugin != plugin:
        message += f"; its plugin {found.plugin} is used, not --plugin {plugin}"
    return Check(name, Verdict.PASS, message)


def judge_wal_sender_timeout(timeout_ms: int, *, follow: bool, user: str) -> Check:
    name = "source.wal_sender_timeout"
    if timeout_ms == 0:
        return Check(name, Verdict.PASS, "wal_sender_timeout = 0")
    shown = human_duration(timeout_ms / 1000)
    if not follow:
        return Check(
            name, Verdict.SKIP, f"wal_sender_timeout = {shown} (matters only with --follow)"
        )
    role = sql.Identifier(user).as_string()
    return Check(
        name,
        Verdict.WARN,
        f"wal_sender_timeout = {shown}: a replication connection idle that long during an "
        "hours-long copy is dropped, and CDC has to recover",
        f"ALTER ROLE {role} SET wal_sender_timeout = 0; (for the migration role only), or "
        "wal_sender_timeout = 0 in the server configuration (parameter group on managed "
        "services), then reconnect",
    )


def judge_prepared_transactions(prepared: list[tuple[str, str, int]], *, follow: bool) -> Check:
    """`prepared`: (gid, database, age in seconds) of every pending prepared transaction."""
    name = "source.prepared_transactions"
    if not prepared:
        return Check(name, Verdict.PASS, "no prepared transactions")
    shown = ", ".join(
        f"{gid!r} in {db} ({human_duration(age)} old)" for gid, db, age in prepared[:_LISTED]
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


@dataclass(frozen=True)
class AvailableExtension:
    name: str
    versions: frozenset[str]
    superuser_only: bool = False  # every version needs a superuser (and none is trusted)


def judge_extensions(
    needed: Mapping[str, str],
    available: Mapping[str, AvailableExtension],
    installed: Iterable[str],
    *,
    target_superuser: bool,
) -> Check:
    """The extensions the migration creates, against what the target can create."""
    name = "target.extensions"
    installed = set(installed)
    if not needed:
        return Check(name, Verdict.PASS, "no extensions to create")
    missing = sorted(f"{ext} {version}" for ext, version in needed.items() if ext not in available)
    if missing:
        return Check(
            name,
            Verdict.FAIL,
            f"{len(missing)} extension(s) the source uses are not available on the target: "
            + ", ".join(missing),
            "install them on the target server (its packages, or the provider's allow-list), "
            "or list them under [exclude-extension] in the filter file",
            {"missing": missing},
        )
    notes: list[str] = []
    other_version = sorted(
        f"{ext} {version}"
        for ext, version in needed.items()
        if version not in available[ext].versions and ext not in installed
    )
    if other_version:
        notes.append(
            "created in the target's default version instead of: " + ", ".join(other_version)
        )
    privileged = sorted(
        ext
        for ext in needed
        if available[ext].superuser_only and ext not in installed and not target_superuser
    )
    if privileged:
        notes.append(
            "creating these needs a superuser (or the provider's admin role): "
            + ", ".join(privileged)
        )
    if notes:
        return Check(
            name,
            Verdict.WARN,
            f"all {len(needed)} extension(s) available; " + "; ".join(notes),
            "create them on the target beforehand as an administrator "
            "(CREATE EXTENSION name VERSION 'x'), then run the migration",
        )
    return Check(
        name,
        Verdict.PASS,
        f"all {len(needed)} extension(s) available: " + ", ".join(sorted(needed)),
    )


def judge_target_empty(
    objects: list[str], *, drop_if_exists: bool, resume: bool, dbname: str
) -> Check:
    name = "target.empty"
    if not objects:
        return Check(name, Verdict.PASS, f"target database {dbname} holds no user objects")
    shown = ", ".join(objects[:_LISTED]) + (
        f" and {len(objects) - _LISTED} more" if len(objects) > _LISTED else ""
    )
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


def judge_target_version(source_major: int | None, target_major: int, target_version: str) -> Check:
    name = "target.version"
    if source_major is None:
        return Check(name, Verdict.PASS, f"PostgreSQL {target_version}")
    if target_major < source_major:
        return Check(
            name,
            Verdict.WARN,
            f"PostgreSQL {target_version} is older than the source ({source_major}): the "
            "schema may use features the target lacks, and pg_dump output is not meant "
            "for older servers",
            f"migrate to PostgreSQL {source_major} or newer",
        )
    return Check(name, Verdict.PASS, f"PostgreSQL {target_version} (source {source_major})")


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


def judge_disk(
    path: Path, free: int, needed: int, cdc_estimate: int | None, *, follow: bool, basis: str
) -> Check:
    """Free space in DIR: `needed` for the dump and state, `cdc_estimate` for CDC files."""
    name = "local.disk"
    message = f"{human_bytes(free)} free in {path}"
    fix = "free space there, or use a --dir on a bigger volume"
    if free < needed:
        return Check(name, Verdict.FAIL, f"{message}: at least {human_bytes(needed)} needed", fix)
    if follow and cdc_estimate is not None and free < needed + cdc_estimate:
        return Check(
            name,
            Verdict.WARN,
            f"{message}: CDC files during the copy may need about {human_bytes(cdc_estimate)} "
            f"({basis})",
            fix,
        )
    return Check(name, Verdict.PASS, message)


def replica_identity_problem(t: ScopeTable) -> str | None:
    """Why CDC could not replay UPDATE/DELETE on `t`, or None."""
    if t.replident == "f" or (t.replident == "d" and t.has_pk):
        return None
    if t.replident == "i" and t.has_replident_index:
        return None
    return {
        "d": "no primary key",
        "n": "REPLICA IDENTITY NOTHING",
        "i": "its replica identity index is gone",
    }.get(t.replident, f"replica identity {t.replident}")


# ---------------------------------------------------------------------------------------------
# Connections


def _open(
    report: Report, info: ConnInfo, stack: contextlib.ExitStack
) -> psycopg.Connection[Any] | None:
    """A read-only session, or a FAIL line saying why not."""
    name = f"{info.role}.connect"
    try:
        conn = info.connect("pgferry preflight", settings=READ_ONLY_SETTINGS)
    except PgferryError as exc:
        report.fail(name, exc.message + f" (the other {info.role} checks are skipped)", exc.fix)
        return None
    except psycopg.Error as exc:
        report.fail(name, f"cannot set up the {info.role} session: {_error_text(exc)}")
        return None
    stack.enter_context(conn)
    report.ok(name, f"connected to {info.short()}")
    return conn


@contextlib.contextmanager
def _checking(report: Report, name: str) -> Iterator[None]:
    """A failed query makes its check "not checked" (WARN), never a silent pass."""
    try:
        yield
    except psycopg.Error as exc:
        report.warn(
            name,
            f"not checked: {_error_text(exc)}",
            "check it by hand, or run preflight as a role that can read this",
        )


def _error_text(exc: psycopg.Error) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    state = exc.sqlstate
    return f"{text} (SQLSTATE {state})" if state else text


def _settings(conn: psycopg.Connection[Any], names: Iterable[str]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def _one(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


# ---------------------------------------------------------------------------------------------
# Source


_ROLE_SQL = """
SELECT current_user, r.rolsuper, r.rolreplication, r.rolbypassrls,
       coalesce((SELECT array_agg(m.rolname::text ORDER BY m.rolname) FROM pg_roles m
                  WHERE m.rolname = ANY(%s) AND pg_has_role(current_user, m.oid, 'MEMBER')),
                '{}')
  FROM pg_roles r WHERE r.rolname = current_user
"""

_TABLES_SQL = f"""
SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relpersistence::text,
       c.relreplident::text, c.relrowsecurity,
       has_table_privilege(c.oid, 'SELECT'), has_schema_privilege(n.oid, 'USAGE'),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i
                WHERE i.indrelid = c.oid AND i.indisreplident AND i.indisvalid),
       coalesce((SELECT array_agg(i.inhparent::int8) FROM pg_inherits i
                  WHERE i.inhrelid = c.oid), '{{}}'),
       coalesce((SELECT array_agg(DISTINCT ts.spcname::text) FROM pg_tablespace ts
                  WHERE ts.oid = c.reltablespace
                     OR ts.oid IN (SELECT ic.reltablespace FROM pg_index i
                                     JOIN pg_class ic ON ic.oid = i.indexrelid
                                    WHERE i.indrelid = c.oid)), '{{}}')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'm', 'f', 'S') AND c.relpersistence IN ('p', 'u')
   AND {SYSTEM_SCHEMA_FILTER}
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY n.nspname, c.relname
"""

_LARGE_OBJECTS_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE NOT (
           r.rolsuper OR current_setting('lo_compat_privileges')::bool
           OR CASE WHEN l.lomacl IS NULL THEN pg_has_role(l.lomowner, 'USAGE')
                   ELSE EXISTS (SELECT 1 FROM aclexplode(l.lomacl) a
                                 WHERE a.privilege_type = 'SELECT'
                                   AND (a.grantee = 0 OR pg_has_role(a.grantee, 'USAGE')))
              END))
  FROM pg_largeobject_metadata l
 CROSS JOIN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) r
"""

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


def source_checks(
    report: Report,
    info: ConnInfo,
    conn: psycopg.Connection[Any],
    filters: Filters,
    opts: PreflightOptions,
) -> SourceFacts:
    """Every source check that a read-only session can make; returns what it learnt."""
    settings = _settings(conn, _SOURCE_SETTINGS)
    major = int(settings["server_version_num"]) // 10000
    in_recovery = bool(_one(conn, "SELECT pg_is_in_recovery()"))
    report.checks.append(
        judge_source_version(major, settings["server_version"], in_recovery, opts.follow)
    )
    user, superuser, replication, bypassrls, managed = conn.execute(
        _ROLE_SQL, (list(providers.MANAGED_REPLICATION_ROLES),)
    ).fetchone()  # type: ignore[misc]
    role = RoleFacts(user, superuser, replication, bypassrls, tuple(managed))
    provider = _check_provider(report, info, conn, filters)
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
    _check_slots(report, conn, settings, opts, info.dbname)
    report.checks.append(
        judge_wal_sender_timeout(
            int(settings["wal_sender_timeout"]), follow=opts.follow, user=role.user
        )
    )
    _check_max_slot_wal_keep_size(report, settings, opts)
    with _checking(report, "source.prepared_transactions"):
        rows = conn.execute(
            "SELECT gid, database, extract(epoch FROM now() - prepared)::int8 "
            "FROM pg_prepared_xacts ORDER BY prepared"
        ).fetchall()
        report.checks.append(
            judge_prepared_transactions([(r[0], r[1], r[2]) for r in rows], follow=opts.follow)
        )
    if opts.follow:
        _check_long_transactions(report, conn)
    with _checking(report, "source.xid_age"):
        datname, age = _one(
            conn, "SELECT datname, age(datfrozenxid)::int8 FROM pg_database ORDER BY 2 DESC LIMIT 1"
        )
        report.checks.append(judge_xid_age(datname, age))
    _check_connections(
        report, conn, "source", settings, opts.table_jobs + EXTRA_SOURCE_SESSIONS, role.superuser
    )
    with _checking(report, "source.connect_privilege"):
        if _one(conn, "SELECT has_database_privilege(current_database(), 'CONNECT')"):
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
    with _checking(report, "source.tables"):
        facts.tables = _read_tables(conn)
    if facts.tables is not None:
        in_scope = _scoped(facts.tables, filters)
        _check_read_privileges(report, conn, in_scope, role.user)
        _check_rls(report, conn, in_scope, filters, role)
        _check_replica_identity(report, in_scope, filters, opts)
        _check_special_tables(report, in_scope, opts)
    _check_large_objects(report, conn, opts)
    _read_source_facts(report, conn, facts, filters)
    return facts


def _check_provider(
    report: Report, info: ConnInfo, conn: psycopg.Connection[Any], filters: Filters
) -> str | None:
    name = "source.provider"
    try:
        markers = providers.read_markers(conn)
        names = markers_names(markers, conn)
    except psycopg.Error as exc:
        report.warn(name, f"not checked: {_error_text(exc)}")
        return None
    provider = providers.identify_provider(markers)
    label = providers.describe(provider)
    if provider == "supabase" and "pooler.supabase.com" in info.host:
        report.fail(
            name,
            f"{label}, through the connection pooler ({info.host}): snapshots and "
            "replication do not work through it",
            "use the direct connection string (db.<project>.supabase.co:5432; from outside "
            "Supabase this needs IPv6 or the IPv4 add-on)",
        )
        return provider
    if provider is None:
        report.ok(name, label)
        return provider
    internals = provider_internals(provider, names)
    left = [e for e in internals if not _excluded_by(filters, e)]
    if not left:
        report.ok(name, label)
        return provider
    shown = ", ".join(f"{section} {n}" for section, n in left[:_LISTED])
    if filters.is_empty():
        fix = (
            f"pgferry filters init --for {provider} --output filters.ini, review it, and "
            "pass --filters filters.ini"
        )
    else:
        fix = (
            f"add them to your filter file (pgferry filters init --for {provider} writes the "
            "full list with the reason for each)"
        )
    report.warn(
        name,
        f"{label}: the source holds platform objects that should not migrate: {shown}",
        fix,
        internals=[f"{s} {n}" for s, n in left],
    )
    return provider


def markers_names(markers: providers.ProviderMarkers, conn: psycopg.Connection[Any]) -> SourceNames:
    extensions = frozenset(r[0] for r in conn.execute("SELECT extname FROM pg_extension"))
    triggers = frozenset(r[0] for r in conn.execute("SELECT evtname FROM pg_event_trigger"))
    return SourceNames(schemas=markers.schemas, extensions=extensions, event_triggers=triggers)


def provider_internals(provider: str, names: SourceNames) -> list[tuple[str, str]]:
    """(section, name) of the provider's filter entries that exist on the source."""
    known = {
        "exclude-schema": names.schemas,
        "exclude-extension": names.extensions,
        "exclude-event-trigger": names.event_triggers,
    }
    wanted = parse_filters(providers.provider_filters(provider), f"<{provider} filters>")
    return [
        (e.section, e.name)
        for e in wanted.entries
        if e.section in known and e.name in known[e.section]
    ]


def _excluded_by(filters: Filters, entry: tuple[str, str]) -> bool:
    section, name = entry
    if section == "exclude-schema":
        if filters.include_only_table:
            return all(t.schema != name for t in filters.include_only_table)
        return name in filters.exclude_schema or bool(
            filters.include_only_schema and name not in filters.include_only_schema
        )
    if section == "exclude-extension":
        return name in filters.exclude_extension or bool(
            filters.include_only_extension and name not in filters.include_only_extension
        )
    return name in filters.exclude_event_trigger


def _check_slots(
    report: Report,
    conn: psycopg.Connection[Any],
    settings: Mapping[str, str],
    opts: PreflightOptions,
    dbname: str,
) -> None:
    with _checking(report, "source.replication_slots"):
        wal_status = "wal_status" if int(settings["server_version_num"]) >= 130000 else "NULL"
        rows = conn.execute(
            f"SELECT slot_name, slot_type, database, plugin, active, {wal_status}, "
            "coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN NULL "
            "ELSE pg_current_wal_lsn() END, restart_lsn), 0)::int8 "
            "FROM pg_replication_slots ORDER BY slot_name"
        ).fetchall()
        slots = {r[0]: SlotFacts(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows}
        retained = {r[0]: r[6] for r in rows}
        # The slot itself, and a temporary one when a resume redoes interrupted work.
        report.checks.append(
            judge_capacity(
                "source.replication_slots",
                "replication slots",
                len(slots),
                int(settings["max_replication_slots"]),
                1,
                follow=opts.follow,
                fix="raise max_replication_slots (restart; parameter group on managed "
                "services), or drop unused slots: SELECT pg_drop_replication_slot('name');",
            )
        )
        report.checks.append(
            judge_leftover_slot(
                opts.slot,
                slots.get(opts.slot),
                follow=opts.follow,
                resume=opts.resume,
                plugin=opts.plugin,
                dbname=dbname,
            )
        )
        stale = sorted(s for s, f in slots.items() if not f.active and s != opts.slot)
        if stale:
            shown = ", ".join(
                f"{s} ({slots[s].slot_type}, {human_bytes(retained[s])} retained"
                + (f", {slots[s].wal_status}" if slots[s].wal_status else "")
                + ")"
                for s in stale[:_LISTED]
            )
            report.warn(
                "source.inactive_slots",
                f"{len(stale)} inactive slot(s) hold back WAL on the source: {shown}",
                "drop the ones nothing uses any more: SELECT pg_drop_replication_slot('name');",
            )
    with _checking(report, "source.wal_senders"):
        senders = int(_one(conn, "SELECT count(*) FROM pg_stat_replication"))
        # The connection holding the slot's snapshot and the receiver stream at once.
        report.checks.append(
            judge_capacity(
                "source.wal_senders",
                "WAL senders",
                senders,
                int(settings["max_wal_senders"]),
                2,
                follow=opts.follow,
                fix="raise max_wal_senders (restart; parameter group on managed services)",
            )
        )


def _check_max_slot_wal_keep_size(
    report: Report, settings: Mapping[str, str], opts: PreflightOptions
) -> None:
    value = settings.get("max_slot_wal_keep_size")
    if value is None or not opts.follow:
        return
    name = "source.max_slot_wal_keep_size"
    if int(value) < 0:
        report.ok(name, "max_slot_wal_keep_size = -1 (the slot keeps all the WAL it needs)")
        return
    report.warn(
        name,
        f"max_slot_wal_keep_size = {value}MB: the slot is invalidated if the receiver falls "
        "that far behind, and the migration must start over",
        "make sure pgferry keeps receiving during the copy (it does unless stopped), or set "
        "max_slot_wal_keep_size = -1 (reload; parameter group on managed services)",
    )


def _check_long_transactions(report: Report, conn: psycopg.Connection[Any]) -> None:
    name = "source.long_transactions"
    with _checking(report, name):
        rows = conn.execute(
            "SELECT pid, datname, usename, extract(epoch FROM now() - xact_start)::int8 "
            "FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() "
            "AND xact_start < now() - make_interval(secs => %s) ORDER BY xact_start LIMIT %s",
            (LONG_TRANSACTION_SECONDS, _LISTED),
        ).fetchall()
        if not rows:
            report.ok(name, "no long-running writing transactions (among the visible sessions)")
            return
        shown = ", ".join(f"pid {r[0]} ({r[2]}@{r[1]}, {human_duration(r[3])})" for r in rows)
        report.warn(
            name,
            f"creating the replication slot waits until these transactions end: {shown}",
            "let them finish or end them (SELECT pg_terminate_backend(pid);) before starting",
        )


def _check_connections(
    report: Report,
    conn: psycopg.Connection[Any],
    side: str,
    settings: Mapping[str, str],
    needed: int,
    superuser: bool,
) -> None:
    with _checking(report, f"{side}.connections"):
        used, mine, in_db, role_limit, db_limit = conn.execute(
            "SELECT count(*) FILTER (WHERE backend_type = 'client backend'), "
            "count(*) FILTER (WHERE usename = current_user), "
            "count(*) FILTER (WHERE datname = current_database()), "
            "(SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user), "
            "(SELECT datconnlimit FROM pg_database WHERE datname = current_database()) "
            "FROM pg_stat_activity"
        ).fetchone()  # type: ignore[misc]
        reserved = 0 if superuser else int(settings.get("superuser_reserved_connections", 0))
        reserved += 0 if superuser else int(settings.get("reserved_connections", 0))
        limits = [(int(settings["max_connections"]) - reserved - used, "max_connections")]
        if role_limit >= 0:
            limits.append((role_limit - mine, "the role's connection limit"))
        if db_limit >= 0:
            limits.append((db_limit - in_db, "the database's connection limit"))
        available, what = min(limits)
        report.checks.append(judge_connections(side, available, needed, f"limited by {what}"))


def _read_tables(conn: psycopg.Connection[Any]) -> list[ScopeTable]:
    return [
        ScopeTable(
            oid=r[0],
            schema=r[1],
            name=r[2],
            relkind=r[3],
            persistence=r[4],
            replident=r[5],
            rls=r[6],
            can_select=r[7],
            schema_usage=r[8],
            has_pk=r[9],
            has_replident_index=r[10],
            parent_oids=tuple(r[11]),
            tablespaces=tuple(r[12]),
        )
        for r in conn.execute(_TABLES_SQL).fetchall()
    ]


def _scoped(tables: list[ScopeTable], filters: Filters) -> list[ScopeTable]:
    """The relations the filters keep (sequences: all, unless include-only-table is used)."""
    by_oid = {t.oid: t for t in tables}

    def ancestors(t: ScopeTable) -> list[QualifiedName]:
        out: list[QualifiedName] = []
        todo = list(t.parent_oids)
        while todo:
            parent = by_oid.get(todo.pop())
            if parent is not None and parent.qualname not in out:
                out.append(parent.qualname)
                todo.extend(parent.parent_oids)
        return out

    kept = []
    for t in tables:
        if t.relkind == "S" and filters.include_only_table:
            continue
        if table_in_scope(filters, t.qualname, ancestors(t)):
            kept.append(t)
    return kept


def _check_read_privileges(
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
                + ", ".join(str(t.qualname) for t in denied[:_LISTED])
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


def _check_rls(
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
    with _checking(report, name):
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


def _check_replica_identity(
    report: Report, tables: list[ScopeTable], filters: Filters, opts: PreflightOptions
) -> None:
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
    shown = ", ".join(f"{t.qualname} ({why})" for t, why in problems[:_LISTED]) + (
        f" and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
    )
    message = f"{len(problems)} table(s) without a usable replica identity: {shown}"
    if not opts.follow:
        report.skip(name, message + " (matters only with --follow)")
        return
    first = problems[0][0]
    report.warn(
        name,
        message + ": CDC cannot replay their UPDATEs and DELETEs",
        "pgferry fix-replica-identity --source ... (uses a unique index or FULL), or "
        f"ALTER TABLE {sql.Identifier(first.schema, first.name).as_string()} "
        "REPLICA IDENTITY FULL; per table",
        tables=[str(t.qualname) for t, _ in problems],
    )


def _check_special_tables(report: Report, tables: list[ScopeTable], opts: PreflightOptions) -> None:
    unlogged = [t for t in tables if t.relkind in ("r", "p") and t.persistence == "u"]
    if unlogged and opts.follow:
        report.warn(
            "source.unlogged_tables",
            f"{len(unlogged)} unlogged table(s): their changes are not in the WAL, so CDC "
            "cannot replay them after the copy: "
            + ", ".join(str(t.qualname) for t in unlogged[:_LISTED]),
            "ALTER TABLE ... SET LOGGED on the source before starting, or exclude them, or "
            "accept that they are copied once",
        )
    foreign = [t for t in tables if t.relkind == "f"]
    if foreign:
        report.ok(
            "source.foreign_tables",
            f"{len(foreign)} foreign table(s): their definitions migrate, not their remote "
            "data: " + ", ".join(str(t.qualname) for t in foreign[:_LISTED]),
        )


def _check_large_objects(
    report: Report, conn: psycopg.Connection[Any], opts: PreflightOptions
) -> None:
    name = "source.large_objects"
    with _checking(report, name):
        count, unreadable = conn.execute(_LARGE_OBJECTS_SQL).fetchone()  # type: ignore[misc]
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


def _read_source_facts(
    report: Report, conn: psycopg.Connection[Any], facts: SourceFacts, filters: Filters
) -> None:
    """What the target checks and the local checks compare against."""
    with _checking(report, "source.catalog"):
        facts.size = int(_one(conn, "SELECT pg_database_size(current_database())"))
        facts.extensions = dict(
            conn.execute(
                "SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql'"
            ).fetchall()
        )
        facts.event_triggers = [r[0] for r in conn.execute("SELECT evtname FROM pg_event_trigger")]
        facts.all_tables_publications = [
            r[0] for r in conn.execute("SELECT pubname FROM pg_publication WHERE puballtables")
        ]
        facts.catalog_objects = int(
            _one(conn, "SELECT (SELECT count(*) FROM pg_class) + (SELECT count(*) FROM pg_proc)")
        )
        schemas = frozenset(r[0] for r in conn.execute("SELECT nspname FROM pg_namespace"))
        relations = frozenset(
            t.qualname for t in facts.tables or [] if t.relkind in ("r", "p", "m", "f")
        )
        indexes: frozenset[QualifiedName] = frozenset()
        if filters.exclude_index:
            indexes = frozenset(
                QualifiedName(r[0], r[1])
                for r in conn.execute(
                    "SELECT n.nspname, c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('i', 'I')"
                )
            )
        facts.names = SourceNames(
            schemas=schemas,
            relations=relations,
            indexes=indexes,
            extensions=frozenset(facts.extensions) | {"plpgsql"},
            event_triggers=frozenset(facts.event_triggers),
        )
    if facts.major >= 14:
        with _checking(report, "source.wal_rate"):
            row = conn.execute(
                "SELECT wal_bytes::float8, extract(epoch FROM now() - stats_reset)::float8 "
                "FROM pg_stat_wal WHERE stats_reset IS NOT NULL"
            ).fetchone()
            if row is not None and row[1] and row[1] > 3600:
                facts.wal_bytes_per_second = row[0] / row[1]


def probe_replication(
    report: Report, info: ConnInfo, facts: SourceFacts, opts: PreflightOptions
) -> None:
    """What --follow does first: a replication connection, and a slot with the plugin."""
    if opts.plugin not in PLUGINS:
        report.fail(
            "source.decoding_plugin",
            f"pgferry does not decode with {opts.plugin}",
            f"use --plugin {' or '.join(PLUGINS)}",
        )
        return
    name = "source.decoding_plugin"
    if facts.can_replicate is False:
        why = "not probed: the role cannot replicate (see source.replication_role)"
        report.skip("source.replication_connection", why)
        report.skip(name, why)
        return
    _probe_replication_connection(report, info)
    if facts.wal_level != "logical":
        report.skip(name, f"not probed: wal_level is {facts.wal_level}")
        return
    probe_decoding_plugin(report, info, opts.plugin)


def probe_decoding_plugin(report: Report, info: ConnInfo, plugin: str) -> None:
    """Create and drop a temporary logical slot with `plugin`: the only check that proves
    the plugin's library loads (pg_available_extensions does not list output plugins)."""
    name = "source.decoding_plugin"
    probe = f"pgferry_preflight_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with info.connect("pgferry preflight probe", settings=PROBE_SETTINGS) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, %s, true)", (probe, plugin))
            conn.execute("SELECT pg_drop_replication_slot(%s)", (probe,))
    except PgferryError as exc:
        report.warn(name, f"not probed: {exc.message}", exc.fix)
        return
    except pgerrors.UndefinedFile as exc:
        report.fail(
            name,
            f"decoding plugin {plugin} is not installed on the source: {_error_text(exc)}",
            _plugin_fix(plugin),
        )
        return
    except pgerrors.QueryCanceled:
        report.warn(
            name,
            f"not confirmed: creating a test slot waited more than "
            f"{PROBE_SETTINGS['statement_timeout']} for running transactions to end; the "
            "migration's slot creation will wait for them too",
            "look for long or prepared transactions on the source (pg_stat_activity, "
            "pg_prepared_xacts) and end them before starting",
        )
        return
    except (pgerrors.InsufficientPrivilege, pgerrors.ConfigurationLimitExceeded) as exc:
        report.skip(name, f"not probed: {_error_text(exc)}")
        return
    except psycopg.Error as exc:
        report.fail(
            name,
            f"cannot create a {plugin} slot: {_error_text(exc)}",
            _plugin_fix(plugin),
        )
        return
    report.ok(name, f"a temporary {plugin} slot was created and dropped")


def _probe_replication_connection(report: Report, info: ConnInfo) -> None:
    name = "source.replication_connection"
    try:
        with info.connect_replication("pgferry preflight") as conn:
            result = conn.pgconn.exec_(b"IDENTIFY_SYSTEM")
            if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                raise pgerrors.error_from_result(result, encoding=conn.info.encoding)
    except PgferryError as exc:
        report.fail(
            name,
            f"a replication connection is refused: {exc.message}",
            "connect directly to the server, not through a pooler (pgbouncer, RDS Proxy); "
            "allow the role in pg_hba.conf; check REPLICATION and max_wal_senders",
        )
        return
    except psycopg.Error as exc:
        report.fail(
            name,
            f"the replication protocol is refused: {_error_text(exc)}",
            "connect directly to the server, not through a pooler (pgbouncer, RDS Proxy)",
        )
        return
    report.ok(name, "replication connection accepted (IDENTIFY_SYSTEM)")


def _plugin_fix(plugin: str) -> str:
    if plugin == "wal2json":
        return (
            "install wal2json on the source (Debian/Ubuntu: postgresql-NN-wal2json; RDS, "
            "Aurora, Cloud SQL and Azure ship it), or use --plugin test_decoding"
        )
    if plugin == "test_decoding":
        return "install the PostgreSQL contrib package on the source (test_decoding is in it)"
    return f"install the {plugin} output plugin on the source"


# ---------------------------------------------------------------------------------------------
# Target


_TARGET_SETTINGS = (
    "server_version",
    "server_version_num",
    "max_connections",
    "superuser_reserved_connections",
    "reserved_connections",
    "max_worker_processes",
    "max_parallel_workers",
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
    settings = _settings(conn, _TARGET_SETTINGS)
    major = int(settings["server_version_num"]) // 10000
    report.checks.append(
        judge_target_version(src.major if src else None, major, settings["server_version"])
    )
    with _checking(report, "target.provider"):
        report.facts["target provider"] = providers.describe(providers.detect_provider(conn))
    user, superuser = conn.execute(
        "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()  # type: ignore[misc]
    with _checking(report, "target.writable"):
        in_recovery, read_only = conn.execute(
            "SELECT pg_is_in_recovery(), (SELECT reset_val FROM pg_settings "
            "WHERE name = 'default_transaction_read_only')"
        ).fetchone()  # type: ignore[misc]
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
    with _checking(report, "target.origin"):
        exists = conn.execute(
            "SELECT 1 FROM pg_replication_origin WHERE roname = %s", (opts.origin,)
        ).fetchone()
        _judge_origin(report, opts, exists is not None)
    with _checking(report, "target.leftover_schema"):
        found = [
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)",
                (list(_LEFTOVER_SCHEMAS),),
            )
        ]
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
    with _checking(report, "target.empty"):
        report.checks.append(
            judge_target_empty(
                user_objects(conn, extensions=False),
                drop_if_exists=opts.drop_if_exists,
                resume=opts.resume,
                dbname=info.dbname,
            )
        )
    _check_connections(
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
        _cross_checks(report, conn, major, superuser, src, filters)


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
    with _checking(report, name):
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
            t.schema == "public" for t in _scoped(src.tables or [], filters)
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
    with _checking(report, name):
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("SELECT set_config('session_replication_role', 'replica', true)")
        except pgerrors.InsufficientPrivilege:
            problems.append("cannot set session_replication_role (apply disables triggers with it)")
            fixes.append(
                f"GRANT SET ON PARAMETER session_replication_role TO {role}; (PostgreSQL 15+, "
                "as a superuser; on managed services use the admin role)"
            )
        rows = conn.execute(
            "SELECT p.oid::regprocedure::text, p.proacl IS NULL, "
            "has_function_privilege(p.oid, 'EXECUTE') "
            "FROM pg_proc p WHERE p.oid = ANY(%s::regprocedure[])",
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


def _cross_checks(
    report: Report,
    conn: psycopg.Connection[Any],
    target_major: int,
    target_superuser: bool,
    src: SourceFacts,
    filters: Filters,
) -> None:
    """Target checks that compare with what the source holds."""
    if src.extensions is not None:
        with _checking(report, "target.extensions"):
            available: dict[str, AvailableExtension] = {}
            columns = "bool_and(superuser AND NOT trusted)" if target_major >= 13 else "false"
            for ext, versions, superuser_only in conn.execute(
                f"SELECT name, array_agg(version), {columns} "
                "FROM pg_available_extension_versions GROUP BY name"
            ):
                available[ext] = AvailableExtension(ext, frozenset(versions), bool(superuser_only))
            installed = [r[0] for r in conn.execute("SELECT extname FROM pg_extension")]
            report.checks.append(
                judge_extensions(
                    extensions_in_scope(filters, src.extensions),
                    available,
                    installed,
                    target_superuser=target_superuser,
                )
            )
    if src.event_triggers and not target_superuser:
        kept = [e for e in src.event_triggers if e not in filters.exclude_event_trigger]
        if kept:
            report.warn(
                "target.event_triggers",
                f"creating event triggers needs a superuser on the target: {', '.join(kept)}",
                "list them under [exclude-event-trigger] in the filter file, or create them "
                "after the migration as an administrator",
            )
    if src.all_tables_publications:
        names = ", ".join(src.all_tables_publications)
        if target_superuser:
            consequence = "they are recreated on the target and publish all of its tables"
        else:
            consequence = "creating them needs a superuser on the target"
        report.warn(
            "target.publications",
            f"FOR ALL TABLES publication(s) on the source: {names}: {consequence}",
            "drop them on the target after the migration unless it must publish, or create "
            "them there by hand as an administrator",
        )
    with _checking(report, "target.encoding"):
        encoding = _one(
            conn,
            "SELECT pg_encoding_to_char(encoding) FROM pg_database "
            "WHERE datname = current_database()",
        )
        if src.encoding and encoding != src.encoding:
            report.warn(
                "target.encoding",
                f"the source is {src.encoding}, the target {encoding}: text that does not "
                "convert makes the copy fail",
                f"create the target database with ENCODING '{src.encoding}' TEMPLATE template0",
            )
        else:
            report.ok("target.encoding", f"both {encoding}")
    if src.tables is not None:
        used = sorted(
            {ts for t in _scoped(src.tables, filters) for ts in t.tablespaces}
            - {"pg_default", "pg_global"}
        )
        if used:
            with _checking(report, "target.tablespaces"):
                have = {r[0] for r in conn.execute("SELECT spcname FROM pg_tablespace")}
                missing = [ts for ts in used if ts not in have]
                if missing:
                    report.warn(
                        "target.tablespaces",
                        "tablespaces used in scope are missing on the target: "
                        + ", ".join(missing),
                        "create them on the target (CREATE TABLESPACE), or clone with "
                        "--no-tablespaces",
                    )


# ---------------------------------------------------------------------------------------------
# This machine


def check_filter_file(report: Report, filters: Filters, error: FilterError | None) -> None:
    name = "local.filters"
    if error is not None:
        report.fail(
            name,
            f"filter file: {error.message} (the checks below cover every object)",
            error.fix or "fix the line named above",
        )
        return
    if filters.is_empty():
        report.ok(name, "no filters: everything migrates")
        return
    if filters.warnings:
        report.warn(
            name,
            f"{filters.path}: {len(filters.entries)} entries; " + "; ".join(filters.warnings),
            "fix the lines named above",
        )
        return
    report.ok(name, f"{filters.path}: {len(filters.entries)} entries")


def local_checks(
    report: Report, src: SourceFacts | None, filters: Filters, opts: PreflightOptions
) -> None:
    if src is not None and src.names is not None and not filters.is_empty():
        unmatched = unmatched_filter_names(filters, src.names)
        if unmatched:
            report.warn(
                "local.filters_match",
                f"{len(unmatched)} filter name(s) match nothing: " + "; ".join(unmatched),
                "check the spelling (quote mixed-case names) or remove the lines",
            )
        else:
            report.ok("local.filters_match", "every filter name matches an object on the source")
    if src is None:
        report.skip("local.pg_dump", "not checked: the source version is unknown")
    else:
        try:
            tools = find_dump_tools(src.major)
        except EnvironmentProblem as exc:
            report.fail("local.pg_dump", exc.message, exc.fix)
        else:
            report.ok(
                "local.pg_dump",
                f"pg_dump and pg_restore {tools.major} ({tools.pg_dump.parent}) for a "
                f"PostgreSQL {src.major} source",
            )
    _check_workdir(report, opts)
    _check_disk(report, src, opts)


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_workdir(report: Report, opts: PreflightOptions) -> None:
    name = "local.workdir"
    path = opts.workdir
    base = _existing_parent(path)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        report.fail(name, f"{base} is not a writable directory", "choose another --dir")
        return
    has_state = (path / "state.db").exists()
    if has_state and not opts.resume:
        report.warn(
            name,
            f"{path} holds a previous migration",
            "continue it with --resume, discard it with --restart, or use another --dir",
        )
    elif opts.resume and not has_state:
        report.warn(name, f"--resume: {path} holds no migration to resume", "check --dir")
    else:
        report.ok(name, f"{path} is usable")


def _check_disk(report: Report, src: SourceFacts | None, opts: PreflightOptions) -> None:
    name = "local.disk"
    base = _existing_parent(opts.workdir)
    try:
        free = shutil.disk_usage(base).free
    except OSError as exc:
        report.warn(name, f"not checked: {exc.strerror or exc}")
        return
    # The schema dump grows with the number of catalog objects, a few KB each.
    dump = DISK_HEADROOM + (src.catalog_objects * 4096 if src else 0)
    cdc: int | None = None
    basis = ""
    if src is not None and src.size is not None:
        copy_seconds = src.size / (COPY_BYTES_PER_SECOND_PER_JOB * max(opts.table_jobs, 1))
        if src.wal_bytes_per_second is not None:
            cdc = int(src.wal_bytes_per_second * copy_seconds)
            basis = (
                f"the source writes {human_bytes(src.wal_bytes_per_second * 3600)} of WAL per "
                f"hour; the copy of {human_bytes(src.size)} may take {human_duration(copy_seconds)}"
            )
        else:
            cdc = src.size
            basis = f"no WAL rate known: as much as the database size, {human_bytes(src.size)}"
    report.checks.append(judge_disk(base, free, dump, cdc, follow=opts.follow, basis=basis))
