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
