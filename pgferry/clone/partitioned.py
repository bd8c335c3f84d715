"""Indexes of partitioned tables: restored first, serially, in one transaction.

A partitioned table's index (or the PRIMARY KEY / UNIQUE constraint it backs) is created
`ON ONLY` the parent, invalid, and becomes valid once every partition's index is attached
(`ALTER INDEX ... ATTACH PARTITION`, one post-data entry per partition). Two things went
wrong when these entries ran with the rest of post-data:

- a parallel pg_restore could leave a multi-level parent's index invalid (its
  partitions' indexes attached, yet the parent never validated);
- a retried post-data restore ran with --clean: dropping a parent's index drops the
  partition indexes attached to it, which the copy workers built and no pg_restore entry
  rebuilds, so every ATTACH then failed ("relation ... does not exist").

So they form a pass of their own, before the rest of post-data: one pg_restore
--single-transaction (cheap: the parent indexes hold no rows and attaching reads only the
catalog), all or nothing. A retry finds the parent indexes there and skips the pass, or
absent and runs it again; it never needs --clean.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgferry.catalog.scope import PG_CLASS, PG_CONSTRAINT
from pgferry.catalog.target import PARTITIONED_INDEXES_SQL, PRESENT_OBJECTS_SQL
from pgferry.catalog.toc import TocEntry
from pgferry.pg.conninfo import ConnInfo

INDEX_ATTACH = "INDEX ATTACH"


@dataclass(frozen=True)
class PartitionedPass:
    """The post-data entries that build partitioned indexes and attach their partitions."""

    dump_ids: frozenset[int]
    indexes: tuple[tuple[str, str], ...]  # (schema, name) of each partitioned index

    def restored_on(self, target: ConnInfo) -> bool:
        """Did an earlier run restore this pass? (It is all or nothing.)"""
        if not self.indexes:
            return False
        schemas = [s for s, _ in self.indexes]
        names = [n for _, n in self.indexes]
        with target.connect("pgferry post-data") as conn:
            row = conn.execute(PRESENT_OBJECTS_SQL, (schemas, names)).fetchone()
        return row is not None and int(row[0]) > 0


def partitioned_pass(source: ConnInfo, toc: list[TocEntry], keep: set[int]) -> PartitionedPass:
    """The entries of `keep` that belong to the partitioned-index pass."""
    kept = [e for e in toc if e.dump_id in keep]
    index_oids = [e.oid for e in kept if e.desc == "INDEX" and e.catalog_oid == PG_CLASS]
    constraint_oids = [
        e.oid for e in kept if e.desc == "CONSTRAINT" and e.catalog_oid == PG_CONSTRAINT
    ]
    found: dict[tuple[int, int], tuple[str, str]] = {}  # (catalog, oid) -> index name
    if index_oids or constraint_oids:
        with source.connect("pgferry catalog") as conn:
            rows = conn.execute(
                PARTITIONED_INDEXES_SQL,
                {
                    "indexes": index_oids,
                    "constraints": constraint_oids,
                    "pg_class": PG_CLASS,
                    "pg_constraint": PG_CONSTRAINT,
                },
            ).fetchall()
        found = {(int(cat), int(oid)): (nsp, name) for cat, oid, nsp, name in rows}
    ids = {
        e.dump_id
        for e in kept
        if e.desc == INDEX_ATTACH
        or (e.desc in ("INDEX", "CONSTRAINT") and (e.catalog_oid, e.oid) in found)
    }
    return PartitionedPass(frozenset(ids), tuple(sorted(set(found.values()))))
