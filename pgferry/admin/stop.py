"""`pgferry stop`: halt the migration running on a work directory, leaving it resumable.

The process to stop is the one holding DIR's lock (WorkDir.running_pid), never "every
pgferry on the host". SIGTERM asks it to stop its workers and record where it got (it
exits with code 6); if it is still there after the grace period, SIGKILL ends it and
every process it started (its process group when it leads one, else its descendants).
Either way DIR stays resumable: SIGKILL at any point is a crash pgferry recovers from.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pgferry.errors import InputError, PgferryError
from pgferry.state.store import StateStore
from pgferry.state.workdir import WorkDir


class StopOutcome(StrEnum):
    NOTHING = "nothing to stop"
    STOPPED = "stopped"  # exited on SIGTERM within the grace period
    KILLED = "killed"  # needed SIGKILL
    SURVIVED = "still running"  # even SIGKILL did not end it (or we may not signal it)


@dataclass
class StopResult:
    dir: Path
    outcome: StopOutcome
    pid: int | None = None
    seconds: float = 0.0
    killed: list[int] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)
    command: str | None = None  # the last run's command (clone, follow)
    run_status: str | None = None  # what the run recorded (interrupted, running, ...)
    units: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> status -> n
    cdc_started: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome != StopOutcome.SURVIVED

    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def next_steps(self) -> list[str]:
        if self.outcome == StopOutcome.NOTHING:
            return []
        if not self.ok:
            pids = " ".join(str(p) for p in self.survivors)
            return [f"processes survived SIGKILL: check them with ps -o pid,stat -p {pids}"]
        command = self.command or "clone"
        steps = [
            f"resume with: pgferry {command} --resume --dir {self.dir} (and the same "
            "--source, --target and --filters as before)"
        ]
        if self.cdc_started:
            steps.append(
                "the replication slot stays on the source and retains WAL until CDC "
                "resumes; if you will not resume soon, drop it with pgferry cleanup (a "
                "full new clone is then needed)"
            )
        steps.append(
            f"to start over instead: pgferry target-clean, pgferry cleanup, then a new "
            f"pgferry {command}"
        )
        return steps

    def to_json(self) -> dict[str, Any]:
        return {
            "dir": str(self.dir),
            "outcome": str(self.outcome),
            "pid": self.pid,
            "seconds": round(self.seconds, 3),
            "killed": self.killed,
            "survivors": self.survivors,
            "command": self.command,
            "run_status": self.run_status,
            "units": self.units,
            "cdc_started": self.cdc_started,
            "next_steps": self.next_steps(),
        }


# -- processes -----------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) from /proc; None when there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child its parent has not reaped)."""
    st = _stat(pid)
    if st is not None:
        return st[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st is not None:
            children.setdefault(st[1], []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise PgferryError(
            f"not allowed to signal pid {pid} (another user's process)",
            fix="run pgferry stop as the user that started the migration",
        ) from None


def _kill_all(pid: int) -> list[int]:
    """SIGKILL `pid` and what it started: its group if it leads one (not ours), else its
    descendants one by one. Returns the pids signalled."""
    targets = [pid, *descendants(pid)]
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = -1
    if pgid == pid and pgid != os.getpgrp():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in targets:
        _signal(p, signal.SIGKILL)
    return targets


def _wait(condition: Callable[[], bool], timeout: float, poll: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


# -- the command -----------------------------------------------------------------------------


def stop_migration(
    path: Path, grace: float = 60.0, *, poll: float = 0.1, kill_wait: float = 10.0
) -> StopResult:
    """SIGTERM the process holding DIR, wait up to `grace` seconds, then SIGKILL."""
    workdir = WorkDir(path)
    if not workdir.path.is_dir():
        raise InputError(
            f"no work directory at {workdir.path}",
            fix="pass the --dir of the running migration (or set PGCOPYDB_DIR)",
        )
    pid = workdir.running_pid()
    if pid is None:
        return _with_state(StopResult(workdir.path, StopOutcome.NOTHING))
    if pid <= 0:
        raise InputError(
            f"{workdir.pidfile} is locked but holds no pid: cannot tell which process to stop",
            fix=f"find the pgferry using {workdir.path} (fuser {workdir.pidfile}) and stop it",
        )
    started = time.monotonic()
    result = StopResult(workdir.path, StopOutcome.STOPPED, pid=pid)
    family = [pid, *descendants(pid)]

    def released() -> bool:
        return not alive(pid) and workdir.running_pid() is None

    _signal(pid, signal.SIGTERM)
    if not _wait(released, grace, poll):
        result.outcome = StopOutcome.KILLED
        result.killed = _kill_all(pid)
        family = sorted(set(family) | set(result.killed))
        _wait(lambda: not any(alive(p) for p in family), kill_wait, poll)
    result.survivors = [p for p in family if alive(p)]
    if result.survivors:
        result.outcome = StopOutcome.SURVIVED
    result.seconds = time.monotonic() - started
    return _with_state(result)


def _with_state(result: StopResult) -> StopResult:
    """Add what DIR's state store says: the last run, the units, whether CDC started."""
    try:
        store = StateStore.open_dir(result.dir, readonly=True)
    except (InputError, OSError):
        return result
    try:
        runs = store.runs()
        if runs:
            result.command = runs[-1].command
            result.run_status = runs[-1].status
        units: dict[str, dict[str, int]] = {}
        for (kind, status), n in store.counts().items():
            units.setdefault(kind, {})[status] = n
        result.units = units
        sentinel = store.sentinel()
        result.cdc_started = bool(sentinel is not None and sentinel.startpos)
    except sqlite3.Error:  # a store being written or of another version: report without it
        pass
    finally:
        store.close()
    return result
