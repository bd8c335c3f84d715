"""One table on one side, read by key range: the `RangeReader` both modes use.

Thin I/O over the pure queries of `queries`, on a side's connections (its settings and
snapshot), so that the bisection and the samplers never see SQL or connections.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgferry.checks.compare import Side
from pgferry.checks.verify.queries import (
    HISTOGRAM_SQL,
    TableSpec,
    edge_query,
    fingerprint_range_query,
    lookup_query,
    rows_query,
    split_points_query,
)
from pgferry.checks.verify.ranges import Key, KeyRange


class TableReader:
    """RangeReader over a Side; `limit` bounds every range read (quick mode)."""

    def __init__(self, side: Side, table: TableSpec, limit: int | None = None) -> None:
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
