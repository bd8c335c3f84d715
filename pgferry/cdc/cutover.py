"""`pgferry cutover`: the end of a live migration in one command, each step checked.

    1 caught up   a pgferry applies changes in DIR, the copy is done, the lag is small
    2 fence       (--fence) new sessions read-only, the application's sessions ended
    3 quiet       no write transaction left in the source database; the end position is
                  set at the source's current WAL position
    4 applied     the apply process reaches it, syncs the sequences and stops
    5 verify      the target against the source (quick, or --full)
    6 report      what to do next

A step that fails raises with what to do; everything stays resumable and the command can
run again (a cutover already applied goes on at the verification).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pgferry import events
from pgferry.catalog.filters import Filters, no_filters
from pgferry.cdc.engine import set_endpos_current
from pgferry.cdc.protocol import current_wal_lsn
from pgferry.cdc.spool import newest_commit
from pgferry.checks.report import Report
from pgferry.checks.verify import run_verify
from pgferry.errors import InputError, StepFailed
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.fence import app_sessions, fence, is_fenced, unfence, writers
from pgferry.pg.lsn import format_lsn, lsn_or_none
from pgferry.state.store import Meta, StateStore, UnitKind
from pgferry.state.workdir import WorkDir
from pgferry.text import human_bytes, human_duration, listed

log = logging.getLogger(__name__)

DEFAULT_MAX_LAG = 64 * 1024 * 1024
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class CutoverOptions:
    source: ConnInfo
    target: ConnInfo
    dir: Path
    max_lag: int = DEFAULT_MAX_LAG  # bytes of WAL apply may be behind at the start
    fence: bool = False
    app_roles: tuple[str, ...] = ()
    quiet_seconds: float = 3.0  # the source must stay without writers this long
    timeout: float = 600.0  # for each wait (quiet, applied)
    full: bool = False
    verify_jobs: int = 4


@dataclass
class CutoverResult:
    endpos: str | None = None
    fenced: int | None = None  # sessions ended by the fence
    report: Report | None = None
    steps: list[str] = field(default_factory=list)
    store: StateStore | None = None  # where each step is recorded (status, metrics)
    current: str = "caught up"  # the step under way: the one a failure is recorded for

    def record(self, step: str, outcome: str, error: str | None = None) -> None:
        if self.store is None:
            return
        state = self.store.get_json(Meta.CUTOVER) or {"steps": {}}
        state["steps"][step] = outcome
        state["at"] = time.time()
        state["error"] = error
        self.store.set_json(Meta.CUTOVER, state)


Confirm = Callable[[str], bool]


def run_cutover(o: CutoverOptions, confirm: Confirm) -> CutoverResult:
    workdir = WorkDir(o.dir)
    if not (o.dir / StateStore.FILENAME).exists():
        raise InputError(
            f"no pgferry state in {o.dir}",
            fix="pass the --dir of a running clone --follow or follow",
        )
    store = StateStore.open_dir(o.dir)
    result = CutoverResult(store=store)
    try:
        if store.get_meta(Meta.CDC_SLOT) is None:
            raise InputError(
                f"{o.dir} holds no CDC setup (it was not a --follow run)",
                fix="pass the --dir of a clone --follow or follow",
            )
        filters = _filters(store)
        if store.get_meta(Meta.CDC_DONE) == "1":
            for step in ("caught up", "quiet", "applied"):
                result.record(step, "done")
            _step(result, "earlier", "caught up, fence, quiet, applied: done by an earlier cutover")
        else:
            _caught_up(o, store, workdir, result)
            if o.fence:
                _fence(o, result, confirm)
            _quiet_then_endpos(o, store, result)
            _applied(o, store, workdir, result)
        result.current = "verify"
        result.report = _verify(o, filters, result)
        result.record("report", "done")
    except StepFailed as exc:
        result.record(result.current, "failed", exc.message)
        raise
    finally:
        store.close()
    return result


def run_unfence(source: ConnInfo) -> bool:
    """Undo --fence; returns whether the database was fenced."""
    with source.connect("pgferry unfence") as conn:
        was = is_fenced(conn)
        unfence(conn, source.dbname)
    return was


def _step(result: CutoverResult, step: str, line: str) -> None:
    """`step` is done (`line` says how): shown, recorded, posted."""
    result.steps.append(line)
    log.info("cutover: %s", line)
    if step != "earlier":
        result.record(step, "done")
    events.emit("cutover_step", f"cutover: {line}", step=step)


def _filters(store: StateStore) -> Filters:
    data = store.get_json(Meta.FILTERS) or store.get_json(Meta.FOLLOW_FILTERS)
    return Filters.from_json(data) if data is not None else no_filters()


def _caught_up(o: CutoverOptions, store: StateStore, workdir: WorkDir, r: CutoverResult) -> None:
    if workdir.running_pid() is None:
        raise StepFailed(
            f"step 1 (caught up): no pgferry is applying changes in {o.dir}",
            fix=f"start it again: pgferry follow --resume --dir {o.dir} (or clone --follow "
            "--resume), then run cutover again",
        )
    left = [u for u in store.units(UnitKind.COPY) if u.status != "done"]
    if left:
        raise StepFailed(
            f"step 1 (caught up): the copy is not finished ({len(left)} units to go)",
            fix="wait for it (pgferry status), then run cutover again",
        )
    row = store.sentinel()
    applied = (lsn_or_none(row.replay_lsn) or 0) if row is not None else 0
    with o.source.connect("pgferry cutover") as conn:
        current = current_wal_lsn(conn)
    lag = max(0, current - applied)
    if lag > o.max_lag:
        raise StepFailed(
            f"step 1 (caught up): apply is {human_bytes(lag)} behind the source "
            f"(the bound is {human_bytes(o.max_lag)})",
            fix="wait for it to catch up (pgferry cdc-status), or raise --max-lag",
        )
    _step(r, "caught up", f"caught up: apply is {human_bytes(lag)} behind the source")


def _fence(o: CutoverOptions, r: CutoverResult, confirm: Confirm) -> None:
    r.current = "fence"
    with o.source.connect("pgferry cutover") as conn:
        sessions = app_sessions(conn, list(o.app_roles)) if o.app_roles else []
        plan = (
            f"on the source database {o.source.dbname}: ALTER DATABASE ... SET "
            "default_transaction_read_only = on (new sessions read-only)"
            + (
                f", then end {len(sessions)} session(s) of {', '.join(o.app_roles)}"
                + (f" (pids {listed([str(s.pid) for s in sessions], 10)})" if sessions else "")
                if o.app_roles
                else "; open sessions keep writing until they reconnect (--app-role ends them)"
            )
        )
        print(f"fence: {plan}", flush=True)
        if not confirm("Fence the source now?"):
            raise StepFailed(
                "step 2 (fence): not confirmed; nothing was changed",
                fix="run again and confirm, or with --yes",
            )
        r.fenced = fence(conn, o.source.dbname, sessions)
    _step(
        r, "fence", f"fence: the source is read-only for new sessions; {r.fenced} session(s) ended"
    )


def _quiet_then_endpos(o: CutoverOptions, store: StateStore, r: CutoverResult) -> None:
    """Quiet: for quiet_seconds, no new transaction of the source database (in scope)
    arrived, while the receiver saw the WAL up to where it was when the wait began: every
    write of the database reaches the receiver, a short one as a long one (sessions
    holding a transaction ID are only named when it fails)."""
    r.current = "quiet"
    spool = WorkDir(o.dir).cdc_dir
    deadline = time.monotonic() + o.timeout
    with o.source.connect("pgferry cutover") as conn:
        newest = newest_commit(spool)
        since, mark = time.monotonic(), current_wal_lsn(conn)
        while True:
            time.sleep(POLL_SECONDS)
            now = time.monotonic()
            latest = newest_commit(spool)
            if latest != newest:  # a write arrived: the window starts again
                newest = latest
                since, mark = now, current_wal_lsn(conn)
            row = store.sentinel()
            seen = (lsn_or_none(row.write_lsn) or 0) if row is not None else 0
            if now - since >= o.quiet_seconds and seen >= mark:
                break
            if now > deadline:
                busy = writers(conn)
                raise StepFailed(
                    f"step 3 (quiet): the source database is still written after "
                    f"{human_duration(o.timeout)}"
                    + (
                        f" ({len(busy)} session(s) in write transactions: "
                        f"{listed([f'{s.pid} {s.role}' for s in busy], 5)})"
                        if busy
                        else ""
                    ),
                    fix="stop the application's writes (or use --fence --app-role ROLE), "
                    "then run cutover again",
                )
    lsn = set_endpos_current(o.source, store)
    r.endpos = format_lsn(lsn)
    _step(r, "quiet", f"quiet: no write for {o.quiet_seconds:g}s; end position set to {r.endpos}")


def _applied(o: CutoverOptions, store: StateStore, workdir: WorkDir, r: CutoverResult) -> None:
    r.current = "applied"
    deadline = time.monotonic() + o.timeout
    while True:
        done = store.get_meta(Meta.CDC_DONE) == "1"
        running = workdir.running_pid() is not None
        if done and not running:
            break
        if not running:
            runs = store.runs()
            why = runs[-1].error if runs and runs[-1].error else "it stopped"
            raise StepFailed(
                f"step 4 (applied): the apply process ended before the end position: {why}",
                fix=f"see {workdir.log_file}; resume it (pgferry follow --resume --dir "
                f"{o.dir}), then run cutover again: the end position stays",
            )
        if time.monotonic() > deadline:
            row = store.sentinel()
            at = row.replay_lsn if row is not None else "-"
            raise StepFailed(
                f"step 4 (applied): apply is at {at}, not yet at the end position "
                f"{r.endpos}, after {human_duration(o.timeout)}",
                fix="run cutover again to keep waiting (pgferry cdc-status shows the lag)",
            )
        time.sleep(POLL_SECONDS)
    _step(
        r, "applied", f"applied: every change up to {r.endpos} is on the target; sequences synced"
    )


def _verify(o: CutoverOptions, filters: Filters, r: CutoverResult) -> Report:
    report = run_verify(o.source, o.target, filters, full=o.full, jobs=o.verify_jobs)
    if report.failed:
        raise StepFailed(
            f"step 5 (verify): {len(report.failed)} difference(s): {report.failed[0].message}",
            fix="pgferry verify --full --dir DIR locates the rows; the source is unchanged "
            "(unfence it with pgferry cutover --unfence to go back to it)",
        )
    _step(
        r,
        "verify",
        f"verify: the target matches the source ({'full' if o.full else 'quick'}, "
        f"{len(report.checks)} checks, {len(report.warnings)} warnings)",
    )
    return report
