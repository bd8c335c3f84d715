"""`pgferry verify`: is the target a faithful copy of the source, within the filters?

Quick mode (the default) does bounded work whatever the database size: the catalogs,
object type by object type; estimated row counts and table sizes; sequence positions;
large object counts; and data spot checks. The largest tables are sampled by key range:
the first and the last rows by key and ranges starting at histogram bounds of the key,
each read through the key's index with a LIMIT and compared by row count and content
hash. Only small tables are read whole. A big table is never scanned.

Full mode (`--full`) is exact: every table in scope is cut into key ranges of about
`chunk_rows` rows (boundaries from a sample of the key, never from reading every key),
each range's count and content hash is compared on both sides by parallel workers, each
side read on one snapshot; a differing range is bisected down to the differing rows,
listed by key. A table without a usable key is compared whole.

Both read the same scope as the migration (the filters), and give a PASS/WARN/FAIL
report whose exit code is non-zero on any FAIL.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import psycopg
from psycopg import sql

from pgferry.catalog.filters import Filters
from pgferry.catalog.queries import SYSTEM_SCHEMA_FILTER
from pgferry.errors import StepFailed
from pgferry.ops.compare import (
    DECORATION_QUERIES,
    SCHEMA_QUERIES,
    FilterScope,
    ObjectKindComparison,
    SchemaObject,
    _compare_large_objects,
    _compare_sequences,
    _error_text,
    _not_member,
    _Side,
    diff_objects,
    display_name,
    read_schema_objects,
    scoped_definitions,
)
from pgferry.ops.report import Report, Verdict
from pgferry.pg.conninfo import ConnInfo

log = logging.getLogger(__name__)

MiB = 1024 * 1024
Key = tuple[str, ...]  # a key's column values as the server prints them


@dataclass(frozen=True)
class VerifyOptions:
    """The knobs of a verification; the defaults suit databases of any size."""

    row_tolerance_pct: float = 5.0  # estimated row counts may differ this much ...
    row_tolerance_rows: int = 100  # ... or by this many rows, without a warning
    ranges_per_table: int = 4  # quick: key ranges sampled in each large table
    range_rows: int = 1000  # quick: rows in each sampled range
    small_table_bytes: int = 8 * MiB  # quick: tables this small are compared whole ...
    small_tables: int = 50  # ... at most this many of them (a random choice)
    budget_seconds: float = 90.0  # quick: data checks stop starting after this
    statement_timeout_ms: int = 30_000  # quick: per data statement
    lock_timeout_ms: int = 5_000  # quick: per data statement
    chunk_rows: int = 100_000  # full: rows per compared key range
    leaf_rows: int = 1000  # full: ranges this small are compared row by row
    fanout: int = 16  # full: sub-ranges per bisection step
    max_keys: int = 20  # differing rows listed per table
    max_located_chunks: int = 5  # full: differing chunks narrowed down per table
    max_listed: int = 20  # names listed in one report line


# ---------------------------------------------------------------------------------------
# Key ranges (pure)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRange:
    """Rows whose key is >= lower (a full key or a prefix of it) and < upper (<= when
    upper_inclusive); None is unbounded. Values are compared by the servers, never here:
    the order of a key's values is the server's (type and collation)."""

    lower: Key | None = None
    upper: Key | None = None
    upper_inclusive: bool = False

    def describe(self, columns: Sequence[str]) -> str:
        """The range as a SQL condition a user can paste: `id >= 1 AND id < 500`."""
        parts = []
        if self.lower is not None:
            parts.append(
                f"{_columns_text(columns[: len(self.lower)])} >= {_values_text(self.lower)}"
            )
        if self.upper is not None:
            op = "<=" if self.upper_inclusive else "<"
            parts.append(
                f"{_columns_text(columns[: len(self.upper)])} {op} {_values_text(self.upper)}"
            )
        return " AND ".join(parts) or "all rows"


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _value_text(value: str) -> str:
    return value if _NUMBER.match(value) else "'" + value.replace("'", "''") + "'"


def _values_text(values: Sequence[str]) -> str:
    shown = ", ".join(_value_text(v) for v in values)
    return shown if len(values) == 1 else f"({shown})"


def _columns_text(columns: Sequence[str]) -> str:
    shown = ", ".join(display_name(c) for c in columns)
    return shown if len(columns) == 1 else f"({shown})"


def key_text(columns: Sequence[str], key: Key) -> str:
    """One row's key for humans: `id=42`, `(a, b)=(1, 'x')`."""
    return f"{_columns_text(columns)}={_values_text(key)}"


def split_range(rng: KeyRange, points: Sequence[Key]) -> list[KeyRange]:
    """Cut a range at the given keys (ascending, inside the range) into adjacent ranges
    that together hold exactly the rows of `rng`."""
    bounds: list[Key | None] = [rng.lower, *points, rng.upper]
    out = []
    for i in range(len(bounds) - 1):
        last = i == len(bounds) - 2
        out.append(
            KeyRange(
                bounds[i], bounds[i + 1], upper_inclusive=rng.upper_inclusive if last else False
            )
        )
    return out


def chunk_count(estimated_rows: float, chunk_rows: int) -> int:
    """How many key ranges to cut a table of that many rows into (at least 1)."""
    if estimated_rows <= chunk_rows:
        return 1
    return math.ceil(estimated_rows / chunk_rows)


def sample_percent(
    estimated_rows: float, pages: int, parts: int, per_part: int = 20, min_pages: int = 64
) -> float:
    """TABLESAMPLE SYSTEM percentage that yields about `per_part` keys per part (at most
    2 million keys) from at least 4 pages per part (and `min_pages`): SYSTEM picks whole
    pages, whose keys are often neighbours, so a part needs keys from several pages."""
    if estimated_rows <= 0 or pages <= min_pages:
        return 100.0
    wanted = min(parts * per_part, 2_000_000)
    pct = max(100.0 * wanted / estimated_rows, 100.0 * max(min_pages, 4 * parts) / pages)
    return min(100.0, pct)


def spread_bounds(bounds: Sequence[str], count: int, rnd: random.Random) -> list[str]:
    """`count` values from a histogram, one random pick in each of `count` equal slices
    (the first and last bounds excluded: the first and last ranges cover the ends)."""
    inner = list(bounds[1:-1])
    if count <= 0 or not inner:
        return []
    count = min(count, len(inner))
    picks = []
    for i in range(count):
        lo = i * len(inner) // count
        hi = max(lo + 1, (i + 1) * len(inner) // count)
        picks.append(inner[rnd.randrange(lo, hi)])
    return picks


ONLY_SOURCE = "only on source"
ONLY_TARGET = "only on target"
DIFFERENT = "different content"
MOVED = "ordered elsewhere on the target"  # same row, found outside the range: collation


@dataclass(frozen=True)
class RowDifference:
    key: Key
    what: str  # ONLY_SOURCE, ONLY_TARGET, DIFFERENT or MOVED


def diff_rows(source: Mapping[Key, str], target: Mapping[Key, str]) -> list[RowDifference]:
    """Rows (key -> content hash) that differ between two reads of the same key range."""
    out = [RowDifference(k, ONLY_SOURCE) for k in source if k not in target]
    out += [RowDifference(k, ONLY_TARGET) for k in target if k not in source]
    out += [RowDifference(k, DIFFERENT) for k in source if k in target and source[k] != target[k]]
    return out


class RangeReader(Protocol):
    """One table on one side, read by key range."""

    def fingerprint(self, rng: KeyRange) -> tuple[int, str]: ...

    def split_points(self, rng: KeyRange, parts: int) -> list[Key]: ...

    def rows(self, rng: KeyRange) -> dict[Key, str]: ...

    def lookup(self, key: Key) -> str | None: ...


@dataclass
class Location:
    """What bisecting one differing range found."""

    rows: list[RowDifference] = field(default_factory=list)
    ranges: list[KeyRange] = field(default_factory=list)  # smallest differing ranges read
    complete: bool = True  # False: stopped at max_keys or max_steps


def locate_rows(
    source: RangeReader,
    target: RangeReader,
    rng: KeyRange,
    *,
    leaf_rows: int,
    fanout: int,
    max_keys: int,
    max_steps: int = 200,
    known: tuple[tuple[int, str], tuple[int, str]] | None = None,
) -> Location:
    """Narrow a differing key range down to the differing rows.

    A range is cut at keys taken from the side holding more of its rows, and only the
    sub-ranges whose count or hash differ are followed, until ranges of at most
    `leaf_rows` rows on both sides, which are read row by row (key and content hash).
    A key read on one side only is then looked up on the other side by equality: a row
    found there with the same content only sorts differently (a collation difference).
    """
    loc = Location()
    queue: deque[tuple[KeyRange, tuple[tuple[int, str], tuple[int, str]] | None]] = deque(
        [(rng, known)]
    )
    steps = 0
    while queue:
        if len([r for r in loc.rows if r.what != MOVED]) >= max_keys or steps >= max_steps:
            loc.complete = False
            break
        part, counts = queue.popleft()
        steps += 1
        if counts is None:
            counts = (source.fingerprint(part), target.fingerprint(part))
        (s_rows, s_hash), (t_rows, t_hash) = counts
        if (s_rows, s_hash) == (t_rows, t_hash):
            continue
        if max(s_rows, t_rows) > leaf_rows:
            reader = source if s_rows >= t_rows else target
            points = reader.split_points(part, fanout)
            subs = split_range(part, points)
            if len(subs) > 1:
                queue.extend((sub, None) for sub in subs)
                continue
        loc.ranges.append(part)
        loc.rows.extend(_confirm(source, target, diff_rows(source.rows(part), target.rows(part))))
    return loc


def _confirm(
    source: RangeReader, target: RangeReader, found: list[RowDifference]
) -> list[RowDifference]:
    """Look up, by equality, keys read on one side only (see locate_rows)."""
    out = []
    for d in found:
        if d.what in (ONLY_SOURCE, ONLY_TARGET):
            here, other = (source, target) if d.what == ONLY_SOURCE else (target, source)
            there = other.lookup(d.key)
            if there is not None:
                same = there == here.lookup(d.key)
                out.append(RowDifference(d.key, MOVED if same else DIFFERENT))
                continue
        out.append(d)
    return out


def estimate_drift(
    source: float | None, target: float | None, tolerance_pct: float, tolerance_rows: int
) -> float | None:
    """The difference in percent of the source's estimate when it is beyond both
    tolerances (None when within, or when either side has no estimate)."""
    if source is None or target is None:
        return None
    diff = abs(source - target)
    if diff <= tolerance_rows:
        return None
    pct = 100.0 * diff / max(source, 1.0)
    return pct if pct > tolerance_pct else None


_LOOSE = re.compile(r"[\s()]+")


def loosely_equal(a: str, b: str) -> bool:
    """Equal but for spacing and parentheses: how server versions print definitions
    differently (pg_get_viewdef, pg_get_constraintdef, ...)."""
    return _LOOSE.sub("", a) == _LOOSE.sub("", b)


# ---------------------------------------------------------------------------------------
# SQL (pure; built with psycopg.sql, unit tested with hostile names)
# ---------------------------------------------------------------------------------------


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


def _row_hash(columns: Sequence[str], alias: str = "r") -> sql.Composable:
    return sql.SQL("pg_catalog.md5(ROW({})::text)").format(_cols(columns, alias))


def _hash_sum(columns: Sequence[str]) -> sql.Composable:
    """Order-independent, multiplicity-sensitive: the sum of each row's md5 (64 bits)."""
    return sql.SQL(
        "coalesce(pg_catalog.sum(('x' || pg_catalog.substr({}, 1, 16))"
        "::bit(64)::bigint::numeric), 0)::text"
    ).format(_row_hash(columns))


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
            h=_hash_sum(t.columns), t=t.ident, c=cond
        )
        return query, params
    query = sql.SQL(
        "SELECT pg_catalog.count(*), {h} FROM "
        "(SELECT {cols} FROM ONLY {t} AS r WHERE {c} ORDER BY {o} LIMIT {n}) AS r"
    ).format(
        h=_hash_sum(t.columns),
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
        h=_row_hash(t.columns),
        t=t.ident,
        c=cond,
        o=_order(t.key),
        lim=sql.SQL(" LIMIT {}").format(sql.Literal(limit)) if limit is not None else sql.SQL(""),
    )
    return query, params


def lookup_query(t: TableSpec) -> sql.Composed:
    """Content hash of the row with a given key (parameters: the key's values)."""
    return sql.SQL("SELECT {h} FROM ONLY {t} AS r WHERE {k} = {p}").format(
        h=_row_hash(t.columns),
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


# ---------------------------------------------------------------------------------------
# Reading: one table on one side
# ---------------------------------------------------------------------------------------


class _TableReader:
    """RangeReader over a _Side; `limit` bounds every range read (quick mode)."""

    def __init__(self, side: _Side, table: TableSpec, limit: int | None = None) -> None:
        self.side = side
        self.table = table
        self.limit = limit

    def fingerprint(self, rng: KeyRange) -> tuple[int, str]:
        return self.side.fingerprint(*fingerprint_range_query(self.table, rng, self.limit))

    def split_points(self, rng: KeyRange, parts: int, sample_pct: float | None = None) -> list[Key]:
        return [
            tuple(r)
            for r in self.side.fetch(*split_points_query(self.table, rng, parts, sample_pct))
        ]

    def rows(self, rng: KeyRange) -> dict[Key, str]:
        rows = self.side.fetch(*rows_query(self.table, rng, self.limit))
        return {tuple(r[:-1]): r[-1] for r in rows}

    def lookup(self, key: Key) -> str | None:
        rows = self.side.fetch(lookup_query(self.table), list(key))
        return rows[0][0] if rows else None

    def edge(self, rng: KeyRange, rows: int, from_end: bool = False) -> tuple[Key, int] | None:
        found = self.side.fetch(*edge_query(self.table, rng, rows, from_end))
        return (tuple(found[0][:-1]), int(found[0][-1])) if found else None

    def histogram(self) -> list[str]:
        """The key's first column's histogram bounds ([] without statistics)."""
        try:
            rows = self.side.fetch(
                sql.SQL(HISTOGRAM_SQL), [self.table.schema, self.table.name, self.table.key[0]]
            )
        except psycopg.DataError:  # bounds whose text form does not read back as text[]
            return []
        return list(rows[0][0] or []) if rows else []


# ---------------------------------------------------------------------------------------
# Catalog: tables with their sizes, estimates and keys
# ---------------------------------------------------------------------------------------


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
                                (SELECT pg_catalog.array_agg(a.attname::text ORDER BY x.ord)
                                   FROM pg_catalog.unnest(i.indkey[0:i.indnkeyatts - 1])
                                        WITH ORDINALITY AS x(attnum, ord)
                                   JOIN pg_catalog.pg_attribute a
                                     ON a.attrelid = i.indrelid AND a.attnum = x.attnum) AS cols
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
   AND {_not_member("pg_class", "c.oid")}
"""


def _relations(side: _Side) -> dict[tuple[str, str], _Rel]:
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
class _Pair:
    """One table in the data scope, present on both sides."""

    source: _Rel
    target: _Rel
    spec: TableSpec
    target_has_key: bool  # the target has a unique index on the same key columns

    @property
    def qualname(self) -> str:
        return self.spec.qualname


def _pair(src: _Rel, tgt: _Rel) -> _Pair:
    columns = tuple(sorted(set(src.columns) & set(tgt.columns)))
    key: tuple[str, ...] = ()
    on_target = False
    for candidate in src.keys:
        if candidate in tgt.keys and set(candidate) <= set(columns):
            key, on_target = candidate, True
            break
    if not key and src.keys and set(src.keys[0]) <= set(columns):
        key = src.keys[0]
    return _Pair(src, tgt, TableSpec(src.schema, src.name, columns, key), on_target)


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------

_TIMEOUT_STATES = {"57014", "55P03"}  # query_canceled (statement_timeout), lock_not_available


def run_verify(
    source: ConnInfo,
    target: ConnInfo,
    filters: Filters,
    *,
    full: bool = False,
    jobs: int = 4,
    sample_tables: int = 10,
    options: VerifyOptions | None = None,
) -> Report:
    """Compare source and target within the filters' scope; FAIL on any lost or changed
    object or row, WARN on what deserves a look (estimates, sizes, extras)."""
    opts = options or VerifyOptions()
    t0 = time.monotonic()
    deadline = t0 + opts.budget_seconds
    report = Report("pgferry verify: " + ("full comparison" if full else "quick comparison"))
    report.facts.update(
        source=source.short(),
        target=target.short(),
        mode="full (every row, chunked checksums)"
        if full
        else f"quick (catalogs, estimates, {sample_tables} largest tables sampled by key range)",
        filters=filters.path or "none",
    )
    # JIT compiles each checksum query for longer than most of them run.
    data_settings = {"jit": "off"}
    if not full:
        data_settings.update(
            statement_timeout=str(opts.statement_timeout_ms),
            lock_timeout=str(opts.lock_timeout_ms),
            # Sampled ranges must be index range scans: never a scan of a big table.
            enable_seqscan="off",
        )
    src = _Side(source, "verify", data_settings)
    try:
        tgt = _Side(target, "verify", data_settings)
    except BaseException:
        src.close()
        raise
    try:
        _run(report, src, tgt, filters, full, max(1, jobs), sample_tables, opts, deadline)
    except psycopg.Error as exc:
        raise StepFailed(
            f"verify stopped: a query failed: {_error_text(exc)}",
            fix="check the connection and privileges; nothing was compared as equal",
        ) from exc
    finally:
        src.close()
        tgt.close()
    report.facts["seconds"] = round(time.monotonic() - t0, 1)
    return report


def _run(
    report: Report,
    src: _Side,
    tgt: _Side,
    filters: Filters,
    full: bool,
    jobs: int,
    sample_tables: int,
    opts: VerifyOptions,
    deadline: float,
) -> None:
    with ThreadPoolExecutor(2, thread_name_prefix="verify-catalog") as pool:
        src_cat, tgt_cat = pool.submit(_catalog, src), pool.submit(_catalog, tgt)
        (s_version, src_objects, src_rels), (t_version, tgt_objects, tgt_rels) = (
            src_cat.result(),
            tgt_cat.result(),
        )
    versions = (s_version, t_version)
    report.facts["versions"] = f"source {versions[0] // 10000}, target {versions[1] // 10000}"
    scope = FilterScope(
        filters, [o for side in (src_objects, tgt_objects) for objs in side.values() for o in objs]
    )
    for warning in [*filters.warnings, *_unmatched(filters, src_objects)]:
        report.warn("filters", warning, fix="use the same filters as the migration")
    _check_schema(
        report, src_objects, tgt_objects, scope, versions[0] // 10000 != versions[1] // 10000, opts
    )

    in_scope = [k for k in src_rels if scope.copies_data(*k)]
    pairs = [_pair(src_rels[k], tgt_rels[k]) for k in in_scope if k in tgt_rels]
    missing = len(in_scope) - len(pairs)
    report.facts["tables in scope"] = f"{len(in_scope)} with data" + (
        f" ({missing} missing on target)" if missing else ""
    )
    pairs = [p for p in pairs if _populated(report, p)]
    pairs.sort(key=lambda p: (-p.source.bytes, p.spec.schema, p.spec.name))
    if not full:
        _check_estimates(report, pairs, opts)
    _check_sizes(report, pairs, opts)
    _check_sequences(report, src, tgt, src_objects, scope, opts)
    _check_large_objects(report, src, tgt, full)
    if full:
        _full_data(report, src, tgt, pairs, jobs, opts)
    else:
        _quick_data(report, src, tgt, pairs, jobs, sample_tables, opts, deadline)


def _unmatched(filters: Filters, src_objects: dict[str, list[SchemaObject]]) -> list[str]:
    """Filter entries naming no table, schema or extension of the source."""
    if not filters.entries:
        return []
    tables = {
        (o.parts[0], o.parts[1]) for k in ("tables", "materialized views") for o in src_objects[k]
    }
    schemas = {o.parts[0] for o in src_objects["schemas"]}
    extensions = {o.parts[0] for o in src_objects["extensions"]}
    known: dict[str, set[Any]] = {
        "include-only-table": tables,
        "exclude-table": tables,
        "exclude-table-data": tables,
        "include-only-schema": schemas,
        "exclude-schema": schemas,
        "include-only-extension": extensions,
        "exclude-extension": extensions,
    }
    where = filters.path or "<filters>"
    return [
        f"{where}:{e.line}: [{e.section}] {e} matches nothing on the source"
        for e in filters.entries
        if e.section in known
        and ((e.schema, e.name) if e.schema is not None else e.name) not in known[e.section]
    ]


def _catalog(side: _Side) -> tuple[int, dict[str, list[SchemaObject]], dict[tuple[str, str], _Rel]]:
    """One side's server version, objects and tables, read on its holder (its snapshot)."""
    row = side.holder.execute("SELECT pg_catalog.current_setting('server_version_num')").fetchone()
    objects = read_schema_objects(side.holder, {**SCHEMA_QUERIES, **DECORATION_QUERIES})
    return int(row[0]) if row else 0, objects, _relations(side)


def _populated(report: Report, p: _Pair) -> bool:
    """Whether a materialized view's rows can be compared; FAIL when populated on the
    source only."""
    if p.source.populated and p.target.populated:
        return True
    if p.source.populated:
        report.fail(
            "data.table",
            f"materialized view {p.qualname} is not populated on the target",
            fix=f"REFRESH MATERIALIZED VIEW {p.qualname} on the target",
            table=p.qualname,
        )
    return False


# -- schema ------------------------------------------------------------------------------


def _check_schema(
    report: Report,
    src_objects: dict[str, list[SchemaObject]],
    tgt_objects: dict[str, list[SchemaObject]],
    scope: FilterScope,
    cross_version: bool,
    opts: VerifyOptions,
) -> None:
    src, tgt = scoped_definitions(src_objects, scope), scoped_definitions(tgt_objects, scope)
    for kind in SCHEMA_QUERIES:
        _schema_kind(report, diff_objects(kind, src[kind], tgt[kind]), cross_version, opts)
    for kind in DECORATION_QUERIES:
        _decoration_kind(report, diff_objects(kind, src[kind], tgt[kind]), opts)


def _schema_kind(
    report: Report, k: ObjectKindComparison, cross_version: bool, opts: VerifyOptions
) -> None:
    """Missing or changed: FAIL. Extra on the target: WARN (ignored for extensions).
    Between major versions a definition printed differently is a WARN, and none at all
    when it differs only in spacing and parentheses; extension versions WARN."""
    name = f"schema.{k.kind.replace(' ', '_')}"
    changed = [d for d in k.different if not (cross_version and loosely_equal(d[1], d[2]))]
    soft = k.kind == "extensions" or cross_version
    lines = [f"missing on target: {n}" for n in k.only_on_source]
    lines += [
        f"definition differs: {n}: source {_clip(s)!r}, target {_clip(t)!r}" for n, s, t in changed
    ]
    extra = [] if k.kind == "extensions" else list(k.only_on_target)
    details: dict[str, Any] = {
        "missing_on_target": list(k.only_on_source),
        "only_on_target": list(k.only_on_target),
        "different": [{"name": n, "source": s, "target": t} for n, s, t in changed],
    }
    counts = f"{k.source_count} on source, {k.target_count} on target"
    if k.only_on_source or (changed and not soft):
        report.fail(
            name,
            f"{k.kind}: {len(k.only_on_source)} missing, {len(changed)} different ({counts})\n"
            + _listing(lines, opts.max_listed),
            fix="re-create the missing objects on the target (pg_dump --schema-only of them)",
            **details,
        )
    elif changed or extra:
        lines += [f"only on target: {n}" for n in extra]
        report.warn(name, f"{k.kind}: {counts}\n" + _listing(lines, opts.max_listed), **details)
    elif k.source_count == k.target_count:
        report.ok(name, f"{k.kind}: {k.source_count} on both sides, same definitions")
    else:
        report.ok(name, f"{k.kind}: {counts}, all of the source's on the target")


def _decoration_kind(report: Report, k: ObjectKindComparison, opts: VerifyOptions) -> None:
    """Comments and owners: a warning at most (--no-comments, --no-owner)."""
    name = f"schema.{k.kind}"
    if k.ok:
        report.ok(name, f"{k.kind}: {k.source_count} on both sides, the same")
        return
    if k.kind == "owners":
        changes: dict[tuple[str, str], int] = {}
        for _, s, t in k.different:
            changes[(s, t)] = changes.get((s, t), 0) + 1
        lines = [
            f"{n} object(s) owned by {s} on source, {t} on target" for (s, t), n in changes.items()
        ]
        lines += [f"{n}: owned by {s} on source, {t} on target" for n, s, t in k.different]
    else:
        lines = [f"missing on target: comment on {n}" for n in k.only_on_source]
        lines += [f"differs: comment on {n}" for n, _, _ in k.different]
        lines += [f"only on target: comment on {n}" for n in k.only_on_target]
    report.warn(
        name,
        f"{k.kind}: {len(k.only_on_source) + len(k.different) + len(k.only_on_target)} "
        f"difference(s) (expected after --no-{'owner' if k.kind == 'owners' else 'comments'})\n"
        + _listing(lines, opts.max_listed),
        missing_on_target=list(k.only_on_source),
        only_on_target=list(k.only_on_target),
        different=[{"name": n, "source": s, "target": t} for n, s, t in k.different],
    )


def _listing(lines: list[str], limit: int) -> str:
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"... and {len(lines) - limit} more (see --json)")
    return "\n".join(f"  {line}" for line in shown)


def _clip(text: str, width: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


# -- estimates, sizes, sequences, large objects --------------------------------------------


def _check_estimates(report: Report, pairs: list[_Pair], opts: VerifyOptions) -> None:
    drifted = []
    unknown = []
    for p in pairs:
        s, t = p.source.estimated_rows, p.target.estimated_rows
        if s is None or t is None:
            unknown.append(p.qualname)
            continue
        pct = estimate_drift(s, t, opts.row_tolerance_pct, opts.row_tolerance_rows)
        if pct is not None:
            drifted.append((pct, p.qualname, s, t))
    drifted.sort(reverse=True)
    note = f"; {len(unknown)} without statistics" if unknown else ""
    if drifted:
        lines = [
            f"{n}: source ~{s:,.0f}, target ~{t:,.0f} ({pct:.1f}%)" for pct, n, s, t in drifted
        ]
        report.warn(
            "rows.estimates",
            f"estimated row counts differ by more than {opts.row_tolerance_pct:g}% in "
            f"{len(drifted)} of {len(pairs)} tables{note} (estimates: not proof)\n"
            + _listing(lines, opts.max_listed),
            fix="run ANALYZE on both sides and verify again; use --full for exact counts",
            tables=[
                {"table": n, "source": s, "target": t, "pct": round(pct, 1)}
                for pct, n, s, t in drifted
            ],
            without_statistics=unknown,
        )
    else:
        total = sum(p.source.estimated_rows or 0 for p in pairs)
        report.ok(
            "rows.estimates",
            f"estimated row counts agree within {opts.row_tolerance_pct:g}% "
            f"({len(pairs)} tables, ~{total:,.0f} rows){note}",
            without_statistics=unknown,
        )


def _check_sizes(report: Report, pairs: list[_Pair], opts: VerifyOptions) -> None:
    """Sizes differ for good reasons (bloat, fill factor): only an empty target table
    whose source has rows is worth a warning."""
    s_total = sum(p.source.bytes for p in pairs)
    t_total = sum(p.target.bytes for p in pairs)
    empty = [
        p.qualname
        for p in pairs
        if p.target.bytes == 0 and p.source.bytes > 0 and (p.source.estimated_rows or 0) > 0
    ]
    message = f"tables: {_size(s_total)} on source, {_size(t_total)} on target"
    if empty:
        report.warn(
            "sizes",
            f"{message}; {len(empty)} table(s) empty on target but not on source\n"
            + _listing(empty, opts.max_listed),
            fix="compare them with --full",
            empty_on_target=empty,
        )
    else:
        report.ok("sizes", message, source_bytes=s_total, target_bytes=t_total)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _check_sequences(
    report: Report,
    src: _Side,
    tgt: _Side,
    src_objects: dict[str, list[SchemaObject]],
    scope: FilterScope,
    opts: VerifyOptions,
) -> None:
    wanted = {(o.parts[0], o.parts[1]) for o in src_objects["sequences"] if scope.keeps(o)}
    s_seqs = {k: v for k, v in src.sequences().items() if k in wanted}
    t_seqs = {k: v for k, v in tgt.sequences().items() if k in wanted}
    results = [
        r for r in _compare_sequences(s_seqs, t_seqs) if r.target_last_value is not None or r.error
    ]
    bad = [r for r in results if not r.ok]
    if bad:
        report.fail(
            "sequences",
            f"{len(bad)} sequence(s) behind on the target (it would hand out values the source "
            "already used)\n" + _listing([r.problem() or "" for r in bad], opts.max_listed),
            fix="setval() them to at least the source's value (pgferry syncs them at cutover)",
            sequences=[r.qualname for r in bad],
        )
    else:
        report.ok("sequences", f"{len(results)} sequence(s): target at or ahead of source")


def _check_large_objects(report: Report, src: _Side, tgt: _Side, full: bool) -> None:
    if full:
        lo = _compare_large_objects(src, tgt)
        if lo.ok:
            report.ok("large_objects", f"{lo.source_count:,} large objects, same content")
        else:
            report.fail("large_objects", "\n".join(lo.problems()))
        return
    query = "SELECT pg_catalog.count(*) FROM pg_catalog.pg_largeobject_metadata"
    counts = [int(s.holder.execute(query).fetchall()[0][0]) for s in (src, tgt)]
    if counts[0] == counts[1]:
        report.ok(
            "large_objects",
            f"{counts[0]:,} large objects on both sides (count only; --full reads them)",
        )
    else:
        report.fail(
            "large_objects", f"{counts[0]:,} large objects on source, {counts[1]:,} on target"
        )


# -- data: shared --------------------------------------------------------------------------


@dataclass
class _TableOutcome:
    """The data comparison of one table."""

    pair: _Pair
    rows: int = 0  # source rows read
    ranges: int = 0  # key ranges compared
    differing: list[tuple[KeyRange, tuple[int, str], tuple[int, str]]] = field(default_factory=list)
    located: list[RowDifference] = field(default_factory=list)
    complete: bool = True
    whole: bool = False  # compared as one range (no usable key)
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return (
            not self.differing and not self.error and not any(d.what != MOVED for d in self.located)
        )

    @property
    def only_moved(self) -> bool:
        """Every difference found is a row sorting elsewhere (collation), none lost."""
        return (
            self.complete
            and bool(self.located)
            and all(d.what == MOVED for d in self.located)
            and all(s[0] == t[0] for _, s, t in self.differing)
        )

    @property
    def verdict(self) -> Verdict:
        if self.ok:
            return Verdict.PASS
        if (self.error and self.timed_out) or (not self.error and self.only_moved):
            return Verdict.WARN
        return Verdict.FAIL


def _guard(outcome: _TableOutcome, work: Callable[[], None]) -> _TableOutcome:
    """Run one table's comparison; its query errors become its outcome."""
    try:
        work()
    except psycopg.Error as exc:
        outcome.error = _error_text(exc)
        outcome.timed_out = getattr(exc, "sqlstate", None) in _TIMEOUT_STATES
    return outcome


def _locate(
    outcome: _TableOutcome,
    src: _TableReader,
    tgt: _TableReader,
    opts: VerifyOptions,
    max_chunks: int,
) -> None:
    for rng, s, t in outcome.differing[:max_chunks]:
        left = opts.max_keys - len(outcome.located)
        if left <= 0:
            outcome.complete = False
            break
        loc = locate_rows(
            src, tgt, rng, leaf_rows=opts.leaf_rows, fanout=opts.fanout, max_keys=left, known=(s, t)
        )
        outcome.located.extend(loc.rows)
        outcome.complete &= loc.complete
    if len(outcome.differing) > max_chunks:
        outcome.complete = False


def _report_table(report: Report, o: _TableOutcome, opts: VerifyOptions, mode: str) -> None:
    """One FAIL (or WARN for a timeout / collation-only difference) line for a table."""
    key = o.pair.spec.key
    name = o.pair.qualname
    if o.error:
        verdict = Verdict.WARN if o.timed_out else Verdict.FAIL
        report.add(
            "data.table",
            verdict,
            f"{name}: could not compare: {o.error}",
            fix="retry when the server is less busy" if o.timed_out else None,
            table=name,
        )
        return
    real = [d for d in o.located if d.what != MOVED]
    if o.only_moved:
        report.warn(
            "data.table",
            f"{name}: the same rows, but {len(o.located)} of them sort elsewhere by key on "
            "the target (different collation?)",
            fix="compare the collations (pgferry params) before trusting text-keyed indexes",
            table=name,
        )
        return
    lines = []
    whole_range = len(o.differing) == 1 and o.differing[0][0] == KeyRange()
    for rng, s, t in o.differing[: opts.max_listed]:
        what = (
            f"{s[0]:,} rows on source, {t[0]:,} on target"
            if s[0] != t[0]
            else f"same row count ({s[0]:,}), different content"
        )
        lines.append(what if whole_range else f"key range {rng.describe(key)}: {what}")
    if len(o.differing) > opts.max_listed:
        lines.append(f"... and {len(o.differing) - opts.max_listed} more ranges")
    if o.whole and not key:
        lines.append("no primary key or unique NOT NULL index: a key is needed to locate the rows")
    elif o.whole:
        lines.append("the target has no unique index on the key: rows not located")
    for d in real[: opts.max_keys]:
        lines.append(f"row {key_text(key, d.key)}: {d.what}")
    if real and not o.complete:
        lines.append(f"(first {len(real)} differing rows shown; there may be more)")
    summary = (
        f"{name}: rows differ"
        if whole_range
        else f"{name}: {len(o.differing)} of {o.ranges} {mode} differ"
    )
    report.fail(
        "data.table",
        summary + "\n" + _listing(lines, 10**6),
        fix="re-copy the table (or the listed rows) from the source",
        table=name,
        ranges=[
            {"condition": r.describe(key), "source_rows": s[0], "target_rows": t[0]}
            for r, s, t in o.differing
        ],
        rows=[
            {"key": dict(zip(key, d.key, strict=False)), "difference": d.what} for d in o.located
        ],
    )


# -- data: quick ---------------------------------------------------------------------------


def _quick_data(
    report: Report,
    src: _Side,
    tgt: _Side,
    pairs: list[_Pair],
    jobs: int,
    sample_tables: int,
    opts: VerifyOptions,
    deadline: float,
) -> None:
    rnd = random.Random()
    small = [p for p in pairs if max(p.source.bytes, p.target.bytes) <= opts.small_table_bytes]
    rnd.shuffle(small)
    small = small[: opts.small_tables]
    large = [p for p in pairs if max(p.source.bytes, p.target.bytes) > opts.small_table_bytes]
    sampled = large[:sample_tables]
    tasks: list[tuple[str, _Pair]] = [("sample", p) for p in sampled] + [
        ("whole", p) for p in small
    ]
    outcomes: list[tuple[str, _TableOutcome | None]] = []
    with ThreadPoolExecutor(jobs, thread_name_prefix="verify") as pool:
        futures = [
            (kind, pool.submit(_quick_table, kind, p, src, tgt, opts, deadline, rnd.random()))
            for kind, p in tasks
        ]
        try:
            outcomes = [(kind, f.result()) for kind, f in futures]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            src.cancel()
            tgt.cancel()
            raise
    skipped = [kind for kind, o in outcomes if o is None]
    done = [(kind, o) for kind, o in outcomes if o is not None]
    for kind, o in done:
        if not o.ok:
            _report_table(report, o, opts, "sampled key ranges" if kind == "sample" else "tables")
    small_total = len(pairs) - len(large)
    _quick_summary(report, done, len(sampled), len(large), len(small), small_total, skipped, opts)


def _quick_table(
    kind: str,
    p: _Pair,
    src: _Side,
    tgt: _Side,
    opts: VerifyOptions,
    deadline: float,
    seed: float,
) -> _TableOutcome | None:
    if time.monotonic() > deadline:
        return None
    outcome = _TableOutcome(p)
    if kind == "whole" or not p.spec.key or not p.target_has_key:
        if kind == "sample":  # a large table that cannot be read by key range
            outcome.whole = True
            return outcome
        return _guard(outcome, partial(_compare_whole, outcome, src, tgt, opts))
    return _guard(outcome, partial(_sample_ranges, outcome, src, tgt, opts, deadline, seed))


def _compare_whole(outcome: _TableOutcome, src: _Side, tgt: _Side, opts: VerifyOptions) -> None:
    """A small table: its count and hash; its differing rows when it has a key."""
    spec = outcome.pair.spec
    s_reader, t_reader = _TableReader(src, spec), _TableReader(tgt, spec)
    s, t = s_reader.fingerprint(KeyRange()), t_reader.fingerprint(KeyRange())
    outcome.rows, outcome.ranges = s[0], 1
    outcome.whole = not (spec.key and outcome.pair.target_has_key)
    if s != t:
        outcome.differing.append((KeyRange(), s, t))
        if not outcome.whole:
            _locate(outcome, s_reader, t_reader, opts, 1)


def quick_ranges(
    first: tuple[Key, int] | None,
    last: tuple[Key, int] | None,
    middles: Sequence[tuple[Key, tuple[Key, int] | None]],
    rows: int,
) -> list[KeyRange]:
    """The key ranges a quick check compares, from what the source said (pure).

    `first`: last key of the first `rows` rows and how many were read; `last`: first
    key of the last `rows` rows; `middles`: (start bound, last key of the `rows` rows
    from it). The first range has no lower bound and the last no upper bound, so rows
    the target holds beyond the source's ends are counted too.
    """
    if first is None:  # empty on the source: is the target empty too?
        return [KeyRange()]
    if first[1] < rows:  # the whole table fits in one range
        return [KeyRange()]
    out = [KeyRange(upper=first[0], upper_inclusive=True)]
    for start, end in middles:
        if end is not None:
            out.append(KeyRange(lower=start, upper=end[0], upper_inclusive=True))
    if last is not None:
        out.append(KeyRange(lower=last[0]))
    return out


def _sample_ranges(
    outcome: _TableOutcome,
    src: _Side,
    tgt: _Side,
    opts: VerifyOptions,
    deadline: float,
    seed: float,
) -> None:
    spec = outcome.pair.spec
    limit = 2 * opts.range_rows + 1  # the target may hold more rows than the source
    s_reader, t_reader = _TableReader(src, spec, limit), _TableReader(tgt, spec, limit)
    n = opts.range_rows
    first = s_reader.edge(KeyRange(), n)
    last = s_reader.edge(KeyRange(), n, from_end=True)
    middles: list[tuple[Key, tuple[Key, int] | None]] = []
    if first is not None and first[1] >= n:
        for bound in spread_bounds(
            s_reader.histogram(), opts.ranges_per_table - 2, random.Random(seed)
        ):
            start: Key = (bound,)
            middles.append((start, s_reader.edge(KeyRange(lower=start), n)))
    for rng in quick_ranges(first, last, middles, n):
        if time.monotonic() > deadline:
            outcome.complete = False
            break
        s, t = s_reader.fingerprint(rng), t_reader.fingerprint(rng)
        outcome.ranges += 1
        outcome.rows += s[0]
        if s != t:
            outcome.differing.append((rng, s, t))
    if outcome.differing:
        quick = VerifyOptions(leaf_rows=limit, max_keys=opts.max_keys)
        _locate(outcome, s_reader, t_reader, quick, opts.ranges_per_table)


def _quick_summary(
    report: Report,
    done: list[tuple[str, _TableOutcome]],
    sampled: int,
    large: int,
    small: int,
    small_total: int,
    skipped: list[str],
    opts: VerifyOptions,
) -> None:
    samples = [o for kind, o in done if kind == "sample"]
    keyless = [o.pair.qualname for o in samples if o.whole]
    checked = [o for o in samples if not o.whole and not o.error]
    wholes = [o for kind, o in done if kind == "whole" and not o.error]
    ranges = sum(o.ranges for o in checked)
    rows = sum(o.rows for o in checked)
    lines = [
        f"{len(checked)} of the {sampled} largest tables sampled: {ranges} key ranges, "
        f"{rows:,} rows read by index",
        f"{len(wholes)} small tables (<= {_size(opts.small_table_bytes)}) compared whole"
        + (f" (a random {small} of {small_total}: repeat to widen)" if small < small_total else ""),
    ]
    if large > sampled:
        lines.append(f"{large - sampled} other large tables not sampled (--full compares all)")
    names = [o.pair.qualname for o in checked]
    if keyless:
        report.warn(
            "data.keyless",
            f"{len(keyless)} large table(s) without a usable key on both sides, not sampled: "
            + ", ".join(keyless[: opts.max_listed]),
            fix="compare them with --full (whole-table checksums)",
            tables=keyless,
        )
    if skipped:
        report.warn(
            "data.budget",
            f"time budget ({opts.budget_seconds:g}s) reached: {len(skipped)} table check(s) "
            "not started",
            fix="verify again (other tables are drawn) or use --full",
        )
    failed = sum(1 for _, o in done if o.verdict == Verdict.FAIL)
    message = "\n".join(lines)
    if failed:
        report.fail("data.sample", f"{failed} table(s) differ (above)\n{message}", sampled=names)
    else:
        report.ok("data.sample", message, sampled=names)


# -- data: full ----------------------------------------------------------------------------


def _full_data(
    report: Report, src: _Side, tgt: _Side, pairs: list[_Pair], jobs: int, opts: VerifyOptions
) -> None:
    pools = (
        ThreadPoolExecutor(jobs, thread_name_prefix="verify-source"),
        ThreadPoolExecutor(jobs, thread_name_prefix="verify-target"),
    )
    outcomes: list[_TableOutcome] = []
    try:
        plans = [(p, pools[0].submit(_plan_chunks, p, src, opts)) for p in pairs]
        work: list[tuple[_TableOutcome, list[tuple[KeyRange, Future[Any], Future[Any]]]]] = []
        for p, plan in plans:
            outcome = _TableOutcome(p)
            outcomes.append(outcome)
            ranges = plan.result()
            if isinstance(ranges, str):
                outcome.error = ranges
                continue
            outcome.whole = not (p.spec.key and p.target_has_key)
            chunks = []
            for rng in ranges:
                chunks.append(
                    (
                        rng,
                        pools[0].submit(_chunk, src, p.spec, rng),
                        pools[1].submit(_chunk, tgt, p.spec, rng),
                    )
                )
            work.append((outcome, chunks))
        for outcome, chunks in work:
            for rng, fs, ft in chunks:
                s, t = fs.result(), ft.result()
                if isinstance(s, str):
                    outcome.error = outcome.error or s
                    continue
                if isinstance(t, str):
                    outcome.error = outcome.error or t
                    continue
                outcome.ranges += 1
                outcome.rows += s[0]
                if s != t:
                    outcome.differing.append((rng, s, t))
    except BaseException:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        src.cancel()
        tgt.cancel()
        raise
    finally:
        for pool in pools:
            pool.shutdown(wait=True)
    for o in outcomes:
        if o.differing and not o.whole:
            _guard(o, partial(_locate_chunks, o, src, tgt, opts))
        if not o.ok:
            _report_table(report, o, opts, "key ranges" if not o.whole else "tables")
    bad = sum(1 for o in outcomes if o.verdict == Verdict.FAIL)
    rows = sum(o.rows for o in outcomes)
    compared = sum(o.ranges for o in outcomes)
    keyless = [o.pair.qualname for o in outcomes if o.whole and not o.pair.spec.key]
    message = (
        f"{len(outcomes)} tables, {compared:,} key ranges, {rows:,} source rows compared exactly"
        + (f"; {len(keyless)} without a key compared whole" if keyless else "")
    )
    if bad:
        report.fail("data.full", f"{bad} table(s) differ (above); {message}")
    else:
        report.ok("data.full", message, without_key=keyless)


def _locate_chunks(o: _TableOutcome, src: _Side, tgt: _Side, opts: VerifyOptions) -> None:
    """The differing rows of a table's first differing chunks (in the calling thread)."""
    readers = _TableReader(src, o.pair.spec), _TableReader(tgt, o.pair.spec)
    _locate(o, *readers, opts, opts.max_located_chunks)


def _plan_chunks(p: _Pair, src: _Side, opts: VerifyOptions) -> list[KeyRange] | str:
    """Key ranges of about chunk_rows rows, cut at keys sampled from the source (or an
    error message)."""
    try:
        return _chunk_ranges(p, src, opts)
    except psycopg.Error as exc:
        return f"source: {_error_text(exc)}"


def _chunk_ranges(p: _Pair, src: _Side, opts: VerifyOptions) -> list[KeyRange]:
    spec = p.spec
    if not spec.key or not p.target_has_key:
        return [KeyRange()]
    estimated = p.source.estimated_rows or 0.0
    if estimated <= 0 and p.source.bytes > 0:
        estimated = p.source.bytes / 100  # no statistics: guess ~100 bytes a row
    parts = chunk_count(estimated, opts.chunk_rows)
    if parts <= 1:
        return [KeyRange()]
    points = _TableReader(src, spec).split_points(
        KeyRange(), parts, sample_percent(estimated, p.source.bytes // 8192, parts)
    )
    return split_range(KeyRange(), points)


def _chunk(side: _Side, spec: TableSpec, rng: KeyRange) -> tuple[int, str] | str:
    try:
        return _TableReader(side, spec).fingerprint(rng)
    except psycopg.Error as exc:
        return f"{side.info.role}: {_error_text(exc)}"
