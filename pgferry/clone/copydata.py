"""Phase 4: stream one table (or one part of it) from source to target with COPY.

Bytes go straight from the source's COPY TO STDOUT to the target's COPY FROM STDIN; no
rows are parsed and nothing touches the disk. A reader thread drains the source into a
small bounded queue while the worker writes to the target, so both servers stay busy
and memory stays at a few MB per worker whatever the table size.
"""

from __future__ import annotations

import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import pq, sql

from pgferry.catalog.model import Table
from pgferry.errors import Interrupted
from pgferry.faults import copy_chunk_delay

CHUNK = 256 * 1024  # bytes handed from reader to writer at a time
QUEUE_DEPTH = 8  # chunks in flight per worker: bounds memory
# Tests only: seconds to pause after each chunk, so a crash test can land mid-copy.
_TEST_CHUNK_DELAY = copy_chunk_delay()


@dataclass(frozen=True)
class CopySpec:
    """What one copy unit moves."""

    table: Table
    first_page: int | None = None
    end_page: int | None = None
    truncate: bool = True  # TRUNCATE in the same transaction (and then FREEZE)
    # Empty the table with DELETE instead (no FREEZE then): a table other tables'
    # foreign keys reference, in a schema restored whole before the data (copy data).
    delete: bool = False
    binary: bool = False

    @property
    def is_part(self) -> bool:
        return self.first_page is not None or self.end_page is not None


@dataclass(frozen=True)
class CopyResult:
    bytes: int
    rows: int


def source_copy_sql(spec: CopySpec) -> sql.Composed:
    """COPY ... TO STDOUT for the whole table or a block range of it."""
    t = spec.table
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in t.columns)
    fmt = sql.SQL(" WITH (FORMAT binary)") if spec.binary else sql.SQL("")
    if not spec.is_part:
        target = t.ident if not t.columns else sql.SQL("{} ({})").format(t.ident, cols)
        return sql.SQL("COPY {} TO STDOUT{}").format(target, fmt)
    conds = []
    if spec.first_page is not None:
        conds.append(sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({spec.first_page},0)")))
    if spec.end_page is not None:
        conds.append(sql.SQL("ctid < {}::tid").format(sql.Literal(f"({spec.end_page},0)")))
    query = sql.SQL("SELECT {} FROM ONLY {} WHERE {}").format(
        cols, t.ident, sql.SQL(" AND ").join(conds)
    )
    return sql.SQL("COPY ({}) TO STDOUT{}").format(query, fmt)


def empty_table_sql(table: Table, *, delete: bool) -> sql.Composed:
    """TRUNCATE ONLY the table, or DELETE its rows (with session_replication_role replica:
    no foreign key is checked and no trigger fires)."""
    if delete:
        return sql.SQL("DELETE FROM ONLY {}").format(table.ident)
    return sql.SQL("TRUNCATE ONLY {}").format(table.ident)


def target_copy_sql(spec: CopySpec, *, freeze: bool) -> sql.Composed:
    t = spec.table
    options = []
    if freeze:
        options.append(sql.SQL("FREEZE"))
    if spec.binary:
        options.append(sql.SQL("FORMAT binary"))
    with_ = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(options)) if options else sql.SQL("")
    if t.columns:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in t.columns)
        return sql.SQL("COPY {} ({}) FROM STDIN{}").format(t.ident, cols, with_)
    return sql.SQL("COPY {} FROM STDIN{}").format(t.ident, with_)


class _SourceReader(threading.Thread):
    """Runs COPY TO STDOUT on the source with libpq calls, feeding a bounded queue."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        query: bytes,
        out: queue.Queue[Any],
        events: tuple[threading.Event, ...],
    ) -> None:
        super().__init__(name="copy-reader", daemon=True)
        self.conn = conn
        self.query = query
        self.out = out
        self.events = events

    def stopped(self) -> bool:
        return any(e.is_set() for e in self.events)

    def run(self) -> None:
        try:
            self._copy()
        except BaseException as exc:  # handed to the writer, which raises it
            self._put(exc)

    def _put(self, item: Any) -> None:
        while True:
            try:
                self.out.put(item, timeout=0.2)
                return
            except queue.Full:
                if self.stopped():
                    return

    def _copy(self) -> None:
        pg = self.conn.pgconn
        pg.send_query(self.query)
        result = self._next_result(pg)
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            raise _error(result, self.conn)
        buf = bytearray()
        get = pg.get_copy_data
        sock = pg.socket
        while True:
            nbytes, data = get(1)
            if nbytes > 0:
                buf += data
                if len(buf) >= CHUNK:
                    self._put(bytes(buf))
                    buf.clear()
                    if self.stopped():
                        raise Interrupted("copy cancelled")
            elif nbytes == 0:
                select.select([sock], [], [], 1.0)
                pg.consume_input()
                if self.stopped():
                    raise Interrupted("copy cancelled")
            else:
                break
        if buf:
            self._put(bytes(buf))
        final = self._next_result(pg)
        while self._next_result(pg) is not None:
            pass
        if final is None or final.status != pq.ExecStatus.COMMAND_OK:
            raise _error(final, self.conn)
        self._put(None)

    def _next_result(self, pg: pq.abc.PGconn) -> pq.abc.PGresult | None:
        while True:
            pg.consume_input()
            if not pg.is_busy():
                return pg.get_result()
            select.select([pg.socket], [], [], 1.0)
            if self.stopped():
                raise Interrupted("copy cancelled")


def _error(result: pq.abc.PGresult | None, conn: psycopg.Connection[Any]) -> Exception:
    if result is None:
        return psycopg.OperationalError("the source connection returned no result for COPY")
    return pgerrors.error_from_result(result, encoding=conn.info.encoding)


def copy_table(
    source: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    spec: CopySpec,
    *,
    on_progress: Callable[[int], None],
    stop: threading.Event,
) -> CopyResult:
    """Copy one unit. `source` is idle in its snapshot transaction; `target` autocommit.

    The target side runs in one transaction: TRUNCATE (when asked), COPY (FREEZE when
    truncated), COMMIT, so a crash anywhere leaves the target table as it was.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
    cancel = threading.Event()
    query = source_copy_sql(spec).as_bytes(source)
    reader = _SourceReader(source, query, q, (cancel, stop))
    total = 0
    freeze = spec.truncate and not spec.is_part and not spec.delete
    try:
        with target.transaction(), target.cursor() as cur:
            if spec.truncate:
                cur.execute(empty_table_sql(spec.table, delete=spec.delete))
            with cur.copy(target_copy_sql(spec, freeze=freeze)) as copy:
                reader.start()
                while True:
                    item = q.get()
                    if item is None:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    copy.write(item)
                    total += len(item)
                    on_progress(total)
                    if _TEST_CHUNK_DELAY:
                        time.sleep(_TEST_CHUNK_DELAY)
            rows = cur.rowcount
    finally:
        cancel.set()
        if reader.is_alive():
            _cancel_source(source)
            reader.join(timeout=30)
    return CopyResult(bytes=total, rows=max(rows, 0))


def _cancel_source(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.cancel_safe(timeout=5)
    except Exception:
        pass
