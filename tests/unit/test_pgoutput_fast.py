"""The pgoutput decoder's fast path against its careful one, on random relations and row
messages: the same Change for every message the fast path reads, and the careful path's
answer (a Change or a DecodeError) for every message it leaves, cut-short ones included.
Replay one seed: pytest 'tests/unit/test_pgoutput_fast.py::test_fast_and_careful_agree[SEED]'."""

from __future__ import annotations

import random
import struct

import pytest

from pgferry.cdc.decode import Change, DecodeError
from pgferry.cdc.pgoutput import PgoutputDecoder
from tests.unit.test_pgoutput_unit import relation, tuple_data

NAMES = ["id", "Näme", 'q"uote', "a b", "x" * 63, "日本", "v"]


def _value(rng: random.Random, kinds: str) -> bytes | None | str:
    kind = rng.choice(kinds)
    if kind == "n":
        return None
    if kind == "u":
        return "u"
    return rng.choice(
        [
            b"",
            b"1",
            b"-2.5",
            "é\0x".encode(),
            bytes(rng.randrange(256) for _ in range(rng.randrange(40))),
        ]
    )


def _message(rng: random.Random, oid: int, ncols: int) -> bytes:
    kind = rng.choice("IUD")
    body = bytes([ord(kind)]) + struct.pack(">I", oid)
    count = ncols if rng.random() > 0.05 else rng.randrange(ncols + 2)  # a wrong count
    if kind in "UD" and rng.random() < 0.7 or kind == "D":
        body += rng.choice([b"K", b"O"]) + tuple_data(*(_value(rng, "ttn") for _ in range(count)))
        if kind == "D":
            return body
    return body + b"N" + tuple_data(*(_value(rng, "tttnu") for _ in range(count)))


@pytest.mark.parametrize("seed", range(30))
def test_fast_and_careful_agree(seed: int) -> None:
    rng = random.Random(seed)
    fast, careful = PgoutputDecoder(), PgoutputDecoder()
    relations = {}
    for oid in range(1, 4):
        cols = rng.sample(NAMES, rng.randrange(1, len(NAMES) + 1))
        spec = [(c, rng.random() < 0.4) for c in cols]
        message = relation(oid, rng.choice(["", "public", "Sch ë"]), f"t{oid}", spec)
        fast.decode(message)
        careful.decode(message)
        relations[oid] = len(cols)
    for _ in range(300):
        oid = rng.choice([*relations, 99])  # 99: never described
        message = _message(rng, oid, relations.get(oid, 2))
        if rng.random() < 0.1:
            message = message[: rng.randrange(1, len(message))]  # cut short
        try:
            expected: Change | None | str = careful._careful(message, 5)
        except DecodeError as exc:
            expected = f"error: {exc}"
        try:
            got: Change | None | str = fast.decode(message, 5)
        except DecodeError as exc:
            got = f"error: {exc}"
        assert got == expected, message
        change = fast.change(message, 5) if not isinstance(expected, str) else None
        assert change == (expected if not isinstance(expected, str) else None)


def test_the_fast_path_is_taken() -> None:
    """A plain insert and a keyed update do not go the careful way (that would be slow)."""
    d = PgoutputDecoder()
    d.decode(relation(7, "public", "t", [("id", True), ("v", False)]))
    insert = b"I" + struct.pack(">I", 7) + b"N" + tuple_data(b"1", None)
    update = (
        b"U" + struct.pack(">I", 7) + b"K" + tuple_data(b"1", None)
        + b"N" + tuple_data(b"2", b"x")
    )  # fmt: skip

    def careful(data: bytes, lsn: int) -> None:
        raise AssertionError(f"the careful path read {data!r}")

    d._careful = careful  # type: ignore[method-assign]
    ins, upd = d.change(insert, 0), d.change(update, 0)
    assert ins is not None and ins.values == [b"1", None]
    assert upd is not None and upd.key_columns == ["id"] and upd.key_values == [b"1"]


def test_a_relation_described_again_is_read_once_and_a_new_description_replaces_it() -> None:
    """Each spooled transaction repeats the Relation messages its changes need: the same
    bytes are not parsed again, other bytes for the same relation are."""
    d = PgoutputDecoder()
    two = relation(7, "public", "t", [("id", True), ("v", False)])
    three = relation(7, "public", "t", [("id", True), ("v", False), ("w", False)])
    insert2 = b"I" + struct.pack(">I", 7) + b"N" + tuple_data(b"1", b"x")
    insert3 = b"I" + struct.pack(">I", 7) + b"N" + tuple_data(b"1", b"x", b"y")
    for message, insert, columns in ((two, insert2, 2), (two, insert2, 2), (three, insert3, 3)):
        assert d.change(message) is None
        change = d.change(insert)
        assert change is not None and len(change.columns) == columns
    assert d.change(two) is None
    with pytest.raises(DecodeError, match="3 columns"):
        d.change(insert3)


@pytest.mark.parametrize("width", [0, 1, 2, 199, 200, 201, 1600])
def test_every_width_reads_as_the_careful_path_does(width: int) -> None:
    """Up to _WRITTEN_OUT_MAX columns the readers are written out per column count, above
    it they loop: both give the careful path's Change, NULLs and a keyed update included."""
    rng = random.Random(width)
    fast, careful = PgoutputDecoder(), PgoutputDecoder()
    spec = [(f"c{i}", i % 7 == 0) for i in range(width)]
    for d in (fast, careful):
        d.decode(relation(9, "public", "wide", spec))

    def row() -> bytes:
        return tuple_data(*(rng.choice([None, b"", str(i).encode()]) for i in range(width)))

    messages = [
        b"I" + struct.pack(">I", 9) + b"N" + row(),
        b"U" + struct.pack(">I", 9) + b"N" + row(),
        b"U" + struct.pack(">I", 9) + b"O" + row() + b"N" + row(),
        b"D" + struct.pack(">I", 9) + b"K" + row(),
    ]
    for message in messages:
        expected = careful._careful(message, 3)
        assert fast.change(message, 3) == expected
        with pytest.raises(DecodeError, match="cut short"):
            fast.change(message[:-1], 3)


def test_the_shared_empties_stay_empty() -> None:
    """The fast path's Changes share one empty list and set: decoding never fills them."""
    from pgferry.cdc import pgoutput

    test_fast_and_careful_agree(3)
    test_every_width_reads_as_the_careful_path_does(201)
    assert not pgoutput._NONE and not pgoutput._NOTHING
