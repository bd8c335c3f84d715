"""Checks on the target (and source) made before anything is written."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.model import Catalog
from pgferry.errors import InputError
from pgferry.text import listed

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
        shown = listed(objects, 3)
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


def relation_exists(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    """Whether a relation (table, index, view, ...) of that name exists."""
    row = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return row is not None


def constraint_exists(
    conn: psycopg.Connection[Any], schema: str, table: str, name: str | None
) -> bool:
    """Whether the table has a constraint of that name."""
    row = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_constraint con"
        " JOIN pg_catalog.pg_class c ON c.oid = con.conrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND con.conname = %s",
        (schema, table, name),
    ).fetchone()
    return row is not None


TARGET_SCHEMAS_SQL = """
SELECT n.oid, n.nspname
  FROM pg_namespace n
 WHERE n.nspname NOT IN ('information_schema') AND n.nspname !~ '^pg_'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
                      AND d.deptype = 'e')
 ORDER BY n.nspname
"""

TARGET_EXTENSIONS_SQL = """
SELECT e.oid, e.extname, e.extversion, n.nspname,
       coalesce((SELECT array_agg(r.extname ORDER BY r.extname)
                   FROM pg_depend d JOIN pg_extension r ON r.oid = d.refobjid
                  WHERE d.classid = 'pg_extension'::regclass AND d.objid = e.oid
                    AND d.refclassid = 'pg_extension'::regclass), '{}')
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 ORDER BY e.extname
"""

# Objects living in the given schemas, as pg_identify_object names them; extension members
# and internal parts (they go with their owner) excluded.
SCHEMA_OBJECTS_SQL = """
SELECT d.refobjid, d.classid, d.objid, o.type, o.identity
  FROM pg_depend d, pg_identify_object(d.classid, d.objid, 0) o
 WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = ANY(%s)
   AND d.deptype = 'n' AND d.objsubid = 0
   AND d.classid <> 'pg_extension'::regclass  -- extensions are dropped on their own
   AND NOT EXISTS (SELECT 1 FROM pg_depend x
                    WHERE x.classid = d.classid AND x.objid = d.objid
                      AND x.objsubid = 0 AND x.deptype IN ('e', 'i'))
 ORDER BY o.identity
"""

GLOBAL_OBJECTS_SQL = """
SELECT g.classid::oid, g.oid, o.type, o.identity
  FROM (SELECT 'pg_cast'::regclass AS classid, oid FROM pg_cast
        UNION ALL SELECT 'pg_language'::regclass, oid FROM pg_language
        UNION ALL SELECT 'pg_foreign_data_wrapper'::regclass, oid FROM pg_foreign_data_wrapper
        UNION ALL SELECT 'pg_foreign_server'::regclass, oid FROM pg_foreign_server
        UNION ALL SELECT 'pg_am'::regclass, oid FROM pg_am) g,
       pg_identify_object(g.classid, g.oid, 0) o
 WHERE g.oid >= %s
   AND NOT EXISTS (SELECT 1 FROM pg_depend x
                    WHERE x.classid = g.classid AND x.objid = g.oid
                      AND x.objsubid = 0 AND x.deptype IN ('e', 'i'))
 ORDER BY o.type, o.identity
"""

TARGET_EVENT_TRIGGERS_SQL = """
SELECT t.oid, t.evtname, t.evtevent
  FROM pg_event_trigger t
 WHERE NOT EXISTS (SELECT 1 FROM pg_depend x
                    WHERE x.classid = 'pg_event_trigger'::regclass AND x.objid = t.oid
                      AND x.deptype = 'e' AND x.refobjid = ANY(%s))
 ORDER BY t.evtname
"""

SUBSCRIPTIONS_SQL = """
SELECT s.subname, s.subenabled, s.subslotname
  FROM pg_subscription s
 WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY s.subname
"""

# Everything DROP ... CASCADE of the seeds takes: their dependents, and the owners of
# the internal parts it takes (a view goes with its rewrite rule).
COLLATERAL_SQL = """
WITH RECURSIVE gone(classid, objid, objsubid) AS (
    SELECT * FROM unnest(%(classids)s::oid[], %(objids)s::oid[], %(subids)s::int[])
  UNION
    SELECT x.classid, x.objid, x.objsubid
      FROM gone g, LATERAL (
           SELECT d.classid, d.objid, d.objsubid
             FROM pg_depend d
            WHERE d.refclassid = g.classid AND d.refobjid = g.objid
              AND (g.objsubid = 0 OR d.refobjsubid = g.objsubid)
              AND d.deptype IN ('n', 'a', 'i', 'e', 'x', 'P', 'S')
           UNION ALL
           SELECT d.refclassid, d.refobjid, 0
             FROM pg_depend d
            WHERE d.classid = g.classid AND d.objid = g.objid AND d.objsubid = 0
              AND g.objsubid = 0 AND d.deptype = 'i') x
)
SELECT DISTINCT pg_describe_object(g.classid, g.objid, g.objsubid)
  FROM gone g, pg_identify_object(g.classid, g.objid, g.objsubid) o
 WHERE NOT EXISTS (SELECT 1 FROM pg_depend i  -- parts of another listed object
                    WHERE i.classid = g.classid AND i.objid = g.objid AND i.objsubid = 0
                      AND i.deptype = 'i')
   AND (o.schema = ANY(%(kept_schemas)s)
    OR (g.classid = 'pg_extension'::regclass AND g.objid = ANY(%(kept_exts)s))
    OR EXISTS (SELECT 1 FROM pg_depend x
                WHERE x.classid = g.classid AND x.objid = g.objid AND x.deptype = 'e'
                  AND x.refobjid = ANY(%(kept_exts)s)))
 ORDER BY 1
"""

# Unlink up to %s large objects, lowest OIDs first
DELETE_LARGE_OBJECTS_SQL = (
    "SELECT count(lo_unlink(oid)) FROM "
    "(SELECT oid FROM pg_largeobject_metadata ORDER BY oid LIMIT %s) s"
)

# What each schema holds, by object type (the plan's detail line)
SCHEMA_CONTENT_COUNTS_SQL = """
        SELECT d.refobjid, o.type, count(*)
          FROM pg_depend d, pg_identify_object(d.classid, d.objid, 0) o
         WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = ANY(%s)
           AND d.deptype = 'n' AND d.objsubid = 0
           AND d.classid <> 'pg_extension'::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_depend x
                            WHERE x.classid = d.classid AND x.objid = d.objid
                              AND x.objsubid = 0 AND x.deptype = 'i')
         GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2
        """

PUBLICATIONS_SQL = "SELECT oid, pubname FROM pg_publication ORDER BY pubname"

# Of the given INDEX entries' and constraint entries' objects, those whose index is a
# partitioned index, with the index's name (a constraint's index carries its name).
PARTITIONED_INDEXES_SQL = """
SELECT %(pg_class)s::int8, c.oid::int8, n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = ANY(%(indexes)s::oid[]) AND c.relkind = 'I'
UNION ALL
SELECT %(pg_constraint)s::int8, con.oid::int8, n.nspname, c.relname
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conindid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE con.oid = ANY(%(constraints)s::oid[]) AND c.relkind = 'I'
"""

PRESENT_OBJECTS_SQL = """
SELECT count(*) FROM unnest(%s::text[], %s::text[]) AS x(nspname, relname)
 WHERE to_regclass(format('%%I.%%I', nspname, relname)) IS NOT NULL
"""
