"""What the filters keep: which source tables, extensions and filter names are in scope.

Pure rules over the source's names. The source checks use them (only what migrates needs
privileges and a replica identity), and so do the target checks and the filter check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgferry.catalog.filters import Filters, QualifiedName
from pgferry.catalog.inscope import table_in_scope
from pgferry.checks.preflight.facts import ScopeTable, SourceNames


def scoped_tables(tables: list[ScopeTable], filters: Filters) -> list[ScopeTable]:
    """The relations the filters keep (sequences: all, unless include-only-table is used)."""
    by_oid = {t.oid: t for t in tables}

    def ancestors(t: ScopeTable) -> list[QualifiedName]:
        out: list[QualifiedName] = []
        todo = list(t.parent_oids)
        while todo:
            parent = by_oid.get(todo.pop())
            if parent is not None and parent.qualname not in out:
                out.append(parent.qualname)
                todo.extend(parent.parent_oids)
        return out

    kept = []
    for t in tables:
        if t.relkind == "S" and filters.include_only_table:
            continue
        if table_in_scope(filters, t.qualname, ancestors(t)):
            kept.append(t)
    return kept


def extensions_in_scope(filters: Filters, extensions: Mapping[str, str]) -> dict[str, str]:
    """The source's extensions the migration creates on the target."""
    return {
        name: version
        for name, version in extensions.items()
        if name not in filters.exclude_extension
        and (not filters.include_only_extension or name in filters.include_only_extension)
    }


def unmatched_filter_names(filters: Filters, names: SourceNames) -> list[str]:
    """Filter entries naming nothing on the source, as `file:line: [section] name ...`."""
    known: dict[str, frozenset[Any]] = {
        "include-only-schema": names.schemas,
        "exclude-schema": names.schemas,
        "include-only-table": names.relations,
        "exclude-table": names.relations,
        "exclude-table-data": names.relations,
        "exclude-index": names.indexes,
        "include-only-extension": names.extensions,
        "exclude-extension": names.extensions,
        "exclude-event-trigger": names.event_triggers,
    }
    out: list[str] = []
    seen: set[tuple[str, Any]] = set()
    for entry in filters.entries:
        key = (entry.section, entry.key())
        if key in seen or entry.key() in known[entry.section]:
            continue
        seen.add(key)
        out.append(
            f"{filters.path or '<filters>'}:{entry.line}: [{entry.section}] {entry} "
            "matches nothing on the source"
        )
    return out
