"""The plan: units of work for the data phase, decided once and stored.

Pure functions: tables biggest first, big tables split into block (ctid) ranges, an
index unit per index, a constraint unit per PK/UNIQUE/EXCLUDE constraint, a vacuum unit
per copied table, a unit per sequence, large objects in batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pgferry.catalog.model import Catalog, Table
from pgferry.catalog.scope import Scope
from pgferry.state.store import NewUnit, UnitKind

CTID_SPLIT_MIN_MAJOR = 14  # TID range scans make block-range parts cheap
LARGE_OBJECT_BATCH = 500


# The most parallel maintenance workers pgferry gives one index build (the last big ones,
# when index jobs are idle).
MAX_PARALLEL_MAINTENANCE = 4


@dataclass(frozen=True)
class PlanOptions:
    split_tables_larger_than: int = 0  # bytes; 0 disables splitting
    split_max_parts: int = 0  # 0: no cap
    skip_vacuum: bool = False
    table_jobs: int = 4


@dataclass(frozen=True)
class PartRange:
    """Heap blocks [first_page, end_page) of a table part; None means unbounded."""

    part: int
    parts: int
    first_page: int | None
    end_page: int | None


def split_ranges(table: Table, options: PlanOptions, server_major: int) -> list[PartRange]:
    """How a table is copied: one part, or block ranges copied at the same time."""
    threshold = options.split_tables_larger_than
    whole = [PartRange(0, 1, None, None)]
    if threshold <= 0 or table.bytes <= threshold or server_major < CTID_SPLIT_MIN_MAJOR:
        return whole
    if table.access_method not in (None, "heap") or table.pages < 2:
        return whole
    parts = math.ceil(table.bytes / threshold)
    if options.split_max_parts > 0:
        parts = min(parts, options.split_max_parts)
    parts = min(parts, table.pages)
    if parts < 2:
        return whole
    width = math.ceil(table.pages / parts)
    parts = math.ceil(table.pages / width)
    ranges = []
    for i in range(parts):
        first = None if i == 0 else i * width
        end = None if i == parts - 1 else (i + 1) * width
        ranges.append(PartRange(i + 1, parts, first, end))
    return ranges


def copy_order(catalog: Catalog, scope: Scope) -> list[Table]:
    """Tables to copy, biggest first (ties by name for a stable plan)."""
    tables = [catalog.table(oid) for oid in scope.copy_tables]
    return sorted(tables, key=lambda t: (-t.bytes, t.schema, t.name))


def plan_units(
    catalog: Catalog, scope: Scope, options: PlanOptions, large_object_oids: list[int]
) -> tuple[list[NewUnit], dict[int, int]]:
    """All units of the data phase, and the number of parts per copied table."""
    units: list[NewUnit] = []
    parts_by_table: dict[int, int] = {}
    for table in copy_order(catalog, scope):
        ranges = split_ranges(table, options, catalog.major)
        parts_by_table[table.oid] = len(ranges)
        for r in ranges:
            label = table.qualname if r.parts == 1 else f"{table.qualname} [{r.part}/{r.parts}]"
            units.append(
                NewUnit(
                    kind=UnitKind.COPY,
                    label=label,
                    table_oid=table.oid,
                    part=r.part,
                    detail={"first_page": r.first_page, "end_page": r.end_page, "parts": r.parts},
                )
            )
    for idx in sorted(catalog.indexes, key=lambda i: i.oid):
        if idx.oid not in scope.indexes:
            continue
        label = idx.qualname
        if idx.constraint_type in ("p", "u", None):
            units.append(
                NewUnit(kind=UnitKind.INDEX, label=label, table_oid=idx.table_oid, obj_oid=idx.oid)
            )
        if idx.constraint_type is not None:
            units.append(
                NewUnit(
                    kind=UnitKind.CONSTRAINT,
                    label=f"{idx.schema}.{idx.constraint_name}",
                    table_oid=idx.table_oid,
                    obj_oid=idx.oid,
                )
            )
    if not options.skip_vacuum:
        for table in copy_order(catalog, scope):
            units.append(NewUnit(kind=UnitKind.VACUUM, label=table.qualname, table_oid=table.oid))
    for seq in sorted(catalog.sequences, key=lambda s: s.oid):
        if seq.oid in scope.sequences:
            units.append(NewUnit(kind=UnitKind.SEQUENCE, label=seq.qualname, obj_oid=seq.oid))
    for n, start in enumerate(range(0, len(large_object_oids), LARGE_OBJECT_BATCH), start=1):
        batch = large_object_oids[start : start + LARGE_OBJECT_BATCH]
        units.append(
            NewUnit(
                kind=UnitKind.BLOBS,
                label=f"large objects {batch[0]}..{batch[-1]}",
                part=n,
                detail={"first": batch[0], "last": batch[-1], "count": len(batch)},
            )
        )
    return units, parts_by_table
