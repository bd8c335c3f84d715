"""One answer per catalog fact: every consumer reads a table's row identity and whether
it is in scope the same way (catalog.row_identity, catalog.inscope).

Apply reads the identity to build its WHERE clauses, preflight to warn, and
fix-replica-identity to propose a fix; `follow` applies, preflight checks and
fix-replica-identity fixes the same tables under the same filters, and a clone with those
filters copies them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from pgferry.admin.replica_identity import read_tables
from pgferry.catalog.filters import parse_filters
from pgferry.catalog.inscope import read_ancestors
from pgferry.catalog.row_identity import Problem
from pgferry.cdc.apply import Applier, ApplyScope
from pgferry.checks.preflight.scope import scoped_tables
from pgferry.checks.preflight.tables import read_scope_tables
from pgferry.pg.conninfo import ConnInfo
from tests.helpers.cli import run_pgferry
from tests.helpers.running import clone_args

if TYPE_CHECKING:
    from tests.conftest import DbPair

SHAPES = """
CREATE TABLE pk_plain (id int PRIMARY KEY, a int);
CREATE TABLE pk_composite (b int, a int, v text, PRIMARY KEY (b, a));
CREATE TABLE pk_include (id int, a int, b text, PRIMARY KEY (id) INCLUDE (a, b));
CREATE TABLE ri_include (id int NOT NULL, k int NOT NULL, a int);
CREATE UNIQUE INDEX ri_include_k ON ri_include (k, id) INCLUDE (a);
ALTER TABLE ri_include REPLICA IDENTITY USING INDEX ri_include_k;
CREATE TABLE full_pk (id int PRIMARY KEY, j json);
ALTER TABLE full_pk REPLICA IDENTITY FULL;
CREATE TABLE full_nokey (j json, p point);
ALTER TABLE full_nokey REPLICA IDENTITY FULL;
CREATE TABLE nothing_pk (id int PRIMARY KEY);
ALTER TABLE nothing_pk REPLICA IDENTITY NOTHING;
CREATE TABLE no_key (a int);
CREATE TABLE ri_dropped (id int NOT NULL);
CREATE UNIQUE INDEX ri_dropped_id ON ri_dropped (id);
ALTER TABLE ri_dropped REPLICA IDENTITY USING INDEX ri_dropped_id;
DROP INDEX ri_dropped_id;
CREATE SCHEMA other;
CREATE TABLE parted (id int, d int, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
CREATE TABLE other.parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10)
    PARTITION BY LIST (id);
CREATE TABLE other.parted_1_a PARTITION OF other.parted_1 DEFAULT;
CREATE TABLE kept (id int PRIMARY KEY);
CREATE TABLE kept_child (extra int) INHERITS (kept);
CREATE TABLE dropped_parent (id int PRIMARY KEY);
CREATE TABLE dropped_child () INHERITS (dropped_parent);
"""

EXPECTED = {
    "pk_plain": (("id",), None),
    "pk_composite": (("b", "a"), None),
    "pk_include": (("id",), None),
    "ri_include": (("k", "id"), None),
    "full_pk": (("id",), None),
    "full_nokey": ((), None),
    "nothing_pk": (("id",), Problem.NOTHING),
    "no_key": ((), Problem.NO_KEY),
    "ri_dropped": ((), Problem.INDEX_DROPPED),
}


def _applier(p: DbPair, scope: ApplyScope, tmp: Path) -> Applier:
    return Applier(
        ConnInfo.parse(p.source_uri, "source"),
        "unused",
        tmp,
        "test_decoding",
        scope,
        endpos=lambda: None,
        may_apply=lambda: False,
        received=lambda: 0,
        on_progress=lambda lsn, txns: None,
        stop=threading.Event(),
    )


def test_every_consumer_reads_the_same_row_identity(dbpair: DbPair, tmp_path: Path) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SHAPES)
        applier = _applier(p, ApplyScope(tables={}, everything=True), tmp_path)
        applier.meta = conn
        preflight = {t.name: t.identity for t in read_scope_tables(conn) if t.schema == "public"}
        fixing = {
            t.name: t.identity for t in read_tables(conn, parse_filters("")) if t.schema == "public"
        }
        for name, (key, problem) in EXPECTED.items():
            table = applier.table("public", name)
            assert table is not None
            assert table.key == key, name
            assert preflight[name].key == key, name
            assert fixing[name].key == key, name
            assert preflight[name].problem == fixing[name].problem == problem, name
        # FULL matches columns without an equality operator as text.
        full = applier.table("public", "full_nokey")
        assert full is not None
        assert full.columns["j"].text_compare and full.columns["p"].text_compare


FILTERS = """
[exclude-table]
public.parted
public.dropped_parent
"""


def _tables(conn: psycopg.Connection) -> set[tuple[str, str]]:
    """The ordinary tables of the test's schemas."""
    rows = conn.execute(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname IN ('public', 'other')"
    ).fetchall()
    return {(r[0], r[1]) for r in rows}


def test_every_consumer_agrees_on_scope(dbpair: DbPair, tmp_path: Path) -> None:
    """A partition (in another schema, two levels down) of an excluded partitioned table,
    and an inheritance child of an excluded parent, are out for every consumer."""
    p = dbpair
    filters = parse_filters(FILTERS)
    with p.src_conn() as conn:
        conn.execute(SHAPES)
        ancestors = read_ancestors(conn)
        scope = ApplyScope(tables={}, everything=True, filters=filters, ancestors=ancestors)
        applied = {t for t in _tables(conn) if scope.applies(*t)}
        checked = {
            (t.schema, t.name)
            for t in scoped_tables(read_scope_tables(conn), filters)
            if t.relkind == "r"
        }
        fixable = {(t.schema, t.name) for t in read_tables(conn, filters)}
    assert ("other", "parted_1_a") not in applied
    assert ("public", "dropped_child") not in applied
    assert ("public", "kept_child") in applied
    assert applied == checked == fixable

    filter_file = tmp_path / "filters.ini"
    filter_file.write_text(FILTERS)
    run_pgferry(*clone_args(p, "--filters", str(filter_file)))
    with p.tgt_conn() as conn:
        assert _tables(conn) == applied
