"""The source's platform (Supabase, RDS, ...) and its platform objects that should not
migrate: a pooler that breaks snapshots, and schemas, extensions and event triggers the
provider owns that the filters do not exclude yet.

What each provider looks like and what it owns lives in `pgferry.catalog.providers`; this
module matches that against the source and the user's filters.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pgferry.catalog import providers
from pgferry.catalog.facts import event_trigger_names, extension_names
from pgferry.catalog.filters import Filters, parse_filters
from pgferry.checks.preflight.facts import LISTED, SourceNames
from pgferry.checks.report import Report
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.describe import error_text


def check_provider(
    report: Report, info: ConnInfo, conn: psycopg.Connection[Any], filters: Filters
) -> str | None:
    """What the managed service the server runs on needs for a migration."""
    name = "source.provider"
    try:
        markers = providers.read_markers(conn)
        names = markers_names(markers, conn)
    except psycopg.Error as exc:
        report.warn(name, f"not checked: {error_text(exc)}")
        return None
    provider = providers.identify_provider(markers)
    label = providers.describe(provider)
    if provider == "supabase" and "pooler.supabase.com" in info.host:
        report.fail(
            name,
            f"{label}, through the connection pooler ({info.host}): snapshots and "
            "replication do not work through it",
            "use the direct connection string (db.<project>.supabase.co:5432; from outside "
            "Supabase this needs IPv6 or the IPv4 add-on)",
        )
        return provider
    if provider is None:
        report.ok(name, label)
        return provider
    internals = provider_internals(provider, names)
    left = [e for e in internals if not _excluded_by(filters, e)]
    if not left:
        report.ok(name, label)
        return provider
    shown = ", ".join(f"{section} {n}" for section, n in left[:LISTED])
    if filters.is_empty():
        fix = (
            f"pgferry filters init --for {provider} --output filters.ini, review it, and "
            "pass --filters filters.ini"
        )
    else:
        fix = (
            f"add them to your filter file (pgferry filters init --for {provider} writes the "
            "full list with the reason for each)"
        )
    report.warn(
        name,
        f"{label}: the source holds platform objects that should not migrate: {shown}",
        fix,
        internals=[f"{s} {n}" for s, n in left],
    )
    return provider


def markers_names(markers: providers.ProviderMarkers, conn: psycopg.Connection[Any]) -> SourceNames:
    return SourceNames(
        schemas=markers.schemas,
        extensions=extension_names(conn),
        event_triggers=event_trigger_names(conn),
    )


def provider_internals(provider: str, names: SourceNames) -> list[tuple[str, str]]:
    """(section, name) of the provider's filter entries that exist on the source."""
    known = {
        "exclude-schema": names.schemas,
        "exclude-extension": names.extensions,
        "exclude-event-trigger": names.event_triggers,
    }
    wanted = parse_filters(providers.provider_filters(provider), f"<{provider} filters>")
    return [
        (e.section, e.name)
        for e in wanted.entries
        if e.section in known and e.name in known[e.section]
    ]


def _excluded_by(filters: Filters, entry: tuple[str, str]) -> bool:
    section, name = entry
    if section == "exclude-schema":
        if filters.include_only_table:
            return all(t.schema != name for t in filters.include_only_table)
        return name in filters.exclude_schema or bool(
            filters.include_only_schema and name not in filters.include_only_schema
        )
    if section == "exclude-extension":
        return name in filters.exclude_extension or bool(
            filters.include_only_extension and name not in filters.include_only_extension
        )
    return name in filters.exclude_event_trigger
