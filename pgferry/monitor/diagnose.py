"""`pgferry diagnose`: why is the copy slow or stuck?

Looks at pgferry's sessions on the target (COPY, CREATE INDEX, TRUNCATE, ...) twice, N
seconds apart: who blocks them (pg_blocking_pids, with the blocker's query, state and
age), what they wait on, how many bytes each COPY moved in the window, and whether
autovacuum works on the same tables. Then the rest of the target (every blocked backend,
ungranted locks, a wait-event histogram, idle transactions, WAL written and database
growth) and, when the source is known, the source side: pgferry's COPY TO sessions, the
transactions holding back xmin, and the replication slots' retained WAL.

Verdicts: FAIL when a session made no progress in the window and was blocked by a lock
the whole time; WARN when it made no progress otherwise, or is slow. Every connection is
read-only with statement and lock timeouts: diagnosing never writes to or hangs a server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import psycopg

from pgferry.checks.report import Report, Verdict
from pgferry.pg.activity import (
    BLOCKED_SQL,
    BLOCKERS_SQL,
    IDLE_IN_TRANSACTION_SQL,
    OLD_XMIN_SQL,
    PGFERRY_SESSIONS_SQL,
    PGFERRY_SESSIONS_SQL_13,
    THROUGHPUT_SQL,
    UNGRANTED_LOCKS_SQL,
    VACUUM_PROGRESS_SQL,
    WAITS_SQL,
)
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.profiles import READ_ONLY
from pgferry.pg.replication import list_slots
from pgferry.text import human_bytes, human_duration

DEFAULT_SLOW_RATE = 1024 * 1024  # bytes/s below which a COPY is called slow
IDLE_IN_XACT_WARN = 600.0  # seconds: an idle transaction this old pins xmin for real
LONG_XACT_WARN = 3600.0  # seconds: a source transaction this old holds back vacuum

# What a wait event means for a stalled COPY (type, event) -> explanation.
_WAIT_MEANING: dict[tuple[str, str | None], str] = {
    ("Client", "ClientRead"): "waiting for data from pgferry: the source side feeds slowly",
    ("Client", "ClientWrite"): "waiting for pgferry to take the data: the target side or "
    "the network is the bottleneck",
    ("IO", "DataFileRead"): "reading data files: disk-bound",
    ("IO", "DataFileWrite"): "writing data files: disk-bound",
    ("IO", "DataFileExtend"): "extending data files: disk-bound",
    ("IO", "WALWrite"): "writing WAL: WAL-bound",
    ("IO", "WALSync"): "syncing WAL: WAL-bound",
    ("LWLock", "WALWrite"): "waiting to write WAL: WAL-bound",
    ("LWLock", "WALInsert"): "waiting to insert WAL: WAL-bound",
    ("IPC", "SyncRep"): "waiting for a synchronous standby to acknowledge",
    ("Lock", None): "waiting for a lock",
    ("LWLock", None): "internal lock contention",
    ("IO", None): "waiting on I/O",
}


def wait_meaning(wait_type: str | None, wait_event: str | None) -> str:
    """A plain explanation of a wait event; 'on CPU' when there is none."""
    if not wait_type:
        return "running (on CPU)"
    return _WAIT_MEANING.get(
        (wait_type, wait_event),
        _WAIT_MEANING.get((wait_type, None), f"waiting on {wait_type}:{wait_event}"),
    )


# -- samples -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blocker:
    """A backend holding a lock a pgferry session waits for."""

    pid: int
    user: str | None
    application_name: str | None
    state: str | None
    wait: str | None
    query: str | None
    xact_seconds: float | None
    state_seconds: float | None


@dataclass(frozen=True)
class SampledSession:
    """One pgferry backend at one moment: what it runs and how far it got."""

    pid: int
    application_name: str
    command: str  # COPY FROM, COPY TO, CREATE INDEX, TRUNCATE, ...
    relation: str | None
    relid: int | None
    state: str | None
    wait_type: str | None
    wait_event: str | None
    query_start: float | None  # epoch: a new statement on the same pid starts anew
    query_seconds: float | None
    query: str
    bytes_processed: int | None = None
    tuples_processed: int | None = None
    phase: str | None = None  # CREATE INDEX phase
    blocks_done: int | None = None
    blocks_total: int | None = None
    blocked_by: tuple[int, ...] = ()
    waiting_for: str | None = None  # the lock it waits for

    @property
    def wait(self) -> str | None:
        return f"{self.wait_type}:{self.wait_event}" if self.wait_type else None


@dataclass(frozen=True)
class SessionDiagnosis:
    """A pgferry session over the window, and the verdict on it."""

    before: SampledSession
    after: SampledSession | None  # None: the statement ended during the window
    seconds: float
    verdict: Verdict
    message: str
    blockers: tuple[Blocker, ...] = ()
    autovacuum_same_table: bool = False

    @property
    def bytes_delta(self) -> int | None:
        return bytes_delta(self.before, self.after)

    @property
    def rate(self) -> float | None:
        delta = self.bytes_delta
        return delta / self.seconds if delta is not None and self.seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "before": asdict(self.before),
            "after": asdict(self.after) if self.after else None,
            "seconds": self.seconds,
            "bytes_delta": self.bytes_delta,
            "bytes_per_second": self.rate,
            "verdict": str(self.verdict),
            "message": self.message,
            "blockers": [asdict(b) for b in self.blockers],
            "autovacuum_same_table": self.autovacuum_same_table,
        }


def bytes_delta(before: SampledSession, after: SampledSession | None) -> int | None:
    """Bytes a COPY moved between two samples of one statement; None when unknown."""
    if after is None or before.bytes_processed is None or after.bytes_processed is None:
        return None
    if after.query_start != before.query_start:
        return None  # another statement: the counters restarted
    return after.bytes_processed - before.bytes_processed


def progressed(before: SampledSession, after: SampledSession) -> bool | None:
    """True/False when the progress views tell; None when they cannot (no counters)."""
    if after.query_start != before.query_start:
        return True  # the statement finished and the session moved on
    delta = bytes_delta(before, after)
    if delta is not None:
        return delta > 0
    if before.phase is not None and after.phase is not None:
        if (before.phase, before.blocks_done) != (after.phase, after.blocks_done):
            return True
        return None  # sorting, waiting for old snapshots...: no counter moves
    return None


def judge(
    before: SampledSession,
    after: SampledSession | None,
    seconds: float,
    slow_rate: float = DEFAULT_SLOW_RATE,
) -> tuple[Verdict, str]:
    """The verdict on one session over the window (pure: unit tested).

    FAIL: no progress and blocked by a lock at both samples. WARN: no measurable progress
    otherwise, or a COPY slower than `slow_rate` bytes/s, or still waiting for a lock.
    """
    if after is None:
        return Verdict.PASS, "finished during the window"
    if seconds <= 0:  # no sampling window: what it waits on, nothing about progress
        if after.blocked_by:
            by = ", ".join(str(p) for p in after.blocked_by)
            return Verdict.WARN, f"waiting for a lock held by pid {by} (no window sampled)"
        return Verdict.PASS, wait_meaning(after.wait_type, after.wait_event)
    moved = progressed(before, after)
    blocked = bool(before.blocked_by) and bool(after.blocked_by)
    lock_wait = before.wait_type == "Lock" and after.wait_type == "Lock"
    if (blocked or lock_wait) and not moved:
        by = ", ".join(str(p) for p in after.blocked_by) or "?"
        what = f" for {after.waiting_for}" if after.waiting_for else ""
        return (
            Verdict.FAIL,
            f"no progress in {seconds:.0f}s: blocked{what} by pid {by} the whole time",
        )
    meaning = wait_meaning(after.wait_type, after.wait_event)
    if moved is False:
        return Verdict.WARN, f"no bytes in {seconds:.0f}s: {meaning}"
    delta = bytes_delta(before, after)
    if delta is not None and seconds > 0:
        rate = delta / seconds
        if rate < slow_rate:
            return Verdict.WARN, f"slow: {human_bytes(rate)}/s ({meaning})"
        return Verdict.PASS, f"{human_bytes(rate)}/s ({meaning})"
    if after.blocked_by:
        by = ", ".join(str(p) for p in after.blocked_by)
        return Verdict.WARN, f"waiting for a lock held by pid {by}"
    if after.phase:
        return Verdict.PASS, f"{after.phase} ({meaning})"
    return Verdict.PASS, meaning


# -- queries -------------------------------------------------------------------------------


def session_pattern(tag: str | None) -> str:
    """The application_name pattern of one work directory's sessions, or of every run."""
    return f"pgferry:{tag} %" if tag else "pgferry:%"


def _sessions(conn: psycopg.Connection[Any], pattern: str) -> dict[int, SampledSession]:
    query = PGFERRY_SESSIONS_SQL if conn.info.server_version >= 140000 else PGFERRY_SESSIONS_SQL_13
    out = {}
    for r in conn.execute(query, {"pattern": pattern}):
        out[r[0]] = SampledSession(
            pid=r[0],
            application_name=r[1],
            command=r[2],
            relid=r[3],
            relation=r[4],
            state=r[5],
            wait_type=r[6],
            wait_event=r[7],
            query_start=r[8],
            query_seconds=r[9],
            query=r[10] or "",
            bytes_processed=r[11],
            tuples_processed=r[12],
            phase=r[13],
            blocks_done=r[14],
            blocks_total=r[15],
            blocked_by=tuple(r[16] or ()),
            waiting_for=r[17],
        )
    return out


def _blockers(conn: psycopg.Connection[Any], pids: Sequence[int]) -> dict[int, Blocker]:
    if not pids:
        return {}
    return {r[0]: Blocker(*r) for r in conn.execute(BLOCKERS_SQL, (list(pids),))}


# -- the result ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Vacuum:
    pid: int
    relid: int
    relation: str | None
    phase: str
    scanned_pct: float | None
    backend_type: str | None
    wait: str | None
    xact_seconds: float | None


@dataclass
class SideDiagnosis:
    """What was seen on one server."""

    role: str
    server: str
    sessions: list[SessionDiagnosis] = field(default_factory=list)
    blocked: list[dict[str, Any]] = field(default_factory=list)
    ungranted: list[dict[str, Any]] = field(default_factory=list)
    waits: list[dict[str, Any]] = field(default_factory=list)
    idle_in_transaction: list[dict[str, Any]] = field(default_factory=list)
    vacuums: list[Vacuum] = field(default_factory=list)
    old_xmin: list[dict[str, Any]] = field(default_factory=list)
    slots: list[dict[str, Any]] = field(default_factory=list)
    wal_bytes: int | None = None
    growth_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["sessions"] = [s.to_json() for s in self.sessions]
        return out


@dataclass
class Diagnosis:
    seconds: float
    target: SideDiagnosis
    source: SideDiagnosis | None
    report: Report
    store_running: dict[str, int] = field(default_factory=dict)

    def exit_code(self) -> int:
        return self.report.exit_code()

    def to_json(self) -> dict[str, Any]:
        return {
            "window_seconds": self.seconds,
            "target": self.target.to_json(),
            "source": self.source.to_json() if self.source else None,
            "state_store_running_units": self.store_running,
            **self.report.to_json(),
        }


def _rows(conn: psycopg.Connection[Any], query: str, names: Sequence[str]) -> list[dict[str, Any]]:
    return [dict(zip(names, r, strict=True)) for r in conn.execute(query)]


class _Side:
    """One server's connection and its two samples."""

    def __init__(self, info: ConnInfo, pattern: str) -> None:
        self.info = info
        self.pattern = pattern
        self.conn = info.connect("pgferry diagnose", settings=READ_ONLY)
        self.first: dict[int, SampledSession] = {}
        self.second: dict[int, SampledSession] = {}
        self.t0 = self.t1 = 0.0
        self.wal0: str | None = None
        self.size0: int | None = None

    def sample_first(self, throughput: bool) -> None:
        self.t0 = time.monotonic()
        self.first = _sessions(self.conn, self.pattern)
        if throughput:
            self.wal0, self.size0 = self.conn.execute(THROUGHPUT_SQL).fetchone()  # type: ignore[misc]

    def sample_second(self) -> None:
        self.t1 = time.monotonic()
        self.second = _sessions(self.conn, self.pattern)

    def close(self) -> None:
        self.conn.close()


def _diagnose_sessions(side: _Side, window: float, slow_rate: float) -> list[SessionDiagnosis]:
    seconds = max(side.t1 - side.t0, 0.001) if window > 0 else 0.0
    blocker_pids = sorted({p for s in side.second.values() for p in s.blocked_by})
    blockers = _blockers(side.conn, blocker_pids)
    out = []
    for pid, before in side.first.items():
        after = side.second.get(pid)
        verdict, message = judge(before, after, seconds, slow_rate)
        mine = after.blocked_by if after else ()
        out.append(
            SessionDiagnosis(
                before=before,
                after=after,
                seconds=seconds,
                verdict=verdict,
                message=message,
                blockers=tuple(blockers[p] for p in mine if p in blockers),
            )
        )
    for pid, after in side.second.items():
        if pid not in side.first:  # started during the window: judge it from now on
            out.append(
                SessionDiagnosis(
                    before=after,
                    after=after,
                    seconds=0.0,
                    verdict=Verdict.PASS,
                    message="started during the window",
                    blockers=tuple(blockers[p] for p in after.blocked_by if p in blockers),
                )
            )
    return out


def _fill_target(side: _Side, diag: SideDiagnosis) -> None:
    conn = side.conn
    diag.blocked = _rows(
        conn, BLOCKED_SQL, ("pid", "application_name", "wait", "blocked_by", "query")
    )
    diag.ungranted = _rows(
        conn, UNGRANTED_LOCKS_SQL, ("pid", "locktype", "mode", "relation", "blocked_by", "query")
    )
    diag.waits = _rows(
        conn, WAITS_SQL, ("backend_type", "state", "wait_event_type", "wait_event", "count")
    )
    diag.idle_in_transaction = _rows(
        conn, IDLE_IN_TRANSACTION_SQL, ("pid", "user", "application_name", "seconds", "query")
    )
    diag.vacuums = [Vacuum(*r) for r in conn.execute(VACUUM_PROGRESS_SQL)]
    wal1, size1 = conn.execute(THROUGHPUT_SQL).fetchone()  # type: ignore[misc]
    if side.wal0 and wal1:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint", (wal1, side.wal0)
        )
        diag.wal_bytes = int(row.fetchone()[0])  # type: ignore[index]
    if side.size0 is not None and size1 is not None:
        diag.growth_bytes = max(int(size1) - int(side.size0), 0)


def _fill_source(side: _Side, diag: SideDiagnosis) -> None:
    conn = side.conn
    diag.old_xmin = _rows(
        conn,
        OLD_XMIN_SQL,
        ("pid", "user", "application_name", "state", "xmin_age", "xact_seconds", "query"),
    )
    diag.slots = [
        {
            "slot_name": r.name,
            "plugin": r.plugin,
            "slot_type": r.slot_type,
            "active": r.active,
            "wal_status": r.wal_status,
            "retained_bytes": r.retained_bytes,
            "safe_wal_size": r.safe_wal_size,
        }
        for r in list_slots(conn)
    ]
    diag.waits = _rows(
        conn, WAITS_SQL, ("backend_type", "state", "wait_event_type", "wait_event", "count")
    )


def _judge_target(
    report: Report, diag: SideDiagnosis, pattern: str, store_running: dict[str, int]
) -> None:
    copying = {s.before.relid for s in diag.sessions if s.before.relid}
    for i, s in enumerate(diag.sessions):
        if s.before.relid and any(v.relid == s.before.relid for v in diag.vacuums):
            diag.sessions[i] = replace(s, autovacuum_same_table=True)
    busy = sum(n for kind, n in store_running.items() if kind != "sequence")
    if not diag.sessions and busy:
        report.warn(
            "target.sessions",
            f"the state store shows {busy} running unit(s) but no pgferry session is active "
            "on the target: the workers wait on the source, or the run died",
            fix="check the source section and pgferry status",
        )
    elif not diag.sessions:
        report.skip(
            "target.sessions",
            f"no active pgferry session on the target (application_name LIKE '{pattern}')",
        )
    for s in diag.sessions:
        cur = s.after or s.before
        label = f"{cur.command} {cur.relation or ''}".strip()
        extra = ""
        if s.blockers:
            b = s.blockers[0]
            extra = (
                f"; blocker pid {b.pid} ({b.application_name or b.user or '?'}, {b.state}, "
                f"transaction {human_duration(b.xact_seconds)}): {b.query or ''}"
            )
        fix = None
        if s.verdict == Verdict.FAIL and s.blockers:
            fix = (
                f"end the blocking transaction (SELECT pg_terminate_backend({s.blockers[0].pid}))"
                " or wait for it; an idle-in-transaction blocker is the usual cause"
            )
        report.add(
            f"target.pid.{cur.pid}", s.verdict, f"{label}: {s.message}{extra}", fix, pid=cur.pid
        )
    others = [
        b for b in diag.blocked if not str(b["application_name"] or "").startswith("pgferry:")
    ]
    if others:
        report.warn(
            "target.blocked",
            f"{len(others)} other backend(s) wait for locks on the target",
            fix="see the blocked list; an idle-in-transaction blocker is the usual cause",
        )
    else:
        report.ok("target.blocked", "no other backend waits for a lock")
    same = sorted({v.relation or str(v.relid) for v in diag.vacuums if v.relid in copying})
    if same:
        report.warn(
            "target.autovacuum",
            f"vacuum runs on tables pgferry is writing: {', '.join(same)}: it competes for "
            "I/O and WAL (it does not block COPY)",
            fix="ALTER TABLE ... SET (autovacuum_enabled = off) during the load, then "
            "re-enable it and ANALYZE",
        )
    elif diag.vacuums:
        report.ok("target.autovacuum", f"{len(diag.vacuums)} vacuum(s) running, on other tables")
    old_idle = [
        r
        for r in diag.idle_in_transaction
        if (r["seconds"] or 0) > IDLE_IN_XACT_WARN
        and not str(r["application_name"] or "").startswith("pgferry:")
    ]
    if old_idle:
        report.warn(
            "target.idle_in_transaction",
            f"{len(old_idle)} session(s) idle in transaction for more than "
            f"{human_duration(IDLE_IN_XACT_WARN)}: they hold locks and pin xmin",
            fix="end them (pg_terminate_backend) if they are leftovers",
        )
    if diag.wal_bytes is not None:
        report.ok(
            "target.throughput",
            f"WAL written {human_bytes(diag.wal_bytes)}, database grew "
            f"{human_bytes(diag.growth_bytes or 0)} in the window",
        )


def _judge_source(report: Report, diag: SideDiagnosis) -> None:
    for s in diag.sessions:
        cur = s.after or s.before
        label = f"{cur.command} {cur.relation or ''}".strip()
        verdict = s.verdict if s.verdict != Verdict.FAIL else Verdict.WARN
        report.add(f"source.pid.{cur.pid}", verdict, f"{label}: {s.message}", pid=cur.pid)
    long = [
        r
        for r in diag.old_xmin
        if (r["xact_seconds"] or 0) > LONG_XACT_WARN
        and not str(r["application_name"] or "").startswith("pgferry:")
    ]
    if long:
        r = long[0]
        report.warn(
            "source.xmin",
            f"{len(long)} transaction(s) older than {human_duration(LONG_XACT_WARN)} hold "
            f"back xmin (oldest: pid {r['pid']}, {human_duration(r['xact_seconds'])}, "
            f"xmin age {r['xmin_age']}): vacuum cannot clean behind them",
            fix="end them if they are leftovers",
        )
    else:
        report.ok("source.xmin", "no long transaction (other than pgferry's) holds back xmin")
    for slot in diag.slots:
        retained = slot["retained_bytes"]
        text = (
            f"slot {slot['slot_name']} ({'active' if slot['active'] else 'inactive'}, "
            f"wal_status {slot['wal_status']}) retains "
            f"{human_bytes(retained) if retained is not None else '?'} of WAL"
        )
        name = f"source.slot.{slot['slot_name']}"
        if slot["wal_status"] == "lost":
            report.fail(name, text + ": the slot is lost", fix="drop it; CDC must start over")
        elif slot["wal_status"] == "unreserved":
            report.warn(
                name,
                text + ": about to be lost (max_slot_wal_keep_size)",
                fix="let its consumer catch up, or raise max_slot_wal_keep_size",
            )
        else:
            report.ok(name, text)


def diagnose(
    target: ConnInfo,
    source: ConnInfo | None = None,
    *,
    tag: str | None = None,
    seconds: float = 5.0,
    slow_rate: float = DEFAULT_SLOW_RATE,
    store_running: dict[str, int] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Diagnosis:
    """Sample both sides `seconds` apart and judge every pgferry session."""
    pattern = session_pattern(tag)
    sides: list[_Side] = []
    try:
        tgt = _Side(target, pattern)
        sides.append(tgt)
        src = _Side(source, pattern) if source is not None else None
        if src is not None:
            sides.append(src)
        for side in sides:
            side.sample_first(throughput=side is tgt)
        sleep(seconds)
        for side in sides:
            side.sample_second()
        report = Report("Copy stall diagnosis")
        report.facts["target"] = target.short()
        report.facts["source"] = source.short() if source else "not given (source skipped)"
        report.facts["sessions"] = f"application_name LIKE '{pattern}'"
        report.facts["window"] = f"{seconds:g}s"
        if store_running:
            report.facts["state store"] = ", ".join(
                f"{n} {kind} running" for kind, n in sorted(store_running.items())
            )
        tdiag = SideDiagnosis("target", target.short())
        tdiag.sessions = _diagnose_sessions(tgt, seconds, slow_rate)
        _fill_target(tgt, tdiag)
        _judge_target(report, tdiag, pattern, dict(store_running or {}))
        sdiag = None
        if src is not None:
            assert source is not None
            sdiag = SideDiagnosis("source", source.short())
            sdiag.sessions = _diagnose_sessions(src, seconds, slow_rate)
            _fill_source(src, sdiag)
            _judge_source(report, sdiag)
        else:
            report.skip("source", "no source given: pass --source to see the COPY TO side")
        return Diagnosis(seconds, tdiag, sdiag, report, dict(store_running or {}))
    finally:
        for side in sides:
            side.close()
