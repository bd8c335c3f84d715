"""Phases 8 and 9: VACUUM ANALYZE copied tables, set sequences to the source's values."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.model import Sequence, Table


def vacuum_analyze(conn: psycopg.Connection[Any], table: Table) -> None:
    """VACUUM (ANALYZE) one table; `conn` must be in autocommit mode."""
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table.ident))


def read_sequence(conn: psycopg.Connection[Any], seq: Sequence) -> tuple[int, bool]:
    """last_value and is_called of a source sequence."""
    row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(seq.ident)).fetchone()
    assert row is not None
    return int(row[0]), bool(row[1])


def set_sequence(
    conn: psycopg.Connection[Any], seq: Sequence, last_value: int, is_called: bool
) -> None:
    conn.execute(
        "SELECT pg_catalog.setval(%s::regclass, %s, %s)",
        (sql.Identifier(seq.schema, seq.name).as_string(conn), last_value, is_called),
    )
