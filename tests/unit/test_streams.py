"""Streamed transactions on hand-built pgoutput frames, into a real spool on disk: what
goes into the spool at Stream Commit, what an abort of a (sub)transaction leaves out,
and the Relation messages each spooled transaction carries."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from pgferry.cdc.decode import Change, DecodeError
from pgferry.cdc.pgoutput import PgoutputDecoder, RelationMessages
from pgferry.cdc.spool import SpoolReader, SpoolWriter, read_index, spool_files
from pgferry.cdc.streams import StreamedTransactions
from tests.unit.test_pgoutput_unit import relation, tuple_data

REL = 7


def _start(xid: int, first: bool) -> memoryview:
    return memoryview(b"S" + struct.pack(">I", xid) + bytes([1 if first else 0]))


def _stop() -> memoryview:
    return memoryview(b"E")


def _abort(xid: int, subxid: int) -> memoryview:
    return memoryview(b"A" + struct.pack(">II", xid, subxid))


def _commit(xid: int) -> memoryview:
    return memoryview(b"c" + struct.pack(">IBqqq", xid, 0, 0, 0, 0))


def _in(xid: int, message: bytes) -> memoryview:
    """A data message as sent inside a segment: its (sub)transaction id after the kind."""
    return memoryview(message[:1] + struct.pack(">I", xid) + message[1:])


def _insert(value: int) -> bytes:
    return b"I" + struct.pack(">I", REL) + b"N" + tuple_data(str(value).encode())


REL_MSG = relation(REL, "public", "t", [("id", True)])


def _spooled(root: Path) -> list[tuple[int, list[int]]]:
    """Each spooled transaction: its xid and the ids it inserts (decoded from scratch,
    as apply would from that transaction on)."""
    reader = SpoolReader(root)
    out = []
    for file_no in spool_files(root):
        for entry in read_index(root, file_no):
            decoder = PgoutputDecoder()  # apply may start at any transaction
            ids = []
            for _lsn, payload in reader.changes(entry, entry.end_off):
                change = decoder.decode(payload)
                if isinstance(change, Change):
                    ids.append(int(change.values[0] or b"0"))
            out.append((entry.xid, ids))
    reader.close()
    return out


@pytest.fixture
def spool(tmp_path: Path):
    writer = SpoolWriter(tmp_path / "cdc")
    streams = StreamedTransactions(tmp_path / "cdc" / "streams", RelationMessages())
    yield writer, streams
    streams.close()
    writer.close()


def test_interleaved_segments_commit_in_commit_order_and_an_abort_leaves_nothing(spool) -> None:
    writer, streams = spool
    lsn = 100
    for xid, first in ((10, True), (11, True), (10, False), (11, False)):
        streams.frame(_start(xid, first), lsn, 0, writer)
        if first:
            streams.data(_in(xid, REL_MSG), lsn)
        for _ in range(3):
            lsn += 1
            streams.data(_in(xid, _insert(xid * 1000 + lsn)), lsn)
        streams.frame(_stop(), lsn, 0, writer)
    streams.frame(_abort(10, 10), lsn + 1, 0, writer)
    assert streams.frame(_commit(11), lsn + 2, 0, writer)
    writer.flush()
    [(xid, ids)] = _spooled(writer.root)
    assert xid == 11 and len(ids) == 6 and all(i // 1000 == 11 for i in ids)
    assert list((writer.root / "streams").glob("*")) == []  # both files are gone
    # The same transaction sent again (after a reconnect) is not spooled twice.
    streams.frame(_start(11, True), 1, 0, writer)
    streams.data(_in(11, REL_MSG), 1)
    streams.frame(_stop(), 1, 0, writer)
    assert not streams.frame(_commit(11), lsn + 2, 0, writer)
    writer.flush()
    assert len(_spooled(writer.root)) == 1


def test_an_aborted_subtransaction_is_cut_out_and_its_relation_written_again(spool) -> None:
    """ROLLBACK TO SAVEPOINT: the subtransaction's rows go, and with them the Relation
    message that happened to be sent inside it (the source does not send it again)."""
    writer, streams = spool
    streams.frame(_start(20, True), 1, 0, writer)
    streams.data(_in(21, REL_MSG), 2)  # first use of the table: in subtransaction 21
    streams.data(_in(21, _insert(1)), 3)
    streams.data(_in(22, _insert(2)), 4)  # 22 inside 21
    streams.frame(_stop(), 4, 0, writer)
    streams.frame(_abort(20, 21), 5, 0, writer)  # rolls back 21 and 22
    streams.frame(_start(20, False), 6, 0, writer)
    streams.data(_in(20, _insert(3)), 7)
    streams.data(_in(23, _insert(4)), 8)
    streams.frame(_stop(), 8, 0, writer)
    streams.frame(_abort(20, 99), 9, 0, writer)  # a subtransaction never streamed
    streams.frame(_commit(20), 10, 0, writer)
    writer.flush()
    assert _spooled(writer.root) == [(20, [3, 4])]


def test_a_later_segment_without_its_first_is_refused(spool) -> None:
    writer, streams = spool
    with pytest.raises(DecodeError, match="without its first"):
        streams.frame(_start(30, False), 1, 0, writer)
    with pytest.raises(DecodeError, match="without sending its segments"):
        streams.frame(_commit(31), 50, 0, writer)


def test_a_transaction_sent_again_from_its_first_segment_starts_over(spool) -> None:
    writer, streams = spool
    streams.frame(_start(40, True), 1, 0, writer)
    streams.data(_in(40, REL_MSG), 1)
    streams.data(_in(40, _insert(1)), 2)
    streams.frame(_stop(), 2, 0, writer)
    streams.frame(_start(40, True), 1, 0, writer)
    streams.data(_in(40, REL_MSG), 1)
    streams.data(_in(40, _insert(1)), 2)
    streams.data(_in(40, _insert(2)), 3)
    streams.frame(_stop(), 3, 0, writer)
    streams.frame(_commit(40), 4, 0, writer)
    writer.flush()
    assert _spooled(writer.root) == [(40, [1, 2])]


@pytest.mark.parametrize("seed", range(20))
def test_random_savepoint_trees_keep_exactly_the_surviving_rows(spool, seed: int) -> None:
    """A transaction as a random tree of savepoints, released or rolled back, streamed in
    random segments: the spool holds exactly the rows of the subtransactions that
    survived. Replay: pytest 'tests/unit/test_streams.py::...[SEED]'."""
    rng = random.Random(seed)
    writer, streams = spool
    top, next_xid, lsn = 1000, 1001, 1
    stack = [top]  # open (sub)transactions, innermost last
    rows: dict[int, list[int]] = {top: []}  # each open one's rows so far
    # The subtransactions released into each: decoding knows no nesting (every one is a
    # child of the top), so a rollback aborts each of them, then the one rolled back.
    released: dict[int, list[int]] = {top: []}
    streams.frame(_start(top, True), lsn, 0, writer)
    streams.data(_in(top, REL_MSG), lsn)
    value = 0
    for _ in range(rng.randint(5, 60)):
        lsn += 1
        action = rng.random()
        if action < 0.5:
            value += 1
            rows[stack[-1]].append(value)
            streams.data(_in(stack[-1], _insert(value)), lsn)
        elif action < 0.7:
            stack.append(next_xid)
            rows[next_xid], released[next_xid] = [], []
            next_xid += 1
        elif action < 0.85 and len(stack) > 1:  # RELEASE: rows go to the parent
            done = stack.pop()
            rows[stack[-1]].extend(rows.pop(done))
            released[stack[-1]] += [*released.pop(done), done]
        elif len(stack) > 1:  # ROLLBACK TO: the rows are gone
            done = stack.pop()
            rows.pop(done)
            streams.frame(_stop(), lsn, 0, writer)
            for xid in [*released.pop(done), done]:
                streams.frame(_abort(top, xid), lsn, 0, writer)
            streams.frame(_start(top, False), lsn, 0, writer)
        if rng.random() < 0.2:
            streams.frame(_stop(), lsn, 0, writer)
            streams.frame(_start(top, False), lsn, 0, writer)
    while len(stack) > 1:
        rows[stack[-2]].extend(rows.pop(stack.pop()))
    expected = rows[top]  # what survived, in the order it was written
    streams.frame(_stop(), lsn, 0, writer)
    streams.frame(_commit(top), lsn + 1, 0, writer)
    writer.flush()
    assert _spooled(writer.root) == [(top, expected)]


def test_a_committed_streamed_transaction_describes_relations_for_the_next_ones(spool) -> None:
    """pgoutput counts the Relation messages of a committed streamed transaction as sent:
    the connection's next transactions change the relation without describing it, and
    their spooled copy must still carry the description (found by the explorer, seeds
    604 and 610 with pgoutput)."""
    writer, streams = spool
    streams.frame(_start(50, True), 1, 0, writer)
    streams.data(_in(50, REL_MSG), 1)
    streams.data(_in(50, _insert(1)), 2)
    streams.frame(_stop(), 2, 0, writer)
    insert = _insert(2)
    assert streams.described.before(insert) == []  # not yet: it may still abort
    streams.frame(_commit(50), 3, 0, writer)
    streams.described.new_transaction()
    assert streams.described.before(insert) == [REL_MSG]
    # A streamed transaction that never describes it gets the connection's description.
    streams.frame(_start(51, True), 4, 0, writer)
    streams.data(_in(51, _insert(3)), 5)
    streams.frame(_stop(), 5, 0, writer)
    streams.frame(_commit(51), 6, 0, writer)
    writer.flush()
    assert _spooled(writer.root) == [(50, [1]), (51, [3])]
