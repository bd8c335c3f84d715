"""pgoutput's binary messages (PostgreSQL's own logical replication protocol), decoded
into the same `Change` the other plugins give.

The messages are those of "Logical Replication Message Formats" in the PostgreSQL
documentation, protocol versions 1 and 2, values in text format:

    B begin, C commit, O origin, Y type, M logical message    no change
    R relation                                                 remembered by relation id
    I insert, U update, D delete, T truncate                   a Change
    S stream start, E stream stop, c stream commit, A abort    the streaming frame

Row changes carry a relation id, not names: the Relation message that describes it comes
first in the stream (again after a reconnect, and after the relation changes), so the
decoder keeps the last one per id. Inside a stream (between S and E) every data message
carries its transaction id first. A value the source did not send (an unchanged TOASTed
column, 'u') is never given a value: the column goes to `Change.unchanged`.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pgferry.cdc.decode import Change, DecodeError

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT64 = struct.Struct(">q")

# Messages that carry a transaction id first when sent inside a stream.
_STREAMED = frozenset(b"RYMIUDT")


@dataclass(frozen=True, slots=True)
class Relation:
    """What a Relation message says of one table: names, replica identity, columns."""

    oid: int
    schema: str
    name: str
    identity: str  # d default, n nothing, f full, i index
    columns: tuple[str, ...]
    key: tuple[bool, ...]  # the column is part of the replica identity
    type_oids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Layout:
    """What the fast path needs of a relation, made once per Relation message. The lists
    are shared by every Change read with it, and never mutated (as test_decoding's)."""

    schema: str
    name: str
    columns: list[str]
    key_columns: list[str]
    key_at: tuple[int, ...]  # where the key columns are in a tuple
    read: TupleReader  # tuple_reader(len(columns))


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A streaming frame message: S start, E stop, c commit, A abort."""

    kind: str
    xid: int  # 0 for E
    first: bool = False  # S: the first segment of this transaction
    subxid: int = 0  # A: the subtransaction aborted (== xid: the whole transaction)
    commit_lsn: int = 0  # c
    end_lsn: int = 0  # c
    commit_time: int = 0  # c, microseconds since 2000-01-01


@dataclass(slots=True)
class _Reader:
    data: bytes
    pos: int = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError("pgoutput message cut short")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def _unpack(self, fmt: struct.Struct) -> int:
        try:
            value = fmt.unpack_from(self.data, self.pos)[0]
        except struct.error:
            raise DecodeError("pgoutput message cut short") from None
        self.pos += fmt.size
        return int(value)

    def int16(self) -> int:
        return self._unpack(_INT16)

    def int32(self) -> int:
        return self._unpack(_INT32)

    def uint32(self) -> int:
        return self._unpack(_UINT32)

    def int64(self) -> int:
        return self._unpack(_INT64)

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise DecodeError("pgoutput string without its terminator")
        value = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return value

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError("pgoutput value cut short")
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return value


_UNCHANGED = object()
_LENGTH = struct.Struct(">I").unpack_from
_INSERT, _UPDATE, _DELETE = ord("I"), ord("U"), ord("D")
_NEW, _KEY, _OLD, _TEXT, _NULL = ord("N"), ord("K"), ord("O"), ord("t"), ord("n")
_NO_CHANGE = frozenset(b"BCOYM")  # begin, commit, origin, type, logical message
_RELATION = ord("R")


# The row readers of the fast path. A Python loop over the columns was half of a row's
# decoding (0.22 us a column looped, ~0.14 written out; issue 12's target is half of
# test_decoding's CPU per change), so the column steps are written out once per column
# count, as Python text compiled here (as `dataclasses` and `namedtuple` do). Each reads
# text and NULL values only (anything else: None, the careful path). A length that runs
# past the message gives a short slice and a position past the end, which every reader
# and caller refuses.
#
# The Changes they give share their empty lists and set (four allocations less a row), as
# they share the relation's column names: a decoded Change is read, never mutated.
_NONE: list[Any] = []
_NOTHING: set[str] = set()
TupleReader = Callable[[bytes, int], "tuple[list[bytes | None], int] | None"]
NewRowReader = Callable[[bytes, int], "Change | None"]
_WRITTEN_OUT_MAX = 200  # wider tables: the loop (PostgreSQL allows 1,600 columns)


def _column_steps(count: int, at: int | None = None) -> list[str]:
    """Python lines that read `count` TupleData columns into v0, v1, ... and leave `pos`
    after them: from data[pos], or from data[at] when the offset is known (a new tuple
    right after the message head), whose first steps then use constant offsets."""
    if at is None:
        lines = [
            f"    if data[pos] != {count >> 8} or data[pos + 1] != {count & 0xFF}:",
            "        return None",
            "    pos += 2",
        ]
    else:
        lines = [f"    if data[{at}] != {count >> 8} or data[{at + 1}] != {count & 0xFF}:"]
        lines += ["        return None"]
        if count == 0:
            lines.append(f"    pos = {at + 2}")
    for i in range(count):
        if at is not None and i == 0:
            first = at + 2
            lines += [
                f"    if data[{first}] == {_TEXT}:",
                f"        pos = {first + 5} + length(data, {first + 1})[0];"
                f" v0 = data[{first + 5} : pos]",
                f"    elif data[{first}] == {_NULL}:",
                f"        v0 = None; pos = {first + 1}",
                "    else:",
                "        return None",
            ]
            continue
        lines += [
            f"    if data[pos] == {_TEXT}:",
            f"        e = pos + 5 + length(data, pos + 1)[0]; v{i} = data[pos + 5 : e]; pos = e",
            f"    elif data[pos] == {_NULL}:",
            f"        v{i} = None; pos += 1",
            "    else:",
            "        return None",
        ]
    return lines


def _compiled(lines: list[str], name: str) -> Any:
    namespace: dict[str, Any] = {
        "length": _LENGTH,
        "Change": Change,
        "none": _NONE,
        "nothing": _NOTHING,
    }
    exec("\n".join(lines), namespace)  # our own text: nothing in it comes from a message
    return namespace[name]


@functools.cache
def tuple_reader(count: int) -> TupleReader:
    """The reader of a TupleData of exactly `count` text or NULL values at data[pos]:
    the values and the position after them, or None."""
    if count > _WRITTEN_OUT_MAX:
        return functools.partial(_loop_tuple, count)
    values = ", ".join(f"v{i}" for i in range(count))
    lines = ["def read(data, pos):", *_column_steps(count), f"    return [{values}], pos"]
    return cast(TupleReader, _compiled(lines, "read"))


@functools.cache
def _new_row_factory(count: int) -> Callable[[str, str, str, list[str]], NewRowReader]:
    if count > _WRITTEN_OUT_MAX:
        return functools.partial(_loop_new_row, tuple_reader(count))
    values = ", ".join(f"v{i}" for i in range(count))
    lines = [
        "def make(kind, schema, table, columns):",
        "  def read(data, lsn):",
        *(f"  {line}" for line in _column_steps(count, at=6)),
        "      if pos != len(data):",
        "          return None",
        f"      return Change(kind, schema, table, columns, [{values}], none, none, nothing,"
        " none, False, False, lsn)",
        "  return read",
    ]
    return cast(Callable[[str, str, str, list[str]], NewRowReader], _compiled(lines, "make"))


def new_row_reader(kind: str, schema: str, table: str, columns: list[str]) -> NewRowReader:
    """The reader of one relation's INSERT (kind "I") or UPDATE ("U") message that carries
    its new tuple only (data[5] == 'N': the common case), values from data[6] to the end."""
    return _new_row_factory(len(columns))(kind, schema, table, columns)


def _loop_tuple(count: int, data: bytes, pos: int) -> tuple[list[bytes | None], int] | None:
    """`tuple_reader`'s loop, for tables wider than it writes out."""
    if (data[pos] << 8) | data[pos + 1] != count:
        return None
    pos += 2
    values: list[bytes | None] = []
    append = values.append
    for _ in range(count):
        kind = data[pos]
        if kind == _TEXT:
            end = pos + 5 + _LENGTH(data, pos + 1)[0]
            append(data[pos + 5 : end])
            pos = end
        elif kind == _NULL:
            append(None)
            pos += 1
        else:
            return None
    return values, pos


def _loop_new_row(
    read: TupleReader, kind: str, schema: str, table: str, columns: list[str]
) -> NewRowReader:
    """`new_row_reader` for tables wider than it writes out."""

    def new_row(data: bytes, lsn: int) -> Change | None:
        new = read(data, 6)
        if new is None or new[1] != len(data):
            return None
        return Change(
            kind, schema, table, columns, new[0], _NONE, _NONE, _NOTHING, _NONE, False, False, lsn
        )

    return new_row


def _tuple(r: _Reader) -> list[bytes | None | object]:
    """TupleData: each column's text value, None (NULL) or _UNCHANGED (TOAST not sent)."""
    values: list[bytes | None | object] = []
    for _ in range(r.int16()):
        kind = r.byte()
        if kind == ord("n"):
            values.append(None)
        elif kind == ord("u"):
            values.append(_UNCHANGED)
        elif kind == ord("t"):
            values.append(r.raw(r.int32()))
        elif kind == ord("b"):
            raise DecodeError("pgoutput sent a binary value (pgferry asks for text)")
        else:
            raise DecodeError(f"pgoutput tuple column of unknown kind {chr(kind)!r}")
    return values


def _keyed_row(layout: _Layout, data: bytes, lsn: int) -> Change | None:
    """An UPDATE or DELETE that carries the old key (K) or the whole old row (O)."""
    part = data[5]
    if part != _KEY and part != _OLD:
        return None
    old = layout.read(data, 6)
    if old is None:
        return None
    values, pos = old
    if part == _KEY:
        key_values = [values[i] for i in layout.key_at]
        key_columns = layout.key_columns
    else:
        key_values, key_columns = values, layout.columns
    if data[0] == _DELETE:
        if pos != len(data):
            return None
        return Change(
            "D", layout.schema, layout.name, _NONE, _NONE, key_columns, key_values,
            _NOTHING, _NONE, False, False, lsn,
        )  # fmt: skip
    if data[pos] != _NEW:
        return None
    new = layout.read(data, pos + 1)
    if new is None or new[1] != len(data):
        return None
    return Change(
        "U", layout.schema, layout.name, layout.columns, new[0], key_columns, key_values,
        _NOTHING, _NONE, False, False, lsn,
    )  # fmt: skip


class PgoutputDecoder:
    """Decodes one stream's messages in order (it remembers Relation messages)."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        # The fast path's reader of each known relation's row messages, by their first six
        # bytes (kind, relation id, first tuple's kind): text and NULL values only, every
        # tuple as long as the relation; None for anything else.
        self.readers: dict[bytes, NewRowReader] = {}
        self._described: dict[int, bytes] = {}  # the Relation message behind each layout
        self.in_stream = False
        self.stream_xid = 0  # the transaction of the data messages of the current segment

    def decode(self, payload: bytes | memoryview, lsn: int = 0) -> Change | StreamEvent | None:
        """The Change of a row message, the StreamEvent of a streaming frame message,
        None for the others (after remembering a Relation)."""
        data = bytes(payload)
        if not self.in_stream and data[0] in (_INSERT, _UPDATE, _DELETE):
            return self.change(data, lsn)
        return self._careful(data, lsn)

    def change(self, payload: bytes | memoryview, lsn: int = 0) -> Change | None:
        """`decode` for apply, which reads spooled transactions (no streaming frames):
        the Change of a row message, else None."""
        data = payload if type(payload) is bytes else bytes(payload)
        # The fast path: a row message of a known relation (any other message finds no
        # reader). What its reader refuses, a message cut short too, goes the careful way,
        # which says what is wrong.
        read = self.readers.get(data[:6])
        if read is not None:
            try:
                change = read(data, lsn)
            except (IndexError, struct.error):
                change = None
            if change is not None:
                return change
        kind = data[0]
        if kind in _NO_CHANGE:
            return None
        if kind == _RELATION:
            # Every spooled transaction carries the descriptions its changes need: most
            # are the one already known, byte for byte.
            oid = _LENGTH(data, 1)[0] if len(data) > 4 else -1
            if self._described.get(oid) == data:
                return None
            self._careful(data, lsn)
            self._described[oid] = data
            return None
        out = self._careful(data, lsn)
        return out if isinstance(out, Change) else None

    def _careful(self, data: bytes, lsn: int) -> Change | StreamEvent | None:
        """Every message, field by field, with a clear error for what does not parse."""
        r = _Reader(data)
        kind = r.byte()
        if self.in_stream and kind in _STREAMED:
            self.stream_xid = r.uint32()
        if kind == ord("R"):
            self._relation(r)
            return None
        if kind in (ord("I"), ord("U"), ord("D")):
            return self._row(r, chr(kind), lsn)
        if kind == ord("T"):
            return self._truncate(r, lsn)
        if kind in (ord("S"), ord("E"), ord("c"), ord("A")):
            return self._stream(r, chr(kind))
        if kind in (ord("B"), ord("C"), ord("O"), ord("Y"), ord("M")):
            return None
        raise DecodeError(f"pgoutput message of unknown type {chr(kind)!r}")

    def relation(self, oid: int) -> Relation:
        try:
            return self.relations[oid]
        except KeyError:
            raise DecodeError(f"pgoutput change for relation {oid} before its Relation") from None

    def _relation(self, r: _Reader) -> None:
        oid = r.uint32()
        schema, name = r.string(), r.string()
        identity = chr(r.byte())
        columns, key, types = [], [], []
        for _ in range(r.int16()):
            flags = r.byte()
            columns.append(r.string())
            types.append(r.uint32())
            r.int32()  # typmod
            key.append(bool(flags & 1))
        rel = Relation(
            oid, schema or "pg_catalog", name, identity, tuple(columns), tuple(key), tuple(types)
        )
        self.relations[oid] = rel
        self._described.pop(oid, None)  # change() records the message it came from
        names = list(rel.columns)
        layout = _Layout(
            rel.schema,
            rel.name,
            names,
            [c for c, k in zip(rel.columns, rel.key, strict=True) if k],
            tuple(i for i, k in enumerate(rel.key) if k),
            tuple_reader(len(names)),
        )
        # By the message's first six bytes: kind, relation id, first tuple's kind.
        head = _UINT32.pack(oid)
        keyed = functools.partial(_keyed_row, layout)
        self.readers.update(
            {
                b"I" + head + b"N": new_row_reader("I", rel.schema, rel.name, names),
                b"U" + head + b"N": new_row_reader("U", rel.schema, rel.name, names),
                b"U" + head + b"K": keyed,
                b"U" + head + b"O": keyed,
                b"D" + head + b"K": keyed,
                b"D" + head + b"O": keyed,
            }
        )

    def _row(self, r: _Reader, kind: str, lsn: int) -> Change:
        rel = self.relation(r.uint32())
        change = Change(kind=kind, schema=rel.schema, table=rel.name, lsn=lsn)
        part = chr(r.byte())
        if part in ("K", "O"):
            self._take(change, rel, _tuple(r), key=True, key_only=part == "K")
            if kind == "D":
                return change
            part = chr(r.byte())
        if part != "N":
            raise DecodeError(f"pgoutput {kind} without a new tuple ({part!r})")
        self._take(change, rel, _tuple(r), key=False, key_only=False)
        return change

    @staticmethod
    def _take(
        change: Change,
        rel: Relation,
        values: list[bytes | None | object],
        *,
        key: bool,
        key_only: bool,
    ) -> None:
        if len(values) != len(rel.columns):
            raise DecodeError(
                f"pgoutput tuple of {len(values)} columns for {rel.schema}.{rel.name}, "
                f"whose Relation has {len(rel.columns)}"
            )
        names, out = (
            (change.key_columns, change.key_values) if key else (change.columns, change.values)
        )
        for name, is_key, value in zip(rel.columns, rel.key, values, strict=True):
            if key_only and not is_key:
                continue
            if value is _UNCHANGED:
                change.unchanged.add(name)
                continue
            names.append(name)
            out.append(value)  # type: ignore[arg-type]  # bytes or None here

    def _truncate(self, r: _Reader, lsn: int) -> Change:
        count = r.int32()
        options = r.byte()
        rels = [self.relation(r.uint32()) for _ in range(count)]
        first = rels[0] if rels else None
        return Change(
            kind="T",
            schema=first.schema if first else "",
            table=first.name if first else "",
            relations=[(rel.schema, rel.name) for rel in rels],
            cascade=bool(options & 1),
            restart_seqs=bool(options & 2),
            lsn=lsn,
        )

    def _stream(self, r: _Reader, kind: str) -> StreamEvent:
        if kind == "S":
            self.in_stream = True
            xid = r.uint32()
            self.stream_xid = xid
            return StreamEvent("S", xid, first=r.byte() == 1)
        if kind == "E":
            self.in_stream = False
            return StreamEvent("E", 0)
        xid = r.uint32()
        if kind == "A":
            return StreamEvent("A", xid, subxid=r.uint32())
        r.byte()  # flags
        return StreamEvent("c", xid, commit_lsn=r.int64(), end_lsn=r.int64(), commit_time=r.int64())


class RelationMessages:
    """The receiver's side of Relation messages (outside streaming).

    pgoutput describes a relation once per walsender connection, before its first change;
    apply reads the spool from any transaction on, so every spooled transaction must carry
    the descriptions its changes need. This keeps the last Relation message per relation
    and tells which ones to write before a change the current transaction has not had.
    """

    def __init__(self, fallback: dict[int, bytes] | None = None) -> None:
        self.last: dict[int, bytes] = {}
        self.written: set[int] = set()
        # A streamed transaction's: the connection's descriptions, for a relation the
        # transaction itself has not described.
        self.fallback = fallback if fallback is not None else {}

    def new_transaction(self) -> None:
        self.written.clear()

    def before(self, payload: bytes | memoryview) -> list[bytes]:
        """The Relation messages to write before `payload` (after remembering it, when it
        is a Relation itself)."""
        kind = payload[0]
        if kind == ord("R"):
            oid = int.from_bytes(payload[1:5], "big")
            self.last[oid] = bytes(payload)
            self.written.add(oid)
            return []
        if kind in (ord("I"), ord("U"), ord("D")):
            oids = [int.from_bytes(payload[1:5], "big")]
        elif kind == ord("T"):
            count = int.from_bytes(payload[1:5], "big")
            oids = [int.from_bytes(payload[6 + 4 * i : 10 + 4 * i], "big") for i in range(count)]
        else:
            return []
        out = []
        for oid in oids:
            if oid not in self.written:
                described = self.last.get(oid) or self.fallback.get(oid)
                if described is not None:
                    out.append(described)
                    self.written.add(oid)
        return out
