"""Cloning a rich database: the target ends identical to the source."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database

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
