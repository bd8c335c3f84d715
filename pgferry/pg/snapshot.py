"""The migration snapshot: exported once, imported by pg_dump and every worker.

The exporting transaction must stay open until the last worker has imported the
snapshot and finished reading; `SnapshotHolder` owns that connection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgferry.errors import InputError
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.profiles import SNAPSHOT_READER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """A snapshot to import, and the WAL position it was taken at (informational)."""

    name: str | None  # None: --not-consistent, every transaction sees the latest data
    lsn: str | None


class SnapshotHolder:
    """Exports a snapshot on its own connection and keeps the transaction open."""

    def __init__(self, source: ConnInfo) -> None:
        self.source = source
        self.conn: psycopg.Connection[Any] | None = None

    def export(self) -> Snapshot:
        conn = self.source.connect("pgferry snapshot", settings=SNAPSHOT_READER)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot(), pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        self.conn = conn
        log.info("exported snapshot %s at LSN %s", row[0], row[1])
        return Snapshot(name=row[0], lsn=row[1])

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None
                log.info("released the snapshot")


def begin_on_snapshot(conn: psycopg.Connection[Any], snapshot: Snapshot) -> None:
    """Open a REPEATABLE READ READ ONLY transaction that sees `snapshot`."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot.name is None:
        return
    try:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot.name)))
    except psycopg.errors.InvalidParameterValue as exc:
        conn.execute("ROLLBACK")
        raise InputError(
            f"cannot use snapshot {snapshot.name}: {str(exc).strip()}",
            fix="the transaction that exported it has ended; export a new one or resume "
            "without --snapshot",
        ) from None
