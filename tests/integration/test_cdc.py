"""Live migration: clone --follow under concurrent writes, cutover, exact equality."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import psycopg
import pytest

from tests.helpers.cdc import Load, Pgbench, cutover, follow_args, lsn, names, sentinel, wait_until
from tests.helpers.cli import run_pgferry
from tests.helpers.compare import sequence_values, table_fingerprints
from tests.helpers.running import start_pgferry

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
    if plugin == "test_decoding":
        values += [("NaN", "NaN", "-Infinity"), ("Infinity", "Infinity", "NaN")]
    return values


def workload(plugin: str):
    numbers = special_numbers(plugin)

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
            elif op == 9 and rng.random() < 0.2:
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


@pytest.mark.parametrize("plugin", ["test_decoding", "wal2json"])
def test_clone_follow_under_writes(dbpair: DbPair, plugin: str) -> None:
    p = dbpair
    bench = setup(p)
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
        wait_until(
            lambda: (
                lsn(sentinel(p.workdir).get("replay_lsn"))
                > lsn(sentinel(p.workdir).get("startpos"))
            ),
            what="apply",
            proc=proc,
        )
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
