"""Cloning a rich database: the target ends identical to the source."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database
from tests.helpers.running import clone_args

if TYPE_CHECKING:
    from tests.conftest import DbPair


def test_clone_rich_schema_is_identical(rich_source: DbPair) -> None:
    p = rich_source
    result = run_pgferry(
        "clone",
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        "--table-jobs",
        "3",
        "--index-jobs",
        "2",
    )
    assert "pgferry clone summary" in result.stdout
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)
    summary = json.loads((p.workdir / "summary.json").read_text())
    assert {ph["status"] for ph in summary["phases"]} <= {"done", "skipped"}
    assert summary["total_rows"] > 0


LARGE_OBJECT_SIZES = (0, 1, 2047, 2048, 2049, 4096, 16 * 1024, 1024 * 1024 + 2048)


def test_large_objects_keep_their_pages(dbpair: DbPair) -> None:
    """Large objects of every size around the 2 kB page and the copy's chunks arrive with
    the same contents and the same pages (one whose size is a multiple of 2 kB used to
    get an empty page more: the final truncation wrote one at the boundary)."""
    p = dbpair
    with p.src_conn() as conn:
        for n, size in enumerate(LARGE_OBJECT_SIZES):
            conn.execute(
                "SELECT lo_from_bytea(%s, decode(repeat('5a', %s), 'hex'))", (70000 + n, size)
            )
    run_pgferry(*clone_args(p))
    assert_same_database(p.source_uri, p.target_uri)
    pages = (
        "SELECT m.oid::int8, count(l.pageno), coalesce(sum(length(l.data)), 0)"
        "  FROM pg_largeobject_metadata m LEFT JOIN pg_largeobject l ON l.loid = m.oid"
        " GROUP BY m.oid ORDER BY m.oid"
    )
    with p.src_conn() as src, p.tgt_conn() as tgt:
        source = src.execute(pages).fetchall()
        assert [int(size) for _, _, size in source] == list(LARGE_OBJECT_SIZES)
        assert tgt.execute(pages).fetchall() == source
