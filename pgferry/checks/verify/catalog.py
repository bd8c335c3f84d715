"""What verify reads of each side's catalog: objects, and tables with sizes, estimates and keys.

The tables are paired across sides with the key both can be read by (`Pair`): the
input of every check that follows, so the choice of key is made once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgferry.catalog.definitions import DECORATION_QUERIES, SCHEMA_QUERIES
from pgferry.catalog.objects import SchemaObject, read_schema_objects
from pgferry.checks.compare.side import Relation, Side
from pgferry.checks.verify.queries import TableSpec


@dataclass(frozen=True)
class Pair:
    """One table in the data scope, present on both sides."""

    source: Relation
    target: Relation
    spec: TableSpec
    target_has_key: bool  # the target has a unique index on the same key columns

    @property
    def qualname(self) -> str:
        return self.spec.qualname


def pair_tables(src: Relation, tgt: Relation) -> Pair:
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
) -> tuple[int, dict[str, list[SchemaObject]], dict[tuple[str, str], Relation]]:
    """One side's server version, objects and tables, read on its holder (its snapshot)."""
    objects = read_schema_objects(side.holder, {**SCHEMA_QUERIES, **DECORATION_QUERIES})
    return side.holder.info.server_version, objects, side.relations()
