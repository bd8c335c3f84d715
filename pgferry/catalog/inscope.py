"""Whether the filters keep a relation: the one rule every command applies by name.

A partition or an inheritance child follows its ancestors: it is out when any of them is
excluded (by schema or by name), and in under [include-only-table] when it or any of them
is listed. The clone reaches the same result through the dump's dependencies
(catalog/scope.py); preflight, fix-replica-identity and apply, which have no dump, ask
here. `data=True` asks whether the relation's rows migrate (and so whether CDC applies
its changes): [exclude-table-data] keeps a table's definition but not its rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from pgferry.catalog.filters import Filters, QualifiedName

# Every ancestor (partition parents and inheritance parents, at any depth, nearest first)
# of the pg_class row aliased "c", as an array of [schema, name] pairs.
ANCESTORS_SQL = """
coalesce((WITH RECURSIVE up(relid, depth) AS (
              SELECT i.inhparent, 1 FROM pg_inherits i WHERE i.inhrelid = c.oid
              UNION
              SELECT i.inhparent, up.depth + 1 FROM pg_inherits i JOIN up ON i.inhrelid = up.relid)
          SELECT array_agg(ARRAY[an.nspname::text, ac.relname::text] ORDER BY up.depth)
            FROM up JOIN pg_class ac ON ac.oid = up.relid
            JOIN pg_namespace an ON an.oid = ac.relnamespace), '{}')
"""


def table_in_scope(
    filters: Filters,
    table: QualifiedName,
    ancestors: Iterable[QualifiedName] = (),
    *,
    data: bool = False,
) -> bool:
    """Whether the filters keep `table` (with its rows when `data`)."""
    family = (table, *ancestors)
    for qn in family:
        if qn.schema in filters.exclude_schema:
            return False
        if filters.include_only_schema and qn.schema not in filters.include_only_schema:
            return False
        if qn in filters.exclude_table:
            return False
        if data and qn in filters.exclude_table_data:
            return False
    if filters.include_only_table:
        return any(qn in filters.include_only_table for qn in family)
    return True


def ancestors_of(pairs: Iterable[list[str]]) -> tuple[QualifiedName, ...]:
    """ANCESTORS_SQL's array as names."""
    return tuple(QualifiedName(pair[0], pair[1]) for pair in pairs)


def read_ancestors(
    conn: psycopg.Connection[Any],
) -> dict[tuple[str, str], tuple[QualifiedName, ...]]:
    """Every relation of the database that has parents, with its ancestors."""
    rows = conn.execute(
        f"""SELECT n.nspname::text, c.relname::text, {ANCESTORS_SQL}
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)"""
    ).fetchall()
    return {(r[0], r[1]): ancestors_of(r[2]) for r in rows}
