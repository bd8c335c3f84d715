"""`compare_schema`: per object type, the names on each side and their definitions.

Each side's objects are read on one snapshot, narrowed to what the filters keep, and
diffed by display name: names only on one side, and names whose definition (as the
server prints it) differs.
"""

from __future__ import annotations

import time

from pgferry.catalog.definitions import SCHEMA_QUERIES
from pgferry.catalog.filters import Filters, no_filters
from pgferry.catalog.objects import (
    FilterScope,
    SchemaObject,
    read_schema_objects,
    scoped_definitions,
)
from pgferry.checks.compare.results import ObjectKindComparison, SchemaComparison
from pgferry.checks.compare.side import begin_read
from pgferry.pg.conninfo import ConnInfo


def compare_schema(
    source: ConnInfo, target: ConnInfo, filters: Filters | None = None
) -> SchemaComparison:
    """Compare the sets of objects of each type, and their definitions, on both sides.

    With `filters`, only what the migration would have created is compared.
    """
    t0 = time.monotonic()
    src_objects = _schema_objects(source)
    tgt_objects = _schema_objects(target)
    scope = FilterScope(
        filters or no_filters(),
        [o for side in (src_objects, tgt_objects) for objs in side.values() for o in objs],
    )
    src, tgt = scoped_definitions(src_objects, scope), scoped_definitions(tgt_objects, scope)
    kinds = tuple(diff_objects(kind, src[kind], tgt[kind]) for kind in SCHEMA_QUERIES)
    return SchemaComparison(kinds=kinds, seconds=round(time.monotonic() - t0, 3))


def _schema_objects(info: ConnInfo) -> dict[str, list[SchemaObject]]:
    """One side's objects, read on one snapshot."""
    conn = info.connect(f"pgferry compare {info.role}")
    try:
        begin_read(conn, None)
        objects = read_schema_objects(conn)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return objects


def diff_objects(kind: str, source: dict[str, str], target: dict[str, str]) -> ObjectKindComparison:
    """Names only on one side, and names whose definitions differ."""
    return ObjectKindComparison(
        kind=kind,
        source_count=len(source),
        target_count=len(target),
        only_on_source=tuple(sorted(source.keys() - target.keys())),
        only_on_target=tuple(sorted(target.keys() - source.keys())),
        different=tuple(
            (name, source[name], target[name])
            for name in sorted(source.keys() & target.keys())
            if source[name] != target[name]
        ),
    )
