"""`clone --detach`: run the same command in the background, immune to the terminal.

The usual answer is screen or tmux; this makes it one flag. The command is started again
(without --detach) in a new session: no controlling terminal, its own process group,
SIGHUP ignored, stdin from /dev/null and its output in DIR/pgferry.detached.log. Killing
the launching shell or closing the SSH session therefore does not reach it; `pgferry
stop --dir DIR` does (it signals the process holding DIR's lock).

Passwords stay out of the new process's argv: a password still in a --source/--target
value moves to PGFERRY_<ROLE>_PASSWORD, as `hide_passwords_from_ps` does.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from pgferry.errors import InputError, PgferryError
from pgferry.pg.conninfo import move_passwords
from pgferry.state.store import StateStore
from pgferry.state.workdir import WorkDir

LOG_NAME = "pgferry.detached.log"
STARTUP_SECONDS = 30.0  # how long to wait for the child to begin its run (or fail)


def strip_detach(argv: list[str]) -> list[str]:
    return [a for a in argv if a != "--detach"]


def _open_log(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    os.write(fd, f"--- pgferry detached at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
    return fd


def _spawn(command: list[str], env: dict[str, str], log_fd: int) -> subprocess.Popen[bytes]:
    """Start `command` in a new session with SIGHUP ignored (inherited across exec)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN) if main else None
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        if main:
            signal.signal(signal.SIGHUP, previous)


def _run_began(workdir: WorkDir, pid: int) -> bool:
    """Has process `pid` recorded its run in DIR's state store (its checks passed)?"""
    if not workdir.state_file.exists():
        return False
    try:
        store = StateStore.open_dir(workdir.path, readonly=True)
    except (PgferryError, sqlite3.Error):
        return False
    try:
        return any(r.pid == pid for r in store.runs())
    except sqlite3.Error:
        return False
    finally:
        store.close()


def _wait_started(proc: subprocess.Popen[bytes], workdir: WorkDir, timeout: float) -> bool:
    """True once the child holds DIR and has begun its run (connections, tools and the
    state of DIR checked); False if it exited first or took longer than `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if workdir.running_pid() == proc.pid and _run_began(workdir, proc.pid):
            return True
        time.sleep(0.1)
    return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def detach(argv: list[str], workdir: Path) -> int:
    """Re-run `pgferry ARGV` (minus --detach) fully detached; print how to follow it.

    Returns 0 once the background run holds DIR and has begun (its startup checks
    passed); if it fails before that (bad options, DIR busy, a server unreachable, a
    previous run that needs --resume), prints the end of its log and returns its exit
    code.
    """
    wd = WorkDir(workdir)
    pid = wd.running_pid()
    if pid is not None:
        raise InputError(
            f"another pgferry (pid {pid}) is running on {wd.path}",
            fix=f"follow it with pgferry status --dir {wd.path} --watch, or stop it with "
            f"pgferry stop --dir {wd.path}",
        )
    wd.create()
    env = dict(os.environ)
    args = move_passwords(strip_detach(argv), env)
    env["PGFERRY_ARGV_CLEAN"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    log_path = wd.path / LOG_NAME
    log_fd = _open_log(log_path)
    try:
        proc = _spawn([sys.executable, "-m", "pgferry", *args], env, log_fd)
    finally:
        os.close(log_fd)
    started = _wait_started(proc, wd, STARTUP_SECONDS)
    code = proc.poll()
    if not started and code is not None:
        sys.stderr.write(f"pgferry (detached) exited at once with code {code}:\n")
        sys.stderr.write(_tail(log_path) + "\n")
        sys.stderr.flush()
        return code or 1
    d = str(wd.path)
    lines = [
        f"pgferry runs in the background: pid {proc.pid}" + ("" if started else " (starting)"),
        f"  output:  {log_path}  (full log: {wd.log_file})",
        f"  follow:  pgferry status --dir {d} --watch",
        f"  stop:    pgferry stop --dir {d}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return 0
