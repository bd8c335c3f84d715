"""Receive: stream the slot's changes into the spool, durably, and acknowledge them.

Runs during the copy (prefetch) so the source releases WAL as soon as the changes are
safe on local disk. What is reported to the source as flushed is only ever the commit
LSN of a transaction whose changes and index entry are fsynced, or, between
transactions, the server's own end position; so a crash never loses a transaction the
source would not send again. A lost connection is retried from the durable position.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgferry.cdc.decode import (
    TEST_DECODING_OPTIONS,
    WAL2JSON_OPTIONS,
    test_decoding_kind,
    wal2json_action,
)
from pgferry.cdc.pgoutput import RelationMessages
from pgferry.cdc.protocol import Keepalive, ReplicationStream, XLogData
from pgferry.cdc.spool import SpoolWriter
from pgferry.cdc.streams import FRAME_KINDS, StreamedTransactions
from pgferry.errors import ConnectionFailed, StepFailed, from_os_error
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.lsn import format_lsn, lsn_or_none
from pgferry.state.store import Meta, StateStore

log = logging.getLogger(__name__)

FEEDBACK_SECONDS = 1.0  # fsync + status update cadence (well within wal_sender_timeout)
# Committed transactions reach apply (fsynced, with their index entries: apply reads only
# what is durable) when the stream pauses for VISIBLE_IDLE_SECONDS, at most every
# VISIBLE_MIN_SECONDS, and at least every VISIBLE_SECONDS while any wait; apply is woken
# then (Receiver.on_durable). At the 1 s status cadence the live lag's p95 was 1.05 s; this
# way 0.93 s (bench/README.md).
VISIBLE_SECONDS = 0.1
VISIBLE_MIN_SECONDS = 0.02
VISIBLE_IDLE_SECONDS = 0.005
WATCH_SECONDS = 10.0
RETRY_SECONDS = (1, 2, 5, 10, 30)
_B, _C, _M = ord("B"), ord("C"), ord("M")


@dataclass(frozen=True)
class ReceiveOptions:
    slot: str
    plugin: str
    numeric_as_string: bool = False


STREAMING_SINCE = 140000  # pgoutput's protocol 2 streams large transactions


def plugin_options(options: ReceiveOptions, server_version: int) -> dict[str, str]:
    if options.plugin == "wal2json":
        opts = dict(WAL2JSON_OPTIONS)
        if options.numeric_as_string:
            opts["numeric-data-types-as-string"] = "1"
        return opts
    if options.plugin == "pgoutput":
        # The publication is named after the slot (slot names are plain identifiers).
        if server_version >= STREAMING_SINCE:
            return {"proto_version": "2", "publication_names": options.slot, "streaming": "on"}
        return {"proto_version": "1", "publication_names": options.slot}
    return dict(TEST_DECODING_OPTIONS)


def protocol_text(plugin: str, options: dict[str, str]) -> str:
    """What the receiver asked the plugin for, as status shows it."""
    if plugin == "pgoutput":
        streaming = ", streaming" if options.get("streaming") == "on" else ""
        return f"protocol {options.get('proto_version')}{streaming}"
    if plugin == "wal2json":
        return f"format-version {options.get('format-version', '1')}"
    return "text"


def pgoutput_kind(payload: bytes | memoryview) -> int:
    """B for Begin, C for Commit, M for a logical message, R for anything else (a row
    change, a Relation, a Type or an Origin: spooled with the transaction)."""
    kind = payload[0]
    return kind if kind in (_B, _C, _M) else ord("R")


def pgoutput_begin_xid(payload: memoryview) -> int:
    """The transaction id in pgoutput's Begin: final LSN, commit time, then the xid."""
    return int.from_bytes(payload[17:21], "big")


def begin_xid(payload: memoryview) -> int:
    """The transaction id in a BEGIN message ("BEGIN 1234" or wal2json's "xid":1234)."""
    raw = bytes(payload[:96])
    start = raw.find(b'"xid":')
    start = start + 6 if start >= 0 else (6 if raw.startswith(b"BEGIN ") else -1)
    if start < 0:
        return 0
    end = start
    while end < len(raw) and 48 <= raw[end] <= 57:
        end += 1
    return int(raw[start:end]) if end > start else 0


class Receiver:
    """The streaming client; `stop` ends it, so does reaching the sentinel's endpos. It
    runs in a process of its own (receive_process), where it is the main thread."""

    def __init__(
        self,
        source: ConnInfo,
        options: ReceiveOptions,
        spool_dir: Path,
        store: StateStore,
        start_lsn: int,
        *,
        watch: Callable[[], str | None] | None = None,
        on_durable: Callable[[int], None] | None = None,
    ) -> None:
        # Asked every WATCH_SECONDS while receiving: a problem that stops receiving.
        self.watch = watch
        self._watched_at = time.monotonic()
        self.source = source
        self.options = options
        self.spool_dir = spool_dir
        self.store = store
        self.start_lsn = start_lsn
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.received = 0
        self.durable = 0
        self.reached_endpos = threading.Event()
        # Told whenever newly committed transactions became durable (apply waits on it).
        self.on_durable = on_durable
        self._kind = {"wal2json": wal2json_action, "pgoutput": pgoutput_kind}.get(
            options.plugin, test_decoding_kind
        )
        # pgoutput describes a relation once per connection: each spooled transaction gets
        # the description before its first change to the relation (apply may start at any
        # transaction), from the last one received.
        self._relations = RelationMessages() if options.plugin == "pgoutput" else None
        self._begin_xid = pgoutput_begin_xid if options.plugin == "pgoutput" else begin_xid
        self._streams = (
            StreamedTransactions(spool_dir / "streams", self._relations)
            if self._relations is not None
            else None
        )
        self._streamed = False  # the current connection got as far as streaming

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        writer = SpoolWriter(self.spool_dir)
        if self._streams is not None:
            self._streams.reset()  # what a crash left: the source sends it again
        self.durable = max(writer.durable_lsn, self.start_lsn)
        if self.on_durable is not None:
            self.on_durable(self.durable)
        attempt = 0
        try:
            while not self.stop_event.is_set() and not self.reached_endpos.is_set():
                self._streamed = False
                try:
                    self._stream(writer)
                    attempt = 0
                except (psycopg.OperationalError, ConnectionFailed, OSError) as exc:
                    # ConnectionFailed: the source refuses connections for now (restarting,
                    # in recovery): retried like a lost connection.
                    if from_os_error(exc) is not None:
                        raise  # the local disk, not the connection: retrying cannot help
                    if self._streamed:
                        attempt = 0  # it had streamed: a new loss, not the same one again
                    # Start again right after the last complete transaction received,
                    # durable or not: from the older durable position the source would
                    # send the not-yet-flushed ones again, and they would be spooled twice.
                    writer.abort()
                    if self._streams is not None:
                        self._streams.reset()  # the source sends them again
                    self._flush(writer)
                    wait = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                    attempt += 1
                    log.warning(
                        "replication connection lost (%s); reconnecting from %s in %ds",
                        " ".join(str(exc).split()),
                        format_lsn(self.durable),
                        wait,
                    )
                    if self.stop_event.wait(wait):
                        break
        except BaseException as exc:  # reported by whoever waits on us
            self.error = exc
            if from_os_error(exc) is None:  # a local disk problem is reported once, above
                log.error("receiving changes failed: %s", " ".join(str(exc).split()))
        finally:
            try:
                self._flush(writer)
                self._record()
            finally:
                writer.close()
                if self._streams is not None:
                    self._streams.close()

    def _stream(self, writer: SpoolWriter) -> None:
        conn = self.source.connect_replication("pgferry receive")
        try:
            stream = ReplicationStream(conn)
            options = plugin_options(self.options, conn.info.server_version)
            stream.start(self.options.slot, self.durable, options)
            self.store.set_meta(Meta.CDC_PROTOCOL, protocol_text(self.options.plugin, options))
            self._streamed = True
            log.info(
                "receiving changes from slot %s at %s", self.options.slot, format_lsn(self.durable)
            )
            self._loop(stream, writer)
        finally:
            conn.close()

    def _flush(self, writer: SpoolWriter) -> None:
        """Make what is spooled durable; wake apply when that is something new."""
        durable = writer.flush()
        if durable > self.durable:
            self.durable = durable
            if self.on_durable is not None:
                self.on_durable(durable)

    def _loop(self, stream: ReplicationStream, writer: SpoolWriter) -> None:
        last_feedback = last_visible = time.monotonic()
        kind_of = self._kind
        endpos = self._endpos()
        while not self.stop_event.is_set():
            msg = stream.read(timeout=VISIBLE_IDLE_SECONDS if writer.pending else 0.2)
            if isinstance(msg, XLogData):
                self.received = max(self.received, msg.start)
                kind = kind_of(msg.payload)
                if self._streams is not None and self._streamed_message(msg, writer):
                    pass
                elif kind == _B:
                    writer.begin(msg.start, self._begin_xid(msg.payload))
                    if self._relations is not None:
                        self._relations.new_transaction()
                elif kind == _C:
                    if writer.in_txn and not writer.commit(msg.start, msg.sent_at):
                        log.warning(
                            "transaction committed at %s received twice: kept once",
                            format_lsn(msg.start),
                        )
                elif kind == _M:
                    pass  # pg_logical_emit_message: not a row change
                elif writer.in_txn:
                    if self._relations is not None:
                        for described in self._relations.before(msg.payload):
                            writer.change(msg.start, described)
                    writer.change(msg.start, msg.payload)
            elif isinstance(msg, Keepalive):
                if not writer.in_txn and not self._in_segment():
                    # Between transactions everything up to the server's position is here.
                    self.received = max(self.received, msg.end)
                    writer.pending_lsn = max(writer.pending_lsn, msg.end)
                if msg.reply_requested:
                    last_feedback = 0.0
            now = time.monotonic()
            if writer.pending and (
                now - last_visible >= VISIBLE_SECONDS
                or (msg is None and now - last_visible >= VISIBLE_MIN_SECONDS)
            ):
                last_visible = now
                self._flush(writer)
            if now - last_feedback >= FEEDBACK_SECONDS:
                last_feedback = now
                self._flush(writer)
                stream.send_status(self.received, self.durable, self._applied())
                self._record()
                endpos = self._endpos()
                self._watch(now)
            if endpos is not None and self.durable >= endpos and not writer.in_txn:
                self._flush(writer)
                stream.send_status(self.received, self.durable, self._applied())
                self._record()
                log.info("received everything up to the end position %s", format_lsn(endpos))
                self.reached_endpos.set()
                return
        # Stopped (apply reached the end position first, or a stop): what is durable
        # reaches the source and the sentinel, which the status cadence had not yet sent.
        self._flush(writer)
        stream.send_status(self.received, self.durable, self._applied())
        self._record()

    def _watch(self, now: float) -> None:
        if self.watch is None or now - self._watched_at < WATCH_SECONDS:
            return
        self._watched_at = now
        try:
            problem = self.watch()
        except psycopg.Error as exc:  # the source is busy or restarting: next time
            log.debug("watch: %s", exc)
            return
        if problem is not None:
            raise StepFailed(
                problem,
                fix="copy them and capture again: pgferry cleanup, then clone --follow "
                "--restart (or use --plugin test_decoding, which sends the changes of tables "
                "created later)",
            )

    def _in_segment(self) -> bool:
        return self._streams is not None and self._streams.in_segment

    def _streamed_message(self, msg: XLogData, writer: SpoolWriter) -> bool:
        """A pgoutput streaming frame message, or a data message inside a segment: True
        when it was one (and is handled)."""
        assert self._streams is not None
        if msg.payload[0] in FRAME_KINDS:
            if not self._streams.frame(msg.payload, msg.start, msg.sent_at, writer):
                log.warning(
                    "streamed transaction committed at %s received twice: kept once",
                    format_lsn(msg.start),
                )
            return True
        if self._streams.in_segment:
            self._streams.data(msg.payload, msg.start)
            return True
        return False

    def _endpos(self) -> int | None:
        row = self.store.sentinel()
        return lsn_or_none(row.endpos) if row is not None else None

    def _applied(self) -> int:
        row = self.store.sentinel()
        return (lsn_or_none(row.replay_lsn) or 0) if row is not None else 0

    def _record(self) -> None:
        self.store.set_sentinel(
            write_lsn=format_lsn(max(self.received, self.durable)),
            flush_lsn=format_lsn(self.durable),
        )
