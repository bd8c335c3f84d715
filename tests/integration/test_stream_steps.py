"""pgcopydb's stream steps and `snapshot`: setup, receive (nothing applied), catchup (what
was received applied once, up to the end position), cleanup; a held snapshot that a clone
run meanwhile reads the source as of."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from tests.helpers.cli import run_pgferry
from tests.helpers.compare import table_fingerprints
from tests.helpers.running import clone_args, start_pgferry

if TYPE_CHECKING:
    from tests.conftest import DbPair

SCHEMA = """
CREATE TABLE "Items" (id int PRIMARY KEY, v text, n numeric);
CREATE TABLE log (k int, payload jsonb);
INSERT INTO "Items" SELECT g, 'v' || g, g / 7.0 FROM generate_series(1, 500) g;
"""

WRITES = """
INSERT INTO "Items" SELECT g, 'late' || g, g FROM generate_series(501, 900) g;
UPDATE "Items" SET v = v || '!' WHERE id % 5 = 0;
DELETE FROM "Items" WHERE id % 11 = 0;
INSERT INTO log SELECT g, jsonb_build_object('g', g) FROM generate_series(1, 300) g;
"""


def test_stream_setup_receive_catchup_cleanup(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
    run_pgferry(*clone_args(p))
    both = (
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir.parent / "stream"),
    )
    setup = run_pgferry("stream", "setup", *both)
    assert "slot created at" in setup.stdout
    again = run_pgferry("stream", "setup", *both, check=False)
    assert again.returncode == 3 and "already holds a CDC setup" in again.stderr
    with p.src_conn() as conn:
        conn.execute(WRITES)
        expected = table_fingerprints(conn)
    dir_ = ("--dir", str(p.workdir.parent / "stream"))
    end = run_pgferry(
        "stream", "sentinel", "set", "endpos", "--current", *dir_, "--source", p.source_uri
    )
    received = run_pgferry("stream", "receive", *both, timeout=120)
    assert "received everything up to the end position" in received.stdout
    with p.tgt_conn() as conn:  # received, not applied
        assert conn.execute('SELECT count(*) FROM "Items"').fetchone() == (500,)
    applied = run_pgferry("stream", "catchup", *both, timeout=120)
    assert f"applied up to {end.stdout.strip()}" in applied.stdout
    with p.tgt_conn() as conn:
        assert table_fingerprints(conn) == expected
    # Once: catchup again applies nothing twice.
    run_pgferry("stream", "catchup", *both, timeout=120)
    with p.tgt_conn() as conn:
        assert table_fingerprints(conn) == expected
    got = run_pgferry("stream", "sentinel", "get", "--json", *dir_)
    assert end.stdout.strip() in got.stdout
    cleaned = run_pgferry("stream", "cleanup", *both)
    assert "dropped replication slot pgferry" in cleaned.stdout
    with p.source.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)


def test_stream_steps_need_a_setup(dbpair: DbPair) -> None:
    p = dbpair
    both = ("--source", p.source_uri, "--target", p.target_uri, "--dir", str(p.workdir))
    refused = run_pgferry("stream", "receive", *both, check=False)
    assert refused.returncode == 3 and "stream setup" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_snapshot_is_held_for_a_clone(dbpair: DbPair) -> None:
    """A write committed after `pgferry snapshot` printed its name is not in a clone
    that reads with --snapshot; the file goes when the holder stops."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
    snapdir = p.workdir.parent / "snap"
    holder = start_pgferry("snapshot", "--source", p.source_uri, "--dir", str(snapdir))
    try:
        assert holder.stdout is not None
        name = holder.stdout.readline().strip()
        assert name and (snapdir / "snapshot").read_text().strip() == name
        with p.src_conn() as conn:
            conn.execute("INSERT INTO \"Items\" VALUES (1000, 'after', 0)")
            conn.execute('DELETE FROM "Items" WHERE id = 1')
        run_pgferry(*clone_args(p, "--snapshot", name))
        with p.tgt_conn() as conn:
            assert conn.execute('SELECT count(*), min(id), max(id) FROM "Items"').fetchone() == (
                500,
                1,
                500,
            )
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(30)
    assert holder.returncode == 0
    assert not (snapdir / "snapshot").exists()
