"""Apply the filters: which dump entries to restore and which objects to copy or build.

Pure logic over the source catalog and the dump's table of contents. Exclusion starts at
the objects the filters name and follows the dump's dependency graph, so whatever depends
on an excluded object (views, foreign keys, triggers, comments, grants, sequences it owns)
is excluded with it and reported.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, replace

from pgferry.catalog.filters import Filters, QualifiedName, quote_ident
from pgferry.catalog.model import Catalog
from pgferry.catalog.toc import DECORATION_DESCS, LARGE_OBJECT_DESCS, TocEntry
from pgferry.text import listed

PG_CLASS = 1259
PG_CONSTRAINT = 2606
PG_NAMESPACE = 2615
PG_EXTENSION = 3079
PG_EVENT_TRIGGER = 3466

RELATION_DESCS = frozenset({"TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE", "SEQUENCE"})
TABLE_LIKE_KINDS = frozenset({"r", "p", "m", "f"})


@dataclass(frozen=True)
class ScopeOptions:
    skip_extensions: bool = False
    skip_large_objects: bool = False
    skip_ext_comments: bool = False  # COMMENT ON EXTENSION (owned by its superuser)
    skip_collations: bool = False  # the target has them (created by hand)
    skip_publications: bool = False  # the source's publications stay behind


_PUBLICATION_DESCS = ("PUBLICATION", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA")


def skipped_by_options(toc: list[TocEntry], options: ScopeOptions) -> frozenset[int]:
    """pgcopydb's --skip-ext-comments, --skip-collations, --skip-publications: those
    entries, and the comments and publication members that hang on them."""
    seeds = {
        e.dump_id
        for e in toc
        if (options.skip_ext_comments and e.desc == "COMMENT" and e.tag.startswith("EXTENSION "))
        or (options.skip_collations and e.desc == "COLLATION")
        or (options.skip_publications and e.desc in _PUBLICATION_DESCS)
    }
    hanging = {
        e.dump_id for e in toc if seeds & set(e.deps) and e.desc in ("COMMENT", *_PUBLICATION_DESCS)
    }
    return frozenset(seeds | hanging)


@dataclass(frozen=True)
class Scope:
    """The result of filtering, everything later phases need to know about it."""

    restore_ids: frozenset[int]  # TOC entries to restore
    tables: frozenset[int]  # relations created on the target (any relkind)
    copy_tables: frozenset[int]  # ordinary tables whose rows are copied
    indexes: frozenset[int]  # index oids pgferry builds (incl. constraint-backing ones)
    sequences: frozenset[int]
    large_objects: bool
    warnings: tuple[str, ...]
    # Extensions not created by the restore that kept objects use: the target must have them.
    preinstalled_extensions: frozenset[str] = frozenset()


def resolve_scope(
    catalog: Catalog, filters: Filters, toc: list[TocEntry], options: ScopeOptions
) -> Scope:
    """Decide what migrates. Never raises for names that match nothing: they are warnings."""
    warnings: list[str] = list(filters.warnings)
    by_name = {(t.schema, t.name): t for t in catalog.tables}
    schema_names = {s.name for s in catalog.schemas}
    index_by_name = {(i.schema, i.name): i for i in catalog.indexes}
    ext_names = {e.name for e in catalog.extensions}
    evt_names = {e.name for e in catalog.event_triggers}

    def where(section: str, key: str | QualifiedName) -> str:
        """The prefix naming where `key` is listed: the file, its first line, the section."""
        for e in filters.entries:
            if e.section == section and e.key() == key:
                return f"{filters.path or '<filters>'}:{e.line}: [{section}] "
        return f"filters [{section}]: "

    def known_tables(section: str, names: frozenset[QualifiedName]) -> set[int]:
        found = set()
        for qn in sorted(names, key=str):
            t = by_name.get((qn.schema, qn.name))
            if t is None:
                warnings.append(f"{where(section, qn)}{qn} matches no table on the source")
            else:
                found.add(t.oid)
        return found

    for section, names in (
        ("include-only-schema", filters.include_only_schema),
        ("exclude-schema", filters.exclude_schema),
    ):
        for name in sorted(names - schema_names):
            warnings.append(
                f"{where(section, name)}schema {quote_ident(name)} does not exist on the source"
            )
    for section, names, known in (
        ("include-only-extension", filters.include_only_extension, ext_names),
        ("exclude-extension", filters.exclude_extension, ext_names),
        ("exclude-event-trigger", filters.exclude_event_trigger, evt_names),
    ):
        for name in sorted(names - known):
            warnings.append(
                f"{where(section, name)}{quote_ident(name)} matches nothing on the source"
            )

    # Schemas out of scope.
    excluded_schemas = set(filters.exclude_schema)
    if filters.include_only_schema:
        excluded_schemas |= schema_names - set(filters.include_only_schema)

    # Relations out of scope.
    excluded_rels = known_tables("exclude-table", filters.exclude_table)
    no_data = known_tables("exclude-table-data", filters.exclude_table_data)
    no_data |= _partitions(catalog, no_data)  # a partitioned table's rows are in them
    if filters.include_only_table:
        wanted = known_tables("include-only-table", filters.include_only_table)
        wanted |= _partition_family(catalog, wanted)
        excluded_rels |= {
            t.oid for t in catalog.tables if t.relkind in TABLE_LIKE_KINDS and t.oid not in wanted
        }
    excluded_rels |= {t.oid for t in catalog.tables if t.schema in excluded_schemas}

    excluded_indexes: set[int] = set()
    excluded_constraints: set[int] = set()
    for qn in sorted(filters.exclude_index, key=str):
        idx = index_by_name.get((qn.schema, qn.name))
        if idx is not None:
            excluded_indexes.add(idx.oid)
            if idx.constraint_oid is not None:
                excluded_constraints.add(idx.constraint_oid)
            continue
        # Indexes pg_restore builds (on partitioned tables, materialized views) are known
        # by their dump entries only; a partitioned index's partitions follow it there.
        found = _dumped_index(toc, qn)
        if found is None:
            warnings.append(f"{where('exclude-index', qn)}{qn} matches no index on the source")
        elif found.catalog_oid == PG_CONSTRAINT:
            excluded_constraints.add(found.oid)
        else:
            excluded_indexes.add(found.oid)

    excluded_exts = set(filters.exclude_extension)
    if filters.include_only_extension:
        excluded_exts |= ext_names - set(filters.include_only_extension)
    filtered_exts = set(excluded_exts)
    if options.skip_extensions:
        excluded_exts |= ext_names
    kept_ext_schemas = {e.schema for e in catalog.extensions if e.name not in excluded_exts}

    # Seeds that pull their dependents out with them, and seeds that do not.
    seeds: set[int] = set()
    local: set[int] = set()
    matviews_no_data = {oid for oid in no_data if catalog.table(oid).relkind == "m"}
    excluded_oids = excluded_rels | excluded_indexes
    for e in toc:
        if _seed(
            e,
            excluded_schemas,
            kept_ext_schemas,
            excluded_oids,
            excluded_constraints,
            filters.exclude_event_trigger,
            matviews_no_data,
        ):
            seeds.add(e.dump_id)
        elif (e.desc == "EXTENSION" and e.tag in excluded_exts) or (
            options.skip_large_objects and e.desc in LARGE_OBJECT_DESCS
        ):
            local.add(e.dump_id)

    dependents: dict[int, list[int]] = defaultdict(list)
    for e in toc:
        for d in e.deps:
            dependents[d].append(e.dump_id)
    entry = {e.dump_id: e for e in toc}

    excluded = _closure(seeds, dependents)
    for d in local:
        excluded.add(d)
        for child in dependents.get(d, ()):
            if entry[child].desc in DECORATION_DESCS:
                excluded.add(child)
    excluded |= _unused_event_trigger_functions(toc, seeds, excluded, dependents, entry)

    # An excluded extension is not created, but what uses it stays (as with pgcopydb): it
    # only restores if the target already has the extension.
    needed: set[str] = set()
    for d in sorted(local):
        e = entry[d]
        if e.desc != "EXTENSION":
            continue
        users = [
            entry[c].describe()
            for c in sorted(set(dependents.get(d, ())))
            if c not in excluded and entry[c].desc not in DECORATION_DESCS
        ]
        if users:
            needed.add(e.tag)
        if users and e.tag in filtered_exts:
            shown = listed(users, 5)
            warnings.append(
                f"extension {quote_ident(e.tag)} is excluded but kept objects use it: {shown}; "
                "they only restore if the target already has the extension"
            )

    # Report relations that left only because something they need left.
    cause = _first_cause(seeds, dependents)
    for e in toc:
        if (
            e.dump_id in excluded
            and e.dump_id not in seeds
            and e.desc in RELATION_DESCS
            and (e.namespace not in excluded_schemas)
        ):
            src = entry[cause[e.dump_id]]
            warnings.append(
                f"{e.desc.lower()} {e.namespace}.{e.tag} is excluded too: it depends on "
                f"excluded {src.describe()}"
            )
        elif e.desc == "FK CONSTRAINT" and e.dump_id in excluded and e.dump_id not in seeds:
            # A kept table losing a foreign key is worth telling; one going with its table
            # is not.
            owner = _constraint_table(e, entry)
            if owner is not None and owner.dump_id not in excluded:
                src = entry[cause[e.dump_id]]
                name = e.tag[len(owner.tag) + 1 :]
                warnings.append(
                    f"foreign key {name} on {owner.namespace}.{owner.tag} is excluded too: "
                    f"it depends on excluded {src.describe()}"
                )

    restore_ids = frozenset(e.dump_id for e in toc) - excluded - skipped_by_options(toc, options)
    kept_rel_oids = {e.oid for e in toc if e.catalog_oid == PG_CLASS and e.dump_id in restore_ids}
    tables = frozenset(t.oid for t in catalog.tables if t.oid in kept_rel_oids)
    copy_tables = frozenset(
        t.oid for t in catalog.tables if t.oid in tables and t.has_storage and t.oid not in no_data
    )
    kept_constraints = {
        e.oid for e in toc if e.catalog_oid == PG_CONSTRAINT and e.dump_id in restore_ids
    }
    indexes = frozenset(
        i.oid
        for i in catalog.indexes
        if i.table_oid in tables
        and (
            i.constraint_oid in kept_constraints
            if i.constraint_oid is not None
            else i.oid in kept_rel_oids
        )
    )
    sequences = frozenset(s.oid for s in catalog.sequences if s.oid in kept_rel_oids)
    return Scope(
        restore_ids=restore_ids,
        tables=tables,
        copy_tables=copy_tables,
        indexes=indexes,
        sequences=sequences,
        large_objects=not options.skip_large_objects and catalog.large_objects > 0,
        warnings=tuple(warnings),
        preinstalled_extensions=frozenset(needed),
    )


def _seed(
    e: TocEntry,
    excluded_schemas: set[str],
    kept_ext_schemas: set[str],
    excluded_oids: set[int],
    excluded_constraints: set[int],
    excluded_event_triggers: frozenset[str],
    matviews_no_data: set[int],
) -> bool:
    """Is this entry excluded by the filters themselves (not through a dependency)?"""
    if e.namespace is not None and e.namespace in excluded_schemas:
        return True
    if e.desc == "SCHEMA":
        return e.tag in excluded_schemas and e.tag not in kept_ext_schemas
    if e.catalog_oid == PG_CLASS and e.desc != "MATERIALIZED VIEW DATA":
        return e.oid in excluded_oids
    if e.catalog_oid == PG_CONSTRAINT:
        return e.oid in excluded_constraints
    if e.desc == "EVENT TRIGGER":
        return e.tag in excluded_event_triggers
    if e.desc == "MATERIALIZED VIEW DATA":
        return e.oid in matviews_no_data
    return False


def _dumped_index(toc: list[TocEntry], qn: QualifiedName) -> TocEntry | None:
    """The dump entry of index `qn`: an INDEX, or the CONSTRAINT (primary key, unique,
    exclusion) it backs, which has the index's name."""
    entry = {e.dump_id: e for e in toc}
    for e in toc:
        if e.namespace != qn.schema:
            continue
        if e.desc == "INDEX" and e.catalog_oid == PG_CLASS and e.tag == qn.name:
            return e
        if e.desc == "CONSTRAINT" and e.catalog_oid == PG_CONSTRAINT:
            owner = _constraint_table(e, entry)
            if owner is not None and e.tag == f"{owner.tag} {qn.name}":
                return e
    return None


def _constraint_table(e: TocEntry, entry: dict[int, TocEntry]) -> TocEntry | None:
    """The table a constraint entry belongs to: pg_dump tags them "table constraint"."""
    candidates = [
        t
        for t in (entry.get(d) for d in e.deps)
        if t is not None
        and t.desc == "TABLE"
        and t.namespace == e.namespace
        and e.tag.startswith(t.tag + " ")
    ]
    return max(candidates, key=lambda t: len(t.tag), default=None)


def _unused_event_trigger_functions(
    toc: list[TocEntry],
    seeds: set[int],
    excluded: set[int],
    dependents: dict[int, list[int]],
    entry: dict[int, TocEntry],
) -> set[int]:
    """Functions behind excluded event triggers that nothing kept uses, with their
    comments and grants (pgcopydb's [exclude-event-trigger] drops them too).

    A function an event trigger executes returns event_trigger, so only event triggers
    can use it; it stays when a kept event trigger (or anything else kept) needs it.
    """
    out: set[int] = set()
    for e in toc:
        if e.desc != "EVENT TRIGGER" or e.dump_id not in seeds:
            continue
        for d in e.deps:
            fn = entry.get(d)
            if fn is None or fn.desc != "FUNCTION" or d in excluded or d in out:
                continue
            users = [c for c in dependents.get(d, ()) if entry[c].desc not in DECORATION_DESCS]
            if all(c in excluded for c in users):
                out |= _closure({d}, dependents)
    return out


def _partitions(catalog: Catalog, oids: set[int]) -> set[int]:
    """Partitions, at any depth, of the given relations (not inheritance children: an
    inheritance parent has rows of its own, a partitioned table has none)."""
    children: dict[int, list[int]] = defaultdict(list)
    for t in catalog.tables:
        if t.is_partition:
            for p in t.parent_oids:
                children[p].append(t.oid)
    out: set[int] = set()
    todo = deque(oids)
    while todo:
        for child in children.get(todo.popleft(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _partition_family(catalog: Catalog, oids: set[int]) -> set[int]:
    """Ancestors and descendants of the given relations (a partition needs its parent)."""
    children: dict[int, list[int]] = defaultdict(list)
    for t in catalog.tables:
        for p in t.parent_oids:
            children[p].append(t.oid)
    family: set[int] = set()
    todo = deque(oids)
    while todo:
        oid = todo.popleft()
        for child in children.get(oid, ()):
            if child not in family and child not in oids:
                family.add(child)
                todo.append(child)
    for oid in list(oids):
        t = catalog.table(oid)
        stack = [p for p in t.parent_oids] if t.is_partition else []
        while stack:
            p = stack.pop()
            if p not in family:
                family.add(p)
                parent = catalog._tables_by_oid().get(p)
                if parent is not None and parent.is_partition:
                    stack.extend(parent.parent_oids)
    return family


def _closure(seeds: set[int], dependents: dict[int, list[int]]) -> set[int]:
    out = set(seeds)
    todo = deque(seeds)
    while todo:
        for child in dependents.get(todo.popleft(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _first_cause(seeds: set[int], dependents: dict[int, list[int]]) -> dict[int, int]:
    """For each entry reached from the seeds: the seed it was reached from (BFS order)."""
    cause = {s: s for s in seeds}
    todo = deque(sorted(seeds))
    while todo:
        d = todo.popleft()
        for child in dependents.get(d, ()):
            if child not in cause:
                cause[child] = cause[d]
                todo.append(child)
    return cause


def without_publication(scope: Scope, toc: list[TocEntry], name: str) -> Scope:
    """`scope` without the publication `name` and what hangs on it (its tables, its
    comment): pgferry's own, made on the source for CDC before the snapshot the schema is
    dumped on, is not the application's and must not be created on the target."""
    own = {e.dump_id for e in toc if e.desc == "PUBLICATION" and e.tag == name}
    if not own:
        return scope
    hanging = {e.dump_id for e in toc if own & set(e.deps)}
    return replace(scope, restore_ids=scope.restore_ids - own - hanging)
