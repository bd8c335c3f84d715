"""Phases 6 and 7: build indexes, then attach PK/UNIQUE constraints USING INDEX.

A primary key or unique constraint is built as a plain CREATE UNIQUE INDEX (SHARE lock:
runs alongside the table's other index builds) and attached afterwards with a quick
ALTER TABLE ... ADD CONSTRAINT ... USING INDEX. Exclusion constraints build their own
index in the ALTER TABLE.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.model import Index, Table
from pgferry.catalog.target import constraint_exists, relation_exists
from pgferry.pg.settings import set_settings

_CREATE_INDEX = re.compile(r"^CREATE (UNIQUE )?INDEX ")


def create_index_sql(idx: Index, *, if_not_exists: bool) -> sql.SQL:
    """The source's pg_get_indexdef, optionally made idempotent."""
    text = idx.definition
    if if_not_exists:
        text = _CREATE_INDEX.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX IF NOT EXISTS ", text)
    return sql.SQL(text)  # type: ignore[arg-type]  # catalog text, not user input


def index_extras_sql(idx: Index, table: Table, *, name: str | None = None) -> list[sql.Composed]:
    """What pg_dump emits with an index: statistics targets, replica identity, cluster."""
    ident = sql.Identifier(idx.schema, name or idx.name)
    out: list[sql.Composed] = [
        sql.SQL("ALTER INDEX {} ALTER COLUMN {} SET STATISTICS {}").format(
            ident, sql.Literal(col), sql.Literal(target)
        )
        for col, target in idx.stat_targets
    ]
    if idx.is_replident:
        out.append(
            sql.SQL("ALTER TABLE ONLY {} REPLICA IDENTITY USING INDEX {}").format(
                table.ident, sql.Identifier(name or idx.name)
            )
        )
    if idx.is_clustered:
        out.append(
            sql.SQL("ALTER TABLE ONLY {} CLUSTER ON {}").format(
                table.ident, sql.Identifier(name or idx.name)
            )
        )
    return out


def add_constraint_sql(idx: Index, table: Table) -> sql.Composed:
    """ALTER TABLE ... ADD CONSTRAINT for the constraint this index backs."""
    assert idx.constraint_name is not None and idx.constraint_type is not None
    name = sql.Identifier(idx.constraint_name)
    if idx.constraint_type == "x":
        return sql.SQL("ALTER TABLE ONLY {} ADD CONSTRAINT {} {}").format(
            table.ident,
            name,
            sql.SQL(idx.constraint_def or ""),  # type: ignore[arg-type]
        )
    kind = sql.SQL("PRIMARY KEY" if idx.constraint_type == "p" else "UNIQUE")
    tail = sql.SQL("")
    if idx.deferrable:
        tail = sql.SQL(" DEFERRABLE INITIALLY DEFERRED" if idx.deferred else " DEFERRABLE")
    return sql.SQL("ALTER TABLE ONLY {} ADD CONSTRAINT {} {} USING INDEX {}{}").format(
        table.ident, name, kind, sql.Identifier(idx.name), tail
    )


def build_index(
    conn: psycopg.Connection[Any],
    idx: Index,
    table: Table,
    *,
    resuming: bool,
    parallel_workers: int,
    use_tablespace: bool,
) -> bool:
    """CREATE INDEX and its extras. Returns False when it already existed (resume)."""
    if resuming and relation_exists(conn, idx.schema, idx.name):
        return False
    with conn.cursor() as cur:
        tablespace = idx.tablespace if use_tablespace and idx.tablespace else ""
        session = {
            "max_parallel_maintenance_workers": str(parallel_workers),
            "default_tablespace": tablespace,
        }
        set_settings(cur, session, local=False)
        with conn.transaction():
            cur.execute(create_index_sql(idx, if_not_exists=resuming))
            if idx.constraint_type is None:
                for stmt in index_extras_sql(idx, table):
                    cur.execute(stmt)
    return True


def attach_constraint(
    conn: psycopg.Connection[Any], idx: Index, table: Table, *, resuming: bool
) -> bool:
    """ADD CONSTRAINT (USING INDEX for PK/UNIQUE). False when it already existed."""
    if resuming and constraint_exists(conn, table.schema, table.name, idx.constraint_name):
        return False
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(add_constraint_sql(idx, table))
        # After USING INDEX the index carries the constraint's name.
        for stmt in index_extras_sql(idx, table, name=idx.constraint_name):
            cur.execute(stmt)
    return True
