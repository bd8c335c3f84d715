"""pgcopydb's flags and environment variables, and pgferry's run-control behaviour."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING

import pytest

from pgferry.state.store import StateStore, UnitKind
from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database
from tests.helpers.running import SLOW_COPY, kill_group, start_pgferry, wait_for

if TYPE_CHECKING:
    from tests.conftest import DbPair

SETUP = """
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(30, 10), tags text[]);
INSERT INTO items SELECT g, 'item ' || g, g * 1.0000000001, ARRAY['a', g::text]
  FROM generate_series(1, 60000) g;
CREATE TABLE notes (body text, at timestamptz DEFAULT now());
INSERT INTO notes (body) SELECT repeat('n', g % 50) FROM generate_series(1, 30000) g;
CREATE SEQUENCE counter START 100;
SELECT setval('counter', 4242);
"""


@pytest.fixture
def source(dbpair: DbPair) -> DbPair:
    with dbpair.src_conn() as conn:
        conn.execute(SETUP)
    return dbpair


def _base(p: DbPair) -> list[str]:
    return [
        "clone",
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        "--no-progress",
    ]


def _pool_sizes(p: DbPair) -> dict[str, int | None]:
    store = StateStore.open_dir(p.workdir, readonly=True)
    try:
        return {phase.name: phase.concurrency for phase in store.phases()}
    finally:
        store.close()


def test_environment_variables(source: DbPair) -> None:
    """PGCOPYDB_* work, PGFERRY_* win over them; flags win over both."""
    p = source
    env = {
        "PGCOPYDB_SOURCE_PGURI": p.source_uri,
        "PGCOPYDB_TARGET_PGURI": "postgresql://nobody@127.0.0.1:1/none",
        "PGFERRY_TARGET_PGURI": p.target_uri,
        "PGCOPYDB_DIR": str(p.workdir),
        "PGCOPYDB_TABLE_JOBS": "3",
        "PGFERRY_INDEX_JOBS": "1",
        "PGCOPYDB_INDEX_JOBS": "7",
        "PGCOPYDB_SPLIT_TABLES_LARGER_THAN": "1MB",
        "PGCOPYDB_SKIP_VACUUM": "true",
    }
    run_pgferry("clone", "--no-progress", env=env)
    sizes = _pool_sizes(p)
    assert sizes["copy"] == 3 and sizes["indexes"] == 1
    store = StateStore.open_dir(p.workdir, readonly=True)
    try:
        kinds = {u.kind for u in store.units()}
        parts = max(u.part for u in store.units(UnitKind.COPY))
    finally:
        store.close()
    assert "vacuum" not in kinds and parts > 1
    assert_same_database(p.source_uri, p.target_uri)


def test_bad_environment_value(source: DbPair) -> None:
    r = run_pgferry(*_base(source), check=False, env={"PGCOPYDB_SKIP_VACUUM": "maybe"})
    assert r.returncode == 3 and "PGCOPYDB_SKIP_VACUUM" in r.stderr


@pytest.mark.parametrize("flag", ["--use-copy-binary", "--not-consistent"])
def test_copy_modes(source: DbPair, flag: str) -> None:
    p = source
    run_pgferry(*_base(p), flag, "--split-tables-larger-than", "1MB")
    assert_same_database(p.source_uri, p.target_uri)


def test_external_snapshot(source: DbPair) -> None:
    """--snapshot: the copy sees the data as of that snapshot, not later changes."""
    p = source
    with p.src_conn() as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
        with p.src_conn() as writer:
            writer.execute("INSERT INTO items VALUES (999999, 'after the snapshot', 1, '{}')")
        run_pgferry(*_base(p), "--snapshot", snapshot)
        holder.execute("ROLLBACK")
    with p.tgt_conn() as conn:
        assert conn.execute("SELECT count(*) FROM items WHERE id = 999999").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (60000,)


def test_drop_if_exists_replaces_target_objects(source: DbPair) -> None:
    p = source
    run_pgferry(*_base(p))
    with p.src_conn() as conn:
        conn.execute("UPDATE items SET name = 'changed' WHERE id < 10")
    with p.tgt_conn() as conn:
        conn.execute("CREATE TABLE target_only (x int)")
    r = run_pgferry(*_base(p), "--restart", check=False)
    assert r.returncode == 3 and "--drop-if-exists" in r.stderr
    run_pgferry(*_base(p), "--restart", "--drop-if-exists")
    with p.tgt_conn() as conn:
        assert conn.execute("SELECT count(*) FROM items WHERE name = 'changed'").fetchone() == (9,)
        conn.execute("DROP TABLE target_only")
    assert_same_database(p.source_uri, p.target_uri)


def test_resume_with_other_plan_options_is_refused(source: DbPair) -> None:
    p = source
    proc = start_pgferry(
        *_base(p), "--split-tables-larger-than", "1MB", "--table-jobs", "1", env=SLOW_COPY
    )
    wait_for(
        proc,
        p.workdir,
        lambda us: any(u["kind"] == "copy" and u["status"] == "running" for u in us),
    )
    kill_group(proc)
    r = run_pgferry(*_base(p), "--resume", "--split-tables-larger-than", "2MB", check=False)
    assert r.returncode == 3
    assert "split_tables_larger_than: was 1048576, now 2097152" in r.stderr
    run_pgferry(*_base(p), "--resume", "--split-tables-larger-than", "1MB")
    assert_same_database(p.source_uri, p.target_uri)


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_resumes(source: DbPair) -> None:
    p = source
    with p.src_conn() as conn:
        conn.execute(
            "INSERT INTO notes (body) SELECT repeat('z', 500) FROM generate_series(1, 400000)"
        )
    proc = start_pgferry(*_base(p), "--table-jobs", "1", env=SLOW_COPY)
    wait_for(proc, p.workdir, lambda us: any(u["kind"] == "copy" and u["bytes"] > 0 for u in us))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 6, err
    assert "resumable" in err
    report = json.loads(run_pgferry("list", "progress", "--json", "--dir", str(p.workdir)).stdout)
    assert report["status"] == "interrupted" and not report["running"]
    run_pgferry(*_base(p), "--resume")
    assert_same_database(p.source_uri, p.target_uri)
