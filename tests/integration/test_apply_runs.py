"""Apply run after run on one Applier, as the engine does after a lost target connection
or a transient error: nothing of the interrupted run leaks into the next one."""

from __future__ import annotations

import threading
from pathlib import Path

from pgferry.cdc.apply import Applier, ApplyScope
from pgferry.cdc.spool import TxnEntry
from pgferry.pg.conninfo import ConnInfo
from tests.conftest import DbPair


def test_a_group_open_when_a_run_was_interrupted_is_not_closed_by_the_next(
    dbpair: DbPair, tmp_path: Path
) -> None:
    """The interrupted run had queued part of a group (rolled back with its connection).
    The next run, caught up (an empty spool) for a second and then stopped, must leave
    the origin where the target has it: closing the stale group would record its last
    transaction as applied, and a resume would skip the transactions it held."""
    p = dbpair
    origin = "pgferry_test_runs"
    with p.tgt_conn() as conn:
        conn.execute("SELECT pg_replication_origin_create(%s)", (origin,))
        # Where the last committed group left it.
        conn.execute("SELECT pg_replication_origin_advance(%s, '0/4000000')", (origin,))
    stop = threading.Event()
    applier = Applier(
        ConnInfo.parse(p.target_uri, "target"),
        origin,
        tmp_path,  # an empty spool: nothing to apply
        "pgoutput",
        ApplyScope(tables={}),
        endpos=lambda: None,
        may_apply=lambda: True,
        received=lambda: 0,
        on_progress=lambda lsn, txns: None,
        stop=stop,
        group_txns=32,
    )
    # What the interrupted run left: three transactions queued in a group never synced.
    applier._group, applier._group_changes = 3, 12
    applier._group_last = TxnEntry(0, 0, 100, 0x5000000, 0x5000100, 0, 741, 4)
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    try:
        assert applier.run() == 0x4000000
        with p.tgt_conn() as conn:
            row = conn.execute(
                "SELECT pg_replication_origin_progress(%s, true)::text", (origin,)
            ).fetchone()
        position = row[0] if row else None
        assert position == "0/4000000", f"the origin moved to {position}"
    finally:
        timer.cancel()
        with p.tgt_conn() as conn:
            conn.execute("SELECT pg_replication_origin_drop(%s)", (origin,))
