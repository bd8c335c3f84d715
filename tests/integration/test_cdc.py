"""Live migration: clone --follow under concurrent writes, cutover, exact equality."""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING

import psycopg
import pytest

from tests.helpers.cdc import (
    Load,
    Pgbench,
    cutover,
    follow_args,
    identify_every_table,
    lsn,
    names,
    sentinel,
    wait_applied,
    wait_prefetched,
    wait_until,
)
from tests.helpers.cli import run_pgferry
from tests.helpers.compare import sequence_values, table_fingerprints
from tests.helpers.running import kill_group, start_pgferry, wait_for

if TYPE_CHECKING:
    from tests.conftest import DbPair

HOSTILE_SCHEMA = 'Hostile "Schema"; --'
HOSTILE_TABLE = "Tàble 表 " + "x" * 40  # 63 bytes with the multibyte characters

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE t_types (
    id bigserial PRIMARY KEY,
    n numeric, f8 float8, f4 float4, b bytea, ia int[], ta text[], j json, jb jsonb,
    ts timestamptz, iv interval, e mood, d posint, u uuid, ip inet, r int4range,
    tr tstzrange, bits varbit, big text,
    g bigint GENERATED ALWAYS AS (id * 2) STORED,
    idn int GENERATED ALWAYS AS IDENTITY
);
CREATE TABLE t_full (a int, j json, jb jsonb, p point, note text);
ALTER TABLE t_full REPLICA IDENTITY FULL;
CREATE TABLE t_uidx (id int NOT NULL, v text);
CREATE UNIQUE INDEX t_uidx_id ON t_uidx (id);
ALTER TABLE t_uidx REPLICA IDENTITY USING INDEX t_uidx_id;
CREATE TABLE t_keys (id int PRIMARY KEY, v text);
CREATE TABLE t_small (id int PRIMARY KEY, v text);
CREATE SEQUENCE standalone_seq;
INSERT INTO t_types (n, f8, big) SELECT g, g / 3.0, repeat(md5(g::text), 400)
  FROM generate_series(1, 2000) g;
INSERT INTO t_full SELECT g % 50, '{"k": 1}', '{"k": [1, 2]}', point(g, g), 'n'
  FROM generate_series(1, 300) g;
INSERT INTO t_uidx SELECT g, 'v' || g FROM generate_series(1, 500) g;
INSERT INTO t_keys SELECT g, 'k' || g FROM generate_series(1, 500) g;
INSERT INTO t_small SELECT g, 's' FROM generate_series(1, 50) g;
"""

HOSTILE = psycopg.sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)
HOSTILE_DDL = psycopg.sql.SQL(
    'CREATE SCHEMA {}; CREATE TABLE {} ("Col ""x""" int PRIMARY KEY, "sp ace" text, "ÜML" text)'
).format(psycopg.sql.Identifier(HOSTILE_SCHEMA), HOSTILE)


def special_numbers(plugin: str) -> list[tuple[object, ...]]:
    """(numeric, float8, float4) values; wal2json 2.5 turns NaN/Infinity into NULL."""
    values = [
        ("123456789012345678901234567890.123456789012", "1.0000000000000002", "3.4e38"),
        ("-0.000000000000000000000000000001", "-1e-300", "1e-45"),
    ]
    if plugin != "wal2json":
        values += [("NaN", "NaN", "-Infinity"), ("Infinity", "Infinity", "NaN")]
    return values


def workload(plugin: str):
    numbers = special_numbers(plugin)
    # TRUNCATE every 2 s at most: one landing during a table's copy makes pgferry copy
    # that table again under a new snapshot, which a truncation every few milliseconds
    # would defeat each time (it stops after 5 tries, saying so).
    last_truncate = [0.0]

    def step(conn: psycopg.Connection, rng: random.Random) -> None:
        op = rng.randrange(12)
        with conn.transaction():
            if op == 0:
                n, f8, f4 = rng.choice(numbers)
                conn.execute(
                    "INSERT INTO t_types (n, f8, f4, b, ia, ta, j, jb, ts, iv, e, d, u, ip, r,"
                    " tr, bits, big) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(), %s, %s, %s,"
                    " gen_random_uuid(), %s, %s, tstzrange(now(), now() + interval '1 day'),"
                    " B'1011', %s)",
                    (
                        n,
                        f8,
                        f4,
                        bytes(rng.randrange(256) for _ in range(20)),
                        [1, None, 3],
                        ["a,b", 'q"uote', None],
                        '{"a": [1, 2.50]}',
                        psycopg.types.json.Jsonb({"x": "y'z"}),
                        "1 year 2 mons 3 days 04:05:06.7",
                        rng.choice(["sad", "ok", "happy"]),
                        rng.randrange(1, 1000),
                        "192.168.1.0/24",
                        "[1,10)",
                        "tab\there\nnewline\\backslash" * 3,
                    ),
                )
            elif op == 1:  # TOASTed column untouched: must not become NULL
                conn.execute(
                    "UPDATE t_types SET n = n + 1 WHERE id = %s", (rng.randrange(1, 2000),)
                )
            elif op == 2:
                conn.execute(
                    "DELETE FROM t_types WHERE id = (SELECT max(id) FROM t_types WHERE id > 2000)"
                )
            elif op == 3:  # duplicate rows under REPLICA IDENTITY FULL: one row at a time
                a = rng.randrange(50)
                conn.execute(
                    "UPDATE t_full SET note = note || 'u', p = point(%s, 0) "
                    "WHERE ctid = (SELECT ctid FROM t_full WHERE a = %s LIMIT 1)",
                    (a, a),
                )
            elif op == 4:
                conn.execute(
                    "DELETE FROM t_full WHERE ctid = "
                    "(SELECT ctid FROM t_full WHERE a = %s LIMIT 1)",
                    (rng.randrange(50),),
                )
                conn.execute(
                    "INSERT INTO t_full VALUES (%s, '[1, 2]', '{\"z\": null}', "
                    "point(1.5, 2.5), 'dup')",
                    (rng.randrange(50),),
                )
            elif op == 5:
                conn.execute(
                    "UPDATE t_uidx SET v = v || '.' WHERE id = %s", (rng.randrange(1, 500),)
                )
            elif op == 6:  # key change
                k = rng.randrange(1, 500)
                conn.execute("UPDATE t_keys SET id = id + 100000 WHERE id = %s", (k,))
                conn.execute("UPDATE t_keys SET id = %s WHERE id = %s", (k, k + 100000))
            elif op == 7:
                k = rng.randrange(1, 10**6)
                conn.execute(
                    psycopg.sql.SQL(
                        'INSERT INTO {} VALUES (%s, %s, %s) ON CONFLICT ("Col ""x""")'
                        ' DO UPDATE SET "sp ace" = excluded."sp ace"'
                    ).format(HOSTILE),
                    (k, 'it\'s "quoted"', "ä ö ü 表"),
                )
            elif op == 8:
                conn.execute("SELECT pg_logical_emit_message(true, 'other-tool', 'heartbeat')")
                conn.execute("SELECT nextval('standalone_seq')")
            elif op == 9 and time.monotonic() - last_truncate[0] > 2.0:
                last_truncate[0] = time.monotonic()
                conn.execute("TRUNCATE t_small")
                conn.execute("INSERT INTO t_small SELECT g, 'again' FROM generate_series(1, 20) g")
            else:  # several tables in one transaction
                conn.execute(
                    "UPDATE t_keys SET v = v || 'm' WHERE id = %s", (rng.randrange(1, 500),)
                )
                conn.execute(
                    "INSERT INTO t_uidx VALUES (%s, 'new')", (rng.randrange(10**6, 10**9),)
                )

    return step


def assert_equal(p: DbPair) -> None:
    with p.src_conn() as src, p.tgt_conn() as tgt:
        source, target = table_fingerprints(src), table_fingerprints(tgt)
        assert source == target
        src_seq, tgt_seq = sequence_values(src), sequence_values(tgt)
    for name, (value, called) in src_seq.items():
        t_value, t_called = tgt_seq[name]
        assert (t_value, t_called) >= (value, called) or t_value > value, name


def setup(p: DbPair) -> Pgbench:
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
        conn.execute(HOSTILE_DDL)
    bench = Pgbench(p.source_uri)
    bench.init(scale=2)
    return bench


def drop_origin(p: DbPair) -> None:
    run_pgferry(
        "cleanup", "--source", p.source_uri, "--target", p.target_uri, "--dir", str(p.workdir)
    )


@pytest.mark.slow
def test_clone_follow_under_writes(dbpair: DbPair, plugin: str) -> None:
    p = dbpair
    bench = setup(p)
    if plugin == "pgoutput":
        identify_every_table(p)
    load = Load(p.source_uri, workload(plugin), seed=7)
    load.start()
    bench.start(clients=2)
    proc = start_pgferry(*follow_args(p, plugin))
    try:
        wait_until(
            lambda: bool(sentinel(p.workdir).get("apply")),
            what="the copy to finish",
            proc=proc,
            timeout=180,
        )
        # Keep writing while apply runs, then stop and let it catch up.
        wait_applied(p, proc)
    finally:
        bench.stop()
        writes = load.finish()
    assert writes > 50
    cutover(p, proc)
    assert_equal(p)
    # The slot's position followed what was safely on disk.
    slot, _ = names(p)
    with p.src_conn() as conn:
        confirmed = conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    assert confirmed is not None and lsn(confirmed[0]) >= lsn(sentinel(p.workdir)["endpos"])
    drop_origin(p)


# Each plugin, and both one transaction and groups of 64 per target transaction, without
# running every pair (these tests take ~20 s each).
PLUGIN_GROUPS = [("pgoutput", "1"), ("pgoutput", "64"), ("test_decoding", "64"), ("wal2json", "1")]


def _big_source(p: DbPair) -> Pgbench:
    bench = setup(p)
    with p.src_conn() as conn:
        conn.execute(
            "CREATE TABLE t_big (id bigint PRIMARY KEY, body text);"
            "INSERT INTO t_big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 300000) g"
        )
    return bench


def _big_step(conn: psycopg.Connection, rng: random.Random) -> None:
    with conn.transaction():
        k = rng.randrange(1, 300000)
        conn.execute("UPDATE t_big SET body = 'changed ' || %s WHERE id = %s", (rng.random(), k))
        conn.execute(
            "INSERT INTO t_big VALUES (%s, 'new') ON CONFLICT (id) DO UPDATE "
            "SET body = 'reinserted'",
            (rng.randrange(300001, 10**9),),
        )
        conn.execute("DELETE FROM t_big WHERE id = %s", (rng.randrange(1, 300000),))


@pytest.mark.slow
def test_kill_during_copy_with_writes_then_resume(dbpair: DbPair, plugin: str) -> None:
    """The redone copy runs under a new snapshot; apply skips what it already holds."""
    p = dbpair
    bench = _big_source(p)
    if plugin == "pgoutput":
        identify_every_table(p)
    loads = [Load(p.source_uri, _big_step, seed=s) for s in (1, 2)]
    loads.append(Load(p.source_uri, workload(plugin), seed=3))
    for load in loads:
        load.start()
    bench.start(clients=1)
    args = follow_args(p, plugin, "--split-tables-larger-than", "8MB")
    proc = start_pgferry(*args)
    wait_for(
        proc,
        p.workdir,
        lambda us: any(u["kind"] == "copy" and u["status"] == "running" for u in us),
    )
    kill_group(proc)
    proc = start_pgferry(*args, "--resume")
    try:
        wait_applied(p, proc, timeout=240)
    finally:
        bench.stop()
        for load in loads:
            load.finish()
    cutover(p, proc)
    assert_equal(p)
    drop_origin(p)


@pytest.mark.slow
@pytest.mark.parametrize(("plugin", "group"), PLUGIN_GROUPS)
def test_kill_during_prefetch_and_during_apply(dbpair: DbPair, plugin: str, group: str) -> None:
    """With --group-txns 64 the kill lands inside groups of transactions."""
    p = dbpair
    bench = setup(p)
    if plugin == "pgoutput":
        identify_every_table(p)
    load = Load(p.source_uri, workload(plugin), seed=11)
    args = follow_args(p, plugin, "--group-txns", group)
    proc = start_pgferry(*args)
    wait_until(lambda: bool(sentinel(p.workdir)), what="the sentinel", proc=proc)
    run_pgferry("stream", "sentinel", "set", "prefetch", "--dir", str(p.workdir))
    load.start()
    bench.start(clients=2)
    # Prefetch: changes pile up on disk while apply is held.
    wait_prefetched(p, proc, 4_000_000)
    kill_group(proc)
    proc = start_pgferry(*args, "--resume")
    wait_prefetched(p, proc, 8_000_000, "more prefetch")
    bench.stop()
    load.finish()
    start = lsn(sentinel(p.workdir).get("replay_lsn"))  # while held: a later read may
    run_pgferry("stream", "sentinel", "set", "apply", "--dir", str(p.workdir))  # be too late
    wait_until(lambda: lsn(sentinel(p.workdir).get("replay_lsn")) > start, what="apply", proc=proc)
    kill_group(proc)  # in the middle of applying the backlog
    proc = start_pgferry(*args, "--resume")
    cutover(p, proc)
    assert_equal(p)
    drop_origin(p)


@pytest.mark.slow
@pytest.mark.parametrize(("plugin", "group"), PLUGIN_GROUPS)
def test_kill_between_commit_and_acknowledgement(dbpair: DbPair, plugin: str, group: str) -> None:
    """Crash right after transactions commit on the target, before pgferry records them:
    the replication origin alone decides, nothing is applied twice."""
    p = dbpair
    bench = setup(p)
    if plugin == "pgoutput":
        identify_every_table(p)
    args = follow_args(p, plugin, "--group-txns", group)
    proc = start_pgferry(*args, env={"PGFERRY_TEST_CRASH_AFTER_COMMITS": "300"})
    # The slot first: a bench started before it could end before it on a busy machine,
    # leaving nothing to apply.
    wait_until(lambda: bool(sentinel(p.workdir)), what="the slot", proc=proc)
    bench.start(clients=2, seconds=4)
    bench.proc.communicate(timeout=60)  # type: ignore[union-attr]
    proc.communicate(timeout=180)
    assert proc.returncode == -9, "the fault injection did not fire"
    recorded = lsn(sentinel(p.workdir).get("replay_lsn"))
    _, origin = names(p)
    with p.tgt_conn() as conn:
        row = conn.execute(
            "SELECT pg_replication_origin_progress(%s, false)::text", (origin,)
        ).fetchone()
    assert row is not None and lsn(row[0]) > recorded  # committed, not recorded
    proc = start_pgferry(*args, "--resume")
    cutover(p, proc)
    assert_equal(p)
    drop_origin(p)


@pytest.mark.slow
def test_kill_at_random_moments_then_resume(dbpair: DbPair, plugin: str) -> None:
    """kill -9 at random moments of clone --follow under writes (from the first second to
    the cutover itself), each followed by --resume: the end state is exact."""
    p = dbpair
    bench = setup(p)
    if plugin == "pgoutput":
        identify_every_table(p)
    load = Load(p.source_uri, workload(plugin), seed=5, pause=0.005)
    load.start()
    bench.start(clients=1, rate=300)
    rng = random.Random(int(os.environ.get("PGFERRY_TEST_SEED", "20261124")))
    args = follow_args(p, plugin, "--group-txns", "16")
    proc = start_pgferry(*args)
    try:
        for _ in range(6):
            time.sleep(rng.uniform(0.05, 4.0))
            kill_group(proc)
            proc = start_pgferry(*args, "--resume")
        wait_applied(p, proc, timeout=240)
    finally:
        bench.stop()
        load.finish()
    # Killed during the cutover too: once the end position is set, and again later.
    run_pgferry("stop-cdc", "--yes", "--dir", str(p.workdir), "--source", p.source_uri)
    for delay in (0.0, rng.uniform(0.2, 1.5)):
        time.sleep(delay)
        kill_group(proc)
        proc = start_pgferry(*args, "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "cutover point reached" in err
    assert_equal(p)
    drop_origin(p)


@pytest.mark.slow
def test_target_lost_during_apply_reconnects(dbpair: DbPair, plugin: str) -> None:
    """The target's apply session is terminated, then the target crashes (immediate
    stop: its last asynchronous commits are lost) and stays down a few seconds while
    apply drains a backlog in groups: pgferry reconnects by itself and goes on from the
    origin, exactly once."""
    p = dbpair
    bench = setup(p)
    if plugin == "pgoutput":
        identify_every_table(p)
    args = follow_args(p, plugin, "--group-txns", "32")
    proc = start_pgferry(*args)
    wait_until(lambda: bool(sentinel(p.workdir)), what="the sentinel", proc=proc)
    run_pgferry("stream", "sentinel", "set", "prefetch", "--dir", str(p.workdir))
    bench.start(clients=2, seconds=8)
    bench.proc.communicate(timeout=60)  # type: ignore[union-attr]
    with p.src_conn() as conn:
        end = lsn(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
    wait_until(lambda: lsn(sentinel(p.workdir).get("flush_lsn")) >= end, what="the backlog")
    start = lsn(sentinel(p.workdir).get("replay_lsn"))  # while held: a later read may
    run_pgferry("stream", "sentinel", "set", "apply", "--dir", str(p.workdir))  # be too late
    wait_until(lambda: lsn(sentinel(p.workdir).get("replay_lsn")) > start, what="apply", proc=proc)
    with p.tgt_conn() as conn:
        (ended,) = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE 'pgferry%%apply'"
        ).fetchone()
    assert ended == 1
    # One more change: should the backlog be drained already, apply finds its session
    # gone when it next writes.
    with p.src_conn() as conn:
        conn.execute("UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1")
    wait_until(
        lambda: "reconnecting" in (p.workdir / "pgferry.log").read_text(),
        what="the reconnection",
        proc=proc,
    )
    p.target.stop("immediate")
    # Down for a while: apply's reconnection finds the target refusing connections (or
    # still in crash recovery) and keeps trying; it used to give up ("cannot connect").
    time.sleep(3)
    p.target.start()
    err = cutover(p, proc)
    assert "apply interrupted" in err
    assert_equal(p)
    drop_origin(p)


def slot_active(p: DbPair, slot: str) -> bool:
    with p.src_conn() as conn:
        row = conn.execute(
            "SELECT active_pid IS NOT NULL FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.slow
def test_walsender_terminated_during_apply(dbpair: DbPair, plugin: str) -> None:
    """pgferry's walsender is terminated on the source three times while apply follows
    a live pgbench (pgbench_history has no key: a transaction applied twice leaves a
    row too many). The receiver restarts after the last transaction it holds, durable
    or not, so none is spooled, nor applied, twice."""
    p = dbpair
    bench = setup(p)
    if plugin == "pgoutput":
        identify_every_table(p)  # pgbench_history gets FULL: a duplicate still shows
    rng = random.Random(int(os.environ.get("PGFERRY_TEST_SEED", "0")) or None)
    bench.start(clients=2, rate=100)
    proc = start_pgferry(*follow_args(p, plugin))
    try:
        wait_until(lambda: bool(sentinel(p.workdir).get("apply")), what="apply", proc=proc)
        wait_applied(p, proc)
        slot, _ = names(p)
        for kill in range(1, 4):
            wait_until(lambda: slot_active(p, slot), what="the walsender", proc=proc)
            time.sleep(rng.uniform(0.3, 2.5))
            with p.src_conn() as conn:
                (ended,) = conn.execute(
                    "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots"
                    " WHERE slot_name = %s AND active_pid IS NOT NULL",
                    (slot,),
                ).fetchone()
            assert ended == 1
            wait_until(
                lambda kill=kill: (
                    (p.workdir / "pgferry.log").read_text().count("replication connection lost")
                    >= kill
                ),
                what="the reconnection",
                proc=proc,
            )
        time.sleep(1.5)
    finally:
        bench.stop()
    err = cutover(p, proc)
    assert err.count("replication connection lost") >= 3
    assert_equal(p)
    drop_origin(p)


def test_resume_with_foreign_keys_across_snapshots(dbpair: DbPair, plugin: str) -> None:
    """Parent copied before the crash, child after it: the child holds rows whose parent
    arrives through the change stream. Foreign keys wait for the catch-up to validate."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(
            "CREATE TABLE parent (id bigint PRIMARY KEY, pad text);"
            "INSERT INTO parent SELECT g, repeat('p', 300) FROM generate_series(1, 120000) g;"
            "CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint NOT NULL "
            "REFERENCES parent, pad text);"
            "INSERT INTO child SELECT g, g, repeat('c', 150) FROM generate_series(1, 120000) g;"
            "CREATE SEQUENCE ids START 1000000;"
        )

    def family(conn: psycopg.Connection, rng: random.Random) -> None:
        with conn.transaction():
            row = conn.execute("SELECT nextval('ids')").fetchone()
            conn.execute("INSERT INTO parent VALUES (%s, 'new')", row)
            conn.execute("INSERT INTO child VALUES (%s, %s, 'new')", (row[0], row[0]))

    load = Load(p.source_uri, family, pause=0.001)
    load.start()
    args = follow_args(p, plugin, "--table-jobs", "1")
    proc = start_pgferry(*args)
    wait_for(
        proc,
        p.workdir,
        lambda us: any(
            u["kind"] == "copy" and u["label"] == "public.child" and u["status"] == "running"
            for u in us
        ),
    )
    kill_group(proc)
    proc = start_pgferry(*args, "--resume")
    try:
        wait_until(
            lambda: bool(sentinel(p.workdir).get("apply")), what="apply", proc=proc, timeout=240
        )
    finally:
        load.finish()
    err = cutover(p, proc)
    assert "added NOT VALID" in err and "validated" in err
    assert_equal(p)
    with p.tgt_conn() as conn:
        assert conn.execute(
            "SELECT convalidated FROM pg_constraint WHERE contype = 'f'"
        ).fetchall() == [(True,)]
    drop_origin(p)
