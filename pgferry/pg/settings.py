"""Server settings: the one home of the SQL that reads pg_settings and sets parameters.

Which values a use of a session needs are named in `pg.profiles`; this module reads and
writes them. `set_settings` goes through set_config (a plain function, so names and
values are bound parameters, never spliced into SQL) in one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql

# Every setting as a new session of this role in this database starts with (reset_val),
# with what `pgferry params` groups and judges it by.
SETTINGS_REPORT_SQL = """
SELECT name, coalesce(reset_val, setting), unit, vartype, context, category, source
  FROM pg_catalog.pg_settings
"""


def set_settings(
    conn: psycopg.Connection[Any] | psycopg.Cursor[Any],
    settings: Mapping[str, str],
    *,
    local: bool,
) -> None:
    """Set parameters for the session, or (`local`) for the current transaction only."""
    if not settings:
        return
    calls = sql.SQL(", ").join(
        sql.SQL("pg_catalog.set_config({}, {}, {})").format(
            sql.Literal(name), sql.Literal(value), sql.Literal(local)
        )
        for name, value in settings.items()
    )
    conn.execute(sql.SQL("SELECT {}").format(calls))


def read_settings(conn: psycopg.Connection[Any], names: Iterable[str]) -> dict[str, str]:
    """The named settings' current values, by name (names the server lacks are absent)."""
    rows = conn.execute(
        "SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY(%s)", (list(names),)
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def reset_value(conn: psycopg.Connection[Any], name: str) -> str | None:
    """The value a new session of this role in this database starts with (None: unknown)."""
    row = conn.execute(
        "SELECT reset_val FROM pg_catalog.pg_settings WHERE name = %s", (name,)
    ).fetchone()
    return None if row is None else row[0]


def setting_names(conn: psycopg.Connection[Any], pattern: str | None = None) -> set[str]:
    """The names of the server's settings, or of those matching a regular expression."""
    if pattern is None:
        rows = conn.execute("SELECT name FROM pg_catalog.pg_settings").fetchall()
    else:
        rows = conn.execute(
            "SELECT name FROM pg_catalog.pg_settings WHERE name ~ %s", (pattern,)
        ).fetchall()
    return {r[0] for r in rows}
