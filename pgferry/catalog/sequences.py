"""A sequence's value: read on the source, set on the target (phase 9 and cutover)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.model import Sequence


def read_sequence(conn: psycopg.Connection[Any], seq: Sequence) -> tuple[int, bool]:
    """last_value and is_called of a source sequence."""
    row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(seq.ident)).fetchone()
    assert row is not None
    return int(row[0]), bool(row[1])


def set_sequence(
    conn: psycopg.Connection[Any], seq: Sequence, last_value: int, is_called: bool
) -> None:
    """setval on the target: the next nextval() gives what the source's would."""
    conn.execute(
        "SELECT pg_catalog.setval(%s::regclass, %s, %s)",
        (sql.Identifier(seq.schema, seq.name).as_string(conn), last_value, is_called),
    )
