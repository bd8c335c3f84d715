"""What a clone of the source would copy, decided as the clone decides it: the catalog
read on one snapshot, the schema dumped with pg_dump on it (into a private temporary
directory, removed after), the filters resolved against the dump's dependencies, the
units planned. Nothing is written to either server. `pgferry list` shows it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from pgferry.catalog.facts import database_size, large_object_oids
from pgferry.catalog.filters import Filters, no_filters
from pgferry.catalog.model import Catalog, Table
from pgferry.catalog.plan import PlanOptions, copy_order, plan_units
from pgferry.catalog.queries import read_catalog
from pgferry.catalog.scope import Scope, ScopeOptions, resolve_scope
from pgferry.catalog.toc import TocEntry, read_toc, render_use_list
from pgferry.clone.estimate import estimate
from pgferry.clone.schema import dump_schema
from pgferry.errors import InputError
from pgferry.pg.binaries import find_dump_tools
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.snapshot import SnapshotHolder
from pgferry.state.store import Meta, NewUnit, StateStore, UnitKind
from pgferry.state.workdir import WorkDir
from pgferry.text import human_bytes, human_duration

if TYPE_CHECKING:
    from pgferry.clone.options import CloneOptions

# What the target needs free, against the source database's size: the copy, its indexes
# built again, and WAL and room to spare (SPEC's 150% rule).
TARGET_DISK_FACTOR = 1.5


@dataclass(frozen=True)
class Preview:
    catalog: Catalog
    scope: Scope
    units: list[NewUnit]
    parts: dict[int, int]  # table oid -> parts its copy is split into
    kept_extensions: frozenset[str]  # those the clone creates
    toc: list[TocEntry]  # the schema dump's table of contents


def preview(
    source: ConnInfo,
    filters: Filters,
    plan: PlanOptions,
    scoping: ScopeOptions | None = None,
    *,
    estimate_sizes: bool = False,
) -> Preview:
    scoping = scoping or ScopeOptions()
    skip_large_objects = scoping.skip_large_objects
    holder = SnapshotHolder(source)
    try:
        snapshot = holder.export()
        conn = holder.conn
        assert conn is not None
        catalog = read_catalog(conn, estimate_sizes=estimate_sizes)
        tools = find_dump_tools(catalog.major)
        lo_oids = [] if skip_large_objects else large_object_oids(conn)
        with tempfile.TemporaryDirectory(prefix="pgferry-list-") as work:
            dump = Path(work) / "schema.dump"
            dump_schema(
                tools, source, dump, snapshot=snapshot.name, large_objects=not skip_large_objects
            )
            toc = read_toc(tools.pg_restore, dump)
    finally:
        holder.release()
    scope = resolve_scope(
        catalog,
        filters,
        toc,
        scoping,
    )
    units, parts = plan_units(catalog, scope, plan, lo_oids if scope.large_objects else [])
    kept = frozenset(e.tag for e in toc if e.desc == "EXTENSION" and e.dump_id in scope.restore_ids)
    return Preview(catalog, scope, units, parts, kept, toc)


def print_plan(options: CloneOptions) -> None:
    """`clone --dry-run`: the plan, from the source alone (the target is not touched)."""
    p = preview(
        options.source,
        options.filters,
        options.plan_options(),
        options.scope_options(),
        estimate_sizes=options.estimate_table_sizes,
    )
    cat, scope = p.catalog, p.scope
    order = [t for t in copy_order(cat, scope) if t.oid in scope.copy_tables]
    copy_bytes = sum(t.bytes for t in order)
    units = [u for u in p.units if u.kind == UnitKind.COPY]
    split = {oid: n for oid, n in p.parts.items() if n > 1}
    with options.source.connect("pgferry plan") as conn:
        size = database_size(conn)
    lines = [
        "pgferry clone --dry-run: the plan (nothing was written to either server)",
        f"source {options.source.short()} (PostgreSQL {cat.major}): "
        f"{len(scope.tables)} of {len(cat.tables)} relations in scope",
        f"copy: {len(order)} tables, {human_bytes(copy_bytes)}, in {len(units)} units"
        + (f" ({len(split)} tables split into {sum(split.values())} parts)" if split else "")
        + f", {options.table_jobs} at a time, largest first:",
    ]
    for n, t in enumerate(order[:10], start=1):
        parts = f", {p.parts[t.oid]} parts" if p.parts.get(t.oid, 1) > 1 else ""
        lines.append(f"  {n:>2}. {t.qualname}  {human_bytes(t.bytes)}{parts}")
    if len(order) > 10:
        lines.append(f"      ... and {len(order) - 10} more (pgferry list tables)")
    kinds = {k: sum(1 for u in p.units if u.kind == k) for k in UnitKind}
    lines.append(
        f"then: {kinds[UnitKind.INDEX]} indexes ({options.index_jobs} at a time), "
        f"{kinds[UnitKind.CONSTRAINT]} constraints, {kinds[UnitKind.VACUUM]} VACUUM ANALYZE, "
        f"{kinds[UnitKind.SEQUENCE]} sequences, {kinds[UnitKind.BLOBS]} batches of large "
        f"objects ({cat.large_objects if scope.large_objects else 0} objects), post-data"
    )
    for warning in scope.warnings:
        lines.append(f"filters: {warning}")
    lines.append(
        f"target disk: keep at least {human_bytes(int(size * TARGET_DISK_FACTOR))} free "
        f"({TARGET_DISK_FACTOR}x the source database's {human_bytes(size)})"
    )
    lines.append(_estimate_line(options, p, order))
    print("\n".join(lines))


def _estimate_line(options: CloneOptions, p: Preview, order: list[Table]) -> str:
    """The time range from rates sampled on both servers, or why there is none."""
    try:
        e = estimate(
            options.source,
            options.target,
            p.catalog,
            order,
            p.units,
            table_jobs=options.table_jobs,
            index_jobs=options.index_jobs,
            vacuum=not options.skip_vacuum,
        )
    except psycopg.Error as exc:
        return f"time: no estimate ({' '.join(str(exc).split())})"
    if e is None:
        return "time: no estimate (no rows to sample)"
    return (
        f"time: about {human_duration(e.middle)} ({human_duration(e.low)} to "
        f"{human_duration(e.high)}; from "
        f"{human_bytes(e.sampled)} sampled: {human_bytes(int(e.copy_rate))}/s per copy "
        f"worker, {human_bytes(int(e.index_rate))}/s per index build; written into a "
        "temporary table on the target, rolled back)"
    )


def restore_list(workdir: Path, filters: Filters | None) -> str:
    """`restore parse-list`: the dump in DIR's table of contents as the restore reads it
    (pg_restore --use-list), the entries the filters (given, else DIR's) leave out
    commented with ';'."""
    wd = WorkDir(workdir)
    if not wd.dump_file.exists() or not (workdir / StateStore.FILENAME).exists():
        raise InputError(
            f"no schema dump in {workdir}",
            fix="run pgferry dump schema (or copy schema, clone) with this --dir first",
        )
    store = StateStore.open_dir(workdir, readonly=True)
    try:
        catalog = Catalog.from_json(store.get_json(Meta.CATALOG))
        stored = store.get_json(Meta.FILTERS)
        options = store.get_json(Meta.OPTIONS) or {}
    finally:
        store.close()
    if filters is None:
        filters = Filters.from_json(stored) if stored is not None else no_filters()
    tools = find_dump_tools(catalog.major)
    toc = read_toc(tools.pg_restore, wd.dump_file)
    scope = resolve_scope(
        catalog,
        filters,
        toc,
        ScopeOptions(
            **{
                name: bool(options.get(name))
                for name in (
                    "skip_extensions",
                    "skip_large_objects",
                    "skip_ext_comments",
                    "skip_collations",
                    "skip_publications",
                )
            }
        ),
    )
    return render_use_list(toc, set(scope.restore_ids))
