"""What a clone of the source would copy, decided as the clone decides it: the catalog
read on one snapshot, the schema dumped with pg_dump on it (into a private temporary
directory, removed after), the filters resolved against the dump's dependencies, the
units planned. Nothing is written to either server. `pgferry list` shows it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from pgferry.catalog.facts import large_object_oids
from pgferry.catalog.filters import Filters
from pgferry.catalog.model import Catalog
from pgferry.catalog.plan import PlanOptions, plan_units
from pgferry.catalog.queries import read_catalog
from pgferry.catalog.scope import Scope, ScopeOptions, resolve_scope
from pgferry.catalog.toc import read_toc
from pgferry.clone.schema import dump_schema
from pgferry.pg.binaries import find_dump_tools
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.profiles import SNAPSHOT_READER
from pgferry.state.store import NewUnit


@dataclass(frozen=True)
class Preview:
    catalog: Catalog
    scope: Scope
    units: list[NewUnit]
    parts: dict[int, int]  # table oid -> parts its copy is split into
    kept_extensions: frozenset[str]  # those the clone creates


def preview(
    source: ConnInfo,
    filters: Filters,
    plan: PlanOptions,
    *,
    skip_large_objects: bool = False,
    skip_extensions: bool = False,
) -> Preview:
    with source.connect("pgferry list", settings=SNAPSHOT_READER) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
        assert row is not None
        catalog = read_catalog(conn)
        tools = find_dump_tools(catalog.major)
        lo_oids = [] if skip_large_objects else large_object_oids(conn)
        with tempfile.TemporaryDirectory(prefix="pgferry-list-") as work:
            dump = Path(work) / "schema.dump"
            dump_schema(tools, source, dump, snapshot=row[0], large_objects=not skip_large_objects)
            toc = read_toc(tools.pg_restore, dump)
        conn.execute("ROLLBACK")
    scope = resolve_scope(
        catalog,
        filters,
        toc,
        ScopeOptions(skip_extensions=skip_extensions, skip_large_objects=skip_large_objects),
    )
    units, parts = plan_units(catalog, scope, plan, lo_oids if scope.large_objects else [])
    kept = frozenset(e.tag for e in toc if e.desc == "EXTENSION" and e.dump_id in scope.restore_ids)
    return Preview(catalog, scope, units, parts, kept)
