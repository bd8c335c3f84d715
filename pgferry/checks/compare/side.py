"""Reading one side of a comparison on one snapshot, from several worker threads.

A holder connection exports a snapshot and each worker thread imports it on a connection
of its own, so that every table of one side is read as of the same moment. Reads run with
fixed output settings (COMPARE_OUTPUT) so that values render the same way on both servers,
and worker transactions restart on the snapshot every LOCK_BUDGET relations so that
thousands of tables do not exhaust the server's lock table.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.definitions import COMPARED_SEQUENCES_SQL, KEYED_RELATIONS_SQL
from pgferry.catalog.facts import large_object_oids
from pgferry.checks.compare.sqltext import LARGE_OBJECT_CHUNK_SQL, sequence_query
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.describe import error_text
from pgferry.pg.profiles import COMPARE_HOLDER, COMPARE_OUTPUT
from pgferry.pg.query import with_params
from pgferry.pg.settings import set_settings
from pgferry.text import display_name

log = logging.getLogger(__name__)


# Relations a worker's transaction reads before it starts a new one on the same snapshot:
# each read keeps a lock on the relation (and its indexes) until the transaction ends, and
# thousands of tables would exhaust the server's lock table (max_locks_per_transaction).
LOCK_BUDGET = 32
SEQUENCE_BATCH = LOCK_BUDGET
LARGE_OBJECT_CHUNK = 4 * 1024 * 1024  # bytes read by lo_get per object per round
LARGE_OBJECT_BATCH = 5000  # objects per query


@dataclass(frozen=True)
class Relation:
    """One table or materialized view on one side, as compare and verify read it."""

    schema: str
    name: str
    kind: str  # 'r' or 'm'
    populated: bool
    reltuples: float
    live_tuples: int | None
    bytes: int  # pg_table_size
    columns: tuple[str, ...]  # in attnum order, generated columns included
    keys: tuple[tuple[str, ...], ...]  # usable keys (unique, valid, not null), best first

    @property
    def qualname(self) -> str:
        return display_name(self.schema, self.name)

    @property
    def estimated_rows(self) -> float | None:
        """reltuples, or the statistics collector's count when never analyzed (-1)."""
        if self.reltuples >= 0:
            return self.reltuples
        return float(self.live_tuples) if self.live_tuples is not None else None


def begin_read(
    conn: psycopg.Connection[Any],
    snapshot: str | None,
    settings: Mapping[str, str] | None = None,
) -> None:
    """Open the read-only transaction every read of one side runs in.

    `settings` (transaction-local) come after COMPARE_OUTPUT and may override them.
    """
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot is not None:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    set_settings(conn, {**COMPARE_OUTPUT, **(settings or {})}, local=True)


@contextmanager
def savepoint(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Keep the snapshot transaction usable when one statement fails."""
    conn.execute("SAVEPOINT pgferry_compare")
    try:
        yield
    except psycopg.Error:
        if not conn.closed:
            conn.execute("ROLLBACK TO SAVEPOINT pgferry_compare")
        raise
    conn.execute("RELEASE SAVEPOINT pgferry_compare")


class Side:
    """One side of the comparison: a snapshot-holding connection and the workers' ones.

    Workers (threads) each get their own connection on first use, importing the snapshot
    the holder exported, so that every table of one side is read as of the same moment.
    """

    def __init__(
        self,
        info: ConnInfo,
        purpose: str = "compare",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.info = info
        self.purpose = f"pgferry {purpose} {info.role}"
        self.settings = dict(settings or {})  # transaction-local, on top of COMPARE_OUTPUT
        self.holder = info.connect(self.purpose, settings=COMPARE_HOLDER)
        self.snapshot: str | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._workers: list[psycopg.Connection[Any]] = []
        try:
            self._hold_snapshot()
        except BaseException:
            self.holder.close()
            raise

    def _hold_snapshot(self) -> None:
        info = self.info
        self.holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            row = self.holder.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
            self.snapshot = row[0] if row else None
        except psycopg.Error as exc:
            # e.g. a server that cannot export snapshots: each worker then reads its own.
            log.warning(
                "%s: cannot share one snapshot between workers (%s); each reads its own",
                info.role,
                error_text(exc),
            )
            self.holder.execute("ROLLBACK")
            self.holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        set_settings(self.holder, COMPARE_OUTPUT, local=True)

    # -- catalog, sequences and large objects: on the holder --------------------------
    def relations(self) -> dict[tuple[str, str], Relation]:
        """The side's tables and materialized views in the migration's scope."""
        return {
            (r[0], r[1]): Relation(
                schema=r[0],
                name=r[1],
                kind=r[2],
                populated=bool(r[3]),
                reltuples=float(r[4]),
                live_tuples=None if r[5] is None else int(r[5]),
                bytes=int(r[6] or 0),
                columns=tuple(r[7]),
                keys=tuple(tuple(k) for k in r[8] or ()),
            )
            for r in self.holder.execute(KEYED_RELATIONS_SQL).fetchall()
        }

    def sequences(self) -> dict[tuple[str, str], tuple[int, bool, int] | str]:
        """(schema, name) -> (last_value, is_called, increment), or an error message."""
        listed = self.holder.execute(COMPARED_SEQUENCES_SQL).fetchall()
        result: dict[tuple[str, str], tuple[int, bool, int] | str] = {}
        readable: list[tuple[str, str, int]] = []
        for schema, name, increment, can_read in listed:
            if can_read:
                readable.append((schema, name, int(increment)))
            else:
                result[(schema, name)] = f"no SELECT privilege on the {self.info.role}"
        for start in range(0, len(readable), SEQUENCE_BATCH):
            batch = readable[start : start + SEQUENCE_BATCH]
            try:
                rows = self.fetch(sequence_query([(s, n) for s, n, _ in batch]), None, len(batch))
            except psycopg.Error as exc:
                for schema, name, _ in batch:
                    result[(schema, name)] = f"{self.info.role}: {error_text(exc)}"
                continue
            for i, last_value, is_called in rows:
                schema, name, increment = batch[i]
                result[(schema, name)] = (int(last_value), bool(is_called), increment)
        return result

    def large_objects(self) -> dict[int, str]:
        """OID -> digest of the content, read LARGE_OBJECT_CHUNK bytes at a time."""
        oids = large_object_oids(self.holder)
        digests: dict[int, str] = {}
        for start in range(0, len(oids), LARGE_OBJECT_BATCH):
            digests.update(self._large_object_batch(oids[start : start + LARGE_OBJECT_BATCH]))
        return digests

    def _large_object_batch(self, oids: list[int]) -> dict[int, str]:
        hashes = {oid: hashlib.md5(usedforsecurity=False) for oid in oids}
        pending, offset = list(oids), 0
        while pending:
            rows = self.holder.execute(
                LARGE_OBJECT_CHUNK_SQL, (pending, offset, LARGE_OBJECT_CHUNK)
            ).fetchall()
            pending = []
            for oid, digest, length in rows:
                hashes[int(oid)].update(f"{digest}:{length};".encode())
                if length == LARGE_OBJECT_CHUNK:
                    pending.append(int(oid))
            offset += LARGE_OBJECT_CHUNK
        return {oid: h.hexdigest() for oid, h in hashes.items()}

    # -- table fingerprints: on the calling worker's connection ------------------------
    def fingerprint(
        self, query: sql.SQL | sql.Composed, params: Sequence[Any] | None = None
    ) -> tuple[int, str]:
        """(row count, hash) from a fingerprint-shaped query."""
        rows = self.fetch(query, params)
        return int(rows[0][0]), str(rows[0][1])

    def fetch(
        self, query: sql.SQL | sql.Composed, params: Sequence[Any] | None = None, relations: int = 1
    ) -> list[Any]:
        """All rows of a query reading `relations` relations, on the calling thread's
        connection (in the snapshot)."""
        conn = self._worker_conn()
        self._spend(conn, relations)
        with savepoint(conn):
            if params is None:
                return conn.execute(query).fetchall()
            return conn.execute(with_params(query), params).fetchall()

    def _spend(self, conn: psycopg.Connection[Any], relations: int) -> None:
        """Start a new transaction on the shared snapshot once LOCK_BUDGET is spent (not
        possible without a shared snapshot: a new one would read another moment)."""
        spent = getattr(self._local, "spent", 0)
        if self.snapshot is not None and spent and spent + relations > LOCK_BUDGET:
            conn.execute("COMMIT")
            begin_read(conn, self.snapshot, self.settings)
            spent = 0
        self._local.spent = spent + relations

    def _worker_conn(self) -> psycopg.Connection[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.info.connect(self.purpose, settings=COMPARE_HOLDER)
            with self._lock:
                self._workers.append(conn)
            begin_read(conn, self.snapshot, self.settings)
            self._local.conn = conn
        return conn

    def cancel(self) -> None:
        """Interrupt the queries the workers are running (on Ctrl-C)."""
        with self._lock:
            conns = list(self._workers)
        for conn in conns:
            try:
                conn.cancel_safe()
            except (psycopg.Error, OSError):
                pass

    def close(self) -> None:
        with self._lock:
            conns, self._workers = self._workers + [self.holder], []
        for conn in conns:
            conn.close()


@contextmanager
def side_pools(
    src: Side, tgt: Side, jobs: int, name: str
) -> Iterator[tuple[ThreadPoolExecutor, ThreadPoolExecutor]]:
    """One pool of `jobs` reader threads per side. On any error, reads not yet started are
    dropped and both sides' running statements cancelled, so that it surfaces at once."""
    pools = (
        ThreadPoolExecutor(jobs, thread_name_prefix=f"{name}-source"),
        ThreadPoolExecutor(jobs, thread_name_prefix=f"{name}-target"),
    )
    try:
        yield pools
    except BaseException:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        src.cancel()
        tgt.cancel()
        raise
    finally:
        for pool in pools:
            pool.shutdown(wait=True)
