"""Apply: replay spooled transactions on the target, exactly once, in commit order.

Each source transaction becomes one target transaction run with
session_replication_role = replica, and `pg_replication_origin_xact_setup` records its
commit LSN in the same commit. After any crash the origin's progress says exactly which
transaction comes next. Statements are prepared and pipelined, many transactions per
round trip; inserts into a table become multi-row inserts. With --group-txns N (32 by
default), up to N small transactions waiting in a row share one target transaction
(whole, in order, the origin at the last one's commit): far fewer commits when catching
up on a backlog. Inside one target transaction, a table's inserts, and its updates of
different rows found by its key, wait past other tables' changes and go together (one
statement for many rows), unless a trigger or rule on the target could see that order.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import psycopg

from pgferry.catalog.filters import Filters, QualifiedName
from pgferry.catalog.inscope import table_in_scope
from pgferry.catalog.row_identity import (
    APPLY_TABLES_SQL,
    NO_EQUALITY_SQL,
    ORDER_OBSERVERS_SQL,
    TEXT_COMPARE_TYPES,
    RowIdentity,
)
from pgferry.cdc.decode import (
    Change,
    DecodeError,
    decode_test_decoding,
    decode_wal2json,
    values_picker,
)
from pgferry.cdc.parallel import ConflictIndex, Group, KeyMaker, Keys
from pgferry.cdc.pgoutput import PgoutputDecoder
from pgferry.cdc.pipeline import MAX_UNMATCHED, CommandFailed, Ctx, Pipeline
from pgferry.cdc.spool import SpoolReader, TxnEntry, read_index, remove_applied, spool_files
from pgferry.cdc.sqlgen import (
    CONTINUITY_MARK,
    Column,
    TargetTable,
    batch_sizes,
    delete_sql,
    insert_origin_sql,
    insert_sql,
    origin_setup_sql,
    row_exists_sql,
    truncate_sql,
    update_rows_sql,
    update_sql,
)
from pgferry.errors import StepFailed
from pgferry.faults import crash_after_commits, die
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.lsn import format_lsn, parse_lsn
from pgferry.pg.profiles import APPLY_WRITER, PARALLEL_APPLY_WRITER
from pgferry.pg.replication import (
    applied_position,
    create_origin,
    lane_origin,
    origin_exists,
    origin_progress,
    origin_session_setup,
)

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 1000  # transactions queued but not yet confirmed committed
# Once at the limit, wait until only this many are left: one long wait instead of a
# wake-up (send, select, receive) for every transaction while the target is the slower.
RESUME_IN_FLIGHT = 500
POLL_EVERY_TXNS = 32  # look at results that often when not waiting
# Caught up: look for new transactions at least that often (`wait_for_changes` wakes
# apply as soon as the receiver has made some durable).
CAUGHT_UP_POLL_SECONDS = 0.1
IMPLICIT_TXN_MAX_CHANGES = 500
# Parallel apply: a transaction up to this big goes to a lane, as an implicit transaction
# (its Sync, the commit, has to wait for the earlier groups'); a bigger one runs alone.
PARALLEL_TXN_MAX_CHANGES = 5000
# --group-txns: a group of small source transactions stops growing at this many changes.
GROUP_MAX_CHANGES = 1000
ORIGIN_SETUP_SQL = origin_setup_sql(1)
# Tests only: SIGKILL ourselves once this many transactions are committed, before the
# position is recorded anywhere but in the target's replication origin.
_CRASH_AFTER_COMMIT = crash_after_commits()
SYNC_EVERY_STATEMENTS = 2000
# Changes waiting to go together (Applier._runs): at most MAX_RUN_ROWS per table and
# this many tables, so a huge transaction is never held in memory.
MAX_WAITING_TABLES = 64
MAX_RUN_ROWS = 1024
LANE_START = "0/1"  # a new lane origin's position (below every commit)
MAX_GROUPS_IN_FLIGHT = 32  # groups sent and not yet committed, as MAX_IN_FLIGHT
GC_THRESHOLD = 100_000  # container allocations between two young-generation collections

# Not the change's fault, and gone on a new try: the session ended (shutdown, crash,
# pg_terminate_backend: 57P01-03, class 08), a cancel (57014), a deadlock or
# serialization failure with someone else's session (class 40), a lock not granted
# within parallel apply's lock_timeout (55P03: someone else holds it; wait again).
_SESSION_ENDED = {"57P01", "57P02", "57P03", "57014"}
_TRANSIENT = _SESSION_ENDED | {"55P03"}
_TRANSIENT_CLASSES = ("08", "40")


def _tune_gc() -> None:
    """Apply makes a few short-lived objects per change, nearly all freed by reference
    counting, yet with the default thresholds the cyclic collector ran often enough to
    take a quarter of pgferry's CPU in a pgbench drain (4.0 -> 3.0 s for 100k
    transactions). Collect far less often, and keep what exists now (catalogs, caches,
    the state store's objects) out of the full collections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 50, 50)


class ApplyError(StepFailed):
    """A change the target cannot take; nothing after it was applied."""


class ApplyInterrupted(Exception):
    """A transient failure (session ended, cancel, deadlock): apply again from the origin."""


@dataclass(frozen=True)
class ApplyScope:
    """Which source tables apply writes to, and each one's copy LSN."""

    tables: dict[tuple[str, str], int]  # (schema, name) -> LSN its copy was taken at
    everything: bool = False  # follow without a clone: every table the filters keep
    filters: Filters | None = None
    # With `everything`: the source's partition and inheritance parents of each table
    # that has some (catalog.inscope.read_ancestors), which the filters' rule follows.
    ancestors: Mapping[tuple[str, str], tuple[QualifiedName, ...]] = field(default_factory=dict)

    def applies(self, schema: str, name: str) -> bool:
        """Whether changes of the table are applied: one the clone copied, or for
        `follow` alone one the filters keep with its rows (catalog.inscope's rule)."""
        if not self.everything:
            return (schema, name) in self.tables
        if self.filters is None:
            return True
        return table_in_scope(
            self.filters,
            QualifiedName(schema, name),
            self.ancestors.get((schema, name), ()),
            data=True,
        )


@dataclass(slots=True)
class _Run:
    """Changes of one table not yet sent, in commit order, all with the same columns:
    inserts (kind I), or updates (U) of different rows, each found by the table's key."""

    kind: str
    table: TargetTable
    columns: list[str]
    rows: list[Change] = field(default_factory=list)
    # (index of its first row, transaction) for each transaction with rows here: the
    # transaction a statement's error names.
    starts: list[tuple[int, TxnEntry]] = field(default_factory=list)
    keys: set[Any] = field(default_factory=set)  # U: the rows' keys
    key_of: Callable[[list[bytes | None]], Any] | None = None  # U: a row's key

    def add(self, change: Change, entry: TxnEntry) -> None:
        if not self.starts or self.starts[-1][1] is not entry:
            self.starts.append((len(self.rows), entry))
        self.rows.append(change)

    def entry_at(self, row: int) -> TxnEntry:
        return next(entry for first, entry in reversed(self.starts) if first <= row)


@dataclass(eq=False)
class _Lane:
    """One target session of parallel apply, and the Applier's per-session state
    (`_runs`, the open group, `_previous`) while another lane is the current one."""

    index: int
    conn: psycopg.Connection[Any]
    pipe: Pipeline
    previous: bytes
    runs: dict[int, _Run] = field(default_factory=dict)
    group: int = 0
    group_changes: int = 0
    group_sent: int = 0
    group_last: TxnEntry | None = None
    gated: Group | None = None  # closed, waiting to commit: nothing else may go here
    groups: int = 0  # groups here not yet committed


class ApplyConflict(ApplyInterrupted):
    """Parallel apply met a conflict it did not foresee before a commit: apply again
    from the origins, one transaction at a time past what was dispatched."""


def decoder_for(plugin: str) -> Callable[[bytes | memoryview, int], Change | None]:
    """The plugin's message -> Change function (None for what is not a row change)."""
    if plugin == "wal2json":
        return decode_wal2json
    if plugin == "pgoutput":
        # It keeps the Relation messages each spooled transaction carries.
        return PgoutputDecoder().change
    return decode_test_decoding


_SECOND_TEXT: dict[int, str] = {}


def commit_time_text(pg_us: int) -> str:
    """A timestamptz literal for a protocol timestamp (cached per second: called per txn)."""
    unix_us = pg_us + 946_684_800 * 1_000_000
    seconds, micros = divmod(unix_us, 1_000_000)
    prefix = _SECOND_TEXT.get(seconds)
    if prefix is None:
        if len(_SECOND_TEXT) > 1000:
            _SECOND_TEXT.clear()
        prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
        _SECOND_TEXT[seconds] = prefix
    return f"{prefix}.{micros:06d}+00"


def _entry_of(ctx: Ctx) -> TxnEntry | None:
    """The transaction a queued command belongs to, when it carries one."""
    entry = ctx.detail[0] if isinstance(ctx.detail, tuple) else None
    return entry if isinstance(entry, TxnEntry) else None


def _described(ctx: Ctx) -> tuple[str, str]:
    """What a queued command applied, and in which transaction (for messages)."""
    entry = _entry_of(ctx)
    change = ctx.detail[1] if isinstance(ctx.detail, tuple) else None
    if isinstance(change, list):  # updates sent together: the first one
        change = change[0]
    where = ""
    if entry is not None:
        where = f" in transaction {entry.xid} (commit {format_lsn(entry.commit_lsn)})"
    return (change.describe() if isinstance(change, Change) else ctx.what), where


def _committed(ctx: Ctx, applied_lsn: int) -> bool:
    """Whether the transaction of a queued command is applied (by the origin's progress)."""
    entry = _entry_of(ctx)
    return entry is not None and entry.commit_lsn <= applied_lsn


class Applier:
    """Replays the spool; `run` returns when endpos is applied or `stop` is set."""

    def __init__(
        self,
        target: ConnInfo,
        origin: str,
        spool_dir: Path,
        plugin: str,
        scope: ApplyScope,
        *,
        endpos: Callable[[], int | None],
        may_apply: Callable[[], bool],
        received: Callable[[], int],
        on_progress: Callable[[int, int], None],
        stop: threading.Event,
        group_txns: int = 1,
        wait_for_changes: Callable[[float], object] | None = None,
        apply_jobs: int = 1,
        serial_until: int = 0,
    ) -> None:
        self.target = target
        self.origin = origin
        self.spool_dir = spool_dir
        self.decode = decoder_for(plugin)
        # test_decoding prints an old row without its NULL columns; the others list them.
        self.old_row_omits_nulls = plugin == "test_decoding"
        self.scope = scope
        self.endpos = endpos
        self.may_apply = may_apply
        self.received = received
        self.on_progress = on_progress
        self.stop = stop
        self.group_txns = group_txns
        # Caught up: wait up to N seconds for new transactions (or a stop).
        self.wait_for_changes = wait_for_changes or stop.wait
        self.tables: dict[tuple[str, str], TargetTable | None] = {}
        self.conn: psycopg.Connection[Any] | None = None  # pipelined: changes only
        self.meta: psycopg.Connection[Any] | None = None  # catalog and progress queries
        self.applied_lsn = 0
        self.applied_txns = 0
        self._scanned_up_to = 0
        # Commit LSN of the last transaction queued, as the continuity check's parameter.
        self._previous = b"0/0"
        self._limits: dict[int, int] = {}
        # The open group (--group-txns): transactions queued since the last sync, the
        # changes they hold, the statement count when it opened, its last transaction.
        self._group = 0
        self._group_changes = 0
        self._group_sent = 0
        self._group_last: TxnEntry | None = None
        # Changes waiting to be sent, per table (by id): within one target transaction a
        # table's inserts, or its updates of different rows by key, wait until another
        # kind of change touches that table, so those of many grouped transactions go as
        # one statement (pgbench's three updates and one insert each touch a different
        # table). Only while nothing on the target can see the order of changes between
        # tables (`_reorder`); a table's own changes keep their order.
        self._runs: dict[int, _Run] = {}
        self._reorder = False
        self.reader = SpoolReader(spool_dir)
        # --apply-jobs N: N target sessions (parallel.py). Transactions up to
        # `serial_until` go one at a time (a parallel run stopped on a conflict there).
        self.apply_jobs = apply_jobs
        self.serial_until = serial_until
        self.dispatched_lsn = 0  # the last transaction sent to a lane
        self._lanes: list[_Lane] = []
        self._lane: _Lane | None = None  # whose state `_runs`, `_group`... hold now
        self._order: deque[Group] = deque()  # groups not yet committed, in commit order
        self._index = ConflictIndex()
        self._group_size = group_txns
        self._implicit_max = IMPLICIT_TXN_MAX_CHANGES  # bigger: BEGIN/COMMIT of its own
        self._until_passed = False
        self._last_cleanup = time.monotonic()  # spool files applied were last removed

    # -- setup ------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        # A run after an interrupted one (lost connection, transient error) starts with
        # no open group: the old one was rolled back. Closing it again would commit its
        # last transaction's commit LSN as the origin's position without its changes.
        self._group = self._group_changes = self._group_sent = 0
        self._group_last = None
        self._runs.clear()
        conn, progress = self._lane_session(0)
        # With --apply-jobs, now or earlier, the highest of the lanes' origins.
        applied = applied_position(conn, self.origin)
        self.applied_lsn = max(parse_lsn(applied) if applied else 0, progress)
        self._previous = format_lsn(progress).encode()
        return conn

    def _lane_session(self, lane: int) -> tuple[psycopg.Connection[Any], int]:
        """A target session bound to the lane's origin (created when missing), and the
        origin's position."""
        settings = PARALLEL_APPLY_WRITER if self.apply_jobs > 1 else APPLY_WRITER
        name = lane_origin(self.origin, lane)
        # Every lane's session is "apply" (cleanup ends them all before dropping origins).
        conn = self.target.connect("pgferry apply", settings=settings)
        try:
            if lane and not origin_exists(conn, name):
                # Positioned, so that its continuity check has a position to compare.
                create_origin(conn, name, LANE_START)
            progress = origin_session_setup(conn, name)
        except BaseException:
            conn.close()
            raise
        return conn, parse_lsn(progress) if progress else 0

    def table(self, schema: str, name: str) -> TargetTable | None:
        """Target metadata for a source table; None when the table is not applied."""
        key = (schema, name)
        if key in self.tables:
            return self.tables[key]
        if not self.scope.applies(schema, name):
            self.tables[key] = None
            return None
        copy_lsn = self.scope.tables.get(key)
        assert self.meta is not None
        row = self.meta.execute(APPLY_TABLES_SQL, {"schema": schema, "name": name}).fetchone()
        if row is None:
            raise ApplyError(
                f"table {schema}.{name} receives changes on the source but does not exist on "
                "the target",
                fix="create it on the target (DDL is not replicated), then --resume",
            )
        text_compare = {
            column
            for _, column in self.meta.execute(
                NO_EQUALITY_SQL, {"oids": [row[7]], "textcmp": list(TEXT_COMPARE_TYPES)}
            )
        }
        columns = {
            c[0]: Column(c[0], c[1], c[2] == "true", c[3] == "true", c[0] in text_compare)
            for c in row[3]
        }
        identity = RowIdentity.of(row[2], row[4], row[5], row[6])
        table = TargetTable(
            schema=schema,
            name=name,
            columns=columns,
            key=identity.key,
            identity=identity.replident,
            copy_lsn=copy_lsn or 0,
            update_rows=identity.replident != "f"
            and identity.problem is None
            and bool(identity.key)
            and row[8] == 1,  # its only unique or exclusion index is the key's
            uniques=row[8],
        )
        self.tables[key] = table
        return table

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> int:
        """Apply until endpos (returns the applied LSN) or until stopped."""
        try:
            self.conn = self._connect()
            self.meta = self.target.connect("pgferry apply-meta", settings=APPLY_WRITER)
            self._reorder = self._may_reorder()
            if self.apply_jobs > 1 and not self._reorder:
                log.info("--apply-jobs %d: applying one transaction at a time", self.apply_jobs)
                self.apply_jobs = 1
        except BaseException:
            self._close()
            raise
        pipe = Pipeline(self.conn)
        self._lanes = [_Lane(0, self.conn, pipe, self._previous)]
        _tune_gc()
        try:
            if self.apply_jobs == 1:
                return self._loop(pipe)
            self._open_lanes()
            if self.serial_until > self.applied_lsn:
                log.info(
                    "applying one transaction at a time up to %s, then with %d sessions",
                    format_lsn(self.serial_until),
                    self.apply_jobs,
                )
                self._loop(pipe, until=self.serial_until)
                if not self._until_passed:
                    return self.applied_lsn
            return self._loop_parallel()
        except BaseException:
            # What is queued since the last sync is part of a transaction that did not
            # finish queueing (a change the target cannot take, a parallel conflict):
            # closing the pipeline would commit that part. Roll it back instead.
            for lane in self._lanes:
                with contextlib.suppress(Exception):
                    lane.pipe.simple(b"ROLLBACK", Ctx("rollback"))
            raise
        finally:
            for lane in self._lanes:
                with contextlib.suppress(Exception):
                    lane.pipe.close()
            self._close()

    def _close(self) -> None:
        for conn in (self.conn, self.meta, *(lane.conn for lane in self._lanes[1:])):
            if conn is not None:
                conn.close()
        self.reader.close()

    def _entries(self) -> Iterator[TxnEntry | None]:
        """Spooled transactions after the origin's position; None when caught up."""
        position: dict[int, int] = {}
        last = 0  # commit LSN of the last transaction yielded
        self._limits = {}
        while True:
            found = False
            # What the receiver had made durable before this scan: if the scan finds
            # nothing new, everything up to this position is applied.
            self._scanned_up_to = self.received()
            for file_no in spool_files(self.spool_dir):
                start = position.get(file_no, 0)
                entries = read_index(self.spool_dir, file_no, start)
                if not entries:
                    continue
                position[file_no] = start + len(entries)
                self._limits[file_no] = entries[-1].end_off
                for e in entries:
                    # Strictly after the origin and after what was yielded: a transaction
                    # the spool holds twice (a receiver before this rule wrote one after
                    # a lost connection) is never queued twice.
                    if e.commit_lsn > max(self.applied_lsn, last):
                        last = e.commit_lsn
                        found = True
                        yield e
            if not found:
                yield None

    def _loop(self, pipe: Pipeline, until: int = 0) -> int:
        """Queue transactions, keeping at most MAX_IN_FLIGHT unconfirmed: the server
        never waits for us, and we only wait when it is that far behind. With `until`,
        return once every transaction up to there is applied (`_until_passed`)."""
        in_flight: deque[tuple[int, TxnEntry]] = deque()  # (sync number, transaction)
        for entry in self._entries():
            if until and entry is not None and entry.commit_lsn > until:
                self._close_group(pipe)
                self._confirm(pipe, in_flight, wait_for=len(in_flight))
                self._until_passed = True
                return self.applied_lsn
            endpos = self.endpos()
            if entry is not None and endpos is not None and entry.commit_lsn > endpos:
                entry = None  # past the end: what remains is not applied
            if entry is None:
                self._close_group(pipe)
                self._confirm(pipe, in_flight, wait_for=len(in_flight))
                if self.stop.is_set():
                    return self.applied_lsn
                # Caught up for now: what was applied reaches the sentinel even if nothing
                # else comes (it is recorded at most twice a second).
                self.on_progress(self.applied_lsn, 0)
                if self._idle(pipe, endpos):
                    return self.applied_lsn
                continue
            while not self.may_apply() and not self.stop.is_set():
                self._close_group(pipe)
                self._confirm(pipe, in_flight, wait_for=len(in_flight))
                self.stop.wait(0.1)
            if self.stop.is_set():
                self._close_group(pipe)
                self._confirm(pipe, in_flight, wait_for=len(in_flight))
                return self.applied_lsn
            in_flight.append((self._apply_txn(pipe, entry), entry))
            behind = len(in_flight) - RESUME_IN_FLIGHT if len(in_flight) >= MAX_IN_FLIGHT else 0
            self._confirm(pipe, in_flight, wait_for=behind)
        return self.applied_lsn

    # -- parallel apply (--apply-jobs, parallel.py) ---------------------------------------
    def _open_lanes(self) -> None:
        """Lanes 1..N-1: sessions of their own, each bound to its lane's origin."""
        for k in range(1, self.apply_jobs):
            try:
                conn, progress = self._lane_session(k)
            except psycopg.errors.ConfigurationLimitExceeded as exc:
                raise ApplyError(
                    f"--apply-jobs {self.apply_jobs} needs {self.apply_jobs} replication "
                    f"origins in use at once on the target: {' '.join(str(exc).split())}",
                    fix="raise max_replication_slots on the target (PostgreSQL 18: "
                    "max_active_replication_origins), or lower --apply-jobs, then --resume",
                ) from None
            lane = _Lane(k, conn, Pipeline(conn), format_lsn(progress).encode())
            self._lanes.append(lane)

    def _enter(self, lane: _Lane) -> Pipeline:
        """Make `lane` the current one: the per-session state moves with it."""
        current = self._lane or self._lanes[0]
        if current is not lane:
            current.runs, current.previous = self._runs, self._previous
            current.group, current.group_changes = self._group, self._group_changes
            current.group_sent, current.group_last = self._group_sent, self._group_last
            self._runs, self._previous = lane.runs, lane.previous
            self._group, self._group_changes = lane.group, lane.group_changes
            self._group_sent, self._group_last = lane.group_sent, lane.group_last
        self._lane = lane
        return lane.pipe

    def _settle(self, pipe: Pipeline) -> None:
        """Bring the origin up to what is applied when parallel lanes took it further
        (others read the origin: status, cutover, spool trimming). On lane 0."""
        if parse_lsn(self._previous.decode()) < self.applied_lsn:
            self._advance_origin(pipe, self.applied_lsn)

    def _loop_parallel(self) -> int:
        """Dispatch groups of transactions to the lanes (parallel.py); commit them in
        commit order."""
        self.group_txns = 1 << 30  # groups are closed here, not by _apply_txn
        self._implicit_max = PARALLEL_TXN_MAX_CHANGES
        keymaker = KeyMaker()
        current: Group | None = None
        lane0 = self._lanes[0]
        for entry in self._entries():
            endpos = self.endpos()
            if entry is not None and endpos is not None and entry.commit_lsn > endpos:
                entry = None  # past the end: what remains is not applied
            if entry is None or not self.may_apply() or self.stop.is_set():
                self._drain(current)
                current = None
            if entry is None:
                if self.stop.is_set():
                    return self.applied_lsn
                self.on_progress(self.applied_lsn, 0)
                pipe = self._enter(lane0)
                if self._idle(pipe, endpos):
                    return self.applied_lsn
                continue
            while not self.may_apply() and not self.stop.is_set():
                self.stop.wait(0.1)
            if self.stop.is_set():
                return self.applied_lsn
            changes: list[Change] | None = None
            keys: Keys | None = None
            if entry.changes <= PARALLEL_TXN_MAX_CHANGES:
                changes = list(self._changes(entry))
                keys = keymaker.keys(self._touched(changes, entry))
            if keys is None:  # a barrier: alone, once everything before it committed
                self._drain(current)
                current = None
                self._apply_alone(entry, changes)
                continue
            lanes = self._index.lanes(keys)
            if (
                current is None
                or lanes - {current.lane}
                or current.txns >= self._group_size
                or current.changes + entry.changes > GROUP_MAX_CHANGES
            ):
                if current is not None:
                    self._close_lane_group(current)
                current = self._new_group(entry, keys)
            pipe = self._enter(self._lanes[current.lane])
            self._apply_txn(pipe, entry, changes)
            current.txns += 1
            current.changes += entry.changes
            current.last = entry
            self._index.add(current, keys)
            self.dispatched_lsn = entry.commit_lsn
        return self.applied_lsn

    def _touched(
        self, changes: list[Change], entry: TxnEntry
    ) -> Iterator[tuple[Change, TargetTable | None]]:
        """The changes apply makes, with their tables (a TRUNCATE with none: a barrier)."""
        for change in changes:
            if change.kind == "T":
                yield change, None
                return
            table = self._target_for(change, entry)
            if table is not None:
                yield change, table

    def _new_group(self, entry: TxnEntry, keys: Keys) -> Group:
        """A group starting with `entry`: behind the one lane it conflicts with, or on
        the least busy free lane; waits for commits while neither is possible."""
        while len(self._order) >= max(MAX_GROUPS_IN_FLIGHT, 2 * len(self._lanes)):
            self._wait_front()
        while True:
            lanes = self._index.lanes(keys)
            if len(lanes) == 1:
                (k,) = lanes
                if self._lanes[k].gated is None:
                    break
            elif not lanes:
                free = [lane for lane in self._lanes if lane.gated is None]
                if free:
                    k = min(free, key=lambda lane: lane.groups).index
                    break
            self._wait_front()
        group = Group(lane=k, last=entry)
        self._lanes[k].groups += 1
        self._order.append(group)
        return group

    def _close_lane_group(self, group: Group) -> None:
        """Queue the group's origin setup; its commit waits for the earlier groups'."""
        lane = self._lanes[group.lane]
        pipe = self._enter(lane)
        self._send_all(pipe)
        origin = self._origin_params(group.last)
        self._queue_origin(pipe, group.last, origin)
        self._previous = origin[0]
        self._group = self._group_changes = 0
        self._group_last = None
        group.closed = True
        group.mark = pipe.commands
        lane.gated = group
        pipe.flush_results()
        self._release()

    def _release(self) -> None:
        """Record the groups that committed; send the commit of each group whose turn
        has come (every earlier group committed, or the one before it committing on
        the same lane) once its statements have all run without error."""
        order = self._order
        while order and order[0].sync_no:
            group = order[0]
            pipe = self._lanes[group.lane].pipe
            if pipe.syncs < group.sync_no:
                self._poll(pipe)
                if pipe.syncs < group.sync_no:
                    break
            order.popleft()
            self._group_committed(group)
        previous: Group | None = None
        for group in order:
            if not group.sync_no:
                if not group.closed:
                    return
                if previous is not None and previous.lane != group.lane:
                    return
                lane = self._lanes[group.lane]
                if lane.pipe.answered < group.mark:
                    self._poll(lane.pipe)
                    if lane.pipe.answered < group.mark:
                        return
                group.sync_no = lane.pipe.sync()
                lane.gated = None
                self._poll(lane.pipe)
            previous = group

    def _group_committed(self, group: Group) -> None:
        self._lanes[group.lane].groups -= 1
        self._index.remove(group)
        if _CRASH_AFTER_COMMIT and self.applied_txns + group.txns >= _CRASH_AFTER_COMMIT:
            die()  # fault injection for tests: after the commit, before recording it
        self.applied_lsn = max(self.applied_lsn, group.last.commit_lsn)
        self.applied_txns += group.txns
        self.on_progress(self.applied_lsn, group.txns)

    def _wait_front(self) -> None:
        """Wait until the oldest group moves on: its results are in, or it committed."""
        group = self._order[0]
        pipe = self._lanes[group.lane].pipe
        try:
            if group.sync_no:
                pipe.wait_for_sync(group.sync_no)
            else:
                assert group.closed, "waiting on the open group"
                pipe.wait_for_answers(group.mark)
        except CommandFailed as exc:
            self._conflict(exc)
        self._release()

    def _drain(self, current: Group | None) -> None:
        """Commit every group (the open one closed first)."""
        if current is not None and not current.closed:
            self._close_lane_group(current)
        while self._order:
            self._wait_front()

    def _apply_alone(self, entry: TxnEntry, changes: list[Change] | None) -> None:
        """A barrier (TRUNCATE, a big transaction): on lane 0, committed before
        anything after it is sent."""
        pipe = self._enter(self._lanes[0])
        self.group_txns, self._implicit_max = 1, IMPLICIT_TXN_MAX_CHANGES
        try:
            number = self._apply_txn(pipe, entry, changes)
        finally:
            self.group_txns, self._implicit_max = 1 << 30, PARALLEL_TXN_MAX_CHANGES
        try:
            pipe.wait_for_sync(number)
        except CommandFailed as exc:
            self._fail(pipe, exc)
        self.dispatched_lsn = entry.commit_lsn
        self.applied_lsn = max(self.applied_lsn, entry.commit_lsn)
        self.applied_txns += 1
        self.on_progress(self.applied_lsn, 1)

    def _poll(self, pipe: Pipeline) -> None:
        try:
            pipe.poll()
        except CommandFailed as exc:
            self._conflict(exc)

    def _conflict(self, exc: CommandFailed) -> None:
        """A lane's group failed before its commit: everything not committed is rolled
        back (run), and apply goes on from the origins (Cdc.apply_until_endpos)."""
        error = exc.error
        state = getattr(error, "sqlstate", None) or ""
        what, where = _described(exc.ctx)
        text = " ".join(str(error).split()) if error is not None else "matched no row"
        if state.startswith("08") or state in _SESSION_ENDED:
            raise ApplyInterrupted(f"[{state}] {error}") from error
        # A lock timeout or a deadlock here may be two lanes waiting on each other: the
        # same transactions in parallel again would meet the same wait.
        raise ApplyConflict(f"{what}{where}: {text}")

    def _idle(self, pipe: Pipeline, endpos: int | None) -> bool:
        """Caught up: True once the end position is applied (and on disk); otherwise
        remove applied spool files now and then, and wait for new transactions."""
        if endpos is not None and self._scanned_up_to >= endpos:
            self._settle(pipe)
            if self.applied_lsn < endpos:
                self._advance_origin(pipe, endpos)
            self._durable_lsn()  # the cutover's last commits are on disk
            return True
        if time.monotonic() - self._last_cleanup > 10:
            self._settle(pipe)
            remove_applied(self.spool_dir, self._durable_lsn())
            self._last_cleanup = time.monotonic()
        self.wait_for_changes(CAUGHT_UP_POLL_SECONDS)
        return False

    def _confirm(
        self, pipe: Pipeline, in_flight: deque[tuple[int, TxnEntry]], wait_for: int
    ) -> None:
        """Record the transactions the server has committed; block until at least
        `wait_for` of the oldest ones are."""
        try:
            if wait_for:
                pipe.wait_for_sync(in_flight[wait_for - 1][0])
            elif len(in_flight) % POLL_EVERY_TXNS == 0:
                pipe.poll()
            else:
                return
        except CommandFailed as exc:
            self._fail(pipe, exc)
        done = 0
        last = None
        while in_flight and in_flight[0][0] <= pipe.syncs:
            last = in_flight.popleft()[1]
            done += 1
        if last is not None:
            if _CRASH_AFTER_COMMIT and self.applied_txns + done >= _CRASH_AFTER_COMMIT:
                # Fault injection for tests: die after the commit, before recording it.
                die()
            self.applied_lsn = max(self.applied_lsn, last.commit_lsn)
            self.applied_txns += done
            self.on_progress(self.applied_lsn, done)

    def _fail(self, pipe: Pipeline, exc: CommandFailed) -> None:
        """Roll back the failed transaction and stop with a message naming the change.

        An UPDATE/DELETE that touched no row does not fail its transaction, which
        commits without it, as may the ones queued after it: every such change is
        logged and counted in the message, never dropped silently."""
        assert self.meta is not None
        state = getattr(exc.error, "sqlstate", None) or ""
        if state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT:
            # Cdc.apply_until_endpos reconnects and goes on from the origin's position.
            raise ApplyInterrupted(f"[{state}] {exc.error}") from exc.error
        pipe.simple(b"ROLLBACK", Ctx("rollback"))
        for _ in range(MAX_UNMATCHED + 10):  # read all that is queued; a raise: one failure
            try:
                pipe.sync_and_wait()
                break
            except CommandFailed:
                continue
        progress = self._origin_progress(flush=False)
        if progress:
            self.applied_lsn = max(self.applied_lsn, progress)
            self.on_progress(self.applied_lsn, 0)
        error = exc.error
        ctx = exc.ctx
        what, where = _described(ctx)
        # Only those whose transaction committed: after a failure, later transactions
        # run until their continuity check fails them, and are rolled back.
        others = [
            _described(c)
            for c in pipe.unmatched
            if c is not ctx and _committed(c, self.applied_lsn)
        ]
        if error is None and isinstance(ctx.detail, tuple) and isinstance(ctx.detail[1], list):
            # Updates sent together: which of them found no row.
            missing = [(c.describe(), where) for c in self._rows_missing(ctx.detail[1])]
            if missing:
                what = missing[0][0]
                others = missing[1:] + others
        for other in others:
            log.error("also matched no row on the target: %s%s", *other)
        also = (
            f"; {len(others)} more UPDATE/DELETE matched no row either (logged above): their "
            "transactions committed without them"
            if others
            else ""
        )
        if error is None:
            if _committed(ctx, self.applied_lsn):
                # It wrote something else: it committed, and resume goes on after it.
                outcome = "its transaction committed without it"
                fix = "make the row match the source (pgferry compare data), then --resume"
            else:
                outcome = "nothing of its transaction was applied"
                fix = (
                    "put the row back on the target (the change rewrites or deletes it), "
                    "then --resume to apply the transaction again"
                )
            message = (
                f"{what}{where} matched no row on the target: the target has diverged, "
                f"{outcome} (transactions up to {format_lsn(self.applied_lsn)} are "
                f"applied){also}"
            )
        elif CONTINUITY_MARK in str(error):
            raise ApplyError(
                self._continuity_message(str(error), where),
                fix="make sure no other pgferry (or anything else) applies with replication "
                f"origin {self.origin} on this target, then run the same command with "
                "--resume: it goes on from the origin's position",
            )
        else:
            state = getattr(error, "sqlstate", None) or "-----"
            primary = getattr(getattr(error, "diag", None), "message_primary", None) or str(error)
            message = f"{what}{where} failed on the target: [{state}] {primary}{also}"
            fix = (
                "fix the target (DDL is not replicated: run it there too), then run the "
                "same command with --resume"
            )
        raise ApplyError("apply stopped: " + " ".join(message.split()), fix=fix)

    def _rows_missing(self, changes: list[Change]) -> list[Change]:
        """Of updates sent together (update_rows_sql), those whose row the target does
        not have: the statement only counts the rows it found."""
        assert self.meta is not None
        table = self.table(changes[0].schema, changes[0].table)
        if table is None:
            return []
        missing = []
        for change in changes:
            at = {c: i for i, c in enumerate(change.columns)}
            found = self.meta.execute(
                row_exists_sql(table, [change.values[at[k]] for k in table.key])
            ).fetchone()
            if not (found and found[0]):
                missing.append(change)
        return missing

    def _continuity_message(self, error: str, where: str) -> str:
        """The continuity check refused a transaction: say so in the user's words."""
        detail = error[error.index(CONTINUITY_MARK) + len(CONTINUITY_MARK) :].strip().strip('"')
        return (
            f"apply stopped before applying a transaction out of order{where}: the target's "
            f"replication origin {self.origin} is not where this apply left it ({detail}). "
            "Something else moved the origin (another apply on the same origin, or "
            "pg_replication_origin_advance by hand); nothing of this transaction or the "
            "ones after it was applied"
        )

    def _durable_lsn(self) -> int:
        """The origin's position as far as the target has it on disk, flushing its WAL
        up to there first. Apply commits with synchronous_commit = off: a target crash
        may lose its last commits (and the origin's progress with them), so spool files
        are only removed below this position, never below the confirmed one."""
        return self._origin_progress(flush=True)

    def _origin_progress(self, *, flush: bool) -> int:
        """The origin's position on the target (0: none); `flush` first flushes the
        target's WAL up to it."""
        assert self.meta is not None
        position = origin_progress(self.meta, self.origin, flush=flush)
        return parse_lsn(position) if position else 0

    def _advance_origin(self, pipe: Pipeline, lsn: int) -> None:
        """Nothing left to apply up to `lsn`: record it (idle source, filtered changes).

        An empty transaction does not write its origin progress, so this one takes an
        xid (txid_current) to make a real commit carrying the position.
        """
        pipe.execute(
            ORIGIN_SETUP_SQL,
            [format_lsn(lsn).encode(), b"now", self._previous],
            Ctx("origin"),
        )
        pipe.execute("SELECT txid_current()", (), Ctx("xid"))
        try:
            pipe.sync_and_wait()
        except CommandFailed as exc:
            self._fail(pipe, exc)
        self.applied_lsn = lsn
        self._previous = format_lsn(lsn).encode()
        self.on_progress(lsn, 0)

    # -- one transaction ----------------------------------------------------------------
    def _changes(self, entry: TxnEntry) -> Iterator[Change]:
        """The transaction's row changes, read from the spool."""
        for lsn, payload in self.reader.changes(entry, self._limits.get(entry.file_no, 0)):
            try:
                change = self.decode(payload, lsn)
            except DecodeError as exc:
                raise ApplyError(
                    f"cannot read transaction {entry.xid} (commit "
                    f"{format_lsn(entry.commit_lsn)}): {exc}"
                ) from None
            if change is not None:
                yield change

    def _apply_txn(
        self, pipe: Pipeline, entry: TxnEntry, changes: list[Change] | None = None
    ) -> int:
        """Queue one source transaction as one target transaction; returns the number
        of the sync that commits it.

        Small transactions run as the implicit transaction the pipeline's Sync commits
        (two statements fewer per transaction); big ones get BEGIN/COMMIT so they can
        sync halfway without committing. Each ends with the origin setup guarded by a
        continuity check: it fails unless the previous transaction committed, so after
        a failure nothing later in the pipeline is applied. When the transaction ends
        with a one-row insert, that insert carries the origin setup.

        With --group-txns N, up to N small transactions waiting in a row share one
        target transaction (the sync and origin setup come after the last of them),
        each whole and in commit order: the origin records the last one's commit.
        """
        explicit = entry.changes > self._implicit_max
        if self._group and (explicit or self._group_changes + entry.changes > GROUP_MAX_CHANGES):
            self._close_group(pipe)
        if explicit:
            pipe.execute("BEGIN", (), Ctx("begin", (entry, None)))
        if not self._group:
            self._group_sent = pipe.executed
        self._group += 1
        self._group_changes += entry.changes
        close = explicit or self._group >= self.group_txns
        origin = self._origin_params(entry) if close else None
        runs = self._runs
        for change in self._changes(entry) if changes is None else changes:
            if change.kind == "I":
                table = self._target_for(change, entry)
                if table is None:
                    continue
                run = runs.get(id(table))
                if run is not None and (run.kind != "I" or run.columns != change.columns):
                    self._send(pipe, run)
                    run = None
                if run is None:
                    if runs and (not self._reorder or len(runs) >= MAX_WAITING_TABLES):
                        self._send_all(pipe)
                    run = runs[id(table)] = _Run("I", table, change.columns)
                run.add(change, entry)
                if len(run.rows) >= MAX_RUN_ROWS:
                    self._send(pipe, run)
                continue
            if change.kind == "T":
                self._send_all(pipe)
                self._truncate(pipe, entry, change)
                continue
            table = self._target_for(change, entry)
            if table is None:
                continue
            run = runs.get(id(table)) if runs else None
            if (
                change.kind == "U"
                and not change.key_columns  # the key stays (no old key sent)
                and table.update_rows
                and self._reorder
            ):
                # An update of a row no waiting update of this table touches joins them.
                if run is not None and run.kind == "U" and run.columns == change.columns:
                    assert run.key_of is not None
                    row_key = run.key_of(change.values)
                    if row_key not in run.keys:
                        run.keys.add(row_key)
                        run.add(change, entry)
                        if len(run.rows) >= MAX_RUN_ROWS:
                            self._send(pipe, run)
                        continue
                if run is not None:
                    self._send(pipe, run)
                run = self._update_run(table, change)
                if run is not None:
                    if len(runs) >= MAX_WAITING_TABLES:
                        self._send_all(pipe)
                    runs[id(table)] = run
                    run.keys.add(run.key_of(change.values))  # type: ignore[misc]
                    run.add(change, entry)
                    continue
            elif runs:
                # This table's own changes go first; another table's may wait, unless
                # something on the target could see the order.
                if not self._reorder:
                    self._send_all(pipe)
                elif run is not None:
                    self._send(pipe, run)
            if change.kind == "U":
                self._update(pipe, entry, table, change)
            else:
                self._delete(pipe, entry, table, change)
            if explicit and pipe.queued >= SYNC_EVERY_STATEMENTS:
                pipe.sync()  # bounded memory inside huge transactions
        if origin is None:
            if not self._reorder:
                self._send_all(pipe)
            self._group_last = entry
            return pipe.syncs_sent + 1  # the sync that will close the group
        if not self._send_all(pipe, origin):
            self._queue_origin(pipe, entry, origin)
        if explicit:
            pipe.execute("COMMIT", (), Ctx("commit", (entry, None)))
        return self._synced(pipe, origin[0])

    def _origin_params(self, entry: TxnEntry) -> list[bytes]:
        """The origin setup's parameters for a target transaction ending with `entry`:
        its commit LSN and time, and the previous one's commit (the continuity check)."""
        commit = format_lsn(entry.commit_lsn).encode()
        return [commit, commit_time_text(entry.commit_time).encode(), self._previous]

    def _queue_origin(self, pipe: Pipeline, entry: TxnEntry, origin: list[bytes]) -> None:
        """The origin setup as a statement of its own, ending the open transaction."""
        empty = pipe.executed == self._group_sent
        pipe.execute(ORIGIN_SETUP_SQL, origin, Ctx("origin", (entry, None)))
        if empty:
            # Nothing in scope changed: an xid makes the commit (and its origin
            # position) real, which the next transaction's continuity check relies on.
            pipe.execute("SELECT txid_current()", (), Ctx("xid", (entry, None)))

    def _synced(self, pipe: Pipeline, commit: bytes) -> int:
        """Sync: the open transaction (or group) commits there, at `commit`."""
        self._previous = commit
        self._group = self._group_changes = 0
        self._group_last = None
        return pipe.sync()

    def _close_group(self, pipe: Pipeline) -> None:
        """Commit the open group (--group-txns) at its last transaction, if there is one:
        before waiting for the target, pausing, stopping, or a transaction that cannot
        join it."""
        entry = self._group_last
        if entry is None:
            assert not self._runs, "inserts waiting outside a group"
            return
        self._send_all(pipe)
        origin = self._origin_params(entry)
        self._queue_origin(pipe, entry, origin)
        self._synced(pipe, origin[0])

    def _target_for(self, change: Change, entry: TxnEntry) -> TargetTable | None:
        table = self.table(change.schema, change.table)
        if table is None or entry.commit_lsn <= table.copy_lsn:
            return None
        return table

    def _columns(self, table: TargetTable, change: Change, names: list[str]) -> None:
        for name in names:
            if name not in table.columns:
                raise ApplyError(
                    f"apply stopped: {change.describe()} has column {name}, which table "
                    f"{table.qualname} does not have on the target",
                    fix="add the column on the target (DDL is not replicated), then --resume",
                )

    def _may_reorder(self) -> bool:
        """Whether a table's inserts may be sent after later changes of other tables in
        the same target transaction: nothing on the target sees that order (under
        session_replication_role = replica only ALWAYS and REPLICA triggers fire, and
        rules always do); unique and exclusion constraints are per table, whose own
        order is kept, and deferred ones are checked at commit."""
        assert self.meta is not None
        row = self.meta.execute(ORDER_OBSERVERS_SQL).fetchone()
        if row and row[0]:
            log.info(
                "apply sends each change in commit order: the target has %s, which could "
                "see the order of changes between tables",
                row[0],
            )
            return False
        return True

    def _send_all(self, pipe: Pipeline, origin: list[bytes] | None = None) -> bool:
        """Queue every waiting insert. With `origin` (the origin setup's parameters), the
        last statement carries the origin setup when it inserts one row: returns
        whether it did."""
        fused = False
        while self._runs:
            run = next(iter(self._runs.values()))
            fused = self._send(pipe, run, origin if len(self._runs) == 1 else None)
        return fused

    def _send(self, pipe: Pipeline, run: _Run, origin: list[bytes] | None = None) -> bool:
        """Queue one table's waiting changes (see `_send_all`)."""
        del self._runs[id(run.table)]
        if run.kind == "U":
            self._send_updates(pipe, run)
            return False
        return self._send_inserts(pipe, run, origin)

    def _update_run(self, table: TargetTable, change: Change) -> _Run | None:
        """A new run of updates of the table starting with `change`, or None when
        updates of its columns cannot go together (a key column not sent, as an
        unchanged TOASTed value; nothing to set)."""
        shape = ("UR", tuple(change.columns))
        if shape not in table.plans:
            self._columns(table, change, change.columns)
            at = {c: i for i, c in enumerate(change.columns)}
            settable = tuple(
                c
                for c in change.columns
                if not table.columns[c].generated and not table.columns[c].always_identity
            )
            ok = settable and all(k in at for k in table.key)
            table.plans[shape] = (
                (shape[1], settable, itemgetter(*(at[k] for k in table.key))) if ok else ()
            )
        plan = table.plans[shape]
        if not plan:
            return None
        return _Run("U", table, change.columns, key_of=plan[2])

    def _send_updates(self, pipe: Pipeline, run: _Run) -> None:
        """Queue a run of updates of different rows as few statements (one row: the
        plain UPDATE, whose failure names its change)."""
        table, rows = run.table, run.rows
        columns, settable, _ = table.plans[("UR", tuple(run.columns))]
        start = 0
        for size in batch_sizes(len(rows), len(columns)):
            chunk = rows[start : start + size]
            entry = run.entry_at(start)
            start += size
            if size == 1:
                self._update(pipe, entry, table, chunk[0])
                continue
            params: list[bytes | None] = []
            for change in chunk:
                params += change.values
            text = update_rows_sql(table, columns, settable, size)
            pipe.execute(text, params, Ctx("update", (entry, chunk), size))

    def _send_inserts(self, pipe: Pipeline, run: _Run, origin: list[bytes] | None = None) -> bool:
        """Queue a run of inserts as multi-row inserts (see `_send_all`)."""
        table, rows = run.table, run.rows
        first = rows[0]
        shape = ("I", tuple(run.columns))
        plan = table.plans.get(shape)
        if plan is None:
            self._columns(table, first, first.columns)
            keep = [i for i, c in enumerate(first.columns) if not table.columns[c].generated]
            plan = (tuple(first.columns[i] for i in keep), keep)
            table.plans[shape] = plan
        columns, keep = plan
        all_columns = len(keep) == len(first.columns)
        start = 0
        sizes = batch_sizes(len(rows), len(columns))
        fused = origin is not None and sizes[-1] == 1 and bool(columns)
        for size in sizes:
            chunk = rows[start : start + size]
            entry = run.entry_at(start)
            start += size
            params: list[bytes | None] = []
            if all_columns:
                for change in chunk:
                    params += change.values
            else:
                for change in chunk:
                    values = change.values
                    params += [values[i] for i in keep]
            if fused and start == len(rows):
                params += origin  # type: ignore[arg-type]
                text = insert_origin_sql(table, columns)
            else:
                text = insert_sql(table, columns, size)
            pipe.execute(text, params, Ctx("insert", (entry, chunk[0])))
        return fused

    def _where_plan(
        self, table: TargetTable, change: Change
    ) -> tuple[tuple[str, ...], list[int], bool, bool, tuple[str, ...]]:
        """Which columns identify the row, where their values come from, FULL or not.

        Returns (columns, positions, from_key, full, nulls): positions index
        change.key_values when from_key, else change.values (key unchanged, so no old
        key was sent); nulls, under FULL, the columns the old row holds NULL in.
        """
        full_row = table.identity == "f" and self.old_row_omits_nulls
        if change.key_columns or full_row:
            self._columns(table, change, change.key_columns)
            # The old key is the identity: a unique key, or (FULL) the whole old row.
            full = table.identity == "f" or set(change.key_columns) != set(table.key)
            cols = tuple(change.key_columns)
            # test_decoding leaves NULL columns out of an old row (all of them when the
            # whole row is NULL): under FULL, every column it does not list is NULL, and
            # must be matched as such, or another row would be changed.
            nulls = tuple(c for c in table.columns if c not in cols) if full_row else ()
            return cols, list(range(len(cols))), True, full, nulls
        if not table.key:
            raise ApplyError(
                f"apply stopped: {change.describe()}: table {table.qualname} has no replica "
                "identity (no primary key, REPLICA IDENTITY NOTHING), so its updates and "
                "deletes cannot be replicated",
                fix="pgferry fix-replica-identity on the source, then restart the migration",
            )
        positions = {c: i for i, c in enumerate(change.columns)}
        missing = [c for c in table.key if c not in positions]
        if missing:
            raise ApplyError(
                f"apply stopped: {change.describe()} lacks key column(s) {', '.join(missing)} of "
                f"{table.qualname}"
            )
        return table.key, [positions[c] for c in table.key], False, False, ()

    def _update(self, pipe: Pipeline, entry: TxnEntry, table: TargetTable, change: Change) -> None:
        shape = ("U", tuple(change.columns), tuple(change.key_columns))
        plan = table.plans.get(shape)
        if plan is None:
            self._columns(table, change, change.columns)
            where_cols, where_idx, from_key, full, nulls = self._where_plan(table, change)
            set_idx = [
                i
                for i, c in enumerate(change.columns)
                if not table.columns[c].generated and not table.columns[c].always_identity
            ]
            set_cols = tuple(change.columns[i] for i in set_idx)
            text = update_sql(table, set_cols, where_cols, full, nulls) if set_idx else None
            # The parameters, picked from the values followed by the old key's values
            # (a change of this shape always has len(change.columns) values).
            offset = len(change.columns) if from_key else 0
            plan = (text, values_picker(set_idx + [offset + i for i in where_idx]), from_key)
            table.plans[shape] = plan
        text, pick, from_key = plan
        if text is None:
            return
        values = change.values + change.key_values if from_key else change.values
        pipe.execute(text, pick(values), Ctx("update", (entry, change), 1))

    def _delete(self, pipe: Pipeline, entry: TxnEntry, table: TargetTable, change: Change) -> None:
        shape = ("D", (), tuple(change.key_columns))
        plan = table.plans.get(shape)
        if plan is None:
            where_cols, where_idx, from_key, full, nulls = self._where_plan(table, change)
            plan = (delete_sql(table, where_cols, full, nulls), values_picker(where_idx), from_key)
            table.plans[shape] = plan
        text, pick, from_key = plan
        keys = change.key_values if from_key else change.values
        pipe.execute(text, pick(keys), Ctx("delete", (entry, change), 1))

    def _truncate(self, pipe: Pipeline, entry: TxnEntry, change: Change) -> None:
        tables = []
        for schema, name in change.relations:
            table = self.table(schema, name)
            if table is not None and entry.commit_lsn > table.copy_lsn:
                tables.append(table)
        if tables:
            pipe.simple(
                truncate_sql(tables, change.restart_seqs).encode(), Ctx("truncate", (entry, change))
            )
