"""The run in a migration directory: its state (running, finished, failed, interrupted,
killed), the servers a report reads, and the log's tail. `status` and `cdc-status` both
build on it."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict

import psycopg

from pgferry.errors import ExitCode
from pgferry.pg.conninfo import ConnInfo, scrub
from pgferry.pg.profiles import DASHBOARD
from pgferry.state.store import Meta, StateStore
from pgferry.state.workdir import WorkDir

LOG_TAIL_BYTES = 4 * 1024 * 1024
LOG_TAIL_LINES = 10


class RunJson(TypedDict):
    state: str
    pid: int | None
    command: str | None
    run_id: int | None
    runs: int
    started_at: float | None
    finished_at: float | None
    first_started_at: float | None
    last_activity: float | None
    error: str | None
    elapsed: float | None


class LogSummary(TypedDict):
    path: str
    tail: list[str]
    errors: int
    last_error: str | None
    ignored: list[str]


class RunState(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C / SIGTERM / pgferry stop; resumable
    KILLED = "killed"  # the run row says running but no process holds DIR
    NOT_STARTED = "not started"


@dataclass(frozen=True)
class RunInfo:
    """Who runs (or ran) in DIR, and how it ended."""

    state: RunState
    pid: int | None
    command: str | None
    run_id: int | None
    runs: int  # how many times a clone/follow started in DIR (resumes included)
    started_at: float | None  # of this run
    finished_at: float | None
    first_started_at: float | None  # of the migration (first run)
    last_activity: float | None  # last write to DIR (state store or log)
    error: str | None

    @property
    def ok(self) -> bool:
        return self.state in (RunState.RUNNING, RunState.FINISHED)

    @property
    def exit_code(self) -> int:
        return int(ExitCode.OK) if self.ok else int(ExitCode.FAILED)

    def elapsed(self, now: float) -> float | None:
        """Wall time of this run: until now, its end, or its last sign of life."""
        if self.started_at is None:
            return None
        if self.state == RunState.RUNNING:
            end = now
        elif self.finished_at is not None:
            end = self.finished_at
        else:
            end = self.last_activity or now
        return max(0.0, end - self.started_at)

    def to_json(self, now: float) -> RunJson:
        return RunJson(
            state=str(self.state),
            pid=self.pid,
            command=self.command,
            run_id=self.run_id,
            runs=self.runs,
            started_at=self.started_at,
            finished_at=self.finished_at,
            first_started_at=self.first_started_at,
            last_activity=self.last_activity,
            error=self.error,
            elapsed=self.elapsed(now),
        )


_RUN_STATES = {
    "done": RunState.FINISHED,
    "failed": RunState.FAILED,
    "interrupted": RunState.INTERRUPTED,
}


def last_activity(workdir: WorkDir) -> float | None:
    """When the run last wrote anything to DIR (its state store or its log)."""
    times = []
    for path in (
        workdir.state_file,
        workdir.state_file.with_name(workdir.state_file.name + "-wal"),
        workdir.log_file,
    ):
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times) if times else None


def run_info(workdir: WorkDir, store: StateStore) -> RunInfo:
    """The run state. The lock is read before the run rows, and again when they disagree:
    a run that starts or ends between the two reads is never reported as killed."""
    pid = workdir.running_pid()
    rows = store.runs()
    last = rows[-1] if rows else None
    stored = last.status if last is not None else store.get_meta(Meta.STATUS)
    if pid is None and stored == "running":
        pid = workdir.running_pid()
        rows = store.runs()
        last = rows[-1] if rows else None
        stored = last.status if last is not None else store.get_meta(Meta.STATUS)
    if pid is not None:
        state = RunState.RUNNING
    elif stored == "running":
        state = RunState.KILLED
    elif stored in _RUN_STATES:
        state = _RUN_STATES[stored]
    else:
        state = RunState.NOT_STARTED
    first = store.get_meta(Meta.STARTED_AT)
    return RunInfo(
        state=state,
        pid=pid if pid is not None and pid > 0 else None,
        command=last.command if last is not None else None,
        run_id=last.id if last is not None else None,
        runs=len(rows),
        started_at=last.started_at if last is not None else None,
        finished_at=last.finished_at if last is not None else None,
        first_started_at=float(first) if first else None,
        last_activity=last_activity(workdir),
        error=scrub(last.error) if last is not None and last.error else None,
    )


class Servers:
    """Read-only connections to the source and target, opened once and reused (--watch).

    A server that cannot be reached is reported, never fatal: the rest of the report
    comes from DIR. After a failed connection attempt the next one waits RETRY_SECONDS,
    so a refresh never hangs on a dead server every time.
    """

    RETRY_SECONDS = 15.0

    def __init__(self, source: ConnInfo | None = None, target: ConnInfo | None = None) -> None:
        self.infos = {"source": source, "target": target}
        self.conns: dict[str, psycopg.Connection[Any]] = {}
        self.errors: dict[str, str] = {}  # this report's problems, per role
        self._failed_at: dict[str, tuple[float, str]] = {}

    def has(self, role: str) -> bool:
        return self.infos.get(role) is not None

    def new_report(self) -> None:
        """Forget the previous report's query errors (connection failures stay known)."""
        self.errors.clear()

    def conn(self, role: str) -> psycopg.Connection[Any] | None:
        info = self.infos.get(role)
        if info is None:
            return None
        conn = self.conns.get(role)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        failed = self._failed_at.get(role)
        if failed is not None and time.monotonic() - failed[0] < self.RETRY_SECONDS:
            self.errors[role] = failed[1]
            return None
        try:
            conn = info.connect(f"pgferry {role} status", settings=DASHBOARD)
        except Exception as exc:
            self.errors[role] = _one_line(exc, info)
            self._failed_at[role] = (time.monotonic(), self.errors[role])
            return None
        self._failed_at.pop(role, None)
        self.conns[role] = conn
        return conn

    def failed(self, role: str, exc: BaseException) -> None:
        """A query failed: remember why, and reconnect next time if the link broke."""
        info = self.infos.get(role)
        self.errors[role] = _one_line(exc, info)
        conn = self.conns.get(role)
        if conn is not None and (conn.closed or conn.broken):
            self.conns.pop(role, None)

    def close(self) -> None:
        for conn in self.conns.values():
            try:
                conn.close()
            except Exception:
                pass
        self.conns.clear()


def _one_line(exc: BaseException, info: ConnInfo | None) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    secrets = info.secrets() if info is not None else ()
    return scrub(" ".join(str(text).split()), secrets)


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (\w+)\s")


def log_summary(path: Path, since: float | None) -> LogSummary:
    """The last lines of DIR/pgferry.log, and its ERROR lines of the current run.

    Only the log's tail (a few MB) is read: the log keeps every run and can be large.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            data = f.read()
    except OSError:
        return {"path": str(path), "tail": [], "errors": 0, "last_error": None, "ignored": []}
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > LOG_TAIL_BYTES and lines:
        lines = lines[1:]  # the first line is probably cut
    errors: list[str] = []
    ignored: list[str] = []
    for line in lines:
        m = _LOG_TIME.match(line)
        if not m:
            continue
        if since is not None:
            try:
                at = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
            except ValueError:
                continue
            if at + 1 < since:
                continue
        if m.group(2) == "ERROR":
            errors.append(line)
        elif "ignored error:" in line:
            ignored.append(line)
    return {
        "path": str(path),
        "tail": [scrub(line) for line in lines[-LOG_TAIL_LINES:]],
        "errors": len(errors),
        "last_error": scrub(errors[-1]) if errors else None,
        "ignored": [scrub(line) for line in ignored],
    }
