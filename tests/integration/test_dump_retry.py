"""pg_dump locks every table as it starts; a session locking tables in another order can
deadlock with it, and pg_dump is then cancelled. The clone dumps again on the same
snapshot instead of failing (found by the explorer, seed 111 with wal2json)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from pgferry.clone.schema import dump_schema
from pgferry.pg.binaries import find_dump_tools
from pgferry.pg.conninfo import ConnInfo

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import DbPair


def test_pg_dump_losing_a_deadlock_dumps_again(dbpair: DbPair, tmp_path: Path) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")
    source = ConnInfo.parse(p.source_uri, "source")
    tools = find_dump_tools(15)
    dump_file = tmp_path / "schema.dump"
    errors: list[BaseException] = []

    def dump() -> None:
        try:
            dump_schema(tools, source, dump_file, snapshot=None, large_objects=False)
        except BaseException as exc:
            errors.append(exc)

    with p.src_conn(autocommit=False) as other:
        # This session waits longer than pg_dump before checking for a deadlock: pg_dump,
        # which waits first, finds it and is the one cancelled.
        other.execute("SET deadlock_timeout = '20s'")
        other.execute("LOCK TABLE b IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=dump)
        worker.start()
        with p.src_conn() as watch:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                row = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' "
                    "AND wait_event_type = 'Lock'"
                ).fetchone()
                if row and row[0]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("pg_dump never waited for table b")
        other.execute("LOCK TABLE a IN ACCESS EXCLUSIVE MODE")  # the cycle: pg_dump loses
        other.commit()
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert errors == []
    assert dump_file.exists() and dump_file.stat().st_size > 0
