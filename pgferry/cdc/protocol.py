"""The logical replication protocol over psycopg's libpq bindings.

psycopg 3 has no replication API, but its `pgconn` exposes libpq: replication commands
go through the simple query protocol (`exec_`), and START_REPLICATION switches the
connection to COPY BOTH mode where XLogData and keepalive messages arrive with
`get_copy_data` and standby status updates leave with `put_copy_data`.
"""

from __future__ import annotations

import select
import struct
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import pq, sql

from pgferry.pg.lsn import format_lsn, parse_lsn
from pgferry.pg.settings import read_settings

# Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
_PG_EPOCH_OFFSET_US = 946_684_800 * 1_000_000
_XLOGDATA = struct.Struct(">QQQ")
_KEEPALIVE = struct.Struct(">QQB")
_STATUS = struct.Struct(">cQQQQB")


def pg_now() -> int:
    """Now, in microseconds since 2000-01-01 (the protocol's clock)."""
    return int(time.time() * 1_000_000) - _PG_EPOCH_OFFSET_US


def pg_time_to_unix(us: int) -> float:
    return (us + _PG_EPOCH_OFFSET_US) / 1_000_000


@dataclass(frozen=True)
class CreatedSlot:
    name: str
    consistent_point: int
    snapshot: str | None
    plugin: str


def _exec(conn: psycopg.Connection[Any], command: str) -> pq.abc.PGresult:
    result = conn.pgconn.exec_(command.encode())
    if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        raise pgerrors.error_from_result(result, encoding=conn.info.encoding)
    return result


def _text(result: pq.abc.PGresult, row: int, col: int) -> str | None:
    value = result.get_value(row, col)
    return None if value is None else bytes(value).decode()


def create_slot(
    conn: psycopg.Connection[Any],
    name: str,
    plugin: str,
    *,
    temporary: bool = False,
    export_snapshot: bool = True,
) -> CreatedSlot:
    """CREATE_REPLICATION_SLOT on a replication connection.

    With `export_snapshot`, the snapshot stays importable until the next command on
    `conn`: keep the connection open and idle while others import it.
    """
    command = sql.SQL("CREATE_REPLICATION_SLOT {} {}LOGICAL {} {}").format(
        sql.Identifier(name),
        sql.SQL("TEMPORARY " if temporary else ""),
        sql.Identifier(plugin),
        sql.SQL("EXPORT_SNAPSHOT" if export_snapshot else "NOEXPORT_SNAPSHOT"),
    )
    result = _exec(conn, command.as_string(conn))
    return CreatedSlot(
        name=_text(result, 0, 0) or name,
        consistent_point=parse_lsn(_text(result, 0, 1) or "0/0"),
        snapshot=_text(result, 0, 2),
        plugin=_text(result, 0, 3) or plugin,
    )


@dataclass(frozen=True)
class XLogData:
    start: int  # WAL position of this message
    end: int  # server's current end of WAL
    sent_at: int  # server clock, microseconds since 2000-01-01
    payload: memoryview


@dataclass(frozen=True)
class Keepalive:
    end: int
    sent_at: int
    reply_requested: bool


class ReplicationStream:
    """START_REPLICATION ... LOGICAL on a replication connection; messages and feedback."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.pg = conn.pgconn

    def start(self, slot: str, start_lsn: int, options: dict[str, str]) -> None:
        opts = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in options.items()
        )
        command = sql.SQL("START_REPLICATION SLOT {} LOGICAL {}{}").format(
            sql.Identifier(slot),
            sql.SQL(format_lsn(start_lsn)),
            sql.SQL(" ({})").format(opts) if options else sql.SQL(""),
        )
        self.pg.send_query(command.as_string(self.conn).encode())
        while True:
            self.pg.consume_input()
            if not self.pg.is_busy():
                break
            select.select([self.pg.socket], [], [], 1.0)
        result = self.pg.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_BOTH:
            if result is None:
                raise psycopg.OperationalError("START_REPLICATION returned nothing")
            raise pgerrors.error_from_result(result, encoding=self.conn.info.encoding)

    def read(self, timeout: float) -> XLogData | Keepalive | None:
        """The next message, or None when nothing arrived within `timeout` seconds."""
        nbytes, data = self.pg.get_copy_data(1)
        if nbytes == 0:
            readable, _, _ = select.select([self.pg.socket], [], [], timeout)
            if not readable:
                return None
            self.pg.consume_input()
            nbytes, data = self.pg.get_copy_data(1)
            if nbytes == 0:
                return None
        if nbytes < 0:
            self._raise_end()
        kind = data[0]
        if kind == 0x77:  # 'w'
            start, end, sent = _XLOGDATA.unpack_from(data, 1)
            return XLogData(start, end, sent, memoryview(data)[25:])
        if kind == 0x6B:  # 'k'
            end, sent, reply = _KEEPALIVE.unpack_from(data, 1)
            return Keepalive(end, sent, bool(reply))
        raise psycopg.OperationalError(f"unexpected replication message type {chr(kind)!r}")

    def _raise_end(self) -> None:
        result = self.pg.get_result()
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            raise pgerrors.error_from_result(result, encoding=self.conn.info.encoding)
        error = self.pg.error_message.decode(errors="replace").strip()
        raise psycopg.OperationalError(error or "the replication stream ended")

    def send_status(self, write: int, flush: int, apply: int, *, reply: bool = False) -> None:
        """Standby status update: what is written, durable, and applied."""
        message = _STATUS.pack(b"r", write, flush, apply, pg_now(), 1 if reply else 0)
        if self.pg.put_copy_data(message) != 1:
            raise psycopg.OperationalError("could not send a standby status update")
        while self.pg.flush() == 1:
            select.select([], [self.pg.socket], [], 1.0)


def current_wal_lsn(conn: psycopg.Connection[Any]) -> int:
    """Where the source's WAL ends now: every transaction committed so far is before it.

    The insert position, not the flush position: with synchronous_commit = off a
    transaction is committed (and visible) before its commit record is flushed. A
    position right after a page header is moved back to the page start, where the last
    record ended, so an idle source still reaches it.
    """
    row = conn.execute(
        "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
        "ELSE pg_current_wal_insert_lsn() END::text"
    ).fetchone()
    assert row is not None and row[0] is not None
    segment = read_settings(conn, ["wal_segment_size"]).get("wal_segment_size")
    return record_boundary(parse_lsn(row[0]), int(segment) if segment else DEFAULT_SEGMENT)


XLOG_PAGE_SIZE = 8192
SHORT_PAGE_HEADER = 24  # every page but a segment's first
LONG_PAGE_HEADER = 40  # the first page of a segment
DEFAULT_SEGMENT = 16 * 1024 * 1024


def record_boundary(lsn: int, segment_size: int = DEFAULT_SEGMENT) -> int:
    """The insert position right after a page header is no record's end: use the page
    start, where the previous record ended. Only the header itself: a record that spans
    into the page ends after it (a commit record ending at byte 32 of a page is a
    committed transaction, and an end position before it would leave it out)."""
    offset = lsn % XLOG_PAGE_SIZE
    header = LONG_PAGE_HEADER if lsn % segment_size < XLOG_PAGE_SIZE else SHORT_PAGE_HEADER
    return lsn - offset if offset <= header else lsn
