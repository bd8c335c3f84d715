"""The pgoutput decoder on hand-built messages: what a real server rarely sends (names
in pg_catalog, a relation redefined, stream framing) and what it must refuse."""

from __future__ import annotations

import struct

import pytest

from pgferry.cdc.decode import Change, DecodeError
from pgferry.cdc.pgoutput import PgoutputDecoder, StreamEvent


def _s(text: str) -> bytes:
    return text.encode() + b"\0"


def relation(oid: int, schema: str, name: str, cols: list[tuple[str, bool]], ident: str = "d"):
    body = struct.pack(">I", oid) + _s(schema) + _s(name) + ident.encode()
    body += struct.pack(">h", len(cols))
    for col, key in cols:
        body += bytes([1 if key else 0]) + _s(col) + struct.pack(">Ii", 25, -1)
    return b"R" + body


def tuple_data(*values: bytes | None | str) -> bytes:
    out = struct.pack(">h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v == "u":
            out += b"u"
        else:
            assert isinstance(v, bytes)
            out += b"t" + struct.pack(">i", len(v)) + v
    return out


def test_relation_then_rows_with_a_key_change_and_unchanged_toast() -> None:
    d = PgoutputDecoder()
    assert d.decode(relation(7, "", "t", [("id", True), ("big", False), ("x", False)])) is None
    ins = d.decode(b"I" + struct.pack(">I", 7) + b"N" + tuple_data(b"1", b"zz", None))
    assert isinstance(ins, Change)
    assert (ins.schema, ins.table) == ("pg_catalog", "t")  # empty namespace: pg_catalog
    assert ins.columns == ["id", "big", "x"] and ins.values == [b"1", b"zz", None]
    upd = d.decode(
        b"U"
        + struct.pack(">I", 7)
        + b"K"
        + tuple_data(b"1", None, None)
        + b"N"
        + tuple_data(b"2", "u", b"x")
    )
    assert isinstance(upd, Change)
    assert upd.key_columns == ["id"] and upd.key_values == [b"1"]
    assert upd.columns == ["id", "x"] and upd.unchanged == {"big"}


def test_a_redefined_relation_replaces_the_old_one() -> None:
    d = PgoutputDecoder()
    d.decode(relation(7, "s", "t", [("a", True)]))
    d.decode(relation(7, "s", "t", [("a", True), ("added", False)]))
    ins = d.decode(b"I" + struct.pack(">I", 7) + b"N" + tuple_data(b"1", b"2"))
    assert isinstance(ins, Change) and ins.columns == ["a", "added"]


def test_stream_framing_and_the_xid_before_each_streamed_message() -> None:
    d = PgoutputDecoder()
    start = d.decode(b"S" + struct.pack(">IB", 99, 1))
    assert start == StreamEvent("S", 99, first=True) and d.in_stream
    d.decode(b"R" + struct.pack(">I", 99) + relation(7, "s", "t", [("a", True)])[1:])
    ins = d.decode(b"I" + struct.pack(">II", 99, 7) + b"N" + tuple_data(b"1"))
    assert isinstance(ins, Change) and ins.values == [b"1"] and d.stream_xid == 99
    assert d.decode(b"E") == StreamEvent("E", 0) and not d.in_stream
    commit = d.decode(b"c" + struct.pack(">IBqqq", 99, 0, 100, 120, 5))
    assert commit == StreamEvent("c", 99, commit_lsn=100, end_lsn=120, commit_time=5)
    assert d.decode(b"A" + struct.pack(">II", 98, 97)) == StreamEvent("A", 98, subxid=97)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"I" + struct.pack(">I", 8) + b"N" + tuple_data(b"1"), "before its Relation"),
        (b"Z", "unknown type"),
        (b"I" + struct.pack(">I", 7) + b"N" + tuple_data(b"1", b"2"), "whose Relation has 1"),
        (b"I" + struct.pack(">I", 7) + b"N" + struct.pack(">h", 1) + b"b", "binary value"),
        (b"I" + struct.pack(">I", 7) + b"N" + struct.pack(">h", 1) + b"t\0\0\0\x09ab", "cut short"),
        (b"I" + struct.pack(">I", 7) + b"X", "without a new tuple"),
    ],
)
def test_what_the_decoder_refuses(message: bytes, error: str) -> None:
    d = PgoutputDecoder()
    d.decode(relation(7, "s", "t", [("a", True)]))
    with pytest.raises(DecodeError, match=error):
        d.decode(message)
