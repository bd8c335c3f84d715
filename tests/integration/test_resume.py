"""Crash and resume: kill -9 at the worst moments, then --resume ends with an exact copy."""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING

import pytest

from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database, table_fingerprints
from tests.helpers.running import SLOW_COPY, clone_args, kill_group, start_pgferry, wait_for

if TYPE_CHECKING:
    from tests.conftest import DbPair

SETUP = """
CREATE SCHEMA app;
CREATE TABLE app.events (id bigint PRIMARY KEY, kind text NOT NULL, payload text);
INSERT INTO app.events
    SELECT g, 'kind-' || (g % 17), repeat(md5(g::text), 6) FROM generate_series(1, 300000) g;
CREATE INDEX events_kind ON app.events (kind);
CREATE TABLE app.nokey (a int, b text);
INSERT INTO app.nokey SELECT g % 1000, repeat('x', 200) FROM generate_series(1, 200000) g;
CREATE TABLE app.small (id serial PRIMARY KEY, note text);
INSERT INTO app.small (note) SELECT 'n' || g FROM generate_series(1, 1000) g;
CREATE TABLE app.ref (id int PRIMARY KEY, event_id bigint REFERENCES app.events);
INSERT INTO app.ref SELECT g, g FROM generate_series(1, 5000) g;
-- An index that takes seconds to build: a slow immutable function over a few rows.
CREATE FUNCTION app.slow(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
    $$ BEGIN PERFORM pg_sleep(0.4); RETURN i; END $$;
CREATE TABLE app.slowidx (id int);
INSERT INTO app.slowidx SELECT generate_series(1, 12);
CREATE INDEX slowidx_slow ON app.slowidx (app.slow(id));
"""


def _args(p: DbPair, *extra: str) -> list[str]:
    return clone_args(p, "--split-tables-larger-than", "12MB", *extra)


@pytest.fixture
def crash_source(dbpair: DbPair) -> DbPair:
    with dbpair.src_conn() as conn:
        conn.execute(SETUP)
    return dbpair


def _assert_no_duplicates(p: DbPair) -> None:
    with p.src_conn() as src, p.tgt_conn() as tgt:
        source, target = table_fingerprints(src), table_fingerprints(tgt)
    assert source == target


@pytest.mark.slow
def test_kill_during_copy_then_resume(crash_source: DbPair) -> None:
    p = crash_source
    proc = start_pgferry(*_args(p), env=SLOW_COPY)
    rows = wait_for(
        proc,
        p.workdir,
        lambda us: any(
            u["kind"] == "copy" and u["status"] == "running" and u["bytes"] > 0 for u in us
        ),
    )
    kill_group(proc)
    # The kill really happened mid-copy: some copy unit had not finished.
    assert any(u["kind"] == "copy" and u["status"] != "done" for u in rows)
    # A plain re-run is refused: DIR holds a run that wrote to the target.
    again = run_pgferry(*_args(p), check=False)
    assert again.returncode == 3
    assert "--resume" in again.stderr
    run_pgferry(*_args(p, "--resume"))
    _assert_no_duplicates(p)
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)


@pytest.mark.slow
def test_kill_during_index_build_then_resume(crash_source: DbPair) -> None:
    p = crash_source
    proc = start_pgferry(*_args(p))
    wait_for(
        proc,
        p.workdir,
        lambda us: any(
            u["kind"] == "index" and u["label"] == "app.slowidx_slow" and u["status"] == "running"
            for u in us
        ),
        timeout=180,
    )
    kill_group(proc)
    run_pgferry(*_args(p, "--resume"))
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)


@pytest.mark.slow
def test_kill_twice_then_resume(crash_source: DbPair) -> None:
    """Killed during the copy, then again while resuming: still exact."""
    p = crash_source
    proc = start_pgferry(*_args(p), env=SLOW_COPY)
    wait_for(proc, p.workdir, lambda us: any(u["kind"] == "copy" and u["bytes"] > 0 for u in us))
    kill_group(proc)
    proc = start_pgferry(*_args(p, "--resume"), env=SLOW_COPY)
    wait_for(
        proc,
        p.workdir,
        lambda us: any(
            u["kind"] == "copy" and u["status"] == "running" and u["bytes"] > 0 for u in us
        ),
    )
    kill_group(proc)
    run_pgferry(*_args(p, "--resume"))
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)


@pytest.mark.slow
def test_kill_at_random_moments_then_resume(crash_source: DbPair) -> None:
    """kill -9 at random moments (preflight, schema, copy, indexes, constraints, vacuum,
    post-data), each followed by --resume: the end state is an exact copy."""
    p = crash_source
    rng = random.Random(int(os.environ.get("PGFERRY_TEST_SEED", "20261124")))
    proc = start_pgferry(*_args(p))
    for _ in range(6):
        time.sleep(rng.uniform(0.05, 3.0))
        if proc.poll() is not None:
            break  # finished before this kill
        kill_group(proc)
        # --resume, as a user would, once pgferry had started in DIR (its log is there,
        # even when killed before it recorded anything: it then starts afresh); killed
        # before even that, DIR holds nothing and --resume would refuse.
        again = ("--resume",) if (p.workdir / "pgferry.log").exists() else ()
        proc = start_pgferry(*_args(p, *again))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    _assert_no_duplicates(p)
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)


@pytest.mark.slow
def test_resume_after_a_kill_before_anything_was_recorded(crash_source: DbPair) -> None:
    """Killed after it created DIR and its log, before its state store: --resume starts
    afresh (nothing was written to either server) instead of refusing."""
    p = crash_source
    p.workdir.mkdir(mode=0o700)
    (p.workdir / "pgferry.log").write_text("")
    result = run_pgferry(*_args(p, "--resume"))
    assert "stopped before recording anything; starting afresh" in result.stderr
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)


PARTITIONED = """
CREATE SCHEMA "Part s";
CREATE TABLE "Part s".t (id int, p int, v text, PRIMARY KEY (id, p)) PARTITION BY RANGE (p);
CREATE TABLE "Part s".t1 PARTITION OF "Part s".t FOR VALUES FROM (MINVALUE) TO (100);
CREATE TABLE "Part s".tm PARTITION OF "Part s".t FOR VALUES FROM (100) TO (200)
    PARTITION BY HASH (id);
CREATE TABLE "Part s".td PARTITION OF "Part s".t DEFAULT PARTITION BY RANGE (p);
CREATE TABLE "Part s".s1 PARTITION OF "Part s".tm FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE "Part s".s2 PARTITION OF "Part s".tm FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE "Part s".s3 PARTITION OF "Part s".td FOR VALUES FROM (200) TO (250);
CREATE TABLE "Part s".s4 PARTITION OF "Part s".td DEFAULT;
CREATE INDEX t_v ON "Part s".t (v);
CREATE UNIQUE INDEX t_v_id ON "Part s".t (v, id, p);
INSERT INTO "Part s".t SELECT g, g % 300, 'v' || g FROM generate_series(1, 3000) g;
CREATE TABLE "Part s".r (id int PRIMARY KEY, tid int, tp int,
    FOREIGN KEY (tid, tp) REFERENCES "Part s".t);
INSERT INTO "Part s".r SELECT g, g, g % 300 FROM generate_series(1, 500) g;
CREATE FUNCTION "Part s".noop() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER t_noop BEFORE UPDATE ON "Part s".t FOR EACH ROW EXECUTE FUNCTION "Part s".noop();
"""

INVALID_INDEXES = "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1"


@pytest.mark.parametrize("at", ["post-data-partitioned", "post-data-restored"])
def test_kill_during_post_data_then_resume_keeps_partitioned_indexes(
    dbpair: DbPair, at: str
) -> None:
    """Killed after post-data restored (part of) its entries, --resume must not drop a
    partitioned table's index: that drops the partition indexes the copy built, and the
    re-run could not attach them ("relation ... does not exist"; explorer seed 63)."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(PARTITIONED)
    crashed = start_pgferry(*clone_args(p), env={"PGFERRY_TEST_CRASH_AT": at})
    _, err = crashed.communicate(timeout=300)
    assert crashed.returncode == -9, f"the crash point was not reached: {err[-2000:]}"
    run_pgferry(*clone_args(p, "--resume"))
    with p.tgt_conn() as tgt:
        assert tgt.execute(INVALID_INDEXES).fetchall() == []
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)


def test_partitioned_indexes_come_out_valid_at_any_restore_jobs(dbpair: DbPair) -> None:
    """Multi-level partitioned indexes with many attachments, restored with parallel
    jobs: every index on the target is valid (explorer seeds 5 and 82 once found a
    parent's index left invalid)."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(PARTITIONED)
    run_pgferry(*clone_args(p, "--restore-jobs", "8"))
    with p.tgt_conn() as tgt:
        assert tgt.execute(INVALID_INDEXES).fetchall() == []
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)


@pytest.mark.slow
def test_kill_after_pre_data_before_its_record_then_resume(crash_source: DbPair) -> None:
    """Killed (or DIR full) after the single-transaction pre-data committed, before it
    was recorded: --resume sees the target holds it and goes on, instead of restoring it
    again ("relation ... already exists")."""
    p = crash_source
    crashed = start_pgferry(*_args(p), env={"PGFERRY_TEST_CRASH_AT": "pre-data-restored"})
    _, err = crashed.communicate(timeout=300)
    assert crashed.returncode == -9, f"the crash point was not reached: {err[-2000:]}"
    result = run_pgferry(*_args(p, "--resume"))
    assert "pre-data: restored by the previous attempt" in result.stderr
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)


@pytest.mark.slow
def test_target_crash_right_after_clone_loses_nothing(dbpair: DbPair) -> None:
    """The target crashes (immediate stop) the moment the clone ends. Every unit it
    recorded done (a table's rows, its key, an index, a sequence) must have been durable
    on the target: a resume skips it. The target's WAL writer is slowed to 10 s so that an
    asynchronous commit stays unflushed until the crash (it lost the tables' keys), and
    VACUUM is skipped (its clog truncation flushes the WAL)."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(
            "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE INDEX a_v ON a (v);"
            "INSERT INTO a SELECT g, md5(g::text) FROM generate_series(1, 2000) g;"
            'CREATE TABLE "B b" (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int);'
            'INSERT INTO "B b" (n) SELECT g FROM generate_series(1, 500) g;'
            "CREATE SEQUENCE s; SELECT setval('s', 4242);"
        )
    with p.target.connect("postgres") as conn:
        conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        run_pgferry(*clone_args(p, "--skip-vacuum"))
        p.target.stop("immediate")
        p.target.start()
    finally:
        with p.target.connect("postgres") as conn:
            conn.execute("ALTER SYSTEM RESET wal_writer_delay")
            conn.execute("SELECT pg_reload_conf()")
    _assert_no_duplicates(p)
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)
