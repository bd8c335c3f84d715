"""Checks on the target (and source) made before anything is written."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.model import Catalog
from pgferry.errors import InputError

USER_OBJECTS_SQL = """
SELECT kind, name FROM (
    SELECT 'relation' AS kind, format('%I.%I', n.nspname, c.relname) AS name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry')
       AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'function', format('%I.%I', n.nspname, p.proname)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry')
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                          AND d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'schema', format('%I', n.nspname)
      FROM pg_namespace n
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public', 'pgferry')
       AND n.nspname !~ '^pg_'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                          AND d.objid = n.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'extension', format('%I', e.extname) FROM pg_extension e WHERE e.extname <> 'plpgsql'
) o ORDER BY kind, name
"""


def user_objects(conn: psycopg.Connection[Any], *, extensions: bool = True) -> list[str]:
    """What the target database holds besides the system's own objects."""
    return [
        f"{kind} {name}"
        for kind, name in conn.execute(USER_OBJECTS_SQL).fetchall()
        if extensions or kind != "extension"
    ]


def require_empty_target(conn: psycopg.Connection[Any], dbname: str) -> None:
    """Refuse a target holding user objects; extensions created beforehand are fine."""
    objects = user_objects(conn, extensions=False)
    if objects:
        shown = ", ".join(objects[:3]) + (
            f" and {len(objects) - 3} more" if len(objects) > 3 else ""
        )
        raise InputError(
            f"target database {dbname} is not empty: {shown}",
            fix="use an empty database, add --drop-if-exists to replace what the source "
            "defines, or empty it with pgferry target-clean",
        )


def missing_extensions(
    conn: psycopg.Connection[Any], catalog: Catalog, names: set[str]
) -> list[str]:
    """Extensions the source uses (and the scope keeps) that the target cannot create."""
    available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
    return sorted(
        f"{e.name} {e.version}"
        for e in catalog.extensions
        if e.name in names and e.name not in available
    )


def check_source_reads(conn: psycopg.Connection[Any], table_oids: list[int]) -> None:
    """Every copied table is readable and no row-level security hides rows from us."""
    if not table_oids:
        return
    rows = conn.execute(
        """
        SELECT format('%%I.%%I', n.nspname, c.relname),
               has_table_privilege(c.oid, 'SELECT'),
               c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls)
                   AND (c.relforcerowsecurity OR c.relowner <> r.oid)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          CROSS JOIN (SELECT oid, rolsuper, rolbypassrls FROM pg_roles
                       WHERE rolname = current_user) r
         WHERE c.oid = ANY(%s)
         ORDER BY 1
        """,
        (table_oids,),
    ).fetchall()
    user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    no_select = [name for name, can_select, _ in rows if not can_select]
    if no_select:
        grants = "; ".join(
            sql.SQL("GRANT SELECT ON {} TO {}")
            .format(sql.SQL(n), sql.Identifier(user))
            .as_string(conn)
            for n in no_select[:3]
        )
        raise InputError(
            f"the source role {user} cannot read {len(no_select)} table(s): "
            + ", ".join(no_select[:5]),
            fix=f"{grants} (or exclude them with a filter)",
        )
    hidden = [name for name, _, rls in rows if rls]
    if hidden:
        raise InputError(
            f"row-level security would hide rows of {', '.join(hidden[:5])} from the source "
            f"role {user}: the copy would be incomplete",
            fix=f"ALTER ROLE {sql.Identifier(user).as_string(conn)} BYPASSRLS; "
            "or connect as a superuser or the tables' owner",
        )
