"""A random workload from a seed: source transactions of inserts, updates (key, non-key,
included, TOASTed, no-op, moving a row to another partition), deletes, TRUNCATE, savepoints
rolled back and a few large transactions; and the thin code that runs them on the source.

Generation draws every value up front (pure Python); a row to change is found on the server
by the table's pick column (`pick >= x ORDER BY pick LIMIT 1`), then changed by its
(tableoid, ctid), which works for partitioned parents, inheritance and duplicate rows alike.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from tests.explorer.schema import (
    PARTITIONED,
    PICK_RANGE,
    Column,
    Identity,
    Layout,
    Role,
    Schema,
    Table,
    key_expression,
    key_value,
    part_expression,
    part_value,
)
from tests.explorer.values import ValueContext

Value = str | None


class Same:
    """An assignment that sets a column to itself (a no-op update)."""


SAME = Same()


@dataclass(frozen=True)
class Insert:
    table: Table
    target: str  # the relation inserted into: the table or one of its inheritance children
    columns: tuple[Column, ...]
    rows: tuple[tuple[Value, ...], ...]
    label: str = "insert"


@dataclass(frozen=True)
class Update:
    table: Table
    pick: int
    sets: tuple[tuple[Column, Value | Same], ...]
    label: str  # update-key, update-nonkey, update-included, update-toast, noop, move
    span: int = 0  # 0: one row; else every row with pick in [pick, pick + span)


@dataclass(frozen=True)
class Delete:
    table: Table
    pick: int
    span: int = 0
    label: str = "delete"


@dataclass(frozen=True)
class Truncate:
    table: Table
    label: str = "truncate"


@dataclass(frozen=True)
class BulkInsert:
    table: Table
    first: int
    count: int
    label: str = "bulk-insert"


@dataclass(frozen=True)
class BulkUpdate:
    table: Table
    label: str = "bulk-update"


@dataclass(frozen=True)
class NextVal:
    sequence: sql.Identifier
    label: str = "nextval"


Op = Insert | Update | Delete | Truncate | BulkInsert | BulkUpdate | NextVal


@dataclass(frozen=True)
class Txn:
    """One source transaction: `ops`, of which ops[savepoint[0]:savepoint[1]] run inside a
    savepoint that is rolled back; `rollback` rolls the whole transaction back."""

    ops: tuple[Op, ...]
    savepoint: tuple[int, int] | None = None
    rollback: bool = False

    def labels(self) -> list[str]:
        return [op.label for op in self.ops]


@dataclass
class Workload:
    initial: list[Txn]  # the rows there before the clone starts
    txns: list[Txn]  # what runs while pgferry follows

    def label_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for txn in self.txns:
            counts.update(txn.labels())
            counts["savepoint-rollback"] += txn.savepoint is not None
            counts["txn-rollback"] += txn.rollback
        return counts


@dataclass
class Generator:
    rng: random.Random
    schema: Schema
    ctx: ValueContext
    large_left: int = 0
    _ops: list[Op] = field(default_factory=list)

    def row(self, table: Table) -> tuple[Value, ...]:
        if table.identity == Identity.FULL_NOKEY and table.samples and self.rng.random() < 0.3:
            return tuple(self.rng.choice(table.samples))  # an exact duplicate row
        values: list[Value] = []
        n = table.next_key
        table.next_key += 1
        for col in table.writable:
            if col.role in (Role.KEY, Role.UNIQ):
                values.append(key_value(col.kind, n))
            elif col.role == Role.PICK:
                values.append(str(self.rng.randrange(PICK_RANGE)))
            elif col.role == Role.PART:
                values.append(part_value(table.layout, self.rng))
            else:
                values.append(col.kind.gen(self.rng, self.ctx))
        if table.identity == Identity.FULL_NOKEY and len(table.samples) < 5:
            table.samples.append(values)
        return tuple(values)

    def insert(self, table: Table, rows: int) -> Insert:
        target = table.name
        if table.children and self.rng.random() < 0.6:
            target = self.rng.choice(table.children)
        return Insert(
            table,
            target,
            tuple(table.writable),
            tuple(self.row(table) for _ in range(rows)),
        )

    def update(self, table: Table) -> Update:
        pick = self.rng.randrange(PICK_RANGE)
        choices = ["update-nonkey", "noop"]
        if table.has_key:
            choices += ["update-key"]
        if table.included:
            choices += ["update-included"] * 2
        if any(c.kind.toast for c in table.payload):
            choices += ["update-toast"]
        if table.layout in PARTITIONED:
            choices += ["move"] * 2
        label = self.rng.choice(choices)
        sets: list[tuple[Column, Value | Same]] = []
        if label == "noop":
            sets.append((table.pick, SAME))
        elif label == "move":
            assert table.part is not None
            sets.append((table.part, part_value(table.layout, self.rng)))
        elif label == "update-key":
            n = table.next_key
            table.next_key += 1
            keys = (
                table.of(Role.UNIQ)
                if table.of(Role.UNIQ) and (not table.of(Role.KEY) or self.rng.random() < 0.5)
                else table.of(Role.KEY)
            )
            sets += [(c, key_value(c.kind, n)) for c in keys]
        elif label == "update-included":
            sets += [(c, c.kind.gen(self.rng, self.ctx)) for c in table.included]
        elif label == "update-toast":
            col = self.rng.choice([c for c in table.payload if c.kind.toast])
            sets.append((col, col.kind.gen(self.rng, self.ctx)))
        else:
            plain = [c for c in table.payload if not c.kind.toast] or table.payload
            for col in self.rng.sample(plain, min(len(plain), self.rng.randrange(1, 4))):
                sets.append((col, col.kind.gen(self.rng, self.ctx)))
            if self.rng.random() < 0.3:
                sets.append((table.pick, str(self.rng.randrange(PICK_RANGE))))
        span = 0
        if label in ("update-nonkey", "noop", "move") and self.rng.random() < 0.15:
            span = self.rng.randrange(1_000, 40_000)
        return Update(table, pick, tuple(sets), label, span)

    def op(self, table: Table) -> Op:
        r = self.rng.random()
        if self.large_left and r < 0.04:
            self.large_left -= 1
            if self.rng.random() < 0.6:
                first = table.next_key
                count = self.rng.randrange(1_000, 5_000)
                table.next_key += count
                return BulkInsert(table, first, count)
            return BulkUpdate(table)
        if r < 0.35:
            return self.insert(table, self.rng.choice([1, 1, 1, 2, 5, 20]))
        if r < 0.75:
            return self.update(table)
        if r < 0.93:
            span = self.rng.randrange(1_000, 20_000) if self.rng.random() < 0.1 else 0
            return Delete(table, self.rng.randrange(PICK_RANGE), span)
        if r < 0.95:
            return Truncate(table)
        return NextVal(self.rng.choice(self.schema.sequences))

    def txn(self) -> Txn:
        ops = tuple(
            self.op(self.rng.choice(self.schema.tables))
            for _ in range(self.rng.choice([1, 1, 1, 2, 3, 5, 8]))
        )
        savepoint = None
        if len(ops) >= 2 and self.rng.random() < 0.15:
            start = self.rng.randrange(len(ops))
            savepoint = (start, self.rng.randrange(start + 1, len(ops) + 1))
        return Txn(ops, savepoint, rollback=self.rng.random() < 0.03)


def generate_workload(
    rng: random.Random, schema: Schema, ctx: ValueContext, *, txns: int
) -> Workload:
    """The initial rows of every table, then `txns` random transactions."""
    gen = Generator(rng, schema, ctx, large_left=rng.randrange(0, 3))
    initial = []
    for table in schema.tables:
        rows = rng.choice([0, 10, 50, 150]) if table.layout != Layout.WIDE else 30
        for chunk in range(0, rows, 25):
            initial.append(Txn((gen.insert(table, min(25, rows - chunk)),)))
    return Workload(initial, [gen.txn() for _ in range(txns)])


# -- running it -------------------------------------------------------------------------


def run_txn(conn: psycopg.Connection, txn: Txn) -> int:
    """Run one transaction on the source; the number of rows it changed (0 if rolled back).

    A constraint the generated values break rolls the transaction back, as a real
    application's would; any other error propagates (a bug of the generator).
    """
    changed = 0
    try:
        with conn.transaction() as outer:
            for i, op in enumerate(txn.ops):
                if txn.savepoint and i == txn.savepoint[0]:
                    changed += _in_savepoint(conn, txn.ops[txn.savepoint[0] : txn.savepoint[1]])
                if txn.savepoint and txn.savepoint[0] <= i < txn.savepoint[1]:
                    continue
                changed += run_op(conn, op)
            if txn.rollback:
                raise psycopg.Rollback(outer)
    except psycopg.errors.IntegrityError:
        return 0
    return 0 if txn.rollback else changed


def _in_savepoint(conn: psycopg.Connection, ops: tuple[Op, ...]) -> int:
    with conn.transaction() as savepoint:
        for op in ops:
            run_op(conn, op)
        raise psycopg.Rollback(savepoint)
    return 0


def run_op(conn: psycopg.Connection, op: Op) -> int:
    """Run one operation; the number of rows it changed."""
    match op:
        case Insert():
            return _insert(conn, op)
        case Update():
            return _update(conn, op)
        case Delete():
            where = _where(conn, op.table, op.pick, op.span)
            if where is None:
                return 0
            query = sql.SQL("DELETE FROM {} WHERE {}").format(op.table.ident, where)
            return conn.execute(query).rowcount
        case Truncate():
            conn.execute(sql.SQL("TRUNCATE {}").format(op.table.ident))
            return 1
        case BulkInsert():
            return _bulk_insert(conn, op)
        case BulkUpdate():
            pick = op.table.pick.ident
            query = sql.SQL("UPDATE {} SET {} = ({} + 1) % {}").format(
                op.table.ident, pick, pick, sql.Literal(PICK_RANGE)
            )
            return conn.execute(query).rowcount
        case NextVal():
            conn.execute(
                sql.SQL("SELECT nextval({}::regclass)").format(
                    sql.Literal(op.sequence.as_string(conn))
                )
            )
            return 0
    raise AssertionError(op)


def _cast(col: Column, value: Value) -> sql.Composable:
    return sql.SQL("{}::{}").format(sql.Literal(value), col.kind.sqltype)


def _insert(conn: psycopg.Connection, op: Insert) -> int:
    rows = [
        sql.SQL("({})").format(
            sql.SQL(", ").join(_cast(c, v) for c, v in zip(op.columns, r, strict=True))
        )
        for r in op.rows
    ]
    query = sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
        sql.Identifier(op.table.schema, op.target),
        sql.SQL(", ").join(c.ident for c in op.columns),
        sql.SQL(", ").join(rows),
    )
    return conn.execute(query).rowcount


def _where(conn: psycopg.Connection, table: Table, pick: int, span: int) -> sql.Composable | None:
    """The rows an operation changes: a pick range, or the first row at `pick` or after.

    Values are sent as literals, never as parameters: a hostile identifier holding '%'
    would otherwise be read as a placeholder.
    """
    if span:
        return sql.SQL("{} >= {} AND {} < {}").format(
            table.pick.ident, sql.Literal(pick), table.pick.ident, sql.Literal(pick + span)
        )
    found = conn.execute(
        sql.SQL("SELECT tableoid, ctid::text FROM {} WHERE {} >= {} ORDER BY {} LIMIT 1").format(
            table.ident, table.pick.ident, sql.Literal(pick), table.pick.ident
        )
    ).fetchone()
    if found is None:
        return None
    return sql.SQL("tableoid = {} AND ctid = {}::tid").format(
        sql.Literal(found[0]), sql.Literal(found[1])
    )


def _update(conn: psycopg.Connection, op: Update) -> int:
    where = _where(conn, op.table, op.pick, op.span)
    if where is None:
        return 0
    sets = [
        sql.SQL("{} = {}").format(
            col.ident, col.ident if isinstance(value, Same) else _cast(col, value)
        )
        for col, value in op.sets
    ]
    query = sql.SQL("UPDATE {} SET {} WHERE {}").format(
        op.table.ident, sql.SQL(", ").join(sets), where
    )
    return conn.execute(query).rowcount


def _bulk_insert(conn: psycopg.Connection, op: BulkInsert) -> int:
    """`count` rows made by the server; payload columns get simple or NULL values."""
    g = sql.Identifier("g")
    table = op.table
    exprs: list[sql.Composable] = []
    for col in table.writable:
        if col.role in (Role.KEY, Role.UNIQ):
            exprs.append(sql.SQL("{}::{}").format(key_expression(col.kind, g), col.kind.sqltype))
        elif col.role == Role.PICK:
            exprs.append(sql.SQL("({}::bigint * 7919) % {}").format(g, sql.Literal(PICK_RANGE)))
        elif col.role == Role.PART:
            exprs.append(part_expression(table.layout, g))
        elif col.kind.toast and col.kind.label == "toast text":
            exprs.append(
                sql.SQL(
                    "(SELECT string_agg(md5({}::text || i::text), '') "
                    "FROM generate_series(1, 100) i)"
                ).format(g)
            )
        elif col.kind.label == "text":
            exprs.append(sql.SQL("'bulk ''' || {}").format(g))
        elif col.kind.label in ("int4", "int8", "numeric"):
            exprs.append(sql.SQL("{}::{}").format(g, col.kind.sqltype))
        else:
            exprs.append(sql.SQL("NULL::{}").format(col.kind.sqltype))
    query = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM generate_series({}, {}) {}").format(
        table.ident,
        sql.SQL(", ").join(c.ident for c in table.writable),
        sql.SQL(", ").join(exprs),
        sql.Literal(op.first),
        sql.Literal(op.first + op.count - 1),
        g,
    )
    return conn.execute(query).rowcount
