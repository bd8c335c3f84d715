"""Replication slots (on the source) and replication origins (on the target): the one
home of their SQL. CDC creates and uses them; preflight, diagnose, cdc-status, cleanup and
target-clean look at them or drop them through these functions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# The server's current WAL position, on a primary or (PostgreSQL 16+ logical sources) a
# standby.
_CURRENT_LSN = (
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END"
)


# What CDC calls on the target to keep its position (this module, cdc/sqlgen.py): the
# migration role needs EXECUTE on each (preflight checks).
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
class SlotRow:
    """One replication slot, as pg_replication_slots shows it."""

    name: str
    slot_type: str
    database: str | None
    plugin: str | None
    active: bool
    wal_status: str | None  # PostgreSQL 13+: reserved, extended, unreserved, lost
    retained_bytes: int | None  # WAL the slot holds back
    safe_wal_size: int | None  # PostgreSQL 13+: bytes written before the slot is lost


def list_slots(conn: psycopg.Connection[Any]) -> list[SlotRow]:
    """Every replication slot of the cluster, by name."""
    v13 = conn.info.server_version >= 130000
    rows = conn.execute(
        "SELECT slot_name, slot_type, database, plugin, active, "
        f"{'wal_status' if v13 else 'NULL::text'}, "
        f"pg_wal_lsn_diff({_CURRENT_LSN}, restart_lsn)::int8, "
        f"{'safe_wal_size' if v13 else 'NULL::int8'} "
        "FROM pg_replication_slots ORDER BY slot_name"
    ).fetchall()
    return [SlotRow(*r) for r in rows]


# Column names of slot_health's row, in order.
SLOT_HEALTH_COLUMNS = (
    "active",
    "active_pid",
    "wal_status",
    "safe_wal_size",
    "max_slot_wal_keep_size",
    "restart_lsn",
    "confirmed_flush_lsn",
    "retained_wal_bytes",
    "unconfirmed_bytes",
    "plugin",
    "walsender_state",
    "write_lag_seconds",
    "flush_lag_seconds",
    "replay_lag_seconds",
    "seconds_since_reply",
    "source_current_lsn",
)

_SLOT_HEALTH_SQL = """
SELECT s.active, s.active_pid, {wal_status}, {safe_wal_size}, {keep_size},
       s.restart_lsn::text, s.confirmed_flush_lsn::text,
       pg_wal_lsn_diff(cur.lsn, s.restart_lsn)::bigint,
       pg_wal_lsn_diff(cur.lsn, s.confirmed_flush_lsn)::bigint,
       s.plugin, r.state,
       extract(epoch FROM r.write_lag)::float8,
       extract(epoch FROM r.flush_lag)::float8,
       extract(epoch FROM r.replay_lag)::float8,
       extract(epoch FROM clock_timestamp() - r.reply_time)::float8,
       cur.lsn::text
  FROM pg_replication_slots s
 CROSS JOIN (SELECT {current} AS lsn) cur
  LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
 WHERE s.slot_name = %s
"""


def slot_health(conn: psycopg.Connection[Any], slot: str) -> dict[str, Any] | None:
    """One slot's activity, WAL retention and its walsender's lags (SLOT_HEALTH_COLUMNS);
    None when the slot does not exist."""
    v13 = conn.info.server_version >= 130000
    query = _SLOT_HEALTH_SQL.format(
        wal_status="s.wal_status" if v13 else "NULL::text",
        safe_wal_size="s.safe_wal_size" if v13 else "NULL::bigint",
        keep_size="current_setting('max_slot_wal_keep_size')" if v13 else "NULL",
        current=_CURRENT_LSN,
    )
    row = conn.execute(query, (slot,)).fetchone()  # type: ignore[arg-type]
    return None if row is None else dict(zip(SLOT_HEALTH_COLUMNS, row, strict=True))


def emit_heartbeat(conn: psycopg.Connection[Any]) -> None:
    """A logical message in this database, outside any transaction (nothing is stored):
    decoding reaches a position in a quiet database, and its slot can confirm it."""
    conn.execute("SELECT pg_logical_emit_message(false, 'pgferry', 'heartbeat')")


def slot_exists(conn: psycopg.Connection[Any], slot: str) -> bool:
    """Whether the slot exists on this server."""
    return slot_user(conn, slot)[0]


def slot_user(conn: psycopg.Connection[Any], slot: str) -> tuple[bool, int | None]:
    """(exists, PID of the walsender using it or None)."""
    row = conn.execute(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    return (False, None) if row is None else (True, row[0])


def end_slot_user(conn: psycopg.Connection[Any], slot: str, pid: int) -> None:
    """Terminate the walsender `pid` using the slot and wait (up to 10 s) until the slot
    is free."""
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    for _ in range(100):
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if not row or not row[0]:
            return
        time.sleep(0.1)


def drop_slot(conn: psycopg.Connection[Any], slot: str) -> None:
    """Drop the slot (it must exist and be free)."""
    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def create_temporary_slot(conn: psycopg.Connection[Any], slot: str, plugin: str) -> None:
    """A temporary logical slot (dropped when the session ends): preflight's probe."""
    conn.execute("SELECT pg_create_logical_replication_slot(%s, %s, true)", (slot, plugin))


def origin_exists(conn: psycopg.Connection[Any], origin: str) -> bool:
    """Whether the replication origin exists on this server."""
    row = conn.execute("SELECT pg_replication_origin_oid(%s)", (origin,)).fetchone()
    return row is not None and row[0] is not None


def list_origins(conn: psycopg.Connection[Any]) -> list[str]:
    """Every replication origin's name, sorted."""
    return [r[0] for r in conn.execute("SELECT roname FROM pg_replication_origin ORDER BY 1")]


def create_origin(conn: psycopg.Connection[Any], origin: str, position: str | None) -> None:
    """Create the origin, positioned at `position` (an LSN) when given."""
    conn.execute("SELECT pg_replication_origin_create(%s)", (origin,))
    if position is not None:
        advance_origin(conn, origin, position)


def advance_origin(conn: psycopg.Connection[Any], origin: str, position: str) -> None:
    """Set the origin's position (an LSN), as if it had applied everything up to there."""
    conn.execute("SELECT pg_replication_origin_advance(%s, %s::pg_lsn)", (origin, position))


def lane_origin(origin: str, lane: int) -> str:
    """The origin of parallel apply's lane `lane` (--apply-jobs): the origin itself for
    lane 0, `origin.N` for the others."""
    return origin if lane == 0 else f"{origin}.{lane}"


_LANES = (
    "FROM pg_catalog.pg_replication_origin "
    "WHERE roname = %(o)s OR (starts_with(roname, %(o)s || '.') "
    "AND substr(roname, length(%(o)s) + 2) ~ '^[1-9][0-9]{0,3}$')"
)


def lane_origins(conn: psycopg.Connection[Any], origin: str) -> dict[str, str | None]:
    """The origins of every lane an apply with `origin` has used (the origin itself
    included, when it exists), with their positions (None: never advanced)."""
    rows = conn.execute(
        "SELECT roname, pg_replication_origin_progress(roname, false)::text " + _LANES,
        {"o": origin},
    ).fetchall()
    return {name: position for name, position in rows}


def applied_position(conn: psycopg.Connection[Any], origin: str) -> str | None:
    """What apply with `origin` has applied, as text (None: nothing recorded): the
    highest position of its lanes' origins (cdc/parallel.py: the target holds a prefix
    of the stream, so every transaction up to there)."""
    row = conn.execute(
        "SELECT max(pg_replication_origin_progress(roname, false))::text " + _LANES,
        {"o": origin},
    ).fetchone()
    return row[0] if row else None


def drop_origin_sql(origin: str) -> sql.Composed:
    """The statement that drops the origin."""
    return sql.SQL("SELECT pg_replication_origin_drop({})").format(sql.Literal(origin))


def drop_origin(conn: psycopg.Connection[Any], origin: str) -> None:
    """Drop the origin (no session may be using it)."""
    conn.execute(drop_origin_sql(origin))


def origin_progress(conn: psycopg.Connection[Any], origin: str, *, flush: bool) -> str | None:
    """The origin's position as text (None: no such origin, or never advanced); `flush`
    first flushes the server's WAL up to the commit that set it."""
    row = conn.execute(
        "SELECT CASE WHEN pg_replication_origin_oid(%(o)s) IS NULL THEN NULL "
        "ELSE pg_replication_origin_progress(%(o)s, %(f)s)::text END",
        {"o": origin, "f": flush},
    ).fetchone()
    return row[0] if row else None


def origin_session_setup(conn: psycopg.Connection[Any], origin: str) -> str | None:
    """Bind this session to the origin (its commits advance it); returns its position."""
    row = conn.execute(
        "SELECT pg_replication_origin_session_setup(%s), "
        "pg_replication_origin_progress(%s, false)::text",
        (origin, origin),
    ).fetchone()
    return row[1] if row else None


# -- publications (pgoutput publishes what a publication names) --------------------------


def publication_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", (name,)
    ).fetchone()
    return row is not None


# The comment pgferry puts on the publications it creates: cleanup drops only those, never
# a publication of the same name that someone else made.
PUBLICATION_MARK = "created by pgferry for the replication slot of the same name"


def create_publication(
    conn: psycopg.Connection[Any], name: str, tables: list[tuple[str, str]]
) -> None:
    """A publication of exactly these tables (never FOR ALL TABLES: publishing a table
    without a replica identity makes the source's own UPDATE and DELETE on it fail),
    marked as pgferry's."""
    if not tables:
        query = sql.SQL("CREATE PUBLICATION {}").format(sql.Identifier(name))
    else:
        query = sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
            sql.Identifier(name),
            sql.SQL(", ").join(sql.SQL("ONLY {}").format(sql.Identifier(*t)) for t in tables),
        )
    with conn.transaction():
        conn.execute(query)
        conn.execute(
            sql.SQL("COMMENT ON PUBLICATION {} IS {}").format(
                sql.Identifier(name), sql.Literal(PUBLICATION_MARK)
            )
        )


def drop_publication(conn: psycopg.Connection[Any], name: str) -> bool:
    """Drop the publication if pgferry created it (its comment says so); one of the same
    name made by someone else is left alone. True when dropped."""
    row = conn.execute(
        "SELECT pg_catalog.obj_description(oid, 'pg_publication') "
        "FROM pg_catalog.pg_publication WHERE pubname = %s",
        (name,),
    ).fetchone()
    if row is None or row[0] != PUBLICATION_MARK:
        return False
    conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))
    return True


def published_tables(conn: psycopg.Connection[Any], name: str) -> set[tuple[str, str]]:
    """The tables the publication publishes (partitions of a published parent included)."""
    rows = conn.execute(
        "SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables WHERE pubname = %s",
        (name,),
    ).fetchall()
    return {(r[0], r[1]) for r in rows}
