"""Parallel apply (--apply-jobs): the same target as one session gives, exactly once,
with kill -9 at random moments while a backlog of conflicting transactions drains."""

from __future__ import annotations

import contextlib
import os
import random
import time
from typing import TYPE_CHECKING

import psycopg
import pytest

from pgferry.pg.replication import lane_origins
from tests.helpers.cdc import (
    Load,
    cutover,
    follow_args,
    identify_every_table,
    lsn,
    names,
    pause_apply,
    sentinel,
    wait_prefetched,
    wait_until,
)
from tests.helpers.cli import run_pgferry
from tests.helpers.running import kill_group, start_pgferry
from tests.integration.test_cdc import assert_equal, drop_origin, setup, workload

if TYPE_CHECKING:
    import subprocess

    from tests.conftest import DbPair

# Hot rows: a few keys changed over and over, keys changed, rows deleted and inserted
# again with the same key, in transactions touching several of them.
HOT = """
CREATE TABLE hot (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, note text);
INSERT INTO hot SELECT g, 0, 'h' FROM generate_series(1, 20) g;
"""


def _hot_step(conn: psycopg.Connection, rng: random.Random) -> None:
    """One transaction of the hot-row workload (two of them run at once: a deadlock or
    a key taken meanwhile rolls it back, as it would an application's)."""
    with contextlib.suppress(psycopg.errors.DeadlockDetected, psycopg.errors.UniqueViolation):
        _hot_txn(conn, rng)


def _hot_txn(conn: psycopg.Connection, rng: random.Random) -> None:
    with conn.transaction():
        for _ in range(rng.randrange(1, 4)):
            a = rng.randrange(1, 21)
            op = rng.randrange(4)
            if op == 0:
                conn.execute("UPDATE hot SET n = n + 1 WHERE id = %s", (a,))
            elif op == 1:
                conn.execute("DELETE FROM hot WHERE id = %s", (a,))
                conn.execute(
                    "INSERT INTO hot VALUES (%s, 1, 'again') ON CONFLICT (id) DO UPDATE "
                    "SET n = hot.n + 1",
                    (a,),
                )
            elif op == 2:  # the key changes, then changes back
                conn.execute("UPDATE hot SET id = id + 1000 WHERE id = %s", (a,))
                conn.execute("UPDATE hot SET id = id - 1000, n = n + 1 WHERE id = %s", (a + 1000,))
            else:
                conn.execute("UPDATE hot SET note = note || 'x' WHERE id = %s", (a,))


def _lanes_used(p: DbPair) -> int:
    """How many lanes besides the first committed something."""
    _, origin = names(p)
    with p.tgt_conn() as conn:
        lanes = lane_origins(conn, origin)
    return sum(1 for name, pos in lanes.items() if name != origin and lsn(pos) > 1)


def _wait_applying(p: DbPair, proc: subprocess.Popen[str], end: int) -> None:
    """Until apply moves on (or has applied everything up to `end`)."""
    start = lsn(sentinel(p.workdir).get("replay_lsn"))

    def moved() -> bool:
        replay = lsn(sentinel(p.workdir).get("replay_lsn"))
        return replay > start or replay >= end

    wait_until(moved, what="apply", proc=proc)


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["pgoutput", "test_decoding"])
def test_parallel_apply_killed_at_random_moments(dbpair: DbPair, plugin: str) -> None:
    p = dbpair
    bench = setup(p)
    with p.src_conn() as conn:
        conn.execute(HOT)
    if plugin == "pgoutput":
        identify_every_table(p)
    seed = int(os.environ.get("PGFERRY_TEST_SEED", "0")) or random.randrange(1, 10**6)
    rng = random.Random(seed)
    print(f"replay: PGFERRY_TEST_SEED={seed}")
    loads = [
        Load(p.source_uri, workload(plugin), seed=seed),
        Load(p.source_uri, _hot_step, seed=seed + 1),
        Load(p.source_uri, _hot_step, seed=seed + 2),
    ]
    args = follow_args(p, plugin, "--apply-jobs", "4")
    proc = start_pgferry(*args)
    wait_until(lambda: bool(sentinel(p.workdir)), what="the sentinel", proc=proc)
    run_pgferry("stream", "sentinel", "set", "prefetch", "--dir", str(p.workdir))
    for load in loads:
        load.start()
    bench.start(clients=2)
    wait_prefetched(p, proc, 6_000_000)
    bench.stop()
    for load in loads:
        load.finish()
    with p.src_conn() as conn:
        end = lsn(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
    run_pgferry("stream", "sentinel", "set", "apply", "--dir", str(p.workdir))
    for _ in range(2):
        _wait_applying(p, proc, end)
        time.sleep(rng.uniform(0, 1.5))
        kill_group(proc)
        proc = start_pgferry(*args, "--resume")
    cutover(p, proc)
    assert_equal(p)
    assert _lanes_used(p) >= 1  # it did apply in parallel
    drop_origin(p)
    with p.tgt_conn() as conn:
        assert not lane_origins(conn, names(p)[1])  # cleanup dropped every lane's origin


@pytest.mark.slow
def test_later_transactions_never_commit_before_a_blocked_earlier_one(dbpair: DbPair) -> None:
    """A row lock held on the target blocks the first transaction of a backlog; the
    ones after it (other rows, so other sessions) run meanwhile, but none may commit
    before it: pgferry is killed then, and the target must hold none of them (the
    origins would say they are applied, and the blocked one would be skipped)."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(HOT + "CREATE TABLE other (id int PRIMARY KEY, v text);")
    with p.tgt_conn() as conn:
        conn.execute("SELECT 1")
    args = follow_args(p, "pgoutput", "--apply-jobs", "4")
    proc = start_pgferry(*args)
    wait_until(lambda: bool(sentinel(p.workdir)), what="the sentinel", proc=proc)
    pause_apply(p)
    with p.src_conn() as conn:
        conn.execute("UPDATE hot SET n = n + 1 WHERE id = 1")
        for i in range(300):
            conn.execute("INSERT INTO other VALUES (%s, 'x')", (i,))
        end = lsn(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
    wait_until(lambda: lsn(sentinel(p.workdir).get("flush_lsn")) >= end, what="the backlog")
    with p.tgt_conn() as conn:
        assert conn.execute("SELECT count(*) FROM other").fetchone()[0] == 0, "applied early"
    with p.tgt_conn(autocommit=False) as blocker:
        blocker.execute("SELECT * FROM hot WHERE id = 1 FOR UPDATE")
        run_pgferry("stream", "sentinel", "set", "apply", "--dir", str(p.workdir))
        with p.tgt_conn() as conn:
            wait_until(
                lambda: bool(
                    conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND application_name LIKE 'pgferry%%apply%%'"
                    ).fetchone()[0]
                ),
                what="apply to wait for the row lock",
                proc=proc,
            )
            time.sleep(1)  # the other sessions run what they can
            kill_group(proc)
            (committed,) = conn.execute("SELECT count(*) FROM other").fetchone()
        blocker.rollback()
    assert committed == 0
    proc = start_pgferry(*args, "--resume")
    cutover(p, proc)
    assert_equal(p)
    drop_origin(p)


@pytest.mark.slow
def test_more_apply_jobs_than_the_target_has_origins_for(dbpair: DbPair) -> None:
    """Each lane holds a replication origin while it applies: past the target's limit
    (max_replication_slots, 20 here) apply stops with one line saying what to raise."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(HOT)
    proc = start_pgferry(*follow_args(p, "pgoutput", "--apply-jobs", "24"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1, err
    assert "--apply-jobs 24 needs 24 replication origins" in errors[0]
    assert "max_replication_slots" in errors[0]
    assert "Traceback" not in err
    drop_origin(p)
    with p.tgt_conn() as conn:
        assert not lane_origins(conn, names(p)[1])
