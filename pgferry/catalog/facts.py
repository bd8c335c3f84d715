"""Small facts about one database, read from its catalog, that several checks and phases
need: which extensions, schemas, roles, event triggers, tablespaces and large objects it
has. One query each, here, rather than one copy per caller."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def _names(conn: Conn, query: str, params: tuple[Any, ...] | None = None) -> frozenset[str]:
    return frozenset(r[0] for r in conn.execute(query, params).fetchall())


def extension_names(conn: Conn) -> frozenset[str]:
    """The extensions installed in the database."""
    return _names(conn, "SELECT extname FROM pg_catalog.pg_extension")


def extension_versions(conn: Conn) -> dict[str, str]:
    """The installed extensions other than plpgsql (which every database has), by version."""
    rows = conn.execute(
        "SELECT extname, extversion FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql'"
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def database_size(conn: Conn) -> int:
    """The size of the database `conn` is in, on disk (pg_database_size)."""
    row = conn.execute("SELECT pg_catalog.pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def event_trigger_names(conn: Conn) -> frozenset[str]:
    return _names(conn, "SELECT evtname FROM pg_catalog.pg_event_trigger")


def schema_names(conn: Conn, among: Iterable[str] | None = None) -> frozenset[str]:
    """The database's schemas (all, or those of `among` that exist)."""
    if among is None:
        return _names(conn, "SELECT nspname FROM pg_catalog.pg_namespace")
    return _names(
        conn, "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)", (list(among),)
    )


def role_names(conn: Conn, among: Iterable[str] | None = None) -> frozenset[str]:
    """The cluster's roles (all, or those of `among` that exist)."""
    if among is None:
        return _names(conn, "SELECT rolname FROM pg_catalog.pg_roles")
    return _names(
        conn, "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)", (list(among),)
    )


def function_names(conn: Conn, among: Iterable[str]) -> frozenset[str]:
    """Those of the function names `among` that some function of the database has."""
    return _names(
        conn,
        "SELECT DISTINCT proname FROM pg_catalog.pg_proc WHERE proname = ANY(%s)",
        (list(among),),
    )


def tablespace_names(conn: Conn) -> frozenset[str]:
    return _names(conn, "SELECT spcname FROM pg_catalog.pg_tablespace")


def all_tables_publications(conn: Conn) -> list[str]:
    """Publications FOR ALL TABLES (they would publish pgferry's own tables too)."""
    rows = conn.execute("SELECT pubname FROM pg_catalog.pg_publication WHERE puballtables")
    return [r[0] for r in rows.fetchall()]


def current_role(conn: Conn) -> tuple[str, bool]:
    """The session's role and whether it is a superuser."""
    row = conn.execute(
        "SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
    ).fetchone()
    return (str(row[0]), bool(row[1])) if row else ("", False)


def database_encoding(conn: Conn) -> str:
    row = conn.execute(
        "SELECT pg_catalog.pg_encoding_to_char(encoding) FROM pg_catalog.pg_database"
        " WHERE datname = pg_catalog.current_database()"
    ).fetchone()
    return str(row[0]) if row else ""


def catalog_object_count(conn: Conn) -> int:
    """Relations plus functions: what pg_dump has to read, a measure of its duration."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM pg_catalog.pg_class)"
        " + (SELECT count(*) FROM pg_catalog.pg_proc)"
    ).fetchone()
    return int(row[0]) if row else 0


def large_object_oids(conn: Conn) -> list[int]:
    """The database's large objects, in OID order."""
    rows = conn.execute("SELECT oid::int8 FROM pg_catalog.pg_largeobject_metadata ORDER BY oid")
    return [int(r[0]) for r in rows.fetchall()]


def large_object_count(conn: Conn) -> int:
    row = conn.execute("SELECT pg_catalog.count(*) FROM pg_catalog.pg_largeobject_metadata")
    found = row.fetchone()
    return int(found[0]) if found else 0


DATABASES_SQL = """
SELECT d.datname, pg_catalog.pg_database_size(d.oid)::int8
  FROM pg_catalog.pg_database d
 WHERE d.datallowconn AND NOT d.datistemplate
   AND pg_catalog.has_database_privilege(d.oid, 'CONNECT')
 ORDER BY 1
"""

# Collations other than the default that the database's columns, indexes and domains
# use, and those created in it: the target must have them (or the clone creates them).
COLLATIONS_SQL = """
SELECT DISTINCT n.nspname, c.collname, c.collprovider::text,
       coalesce(c.collcollate, ''), c.collnamespace <> 'pg_catalog'::regnamespace
  FROM pg_catalog.pg_collation c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
 WHERE c.oid <> 100 AND (
       c.collnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    OR c.oid IN (SELECT a.attcollation FROM pg_catalog.pg_attribute a
                   JOIN pg_catalog.pg_class r ON r.oid = a.attrelid
                  WHERE r.relnamespace NOT IN ('pg_catalog'::regnamespace,
                                               'information_schema'::regnamespace)
                    AND NOT a.attisdropped)
    OR c.oid IN (SELECT t.typcollation FROM pg_catalog.pg_type t
                  WHERE t.typtype = 'd'
                    AND t.typnamespace NOT IN ('pg_catalog'::regnamespace,
                                               'information_schema'::regnamespace)))
 ORDER BY 1, 2
"""


def databases(conn: Conn) -> list[tuple[str, int]]:
    """The cluster's databases one may connect to, with their sizes."""
    return [(r[0], int(r[1])) for r in conn.execute(DATABASES_SQL).fetchall()]


def collations_in_use(conn: Conn) -> list[tuple[str, str, str, str, bool]]:
    """(schema, name, provider, locale, created in this database) of COLLATIONS_SQL."""
    return [tuple(r) for r in conn.execute(COLLATIONS_SQL).fetchall()]  # type: ignore[misc]


def available_extension_versions(conn: Conn) -> dict[str, list[str]]:
    """The extension versions the server has packages for, by extension."""
    out: dict[str, list[str]] = {}
    for name, version in conn.execute(
        "SELECT name, version FROM pg_catalog.pg_available_extension_versions ORDER BY 1, 2"
    ).fetchall():
        out.setdefault(name, []).append(version)
    return out
