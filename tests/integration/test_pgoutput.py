"""The pgoutput decoder on the bytes a real server sends (read through the SQL interface
of a pgoutput slot): every message type, hostile names and values, TOAST, identities,
and streamed transactions."""

from __future__ import annotations

import json
import secrets
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgferry.cdc.decode import Change
from pgferry.cdc.pgoutput import PgoutputDecoder, StreamEvent
from tests.conftest import DbPair
from tests.helpers.cdc import cutover, follow_args, names, sentinel, wait_until
from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database
from tests.helpers.running import start_pgferry

SCHEMA = """
CREATE SCHEMA "Sch ë";
CREATE TABLE "Sch ë"."Tab""le" (id int PRIMARY KEY, "näme" text, n numeric, big text);
ALTER TABLE "Sch ë"."Tab""le" ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE full_id (a int, b text);
ALTER TABLE full_id REPLICA IDENTITY FULL;
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent);
CREATE TABLE seq_t (id serial PRIMARY KEY);
"""


def _changes(
    conn: psycopg.Connection[Any], slot: str, options: dict[str, str]
) -> tuple[list[Change], list[StreamEvent], PgoutputDecoder]:
    args = [x for kv in options.items() for x in kv]
    # The SQL interface decodes the WAL flushed so far, and the test clusters commit
    # asynchronously: a synchronous commit flushes everything written before it.
    conn.execute("SET synchronous_commit = on")
    conn.execute("SELECT pg_catalog.txid_current()")
    rows = conn.execute(
        "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL"
        + ", %s" * len(args)
        + ")",
        [slot, *args],
    ).fetchall()
    decoder = PgoutputDecoder()
    changes: list[Change] = []
    events: list[StreamEvent] = []
    for _lsn, data in rows:
        out = decoder.decode(bytes(data))
        if isinstance(out, Change):
            changes.append(out)
        elif isinstance(out, StreamEvent):
            events.append(out)
    return changes, events, decoder


@pytest.fixture
def slot(dbpair: DbPair) -> Any:
    name = "pgo_" + secrets.token_hex(4)
    with dbpair.src_conn() as conn:
        conn.execute(SCHEMA)
        conn.execute(f"CREATE PUBLICATION {name} FOR ALL TABLES")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
    try:
        yield name
    finally:
        with dbpair.src_conn() as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
            conn.execute(f"DROP PUBLICATION {name}")


def test_every_row_message_on_real_bytes(dbpair: DbPair, slot: str) -> None:
    big = "x" * 20000  # stored out of line (EXTERNAL): an UPDATE not touching it omits it
    with dbpair.src_conn() as conn:
        conn.execute(
            """INSERT INTO "Sch ë"."Tab""le" VALUES (1, 'it''s "q" \\ ü', 1e-40, %s),
               (2, NULL, 'NaN', NULL)""",
            (big,),
        )
        conn.execute("""UPDATE "Sch ë"."Tab""le" SET "näme" = 'new' WHERE id = 1""")
        conn.execute("""UPDATE "Sch ë"."Tab""le" SET id = 3 WHERE id = 2""")
        conn.execute("""DELETE FROM "Sch ë"."Tab""le" WHERE id = 3""")
        conn.execute("INSERT INTO full_id VALUES (1, NULL), (1, NULL)")
        conn.execute("UPDATE full_id SET b = 'b' WHERE ctid = (SELECT min(ctid) FROM full_id)")
        conn.execute("DELETE FROM full_id WHERE b = 'b'")
        conn.execute("INSERT INTO parent VALUES (1)")
        conn.execute("TRUNCATE parent, child RESTART IDENTITY CASCADE")
        changes, _, decoder = _changes(
            conn, slot, {"proto_version": "1", "publication_names": slot}
        )
    table = ("Sch ë", 'Tab"le')
    got = [(c.kind, (c.schema, c.table)) for c in changes]
    assert got == [
        ("I", table),
        ("I", table),
        ("U", table),
        ("U", table),
        ("D", table),
        ("I", ("public", "full_id")),
        ("I", ("public", "full_id")),
        ("U", ("public", "full_id")),
        ("D", ("public", "full_id")),
        ("I", ("public", "parent")),
        ("T", ("public", "parent")),
    ]
    ins, ins2, upd, upd_key, dele = changes[:5]
    assert ins.columns == ["id", "näme", "n", "big"]
    tiny = b"0." + b"0" * 39 + b"1"  # numeric keeps its text form, never a float
    assert ins.values == [b"1", 'it\'s "q" \\ ü'.encode(), tiny, big.encode()]
    assert ins2.values == [b"2", None, b"NaN", None]
    # The unchanged out-of-line value is not sent: never given a value.
    assert upd.unchanged == {"big"} and "big" not in upd.columns
    assert upd.values[upd.columns.index("näme")] == b"new"
    assert upd.key_columns == []  # the key did not change: no old key
    assert upd_key.key_columns == ["id"] and upd_key.key_values == [b"2"]
    assert upd_key.values[0] == b"3"
    assert dele.key_columns == ["id"] and dele.key_values == [b"3"]
    f_upd, f_del = changes[7], changes[8]
    assert f_upd.key_columns == ["a", "b"] and f_upd.key_values == [b"1", None]
    assert f_del.key_columns == ["a", "b"] and f_del.key_values == [b"1", b"b"]
    trunc = changes[10]
    assert sorted(trunc.relations) == [("public", "child"), ("public", "parent")]
    assert trunc.cascade and trunc.restart_seqs
    rel = next(r for r in decoder.relations.values() if r.name == 'Tab"le')
    assert rel.schema == "Sch ë" and rel.identity == "d" and rel.key == (True, False, False, False)


def test_a_streamed_transaction_arrives_in_segments_then_commits_or_aborts(
    dbpair: DbPair, slot: str
) -> None:
    options = {"proto_version": "2", "publication_names": slot, "streaming": "on"}
    with dbpair.src_conn() as conn:
        # Decoding streams a transaction past logical_decoding_work_mem (64kB at least),
        # but only one it meets after its consistent point on that pass: a pass starting
        # at a restart position before it (other transactions were running on the
        # cluster) decodes it whole at its commit. Then the pass's changes are consumed,
        # which moves the slot on, and the transactions are written again.
        conn.execute("SET logical_decoding_work_mem = '64kB'")
        for attempt in range(5):
            first = attempt * 10_000 + 1
            conn.execute(
                "INSERT INTO full_id SELECT g, repeat('v', 100)"
                " FROM generate_series(%s::int, %s::int) g",
                (first, first + 4999),
            )
            conn.execute("BEGIN")
            conn.execute(
                "INSERT INTO full_id SELECT g, 'gone' FROM generate_series(%s::int, %s::int) g",
                (first, first + 4999),
            )
            conn.execute("ROLLBACK")
            _, events, _ = _changes(conn, slot, options)
            kinds = "".join(e.kind for e in events)
            # Both streamed: the committed one (its stream commit) and the other. A pass
            # can stream the rolled back one and decode the committed one whole.
            if kinds.count("c") == 1 and kinds.count("S") >= 2:
                break
            args = [x for kv in options.items() for x in kv]
            conn.execute(
                "SELECT count(*) FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL"
                + ", %s" * len(args)
                + ")",
                [slot, *args],
            )
        by_xid = _streamed_rows(conn, slot)
    kinds = "".join(e.kind for e in events)
    assert kinds.count("S") >= 2 and kinds.count("S") == kinds.count("E"), kinds
    committed = [e for e in events if e.kind == "c"]
    assert len(committed) == 1, kinds
    commit = committed[0]
    assert commit.commit_lsn > 0 and commit.end_lsn >= commit.commit_lsn
    # Each segment's rows carry their transaction: the committed one has all its rows.
    assert by_xid[commit.xid] == [b"v" * 100] * 5000
    others = {xid: rows for xid, rows in by_xid.items() if xid != commit.xid}
    assert others and all(set(rows) == {b"gone"} for rows in others.values())
    # An abort, when it is decoded, names the other transaction (never the committed one).
    assert all(e.xid in others and e.subxid == e.xid for e in events if e.kind == "A")


def _streamed_rows(conn: psycopg.Connection[Any], slot: str) -> dict[int, list[bytes | None]]:
    """The b values of the streamed inserts, by the transaction their segment names."""
    rows = conn.execute(
        "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL,"
        " 'proto_version', '2', 'publication_names', %s, 'streaming', 'on')",
        (slot, slot),
    ).fetchall()
    decoder = PgoutputDecoder()
    out: dict[int, list[bytes | None]] = {}
    for (data,) in rows:
        change = decoder.decode(bytes(data))
        if isinstance(change, Change) and decoder.in_stream:
            out.setdefault(decoder.stream_xid, []).append(change.values[1])
    return out


# -- the plugin end to end: what pgferry creates and refuses --------------------------------


def _published(p: DbPair, name: str) -> list[tuple[str, str]] | None:
    with p.src_conn() as conn:
        if conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone():
            rows = conn.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s"
                " ORDER BY 1, 2",
                (name,),
            ).fetchall()
            return [(r[0], r[1]) for r in rows]
    return None


def test_a_table_without_identity_is_refused_before_anything_is_created(dbpair: DbPair) -> None:
    """Publishing it would make the source's own UPDATEs and DELETEs on it fail."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE loose (v int)")
    slot, _ = names(p)
    out = run_pgferry(*follow_args(p, "pgoutput"), check=False)
    assert out.returncode == 3, out.stderr  # bad input: nothing was created
    assert "public.loose (no primary key)" in out.stderr
    assert "fix-replica-identity" in out.stderr and "Traceback" not in out.stderr
    assert _published(p, slot) is None
    with p.src_conn() as conn:
        assert not conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        conn.execute("UPDATE loose SET v = 1")  # the source's own writes still work
    with p.tgt_conn() as conn:
        assert not conn.execute("SELECT 1 FROM pg_class WHERE relname = 'keyed'").fetchone()


def test_clone_follow_publishes_the_tables_in_scope_and_cleanup_drops_it(
    dbpair: DbPair,
) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(
            'CREATE SCHEMA "Ünï"; CREATE TABLE "Ünï"."T q" (id int PRIMARY KEY, v text);'
            "CREATE TABLE skipped (id int PRIMARY KEY);"
            "CREATE TABLE parted (id int PRIMARY KEY) PARTITION BY RANGE (id);"
            "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);"
            "CREATE TABLE loose_outside (v int);"  # out of scope: never published
            """INSERT INTO "Ünï"."T q" VALUES (1, 'a'); INSERT INTO parted VALUES (5)"""
        )
    slot, _ = names(p)
    filters = p.workdir.parent / "filters.ini"
    filters.write_text("[exclude-table]\npublic.skipped\npublic.loose_outside\n")
    proc = start_pgferry(*follow_args(p, "pgoutput", "--filters", str(filters)))
    try:
        wait_until(
            lambda: bool(sentinel(p.workdir).get("apply")),
            what="the copy to finish",
            proc=proc,
            timeout=120,
        )
        assert _published(p, slot) == [("public", "parted_1"), ("Ünï", "T q")]
        with p.src_conn() as conn:
            conn.execute(
                """UPDATE "Ünï"."T q" SET v = 'b' WHERE id = 1; INSERT INTO parted VALUES (6);
                   INSERT INTO skipped VALUES (1); UPDATE loose_outside SET v = 2"""
            )
        cutover(p, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    with p.tgt_conn() as conn:
        assert conn.execute('SELECT v FROM "Ünï"."T q"').fetchall() == [("b",)]
        assert conn.execute("SELECT id FROM parted ORDER BY id").fetchall() == [(5,), (6,)]
    run_pgferry(
        "cleanup", "--source", p.source_uri, "--target", p.target_uri, "--dir", str(p.workdir)
    )
    assert _published(p, slot) is None


def test_cleanup_leaves_a_publication_pgferry_did_not_create(dbpair: DbPair) -> None:
    """Only publications pgferry marked as its own are dropped: a user's one that happens
    to carry the slot's name stays."""
    p = dbpair
    slot, origin = names(p)
    with p.src_conn() as conn:
        conn.execute(f"CREATE PUBLICATION {slot}")
    out = run_pgferry(
        "cleanup", "--source", p.source_uri, "--target", p.target_uri,
        "--slot-name", slot, "--origin", origin, "--dir", str(p.workdir),
    )  # fmt: skip
    assert f"dropped publication {slot}" not in out.stdout
    assert _published(p, slot) == []  # still there (it publishes nothing)
    with p.src_conn() as conn:
        conn.execute(f"DROP PUBLICATION {slot}")


def test_large_transactions_are_streamed_spooled_and_applied_exactly(dbpair: DbPair) -> None:
    """Past logical_decoding_work_mem the source streams a transaction while it runs:
    segments interleaved with other transactions, savepoints rolled back inside it, a
    large transaction aborted at the end. The target gets exactly the committed rows, and
    the source never spilled a transaction to its disk."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(
            "CREATE TABLE big (id int PRIMARY KEY, v text);"
            "CREATE TABLE small (id serial PRIMARY KEY, v int)"
        )
        # The walsender of this database streams past 64kB (the least there is).
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET logical_decoding_work_mem = '64kB'").format(
                sql.Identifier(p.src_db)
            )
        )
    slot, _ = names(p)
    proc = start_pgferry(*follow_args(p, "pgoutput"))
    try:
        wait_until(
            lambda: bool(sentinel(p.workdir).get("apply")),
            what="the copy to finish",
            proc=proc,
            timeout=120,
        )
        with p.src_conn() as a, p.src_conn() as b:
            a.execute("BEGIN")
            for step in range(6):
                lo = step * 5000
                a.execute(
                    "INSERT INTO big SELECT g, repeat('x', 50)"
                    " FROM generate_series(%s::int, %s::int) g",
                    (lo, lo + 2999),
                )
                a.execute("SAVEPOINT s")
                a.execute(
                    "INSERT INTO big SELECT g, 'gone' FROM generate_series(%s::int, %s::int) g",
                    (lo + 3000, lo + 4999),
                )
                if step % 2:
                    a.execute("ROLLBACK TO SAVEPOINT s")
                else:
                    a.execute("UPDATE big SET v = 'kept' WHERE id BETWEEN %s AND %s", (lo, lo + 9))
                    a.execute("RELEASE SAVEPOINT s")
                b.execute("INSERT INTO small (v) VALUES (%s)", (step,))  # commits first
            b.execute("BEGIN")
            b.execute("INSERT INTO big SELECT g, 'aborted' FROM generate_series(100000, 130000) g")
            a.execute("COMMIT")
            b.execute("ROLLBACK")
        cutover(p, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    with p.tgt_conn() as conn:
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (3 * 5000 + 3 * 3000,)
        assert conn.execute("SELECT count(*) FROM big WHERE v = 'kept'").fetchone() == (30,)
        assert conn.execute("SELECT count(*) FROM small").fetchone() == (6,)
    assert_same_database(p.source_uri, p.target_uri)
    with p.src_conn() as conn:
        stats = conn.execute(
            "SELECT stream_txns, spill_bytes FROM pg_stat_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    assert stats is not None and stats[0] >= 1 and stats[1] == 0, stats
    assert not list((p.workdir / "cdc" / "streams").glob("*"))
    got = json.loads(
        run_pgferry("stream", "sentinel", "get", "--json", "--dir", str(p.workdir)).stdout
    )
    assert (got["plugin"], got["protocol"]) == ("pgoutput", "protocol 2, streaming")
    status = json.loads(run_pgferry("cdc-status", "--json", "--dir", str(p.workdir)).stdout)
    assert status["protocol"] == "protocol 2, streaming"


def test_a_table_created_after_the_start_stops_capture_loudly(dbpair: DbPair) -> None:
    """pgoutput sends only the tables of the publication: a table created on the source
    later would have its changes silently missing. pgferry notices and stops, naming it."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    proc = start_pgferry(*follow_args(p, "pgoutput"))
    try:
        wait_until(lambda: bool(sentinel(p.workdir).get("apply")), what="apply", proc=proc)
        with p.src_conn() as conn:
            conn.execute('CREATE TABLE "Läter" (id int PRIMARY KEY); INSERT INTO t VALUES (1)')
            conn.execute('INSERT INTO "Läter" VALUES (1)')
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "public.Läter" in err and "not captured" in err and "Traceback" not in err
    assert "--plugin test_decoding" in err
