"""Whether the target can take what the source holds: its extensions (in their versions),
event triggers, FOR ALL TABLES publications, encoding and tablespaces.

These compare the two sides, so they run only when the source could be read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from pgferry.catalog.facts import database_encoding, extension_names, tablespace_names
from pgferry.catalog.filters import Filters
from pgferry.checks.preflight.facts import SourceFacts
from pgferry.checks.preflight.scope import extensions_in_scope, scoped_tables
from pgferry.checks.preflight.session import guarded_check
from pgferry.checks.report import Check, Report, Verdict


@dataclass(frozen=True)
class AvailableExtension:
    name: str
    versions: frozenset[str]
    superuser_only: bool = False  # every version needs a superuser (and none is trusted)


def judge_extensions(
    needed: Mapping[str, str],
    available: Mapping[str, AvailableExtension],
    installed: Iterable[str],
    *,
    target_superuser: bool,
) -> Check:
    """The extensions the migration creates, against what the target can create."""
    name = "target.extensions"
    installed = set(installed)
    if not needed:
        return Check(name, Verdict.PASS, "no extensions to create")
    missing = sorted(f"{ext} {version}" for ext, version in needed.items() if ext not in available)
    if missing:
        return Check(
            name,
            Verdict.FAIL,
            f"{len(missing)} extension(s) the source uses are not available on the target: "
            + ", ".join(missing),
            "install them on the target server (its packages, or the provider's allow-list), "
            "or list them under [exclude-extension] in the filter file",
            {"missing": missing},
        )
    notes: list[str] = []
    other_version = sorted(
        f"{ext} {version}"
        for ext, version in needed.items()
        if version not in available[ext].versions and ext not in installed
    )
    if other_version:
        notes.append(
            "created in the target's default version instead of: " + ", ".join(other_version)
        )
    privileged = sorted(
        ext
        for ext in needed
        if available[ext].superuser_only and ext not in installed and not target_superuser
    )
    if privileged:
        notes.append(
            "creating these needs a superuser (or the provider's admin role): "
            + ", ".join(privileged)
        )
    if notes:
        return Check(
            name,
            Verdict.WARN,
            f"all {len(needed)} extension(s) available; " + "; ".join(notes),
            "create them on the target beforehand as an administrator "
            "(CREATE EXTENSION name VERSION 'x'), then run the migration",
        )
    return Check(
        name,
        Verdict.PASS,
        f"all {len(needed)} extension(s) available: " + ", ".join(sorted(needed)),
    )


def cross_checks(
    report: Report,
    conn: psycopg.Connection[Any],
    target_major: int,
    target_superuser: bool,
    src: SourceFacts,
    filters: Filters,
) -> None:
    """Target checks that compare with what the source holds."""
    if src.extensions is not None:
        with guarded_check(report, "target.extensions"):
            available: dict[str, AvailableExtension] = {}
            columns = "bool_and(superuser AND NOT trusted)" if target_major >= 13 else "false"
            for ext, versions, superuser_only in conn.execute(
                f"SELECT name, array_agg(version), {columns} "
                "FROM pg_available_extension_versions GROUP BY name"
            ):
                available[ext] = AvailableExtension(ext, frozenset(versions), bool(superuser_only))
            installed = sorted(extension_names(conn))
            report.checks.append(
                judge_extensions(
                    extensions_in_scope(filters, src.extensions),
                    available,
                    installed,
                    target_superuser=target_superuser,
                )
            )
    if src.event_triggers and not target_superuser:
        kept = [e for e in src.event_triggers if e not in filters.exclude_event_trigger]
        if kept:
            report.warn(
                "target.event_triggers",
                f"creating event triggers needs a superuser on the target: {', '.join(kept)}",
                "list them under [exclude-event-trigger] in the filter file, or create them "
                "after the migration as an administrator",
            )
    if src.all_tables_publications:
        names = ", ".join(src.all_tables_publications)
        if target_superuser:
            consequence = "they are recreated on the target and publish all of its tables"
        else:
            consequence = "creating them needs a superuser on the target"
        report.warn(
            "target.publications",
            f"FOR ALL TABLES publication(s) on the source: {names}: {consequence}",
            "drop them on the target after the migration unless it must publish, or create "
            "them there by hand as an administrator",
        )
    with guarded_check(report, "target.encoding"):
        encoding = database_encoding(conn)
        if src.encoding and encoding != src.encoding:
            report.warn(
                "target.encoding",
                f"the source is {src.encoding}, the target {encoding}: text that does not "
                "convert makes the copy fail",
                f"create the target database with ENCODING '{src.encoding}' TEMPLATE template0",
            )
        else:
            report.ok("target.encoding", f"both {encoding}")
    if src.tables is not None:
        used = sorted(
            {ts for t in scoped_tables(src.tables, filters) for ts in t.tablespaces}
            - {"pg_default", "pg_global"}
        )
        if used:
            with guarded_check(report, "target.tablespaces"):
                have = tablespace_names(conn)
                missing = [ts for ts in used if ts not in have]
                if missing:
                    report.warn(
                        "target.tablespaces",
                        "tablespaces used in scope are missing on the target: "
                        + ", ".join(missing),
                        "create them on the target (CREATE TABLESPACE), or clone with "
                        "--no-tablespaces",
                    )
