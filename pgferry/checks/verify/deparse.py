"""Across major versions, view definitions compared as one server prints them.

pg_get_viewdef prints the same query differently from one major to the next (16 stopped
qualifying columns with their table's name, for one), so a view copied exactly would
look changed. Where a view's definition differs between the sides, the target's server
deparses the source's definition itself, as a temporary view in a transaction that is
rolled back: the two texts are then comparable. Nothing stays on the target.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.objects import SchemaObject
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.describe import error_text
from pgferry.pg.settings import set_settings

log = logging.getLogger(__name__)

VIEW_KINDS = ("views", "materialized views")
_TEMP_VIEW = sql.Identifier("pgferry_verify_deparse")


def deparsed_on_target(
    target: ConnInfo,
    source: dict[str, list[SchemaObject]],
    target_objects: dict[str, list[SchemaObject]],
) -> dict[str, list[SchemaObject]]:
    """`source` with the definitions of its views that differ from the target's replaced
    by the target server's printing of them; any it cannot print are left as they are
    (and compared as printed)."""
    differing = _differing(source, target_objects)
    if not differing:
        return source
    printed: dict[tuple[str, tuple[str, ...]], str] = {}
    try:
        with target.connect("pgferry verify deparse") as conn:
            for obj in differing:
                text = _deparse(conn, obj.definition)
                if text is not None:
                    printed[(obj.kind, obj.parts)] = text
    except psycopg.Error as exc:
        log.info("verify: the target could not print the source's views: %s", error_text(exc))
    return {
        kind: [
            replace(o, definition=printed[(kind, o.parts)]) if (kind, o.parts) in printed else o
            for o in objects
        ]
        for kind, objects in source.items()
    }


def _differing(
    source: dict[str, list[SchemaObject]], target: dict[str, list[SchemaObject]]
) -> list[SchemaObject]:
    found = []
    for kind in VIEW_KINDS:
        theirs = {o.parts: o.definition for o in target.get(kind, [])}
        found += [
            o for o in source.get(kind, []) if o.parts in theirs and theirs[o.parts] != o.definition
        ]
    return found


def _deparse(conn: psycopg.Connection[Any], definition: str) -> str | None:
    """The target's pg_get_viewdef of `definition`, or None if it will not take it.

    The definition is the source server's own printing of a view's query, read from its
    catalog; the extended query protocol takes one statement only, and the transaction
    is rolled back whatever happens."""
    query = definition.strip().removesuffix(";")
    try:
        with conn.transaction(force_rollback=True):
            set_settings(conn, {"search_path": "", "statement_timeout": "5s"}, local=True)
            create = sql.SQL("CREATE TEMPORARY VIEW {} AS ").format(_TEMP_VIEW)
            conn.execute(create + sql.SQL(query))
            row = conn.execute(
                sql.SQL("SELECT pg_catalog.pg_get_viewdef({}::pg_catalog.regclass)").format(
                    sql.Literal(f"pg_temp.{_TEMP_VIEW.as_string(conn)}")
                )
            ).fetchone()
    except psycopg.Error as exc:
        log.debug("verify: the target cannot print %r: %s", query[:80], error_text(exc))
        return None
    return str(row[0]) if row else None
