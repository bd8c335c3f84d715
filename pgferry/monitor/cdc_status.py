"""`pgferry cdc-status`: where change data capture stands, and whether it has caught up.

Positions (LSNs), from DIR's sentinel unless said otherwise:
- received: write_lsn, what the receiver has taken from the slot;
- flushed: flush_lsn, what is durable in the spool (and acknowledged to the source);
- applied: the replication origin's progress on the target when a target connection is
  given (the truth: it moves in the same commit as each applied transaction), otherwise
  the sentinel's replay_lsn (written by apply at most twice a second);
- source current: the source's current WAL insert position (needs a source connection).

The applied origin only moves at commits of transactions pgferry applies; WAL from other
databases, checkpoints or filtered tables leaves it behind although nothing waits. So
when no received transaction waits in the spool, the *effective* applied position is the
flushed one: backlogs are measured from there.

Backlog: source current - effective applied (or flushed - effective applied without a
source), plus the spool's unapplied transactions (count and bytes).
Rate: bytes/s of the effective applied position, and transactions/s of the applied
counter, over a recent window of samples: successive samples in --watch, or two samples
`sample_seconds` apart for a one-shot report.
ETA: backlog / (apply rate - source WAL rate) when the source is sampled (the backlog is
a moving target), backlog / apply rate otherwise.
Lag in time: how long ago the oldest received-but-unapplied transaction committed on the
source (the spool index keeps each transaction's commit time); zero when nothing waits
and nothing significant remains to receive. The walsender's own write/flush/replay lags
(pg_stat_replication) are shown too.
Caught up: apply is enabled, the backlog is below CAUGHT_UP_BYTES and the lag below
CAUGHT_UP_SECONDS; the report says which condition holds or not.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import psycopg

from pgferry.catalog.facts import database_size
from pgferry.cdc.protocol import current_wal_lsn, pg_time_to_unix
from pgferry.cdc.spool import SpoolBacklog, spool_backlog
from pgferry.checks.report import Report
from pgferry.errors import InputError
from pgferry.monitor.rundir import (
    LogSummary,
    RunInfo,
    RunJson,
    RunState,
    Servers,
    log_summary,
    run_info,
)
from pgferry.pg import replication
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.lsn import format_lsn, lsn_or_none
from pgferry.state.store import Meta, StateStore, Status, UnitKind
from pgferry.state.workdir import WorkDir
from pgferry.text import human_bytes, human_duration

CAUGHT_UP_BYTES = 16 * 1024 * 1024
CAUGHT_UP_SECONDS = 10.0
RATE_WINDOW_SECONDS = 60.0
SAMPLE_SECONDS = 2.0


# -- one sample ------------------------------------------------------------------------


# -- the report's shape: JSON (`cdc-status --json`) and what the dashboard reads ---------


class CdcRates(TypedDict):
    apply_bytes_per_second: float | None
    apply_bytes_per_hour: float | None
    apply_txns_per_second: float | None
    source_wal_bytes_per_second: float | None
    window_seconds: float | None
    samples: int


class CdcPositions(TypedDict):
    startpos: str | None
    received: str | None
    flushed: str | None
    applied: str | None
    applied_origin: str | None
    applied_sentinel: str | None
    applied_effective: str | None
    source_current: str | None
    endpos: str | None


class ApplyFigures(TypedDict):
    state: str
    enabled: bool
    applied_txns: int
    pending_txns: int
    group_txns: int
    pending_spool_bytes: int


class Backlog(TypedDict):
    bytes: int | None
    basis: str
    to_receive_bytes: int | None
    to_flush_bytes: int | None
    to_apply_bytes: int | None


class EndposJson(TypedDict):
    lsn: str | None
    reached: bool | None
    remaining_bytes: int | None


class Lag(TypedDict):
    seconds: float | None
    basis: str | None
    last_applied_commit_time: float | None
    oldest_pending_commit_time: float | None


class CaughtUp(TypedDict):
    caught_up: bool
    reasons: list[str]


class CdcFigures(TypedDict):
    """What both the cdc-status report and status's CDC summary show."""

    slot: str | None
    origin: str | None
    plugin: str | None
    protocol: str | None  # what the receiver asked the plugin for ("protocol 2, streaming")
    positions: CdcPositions
    apply: ApplyFigures
    backlog: Backlog
    endpos: EndposJson
    lag: Lag


class CdcReport(CdcFigures):
    """`pgferry cdc-status`: the whole report."""

    dir: str
    generated_at: float
    run: RunJson
    state: str
    rate: CdcRates
    eta_seconds: float | None
    eta_note: str
    slot_health: dict[str, Any] | None  # pg.replication.slot_health, with name and exists
    source_database_bytes: int | None
    caught_up: CaughtUp
    log: LogSummary | None
    server_errors: dict[str, str]
    checks: NotRequired[list[dict[str, Any]]]  # the report's check lines (checks.report)
    verdict: NotRequired[str]
    exit_code: NotRequired[int]


class CdcSummary(CdcFigures):
    """The CDC part of `pgferry status`."""

    caught_up: bool
    slot_health: NotRequired[dict[str, Any]]


@dataclass(frozen=True)
class CdcSample:
    """The positions at one moment (the target first, the source last, so that
    source current >= received >= flushed >= applied holds across the reads)."""

    at: float
    mono: float
    origin_applied: int | None
    sentinel_applied: int | None
    received: int | None
    flushed: int | None
    source_current: int | None
    applied_txns: int
    apply_enabled: bool
    startpos: int | None
    endpos: int | None
    spool: SpoolBacklog

    @property
    def applied(self) -> int | None:
        if self.origin_applied is not None:
            return self.origin_applied
        return self.sentinel_applied if self.sentinel_applied is not None else self.startpos

    @property
    def effective_applied(self) -> int | None:
        applied = self.applied
        if self.spool.pending_txns == 0 and self.flushed is not None:
            return max(applied or 0, self.flushed)
        return applied


def origin_progress(servers: Servers, origin: str | None) -> int | None:
    conn = servers.conn("target")
    if conn is None or not origin:
        return None
    try:
        position = replication.applied_position(conn, origin)
    except psycopg.Error as exc:
        servers.failed("target", exc)
        return None
    return lsn_or_none(position)


def source_current(servers: Servers) -> int | None:
    conn = servers.conn("source")
    if conn is None:
        return None
    try:
        return current_wal_lsn(conn)
    except (psycopg.Error, AssertionError) as exc:
        servers.failed("source", exc)
        return None


def _at_least(recorded: int | None, floor: int | None) -> int | None:
    """A recorded position (None: none yet), raised to one known to be passed."""
    if not floor:
        return recorded
    return floor if recorded is None else max(recorded, floor)


def take_sample(wd: WorkDir, store: StateStore, servers: Servers) -> CdcSample:
    origin = origin_progress(servers, store.get_meta(Meta.CDC_ORIGIN))
    row = store.sentinel()
    txns = int(store.get_meta(Meta.CDC_APPLIED_TXNS, "0") or 0)
    current = source_current(servers)
    positions = row.to_json() if row is not None else {}

    def get(field: str) -> int | None:
        return lsn_or_none(positions.get(field))

    sentinel_applied = get("replay_lsn")
    applied = origin if origin is not None else (sentinel_applied or get("startpos") or 0)
    # The receiver records its positions once a second, but hands transactions to apply
    # as soon as they are durable: what is applied was flushed (and received) already.
    flushed = _at_least(get("flush_lsn"), applied)
    return CdcSample(
        at=time.time(),
        mono=time.monotonic(),
        origin_applied=origin,
        sentinel_applied=sentinel_applied,
        received=_at_least(get("write_lsn"), flushed),
        flushed=flushed,
        source_current=current,
        applied_txns=txns,
        apply_enabled=bool(row.apply) if row is not None else False,
        startpos=get("startpos"),
        endpos=get("endpos"),
        spool=spool_backlog(wd.cdc_dir, applied),
    )


class CdcHistory:
    """A rolling window of samples, for rates that reflect now and not the whole run."""

    def __init__(self, window: float = RATE_WINDOW_SECONDS) -> None:
        self.window = window
        self.samples: deque[CdcSample] = deque()

    def add(self, sample: CdcSample) -> None:
        self.samples.append(sample)
        while len(self.samples) > 2 and sample.mono - self.samples[0].mono > self.window:
            self.samples.popleft()

    def rates(self) -> CdcRates:
        out = CdcRates(
            apply_bytes_per_second=None,
            apply_bytes_per_hour=None,
            apply_txns_per_second=None,
            source_wal_bytes_per_second=None,
            window_seconds=None,
            samples=len(self.samples),
        )
        if len(self.samples) < 2:
            return out
        first, last = self.samples[0], self.samples[-1]
        dt = last.mono - first.mono
        if dt <= 0:
            return out
        out["window_seconds"] = dt
        a0, a1 = first.effective_applied, last.effective_applied
        if a0 is not None and a1 is not None:
            rate = max(0, a1 - a0) / dt
            out["apply_bytes_per_second"] = rate
            out["apply_bytes_per_hour"] = rate * 3600
        out["apply_txns_per_second"] = max(0, last.applied_txns - first.applied_txns) / dt
        if first.source_current is not None and last.source_current is not None:
            out["source_wal_bytes_per_second"] = (
                max(0, last.source_current - first.source_current) / dt
            )
        return out


# -- slot health -----------------------------------------------------------------------


def slot_health(servers: Servers, slot: str | None) -> dict[str, Any] | None:
    """The slot on the source: activity, WAL retention, and its walsender's lags."""
    conn = servers.conn("source")
    if conn is None or not slot:
        return None
    try:
        health = replication.slot_health(conn, slot)
    except psycopg.Error as exc:
        servers.failed("source", exc)
        return None
    if health is None:
        return {"name": slot, "exists": False}
    return {"name": slot, "exists": True, **health}


def _database_size(servers: Servers) -> int | None:
    """The source database's size (as check-cdc-status showed it): disk headroom."""
    conn = servers.conn("source") if servers.has("source") else None
    if conn is None:
        return None
    try:
        return database_size(conn)
    except psycopg.Error as exc:
        servers.failed("source", exc)
        return None


# -- the report ------------------------------------------------------------------------


def _lsn(value: int | None) -> str | None:
    return None if value is None else format_lsn(value)


def _diff(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(0, a - b)


def apply_state(store: StateStore, info: RunInfo, sample: CdcSample) -> str:
    if store.get_meta(Meta.CDC_DONE) == "1":
        return "done"
    if info.state != RunState.RUNNING:
        return "stopped"
    if sample.apply_enabled:
        return "applying"
    if store.get_meta(Meta.APPLY_HOLD) == "1":
        return "paused (stream sentinel set prefetch)"
    copies = store.units(UnitKind.COPY)
    if copies and any(u.status != Status.DONE for u in copies):
        return "waiting for the copy to finish"
    return "waiting for the data phase to finish"


def _lag(sample: CdcSample, to_receive: int | None, slot: dict[str, Any] | None) -> Lag:
    oldest = sample.spool.oldest_pending
    last = sample.spool.last_applied
    out = Lag(
        seconds=None,
        basis=None,
        last_applied_commit_time=pg_time_to_unix(last.commit_time) if last else None,
        oldest_pending_commit_time=pg_time_to_unix(oldest.commit_time) if oldest else None,
    )
    if oldest is not None:
        out["seconds"] = max(0.0, sample.at - pg_time_to_unix(oldest.commit_time))
        out["basis"] = "age of the oldest received transaction not applied yet"
    elif to_receive is None:
        out["seconds"] = 0.0
        out["basis"] = "nothing received waits to be applied (receive side not checked: no source)"
    elif to_receive < CAUGHT_UP_BYTES:
        out["seconds"] = 0.0
        out["basis"] = "nothing received waits to be applied, and little is left to receive"
    elif slot and slot.get("replay_lag_seconds") is not None:
        out["seconds"] = slot["replay_lag_seconds"]
        out["basis"] = "the walsender's replay lag (WAL not received yet)"
    else:
        out["basis"] = "unknown: the WAL not received yet has no commit times"
    return out


def _verdict(state: str, backlog: int | None, lag: float | None, basis: str) -> CaughtUp:
    reasons = []
    ok = True
    if state not in ("applying", "done"):
        ok = False
        reasons.append(f"apply is not running ({state})")
    if backlog is None:
        ok = False
        reasons.append("backlog unknown")
    elif backlog < CAUGHT_UP_BYTES:
        reasons.append(f"backlog {human_bytes(backlog)} < {human_bytes(CAUGHT_UP_BYTES)} ({basis})")
    else:
        ok = False
        reasons.append(
            f"backlog {human_bytes(backlog)} >= {human_bytes(CAUGHT_UP_BYTES)} ({basis})"
        )
    if lag is None:
        ok = False
        reasons.append("lag unknown")
    elif lag < CAUGHT_UP_SECONDS:
        reasons.append(f"lag {human_duration(lag)} < {CAUGHT_UP_SECONDS:.0f}s")
    else:
        ok = False
        reasons.append(f"lag {human_duration(lag)} >= {CAUGHT_UP_SECONDS:.0f}s")
    return CaughtUp(caught_up=ok, reasons=reasons)


def _eta(
    state: str, verdict: bool, backlog: int | None, rates: CdcRates
) -> tuple[float | None, str]:
    if verdict:
        return 0.0, "caught up"
    if state not in ("applying",):
        return None, f"apply is not running ({state})"
    apply = rates["apply_bytes_per_second"]
    if backlog is None or apply is None:
        return None, "not enough samples yet"
    incoming = rates["source_wal_bytes_per_second"]
    net = apply - incoming if incoming is not None else apply
    if net <= 0:
        if incoming is not None:
            return None, (
                f"falling behind: the source writes {human_bytes(incoming)}/s, "
                f"apply does {human_bytes(apply)}/s"
            )
        return None, "apply made no progress in the window"
    return backlog / net, "backlog / (apply rate - source WAL rate)" if incoming else (
        "backlog / apply rate"
    )


def build_cdc_report(
    wd: WorkDir,
    store: StateStore,
    info: RunInfo,
    servers: Servers,
    history: CdcHistory,
    *,
    details: bool = True,
) -> CdcReport:
    """The report for the newest sample in `history` (taken by the caller); without
    `details` (the summary in `status`) the database size and the log are left out."""
    sample = history.samples[-1]
    slot_name = store.get_meta(Meta.CDC_SLOT)
    slot = slot_health(servers, slot_name) if servers.has("source") else None
    done = store.get_meta(Meta.CDC_DONE) == "1"
    state = apply_state(store, info, sample)
    effective = sample.effective_applied
    to_receive = _diff(sample.source_current, sample.received)
    if sample.source_current is not None:
        backlog = _diff(sample.source_current, effective)
        basis = "source current LSN - applied"
    else:
        backlog = _diff(sample.flushed, effective)
        basis = "flushed - applied; pass --source to include what is not received yet"
    if done:
        backlog, basis = 0, "cutover done"
    lag = _lag(sample, to_receive, slot)
    if done:
        lag["seconds"], lag["basis"] = 0.0, "cutover done"
    verdict = _verdict(state, backlog, lag["seconds"], basis)
    rates = history.rates()
    group_txns = int(store.get_meta(Meta.CDC_GROUP_TXNS, "1") or 1)
    eta, eta_note = _eta(state, verdict["caught_up"], backlog, rates)
    if eta is None and eta_note.startswith("falling behind") and group_txns == 1:
        eta_note += (
            "; many small transactions apply faster in groups: stop, then run the same "
            "command with --resume --group-txns 32"
        )
    endpos = sample.endpos
    reached = None
    if endpos is not None:
        reached = done or (effective is not None and effective >= endpos)
    report = CdcReport(
        dir=str(wd.path),
        generated_at=sample.at,
        run=info.to_json(sample.at),
        state=str(info.state),
        slot=slot_name,
        origin=store.get_meta(Meta.CDC_ORIGIN),
        plugin=store.get_meta(Meta.CDC_PLUGIN),
        protocol=store.get_meta(Meta.CDC_PROTOCOL),
        positions=CdcPositions(
            startpos=_lsn(sample.startpos),
            received=_lsn(sample.received),
            flushed=_lsn(sample.flushed),
            applied=_lsn(sample.applied),
            applied_origin=_lsn(sample.origin_applied),
            applied_sentinel=_lsn(sample.sentinel_applied),
            applied_effective=_lsn(effective),
            source_current=_lsn(sample.source_current),
            endpos=_lsn(endpos),
        ),
        apply=ApplyFigures(
            state=state,
            enabled=sample.apply_enabled,
            applied_txns=sample.applied_txns,
            pending_txns=sample.spool.pending_txns,
            group_txns=group_txns,
            pending_spool_bytes=sample.spool.pending_bytes,
        ),
        backlog=Backlog(
            bytes=backlog,
            basis=basis,
            to_receive_bytes=to_receive,
            to_flush_bytes=_diff(sample.received, sample.flushed),
            to_apply_bytes=_diff(sample.flushed, effective),
        ),
        rate=rates,
        eta_seconds=eta,
        eta_note=eta_note,
        endpos=EndposJson(
            lsn=_lsn(endpos),
            reached=reached,
            remaining_bytes=_diff(endpos, effective) if endpos is not None else None,
        ),
        lag=lag,
        slot_health=slot,
        source_database_bytes=_database_size(servers) if details else None,
        caught_up=verdict,
        log=log_summary(wd.log_file, info.started_at) if details else None,
        server_errors=dict(servers.errors),
    )
    checks = cdc_checks(report, info, servers, done)
    report["checks"] = checks.to_json()["checks"]
    report["verdict"] = str(checks.verdict)
    report["exit_code"] = checks.exit_code()
    return report


def cdc_checks(report: CdcReport, info: RunInfo, servers: Servers, done: bool) -> Report:
    """PASS/WARN/FAIL lines; any FAIL makes cdc-status exit non-zero."""
    r = Report("cdc-status")
    where = f"pgferry status --dir {report['dir']}"
    if info.state == RunState.RUNNING:
        r.ok("cdc.process", f"running (pid {info.pid})" if info.pid else "running")
    elif info.state == RunState.FINISHED:
        r.ok("cdc.process", "finished" + (": the end position is applied" if done else ""))
    elif info.state == RunState.FAILED:
        r.fail("cdc.process", f"failed: {info.error}", fix="fix the cause, then --resume")
    elif info.state == RunState.KILLED:
        r.fail(
            "cdc.process",
            "killed: the run did not end but no process holds the work directory",
            fix="run the same command with --resume",
        )
    elif info.state == RunState.INTERRUPTED:
        r.fail("cdc.process", "stopped (interrupted); CDC is not running", fix="--resume it")
    else:
        r.warn("cdc.process", f"not started ({where})")
    slot = report["slot_health"]
    if not servers.has("source"):
        r.skip("cdc.slot", "slot not checked: pass --source (or PGCOPYDB_SOURCE_PGURI)")
    elif slot is None:
        r.warn("cdc.slot", f"cannot check the slot: {servers.errors.get('source', 'no slot name')}")
    elif not slot["exists"]:
        if done:
            r.ok("cdc.slot", f"slot {slot['name']} is gone (dropped after cutover)")
        else:
            r.fail(
                "cdc.slot",
                f"replication slot {slot['name']} is missing on the source: changes are lost",
                fix="start over: pgferry cleanup, empty the target, clone --follow --restart",
            )
    elif slot["wal_status"] == "lost":
        r.fail(
            "cdc.slot",
            f"slot {slot['name']} lost WAL it needed (wal_status lost): changes are lost",
            fix="start over; raise max_slot_wal_keep_size (or keep CDC running) next time",
        )
    elif slot["wal_status"] == "unreserved":
        r.warn(
            "cdc.slot",
            f"slot {slot['name']} is about to lose WAL (wal_status unreserved, "
            f"{human_bytes(slot['retained_wal_bytes'] or 0)} retained)",
            fix="let CDC catch up now, or raise max_slot_wal_keep_size",
        )
    elif not slot["active"] and info.state == RunState.RUNNING and not done:
        r.warn("cdc.slot", f"slot {slot['name']} has no receiver connected (reconnecting?)")
    elif not slot["active"] and slot["retained_wal_bytes"]:
        # Nobody consumes it: the source keeps its WAL until it is dropped or resumed.
        retained, where = human_bytes(slot["retained_wal_bytes"]), report["dir"]
        r.warn(
            "cdc.slot",
            f"slot {slot['name']} is inactive and holds {retained} of WAL on the source, "
            "growing with every write there",
            fix=f"pgferry cleanup --dir {where} drops it"
            if done
            else f"resume the migration (--resume on {where}) so that CDC consumes it, "
            f"or give CDC up: pgferry cleanup --dir {where}",
        )
    else:
        r.ok(
            "cdc.slot",
            f"slot {slot['name']} {'active' if slot['active'] else 'inactive'}, "
            f"wal_status {slot['wal_status']}, "
            f"{human_bytes(slot['retained_wal_bytes'] or 0)} WAL retained",
        )
    if servers.errors.get("target"):
        r.warn("cdc.origin", f"origin progress not read: {servers.errors['target']}")
    end = report["endpos"]
    if end["lsn"] is not None:
        r.ok(
            "cdc.endpos",
            f"end position {end['lsn']} "
            + ("reached" if end["reached"] else f"not reached ({_b(end['remaining_bytes'])} left)"),
        )
    verdict = report["caught_up"]
    text = "; ".join(verdict["reasons"])
    if verdict["caught_up"]:
        r.ok("cdc.caught_up", f"caught up: {text}")
    else:
        r.warn("cdc.caught_up", f"not caught up: {text}")
    return r


def _b(n: int | None) -> str:
    return "?" if n is None else human_bytes(n)


def cdc_summary(wd: WorkDir, store: StateStore, info: RunInfo, servers: Servers) -> CdcSummary:
    """The CDC part of `pgferry status`: one sample, no rates."""
    history = CdcHistory()
    history.add(take_sample(wd, store, servers))
    report = build_cdc_report(wd, store, info, servers, history, details=False)
    out = CdcSummary(
        slot=report["slot"],
        origin=report["origin"],
        plugin=report["plugin"],
        protocol=report["protocol"],
        positions=report["positions"],
        apply=report["apply"],
        backlog=report["backlog"],
        endpos=report["endpos"],
        lag=report["lag"],
        caught_up=report["caught_up"]["caught_up"],
    )
    slot = report["slot_health"]
    if slot is not None:
        out["slot_health"] = {
            k: slot.get(k)
            for k in ("exists", "active", "wal_status", "retained_wal_bytes", "safe_wal_size")
        }
    return out


def cdc_status_report(
    workdir: Path,
    *,
    source: ConnInfo | None = None,
    target: ConnInfo | None = None,
    servers: Servers | None = None,
    history: CdcHistory | None = None,
    sample_seconds: float = SAMPLE_SECONDS,
) -> CdcReport:
    """One cdc-status report. With `history` (--watch) one new sample is added to it;
    without, two samples `sample_seconds` apart give the rates (one when nothing runs)."""

    own = servers is None
    servers = servers or Servers(source=source, target=target)
    servers.new_report()
    wd = WorkDir(workdir)
    store = StateStore.open_dir(wd.path, readonly=True)
    try:
        if store.sentinel() is None:
            raise InputError(
                f"{wd.path} has no CDC state (it was not a clone --follow or follow run)",
                fix="use pgferry status for a clone without --follow",
            )
        info = run_info(wd, store)
        if history is None:
            history = CdcHistory()
            history.add(take_sample(wd, store, servers))
            if info.state == RunState.RUNNING and sample_seconds > 0:
                time.sleep(sample_seconds)
                info = run_info(wd, store)
                history.add(take_sample(wd, store, servers))
        else:
            history.add(take_sample(wd, store, servers))
        return build_cdc_report(wd, store, info, servers, history)
    finally:
        store.close()
        if own:
            servers.close()
