"""Parallel apply (--apply-jobs N): which waiting transactions may run side by side.

Apply sends groups of consecutive source transactions to N target sessions ("lanes").
A group may go to any lane unless it conflicts with a group not yet committed: then it
goes behind that group on the same lane (a lane runs its groups in order), or waits.
Two transactions conflict when they change the same row of a table found by its key (old
and new key values of an UPDATE both count), or when either touches a table whose rows
cannot be told apart that way (no key, REPLICA IDENTITY FULL, another unique or
exclusion index, a key type whose text does not identify its value); inserts into a
table with no unique index at all never conflict with each other. A TRUNCATE, or
anything else not classified here, is a barrier: apply runs it alone.

Exactly once: groups commit strictly in commit order (a group's Sync, its commit, is sent
only once every earlier group has committed, and once its own statements have all run
without error), so what the target holds is always a prefix of the stream. Each lane
records its last commit in a replication origin of its own (lane_origin); the applied
position is the highest of them. A group that fails before its commit (a conflict this
module did not see: a lock wait ended by lock_timeout, a duplicate key, a row not there
yet) is rolled back with everything after it, and apply goes on one transaction at a
time past what it had dispatched.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pgferry.cdc.decode import Change, values_picker
from pgferry.cdc.sqlgen import TargetTable

# Key column types whose text, as the source prints it, is one value and only one: two
# different texts never compare equal (numeric 1.0 = 1.00, float -0 = 0, citext and
# case-insensitive collations do), so equal texts find the same row and different
# texts different rows.
EXACT_TEXT_TYPES = frozenset(
    {"smallint", "integer", "bigint", "uuid", "text", "date", "boolean", "bytea", "oid", "name"}
)
EXACT_TEXT_PREFIXES = ("character varying", "character(", "timestamp", "time ")

# Conflict classes of a table (TableClass), computed once per table.
ROWS = "rows"  # changes conflict by key value
INSERTS_FREE = "inserts-free"  # no unique index: inserts never conflict; the rest: table
TABLE = "table"  # every change conflicts with every other change of the table


def exact_text(type_name: str) -> bool:
    return type_name in EXACT_TEXT_TYPES or type_name.startswith(EXACT_TEXT_PREFIXES)


def table_class(table: TargetTable) -> str:
    """How changes of `table` conflict (ROWS, INSERTS_FREE or TABLE)."""
    if table.update_rows and all(exact_text(table.columns[c].type) for c in table.key):
        return ROWS
    if table.uniques == 0:
        return INSERTS_FREE
    return TABLE


@dataclass(frozen=True, slots=True)
class Keys:
    """What one transaction (or group) touches, for conflict checks."""

    rows: frozenset[Hashable]  # (table id, key values)
    shared: frozenset[int]  # tables inserted into without a row key (INSERTS_FREE)
    whole: frozenset[int]  # tables touched as a whole (TABLE, or INSERTS_FREE's U/D)


class KeyMaker:
    """Changes -> Keys; None for a barrier (TRUNCATE, a change of unknown shape)."""

    def __init__(self) -> None:
        self._classes: dict[int, str] = {}
        self._pickers: dict[tuple[int, tuple[str, ...]], Callable[[Any], Any] | None] = {}

    def keys(self, changes: Iterable[tuple[Change, TargetTable | None]]) -> Keys | None:
        rows: set[Hashable] = set()
        shared: set[int] = set()
        whole: set[int] = set()
        for change, table in changes:
            if change.kind == "T" or table is None:
                return None
            tid = id(table)
            cls = self._classes.get(tid)
            if cls is None:
                cls = self._classes[tid] = table_class(table)
            if cls == ROWS:
                if not self._row_keys(change, table, rows):
                    whole.add(tid)
            elif cls == INSERTS_FREE and change.kind == "I":
                shared.add(tid)
            else:
                whole.add(tid)
        return Keys(frozenset(rows), frozenset(shared), frozenset(whole))

    def _row_keys(self, change: Change, table: TargetTable, out: set[Hashable]) -> bool:
        """Add the change's row keys; False when a key value is not in the change."""
        tid = id(table)
        if change.kind != "D":
            if any(c in change.unchanged for c in table.key):
                return False
            new = self._picker(tid, table.key, change.columns)
            if new is None:
                return False
            out.add((tid, new(change.values)))
        if change.key_columns:
            old = self._picker(tid, table.key, change.key_columns)
            if old is None:
                return False
            out.add((tid, old(change.key_values)))
        elif change.kind == "D":
            return False
        return True

    def _picker(
        self, tid: int, key: tuple[str, ...], columns: Sequence[str]
    ) -> Callable[[Any], Any] | None:
        shape = (tid, tuple(columns))
        if shape in self._pickers:
            return self._pickers[shape]
        at = {c: i for i, c in enumerate(columns)}
        picker = values_picker([at[c] for c in key]) if all(c in at for c in key) else None
        self._pickers[shape] = picker
        return picker


@dataclass(eq=False, slots=True)
class Group:
    """Consecutive source transactions applied as one target transaction on one lane."""

    lane: int
    last: Any  # TxnEntry: the origin records its commit
    txns: int = 0
    changes: int = 0
    keys: list[Keys] = field(default_factory=list)
    closed: bool = False  # its origin setup is queued: nothing more joins it
    mark: int = 0  # the lane's command count when closed: its results are in past it
    sync_no: int = 0  # 0: its commit (Sync) is not sent yet


class ConflictIndex:
    """Which uncommitted groups touch what."""

    def __init__(self) -> None:
        self._rows: dict[Hashable, Group] = {}
        self._shared: dict[int, dict[int, Group]] = {}  # table -> lane -> last group
        self._whole: dict[int, dict[int, Group]] = {}

    def lanes(self, keys: Keys) -> set[int]:
        """The lanes holding an uncommitted group that conflicts with `keys`."""
        out: set[int] = set()
        rows = self._rows
        for k in keys.rows:
            g = rows.get(k)
            if g is not None:
                out.add(g.lane)
        tables = {k[0] for k in keys.rows}  # type: ignore[index]
        for tid in tables | keys.shared:
            out.update(self._whole.get(tid, ()))
        for tid in keys.whole:
            out.update(self._whole.get(tid, ()))
            out.update(self._shared.get(tid, ()))  # row-keyed groups are here too
        return out

    def add(self, group: Group, keys: Keys) -> None:
        group.keys.append(keys)
        for k in keys.rows:
            self._rows[k] = group
            self._shared.setdefault(k[0], {})[group.lane] = group  # type: ignore[index]
        for tid in keys.shared:
            self._shared.setdefault(tid, {})[group.lane] = group
        for tid in keys.whole:
            self._whole.setdefault(tid, {})[group.lane] = group

    def remove(self, group: Group) -> None:
        """`group` committed: it conflicts with nothing any more."""
        for keys in group.keys:
            for k in keys.rows:
                if self._rows.get(k) is group:
                    del self._rows[k]
                self._forget(self._shared, k[0], group)  # type: ignore[index]
            for tid in keys.shared:
                self._forget(self._shared, tid, group)
            for tid in keys.whole:
                self._forget(self._whole, tid, group)

    @staticmethod
    def _forget(index: dict[int, dict[int, Group]], tid: int, group: Group) -> None:
        lanes = index.get(tid)
        if lanes is not None and lanes.get(group.lane) is group:
            del lanes[group.lane]
            if not lanes:
                del index[tid]
