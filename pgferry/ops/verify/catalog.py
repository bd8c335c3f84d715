"""What verify reads of each side's catalog: objects, and tables with sizes, estimates and keys.

The tables are paired across sides with the key both can be read by (`Pair`): the
input of every check that follows, so the choice of key is made once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgferry.catalog.queries import SYSTEM_SCHEMA_FILTER
from pgferry.catalog.row_identity import key_columns_sql
from pgferry.ops.compare import (
    DECORATION_QUERIES,
    SCHEMA_QUERIES,
    SchemaObject,
    Side,
    display_name,
    not_member,
    read_schema_objects,
)
from pgferry.ops.verify.queries import TableSpec


@dataclass(frozen=True)
class _Rel:
    schema: str
    name: str
    kind: str  # 'r' or 'm'
    populated: bool
    reltuples: float
    live_tuples: int | None
    bytes: int
    columns: tuple[str, ...]
    keys: tuple[tuple[str, ...], ...]  # usable keys (unique, valid, not null), best first

    @property
    def qualname(self) -> str:
        return display_name(self.schema, self.name)

    @property
    def estimated_rows(self) -> float | None:
        """reltuples, or the statistics collector's count when never analyzed (-1)."""
        if self.reltuples >= 0:
            return self.reltuples
        return float(self.live_tuples) if self.live_tuples is not None else None


# A usable key: a valid unique btree index without predicate or expressions whose key
# columns are all NOT NULL; the primary key first, then the narrowest.
_RELATIONS_SQL = f"""
SELECT n.nspname, c.relname, c.relkind::text, c.relispopulated, c.reltuples::float8,
       st.n_live_tup, pg_catalog.pg_table_size(c.oid),
       coalesce((SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
                   FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}'),
       coalesce((SELECT pg_catalog.json_agg(k.cols ORDER BY k.primary_key DESC,
                                            pg_catalog.cardinality(k.cols), k.name)
                   FROM (SELECT i.indisprimary AS primary_key, ci.relname AS name,
                                {key_columns_sql("i")} AS cols
                           FROM pg_catalog.pg_index i
                           JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
                           JOIN pg_catalog.pg_am am ON am.oid = ci.relam
                          WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                            AND i.indpred IS NULL AND i.indexprs IS NULL
                            AND am.amname = 'btree'
                            AND NOT EXISTS (
                                SELECT 1 FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = i.indrelid AND NOT a.attnotnull
                                   AND a.attnum = ANY (i.indkey[0:i.indnkeyatts - 1]))
                            -- ascending, default operator classes and collations: the
                            -- index serves ORDER BY key and comparisons of the key.
                            AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(i.indoption) o
                                             WHERE o <> 0)
                            AND NOT EXISTS (
                                SELECT 1
                                  FROM ROWS FROM (
                                       pg_catalog.unnest(i.indkey[0:i.indnkeyatts - 1]),
                                       pg_catalog.unnest(i.indclass[0:i.indnkeyatts - 1]),
                                       pg_catalog.unnest(i.indcollation[0:i.indnkeyatts - 1]))
                                       AS x(attnum, opclass, coll)
                                  JOIN pg_catalog.pg_opclass oc ON oc.oid = x.opclass
                                  JOIN pg_catalog.pg_attribute a
                                    ON a.attrelid = i.indrelid AND a.attnum = x.attnum
                                 WHERE NOT oc.opcdefault OR x.coll <> a.attcollation)) AS k),
                '[]'::json)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_stat_all_tables st ON st.relid = c.oid
 WHERE c.relkind IN ('r', 'm') AND c.relpersistence IN ('p', 'u')
   AND {SYSTEM_SCHEMA_FILTER}
   AND {not_member("pg_class", "c.oid")}
"""


def _relations(side: Side) -> dict[tuple[str, str], _Rel]:
    rows = side.holder.execute(_RELATIONS_SQL).fetchall()
    return {
        (r[0], r[1]): _Rel(
            schema=r[0],
            name=r[1],
            kind=r[2],
            populated=bool(r[3]),
            reltuples=float(r[4]),
            live_tuples=None if r[5] is None else int(r[5]),
            bytes=int(r[6] or 0),
            columns=tuple(r[7]),
            keys=tuple(tuple(k) for k in r[8] or ()),
        )
        for r in rows
    }


@dataclass(frozen=True)
class Pair:
    """One table in the data scope, present on both sides."""

    source: _Rel
    target: _Rel
    spec: TableSpec
    target_has_key: bool  # the target has a unique index on the same key columns

    @property
    def qualname(self) -> str:
        return self.spec.qualname


def pair_tables(src: _Rel, tgt: _Rel) -> Pair:
    """The columns and key a table is compared on, from both sides' catalogs."""
    columns = tuple(sorted(set(src.columns) & set(tgt.columns)))
    key: tuple[str, ...] = ()
    on_target = False
    for candidate in src.keys:
        if candidate in tgt.keys and set(candidate) <= set(columns):
            key, on_target = candidate, True
            break
    if not key and src.keys and set(src.keys[0]) <= set(columns):
        key = src.keys[0]
    return Pair(src, tgt, TableSpec(src.schema, src.name, columns, key), on_target)


def read_side_catalog(
    side: Side,
) -> tuple[int, dict[str, list[SchemaObject]], dict[tuple[str, str], _Rel]]:
    """One side's server version, objects and tables, read on its holder (its snapshot)."""
    row = side.holder.execute("SELECT pg_catalog.current_setting('server_version_num')").fetchone()
    objects = read_schema_objects(side.holder, {**SCHEMA_QUERIES, **DECORATION_QUERIES})
    return int(row[0]) if row else 0, objects, _relations(side)
