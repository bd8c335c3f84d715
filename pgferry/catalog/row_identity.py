"""Row identity: which columns identify a row of a table. The one home of this fact.

Logical decoding identifies an updated or deleted row by the table's replica identity:
under DEFAULT the primary key, under USING INDEX that index, under FULL the whole old
row, under NOTHING nothing. Only an index's *key* columns identify a row: a covering
index's INCLUDE columns (`PRIMARY KEY (id) INCLUDE (a, b)`) are stored in it but are not
part of the key, and decoding sends no old value for them. An identity index that was
dropped (relreplident stays 'i') or is not valid identifies nothing.

Apply (on the target), preflight and fix-replica-identity (on the source) all read it
through `identity_sql` and `RowIdentity`; columns without an equality operator
(compared as text when FULL identifies the row) through `NO_EQUALITY_SQL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pgferry.catalog.inscope import ANCESTORS_SQL

# Types without a usable '=' (or whose '=' is not equality): FULL matches them as text.
TEXT_COMPARE_TYPES = ("json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle")


def key_columns_sql(index: str = "i", *, nullable_only: bool = False) -> str:
    """An expression: the key columns (never INCLUDE columns) of the pg_index row aliased
    `index`, in key order, as text[] ('{}' when none); `nullable_only` keeps those
    without NOT NULL. Every query that needs an index's key columns uses it."""
    nullable = " WHERE NOT a.attnotnull" if nullable_only else ""
    return f"""coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                  FROM unnest({index}.indkey[0:{index}.indnkeyatts - 1])
                       WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a
                    ON a.attrelid = {index}.indrelid AND a.attnum = k.attnum{nullable}),
               '{{}}'::text[])"""


def identity_sql(rel: str = "c") -> str:
    """A LATERAL subquery for the pg_class row aliased `rel`, to join `ON true`, with the
    index that identifies its rows (the primary key, or the replica identity index under
    USING INDEX): ri_index (name; NULL when none), ri_valid, and ri_key (its key columns
    in key order, never INCLUDE columns). With relreplident, `RowIdentity.of` reads it."""
    return f"""LATERAL (
        SELECT ic.relname::text AS ri_index,
               i.indisvalid AND i.indisready AND i.indislive AS ri_valid,
               {key_columns_sql("i")} AS ri_key
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = {rel}.oid
           AND CASE WHEN {rel}.relreplident = 'i' THEN i.indisreplident
                    ELSE i.indisprimary END
         LIMIT 1)"""


# The columns of a table that have no equality operator (typcategory G: geometric), for
# the tables whose oids are %(oids)s; %(textcmp)s is TEXT_COMPARE_TYPES.
NO_EQUALITY_SQL = """
SELECT a.attrelid::int8, a.attname::text
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
  LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
 WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
   AND (t.typcategory = 'G' OR bt.typname = ANY(%(textcmp)s) OR et.typname = ANY(%(textcmp)s)
        OR NOT EXISTS (
            SELECT 1 FROM pg_operator o
             WHERE o.oprname = '=' AND (
                   (o.oprleft = bt.oid AND o.oprright = bt.oid)
                   OR bt.typtype IN ('e', 'r', 'm')
                   OR (bt.typcategory = 'A' AND o.oprleft = et.oid AND o.oprright = et.oid))))
 ORDER BY a.attrelid, a.attnum
"""


class Problem(StrEnum):
    """Why CDC cannot replicate a table's UPDATEs and DELETEs."""

    NO_KEY = "no primary key (replica identity default)"
    NOTHING = "replica identity nothing"
    INDEX_DROPPED = "replica identity index was dropped"
    INDEX_INVALID = "replica identity index is not valid"


@dataclass(frozen=True)
class RowIdentity:
    """What identifies a row of one table in decoded UPDATEs and DELETEs."""

    replident: str  # pg_class.relreplident: d default, i index, f full, n nothing
    index: str | None = None  # the primary key or the USING INDEX index
    index_valid: bool = True
    key: tuple[str, ...] = ()  # that index's key columns, in key order

    @classmethod
    def of(
        cls, replident: str, index: str | None, valid: bool | None, key: list[str] | None
    ) -> RowIdentity:
        """From relreplident and identity_sql's three columns."""
        return cls(replident, index, bool(valid) if index else True, tuple(key or ()))

    @property
    def problem(self) -> Problem | None:
        if self.replident == "f":
            return None
        if self.replident == "n":
            return Problem.NOTHING
        if self.replident == "i":
            if self.index is None:
                return Problem.INDEX_DROPPED
            return None if self.index_valid else Problem.INDEX_INVALID
        return None if self.index is not None else Problem.NO_KEY


# Each table's replica identity as it is now (read back after a fix)
IDENTITIES_NOW_SQL = (
    "SELECT c.oid, c.relreplident::text, ri.ri_index, ri.ri_valid, ri.ri_key "
    f"FROM pg_class c LEFT JOIN {identity_sql('c')} AS ri ON true WHERE c.oid = ANY(%s)"
)

_IDENTITY_TABLES_TEMPLATE = """
SELECT c.oid, n.nspname, c.relname, c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       ri.ri_index, ri.ri_valid, ri.ri_key,
       {ancestors},
       pg_get_userbyid(c.relowner), pg_has_role(c.relowner, 'USAGE')
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN {identity} AS ri ON true
 WHERE c.relkind = 'r' AND c.relpersistence = 'p'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry')
   AND n.nspname !~ '^pg_(toast|temp_)'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
 ORDER BY n.nspname, c.relname
"""

_IDENTITY_INDEXES_TEMPLATE = """
SELECT i.indrelid, ic.relname, i.indimmediate,
       i.indisvalid AND i.indisready AND i.indislive,
       i.indpred IS NOT NULL, i.indexprs IS NOT NULL OR 0 = ANY(i.indkey[0:i.indnkeyatts - 1]),
       {keys},
       {nullable},
       pg_relation_size(i.indexrelid)
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = ANY(%s) AND i.indisunique
"""

APPLY_TABLES_SQL = f"""
SELECT n.nspname, c.relname, c.relreplident::text,
       coalesce((
         SELECT array_agg(ARRAY[a.attname::text, format_type(a.atttypid, a.atttypmod),
                                (a.attgenerated <> '')::text, (a.attidentity = 'a')::text]
                          ORDER BY a.attnum)
           FROM pg_attribute a
          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}'),
       ri.ri_index, ri.ri_valid, ri.ri_key, c.oid::int8,
       (SELECT count(*) FROM pg_index x
         WHERE x.indrelid = c.oid AND (x.indisunique OR x.indisexclusion))::int AS uniques
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN {identity_sql("c")} AS ri ON true
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND c.relkind IN ('r', 'p')
"""

# What on the target could see the order in which apply writes to different tables inside
# one transaction (None: nothing): a trigger that fires under session_replication_role =
# replica (ENABLE ALWAYS or ENABLE REPLICA), or a rule on a table.
ORDER_OBSERVERS_SQL = """
SELECT coalesce(
  (SELECT format('trigger %I on %s (enabled %s)', t.tgname, t.tgrelid::regclass,
                 CASE t.tgenabled WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END)
     FROM pg_catalog.pg_trigger t
    WHERE NOT t.tgisinternal AND t.tgenabled IN ('A', 'R')
    ORDER BY t.oid LIMIT 1),
  (SELECT format('rule %I on %s', r.rulename, r.ev_class::regclass)
     FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
    WHERE c.relkind IN ('r', 'p') AND r.rulename <> '_RETURN'
    ORDER BY r.oid LIMIT 1))
"""

IDENTITY_TABLES_SQL = _IDENTITY_TABLES_TEMPLATE.replace("{identity}", identity_sql("c")).replace(
    "{ancestors}", ANCESTORS_SQL
)
IDENTITY_INDEXES_SQL = _IDENTITY_INDEXES_TEMPLATE.replace("{keys}", key_columns_sql("i")).replace(
    "{nullable}", key_columns_sql("i", nullable_only=True)
)
