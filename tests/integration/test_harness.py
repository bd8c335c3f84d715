"""The test harness itself: fresh databases, loading the rich schema, and a comparison that
passes on a faithful copy (pg_dump | psql) and fails on a single changed row."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.helpers.cli import dump_restore
from tests.helpers.compare import (
    assert_same_database,
    large_objects,
    sequence_values,
    table_fingerprints,
)

if TYPE_CHECKING:
    from tests.conftest import DbPair


def test_fresh_databases_are_empty_and_separate(dbpair: DbPair) -> None:
    with dbpair.src_conn() as src, dbpair.tgt_conn() as tgt:
        assert src.execute("SELECT current_database()").fetchone() == (dbpair.src_db,)
        assert tgt.execute("SELECT current_database()").fetchone() == (dbpair.tgt_db,)
        assert src.execute("SHOW wal_level").fetchone() == ("logical",)
        assert table_fingerprints(src) == table_fingerprints(tgt) == {}
    assert dbpair.source.port != dbpair.target.port
    assert not dbpair.workdir.exists()
    assert_same_database(dbpair.source_uri, dbpair.target_uri)


def test_rich_schema_copies_and_compares(rich_source: DbPair) -> None:
    with rich_source.src_conn() as src:
        tables = table_fingerprints(src)
        assert tables["bulk.big"][0] == 200_000
        assert tables["public.zc"][0] == 3
        assert tables['"odd.schema name"."we.ird ""quoted""; name"'][0] == 5
        assert all(count > 0 for count, _ in tables.values()), tables
        assert sequence_values(src)["public.reset_seq"] == (42, False)
        assert sorted(large_objects(src)) == [90001, 90002, 90003]

    dump_restore(rich_source.source_uri, rich_source.target_uri)
    assert_same_database(rich_source.source_uri, rich_source.target_uri)

    with rich_source.tgt_conn() as tgt:
        tgt.execute("UPDATE bulk.big SET qty = qty + 1 WHERE id = 123456")
    with pytest.raises(AssertionError, match=r"table bulk\.big: source \(200000, "):
        assert_same_database(rich_source.source_uri, rich_source.target_uri, schema=False)


def test_comparison_sees_schema_sequence_and_blob_changes(rich_source: DbPair) -> None:
    dump_restore(rich_source.source_uri, rich_source.target_uri)
    with rich_source.tgt_conn() as tgt:
        tgt.execute("COMMENT ON TABLE public.zc IS 'changed'")
        tgt.execute("SELECT setval('public.standalone_seq', 5000)")
        tgt.execute("SELECT lo_put(90003, 0, 'x')")
        tgt.execute("INSERT INTO public.zc DEFAULT VALUES")
    with pytest.raises(AssertionError) as failure:
        assert_same_database(rich_source.source_uri, rich_source.target_uri)
    message = str(failure.value)
    assert "+COMMENT ON TABLE public.zc IS 'changed';" in message
    assert "sequence public.standalone_seq" in message
    assert "large object 90003" in message
    assert "table public.zc: source (3, " in message
