"""The catalog queries that read one side (source or target) for `compare` and `verify`.

One query per object type (SCHEMA_QUERIES) and per decoration (DECORATION_QUERIES:
comments and owners), all returning rows of the same shape so that one reader
(`catalog.objects.read_schema_objects`) turns any of them into SchemaObjects; and the
relations and sequences whose contents are compared (with sizes, estimates and usable
keys for verify). They skip the system schemas, pgferry's own schema and objects that
belong to extensions: the same scope as the migration.
"""

from __future__ import annotations

from pgferry.catalog.queries import SYSTEM_SCHEMA_FILTER, not_member
from pgferry.catalog.row_identity import key_columns_sql

_NS = SYSTEM_SCHEMA_FILTER
_REL_MEMBER = not_member("pg_class", "c.oid")
_NO_REFS = "'{}'::text[]"


def _relation_refs(how: str, condition: str) -> str:
    """SQL: the (how, schema, relation) triples of the relations `rc` matching `condition`."""
    return f"""coalesce((
        SELECT pg_catalog.array_agg(DISTINCT ARRAY['{how}', rn.nspname::text, rc.relname::text])
          FROM pg_catalog.pg_class rc
          JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
         WHERE {condition}), {_NO_REFS})"""


_OWNER_TABLE = """rc.oid IN (
    SELECT d.refobjid FROM pg_catalog.pg_depend d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.deptype IN ('a', 'i'))"""

_VIEW_USES = """rc.oid IN (
    SELECT d.refobjid FROM pg_catalog.pg_rewrite rw
      JOIN pg_catalog.pg_depend d
        ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = rw.oid
       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     WHERE rw.ev_class = c.oid AND d.refobjid <> c.oid)"""

# Each query returns (schema, relation, refs, name parts, definition): the namespace and
# the relation the filters judge the object by, the relations it depends on (triples: how,
# schema, relation), its name parts (joined and quoted in Python, so that both sides name
# objects alike whatever their server version quotes) and its definition as the server
# prints it.
SCHEMA_QUERIES: dict[str, str] = {
    "schemas": f"""
        SELECT n.nspname, NULL, {_NO_REFS}, ARRAY[n.nspname::text], ''
          FROM pg_catalog.pg_namespace n
         WHERE {_NS} AND {not_member("pg_namespace", "n.oid")}""",
    "extensions": f"""
        SELECT n.nspname, NULL, {_NO_REFS}, ARRAY[e.extname::text], 'version ' || e.extversion
          FROM pg_catalog.pg_extension e
          JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace""",
    "event triggers": f"""
        SELECT NULL, NULL, {_NO_REFS}, ARRAY[e.evtname::text],
               'on ' || e.evtevent || ' execute ' || e.evtfoid::pg_catalog.regprocedure::text
               || coalesce(' when tag in (' || pg_catalog.array_to_string(e.evttags, ', ')
                           || ')', '')
               || CASE e.evtenabled WHEN 'D' THEN ' (disabled)' WHEN 'R' THEN ' (replica)'
                                    WHEN 'A' THEN ' (always)' ELSE '' END
          FROM pg_catalog.pg_event_trigger e
         WHERE {not_member("pg_event_trigger", "e.oid")}""",
    "types": f"""
        SELECT n.nspname, NULL, {_NO_REFS}, ARRAY[n.nspname::text, t.typname::text],
               CASE t.typtype
                 WHEN 'e' THEN 'enum (' || (SELECT pg_catalog.string_agg(
                          pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                        FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid) || ')'
                 WHEN 'd' THEN 'domain over '
                          || pg_catalog.format_type(t.typbasetype, t.typtypmod)
                          || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                 WHEN 'c' THEN 'composite'
                 WHEN 'r' THEN 'range'
                 WHEN 'm' THEN 'multirange'
                 ELSE 'base type' END
          FROM pg_catalog.pg_type t
          JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
          LEFT JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
         WHERE {_NS}
           AND (t.typrelid = 0 OR c.relkind = 'c')
           AND NOT (t.typelem <> 0 AND t.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc)
           AND t.typtype <> 'p'
           AND {not_member("pg_type", "t.oid")}""",  # noqa: E501
    "tables": f"""
        SELECT n.nspname, c.relname,
               coalesce((SELECT pg_catalog.array_agg(ARRAY[
                                  CASE WHEN c.relispartition THEN 'partition of'
                                       ELSE 'inherits' END,
                                  pn.nspname::text, pc.relname::text] ORDER BY i.inhseqno)
                           FROM pg_catalog.pg_inherits i
                           JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent
                           JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
                          WHERE i.inhrelid = c.oid), {_NO_REFS}),
               ARRAY[n.nspname::text, c.relname::text],
               CASE c.relkind WHEN 'p' THEN 'partitioned table'
                              WHEN 'f' THEN 'foreign table' ELSE 'table' END
               || CASE c.relpersistence WHEN 'u' THEN ' (unlogged)' ELSE '' END
               || CASE WHEN c.relispartition
                       THEN ' partition of ' || (SELECT i.inhparent::pg_catalog.regclass::text
                              FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)
                            || ' ' || pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                       ELSE '' END
               || CASE WHEN c.relrowsecurity THEN ' with row level security' ELSE '' END
               || CASE WHEN c.relforcerowsecurity THEN ' (forced)' ELSE '' END
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'f') AND c.relpersistence IN ('p', 'u')
           AND {_NS} AND {_REL_MEMBER}""",
    "columns": f"""
        SELECT n.nspname, c.relname, {_NO_REFS},
               ARRAY[n.nspname::text, c.relname::text, a.attname::text],
               pg_catalog.format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attcollation <> t.typcollation
                       THEN ' COLLATE ' || co.collname::text ELSE '' END
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
               || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                     WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY'
                                     ELSE '' END
               || CASE WHEN a.attgenerated = 's'
                       THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                            || ') STORED'
                       WHEN a.attgenerated = 'v'  -- PostgreSQL 18
                       THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                            || ') VIRTUAL'
                       WHEN d.adbin IS NOT NULL
                       THEN ' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                       ELSE '' END
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
          LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
           AND {_NS} AND {_REL_MEMBER}""",
    "indexes": f"""
        SELECT n.nspname, c.relname, {_NO_REFS}, ARRAY[n.nspname::text, ci.relname::text],
               pg_catalog.pg_get_indexdef(i.indexrelid)
               || CASE WHEN NOT i.indisvalid THEN ' (invalid)' ELSE '' END
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
          JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = ci.relnamespace
         WHERE {_NS} AND {_REL_MEMBER}""",
    "constraints": f"""
        SELECT n.nspname, c.relname,
               pg_catalog.array_cat(
                   {_relation_refs("references", "rc.oid = con.confrelid")},
                   {_relation_refs("index", "rc.oid = con.conindid")}),
               ARRAY[n.nspname::text, coalesce(c.relname, t.typname)::text, con.conname::text],
               pg_catalog.pg_get_constraintdef(con.oid)
               || CASE WHEN NOT con.convalidated THEN ' (not validated)' ELSE '' END
          FROM pg_catalog.pg_constraint con
          JOIN pg_catalog.pg_namespace n ON n.oid = con.connamespace
          LEFT JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
          LEFT JOIN pg_catalog.pg_type t ON t.oid = con.contypid
         WHERE (c.oid IS NOT NULL OR t.oid IS NOT NULL)
           -- Not the clones a constraint gets on partitions (conparentid): the server
           -- makes them from their parent, and names them its own way per version (the
           -- foreign key to a partitioned table's fkey1, fkey2... in 15, not in 18).
           AND con.conparentid = 0
           -- Not NOT NULL constraints: 18 records them here (contype 'n'), older majors
           -- do not; the columns' definitions carry NOT NULL on every major.
           AND con.contype <> 'n'
           AND {_NS}
           AND (c.oid IS NULL OR {_REL_MEMBER})
           AND (t.oid IS NULL OR {not_member("pg_type", "t.oid")})""",
    "sequences": f"""
        SELECT n.nspname, NULL, {_relation_refs("owned by", _OWNER_TABLE)},
               ARRAY[n.nspname::text, c.relname::text],
               pg_catalog.format_type(s.seqtypid, NULL)
               || ' increment ' || s.seqincrement || ' min ' || s.seqmin
               || ' max ' || s.seqmax || ' start ' || s.seqstart || ' cache ' || s.seqcache
               || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
         WHERE c.relkind = 'S' AND {_NS} AND {_REL_MEMBER}""",
    "views": f"""
        SELECT n.nspname, c.relname, {_relation_refs("uses", _VIEW_USES)},
               ARRAY[n.nspname::text, c.relname::text], pg_catalog.pg_get_viewdef(c.oid)
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'v' AND {_NS} AND {_REL_MEMBER}""",
    "materialized views": f"""
        SELECT n.nspname, c.relname, {_relation_refs("uses", _VIEW_USES)},
               ARRAY[n.nspname::text, c.relname::text], pg_catalog.pg_get_viewdef(c.oid)
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'm' AND {_NS} AND {_REL_MEMBER}""",
    "functions": f"""
        SELECT n.nspname, NULL, {_NO_REFS},
               ARRAY[n.nspname::text, p.proname::text,
                     pg_catalog.pg_get_function_identity_arguments(p.oid)],
               CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                              WHEN 'w' THEN 'window function' ELSE 'function' END
               || coalesce(' returns ' || pg_catalog.pg_get_function_result(p.oid), '')
               || ' language ' || l.lanname
               || ' body md5 ' || pg_catalog.md5(coalesce(p.prosrc, '') || coalesce(p.probin, ''))
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_catalog.pg_language l ON l.oid = p.prolang
         WHERE {_NS} AND {not_member("pg_proc", "p.oid")}""",
    "triggers": f"""
        SELECT n.nspname, c.relname, {_NO_REFS},
               ARRAY[n.nspname::text, c.relname::text, tg.tgname::text],
               pg_catalog.pg_get_triggerdef(tg.oid)
               || CASE tg.tgenabled WHEN 'D' THEN ' (disabled)' WHEN 'R' THEN ' (replica)'
                                    WHEN 'A' THEN ' (always)' ELSE '' END
          FROM pg_catalog.pg_trigger tg
          JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT tg.tgisinternal AND {_NS} AND {_REL_MEMBER}""",
    "policies": f"""
        SELECT n.nspname, c.relname, {_NO_REFS},
               ARRAY[n.nspname::text, c.relname::text, pol.polname::text],
               CASE WHEN pol.polpermissive THEN 'permissive' ELSE 'restrictive' END
               || ' for ' || CASE pol.polcmd WHEN 'r' THEN 'select' WHEN 'a' THEN 'insert'
                                             WHEN 'w' THEN 'update' WHEN 'd' THEN 'delete'
                                             ELSE 'all' END
               || ' to ' || CASE WHEN pol.polroles = '{{0}}' THEN 'public'
                                 ELSE (SELECT pg_catalog.string_agg(
                                                  pg_catalog.quote_ident(r.rolname), ', '
                                                  ORDER BY r.rolname)
                                         FROM pg_catalog.pg_roles r
                                        WHERE r.oid = ANY (pol.polroles)) END
               || coalesce(' using (' || pg_catalog.pg_get_expr(pol.polqual, pol.polrelid)
                           || ')', '')
               || coalesce(' with check ('
                           || pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid) || ')', '')
          FROM pg_catalog.pg_policy pol
          JOIN pg_catalog.pg_class c ON c.oid = pol.polrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE {_NS} AND {_REL_MEMBER}""",
}

# Comments and owners: the objects are rows x(classid, objid, subid, value). Their scope
# is read from the catalogs (pg_identify_object quotes names): the relation they are or
# belong to, its namespace (else the object's own), and the extension or event trigger.
_DECORATED = """
  LEFT JOIN LATERAL (
        SELECT n.nspname, c.relname
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = CASE x.classid
                 WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN x.objid
                 WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass
                 THEN (SELECT k.conrelid FROM pg_catalog.pg_constraint k WHERE k.oid = x.objid)
                 WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass
                 THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = x.objid)
                 WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass
                 THEN (SELECT p.polrelid FROM pg_catalog.pg_policy p WHERE p.oid = x.objid)
                 END) r ON true
  CROSS JOIN LATERAL (SELECT coalesce(r.nspname, CASE x.classid
                 WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass
                 THEN (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = x.objid)
                 WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass
                 THEN (SELECT n.nspname FROM pg_catalog.pg_proc p
                         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                        WHERE p.oid = x.objid)
                 WHEN 'pg_catalog.pg_type'::pg_catalog.regclass
                 THEN (SELECT n.nspname FROM pg_catalog.pg_type t
                         JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                        WHERE t.oid = x.objid)
                 WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass
                 THEN (SELECT n.nspname FROM pg_catalog.pg_constraint k
                         JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace
                        WHERE k.oid = x.objid) END) AS nspname) ns
  CROSS JOIN LATERAL pg_catalog.pg_identify_object(x.classid, x.objid, x.subid) o
  CROSS JOIN LATERAL pg_catalog.pg_identify_object_as_address(x.classid, x.objid, x.subid) a
 WHERE x.objid >= 16384
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                    WHERE e.classid = x.classid AND e.objid = x.objid AND e.deptype = 'e')
   AND coalesce(ns.nspname, '') NOT IN ('pg_catalog', 'information_schema', 'pgferry')
   AND coalesce(ns.nspname, '') !~ '^pg_(toast|temp_)'"""

_DECORATED_COLUMNS = """ns.nspname, r.relname,
       CASE WHEN o.type IN ('extension', 'event trigger')
            THEN ARRAY[ARRAY[o.type, '', a.object_names[1]]] ELSE '{}'::text[] END,
       ARRAY[o.type, o.identity]"""

# Not in `compare schema`, and never more than a warning in `verify`: --no-comments and
# --no-owner migrations leave them out on purpose. Same row shape as SCHEMA_QUERIES; the
# name parts are the server's (object type, identity).
DECORATION_QUERIES: dict[str, str] = {
    "comments": f"""
        SELECT {_DECORATED_COLUMNS}, x.value
          FROM (SELECT d.classoid AS classid, d.objoid AS objid, d.objsubid AS subid,
                       d.description AS value
                  FROM pg_catalog.pg_description d
                 WHERE d.classoid <> 'pg_catalog.pg_largeobject'::pg_catalog.regclass) x
        {_DECORATED}""",
    "owners": f"""
        SELECT n.nspname, c.relname, {_NO_REFS},
               ARRAY[CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                                    WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
                                    ELSE 'table' END,
                     pg_catalog.quote_ident(n.nspname) || '.'
                     || pg_catalog.quote_ident(c.relname)],
               pg_catalog.pg_get_userbyid(c.relowner)
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND {_NS} AND {_REL_MEMBER}
        UNION ALL
        SELECT n.nspname, NULL, {_NO_REFS},
               ARRAY[CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                                    ELSE 'function' END,
                     pg_catalog.quote_ident(n.nspname) || '.'
                     || pg_catalog.quote_ident(p.proname) || '('
                     || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')'],
               pg_catalog.pg_get_userbyid(p.proowner)
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE {_NS} AND {not_member("pg_proc", "p.oid")}
        UNION ALL
        SELECT n.nspname, NULL, {_NO_REFS}, ARRAY['schema', pg_catalog.quote_ident(n.nspname)],
               pg_catalog.pg_get_userbyid(n.nspowner)
          FROM pg_catalog.pg_namespace n
         WHERE {_NS} AND {not_member("pg_namespace", "n.oid")}
        UNION ALL
        SELECT n.nspname, NULL, {_NO_REFS},
               ARRAY['type', pg_catalog.format_type(t.oid, NULL)],
               pg_catalog.pg_get_userbyid(t.typowner)
          FROM pg_catalog.pg_type t
          JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
          LEFT JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
         WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND c.relkind = 'c'))
           AND {_NS} AND {not_member("pg_type", "t.oid")}""",
}

# The sequences whose positions the comparisons read, in the same scope.
COMPARED_SEQUENCES_SQL = f"""
SELECT n.nspname, c.relname, s.seqincrement,
       pg_catalog.has_sequence_privilege(c.oid, 'SELECT')
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
 WHERE c.relkind = 'S'
   AND {SYSTEM_SCHEMA_FILTER}
   AND {not_member("pg_class", "c.oid")}
 ORDER BY 1, 2
"""


# Relations with their sizes, row estimates and usable keys (what compare reads and verify
# pairs tables by).
# A usable key: a valid unique btree index without predicate or expressions whose key
# columns are all NOT NULL; the primary key first, then the narrowest.
KEYED_RELATIONS_SQL = f"""
SELECT n.nspname, c.relname, c.relkind::text, c.relispopulated, c.reltuples::float8,
       st.n_live_tup, pg_catalog.pg_table_size(c.oid),
       coalesce((SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
                   FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}'),
       coalesce((SELECT pg_catalog.json_agg(k.cols ORDER BY k.primary_key DESC,
                                            pg_catalog.cardinality(k.cols), k.name)
                   FROM (SELECT i.indisprimary AS primary_key, ci.relname AS name,
                                {key_columns_sql("i")} AS cols
                           FROM pg_catalog.pg_index i
                           JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
                           JOIN pg_catalog.pg_am am ON am.oid = ci.relam
                          WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                            AND i.indpred IS NULL AND i.indexprs IS NULL
                            AND am.amname = 'btree'
                            AND NOT EXISTS (
                                SELECT 1 FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = i.indrelid AND NOT a.attnotnull
                                   AND a.attnum = ANY (i.indkey[0:i.indnkeyatts - 1]))
                            -- ascending, default operator classes and collations: the
                            -- index serves ORDER BY key and comparisons of the key.
                            AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(i.indoption) o
                                             WHERE o <> 0)
                            AND NOT EXISTS (
                                SELECT 1
                                  FROM ROWS FROM (
                                       pg_catalog.unnest(i.indkey[0:i.indnkeyatts - 1]),
                                       pg_catalog.unnest(i.indclass[0:i.indnkeyatts - 1]),
                                       pg_catalog.unnest(i.indcollation[0:i.indnkeyatts - 1]))
                                       AS x(attnum, opclass, coll)
                                  JOIN pg_catalog.pg_opclass oc ON oc.oid = x.opclass
                                  JOIN pg_catalog.pg_attribute a
                                    ON a.attrelid = i.indrelid AND a.attnum = x.attnum
                                 WHERE NOT oc.opcdefault OR x.coll <> a.attcollation)) AS k),
                '[]'::json)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_stat_all_tables st ON st.relid = c.oid
 WHERE c.relkind IN ('r', 'm') AND c.relpersistence IN ('p', 'u')
   AND {SYSTEM_SCHEMA_FILTER}
   AND {not_member("pg_class", "c.oid")}
"""
