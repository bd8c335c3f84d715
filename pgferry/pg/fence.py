"""Fencing the source at the cutover: no new write is accepted in the database.

`default_transaction_read_only` set on the database makes every new session read-only
(a session may still turn it off: a fence against mistakes, not against malice); the
application's open sessions are ended so that they reconnect under it. pgferry's own
sessions (its application_name) are left alone. Undone with `unfence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgferry.pg.activity import APP_SESSIONS_SQL, WRITERS_SQL

_READ_ONLY_SQL = """
SELECT EXISTS (
  SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
   WHERE d.datname = current_database() AND s.setrole = 0
     AND 'default_transaction_read_only=on' = ANY(s.setconfig))
"""


@dataclass(frozen=True)
class Session:
    pid: int
    role: str
    application: str


def app_sessions(conn: psycopg.Connection[Any], roles: list[str]) -> list[Session]:
    return [Session(r[0], r[1], r[2]) for r in conn.execute(APP_SESSIONS_SQL, (roles,))]


def writers(conn: psycopg.Connection[Any]) -> list[Session]:
    return [Session(r[0], r[1], r[2]) for r in conn.execute(WRITERS_SQL)]


def is_fenced(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(_READ_ONLY_SQL).fetchone()
    return bool(row and row[0])


def fence(conn: psycopg.Connection[Any], dbname: str, sessions: list[Session]) -> int:
    """The database read-only for new sessions, then `sessions` ended; returns how many
    were ended (some may have gone meanwhile)."""
    conn.execute(
        sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
            sql.Identifier(dbname)
        )
    )
    ended = 0
    for s in sessions:
        row = conn.execute("SELECT pg_terminate_backend(%s)", (s.pid,)).fetchone()
        ended += bool(row and row[0])
    return ended


def unfence(conn: psycopg.Connection[Any], dbname: str) -> None:
    conn.execute("SET default_transaction_read_only = off")  # this session is fenced too
    conn.execute(
        sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(
            sql.Identifier(dbname)
        )
    )
