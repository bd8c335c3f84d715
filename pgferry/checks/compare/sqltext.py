"""SQL text of `compare_data`, and the row hash both comparisons share: pure, no connection.

Everything here is text built from catalog names, kept in one place so that its quoting
is unit tested with hostile names: the row hash, the per-table fingerprint, the sequence
values and the large object chunks. The catalog reads (which relations and sequences
there are) live in `pgferry.catalog.definitions`.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql


def row_hash(columns: Sequence[str], alias: str = "r") -> sql.Composed:
    """One row's md5, the row built from `columns` in the given order, each referenced
    through the alias (a column named like the alias cannot be mistaken for it)."""
    cols = sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns)
    return sql.SQL("pg_catalog.md5(ROW({})::text)").format(cols)


def hash_sum(columns: Sequence[str], alias: str = "r") -> sql.Composed:
    """The content hash of a set of rows: the sum of the first 64 bits of each row's md5,
    independent of row order, sensitive to duplicates. compare and verify both use it."""
    return sql.SQL(
        "coalesce(pg_catalog.sum(('x' || pg_catalog.substr({}, 1, 16))"
        "::bit(64)::bigint::numeric), 0)::text"
    ).format(row_hash(columns, alias))


def fingerprint_query(schema: str, name: str, columns: Sequence[str]) -> sql.Composed:
    """Row count and content hash of one relation's own rows (not its children's)."""
    return sql.SQL("SELECT pg_catalog.count(*), {} FROM ONLY {} AS r").format(
        hash_sum(columns), sql.Identifier(schema, name)
    )


def sequence_query(sequences: Sequence[tuple[str, str]]) -> sql.Composed:
    """last_value and is_called of several sequences in one statement, in the given order."""
    parts = [
        sql.SQL("SELECT {i}::int, last_value::int8, is_called FROM {seq}").format(
            i=sql.Literal(i), seq=sql.Identifier(schema, name)
        )
        for i, (schema, name) in enumerate(sequences)
    ]
    return sql.SQL(" UNION ALL ").join(parts)


LARGE_OBJECT_CHUNK_SQL = """
SELECT m.oid::int8, pg_catalog.md5(c), pg_catalog.length(c)
  FROM pg_catalog.unnest(%s::pg_catalog.oid[]) AS m(oid),
       LATERAL pg_catalog.lo_get(m.oid, %s::int8, %s::int4) AS c
"""
