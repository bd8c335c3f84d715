"""The end-of-run summary: per phase wall time, cumulative worker time, bytes, concurrency."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pgferry.catalog.model import Catalog
from pgferry.clone.options import CloneOptions
from pgferry.state.store import StateStore, UnitKind

PHASE_TITLES = {
    "catalog": "Catalog the source",
    "dump": "Dump schema (pg_dump)",
    "pre-data": "Restore pre-data",
    "copy": "Copy table data",
    "large-objects": "Large objects",
    "indexes": "Create indexes",
    "constraints": "Add constraints",
    "vacuum": "VACUUM ANALYZE",
    "sequences": "Set sequences",
    "post-data": "Restore post-data",
}


def build_summary(
    store: StateStore, catalog: Catalog, options: CloneOptions, *, wall: float
) -> dict[str, Any]:
    """Figures for the summary table and summary.json, read from the state store."""
    phases = []
    for row in store.phases():
        phases.append(
            {
                "phase": row.name,
                "title": PHASE_TITLES.get(row.name, row.name),
                "status": str(row.status),
                "wall_seconds": round(row.duration or 0.0, 3),
                "cumulative_seconds": round(row.cumulative or row.duration or 0.0, 3),
                "bytes": row.bytes or 0,
                "concurrency": row.concurrency or 1,
            }
        )
    per_table: dict[int, dict[str, Any]] = defaultdict(
        lambda: {
            "parts": 0,
            "bytes": 0,
            "rows": 0,
            "copy_seconds": 0.0,
            "indexes": 0,
            "index_seconds": 0.0,
        }
    )
    for u in store.units():
        if not u.table_oid:
            continue
        entry = per_table[u.table_oid]
        if u.kind == UnitKind.COPY:
            entry["parts"] += 1
            entry["bytes"] += u.bytes
            entry["rows"] += u.rows or 0
            entry["copy_seconds"] += u.duration or 0.0
        elif u.kind in (UnitKind.INDEX, UnitKind.CONSTRAINT):
            entry["indexes"] += u.kind == UnitKind.INDEX
            entry["index_seconds"] += u.duration or 0.0
    tables = []
    for oid, entry in per_table.items():
        t = catalog.table(oid)
        tables.append(
            {
                "oid": oid,
                "schema": t.schema,
                "name": t.name,
                **entry,
                "copy_seconds": round(entry["copy_seconds"], 3),
                "index_seconds": round(entry["index_seconds"], 3),
            }
        )
    tables.sort(key=lambda e: -e["bytes"])
    runs = store.runs()
    first_start = runs[0].started_at if runs else None
    return {
        "source": options.source.short(),
        "target": options.target.short(),
        "phases": phases,
        "tables": tables,
        "this_run_seconds": round(wall, 3),
        "runs": len(runs),
        "first_started_at": first_start,
        "total_bytes": sum(e["bytes"] for e in tables),
        "total_rows": sum(e["rows"] for e in tables),
    }
