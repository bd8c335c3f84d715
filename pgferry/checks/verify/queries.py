"""The SQL that reads a table by key range: counts, content hashes, keys and split points.

Built in one place with `psycopg.sql` and unit tested with hostile names (pure: nothing
here connects). Every query reads `ONLY` the table, restricted to a key range through
the key's index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from pgferry.checks.compare.sqltext import hash_sum, row_hash
from pgferry.checks.verify.ranges import KeyRange
from pgferry.text import display_name


@dataclass(frozen=True)
class TableSpec:
    """What the data queries need of one table: its name, hashed columns and key."""

    schema: str
    name: str
    columns: tuple[str, ...]  # hashed, in this order
    key: tuple[str, ...] = ()  # key columns; () when the table has no usable key

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def qualname(self) -> str:
        return display_name(self.schema, self.name)


def _cols(names: Sequence[str], alias: str = "r") -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(alias, c) for c in names)


def _tuple(items: Sequence[sql.Composable]) -> sql.Composable:
    joined = sql.SQL(", ").join(items)
    return joined if len(items) == 1 else sql.SQL("({})").format(joined)


def range_condition(key: Sequence[str], rng: KeyRange) -> tuple[sql.Composable, list[str]]:
    """WHERE condition (on alias r) and its parameters. Parameters are sent untyped so
    that the server reads each one as its key column's type; row comparisons over the
    key columns use the key's index."""
    parts: list[sql.Composable] = []
    params: list[str] = []
    for bound, op in ((rng.lower, ">="), (rng.upper, "<=" if rng.upper_inclusive else "<")):
        if bound is None:
            continue
        columns = key[: len(bound)]
        parts.append(
            sql.SQL("{} {} {}").format(
                _tuple([sql.Identifier("r", c) for c in columns]),
                sql.SQL(op),
                _tuple([sql.Placeholder()] * len(bound)),
            )
        )
        params.extend(bound)
    if not parts:
        return sql.SQL("TRUE"), params
    return sql.SQL(" AND ").join(parts), params


def _order(key: Sequence[str], alias: str = "r", descending: bool = False) -> sql.Composable:
    direction = sql.SQL(" DESC" if descending else "")
    return sql.SQL(", ").join(
        sql.SQL("{}{}").format(sql.Identifier(alias, c), direction) for c in key
    )


def fingerprint_range_query(
    t: TableSpec, rng: KeyRange, limit: int | None = None
) -> tuple[sql.Composed, list[str]]:
    """Row count and content hash of the rows in a key range; with `limit`, of at most
    that many of them in key order (an index range scan that stops)."""
    cond, params = range_condition(t.key, rng)
    if limit is None:
        query = sql.SQL("SELECT pg_catalog.count(*), {h} FROM ONLY {t} AS r WHERE {c}").format(
            h=hash_sum(t.columns), t=t.ident, c=cond
        )
        return query, params
    query = sql.SQL(
        "SELECT pg_catalog.count(*), {h} FROM "
        "(SELECT {cols} FROM ONLY {t} AS r WHERE {c} ORDER BY {o} LIMIT {n}) AS r"
    ).format(
        h=hash_sum(t.columns),
        cols=_cols(t.columns),
        t=t.ident,
        c=cond,
        o=_order(t.key),
        n=sql.Literal(limit),
    )
    return query, params


def rows_query(
    t: TableSpec, rng: KeyRange, limit: int | None = None
) -> tuple[sql.Composed, list[str]]:
    """Key (as text) and content hash of each row in a key range, in key order."""
    cond, params = range_condition(t.key, rng)
    query = sql.SQL("SELECT {k}, {h} FROM ONLY {t} AS r WHERE {c} ORDER BY {o}{lim}").format(
        k=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier("r", c)) for c in t.key),
        h=row_hash(t.columns),
        t=t.ident,
        c=cond,
        o=_order(t.key),
        lim=sql.SQL(" LIMIT {}").format(sql.Literal(limit)) if limit is not None else sql.SQL(""),
    )
    return query, params


def lookup_query(t: TableSpec) -> sql.Composed:
    """Content hash of the row with a given key (parameters: the key's values)."""
    return sql.SQL("SELECT {h} FROM ONLY {t} AS r WHERE {k} = {p}").format(
        h=row_hash(t.columns),
        t=t.ident,
        k=_tuple([sql.Identifier("r", c) for c in t.key]),
        p=_tuple([sql.Placeholder()] * len(t.key)),
    )


def split_points_query(
    t: TableSpec, rng: KeyRange, parts: int, sample_pct: float | None = None
) -> tuple[sql.Composed, list[Any]]:
    """Keys cutting the rows of a range into `parts` parts of equal row counts: the
    first key of each part but the first. With `sample_pct`, computed over a block
    sample of the table (TABLESAMPLE SYSTEM reads only the sampled pages)."""
    cond, params = range_condition(t.key, rng)
    aliases = [sql.Identifier(f"k{i}") for i in range(len(t.key))]
    sample = (
        sql.SQL(" TABLESAMPLE SYSTEM ({}) REPEATABLE (0)").format(sql.Literal(sample_pct))
        if sample_pct is not None and sample_pct < 100
        else sql.SQL("")
    )
    query = sql.SQL(
        "SELECT {out} FROM (SELECT {keys}, "
        "pg_catalog.row_number() OVER (ORDER BY {o}) AS rn, "
        "pg_catalog.count(*) OVER () AS total "
        "FROM ONLY {t} AS r{sample} WHERE {c}) AS s "
        "WHERE rn > 1 AND (rn - 1) * {n} / total <> (rn - 2) * {n} / total ORDER BY rn"
    ).format(
        out=sql.SQL(", ").join(aliases),
        keys=sql.SQL(", ").join(
            sql.SQL("{}::text AS {}").format(sql.Identifier("r", c), a)
            for c, a in zip(t.key, aliases, strict=True)
        ),
        o=_order(t.key),
        t=t.ident,
        sample=sample,
        c=cond,
        n=sql.Literal(parts),
    )
    return query, params


def edge_query(
    t: TableSpec, rng: KeyRange, rows: int, from_end: bool = False
) -> tuple[sql.Composed, list[str]]:
    """The last key of the first `rows` rows of a range in key order (with `from_end`:
    the first key of its last `rows` rows), and how many rows were read to find it."""
    cond, params = range_condition(t.key, rng)
    aliases = [sql.Identifier(f"k{i}") for i in range(len(t.key))]
    query = sql.SQL(
        "SELECT {texts}, pg_catalog.count(*) OVER () FROM "
        "(SELECT {keys} FROM ONLY {t} AS r WHERE {c} ORDER BY {o} LIMIT {n}) AS s "
        "ORDER BY {o2} LIMIT 1"
    ).format(
        texts=sql.SQL(", ").join(sql.SQL("{}::text").format(a) for a in aliases),
        keys=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.Identifier("r", c), a)
            for c, a in zip(t.key, aliases, strict=True)
        ),
        t=t.ident,
        c=cond,
        o=_order(t.key, descending=from_end),
        n=sql.Literal(rows),
        # Qualified: the input column (typed), not the output one of the same name (text).
        o2=_order([f"k{i}" for i in range(len(t.key))], "s", descending=not from_end),
    )
    return query, params


HISTOGRAM_SQL = """
SELECT s.histogram_bounds::text::text[]
  FROM pg_catalog.pg_stats s
 WHERE s.schemaname = %s AND s.tablename = %s AND s.attname = %s AND NOT s.inherited
"""
