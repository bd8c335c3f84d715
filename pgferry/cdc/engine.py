"""Change data capture for one work directory: slot, origin, receive, apply, cutover.

Used by `clone --follow` (the slot's exported snapshot is the clone's snapshot; changes
are prefetched during the copy and applied after it) and by `follow` on its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import psycopg

from pgferry import events
from pgferry.admin.replica_identity import default_plugin, publication_refusal, read_tables
from pgferry.catalog.filters import Filters, no_filters
from pgferry.catalog.model import Sequence
from pgferry.catalog.sequences import read_sequence, set_sequence
from pgferry.cdc.apply import Applier, ApplyConflict, ApplyInterrupted, ApplyScope
from pgferry.cdc.protocol import create_slot, current_wal_lsn
from pgferry.cdc.publication import UnpublishedWatch, not_published
from pgferry.cdc.receive import RETRY_SECONDS, ReceiveOptions
from pgferry.cdc.receive_process import ReceiveJob, ReceiveProcess
from pgferry.cdc.slot_watch import LOST_FIX, SlotWatch, lost_message
from pgferry.checks.verify import run_verify
from pgferry.errors import (
    ConnectionFailed,
    InputError,
    Interrupted,
    StepFailed,
)
from pgferry.faults import apply_report_seconds, crash_point
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.lsn import format_lsn, lsn_or_none, parse_lsn
from pgferry.pg.plugins import DEFAULT_PLUGIN
from pgferry.pg.replication import (
    advance_origin,
    create_origin,
    create_publication,
    drop_origin,
    drop_publication,
    drop_slot,
    lane_origins,
    origin_exists,
    publication_exists,
    slot_exists,
    slot_health,
    slot_user,
)
from pgferry.pg.snapshot import Snapshot
from pgferry.state.store import Meta, Sentinel, StateStore
from pgferry.state.workdir import WorkDir
from pgferry.text import human_bytes, listed

log = logging.getLogger(__name__)
# How often apply logs its progress while it applies (a test sets it lower).
APPLY_REPORT_SECONDS = apply_report_seconds()

MAX_GROUP_TXNS = 256  # below apply's in-flight margin: a group never holds up a wait
# Waiting transactions share target transactions by default (a live stream is applied one
# by one: a group never waits for more); 16-64 measured best, bench/README.md.
DEFAULT_GROUP_TXNS = 32
# --apply-jobs: target sessions applying at once (cdc/parallel.py).
DEFAULT_APPLY_JOBS = 1
MAX_APPLY_JOBS = 64


@dataclass(frozen=True)
class CdcOptions:
    slot: str = "pgferry"
    plugin: str = DEFAULT_PLUGIN
    origin: str = "pgferry"
    endpos: int | None = None
    numeric_as_string: bool = False
    group_txns: int = DEFAULT_GROUP_TXNS  # source transactions per target transaction, at most
    apply_jobs: int = DEFAULT_APPLY_JOBS  # target sessions applying at once
    plugin_chosen: bool = False  # False: pgoutput by default, which settle_plugin may change


def settle_plugin(source: ConnInfo, filters: Filters, options: CdcOptions) -> CdcOptions:
    """The plugin of a new slot: the one asked for, else pgoutput where pgferry can publish
    the tables in scope, else test_decoding (said once, with what would allow pgoutput)."""
    if options.plugin_chosen or options.plugin != "pgoutput":
        return options
    with source.connect("pgferry plugin") as conn:
        plugin, why = default_plugin(read_tables(conn, filters), conn.info.user)
    if why is not None:
        log.warning("using the test_decoding plugin, not pgoutput: %s", why)
    return replace(options, plugin=plugin, plugin_chosen=True)


def drop_interrupted_setup(source: ConnInfo, target: ConnInfo, store: StateStore) -> None:
    """Before starting afresh in DIR: drop the slot and origin an earlier attempt there
    created (recorded in its store before creating them) and nothing uses now. Left in
    place they would block the new start, and only this directory's run can use them."""
    created = store.get_json(Meta.CDC_CREATED) or {}
    slot, origin = created.get("slot"), created.get("origin")
    publication = created.get("publication")
    if slot:
        with source.connect("pgferry cleanup") as conn:
            exists, pid = slot_user(conn, slot)
            if exists:
                if pid is not None:
                    raise InputError(
                        f"replication slot {slot}, created by the earlier attempt in "
                        f"{store.path.parent}, is in use (walsender PID {pid})",
                        fix="stop what uses it, or drop it with pgferry cleanup",
                    )
                drop_slot(conn, slot)
                log.info("dropped replication slot %s, left by the earlier attempt", slot)
    if publication:
        with source.connect("pgferry cleanup") as conn:
            if drop_publication(conn, publication):
                log.info("dropped publication %s, left by the earlier attempt", publication)
    if origin:
        with target.connect("pgferry cleanup") as conn:
            for name in lane_origins(conn, origin):
                drop_origin(conn, name)
                log.info("dropped replication origin %s, left by the earlier attempt", name)
    store.set_json(Meta.CDC_CREATED, {})


# The lag_above event: apply this far behind what is received (PGFERRY_LAG_EVENT_BYTES),
# said at most every LAG_EVENT_REPEAT_SECONDS.
LAG_EVENT_BYTES = int(os.environ.get("PGFERRY_LAG_EVENT_BYTES", str(1024**3)))
LAG_EVENT_REPEAT_SECONDS = 600.0


class Cdc:
    """The CDC side of a migration in DIR."""

    def __init__(
        self,
        source: ConnInfo,
        target: ConnInfo,
        workdir: WorkDir,
        store: StateStore,
        options: CdcOptions,
        stop: threading.Event,
    ) -> None:
        self.source = source
        self.target = target
        self.workdir = workdir
        self.store = store
        self.options = options
        self.stop = stop
        self.holder: psycopg.Connection[Any] | None = None
        self.receiver: ReceiveProcess | None = None
        self._sentinel_row: Sentinel | None = None
        self._sentinel_at = 0.0
        self._pending_txns = 0
        self._pending_lsn = 0
        self._recorded_lsn = -1  # the replay_lsn last written to the sentinel
        self._progress_at = 0.0
        # The progress line apply logs every APPLY_REPORT_SECONDS: since when, from what.
        self._report_at = time.monotonic()
        self._report_txns: int | None = None
        self._caught_up_said = False  # the caught_up event is posted once per process
        self._lag_said_at = 0.0
        self.slot_watch: SlotWatch | None = None

    # -- setup ----------------------------------------------------------------------------
    @property
    def is_set_up(self) -> bool:
        return self.store.get_meta(Meta.CDC_SLOT) is not None

    def check_fresh(self) -> None:
        """Before a new migration: no leftover slot on the source, no origin on the target."""
        with self.source.connect("pgferry check") as conn:
            if slot_exists(conn, self.options.slot):
                raise InputError(
                    f"replication slot {self.options.slot} already exists on the source",
                    fix="drop it with pgferry cleanup (if it is a leftover), or use --slot-name",
                )
            if self.options.plugin == "pgoutput" and publication_exists(conn, self.options.slot):
                raise InputError(
                    f"publication {self.options.slot} already exists on the source",
                    fix="drop it with pgferry cleanup (if it is a leftover), or use --slot-name",
                )
        with self.target.connect("pgferry check") as conn:
            if origin_exists(conn, self.options.origin):
                raise InputError(
                    f"replication origin {self.options.origin} already exists on the target",
                    fix="drop it with pgferry cleanup (if it is a leftover), or use --origin",
                )

    def create(self, filters: Filters | None = None) -> Snapshot:
        """Create the slot and export its snapshot: the one the whole copy uses.

        The slot and origin names are recorded before they are created, and the setup
        counts as done (`is_set_up`) only once both exist: a start interrupted in between
        leaves objects `drop_interrupted_setup` knows are this directory's own."""
        filters = filters or no_filters()
        self.options = settle_plugin(self.source, filters, self.options)
        created = {"slot": self.options.slot, "origin": self.options.origin}
        self.store.set_json(Meta.CDC_CREATED, created)
        if self.options.plugin == "pgoutput":
            self._publish(filters, created)
        conn = self.source.connect_replication("pgferry snapshot")
        try:
            slot = create_slot(conn, self.options.slot, self.options.plugin)
        except psycopg.Error as exc:
            conn.close()
            self.store.set_json(Meta.CDC_CREATED, {})  # not ours: never drop it
            raise StepFailed(
                f"cannot create replication slot {self.options.slot}: {str(exc).strip()}",
                fix="check wal_level = logical, max_replication_slots and the REPLICATION "
                "privilege of the source role",
            ) from None
        self.holder = conn
        if self.options.plugin == "pgoutput":
            self._check_published(filters)
        start = format_lsn(slot.consistent_point)
        self._create_origin(slot.consistent_point)
        crash_point("cdc-setup")  # both exist, the setup is not recorded yet
        self.store.set_meta(Meta.CDC_PLUGIN, slot.plugin)
        self.store.set_meta(Meta.CDC_ORIGIN, self.options.origin)
        self.store.set_meta(
            Meta.CDC_NUMERIC_AS_STRING, "1" if self.options.numeric_as_string else "0"
        )
        endpos = format_lsn(self.options.endpos) if self.options.endpos else None
        earlier = self.store.sentinel()
        if endpos is None and earlier is not None and earlier.endpos:
            endpos = earlier.endpos  # set (stop-cdc) before this slot existed: kept
            if (lsn_or_none(endpos) or 0) < slot.consistent_point:
                log.warning(
                    "the end position %s was set before the slot was created at %s: the "
                    "copy holds the source as of %s",
                    endpos,
                    start,
                    start,
                )
        self.store.set_sentinel(
            startpos=start,
            endpos=endpos,
            apply=0,
            write_lsn=start,
            flush_lsn=start,
            replay_lsn=start,
        )
        self.store.set_meta(Meta.CDC_SLOT, slot.name)  # last: the setup is complete
        log.info(
            "created replication slot %s (%s) at %s, snapshot %s",
            slot.name,
            slot.plugin,
            start,
            slot.snapshot,
        )
        return Snapshot(name=slot.snapshot, lsn=start)

    def _publish(self, filters: Filters, created: dict[str, str]) -> None:
        """pgoutput sends the changes of the tables a publication names: one named after
        the slot, of exactly the tables in scope, created before the slot (decoding reads
        it as of each change, so it must be older than the slot's start)."""
        name = self.options.slot
        with self.source.connect("pgferry publication") as conn:
            tables = read_tables(conn, filters)
            refusal = publication_refusal(tables, conn.info.user)
            if refusal is not None:
                raise InputError(refusal.message, fix=refusal.fix)
            self.store.set_json(Meta.CDC_CREATED, {**created, "publication": name})
            create_publication(conn, name, [(t.schema, t.name) for t in tables])
        log.info("created publication %s of %d tables", name, len(tables))

    def _check_published(self, filters: Filters) -> None:
        """After the slot: a table created meanwhile is in the copy's scope but not
        published, and its changes would never arrive. Start over then."""
        missing = not_published(self.source, self.options.slot, filters)
        if missing:
            raise StepFailed(
                f"{len(missing)} table(s) were created while the replication slot was being "
                f"created and are not in publication {self.options.slot} ({listed(missing, 5)})",
                fix="run the same command again: it starts over",
            )

    def _create_origin(self, start: int) -> None:
        with self.target.connect("pgferry origin") as conn:
            for lane in lane_origins(conn, self.options.origin):
                if lane != self.options.origin:
                    # A parallel apply's lane left by an earlier migration of this name: its
                    # position would count as applied here.
                    drop_origin(conn, lane)
            if not origin_exists(conn, self.options.origin):
                create_origin(conn, self.options.origin, None)
            advance_origin(conn, self.options.origin, format_lsn(start))

    def ensure_origin(self) -> None:
        """On resume: the origin must still be there (its progress is the truth)."""
        with self.target.connect("pgferry origin") as conn:
            if not origin_exists(conn, self.options.origin):
                raise InputError(
                    f"replication origin {self.options.origin} is missing on the target: the "
                    "applied position is lost",
                    fix="start over: pgferry cleanup, empty the target, clone --follow --restart",
                )

    def ensure_slot(self) -> None:
        with self.source.connect("pgferry check") as conn:
            health = slot_health(conn, self.options.slot)
            if health is not None and health["wal_status"] == "lost":
                raise InputError(
                    lost_message(self.options.slot, "lost WAL it needed (wal_status lost)"),
                    fix=LOST_FIX,
                )
            if not slot_exists(conn, self.options.slot):
                raise InputError(
                    f"replication slot {self.options.slot} is missing on the source: changes "
                    "since it was dropped are lost",
                    fix="start over: pgferry cleanup, empty the target, clone --follow --restart",
                )

    def fresh_snapshot(self) -> Snapshot:
        """For work redone after a crash: a snapshot and the exact LSN it corresponds to.

        A temporary slot exports it; changes to the redone tables committed at or before
        its consistent point are in the copy, so apply skips them (like native logical
        replication's table sync).
        """
        conn = self.source.connect_replication("pgferry snapshot")
        name = f"pgferry_resync_{int(time.time())}"
        slot = create_slot(conn, name, "test_decoding", temporary=True)
        self.holder = conn
        log.info(
            "resume: new snapshot %s at %s for the work to redo",
            slot.snapshot,
            format_lsn(slot.consistent_point),
        )
        return Snapshot(name=slot.snapshot, lsn=format_lsn(slot.consistent_point))

    def release_snapshot(self) -> None:
        if self.holder is not None:
            self.holder.close()
            self.holder = None

    # -- running --------------------------------------------------------------------------
    def receive_options(self) -> ReceiveOptions:
        return ReceiveOptions(
            slot=self.store.get_meta(Meta.CDC_SLOT) or self.options.slot,
            plugin=self.store.get_meta(Meta.CDC_PLUGIN) or self.options.plugin,
            numeric_as_string=self.store.get_meta(Meta.CDC_NUMERIC_AS_STRING) == "1",
        )

    def start_receiver(self) -> None:
        """Receive into the spool from where the last run left off; with pgoutput, also
        watch for tables created in scope (the setup's filters) that are not published."""
        row = self.store.sentinel()
        if row is None:
            raise StepFailed(f"{self.store.path} has no CDC sentinel: the slot was never set up")
        start = lsn_or_none(row.flush_lsn) or lsn_or_none(row.startpos) or 0
        options = self.receive_options()
        watch = None
        stored = self.store.get_json(Meta.FOLLOW_FILTERS) or self.store.get_json(Meta.FILTERS)
        if options.plugin == "pgoutput" and stored is not None:
            watch = UnpublishedWatch(self.source, options.slot, stored)
        self.receiver = ReceiveProcess(
            ReceiveJob(self.source, options, self.workdir.cdc_dir, self.store.path, start, watch)
        )
        self.receiver.start()
        self.slot_watch = SlotWatch(self.source, options.slot, self.stop)
        self.slot_watch.start()

    def stop_receiver(self) -> None:
        if self.slot_watch is not None:
            self.slot_watch.finish()
        if self.receiver is not None:
            self.receiver.stop()
            self.receiver.join(timeout=60)

    def _wait_for_changes(self, seconds: float) -> None:
        """Apply is caught up: return once the receiver has made new transactions
        durable, after `seconds` at most (sooner on a stop)."""
        if not self._caught_up_said:
            self._caught_up_said = True
            events.emit("caught_up", "apply has caught up with the changes received")
        r = self.receiver
        if r is None or self.stop.is_set():
            self.stop.wait(seconds)
            return
        r.visible.wait(seconds)
        # Cleared after the wait, before apply scans the spool again: a transaction made
        # durable in between is found by that scan, and a later one sets it anew.
        r.visible.clear()

    def _received(self) -> int:
        if self.slot_watch is not None and self.slot_watch.lost is not None:
            raise StepFailed(self.slot_watch.lost, fix=LOST_FIX)
        r = self.receiver
        if r is not None and r.error is not None:
            raise r.error
        if r is None:  # stream catchup: what an earlier stream receive made durable
            row = self._sentinel()
            return (lsn_or_none(row.flush_lsn) or 0) if row is not None else 0
        return r.durable

    def _sentinel(self) -> Sentinel | None:
        """The sentinel row, re-read at most every 200 ms (apply asks per transaction)."""
        now = time.monotonic()
        if now - self._sentinel_at > 0.2:
            self._sentinel_row = self.store.sentinel()
            self._sentinel_at = now
        return self._sentinel_row

    def _endpos(self) -> int | None:
        row = self._sentinel()
        return lsn_or_none(row.endpos) if row is not None else None

    def _may_apply(self) -> bool:
        row = self._sentinel()
        return row.apply if row is not None else False

    def _progress(self, lsn: int, txns: int, *, force: bool = False) -> None:
        """Record the applied position (informational: the origin is the truth), at most
        twice a second."""
        self._pending_txns += txns
        self._pending_lsn = max(self._pending_lsn, lsn)
        now = time.monotonic()
        if not force and now - self._progress_at < 0.5:
            return
        if not self._pending_txns and self._pending_lsn == self._recorded_lsn:
            return  # nothing new (apply is idle and says so every 100 ms)
        self._progress_at = now
        self.store.set_sentinel(replay_lsn=format_lsn(self._pending_lsn))
        self._recorded_lsn = self._pending_lsn
        count = int(self.store.get_meta(Meta.CDC_APPLIED_TXNS, "0") or 0) + self._pending_txns
        if self._pending_txns:
            self.store.set_meta(Meta.CDC_APPLIED_TXNS, str(count))
            self._pending_txns = 0
        if now - self._report_at >= APPLY_REPORT_SECONDS:
            self._report(now, count)

    def _report(self, now: float, applied_txns: int) -> None:
        """One line on what apply is doing, for whoever watches the terminal or the log:
        transactions applied and their rate, and what is received but not applied yet."""
        if self._report_txns is not None:
            rate = (applied_txns - self._report_txns) / max(now - self._report_at, 0.001)
            row = self.store.sentinel()
            flushed = (lsn_or_none(row.flush_lsn) or 0) if row is not None else 0
            endpos = lsn_or_none(row.endpos) if row is not None else None
            behind = max(0, flushed - self._pending_lsn)
            if behind > LAG_EVENT_BYTES and now - self._lag_said_at > LAG_EVENT_REPEAT_SECONDS:
                self._lag_said_at = now
                events.emit(
                    "lag_above",
                    f"apply is {human_bytes(behind)} behind what was received",
                    backlog_bytes=behind,
                )
            log.info(
                "apply: %d transactions applied (%.0f/s over the last %.0fs), at %s; %s "
                "received and not applied yet%s",
                applied_txns,
                rate,
                now - self._report_at,
                format_lsn(self._pending_lsn),
                human_bytes(max(0, flushed - self._pending_lsn)),
                f"; end position {format_lsn(endpos)}" if endpos else "",
            )
        self._report_at, self._report_txns = now, applied_txns

    def apply_until_endpos(self, scope: ApplyScope) -> int:
        """Apply until the end position is reached (or a stop); returns the applied LSN.

        A lost target connection (restart, failover, a terminated backend) is retried
        with growing pauses, as the receiver does: apply starts again from the
        replication origin's position, so nothing is applied twice."""
        origin = self.store.get_meta(Meta.CDC_ORIGIN) or self.options.origin
        self.store.set_meta(Meta.CDC_GROUP_TXNS, str(self.options.group_txns))
        self._report_at = time.monotonic()
        self._report_txns = int(self.store.get_meta(Meta.CDC_APPLIED_TXNS, "0") or 0)
        log.info(
            "applying changes (set the end position with pgferry stop-cdc)%s",
            f"; up to {self.options.group_txns} source transactions per target transaction"
            if self.options.group_txns > 1
            else "",
        )
        attempt = applied = serial_until = 0
        while True:
            applier = Applier(
                self.target,
                origin,
                self.workdir.cdc_dir,
                self.receive_options().plugin,
                scope,
                endpos=self._endpos,
                may_apply=self._may_apply,
                received=self._received,
                on_progress=self._progress,
                stop=self.stop,
                group_txns=self.options.group_txns,
                wait_for_changes=self._wait_for_changes,
                apply_jobs=self.options.apply_jobs,
                serial_until=serial_until,
            )
            try:
                applied = applier.run()
                break
            except ApplyConflict as exc:
                # Nothing of it committed: again at once, one at a time past it.
                serial_until = max(serial_until, applier.dispatched_lsn)
                log.info("parallel apply: %s; applying again from the origins", exc)
                continue
            except (psycopg.OperationalError, ConnectionFailed, ApplyInterrupted) as exc:
                # ConnectionFailed: the target refuses connections for now (restarting,
                # in crash recovery, failing over): retried like a lost connection.
                if applier.applied_txns:
                    attempt = 0
                wait = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                attempt += 1
                log.warning(
                    "apply interrupted (%s); reconnecting in %ds to go on from the "
                    "replication origin's position",
                    " ".join(str(exc).split()),
                    wait,
                )
                if self.stop.wait(wait):
                    break
            finally:
                self._progress(applier.applied_lsn, 0, force=True)
        if self.stop.is_set():
            raise Interrupted("stopped; the work directory is resumable (--resume)")
        return applied

    def cutover(
        self,
        scope: ApplyScope,
        sequences: list[Sequence],
        filters: Filters,
        *,
        after_apply: Callable[[], None] | None = None,
    ) -> int:
        """The cutover, one sequence for `clone --follow` and `follow`: apply up to the
        end position, (`after_apply`), sync the sequences, stop receiving, record that CDC
        is done, then verify the target against the source. Returns the applied LSN."""
        applied = self.apply_until_endpos(scope)
        events.emit(
            "end_position_reached",
            f"every change up to {format_lsn(applied)} is applied",
            lsn=format_lsn(applied),
        )
        if after_apply is not None:
            after_apply()
        self.sync_sequences(sequences)
        self.stop_receiver()
        self.store.set_meta(Meta.CDC_DONE, "1")
        verify_after_cutover(self.source, self.target, filters, self.store)
        log.info(
            "cutover point reached: every change committed up to %s is applied; "
            "sequences are synced",
            format_lsn(applied),
        )
        log.info(
            "next: switch the application to the target; pgferry verify --full --dir %s "
            "compares every row; pgferry cleanup --dir %s drops the slot, the publication "
            "and the origin (both with --source and --target, or PGCOPYDB_SOURCE_PGURI and "
            "PGCOPYDB_TARGET_PGURI)",
            self.workdir.path,
            self.workdir.path,
        )
        return applied

    def sync_sequences(self, sequences: list[Sequence]) -> None:
        """At cutover: sequences take the source's current values (not the snapshot's)."""
        if not sequences:
            return
        with (
            self.source.connect("pgferry sequences") as src,
            self.target.connect("pgferry sequences") as tgt,
        ):
            for seq in sequences:
                last_value, is_called = read_sequence(src, seq)
                set_sequence(tgt, seq, last_value, is_called)
        log.info("synced %d sequences from the source", len(sequences))


def verify_after_cutover(
    source: ConnInfo, target: ConnInfo, filters: Filters, store: StateStore
) -> None:
    """pgferry verify (quick mode) right after the cutover; a FAIL fails the run.

    Only when the end position was the source's position at the time (stop-cdc, set
    endpos --current: writes had stopped): an earlier end position leaves later changes
    out on purpose, and the source cannot be compared with.
    """

    if store.get_meta(Meta.ENDPOS_KIND) != "current":
        log.info(
            "end position given as an LSN: skipping the verification against the "
            "source (run pgferry verify once writes have stopped)"
        )
        return

    report = run_verify(source, target, filters)
    for check in report.warnings:
        log.warning("verify: %s: %s", check.name, check.message)
    events.emit(
        "verify",
        f"verify after cutover: {len(report.failed)} difference(s)"
        if report.failed
        else "verify after cutover: the target matches the source",
        passed=not report.failed,
        failed=[c.message for c in report.failed][:10],
    )
    if report.failed:
        for check in report.failed:
            log.error("verify: %s: %s", check.name, check.message)
        raise StepFailed(
            f"verification after cutover found {len(report.failed)} difference(s): "
            f"{report.failed[0].message}",
            fix="run pgferry verify --full to locate the rows",
        )
    log.info("verify: the target matches the source (%d checks)", len(report.checks))


def set_endpos_current(source: ConnInfo, store: StateStore) -> int:
    with source.connect("pgferry stop-cdc") as conn:
        lsn = current_wal_lsn(conn)
    store.set_sentinel(endpos=format_lsn(lsn))
    store.set_meta(Meta.ENDPOS_KIND, "current")
    return lsn


def parse_endpos(text: str) -> int:
    try:
        return parse_lsn(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None
