"""Phase 1: read the source catalog (on the migration snapshot when there is one)."""

from __future__ import annotations

from typing import Any

import psycopg

from pgferry.catalog.model import (
    Catalog,
    DatabaseSetting,
    Extension,
    Index,
    Named,
    Sequence,
    Table,
)
from pgferry.pg.settings import set_settings

# Schemas that never migrate: the system's and pgferry's own.
SYSTEM_SCHEMA_FILTER = """
    n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry')
    AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'
"""


def not_member(classid: str, oid: str) -> str:
    """SQL condition: the object is not part of an extension."""
    return (
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
        f"WHERE d.classid = 'pg_catalog.{classid}'::pg_catalog.regclass "
        f"AND d.objid = {oid} AND d.deptype = 'e')"
    )


_NOT_EXTENSION_MEMBER = not_member("pg_class", "c.oid")

TABLES_SQL = f"""
SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relpersistence::text, am.amname,
       c.relispartition,
       coalesce((SELECT array_agg(i.inhparent::int8 ORDER BY i.inhseqno)
                   FROM pg_inherits i WHERE i.inhrelid = c.oid), '{{}}'),
       CASE WHEN c.relkind = 'r'
            THEN pg_relation_size(c.oid) / current_setting('block_size')::int8 ELSE 0 END,
       CASE WHEN c.relkind = 'r' THEN
            CASE WHEN %(estimate)s
                 THEN (c.relpages::int8 + coalesce(t.relpages, 0)::int8)
                      * current_setting('block_size')::int8
                 ELSE pg_table_size(c.oid) END
            ELSE 0 END,
       greatest(c.reltuples, 0)::float8,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                   FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                    AND a.attgenerated = ''), '{{}}'),
       c.relrowsecurity, c.relforcerowsecurity
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_am am ON am.oid = c.relam
  LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
 WHERE c.relkind IN ('r', 'p', 'm', 'f')
   AND c.relpersistence IN ('p', 'u')
   AND {SYSTEM_SCHEMA_FILTER}
   AND {_NOT_EXTENSION_MEMBER}
 ORDER BY c.oid
"""

INDEXES_SQL = f"""
SELECT i.indexrelid::int8, i.indrelid::int8, n.nspname, ci.relname,
       pg_get_indexdef(i.indexrelid), i.indisunique, i.indisprimary, i.indisreplident,
       i.indisclustered, ts.spcname,
       coalesce((SELECT array_agg(ARRAY[a.attnum::int, a.attstattarget::int] ORDER BY a.attnum)
                   FROM pg_attribute a
                  WHERE a.attrelid = i.indexrelid AND a.attstattarget > 0), '{{}}'),
       con.oid::int8, con.conname, con.contype::text,
       CASE WHEN con.oid IS NOT NULL THEN pg_get_constraintdef(con.oid) END,
       coalesce(con.condeferrable, false), coalesce(con.condeferred, false)
  FROM pg_index i
  JOIN pg_class ci ON ci.oid = i.indexrelid
  JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = ci.relnamespace
  LEFT JOIN pg_tablespace ts ON ts.oid = ci.reltablespace
  LEFT JOIN pg_constraint con
         ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
        AND con.contype IN ('p', 'u', 'x')
 WHERE c.relkind = 'r'
   AND i.indisvalid AND i.indislive
   AND {SYSTEM_SCHEMA_FILTER}
   AND {_NOT_EXTENSION_MEMBER}
 ORDER BY i.indexrelid
"""

SEQUENCES_SQL = f"""
SELECT c.oid::int8, n.nspname, c.relname,
       (SELECT d.refobjid::int8 FROM pg_depend d
         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
         LIMIT 1)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S' AND {SYSTEM_SCHEMA_FILTER} AND {_NOT_EXTENSION_MEMBER}
 ORDER BY c.oid
"""

EXTENSIONS_SQL = """
SELECT e.oid::int8, e.extname, e.extversion, n.nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 ORDER BY e.extname
"""

SCHEMAS_SQL = f"""
SELECT n.oid::int8, n.nspname FROM pg_namespace n
 WHERE {SYSTEM_SCHEMA_FILTER}
 ORDER BY n.nspname
"""

EVENT_TRIGGERS_SQL = "SELECT oid::int8, evtname FROM pg_event_trigger ORDER BY evtname"

SETTINGS_SQL = """
SELECT r.rolname, cfg
  FROM pg_db_role_setting s
  JOIN pg_database d ON d.oid = s.setdatabase
  LEFT JOIN pg_roles r ON r.oid = s.setrole
  CROSS JOIN LATERAL unnest(s.setconfig) AS cfg
 WHERE d.datname = current_database()
 ORDER BY r.rolname NULLS FIRST, cfg
"""

DATABASE_SQL = """
SELECT current_setting('server_version_num')::int, current_database(),
       pg_encoding_to_char(d.encoding), current_setting('block_size')::int,
       (SELECT count(*) FROM pg_largeobject_metadata)::int8
  FROM pg_database d WHERE d.datname = current_database()
"""


def read_catalog(conn: psycopg.Connection[Any], *, estimate_sizes: bool = False) -> Catalog:
    """Run every catalog query on `conn` (whose transaction holds the snapshot)."""
    with conn.cursor() as cur:
        set_settings(cur, {"search_path": ""}, local=True)
        cur.execute(DATABASE_SQL)
        version, dbname, encoding, block_size, lo_count = cur.fetchone()  # type: ignore[misc]
        cur.execute(TABLES_SQL, {"estimate": estimate_sizes})
        tables = tuple(
            Table(
                oid=r[0],
                schema=r[1],
                name=r[2],
                relkind=r[3],
                persistence=r[4],
                access_method=r[5],
                is_partition=r[6],
                parent_oids=tuple(r[7]),
                pages=int(r[8]),
                bytes=int(r[9]),
                reltuples=float(r[10]),
                columns=tuple(r[11]),
                rls_enabled=r[12],
                rls_forced=r[13],
            )
            for r in cur.fetchall()
        )
        cur.execute(INDEXES_SQL)
        indexes = tuple(
            Index(
                oid=r[0],
                table_oid=r[1],
                schema=r[2],
                name=r[3],
                definition=r[4],
                is_unique=r[5],
                is_primary=r[6],
                is_replident=r[7],
                is_clustered=r[8],
                tablespace=r[9],
                stat_targets=tuple((a, b) for a, b in r[10]),
                constraint_oid=r[11],
                constraint_name=r[12],
                constraint_type=r[13],
                constraint_def=r[14],
                deferrable=r[15],
                deferred=r[16],
            )
            for r in cur.fetchall()
        )
        cur.execute(SEQUENCES_SQL)
        sequences = tuple(
            Sequence(oid=r[0], schema=r[1], name=r[2], owner_table_oid=r[3]) for r in cur.fetchall()
        )
        cur.execute(EXTENSIONS_SQL)
        extensions = tuple(Extension(*r) for r in cur.fetchall())
        cur.execute(SCHEMAS_SQL)
        schemas = tuple(Named(*r) for r in cur.fetchall())
        cur.execute(EVENT_TRIGGERS_SQL)
        event_triggers = tuple(Named(*r) for r in cur.fetchall())
        cur.execute(SETTINGS_SQL)
        settings = tuple(
            DatabaseSetting(role=r[0], name=r[1].split("=", 1)[0], value=r[1].split("=", 1)[1])
            for r in cur.fetchall()
        )
        cur.execute("SELECT rolname FROM pg_roles ORDER BY rolname")
        roles = tuple(r[0] for r in cur.fetchall())
    return Catalog(
        server_version_num=version,
        dbname=dbname,
        encoding=encoding,
        block_size=block_size,
        tables=tables,
        indexes=indexes,
        sequences=sequences,
        extensions=extensions,
        schemas=schemas,
        event_triggers=event_triggers,
        settings=settings,
        large_objects=lo_count,
        roles=roles,
    )


FOREIGN_KEYS_SQL = """
SELECT con.oid::int8, n.nspname, c.relname, c.relkind::text, con.conname,
       pg_get_constraintdef(con.oid), con.convalidated
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE con.oid = ANY(%s) AND con.contype = 'f'
"""

# The table's storage as the snapshot sees it and as it is now (the lock just taken
# makes the relation cache current).
REWRITTEN_SQL = "SELECT relfilenode <> pg_relation_filenode(oid) FROM pg_class WHERE oid = %s"
