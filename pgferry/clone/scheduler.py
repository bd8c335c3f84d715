"""The data phase: bounded worker pools fed from the state store, in dependency order.

Pools and their sizes: copy (--table-jobs), index and constraint (--index-jobs), vacuum
(--table-jobs), large objects (--large-objects-jobs), sequences (1). The scheduler thread
is the only one that decides what runs next and the only one that records outcomes:
a table's indexes start as soon as all its parts are copied, its constraints once its
indexes are built, its VACUUM once both are done.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from pgferry import events
from pgferry.catalog.plan import MAX_PARALLEL_MAINTENANCE
from pgferry.clone.workers import RunContext, UnitOutcome, WorkerSession, run_unit
from pgferry.errors import Interrupted, StepFailed, TableRewritten
from pgferry.state.store import Status, UnitKind, UnitRow

log = logging.getLogger(__name__)

PROGRESS_FLUSH_SECONDS = 0.25
BIG_INDEX_TABLE_BYTES = 256 * 1024 * 1024  # below this, parallel index builds do not pay

# Which pool runs which kind of unit, and the phase each kind reports to.
POOL_OF = {
    UnitKind.COPY: "copy",
    UnitKind.INDEX: "index",
    UnitKind.CONSTRAINT: "index",
    UnitKind.VACUUM: "vacuum",
    UnitKind.BLOBS: "blobs",
    UnitKind.SEQUENCE: "sequences",
}
PHASE_OF = {
    UnitKind.COPY: "copy",
    UnitKind.BLOBS: "large-objects",
    UnitKind.INDEX: "indexes",
    UnitKind.CONSTRAINT: "constraints",
    UnitKind.VACUUM: "vacuum",
    UnitKind.SEQUENCE: "sequences",
}


@dataclass
class Pool:
    name: str
    size: int
    inbox: queue.Queue[tuple[UnitRow, int] | None] = field(default_factory=queue.Queue)
    running: int = 0
    threads: list[threading.Thread] = field(default_factory=list)


@dataclass
class ProgressCounts:
    """Counts the progress display needs (one consistent read per tick)."""

    done: dict[UnitKind, int]
    total: dict[UnitKind, int]
    running: dict[UnitKind, list[str]]
    bytes_done: int
    bytes_total: int
    tables_done: int
    tables_total: int
    failed: int


class Scheduler:
    def __init__(
        self,
        ctx: RunContext,
        sizes: dict[str, int],
        *,
        on_tick: Callable[[ProgressCounts], None] | None = None,
        kinds: frozenset[UnitKind] = frozenset(UnitKind),
    ) -> None:
        self.ctx = ctx
        # The kinds of unit this run does; the others' units are left as they are, and
        # count as met where they are a dependency (copy indexes after copy table-data).
        self.kinds = kinds
        self.store = ctx.store
        self.on_tick = on_tick
        self.pools = {name: Pool(name, max(1, size)) for name, size in sizes.items()}
        self.results: queue.Queue[UnitOutcome] = queue.Queue()
        self.units: dict[int, UnitRow] = {}
        self.status: dict[int, Status] = {}
        self.by_table: dict[int, dict[UnitKind, list[int]]] = defaultdict(lambda: defaultdict(list))
        self.failures: list[tuple[UnitRow, str]] = []
        self.only_rewritten = True  # every failure so far: a table rewritten after the snapshot
        self.copied_bytes = 0  # bytes of the copy units done (this run and earlier ones)
        self.phase_started: set[str] = set()

    # -- setup --------------------------------------------------------------------------
    def load(self) -> None:
        for u in self.store.units():
            if u.kind not in self.kinds:
                continue
            if u.kind == UnitKind.COPY and u.status == Status.DONE:
                self.copied_bytes += u.bytes
            self.units[u.id] = u
            self.status[u.id] = u.status
            if u.table_oid:
                self.by_table[u.table_oid][u.kind].append(u.id)
        for name in {PHASE_OF[u.kind] for u in self.units.values()}:
            if all(self.status[i] == Status.DONE for i in self._ids_of_phase(name)):
                self.phase_started.add(name)

    def _ids_of_phase(self, phase: str) -> list[int]:
        return [i for i, u in self.units.items() if PHASE_OF[u.kind] == phase]

    # -- readiness ----------------------------------------------------------------------
    def _all_done(self, ids: list[int]) -> bool:
        return all(self.status[i] == Status.DONE for i in ids)

    def ready(self, unit: UnitRow) -> bool:
        if self.status[unit.id] != Status.PENDING:
            return False
        deps = self.by_table.get(unit.table_oid, {})
        if unit.kind == UnitKind.INDEX:
            return self._all_done(deps.get(UnitKind.COPY, []))
        if unit.kind == UnitKind.CONSTRAINT:
            return self._all_done(deps.get(UnitKind.COPY, [])) and self._all_done(
                deps.get(UnitKind.INDEX, [])
            )
        if unit.kind == UnitKind.VACUUM:
            return all(
                self._all_done(deps.get(k, []))
                for k in (UnitKind.COPY, UnitKind.INDEX, UnitKind.CONSTRAINT)
            )
        return True

    # -- running ------------------------------------------------------------------------
    def run(self) -> None:
        """Run every pending unit; raise StepFailed / Interrupted when it cannot finish."""
        self.load()
        for pool in self.pools.values():
            for n in range(pool.size):
                t = threading.Thread(
                    target=self._worker,
                    args=(pool, n + 1),
                    name=f"{pool.name}-{n + 1}",
                    daemon=True,
                )
                t.start()
                pool.threads.append(t)
        stopping = cancelled = False
        last_flush = 0.0
        try:
            while True:
                if self.ctx.stop.is_set() and not stopping:
                    stopping = True
                    self.ctx.cancel_active()
                if not stopping and not self.failures:
                    self._dispatch()
                elif self.failures and self.ctx.fail_fast and not cancelled:
                    cancelled = True
                    self.ctx.cancel_active()
                running = sum(p.running for p in self.pools.values())
                if running == 0 and (stopping or self.failures or not self._any_ready()):
                    break
                try:
                    outcome = self.results.get(timeout=PROGRESS_FLUSH_SECONDS)
                except queue.Empty:
                    outcome = None
                if outcome is not None:
                    self._record(outcome, stopping or self.ctx.stop.is_set())
                now = time.monotonic()
                if now - last_flush >= PROGRESS_FLUSH_SECONDS:
                    last_flush = now
                    self._flush_progress()
        finally:
            for pool in self.pools.values():
                for _ in pool.threads:
                    pool.inbox.put(None)
            self._flush_progress()
        if stopping:
            raise Interrupted("stopped; the work directory is resumable (--resume)")
        if self.failures:
            unit, error = self.failures[0]
            more = f" ({len(self.failures) - 1} more failures)" if len(self.failures) > 1 else ""
            raise (TableRewritten if self.only_rewritten else StepFailed)(
                f"{unit.kind} {unit.label} failed: {error}{more}",
                fix="fix the cause, then run the same command with --resume",
            )
        left = [u for u, s in self.status.items() if s != Status.DONE]
        if left:
            raise StepFailed(f"{len(left)} units could not run (a dependency failed)")

    def _any_ready(self) -> bool:
        return any(self.ready(u) for u in self.units.values())

    def _dispatch(self) -> None:
        for uid in sorted(self.units):
            unit = self.units[uid]
            pool = self.pools[POOL_OF[unit.kind]]
            if pool.running >= pool.size or not self.ready(unit):
                continue
            self.store.unit_running(uid, os.getpid())
            self.status[uid] = Status.RUNNING
            pool.running += 1
            self._phase_running(unit.kind)
            pool.inbox.put((unit, self._parallel_workers(unit, pool)))

    def _parallel_workers(self, unit: UnitRow, pool: Pool) -> int:
        """Give a big index build spare CPU when few builds are left to share it with."""
        if unit.kind != UnitKind.INDEX:
            return 0
        table = self.ctx.catalog.table(unit.table_oid)
        if table.bytes < BIG_INDEX_TABLE_BYTES:
            return 0
        waiting = sum(
            1
            for u in self.units.values()
            if POOL_OF[u.kind] == "index" and self.status[u.id] == Status.PENDING
        )
        copying = sum(
            1
            for u in self.units.values()
            if u.kind == UnitKind.COPY and self.status[u.id] != Status.DONE
        )
        spare = pool.size - pool.running - waiting
        if copying:
            return 0
        return max(0, min(spare, MAX_PARALLEL_MAINTENANCE))

    def _worker(self, pool: Pool, n: int) -> None:
        session = WorkerSession(self.ctx, f"{pool.name}-{n}")
        try:
            while True:
                item = pool.inbox.get()
                if item is None:
                    return
                unit, parallel = item
                unit = self.store.unit(unit.id)
                self.results.put(run_unit(session, unit, parallel))
        finally:
            session.close()

    def _record(self, outcome: UnitOutcome, stopping: bool) -> None:
        unit = outcome.unit
        pool = self.pools[POOL_OF[unit.kind]]
        pool.running -= 1
        self.ctx.progress.pop(unit.id, None)
        if outcome.ok:
            self.store.unit_done(unit.id, bytes_=outcome.bytes, rows=outcome.rows)
            if unit.kind == UnitKind.COPY:
                self.copied_bytes += outcome.bytes
            self.status[unit.id] = Status.DONE
            if outcome.note:
                log.debug("%s %s: %s", unit.kind, unit.label, outcome.note)
            self._after_done(unit)
            return
        if stopping:
            self.store.units_reset([unit.id])
            self.status[unit.id] = Status.PENDING
            return
        message = describe_error(outcome.error)
        self.store.unit_failed(unit.id, message)
        self.status[unit.id] = Status.FAILED
        self.failures.append((unit, message))
        if not isinstance(outcome.error, TableRewritten):
            self.only_rewritten = False
        log.error("%s %s failed: %s", unit.kind, unit.label, message)

    def _after_done(self, unit: UnitRow) -> None:
        if unit.kind == UnitKind.COPY:
            ids = self.by_table[unit.table_oid][UnitKind.COPY]
            if self._all_done(ids):
                self.store.set_table(unit.table_oid, status=str(Status.DONE))
        phase = PHASE_OF[unit.kind]
        ids = self._ids_of_phase(phase)
        if self._all_done(ids):
            units = [self.units[i] for i in ids]
            rows = {r.id: r for r in self.store.units(unit.kind)}
            cumulative = sum((rows[u.id].duration or 0.0) for u in units if u.id in rows)
            total = sum(rows[u.id].bytes for u in units if u.id in rows)
            self.store.phase_done(phase, cumulative=cumulative, bytes_=total)
            events.emit("phase_finished", f"phase {phase} finished", phase=phase)

    def _phase_running(self, kind: UnitKind) -> None:
        phase = PHASE_OF[kind]
        if phase not in self.phase_started:
            self.phase_started.add(phase)
            units = sum(1 for u in self.units.values() if PHASE_OF[u.kind] == phase)
            size = self.pools[POOL_OF[kind]].size
            self.store.phase_start(phase, concurrency=min(size, units))
            events.emit("phase_started", f"phase {phase} started", phase=phase)

    def _flush_progress(self) -> None:
        progress = dict(self.ctx.progress)
        if progress:
            self.store.unit_progress(progress)
        if self.on_tick is not None:
            self.on_tick(self.snapshot())

    def snapshot(self) -> ProgressCounts:
        done: dict[UnitKind, int] = defaultdict(int)
        total: dict[UnitKind, int] = defaultdict(int)
        running: dict[UnitKind, list[str]] = defaultdict(list)
        for uid, u in self.units.items():
            total[u.kind] += 1
            st = self.status[uid]
            if st == Status.DONE:
                done[u.kind] += 1
            elif st == Status.RUNNING:
                running[u.kind].append(u.label)
        tables = {u.table_oid for u in self.units.values() if u.kind == UnitKind.COPY}
        tables_done = sum(1 for t in tables if self._all_done(self.by_table[t][UnitKind.COPY]))
        bytes_total = sum(t.bytes for t in self.ctx.catalog.tables if t.oid in tables)
        bytes_done = self.copied_bytes + sum(self.ctx.progress.values())
        return ProgressCounts(
            done=dict(done),
            total=dict(total),
            running=dict(running),
            bytes_done=bytes_done,
            bytes_total=bytes_total,
            tables_done=tables_done,
            tables_total=len(tables),
            failed=len(self.failures),
        )


def kinds_of_steps(steps: frozenset[str]) -> frozenset[UnitKind]:
    """The unit kinds a run of these phases does."""
    return frozenset(kind for kind, phase in PHASE_OF.items() if phase in steps)


def describe_error(exc: BaseException | None) -> str:
    """One line: SQLSTATE and message for server errors, the message otherwise."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or "-----"
        primary = exc.diag.message_primary if exc.diag else None
        text = (
            primary or str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        return f"[{state}] {text}"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
