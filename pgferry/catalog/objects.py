"""The schema object model (`SchemaObject`) and `FilterScope`: what the filters keep.

A SchemaObject is one row of a schema query, with what the filters judge it by: its
namespace, the relation it is or belongs to, and the relations it depends on. FilterScope
narrows the migration's scope to what the filters keep, by name, so that the same decision
applies to both sides (used by `compare_schema(filters=...)` and `pgferry verify`).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from pgferry.catalog.definitions import DECORATION_QUERIES, SCHEMA_QUERIES
from pgferry.catalog.filters import Filters
from pgferry.text import display_name

# Relations the include-only-table filter selects among (the others it never excludes).
TABLE_LIKE_KINDS = ("tables", "materialized views")


@dataclass(frozen=True)
class SchemaObject:
    """One catalog object as `compare_schema` sees it, with what the filters judge it by."""

    kind: str  # a key of SCHEMA_QUERIES
    parts: tuple[str, ...]  # name parts: (schema, table, column), (schema, name, args), ...
    definition: str
    schema: str | None = None  # namespace (None: extensions' and event triggers' own rules)
    relation: str | None = None  # the table or view it is or belongs to, in `schema`
    refs: tuple[tuple[str, str, str], ...] = ()  # (how, schema, relation) it depends on

    @property
    def name(self) -> str:
        """The name shown to users (quoted where needed)."""
        if self.kind == "functions":
            return f"{display_name(*self.parts[:2])}({self.parts[2]})"
        if self.kind in DECORATION_QUERIES:  # (object type, identity), quoted by the server
            return " ".join(self.parts)
        return display_name(*self.parts)


def read_schema_objects(
    conn: psycopg.Connection[Any], queries: Mapping[str, str] = SCHEMA_QUERIES
) -> dict[str, list[SchemaObject]]:
    """Every object type's objects on one side (run inside a `begin_read` transaction)."""
    objects: dict[str, list[SchemaObject]] = {}
    for kind, query in queries.items():
        objects[kind] = [
            SchemaObject(
                kind=kind,
                parts=tuple(parts),
                definition=definition or "",
                schema=schema,
                relation=relation,
                refs=tuple((str(r[0]), str(r[1]), str(r[2])) for r in refs or ()),
            )
            for schema, relation, refs, parts, definition in conn.execute(query).fetchall()
        ]
    return objects


class FilterScope:
    """Which objects and which tables' rows the filters keep, judged by name.

    Mirrors the migration's rules (pgferry.catalog.scope) on catalog names, so that the
    same decision applies to both sides: excluded schemas and tables, include-only lists
    (with the partitions and parents of an included table), excluded indexes and the
    constraints they back, extensions and event triggers; and what depends on an excluded
    relation (views using it, foreign keys referencing it, sequences it owns). Objects that
    belong to extensions never reach here: the queries leave them out.
    """

    def __init__(self, filters: Filters, objects: Iterable[SchemaObject] = ()) -> None:
        self.filters = filters
        # The filters' sets, computed once (the Filters properties build them per call).
        self._exclude_schemas = set(filters.exclude_schema)
        self._only_schemas = set(filters.include_only_schema)
        self._exclude_tables = {(q.schema, q.name) for q in filters.exclude_table}
        self._exclude_indexes = {(q.schema, q.name) for q in filters.exclude_index}
        self._only_extensions = set(filters.include_only_extension)
        self._exclude_extensions = set(filters.exclude_extension)
        self._exclude_event_triggers = set(filters.exclude_event_trigger)
        objs = list(objects)
        self._table_like = {(o.parts[0], o.parts[1]) for o in objs if o.kind in TABLE_LIKE_KINDS}
        self._ext_schemas = {
            o.schema for o in objs if o.kind == "extensions" and self.keeps_extension(o.parts[0])
        }
        parents: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        children: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        partitions: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        for o in objs:
            if o.kind != "tables":
                continue
            key = (o.parts[0], o.parts[1])
            for how, schema, name in o.refs:
                parents[key].add((schema, name))
                children[(schema, name)].add(key)
                if how == "partition of":
                    partitions[(schema, name)].add(key)
        self._wanted: set[tuple[str, str]] | None = None
        if filters.include_only_table:
            seeds = {(q.schema, q.name) for q in filters.include_only_table}
            self._wanted = seeds | _reach(seeds, children) | _reach(seeds, parents)
        no_data = {(q.schema, q.name) for q in filters.exclude_table_data}
        self._no_data = no_data | _reach(no_data, partitions)
        self._dependent = self._dependent_views(objs)

    # -- names ----------------------------------------------------------------------------
    def schema_excluded(self, schema: str | None) -> bool:
        if schema is None:
            return False
        if schema in self._exclude_schemas:
            return True
        return bool(self._only_schemas) and schema not in self._only_schemas

    def keeps_extension(self, name: str) -> bool:
        if self._only_extensions:
            return name in self._only_extensions
        return name not in self._exclude_extensions

    def _table_out(self, key: tuple[str, str]) -> bool:
        """Excluded by the filters themselves (not through a dependency)."""
        if self.schema_excluded(key[0]):
            return True
        if key in self._exclude_tables:
            return True
        return self._wanted is not None and key in self._table_like and key not in self._wanted

    def keeps_relation(self, schema: str, name: str) -> bool:
        """A table, view, materialized view or sequence (by name) is in scope."""
        key = (schema, name)
        return not self._table_out(key) and key not in self._dependent

    def keeps_index(self, schema: str, name: str) -> bool:
        return (schema, name) not in self._exclude_indexes

    def copies_data(self, schema: str, name: str) -> bool:
        """The table is in scope and its rows are copied (not [exclude-table-data])."""
        return self.keeps_relation(schema, name) and (schema, name) not in self._no_data

    def _dependent_views(self, objs: list[SchemaObject]) -> set[tuple[str, str]]:
        """Views and materialized views that use an excluded relation, at any depth."""
        views = [o for o in objs if o.kind in ("views", "materialized views")]
        out: set[tuple[str, str]] = set()
        changed = True
        while changed:
            changed = False
            for v in views:
                key = (v.parts[0], v.parts[1])
                if key in out:
                    continue
                if any(self._table_out((s, r)) or (s, r) in out for _, s, r in v.refs):
                    out.add(key)
                    changed = True
        return out

    # -- objects --------------------------------------------------------------------------
    def keeps(self, obj: SchemaObject) -> bool:
        """Whether the migration would have created this object on the target."""
        kind = obj.kind
        if kind == "extensions":
            return self.keeps_extension(obj.parts[0])
        if kind == "event triggers":
            return obj.parts[0] not in self._exclude_event_triggers
        if kind == "schemas":
            return not self.schema_excluded(obj.parts[0]) or obj.parts[0] in self._ext_schemas
        if self.schema_excluded(obj.schema):
            return False
        if kind in ("tables", "views", "materialized views"):
            return self.keeps_relation(obj.parts[0], obj.parts[1])
        if (
            obj.relation is not None
            and obj.schema is not None
            and not self.keeps_relation(obj.schema, obj.relation)
        ):
            return False
        if kind == "indexes" and not self.keeps_index(obj.parts[0], obj.parts[1]):
            return False
        for how, schema, name in obj.refs:
            if how == "extension" and not self.keeps_extension(name):
                return False
            if how == "event trigger" and name in self._exclude_event_triggers:
                return False
            if how == "index" and not self.keeps_index(schema, name):
                return False
            if how in ("references", "owned by") and not self.keeps_relation(schema, name):
                return False
        return True


def _reach(
    seeds: set[tuple[str, str]], edges: dict[tuple[str, str], set[tuple[str, str]]]
) -> set[tuple[str, str]]:
    """Everything reachable from the seeds along the edges (not the seeds themselves)."""
    out: set[tuple[str, str]] = set()
    todo = deque(seeds)
    while todo:
        for nxt in edges.get(todo.popleft(), ()):
            if nxt not in out and nxt not in seeds:
                out.add(nxt)
                todo.append(nxt)
    return out


def scoped_definitions(
    objects: dict[str, list[SchemaObject]], scope: FilterScope
) -> dict[str, dict[str, str]]:
    """Object type -> {display name: definition} of the objects the filters keep."""
    return {
        kind: {o.name: o.definition for o in found if scope.keeps(o)}
        for kind, found in objects.items()
    }
