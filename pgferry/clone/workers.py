"""Executing units: each worker thread owns its connections and runs one unit at a time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.model import Catalog, Index
from pgferry.catalog.queries import REWRITTEN_SQL
from pgferry.catalog.sequences import read_sequence, set_sequence
from pgferry.clone.blobs import copy_large_objects
from pgferry.clone.copydata import CopySpec, copy_table, empty_table_sql
from pgferry.clone.indexes import attach_constraint, build_index
from pgferry.clone.maintenance import vacuum_analyze
from pgferry.errors import Interrupted, TableRewritten
from pgferry.faults import copy_lock_timeout
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.profiles import BULK_WRITER, SNAPSHOT_READER
from pgferry.pg.settings import set_settings
from pgferry.pg.snapshot import Snapshot, begin_on_snapshot
from pgferry.state.store import StateStore, UnitKind, UnitRow

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What every worker shares for one run."""

    source: ConnInfo
    target: ConnInfo
    catalog: Catalog
    snapshot: Snapshot
    store: StateStore
    binary: bool = False
    maintenance_work_mem: str = "1GB"
    use_tablespaces: bool = True
    # A granular command (copy data, copy indexes...): indexes and constraints may exist
    # already (each is checked first, as on a resume), and so may foreign keys and
    # triggers (tables are emptied with DELETE and filled as replica, see target()).
    if_not_exists: bool = False
    fail_fast: bool = False  # cancel the running units at the first failure
    stop: threading.Event = field(default_factory=threading.Event)
    progress: dict[int, int] = field(default_factory=dict)
    indexes: dict[int, Index] = field(default_factory=dict)
    truncated: set[int] = field(default_factory=set)
    truncate_lock: threading.Lock = field(default_factory=threading.Lock)
    active: dict[int, psycopg.Connection[Any]] = field(default_factory=dict)
    # Tables every worker locks (ACCESS SHARE) as soon as it imports the snapshot, all
    # at once: on a resume's new snapshot, the tables still to copy. A TRUNCATE that
    # commits between the snapshot and a table's copy makes the copy read the table
    # empty (TRUNCATE is not MVCC-safe); locked this early, none can. Each worker holds
    # them itself: a lock held elsewhere would make the worker's own request queue
    # behind a TRUNCATE waiting on it, for ever.
    lock_first: tuple[sql.Identifier, ...] = ()
    # Source sessions already on the snapshot, with lock_first held: opened before the
    # snapshot was taken, so that the tables are locked a few milliseconds after it.
    ready: list[psycopg.Connection[Any]] = field(default_factory=list)
    ready_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.indexes = {i.oid: i for i in self.catalog.indexes}

    def lock_ahead(self, conns: list[psycopg.Connection[Any]]) -> None:
        """Put `conns` (connected, idle) on the snapshot with lock_first held, back to
        back, and keep them for the first workers that need a source session."""
        for conn in conns:
            begin_on_snapshot(conn, self.snapshot)
            lock_for_copy(conn, self.lock_first)
        with self.ready_lock:
            self.ready.extend(conns)

    def close_ready(self) -> None:
        with self.ready_lock:
            conns, self.ready = self.ready, []
        for conn in conns:
            conn.close()

    def cancel_active(self) -> None:
        """Cancel every statement running on a worker's target connection (on stop)."""
        for conn in list(self.active.values()):
            try:
                conn.cancel_safe(timeout=5)
            except Exception:
                pass


@dataclass(frozen=True)
class UnitOutcome:
    unit: UnitRow
    ok: bool
    bytes: int = 0
    rows: int | None = None
    error: BaseException | None = None
    note: str | None = None


class WorkerSession:
    """One worker's connections: a source transaction on the snapshot, a target session."""

    def __init__(self, ctx: RunContext, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self._source: psycopg.Connection[Any] | None = None
        self._target: psycopg.Connection[Any] | None = None

    def source(self) -> psycopg.Connection[Any]:
        if self._source is None or self._source.closed:
            with self.ctx.ready_lock:
                if self.ctx.ready:
                    self._source = self.ctx.ready.pop()
                    return self._source
            conn = self.ctx.source.connect(f"pgferry {self.name}", settings=SNAPSHOT_READER)
            begin_on_snapshot(conn, self.ctx.snapshot)
            if self.ctx.lock_first:
                try:
                    lock_for_copy(conn, self.ctx.lock_first)
                except BaseException:
                    conn.close()
                    raise
            self._source = conn
        return self._source

    def reset_source(self) -> None:
        """Drop the source session (after an error, or per unit without a snapshot)."""
        if self._source is not None:
            try:
                self._source.close()
            finally:
                self._source = None

    def target(self) -> psycopg.Connection[Any]:
        if self._target is None or self._target.closed:
            settings = dict(BULK_WRITER, maintenance_work_mem=self.ctx.maintenance_work_mem)
            if self.ctx.if_not_exists:
                # The target may hold the whole schema already (copy schema, restore
                # post-data): its triggers must not fire on the copied rows, nor its
                # foreign keys be checked while the tables fill in any order.
                settings["session_replication_role"] = "replica"
            self._target = self.ctx.target.connect(f"pgferry {self.name}", settings=settings)
            self.ctx.active[threading.get_ident()] = self._target
        return self._target

    def reset_target(self) -> None:
        if self._target is not None:
            self.ctx.active.pop(threading.get_ident(), None)
            try:
                self._target.close()
            finally:
                self._target = None

    def close(self) -> None:
        self.reset_source()
        self.reset_target()


def run_unit(session: WorkerSession, unit: UnitRow, parallel_workers: int = 0) -> UnitOutcome:
    """Execute one unit; any failure is returned, never raised."""
    try:
        handler = _HANDLERS[unit.kind]
        return handler(session, unit, parallel_workers)
    except BaseException as exc:  # reported to the scheduler, which decides
        if isinstance(exc, (psycopg.Error, Interrupted)) or session.ctx.stop.is_set():
            session.reset_source()
            if isinstance(exc, psycopg.OperationalError) or session.ctx.stop.is_set():
                session.reset_target()
        else:
            session.close()
        return UnitOutcome(unit, ok=False, error=exc)


def _copy(session: WorkerSession, unit: UnitRow, _pw: int) -> UnitOutcome:
    ctx = session.ctx
    table = ctx.catalog.table(unit.table_oid)
    parts = int(unit.detail.get("parts", 1))
    if parts > 1:
        _truncate_once(session, unit.table_oid)
    spec = CopySpec(
        table=table,
        first_page=unit.detail.get("first_page"),
        end_page=unit.detail.get("end_page"),
        truncate=parts == 1,
        delete=ctx.if_not_exists,
        binary=ctx.binary,
    )
    source = session.source()
    lock_for_copy(source, (table.ident,))
    if ctx.snapshot.name is not None:
        _check_not_rewritten(source, table.oid, table.qualname)

    def progress(n: int) -> None:
        ctx.progress[unit.id] = n

    result = copy_table(source, session.target(), spec, on_progress=progress, stop=ctx.stop)
    if ctx.snapshot.name is None:
        session.reset_source()  # without a shared snapshot each unit reads the latest data
    return UnitOutcome(unit, ok=True, bytes=result.bytes, rows=result.rows)


# How long a copy waits for its table's lock. A wait that long is an ACCESS EXCLUSIVE
# request (TRUNCATE, ALTER TABLE) queued ahead of it, itself waiting for a lock another
# worker holds until the copy ends: it would never end.
COPY_LOCK_TIMEOUT = copy_lock_timeout()


def lock_for_copy(source: psycopg.Connection[Any], tables: tuple[sql.Identifier, ...]) -> None:
    """ACCESS SHARE on the tables, in the worker's snapshot transaction (kept until it
    ends). A wait past COPY_LOCK_TIMEOUT fails the copy as TableRewritten: the run ends,
    which releases every worker's locks and lets the waiting statement through, and the
    tables are copied again under a new snapshot."""
    set_settings(source, {"lock_timeout": COPY_LOCK_TIMEOUT}, local=True)
    try:
        source.execute(
            sql.SQL("LOCK TABLE ONLY {} IN ACCESS SHARE MODE").format(sql.SQL(", ").join(tables))
        )
    except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
        names = ", ".join(t.as_string(source) for t in tables[:3])
        why = (
            "a deadlock with a session of the source"
            if isinstance(exc, psycopg.errors.DeadlockDetected)
            else f"still waiting after {COPY_LOCK_TIMEOUT}, behind a TRUNCATE or ALTER TABLE"
        )
        raise TableRewritten(
            f"{names}{' and more' if len(tables) > 3 else ''}: the copy could not lock the "
            f"table ({why})",
            fix="let it run; the copy is taken again under a new snapshot",
        ) from None
    source.execute("SET LOCAL lock_timeout = 0")


def _check_not_rewritten(source: psycopg.Connection[Any], oid: int, name: str) -> None:
    """Refuse to copy a table that was truncated (or rewritten) on the source after the
    snapshot: TRUNCATE is not MVCC-safe, so the snapshot would read it empty, and rows
    the snapshot holds, with the changes that follow them, would be lost or stop apply.
    The lock is held from here on, so it cannot happen any more while the copy runs."""
    row = source.execute(REWRITTEN_SQL, (oid,)).fetchone()
    if row is not None and row[0]:
        raise TableRewritten(
            f"table {name} was truncated or rewritten on the source after the copy's "
            "snapshot was taken (TRUNCATE, VACUUM FULL, CLUSTER or ALTER TABLE): copying it "
            "on that snapshot would lose rows",
            fix="run the same command with --resume: the table is copied again under a new "
            "snapshot, and changes before it are skipped for that table",
        )


def _truncate_once(session: WorkerSession, table_oid: int) -> None:
    """A split table is emptied once, before its first part starts."""
    ctx = session.ctx
    with ctx.truncate_lock:
        if table_oid in ctx.truncated:
            return
        table = ctx.catalog.table(table_oid)
        session.target().execute(empty_table_sql(table, delete=ctx.if_not_exists))
        ctx.store.set_table(table_oid, truncated=True)
        ctx.truncated.add(table_oid)


def _index(session: WorkerSession, unit: UnitRow, parallel_workers: int) -> UnitOutcome:
    ctx = session.ctx
    idx = ctx.indexes[unit.obj_oid]
    built = build_index(
        session.target(),
        idx,
        ctx.catalog.table(idx.table_oid),
        resuming=unit.attempts > 0 or ctx.if_not_exists,
        parallel_workers=parallel_workers,
        use_tablespace=ctx.use_tablespaces,
    )
    return UnitOutcome(unit, ok=True, note=None if built else "already there")


def _constraint(session: WorkerSession, unit: UnitRow, _pw: int) -> UnitOutcome:
    ctx = session.ctx
    idx = ctx.indexes[unit.obj_oid]
    done = attach_constraint(
        session.target(),
        idx,
        ctx.catalog.table(idx.table_oid),
        resuming=unit.attempts > 0 or ctx.if_not_exists,
    )
    return UnitOutcome(unit, ok=True, note=None if done else "already there")


def _vacuum(session: WorkerSession, unit: UnitRow, _pw: int) -> UnitOutcome:
    vacuum_analyze(session.target(), session.ctx.catalog.table(unit.table_oid))
    return UnitOutcome(unit, ok=True)


def _sequence(session: WorkerSession, unit: UnitRow, _pw: int) -> UnitOutcome:
    ctx = session.ctx
    seq = next(s for s in ctx.catalog.sequences if s.oid == unit.obj_oid)
    last_value, is_called = read_sequence(session.source(), seq)
    set_sequence(session.target(), seq, last_value, is_called)
    return UnitOutcome(
        unit, ok=True, note=f"{last_value} {'called' if is_called else 'not called'}"
    )


def _blobs(session: WorkerSession, unit: UnitRow, _pw: int) -> UnitOutcome:
    count, total = copy_large_objects(
        session.source(), session.target(), int(unit.detail["first"]), int(unit.detail["last"])
    )
    return UnitOutcome(unit, ok=True, bytes=total, rows=count)


_HANDLERS: dict[UnitKind, Callable[[WorkerSession, UnitRow, int], UnitOutcome]] = {
    UnitKind.COPY: _copy,
    UnitKind.INDEX: _index,
    UnitKind.CONSTRAINT: _constraint,
    UnitKind.VACUUM: _vacuum,
    UnitKind.SEQUENCE: _sequence,
    UnitKind.BLOBS: _blobs,
}
