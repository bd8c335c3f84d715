"""The catalog queries of the checks (preflight and params): roles and their rights, the
tables preflight judges, databases' ages and locales, collations, functions' privileges."""

from __future__ import annotations

from pgferry.catalog.queries import SYSTEM_SCHEMA_FILTER, not_member
from pgferry.catalog.row_identity import identity_sql

LARGE_OBJECT_RIGHTS_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE NOT (
           r.rolsuper OR current_setting('lo_compat_privileges')::bool
           OR CASE WHEN l.lomacl IS NULL THEN pg_has_role(l.lomowner, 'USAGE')
                   ELSE EXISTS (SELECT 1 FROM aclexplode(l.lomacl) a
                                 WHERE a.privilege_type = 'SELECT'
                                   AND (a.grantee = 0 OR pg_has_role(a.grantee, 'USAGE')))
              END))
  FROM pg_largeobject_metadata l
 CROSS JOIN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) r
"""

# The roles the restore names: owners of the objects the clone creates, and grantees of
# their privileges (PUBLIC left out), one row per object and role:
# (role, 'owner' | 'grantee', schema, relation or NULL). Extension members left out, and
# the owner's own entries of an ACL (its default privileges).
_ACL_GRANTEES = (
    "(SELECT a.grantee FROM pg_catalog.aclexplode({acl}) a"
    " WHERE a.grantee <> 0 AND a.grantee <> {owner})"
)
ROLES_IN_USE_SQL = f"""
SELECT DISTINCT pg_catalog.pg_get_userbyid(x.role), x.how, x.nspname, x.relname
  FROM (
    SELECT c.relowner AS role, 'owner' AS how, n.nspname, c.relname::text AS relname
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {SYSTEM_SCHEMA_FILTER}
       AND {not_member("pg_class", "c.oid")}
    UNION ALL
    SELECT g, 'grantee', n.nspname, c.relname::text
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
           LATERAL {_ACL_GRANTEES.format(acl="c.relacl", owner="c.relowner")} AS g(g)
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {SYSTEM_SCHEMA_FILTER}
       AND {not_member("pg_class", "c.oid")}
    UNION ALL
    SELECT n.nspowner, 'owner', n.nspname, NULL
      FROM pg_catalog.pg_namespace n
     WHERE {SYSTEM_SCHEMA_FILTER} AND n.nspname <> 'public'
       AND {not_member("pg_namespace", "n.oid")}
    UNION ALL
    SELECT g, 'grantee', n.nspname, NULL
      FROM pg_catalog.pg_namespace n,
           LATERAL {_ACL_GRANTEES.format(acl="n.nspacl", owner="n.nspowner")} AS g(g)
     WHERE {SYSTEM_SCHEMA_FILTER} AND {not_member("pg_namespace", "n.oid")}
    UNION ALL
    SELECT p.proowner, 'owner', n.nspname, NULL
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE {SYSTEM_SCHEMA_FILTER} AND {not_member("pg_proc", "p.oid")}
    UNION ALL
    SELECT g, 'grantee', n.nspname, NULL
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace,
           LATERAL {_ACL_GRANTEES.format(acl="p.proacl", owner="p.proowner")} AS g(g)
     WHERE {SYSTEM_SCHEMA_FILTER} AND {not_member("pg_proc", "p.oid")}
    UNION ALL
    SELECT t.typowner, 'owner', n.nspname, NULL
      FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
      LEFT JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
     WHERE t.typtype IN ('e', 'd', 'r', 'm', 'c') AND (t.typtype <> 'c' OR c.relkind = 'c')
       AND {SYSTEM_SCHEMA_FILTER} AND {not_member("pg_type", "t.oid")}
    UNION ALL
    SELECT DISTINCT l.lomowner, 'owner', NULL, NULL FROM pg_catalog.pg_largeobject_metadata l
  ) x
"""

PREFLIGHT_TABLES_SQL = f"""
SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relpersistence::text,
       c.relreplident::text, c.relrowsecurity,
       has_table_privilege(c.oid, 'SELECT'), has_schema_privilege(n.oid, 'USAGE'),
       ri.ri_index, ri.ri_valid, ri.ri_key,
       coalesce((SELECT array_agg(i.inhparent::int8) FROM pg_inherits i
                  WHERE i.inhrelid = c.oid), '{{}}'),
       coalesce((SELECT array_agg(DISTINCT ts.spcname::text) FROM pg_tablespace ts
                  WHERE ts.oid = c.reltablespace
                     OR ts.oid IN (SELECT ic.reltablespace FROM pg_index i
                                     JOIN pg_class ic ON ic.oid = i.indexrelid
                                    WHERE i.indrelid = c.oid)), '{{}}'),
       EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  AND CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                      IN ('numeric'::regtype, 'float4'::regtype, 'float8'::regtype))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN {identity_sql("c")} AS ri ON true
 WHERE c.relkind IN ('r', 'p', 'm', 'f', 'S') AND c.relpersistence IN ('p', 'u')
   AND {SYSTEM_SCHEMA_FILTER}
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY n.nspname, c.relname
"""

ROLE_RIGHTS_SQL = """
SELECT current_user, r.rolsuper, r.rolreplication, r.rolbypassrls,
       coalesce((SELECT array_agg(m.rolname::text ORDER BY m.rolname) FROM pg_roles m
                  WHERE m.rolname = ANY(%s) AND pg_has_role(current_user, m.oid, 'MEMBER')),
                '{}')
  FROM pg_roles r WHERE r.rolname = current_user
"""

COLLATIONS_USED_SQL = """
SELECT DISTINCT n.nspname, c.collname, c.collprovider::text,
       pg_catalog.pg_collation_actual_version(c.oid)
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class r ON r.oid = a.attrelid
  JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
  JOIN pg_catalog.pg_collation c ON c.oid = a.attcollation
  JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
 WHERE a.attnum > 0 AND NOT a.attisdropped
   AND a.attcollation NOT IN (0, 100)
   AND c.collname NOT IN ('C', 'POSIX', 'ucs_basic')
   AND rn.nspname NOT IN ('pg_catalog', 'information_schema')
   AND rn.nspname !~ '^pg_(toast|temp_)'
   AND NOT (rn.nspname = ANY(%(excluded)s))
   AND (cardinality(%(only)s::text[]) = 0 OR rn.nspname = ANY(%(only)s))
 ORDER BY 1, 2
"""

COLLATION_SQL = """
SELECT n.nspname, c.collname, c.collprovider::text,
       pg_catalog.pg_collation_actual_version(c.oid)
  FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
 WHERE (n.nspname, c.collname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""

# Every index's schema and name
INDEX_NAMES_SQL = (
    "SELECT n.nspname, c.relname FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('i', 'I')"
)

# Functions' privileges: public by default (NULL acl) and EXECUTE for this role
FUNCTION_RIGHTS_SQL = (
    "SELECT p.oid::regprocedure::text, p.proacl IS NULL, "
    "has_function_privilege(p.oid, 'EXECUTE') "
    "FROM pg_proc p WHERE p.oid = ANY(%s::regprocedure[])"
)

# The database closest to transaction ID wraparound
OLDEST_DATABASE_XID_SQL = (
    "SELECT datname, age(datfrozenxid)::int8 FROM pg_database ORDER BY 2 DESC LIMIT 1"
)


def database_locale_sql(version_num: int) -> str:
    """The database's encoding, locale, collation provider and collation versions."""
    if version_num >= 170000:
        icu, extra = "d.datlocale", "d.datcollversion, pg_database_collation_actual_version(d.oid)"
    elif version_num >= 150000:
        icu = "d.daticulocale"
        extra = "d.datcollversion, pg_database_collation_actual_version(d.oid)"
    else:
        icu, extra = "NULL::text", "NULL::text, NULL::text"
    provider = "d.datlocprovider::text" if version_num >= 150000 else "'c'"
    return f"""
        SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, {provider},
               {icu}, {extra}
          FROM pg_catalog.pg_database d WHERE d.datname = current_database()
    """
