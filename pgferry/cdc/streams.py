"""pgoutput's streamed transactions: received before they commit, kept on local disk.

With `streaming on` (protocol 2, PostgreSQL 14 and later), a transaction whose changes
outgrow the source's `logical_decoding_work_mem` is sent in segments while it is still
running (Stream Start ... Stream Stop), interleaved with other transactions, and ends
with Stream Commit or Stream Abort. The source then never spills it to its own disk,
and pgferry never holds it in memory: each segment is appended to a file of its own
transaction, and at Stream Commit the file goes into the spool as one transaction, in
commit order like any other. A Stream Abort of the whole transaction deletes the file;
one of a subtransaction cuts the file back to where that subtransaction began (what
follows belongs to it or to its own subtransactions).

The files are not durable and need not be: until it commits, the transaction is after
everything reported as flushed, so after a lost connection or a crash the source sends
it again from its first segment. Every connection therefore starts with no files.

In the spool a streamed transaction looks like any other: the transaction id that data
messages carry inside a segment is taken out, and each file carries the Relation
messages its changes need (pgoutput describes a relation once per streamed transaction;
a description cut off with an aborted subtransaction is written again). Once a streamed
transaction commits, pgoutput counts its descriptions as sent on the connection: the
receiver keeps them for the transactions after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pgferry.cdc.decode import DecodeError
from pgferry.cdc.pgoutput import RelationMessages
from pgferry.cdc.spool import SpoolWriter, record_bytes
from pgferry.pg.lsn import format_lsn

_S, _E, _COMMIT, _ABORT = ord("S"), ord("E"), ord("c"), ord("A")
FRAME_KINDS = frozenset((_S, _E, _COMMIT, _ABORT))
# Data messages the spool keeps (Type, Origin and logical messages are not needed).
_KEPT = frozenset(b"RIUDT")


@dataclass
class _Streamed:
    """One transaction's segments so far."""

    file: BinaryIO
    path: Path
    size: int = 0
    changes: int = 0
    first_lsn: int = 0
    # Where each subtransaction's first message is: (offset, changes before it).
    subxacts: dict[int, tuple[int, int]] = field(default_factory=dict)
    relations: RelationMessages = field(default_factory=RelationMessages)

    def write(self, lsn: int, payload: bytes) -> None:
        record = record_bytes(lsn, payload)
        self.file.write(record)
        self.size += len(record)
        self.changes += 1
        if not self.first_lsn:
            self.first_lsn = lsn

    def cut(self, subxid: int) -> None:
        """Forget an aborted subtransaction's messages (and those after them)."""
        start = self.subxacts.get(subxid)
        if start is None:
            return  # nothing of it was streamed
        offset, changes = start
        self.file.flush()
        self.file.truncate(offset)
        self.file.seek(offset)
        self.size, self.changes = offset, changes
        self.subxacts = {x: at for x, at in self.subxacts.items() if at[0] < offset}
        self.relations.new_transaction()  # a description may have gone with it

    def close(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class StreamedTransactions:
    """The receiver's streamed transactions, by top-level transaction id."""

    def __init__(self, root: Path, described: RelationMessages) -> None:
        self.root = root
        # The connection's Relation messages (outside streaming). pgoutput counts those a
        # committed streamed transaction carried as sent: later transactions of the
        # connection do not get them again, so they join these at Stream Commit.
        self.described = described
        self.open: dict[int, _Streamed] = {}
        self.current: _Streamed | None = None  # the segment being received
        self.current_xid = 0

    @property
    def in_segment(self) -> bool:
        return self.current is not None

    def reset(self) -> None:
        """Drop every transaction not committed yet (a new connection sends them again)."""
        for txn in self.open.values():
            txn.close()
        self.open.clear()
        self.current = None
        if self.root.exists():
            for path in self.root.glob("*.stream"):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        self.reset()

    def frame(self, payload: memoryview, lsn: int, sent_at: int, writer: SpoolWriter) -> bool:
        """Handle a Stream Start, Stop, Commit or Abort; False when the commit was of a
        transaction the spool already holds."""
        kind = payload[0]
        xid = int.from_bytes(payload[1:5], "big")
        if kind == _S:
            self._start(xid, first=payload[5] == 1)
        elif kind == _E:
            self.current = None
        elif kind == _ABORT:
            self._abort(xid, int.from_bytes(payload[5:9], "big"))
        else:
            return self._commit(xid, lsn, sent_at, writer)
        return True

    def data(self, payload: memoryview, lsn: int) -> None:
        """A data message inside a segment: written to its transaction's file."""
        assert self.current is not None
        kind = payload[0]
        if kind not in _KEPT:
            return
        subxid = int.from_bytes(payload[1:5], "big")
        txn = self.current
        if subxid != self.current_xid and subxid not in txn.subxacts:
            txn.subxacts[subxid] = (txn.size, txn.changes)
        message = bytes(payload[:1]) + bytes(payload[5:])
        for described in txn.relations.before(message):
            txn.write(lsn, described)
        txn.write(lsn, message)

    def _start(self, xid: int, *, first: bool) -> None:
        txn = self.open.get(xid)
        if txn is None or first:
            if txn is None and not first:
                raise DecodeError(
                    f"pgoutput streamed a later segment of transaction {xid} without its first"
                )
            if txn is not None:
                txn.close()  # sent again from the start: keep only the new one
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / f"{xid}.stream"
            txn = _Streamed(
                open(path, "w+b", buffering=1024 * 1024),  # noqa: SIM115
                path,
                relations=RelationMessages(fallback=self.described.last),
            )
            self.open[xid] = txn
        self.current, self.current_xid = txn, xid

    def _abort(self, xid: int, subxid: int) -> None:
        txn = self.open.get(xid)
        if txn is None:
            return
        if subxid == xid:
            txn.close()
            del self.open[xid]
        else:
            txn.cut(subxid)

    def _commit(self, xid: int, lsn: int, sent_at: int, writer: SpoolWriter) -> bool:
        txn = self.open.pop(xid, None)
        if txn is not None:
            self.described.last.update(txn.relations.last)
        if txn is None:
            if lsn <= writer.position:
                return False  # committed before this connection's start: spooled already
            raise DecodeError(
                f"pgoutput committed streamed transaction {xid} at {format_lsn(lsn)} "
                "without sending its segments"
            )
        try:
            txn.file.flush()
            txn.file.seek(0)
            writer.begin(txn.first_lsn or lsn, xid)
            writer.append(txn.file, txn.size, txn.changes)
            return writer.commit(lsn, sent_at, xid)
        finally:
            txn.close()
