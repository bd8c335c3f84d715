"""Big tables are copied in parts at the same time, and arrive intact."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pgferry.state.store import StateStore, UnitKind
from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database
from tests.helpers.running import start_pgferry, wait_for

if TYPE_CHECKING:
    from tests.conftest import DbPair

SETUP = """
CREATE TABLE with_pk (id bigint PRIMARY KEY, grp int, body text);
INSERT INTO with_pk SELECT g, g % 100, repeat(md5(g::text), 4) FROM generate_series(1, 150000) g;
CREATE INDEX with_pk_grp ON with_pk (grp);
CREATE TABLE no_pk (grp int, body text);
INSERT INTO no_pk SELECT g % 100, repeat(md5(g::text), 4) FROM generate_series(1, 150000) g;
INSERT INTO no_pk SELECT * FROM no_pk WHERE grp < 10;  -- duplicate rows
-- Updates move rows to other pages; the copy must still hold each live row once.
UPDATE with_pk SET body = body || 'x' WHERE id % 7 = 0;
DELETE FROM no_pk WHERE grp = 42;
"""


def _parts(workdir: Path, table: str) -> list[dict]:
    """The copy units of `table`, by part, read through the state store."""
    store = StateStore.open_dir(workdir, readonly=True)
    try:
        copies = store.units(UnitKind.COPY)
    finally:
        store.close()
    return [
        dataclasses.asdict(u)
        for u in sorted(copies, key=lambda u: u.part)
        if u.label.startswith(table)
    ]


def test_split_tables_copied_in_parallel_parts(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SETUP)
    run_pgferry(
        "clone",
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        "--table-jobs",
        "4",
        "--split-tables-larger-than",
        "4MB",
        "--no-progress",
    )
    assert_same_database(p.source_uri, p.target_uri)
    for table in ("public.with_pk", "public.no_pk"):
        parts = _parts(p.workdir, table)
        assert len(parts) >= 4, parts
        assert all(u["status"] == "done" for u in parts)
        assert sum(u["rows"] for u in parts) > 0
        details = [u["detail"] for u in parts]
        # Block ranges tile the table: first unbounded below, last unbounded above.
        assert details[0]["first_page"] is None and details[-1]["end_page"] is None
        for a, b in zip(details, details[1:], strict=False):
            assert a["end_page"] == b["first_page"]
        # Parts of the same table ran at the same time.
        overlaps = [
            (a, b)
            for a in parts
            for b in parts
            if a["id"] < b["id"]
            and a["started_at"] < b["finished_at"]
            and b["started_at"] < a["finished_at"]
        ]
        assert overlaps, f"no two parts of {table} ran at the same time"


def test_split_max_parts_caps_parts(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SETUP)
    run_pgferry(
        "clone",
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        "--split-tables-larger-than",
        "1MB",
        "--split-max-parts",
        "3",
        "--no-progress",
    )
    assert len(_parts(p.workdir, "public.with_pk")) == 3
    assert_same_database(p.source_uri, p.target_uri)


@pytest.mark.slow
def test_list_progress_while_running(dbpair: DbPair) -> None:
    """Another process reads the state store while the clone runs."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SETUP)
        conn.execute(
            "CREATE FUNCTION slow(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
            "$$ BEGIN PERFORM pg_sleep(0.3); RETURN i; END $$;"
            "CREATE TABLE slowidx (id int); INSERT INTO slowidx SELECT generate_series(1, 10);"
            "CREATE INDEX slowidx_i ON slowidx (slow(id));"
        )
    proc = start_pgferry(
        "clone",
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        "--table-jobs",
        "2",
        "--split-tables-larger-than",
        "4MB",
        "--no-progress",
    )
    wait_for(proc, p.workdir, lambda us: any(u["status"] == "running" for u in us))
    seen = run_pgferry("list", "progress", "--json", "--dir", str(p.workdir))
    report = json.loads(seen.stdout)
    assert report["running_pid"] == proc.pid
    assert report["status"] == "running"
    assert report["running"], report
    assert report["tables_total"] >= 3
    text = run_pgferry("list", "progress", "--dir", str(p.workdir)).stdout
    assert "running" in text
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    final = json.loads(run_pgferry("list", "progress", "--json", "--dir", str(p.workdir)).stdout)
    assert final["status"] == "done" and final["running_pid"] is None
    assert final["tables_done"] == final["tables_total"]
    assert all(ph["status"] in ("done", "skipped") for ph in final["phases"])
    summary = json.loads(
        run_pgferry("list", "progress", "--summary", "--dir", str(p.workdir)).stdout
    )
    assert summary["total_rows"] > 300000
