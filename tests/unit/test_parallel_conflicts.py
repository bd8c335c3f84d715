"""Parallel apply's conflict rules (pgferry.cdc.parallel): which transactions may run
on different target sessions."""

from __future__ import annotations

from pgferry.cdc.decode import Change
from pgferry.cdc.parallel import (
    INSERTS_FREE,
    ROWS,
    TABLE,
    ConflictIndex,
    Group,
    KeyMaker,
    Keys,
    table_class,
)
from pgferry.cdc.sqlgen import Column, TargetTable


def _table(
    name: str, key: tuple[str, ...], *, uniques: int, key_type: str = "integer", identity: str = "d"
) -> TargetTable:
    columns = {"id": Column("id", key_type), "v": Column("v", "text")}
    return TargetTable(
        "public",
        name,
        columns,
        key=key,
        identity=identity,
        update_rows=bool(key) and identity != "f" and uniques == 1,
        uniques=uniques,
    )


KEYED = _table("keyed", ("id",), uniques=1)
NOKEY = _table("nokey", (), uniques=0, identity="f")
TWO_UNIQUES = _table("two", ("id",), uniques=2)
NUMERIC_KEY = _table("num", ("id",), uniques=1, key_type="numeric")


def ins(t: TargetTable, i: bytes) -> tuple[Change, TargetTable]:
    return Change("I", t.schema, t.name, ["id", "v"], [i, b"x"]), t


def upd(t: TargetTable, i: bytes, old: bytes | None = None) -> tuple[Change, TargetTable]:
    change = Change("U", t.schema, t.name, ["id", "v"], [i, b"y"])
    if old is not None:
        change.key_columns, change.key_values = ["id"], [old]
    return change, t


def dele(t: TargetTable, i: bytes) -> tuple[Change, TargetTable]:
    return Change("D", t.schema, t.name, key_columns=["id"], key_values=[i]), t


def _keys(*changes: tuple[Change, TargetTable]) -> Keys:
    keys = KeyMaker().keys(list(changes))
    assert keys is not None
    return keys


def _after(index: ConflictIndex, lane: int, *changes: tuple[Change, TargetTable]) -> Group:
    group = Group(lane=lane, last=None)
    index.add(group, _keys(*changes))
    return group


def test_classes() -> None:
    assert table_class(KEYED) == ROWS
    assert table_class(NOKEY) == INSERTS_FREE
    assert table_class(TWO_UNIQUES) == TABLE
    assert table_class(NUMERIC_KEY) == TABLE  # 1.0 and 1.00 are one key


def test_same_row_conflicts_other_rows_do_not() -> None:
    index = ConflictIndex()
    _after(index, 1, upd(KEYED, b"1"))
    assert index.lanes(_keys(upd(KEYED, b"1"))) == {1}
    assert index.lanes(_keys(dele(KEYED, b"1"))) == {1}
    assert index.lanes(_keys(ins(KEYED, b"2"), upd(KEYED, b"3"))) == set()


def test_old_and_new_key_of_an_update_both_count() -> None:
    index = ConflictIndex()
    _after(index, 2, upd(KEYED, b"10", old=b"5"))  # row 5 became row 10
    assert index.lanes(_keys(ins(KEYED, b"5"))) == {2}
    assert index.lanes(_keys(dele(KEYED, b"10"))) == {2}


def test_a_table_without_a_usable_key_is_one_thing() -> None:
    index = ConflictIndex()
    _after(index, 0, ins(NOKEY, b"1"))
    _after(index, 1, ins(NOKEY, b"2"))  # inserts into it never conflict...
    assert index.lanes(_keys(ins(NOKEY, b"3"))) == set()
    assert index.lanes(_keys(dele(NOKEY, b"9"))) == {0, 1}  # ...anything else does
    _after(index, 3, upd(TWO_UNIQUES, b"1"))
    assert index.lanes(_keys(ins(TWO_UNIQUES, b"2"))) == {3}
    _after(index, 2, upd(KEYED, b"1"))
    assert index.lanes(_keys(upd(KEYED, b"7"))) == set()


def test_truncate_is_a_barrier() -> None:
    truncate = Change("T", "", "", relations=[("public", "keyed")])
    assert KeyMaker().keys([ins(KEYED, b"1"), (truncate, KEYED)]) is None


def test_a_committed_group_conflicts_with_nothing() -> None:
    index = ConflictIndex()
    first = _after(index, 1, upd(KEYED, b"1"), dele(NOKEY, b"1"))
    later = _after(index, 1, upd(KEYED, b"1"))
    index.remove(first)
    assert index.lanes(_keys(upd(KEYED, b"1"))) == {1}  # the later group still holds it
    assert index.lanes(_keys(ins(NOKEY, b"1"))) == set()
    index.remove(later)
    assert index.lanes(_keys(upd(KEYED, b"1"))) == set()


def test_an_unsent_toasted_key_makes_the_table_whole() -> None:
    change, table = upd(KEYED, b"1")
    change.unchanged = {"id"}
    index = ConflictIndex()
    _after(index, 1, upd(KEYED, b"8"))
    assert index.lanes(_keys((change, table))) == {1}
