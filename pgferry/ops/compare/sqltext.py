"""SQL text of `compare_data`, and the pieces both comparisons share: pure, no connection.

Everything here is text built from catalog names, kept in one place so that its quoting
is unit tested with hostile names: the per-table fingerprint and the sequence queries,
the catalog reads of one side's relations, sequences and large objects, the condition
that leaves objects belonging to extensions out, and how names are shown to users.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from psycopg import sql

from pgferry.catalog.queries import SYSTEM_SCHEMA_FILTER


def not_member(classid: str, oid: str) -> str:
    """SQL condition: the object is not part of an extension."""
    return (
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
        f"WHERE d.classid = 'pg_catalog.{classid}'::pg_catalog.regclass "
        f"AND d.objid = {oid} AND d.deptype = 'e')"
    )


_PLAIN_IDENT = re.compile(r"^[a-z_][a-z0-9_$]*$")


def display_name(*parts: str) -> str:
    """schema.name for humans: each part double-quoted only when it needs to be."""
    return ".".join(p if _PLAIN_IDENT.match(p) else '"' + p.replace('"', '""') + '"' for p in parts)


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


RELATIONS_SQL = f"""
SELECT n.nspname, c.relname, c.relkind::text, c.relispopulated,
       CASE WHEN c.relkind = 'r' OR c.relispopulated THEN pg_catalog.pg_relation_size(c.oid)
            ELSE 0 END,
       coalesce((SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
                   FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}')
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm')
   AND c.relpersistence IN ('p', 'u')
   AND {SYSTEM_SCHEMA_FILTER}
   AND {not_member("pg_class", "c.oid")}
"""

SEQUENCES_SQL = f"""
SELECT n.nspname, c.relname, s.seqincrement,
       pg_catalog.has_sequence_privilege(c.oid, 'SELECT')
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
 WHERE c.relkind = 'S'
   AND {SYSTEM_SCHEMA_FILTER}
   AND {not_member("pg_class", "c.oid")}
 ORDER BY 1, 2
"""

LARGE_OBJECT_CHUNK_SQL = """
SELECT m.oid::int8, pg_catalog.md5(c), pg_catalog.length(c)
  FROM pg_catalog.unnest(%s::pg_catalog.oid[]) AS m(oid),
       LATERAL pg_catalog.lo_get(m.oid, %s::int8, %s::int4) AS c
"""
