"""`pgferry compare data|schema`: equal databases pass, any difference fails and is named."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.helpers.cli import dump_restore, run_pgferry

if TYPE_CHECKING:
    from tests.conftest import DbPair

LONG = "ü" * 31 + "x"  # 63 bytes: the longest name PostgreSQL keeps

# Hostile names on purpose: quotes, dots, semicolons, unicode, 63-byte names, a column
# named like the alias the comparison uses, a table without a key holding duplicate rows.
SOURCE_SQL = f'''
CREATE SCHEMA "we.ird ""s""";
CREATE TABLE "we.ird ""s"""."Tâble; x" (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    r text,
    t integer,
    "x""y" jsonb,
    "{LONG}" numeric
);
INSERT INTO "we.ird ""s"""."Tâble; x" (r, t, "x""y", "{LONG}")
SELECT 'row ' || i, i * 7, jsonb_build_object('i', i), i / 3.0
  FROM generate_series(1, 500) AS i;

CREATE TABLE public.no_key (a integer, b text);
INSERT INTO public.no_key VALUES (1, 'dup'), (1, 'dup'), (2, NULL), (3, 'three');

CREATE TABLE public.orders (id bigint PRIMARY KEY, note text)
    PARTITION BY RANGE (id);
CREATE TABLE public.orders_low PARTITION OF public.orders FOR VALUES FROM (0) TO (100);
CREATE TABLE public.orders_rest PARTITION OF public.orders DEFAULT;
INSERT INTO public.orders SELECT i, 'order ' || i FROM generate_series(1, 300) AS i;

CREATE SEQUENCE public."counter ""seq""";
SELECT setval('public."counter ""seq"""', 500);
CREATE SEQUENCE public.unused_seq;

CREATE MATERIALIZED VIEW public.order_count AS SELECT count(*) AS n FROM public.orders;
SELECT lo_from_bytea(0, convert_to('hello large object', 'UTF8'));
'''

TABLE = '"we.ird ""s"""."Tâble; x"'


@pytest.fixture
def equal_pair(dbpair: DbPair) -> DbPair:
    """A source holding SOURCE_SQL and a target restored from its pg_dump."""
    with dbpair.src_conn() as conn:
        conn.execute(SOURCE_SQL)
    dump_restore(dbpair.source_uri, dbpair.target_uri)
    return dbpair


def compare(p: DbPair, what: str, *extra: str) -> tuple[int, str]:
    result = run_pgferry(
        "compare", what, "--source", p.source_uri, "--target", p.target_uri, *extra, check=False
    )
    return result.returncode, result.stdout + result.stderr


def test_equal_databases_pass(equal_pair: DbPair) -> None:
    code, out = compare(equal_pair, "data", "--table-jobs", "3")
    assert code == 0, out
    assert "OK: source and target have the same data" in out
    code, out = compare(equal_pair, "schema")
    assert code == 0, out
    assert "OK: source and target have the same schema" in out


def test_json_output(equal_pair: DbPair) -> None:
    result = run_pgferry(
        "compare", "data", "--source", equal_pair.source_uri, "--target",
        equal_pair.target_uri, "--json",
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["problems"] == []
    names = {(t["schema"], t["name"]) for t in report["tables"]}
    assert ('we.ird "s"', "Tâble; x") in names
    assert ("public", "orders_rest") in names
    assert report["large_objects"]["source_count"] == 1


CHANGES: dict[str, tuple[str, str]] = {
    # name: (SQL run on the target, what the problem line must say)
    "changed row": (
        f'UPDATE {TABLE} SET "{LONG}" = 0 WHERE id = 250',
        f"table {TABLE}: same row count (500 rows) but different content",
    ),
    "deleted row": (
        f"DELETE FROM {TABLE} WHERE id = 7",
        f"table {TABLE}: 500 rows on source, 499 rows on target",
    ),
    "deleted duplicate": (
        "DELETE FROM public.no_key WHERE ctid = (SELECT min(ctid) FROM public.no_key"
        " WHERE b = 'dup')",
        "table public.no_key: 4 rows on source, 3 rows on target",
    ),
    "row moved between partitions": (
        "UPDATE public.orders SET id = 1000 WHERE id = 5",
        "table public.orders_low: 99 rows on source, 98 rows on target",
    ),
    "sequence set back": (
        'SELECT setval(\'public."counter ""seq"""\', 20)',
        'sequence public."counter ""seq""": target is behind the source',
    ),
    "large object changed": (
        "SELECT lo_put(oid, 0, 'J') FROM pg_largeobject_metadata",
        "large objects with different content (1)",
    ),
    "table dropped": (
        "DROP TABLE public.no_key",
        "table public.no_key: missing on target",
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_difference_fails_and_is_named(equal_pair: DbPair, change: str) -> None:
    statement, expected = CHANGES[change]
    with equal_pair.tgt_conn() as conn:
        conn.execute(statement)
    code, out = compare(equal_pair, "data")
    assert code == 1, out
    assert expected in out


def test_schema_difference_fails_and_is_named(equal_pair: DbPair) -> None:
    with equal_pair.tgt_conn() as conn:
        conn.execute("ALTER TABLE public.orders DROP CONSTRAINT orders_pkey")
        conn.execute(f"ALTER TABLE {TABLE} ALTER COLUMN t TYPE bigint")
    code, out = compare(equal_pair, "schema")
    assert code == 1, out
    assert "index public.orders_pkey: missing on target" in out
    assert "constraint public.orders.orders_pkey: missing on target" in out
    assert f"column {TABLE}.t: definition differs: source 'integer', target 'bigint'" in out
