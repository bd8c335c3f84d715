"""`pgferry status`: the dashboard of a migration, read from DIR (and, if given, the servers).

Everything comes from the state store, which the migration writes and any process may
read, so the report is right whether the run goes on, finished, failed or was killed:

- run state: a process holding DIR's lock is *running*; otherwise the last run row says
  *finished*, *failed* or *interrupted*; a run row still marked running that no process
  holds is *killed* (kill -9, OOM, reboot).
- copy progress: tables and parts done of total; bytes done of an estimated total;
  rate over a recent window and ETA (see `copy_progress` for the method).
- indexes, constraints, vacuum, sequences, large objects: units done of total.
- errors with their context: failed units (kind, label, error), the run's own error,
  failed phases, and ERROR lines the log holds for the current run.
- with a target (and/or source) connection: this DIR's sessions on the server, found by
  the tag pgferry puts in their application_name, with durations, wait events and the
  pg_stat_progress_* figures of their COPY / CREATE INDEX / VACUUM.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import psycopg

from pgferry.monitor.cdc_status import CdcSummary, cdc_summary
from pgferry.monitor.rundir import (
    LogSummary,
    RunInfo,
    RunJson,
    RunState,
    Servers,
    log_summary,
    run_info,
)
from pgferry.pg.activity import ACTIVE_SESSIONS_SQL, PROGRESS_SQL
from pgferry.pg.conninfo import ConnInfo, scrub
from pgferry.pg.sessions import dir_tag
from pgferry.state.store import Meta, StateStore, Status, TableRow, UnitKind, UnitRow
from pgferry.state.workdir import WorkDir

RATE_WINDOW_SECONDS = 60.0
COPY_RATIO_BOUNDS = (0.2, 5.0)  # COPY bytes per heap byte: keep the estimate sane


# -- the report's shape: JSON (`status --json`) and what the dashboard reads -------------


class UnitCounts(TypedDict):
    pending: int
    running: int
    done: int
    failed: int
    skipped: int
    total: int
    interrupted: int


class LargeObjectCounts(UnitCounts):
    objects_total: int
    objects_done: int
    bytes_done: int


class CopyFigures(TypedDict):
    tables_total: int
    tables_done: int
    tables_running: int
    parts_total: int
    parts_done: int
    parts_running: int
    parts_failed: int
    split_tables: int
    split_parts: int
    bytes_done: int
    bytes_in_flight: int
    bytes_copied: int
    bytes_source_size: int
    bytes_estimated_total: int
    copy_bytes_per_heap_byte: float
    percent: float | None
    rows_done: int
    rate_bytes_per_second: float | None
    rate_window_seconds: float | None
    average_rate_bytes_per_second: float | None
    eta_seconds: float | None


class CopyProgress(CopyFigures, UnitCounts):
    """The copy phase's figures and its units' counts."""


class PhaseJson(TypedDict):
    seq: int
    name: str
    status: str  # a unit status, or "stopped": running when its process died
    started_at: float | None
    finished_at: float | None
    duration: float | None
    cumulative: float | None
    bytes: int | None
    concurrency: int | None


class RunningUnit(TypedDict):
    kind: str
    label: str
    pid: int | None
    state: str  # running, or interrupted (no live process)
    started_at: float | None
    seconds: float | None
    bytes: int
    attempts: int


class ErrorLine(TypedDict):
    where: str  # run, phase or unit
    kind: str | None
    label: str | None
    error: str | None
    attempts: NotRequired[int]
    at: NotRequired[float | None]


class ActiveSession(TypedDict):
    pid: int
    purpose: str
    state: str
    operation: str
    seconds: float | None
    transaction_seconds: float | None
    wait_event_type: str | None
    wait_event: str | None
    blocked_by: list[int]
    progress: dict[str, dict[str, Any]]  # progress view name -> its columns
    orphan: bool


class ActiveOperations(TypedDict):
    sessions: list[ActiveSession]
    idle: int
    error: str | None


class StatusReport(TypedDict):
    """`pgferry status`: the whole dashboard (see the module docstring)."""

    dir: str
    generated_at: float
    run: RunJson
    state: str
    exit_code: int
    source: str | None
    target: str | None
    phases: list[PhaseJson]
    copy: CopyProgress
    indexes: UnitCounts
    constraints: UnitCounts
    vacuum: UnitCounts
    sequences: UnitCounts
    large_objects: LargeObjectCounts
    overall_percent: float | None
    running: list[RunningUnit]
    errors: list[ErrorLine]
    log: LogSummary
    cdc: CdcSummary | None
    active: dict[str, ActiveOperations]
    server_errors: NotRequired[dict[str, str]]
    cutover: NotRequired[dict[str, Any]]  # pgferry cutover: steps done, outcome


# -- servers ---------------------------------------------------------------------------


# -- copy progress ---------------------------------------------------------------------


def _heap_estimate(unit: UnitRow, tables: dict[int, TableRow]) -> float:
    """The source heap bytes one copy unit covers (a split table's parts share it)."""
    table = tables.get(unit.table_oid)
    if table is None:
        return 0.0
    parts = max(1, int(unit.detail.get("parts", table.parts) or 1))
    return table.bytes / parts


def copy_progress(
    units: list[UnitRow],
    tables: list[TableRow],
    *,
    now: float,
    live: bool,
    window: float = RATE_WINDOW_SECONDS,
) -> CopyFigures:
    """Tables, parts and bytes of the copy phase, its recent rate and its ETA.

    Bytes: `bytes_done` sums finished parts (their final COPY byte count);
    `bytes_in_flight` sums the running parts' counts, which the run flushes to the
    state store every second; `bytes_copied` is both.

    Estimated total: table sizes on disk are not COPY sizes, so the remaining parts'
    heap sizes are scaled by the COPY-bytes-per-heap-byte ratio observed on the parts
    already done (1.0 before any is done, bounded to 0.2-5), and a running part counts
    at least what it has sent. Once every part is done the total is exact.

    Rate: the bytes moved within the last `window` seconds divided by that window (or
    by the time the copy has run, if shorter). Each finished part and each running part
    contributes its bytes in proportion to how much of its running time falls inside
    the window (a part is assumed to stream at an even pace). Parts finished before the
    window and earlier runs count for nothing, and the window starts no earlier than the
    first part active in it, so a resume or a pause does not drag the rate down.

    Without a live process, or once every part is done, there is no windowed rate and
    no ETA; `average_rate_bytes_per_second` is the bytes of the finished parts over the
    wall time from the first of them starting to the last one finishing.
    """
    by_oid = {t.oid: t for t in tables}
    copies = [u for u in units if u.kind == UnitKind.COPY]
    done = [u for u in copies if u.status == Status.DONE]
    running = [u for u in copies if u.status == Status.RUNNING]
    failed = [u for u in copies if u.status == Status.FAILED]
    bytes_done = sum(u.bytes for u in done)
    bytes_in_flight = sum(u.bytes for u in running) if live else 0
    heap_done = sum(_heap_estimate(u, by_oid) for u in done)
    ratio = bytes_done / heap_done if heap_done > 0 and bytes_done > 0 else 1.0
    ratio = min(max(ratio, COPY_RATIO_BOUNDS[0]), COPY_RATIO_BOUNDS[1])
    estimate = float(bytes_done)
    for u in copies:
        if u.status == Status.DONE:
            continue
        expected = _heap_estimate(u, by_oid) * ratio
        estimate += max(expected, u.bytes) if u.status == Status.RUNNING and live else expected
    estimate_total = int(round(estimate))
    copied = bytes_done + bytes_in_flight
    if copies and len(done) == len(copies):
        estimate_total = bytes_done

    rate = None
    span = None
    if live:
        # (start, end, bytes) of the parts that moved data within the window.
        active = [
            (
                u.started_at,
                u.finished_at if u.status == Status.DONE and u.finished_at else now,
                u.bytes,
            )
            for u in done + running
            if u.started_at is not None
        ]
        active = [a for a in active if a[1] > now - window]
        if active:
            span = min(window, now - min(a[0] for a in active))
        if span is not None and span >= 1.0:
            since = now - span
            moved = 0.0
            for start, end, nbytes in active:
                overlap = min(end, now) - max(start, since)
                if overlap > 0:
                    moved += nbytes * overlap / max(end - start, 1e-3)
            rate = moved / span
    spans = [(u.started_at, u.finished_at, u.bytes) for u in done if u.started_at and u.finished_at]
    average = None
    if spans:
        wall = max(s[1] for s in spans) - min(s[0] for s in spans)
        average = sum(s[2] for s in spans) / wall if wall > 0 else None
    if copies and len(done) == len(copies):
        rate = span = None  # the copy is over: a trailing window would describe nothing
    remaining = max(0, estimate_total - copied)
    eta = remaining / rate if rate and rate > 0 and remaining else (0.0 if not remaining else None)
    split = [t for t in tables if t.parts > 1]
    copy_tables = {u.table_oid for u in copies}
    return {
        "tables_total": len(copy_tables),
        "tables_done": sum(1 for t in tables if t.oid in copy_tables and t.status == Status.DONE),
        "tables_running": len({u.table_oid for u in running}) if live else 0,
        "parts_total": len(copies),
        "parts_done": len(done),
        "parts_running": len(running) if live else 0,
        "parts_failed": len(failed),
        "split_tables": len(split),
        "split_parts": sum(t.parts for t in split),
        "bytes_done": bytes_done,
        "bytes_in_flight": bytes_in_flight,
        "bytes_copied": copied,
        "bytes_source_size": sum(t.bytes for t in tables if t.oid in copy_tables),
        "bytes_estimated_total": estimate_total,
        "copy_bytes_per_heap_byte": round(ratio, 3),
        "percent": round(100.0 * copied / estimate_total, 1) if estimate_total else None,
        "rows_done": sum(u.rows or 0 for u in done),
        "rate_bytes_per_second": rate,
        "rate_window_seconds": span if rate is not None else None,
        "average_rate_bytes_per_second": average,
        "eta_seconds": eta if live else None,
    }


def unit_counts(units: list[UnitRow], kind: UnitKind, *, live: bool) -> UnitCounts:
    """total / pending / running / done / failed / skipped of one kind of unit.

    Without a live process a unit still marked running was cut short: it counts as
    `interrupted` (a resume redoes it).
    """
    counts = Counter(str(u.status) for u in units if u.kind == kind)
    running = counts.get("running", 0)
    return UnitCounts(
        pending=counts.get("pending", 0),
        running=running if live else 0,
        done=counts.get("done", 0),
        failed=counts.get("failed", 0),
        skipped=counts.get("skipped", 0),
        total=sum(counts.values()),
        interrupted=0 if live else running,
    )


def _phases(store: StateStore, info: RunInfo, now: float) -> list[PhaseJson]:
    live = info.state == RunState.RUNNING
    out: list[PhaseJson] = []
    for p in store.phases():
        state = str(p.status)
        duration = p.duration
        if p.status == Status.RUNNING:
            if live:
                duration = now - p.started_at if p.started_at else None
            else:
                state = "stopped"
                end = info.last_activity or now
                duration = end - p.started_at if p.started_at else None
        out.append(
            {
                "seq": p.seq,
                "name": p.name,
                "status": state,
                "started_at": p.started_at,
                "finished_at": p.finished_at,
                "duration": duration,
                "cumulative": p.cumulative,
                "bytes": p.bytes,
                "concurrency": p.concurrency,
            }
        )
    return out


def _running_units(units: list[UnitRow], now: float, *, live: bool) -> list[RunningUnit]:
    return [
        {
            "kind": str(u.kind),
            "label": u.label,
            "pid": u.pid,
            "state": "running" if live else "interrupted",
            "started_at": u.started_at,
            "seconds": (now - u.started_at) if live and u.started_at else None,
            "bytes": u.bytes,
            "attempts": u.attempts,
        }
        for u in units
        if u.status == Status.RUNNING
    ]


def _errors(units: list[UnitRow], info: RunInfo, phases: list[PhaseJson]) -> list[ErrorLine]:
    out: list[ErrorLine] = []
    if info.error and info.state in (RunState.FAILED, RunState.INTERRUPTED):
        error = scrub(info.error)
        out.append({"where": "run", "kind": info.command, "label": None, "error": error})
    for p in phases:
        if p["status"] == "failed":
            out.append({"where": "phase", "kind": "phase", "label": p["name"], "error": None})
    for u in units:
        if u.status == Status.FAILED:
            out.append(
                {
                    "where": "unit",
                    "kind": str(u.kind),
                    "label": u.label,
                    "error": scrub(u.error) if u.error else None,
                    "attempts": u.attempts,
                    "at": u.finished_at,
                }
            )
    return out


# -- the log ---------------------------------------------------------------------------


# -- active operations on the servers ---------------------------------------------------


_NAME = r'(?:"(?:[^"]|"")*"|[^\s."(),;]+)'
_QUALIFIED = rf"({_NAME}(?:\.{_NAME})?)"
_OPERATIONS = (
    (rf"COPY\s+{_QUALIFIED}.*?\sFROM\s+STDIN", "COPY {} (in)"),
    (rf"COPY\s+\(\s*SELECT\s.*?\sFROM\s+(?:ONLY\s+)?{_QUALIFIED}.*\sTO\s+STDOUT", "COPY {} (out)"),
    (rf"COPY\s+{_QUALIFIED}.*?\sTO\s+STDOUT", "COPY {} (out)"),
    (
        rf"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?{_QUALIFIED}",
        "CREATE INDEX {}",
    ),
    (rf"ALTER\s+TABLE\s+(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?{_QUALIFIED}", "ALTER TABLE {}"),
    (
        rf"VACUUM\s*(?:\([^)]*\)\s*)?(?:(?:FULL|FREEZE|VERBOSE|ANALY[SZ]E)\s+)*{_QUALIFIED}",
        "VACUUM {}",
    ),
    (rf"ANALY[SZ]E\s+(?:VERBOSE\s+)?{_QUALIFIED}", "ANALYZE {}"),
    (rf"REFRESH\s+MATERIALIZED\s+VIEW\s+(?:CONCURRENTLY\s+)?{_QUALIFIED}", "REFRESH {}"),
    (rf"TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?{_QUALIFIED}", "TRUNCATE {}"),
    (rf"START_REPLICATION\s+SLOT\s+{_QUALIFIED}", "START_REPLICATION slot {}"),
)
_COMPILED = tuple((re.compile(r"^\s*" + p, re.I | re.S), label) for p, label in _OPERATIONS)


def operation_label(query: str | None) -> str:
    """A short name for what a session does: COPY t, CREATE INDEX i, ALTER TABLE t, ..."""
    text = " ".join((query or "").split())
    for pattern, label in _COMPILED:
        m = pattern.match(text)
        if m:
            return label.format(m.group(1) or "").strip()
    return text[:60] + ("..." if len(text) > 60 else "")


def dir_tags(path: Path) -> list[str]:
    """The application_name tags a run on DIR may have used (as given, and resolved)."""
    tags = {dir_tag(WorkDir(path).path), dir_tag(path.resolve())}
    return sorted(tags)


def active_operations(
    servers: Servers,
    role: str,
    tags: list[str],
    *,
    tools: tuple[str, ...] = (),
    live: bool = True,
) -> ActiveOperations | None:
    """This DIR's sessions on one server, with what they run and their progress figures.

    Sessions are the ones whose application_name carries the DIR's tag
    ('pgferry:<tag> <purpose>'); application traffic is never shown. `tools` adds the
    sessions of pg_dump / pg_restore in the same database (they cannot carry the tag):
    the caller passes them only while this run's dump or restore phase runs. Without a
    `live` run, tagged sessions still there are orphans a killed pgferry left behind
    (a resume ends them).
    """
    if not servers.has(role):
        return None
    conn = servers.conn(role)
    if conn is None:
        return {"sessions": [], "idle": 0, "error": servers.errors.get(role)}
    try:
        rows = conn.execute(
            ACTIVE_SESSIONS_SQL,
            {"patterns": [f"pgferry:{t} %" for t in tags], "tools": list(tools)},
        ).fetchall()
    except psycopg.Error as exc:
        servers.failed(role, exc)
        return {"sessions": [], "idle": 0, "error": servers.errors.get(role)}
    progress = _progress(conn, servers, role)
    sessions: list[ActiveSession] = []
    idle = 0
    orphans = not live
    for pid, app, state, _btype, q_secs, x_secs, wtype, wevent, query, blockers in rows:
        if state == "idle":
            idle += 1
            continue
        purpose = app.split(" ", 1)[1] if app.startswith("pgferry:") and " " in app else app
        purpose = purpose.removeprefix("pgferry ")
        sessions.append(
            {
                "pid": pid,
                "purpose": purpose,
                "state": state,
                "operation": operation_label(query),
                "seconds": q_secs,
                "transaction_seconds": x_secs,
                "wait_event_type": wtype,
                "wait_event": wevent,
                "blocked_by": list(blockers or []),
                "progress": {k: v[pid] for k, v in progress.items() if pid in v},
                "orphan": orphans,
            }
        )
    return {"sessions": sessions, "idle": idle, "error": None}


def _progress(
    conn: psycopg.Connection[Any], servers: Servers, role: str
) -> dict[str, dict[int, dict[str, Any]]]:
    out: dict[str, dict[int, dict[str, Any]]] = {}
    version = conn.info.server_version
    for name, (since, query, columns) in PROGRESS_SQL.items():
        if version < since:
            continue
        try:
            rows = conn.execute(query).fetchall()
        except psycopg.Error as exc:
            servers.failed(role, exc)
            continue
        out[name] = {r[0]: dict(zip(columns, r[1:], strict=True)) for r in rows}
    return out


# -- the report ------------------------------------------------------------------------


def status_report(
    workdir: Path,
    *,
    target: ConnInfo | None = None,
    source: ConnInfo | None = None,
    servers: Servers | None = None,
    window: float = RATE_WINDOW_SECONDS,
) -> StatusReport:
    """The whole dashboard as one JSON-able dict (see the module docstring)."""
    own = servers is None
    servers = servers or Servers(source=source, target=target)
    servers.new_report()
    wd = WorkDir(workdir)
    store = StateStore.open_dir(wd.path, readonly=True)
    try:
        now = time.time()
        info = run_info(wd, store)
        live = info.state == RunState.RUNNING
        units = store.units()
        tables = store.tables()
        phases = _phases(store, info, now)
        # A killed run's pg_dump / pg_restore may outlive it: its phase shows "stopped".
        running_phases = {p["name"] for p in phases if p["status"] in ("running", "stopped")}
        tools = {
            "target": ("pg_restore",) if running_phases & {"pre-data", "post-data"} else (),
            "source": ("pg_dump",) if "dump" in running_phases else (),
        }
        counts = {kind: unit_counts(units, kind, live=live) for kind in UnitKind}
        blobs = [u for u in units if u.kind == UnitKind.BLOBS]
        large_objects = LargeObjectCounts(
            **counts[UnitKind.BLOBS],
            objects_total=sum(int(u.detail.get("count", 0)) for u in blobs),
            objects_done=sum(u.rows or 0 for u in blobs if u.status == Status.DONE),
            bytes_done=sum(u.bytes for u in blobs if u.status == Status.DONE),
        )
        copy = CopyProgress(
            **copy_progress(units, tables, now=now, live=live, window=window),
            **counts[UnitKind.COPY],
        )
        indexes, constraints = counts[UnitKind.INDEX], counts[UnitKind.CONSTRAINT]
        work = (copy["parts_total"], indexes["total"], constraints["total"])
        finished = (copy["parts_done"], indexes["done"], constraints["done"])
        report = StatusReport(
            dir=str(wd.path),
            generated_at=now,
            run=info.to_json(now),
            state=str(info.state),
            exit_code=info.exit_code,
            source=store.get_meta(Meta.SOURCE),
            target=store.get_meta(Meta.TARGET),
            phases=phases,
            copy=copy,
            indexes=indexes,
            constraints=constraints,
            vacuum=counts[UnitKind.VACUUM],
            sequences=counts[UnitKind.SEQUENCE],
            large_objects=large_objects,
            overall_percent=round(100.0 * sum(finished) / sum(work), 1) if sum(work) else None,
            running=_running_units(units, now, live=live),
            errors=_errors(units, info, phases),
            log=log_summary(wd.log_file, info.started_at),
            cdc=None,
            active={},
        )
        if store.sentinel() is not None:
            report["cdc"] = cdc_summary(wd, store, info, servers)
        cutover = store.get_json(Meta.CUTOVER)
        if cutover is not None:
            report["cutover"] = cutover
        tags = dir_tags(workdir)
        for role in ("target", "source"):
            ops = active_operations(servers, role, tags, tools=tools[role], live=live)
            if ops is not None:
                report["active"][role] = ops
        report["server_errors"] = dict(servers.errors)
        return report
    finally:
        store.close()
        if own:
            servers.close()
