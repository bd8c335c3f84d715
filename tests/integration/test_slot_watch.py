"""The slot autopilot: a quiet source database on a busy cluster with
max_slot_wal_keep_size set low. While pgferry follows, the slot keeps its WAL in check
and is not lost, and the danger is told (log and event) with the time left; once the
slot is lost, CDC says so at once with the options."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

from psycopg import sql

from tests.helpers.cdc import follow_args, names, sentinel, wait_until
from tests.helpers.cli import run_pgferry
from tests.helpers.net import WebhookReceiver
from tests.helpers.running import kill_group, start_pgferry

if TYPE_CHECKING:
    from tests.conftest import DbPair

WATCH = {"PGFERRY_TEST_SLOT_WATCH_SECONDS": "0.5", "PGFERRY_TEST_HEARTBEAT_BYTES": "1048576"}
KEEP = "48MB"


def _write_wal(p: DbPair, busy: str, megabytes: int) -> None:
    """WAL from another database of the source cluster, then a checkpoint (which removes
    what no slot keeps)."""
    with p.source.connect(busy) as conn:
        conn.execute(
            "INSERT INTO w SELECT repeat(md5(g::text), 32) FROM generate_series(1, %s) g",
            (megabytes * 1000,),
        )
        time.sleep(1.5)  # the receiver confirms what it has seen
        conn.execute("CHECKPOINT")


def _slot(p: DbPair) -> tuple[str | None, int | None]:
    slot, _ = names(p)
    with p.source.connect() as conn:
        row = conn.execute(
            "SELECT wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def test_quiet_database_on_a_busy_cluster(dbpair: DbPair) -> None:
    p = dbpair
    busy = f"busy_{secrets.token_hex(4)}"
    p.source.create_database(busy)
    receiver = WebhookReceiver().start()
    url = receiver.url("/events")
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE quiet (id int PRIMARY KEY); INSERT INTO quiet VALUES (1)")
    with p.source.connect(busy) as conn:
        conn.execute("CREATE TABLE w (x text)")
    with p.source.connect() as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET max_slot_wal_keep_size = {}").format(KEEP))
        conn.execute("SELECT pg_reload_conf()")
    proc = start_pgferry(*follow_args(p, "pgoutput", "--notify-url", url), env=WATCH)
    try:
        wait_until(lambda: bool(sentinel(p.workdir).get("startpos")), what="the slot", proc=proc)
        for _ in range(10):  # 10 x ~10 MB of WAL elsewhere, more than the slot may keep
            _write_wal(p, busy, 10)
            status, retained = _slot(p)
            assert status in ("reserved", "extended", "unreserved"), status
        wait_until(
            lambda: (_slot(p)[1] or 0) < 48 * 1024 * 1024, what="the slot's WAL released", proc=proc
        )
        wait_until(
            lambda: any(b["event"] == "slot_in_danger" for b in receiver.bodies),
            what="the danger event",
            proc=proc,
        )
        danger = next(b for b in receiver.bodies if b["event"] == "slot_in_danger")
        assert "safe_wal_bytes" in danger and "max_slot_wal_keep_size 48MB" in danger["message"]
        # Now nothing confirms: pgferry is gone, the slot falls behind and is lost.
        kill_group(proc)
        proc.wait(30)
        for _ in range(3):
            _write_wal(p, busy, 36)
        assert _slot(p)[0] == "lost"
        resumed = run_pgferry(
            "follow", "--resume", "--source", p.source_uri, "--target", p.target_uri,
            "--dir", str(p.workdir), "--slot-name", names(p)[0], "--origin", names(p)[1],
            env=WATCH, check=False, timeout=120,
        )  # fmt: skip
        assert resumed.returncode != 0
        assert "lost" in resumed.stderr and "Traceback" not in resumed.stderr
    finally:
        kill_group(proc)
        receiver.stop()
        with p.source.connect() as conn:
            conn.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(busy))
            )
        run_pgferry(
            "cleanup", "--source", p.source_uri, "--target", p.target_uri,
            "--slot-name", names(p)[0], "--origin", names(p)[1], check=False,
        )  # fmt: skip
