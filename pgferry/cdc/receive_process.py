"""Receive in a process of its own, beside apply.

In one process the receiver and apply share the interpreter lock: under load every
hand-over between them waited for the scheduler, and the source's messages sat in the
socket for a median 0.6 s before the receiver read them (bench/README.md). So the
receiver runs in a child (`python -c` calling `receive_process.main`) and tells its
parent over a pipe what became durable, its log lines, and how it ended. The spool
and the state store stay the only shared state; both were made for a reader and a
writer that know nothing of each other.

The parent holds the write end of the child's stdin: closing it (a stop, or the
parent's death, kill -9 included) makes the child stop receiving at once, after
making durable what it has. A lock in the spool directory keeps a second receiver (a
new run started while an orphan still finishes) from touching the spool until the
first one has ended.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pgferry.cdc.receive import RETRY_SECONDS, ReceiveOptions, Receiver
from pgferry.errors import Interrupted, PgferryError, StepFailed, from_os_error
from pgferry.pg.conninfo import ConnInfo
from pgferry.state.store import StateStore

log = logging.getLogger(__name__)

LOCK_NAME = "receive.lock"
LOCK_WAIT_SECONDS = 60.0
STABLE_SECONDS = 60.0  # a process that ran this long and died: its restarts count anew
# What the child tells its parent, each a (kind, value) pair.
DURABLE = "durable"  # an LSN: everything committed up to it is durable in the spool
LOG = "log"  # a LogRecord, its message already formatted
END = "end"  # how it ended: None, or the PgferryError the parent raises


@dataclass(frozen=True)
class ReceiveJob:
    """Everything the receiving process needs, sent to it through its stdin."""

    source: ConnInfo
    options: ReceiveOptions
    spool_dir: Path
    state_path: Path
    start_lsn: int
    # Asked every WATCH_SECONDS: a problem that stops receiving (plain data, pickled).
    watch: Callable[[], str | None] | None = None
    log_level: int = logging.INFO


class ReceiveProcess:
    """The parent's handle on the receiving process: `start`, `stop`, `join`, and what
    apply reads: `durable`, `visible` (set when `durable` moved) and `error`.

    A process that dies without saying why (the OOM killer, kill -9) is started again,
    with the receiver's own pauses: it goes on from what it had made durable."""

    def __init__(self, job: ReceiveJob) -> None:
        self.job = job
        self.durable = 0
        self.visible = threading.Event()
        self.error: PgferryError | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._commands: Connection | None = None
        self._supervisor: threading.Thread | None = None

    def start(self) -> None:
        events = self._spawn()
        self._supervisor = threading.Thread(
            target=self._supervise, args=(events,), name="cdc-receive", daemon=True
        )
        self._supervisor.start()

    def stop(self) -> None:
        """Stop receiving (what was received is made durable first)."""
        self._stopping.set()
        with self._lock:
            if self._commands is not None:
                self._commands.close()  # the child reads the end of its stdin
                self._commands = None

    def finished(self) -> bool:
        """It ended by itself (the end position received) or for good (an error)."""
        return self._supervisor is not None and not self._supervisor.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Stop, and wait for the process to end; after `timeout`, end it."""
        self.stop()
        if self._supervisor is not None:
            self._supervisor.join(timeout)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            log.warning("the receiving process did not stop in time; ending it")
            proc.kill()
            proc.wait()
            if self._supervisor is not None:
                self._supervisor.join(5)

    def _spawn(self) -> Connection:
        """Start a receiving process and send it the job; returns its events' pipe."""
        events_r, events_w = os.pipe()
        commands_r, commands_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, _package_root(), str(events_w)],
                stdin=commands_r,
                pass_fds=(events_w,),
                # A session of its own, as PostgreSQL gives each backend: where the kernel
                # shares CPU between sessions (autogroup), the receiver does not take
                # apply's share, nor apply the receiver's.
                start_new_session=True,
            )
        except BaseException:
            for fd in (events_r, commands_w):
                os.close(fd)
            raise
        finally:
            os.close(events_w)
            os.close(commands_r)
        commands = Connection(commands_w, readable=False)
        level = logging.getLogger().getEffectiveLevel()
        with contextlib.suppress(OSError):  # it ended already: its events say why
            commands.send(replace(self.job, log_level=level))
        with self._lock:
            self._proc = proc
            self._commands = commands
            if self._stopping.is_set():
                commands.close()
                self._commands = None
        return Connection(events_r, writable=False)

    def _supervise(self, events: Connection) -> None:
        attempt = 0
        try:
            while True:
                started = time.monotonic()
                ended = self._read(events)
                assert self._proc is not None
                code = self._proc.wait()
                if ended or self._stopping.is_set():
                    return
                if time.monotonic() - started >= STABLE_SECONDS:
                    attempt = 0  # it had run: a new failure, not the same one again
                if attempt >= len(RETRY_SECONDS):
                    self.error = StepFailed(
                        f"the receiving process ended unexpectedly ({_exit_text(code)}), "
                        f"{attempt + 1} times in a row",
                        fix="see the lines before this one (and the system log: the OOM "
                        "killer?), then run the same command again with --resume",
                    )
                    return
                wait = RETRY_SECONDS[attempt]
                attempt += 1
                log.warning(
                    "the receiving process ended unexpectedly (%s); starting it again in %ds",
                    _exit_text(code),
                    wait,
                )
                if self._stopping.wait(wait):
                    return
                events = self._spawn()
        except BaseException as exc:  # could not start it again: the disk, the system
            self.error = _for_parent(exc)
        finally:
            self.visible.set()  # apply looks at once

    def _read(self, events: Connection) -> bool:
        """What one process tells, until it ends: True when it said how it ended."""
        ended = False
        try:
            while True:
                kind, value = events.recv()
                if kind == DURABLE:
                    self.durable = value
                    self.visible.set()
                elif kind == LOG:
                    logging.getLogger(value.name).handle(value)
                elif kind == END:
                    ended = True
                    self.error = value
        except (EOFError, OSError):
            pass
        finally:
            events.close()
        return ended


_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from pgferry.cdc.receive_process import main; main(int(sys.argv[2]))"
)


def _package_root() -> str:
    """Where this pgferry is imported from: the child imports the same one."""
    return str(Path(__file__).resolve().parents[2])


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


# -- the child ----------------------------------------------------------------------------


class _Events:
    """The pipe to the parent. A parent gone (kill -9) is not this process's failure:
    its stdin ends too, and that stops the receiver."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, kind: str, value: Any) -> None:
        with self.lock:
            try:
                self.conn.send((kind, value))
            except OSError:
                pass
            except (pickle.PicklingError, TypeError, AttributeError):
                if kind == END and isinstance(value, PgferryError):
                    with contextlib.suppress(OSError):
                        self.conn.send((kind, StepFailed(value.one_line())))


class _Forward(logging.Handler):
    """Log records go to the parent, which writes them where its own go."""

    def __init__(self, events: _Events) -> None:
        super().__init__()
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args, record.exc_info = message, None, None
            record.stack_info = None
            self.events.send(LOG, record)
        except Exception:
            self.handleError(record)


def main(events_fd: int) -> None:
    """The receiving process: the job from stdin, then receive until stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    events = _Events(Connection(events_fd, readable=False))
    commands = Connection(0, writable=False)
    try:
        job: ReceiveJob = commands.recv()
    except (EOFError, OSError):
        return  # the parent went before it said what to do
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_Forward(events))
    root.setLevel(job.log_level)
    logging.getLogger("psycopg").setLevel(logging.WARNING)
    try:
        error = _receive(job, commands, events)
    except BaseException as exc:
        error = _for_parent(exc)
        if from_os_error(exc) is None:  # a local disk problem: the parent says it, once
            log.error("receiving changes failed: %s", error.one_line())
    events.send(END, error)


def _receive(job: ReceiveJob, commands: Connection, events: _Events) -> PgferryError | None:
    store = StateStore(job.state_path)
    try:
        with spool_lock(job.spool_dir):
            receiver = Receiver(
                job.source,
                job.options,
                job.spool_dir,
                store,
                job.start_lsn,
                watch=job.watch,
                on_durable=lambda lsn: events.send(DURABLE, lsn),
            )
            threading.Thread(
                target=_stop_at_end, args=(commands, receiver), name="stop", daemon=True
            ).start()
            terminated = threading.Event()

            def on_term(*_: object) -> None:
                terminated.set()
                receiver.stop()

            signal.signal(signal.SIGTERM, on_term)
            receiver.run()
            if receiver.error is not None:
                return _for_parent(receiver.error)
            if terminated.is_set():
                # Not the parent's stop: apply would wait for changes that never come.
                return Interrupted(
                    "the receiving process was stopped (SIGTERM)",
                    fix="run the same command again with --resume",
                )
            return None
    finally:
        store.close()


def _stop_at_end(commands: Connection, receiver: Receiver) -> None:
    """Stop the receiver when the parent closes our stdin, or dies."""
    try:
        commands.recv()
    except (EOFError, OSError):
        pass
    finally:
        receiver.stop()


def _for_parent(exc: BaseException) -> PgferryError:
    """The error as the parent raises it: a local disk problem names its fix; anything
    else that is not already one of ours is a failed step."""
    problem = from_os_error(exc)
    if problem is not None:
        return problem
    if isinstance(exc, PgferryError):
        return exc
    return StepFailed(f"receiving changes failed: {' '.join(str(exc).split())}")


@contextlib.contextmanager
def spool_lock(spool_dir: Path, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """One receiver writes a spool at a time: wait `wait` seconds for another to end."""
    spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(spool_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StepFailed(
                        f"another receiver still writes {spool_dir}",
                        fix="wait for the pgferry process that holds it to end, then run "
                        "the same command again with --resume",
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
