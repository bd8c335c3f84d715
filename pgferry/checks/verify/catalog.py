"""What verify reads of each side's catalog: objects, and tables with sizes, estimates and keys.

The tables are paired across sides with the key both can be read by (`Pair`): the
input of every check that follows, so the choice of key is made once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgferry.catalog.definitions import DECORATION_QUERIES, KEYED_RELATIONS_SQL, SCHEMA_QUERIES
from pgferry.catalog.objects import SchemaObject, read_schema_objects
from pgferry.checks.compare import Side
from pgferry.checks.verify.queries import TableSpec
from pgferry.text import display_name


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


def _relations(side: Side) -> dict[tuple[str, str], _Rel]:
    rows = side.holder.execute(KEYED_RELATIONS_SQL).fetchall()
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
    objects = read_schema_objects(side.holder, {**SCHEMA_QUERIES, **DECORATION_QUERIES})
    return side.holder.info.server_version, objects, _relations(side)
