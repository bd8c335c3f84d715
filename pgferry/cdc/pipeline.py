"""A thin libpq pipeline: queue many prepared statements, read their results in order.

One round trip per batch of transactions instead of one per statement. Each queued
command carries a context (what it applies); a failing command raises `CommandFailed`
with that context, and everything after it up to the next sync is skipped by the server.
"""

from __future__ import annotations

import select
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg import errors as pgerrors
from psycopg import pq

_SYNC = object()
# Result statuses as plain ints: compared for every result of every statement.
_OK = (int(pq.ExecStatus.COMMAND_OK), int(pq.ExecStatus.TUPLES_OK))
_PIPELINE_SYNC = int(pq.ExecStatus.PIPELINE_SYNC)
_PIPELINE_ABORTED = int(pq.ExecStatus.PIPELINE_ABORTED)


def _find_send_pipeline_sync() -> Any:
    """libpq >= 17's PQsendPipelineSync (a sync without a flush) from the libpq psycopg
    loaded, when there is one; PQpipelineSync costs a send() per transaction."""
    try:
        import ctypes
        import glob
        import os

        import psycopg_binary  # type: ignore[import-not-found]

        libs = os.path.join(
            os.path.dirname(os.path.dirname(psycopg_binary.__file__)), "psycopg_binary.libs"
        )
        for path in glob.glob(os.path.join(libs, "libpq*.so*")):
            func = ctypes.CDLL(path).PQsendPipelineSync
            func.argtypes = [ctypes.c_void_p]
            func.restype = ctypes.c_int
            return func
    except (ImportError, OSError, AttributeError):
        return None
    return None


_SEND_PIPELINE_SYNC = _find_send_pipeline_sync()
# Commands queued between two looks at the socket: libpq sends when its buffer fills,
# and reading results now and then keeps the server from blocking on its own output.
PUMP_EVERY = 128
# wait_for_sync: farther than this many sync points, read results this often.
BATCH_WAKE_SYNCS = 32
BATCH_WAKE_SECONDS = 0.001
MAX_UNMATCHED = 10_000  # UPDATE/DELETE that touched no row, kept for the stop message


class Ctx(NamedTuple):
    """What a queued command does, for error messages and row-count checks."""

    what: str  # "begin", "commit", "change", ...
    detail: Any = None
    expect_rows: int = 0  # an UPDATE/DELETE that must touch this many rows


class CommandFailed(Exception):
    def __init__(self, ctx: Ctx, error: Exception | None) -> None:
        super().__init__(str(error) if error is not None else "no row matched")
        self.ctx = ctx
        self.error = error  # None: an UPDATE/DELETE that touched no row


class Pipeline:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.pg = conn.pgconn
        self.pending: deque[Any] = deque()
        self.prepared: dict[str, bytes] = {}
        self.syncs = 0
        self.results_seen = 0
        # Commands queued, and commands whose result is in (prepares included): parallel
        # apply commits a group only once `answered` reaches its last command.
        self.commands = 0
        self.answered = 0
        self._current_done = False
        self._since_pump = 0
        self.executed = 0  # statements queued so far (prepares not counted)
        self.syncs_sent = 0
        self.error: CommandFailed | None = None
        # Every UPDATE/DELETE that touched no row (not only the first, which is `error`):
        # their transactions commit without them, so each must be reported.
        self.unmatched: list[Ctx] = []
        self.pg.enter_pipeline_mode()
        self.pg.nonblocking = 1

    def close(self) -> None:
        try:
            self.sync_and_wait()
        finally:
            self.pg.nonblocking = 0
            self.pg.exit_pipeline_mode()

    # -- queueing ---------------------------------------------------------------------------
    def statement(self, text: str) -> bytes:
        """The prepared statement name for `text`, preparing it on first use."""
        name = self.prepared.get(text)
        if name is None:
            name = f"pgf{len(self.prepared) + 1}".encode()
            self.pg.send_prepare(name, text.encode())
            self.pending.append(Ctx("prepare", text))
            self.commands += 1
            self.prepared[text] = name
        return name

    def execute(self, text: str, params: Sequence[bytes | None], ctx: Ctx) -> None:
        self.pg.send_query_prepared(self.statement(text), params)
        self.pending.append(ctx)
        self.commands += 1
        self.executed += 1
        self._since_pump += 1
        if self._since_pump >= PUMP_EVERY:
            self._pump(block=False)

    def simple(self, text: bytes, ctx: Ctx) -> None:
        self.pg.send_query_params(text, None)
        self.pending.append(ctx)
        self.commands += 1
        self.executed += 1

    def sync(self) -> int:
        """Queue a sync point (it commits an implicit transaction) without flushing.

        Returns its number: `syncs` reaches it once the server has processed it."""
        if _SEND_PIPELINE_SYNC is not None:
            if _SEND_PIPELINE_SYNC(self.pg.pgconn_ptr) != 1:  # type: ignore[attr-defined]
                raise psycopg.OperationalError(self.pg.get_error_message())
        else:
            self.pg.pipeline_sync()
        self.pending.append(_SYNC)
        self.syncs_sent += 1
        return self.syncs_sent

    def sync_and_wait(self) -> None:
        """Sync and read every result; raises the first failure of the batch."""
        self.wait_for_sync(self.sync())

    def wait_for_sync(self, number: int) -> None:
        """Read results until sync point `number` is processed; raise a failure seen.

        Far from it, results are read a millisecond's worth at a time: the server reports
        every transaction, and waking for each would cost more than applying it."""
        while self.syncs < number and self.error is None:
            self._pump(block=True)
            if number - self.syncs > BATCH_WAKE_SYNCS:
                time.sleep(BATCH_WAKE_SECONDS)
        self._raise()

    def flush_results(self) -> None:
        """Ask the server to send the results it holds (they wait for a Sync otherwise),
        and send what is queued."""
        self.pg.send_flush_request()
        self._pump(block=False)

    def wait_for_answers(self, mark: int) -> None:
        """Read results until `mark` commands have theirs (flush_results asked for them);
        raise a failure seen."""
        while self.answered < mark and self.error is None:
            self._pump(block=True)
        self._raise()

    def poll(self) -> None:
        """Send and read without waiting; raise a failure seen."""
        self._pump(block=False)
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    @property
    def queued(self) -> int:
        return len(self.pending)

    # -- results ------------------------------------------------------------------------
    def _pump(self, *, block: bool) -> None:
        """Send what libpq holds and read the results that arrived.

        While the output cannot be sent, results are read (so the server can go on
        writing them) and the socket waited on: libpq's buffer never grows unbounded.
        """
        self._since_pump = 0
        pg = self.pg
        while True:
            want_write = pg.flush() == 1
            if block or want_write:
                select.select([pg.socket], [pg.socket] if want_write else [], [], 1.0)
            pg.consume_input()
            self._read_results()
            if not want_write or pg.flush() == 0:
                return

    def _read_results(self) -> None:
        pg = self.pg
        while self.pending and not pg.is_busy():
            res = pg.get_result()
            head = self.pending[0]
            if res is None:
                if self._current_done:
                    self.pending.popleft()
                    self.answered += 1
                    self._current_done = False
                    continue
                break
            if res.status == _PIPELINE_SYNC:
                if head is _SYNC:
                    self.pending.popleft()
                self.syncs += 1
                continue
            self._current_done = True
            self._check(head, res)

    def _check(self, ctx: Any, res: pq.abc.PGresult) -> None:
        status = res.status
        if status in _OK:
            if ctx.expect_rows and (res.command_tuples or 0) < ctx.expect_rows:
                if len(self.unmatched) < MAX_UNMATCHED:
                    self.unmatched.append(ctx)
                if self.error is None:
                    self.error = CommandFailed(ctx, None)
            return
        if status == _PIPELINE_ABORTED:
            return
        if self.error is None:
            error = pgerrors.error_from_result(res, encoding=self.conn.info.encoding)
            self.error = CommandFailed(ctx if isinstance(ctx, Ctx) else Ctx("?"), error)
