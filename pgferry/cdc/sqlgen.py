"""SQL text for applying changes: one prepared statement per table and column set.

UPDATE and DELETE report how many rows they touched; apply stops when one touched none
(the target has diverged).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from psycopg import sql


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    generated: bool = False
    always_identity: bool = False
    text_compare: bool = False  # no usable equality (json, point, xml...): compare as text


@dataclass
class TargetTable:
    """What apply needs to know about one target table."""

    schema: str
    name: str
    columns: dict[str, Column]
    key: tuple[str, ...]  # PK or replica identity index; empty for FULL / NOTHING
    identity: str  # d default, i index, f full, n nothing
    copy_lsn: int = 0  # changes committed at or before this are in the copied data
    # UPDATEs of different rows may go as one statement: the rows are found by a key,
    # and no other unique or exclusion index could see the order they change in.
    update_rows: bool = False
    uniques: int = 0  # unique and exclusion indexes (the key's among them)
    apply: bool = True  # False: filtered out, changes are skipped
    statements: dict[tuple, str] = field(default_factory=dict)
    plans: dict[tuple, tuple] = field(default_factory=dict)  # per change shape (apply.py)

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def qualname(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def has_always_identity(self) -> bool:
        return any(c.always_identity for c in self.columns.values())


def _render(composable: sql.Composable) -> str:
    return composable.as_string(None)


def _p(n: int) -> sql.SQL:
    return sql.SQL(f"${n}")


CONTINUITY_MARK = "pgferry continuity:"


def origin_setup_sql(first: int) -> str:
    """Record the transaction's origin position ($first: its commit LSN, then its commit
    time) after checking that it is the very next one: the session's origin progress must
    be the previous transaction's commit LSN ($first + 2), and this commit must come after
    it. Otherwise the transaction fails with an error whose text starts with
    CONTINUITY_MARK and gives both positions (a text that is not an integer: the only way
    plain SQL can raise a message of its own; the progress call keeps it from being
    folded at plan time)."""
    commit, previous = f"${first}::pg_lsn", f"${first + 2}::pg_lsn"
    progress = "pg_replication_origin_session_progress(false)"
    return (
        f"SELECT pg_replication_origin_xact_setup({commit}, ${first + 1}::timestamptz) "
        f"FROM (SELECT CASE WHEN {progress} = {previous} AND {commit} > {previous} THEN 1 "
        f"ELSE ('{CONTINUITY_MARK} origin at ' || coalesce({progress}::text, 'none') "
        f"|| ', transaction after ' || {previous}::text || ' committing at ' "
        f"|| {commit}::text)::int END) AS continuity"
    )


def _insert_into(table: TargetTable, columns: tuple[str, ...]) -> sql.Composed:
    """INSERT INTO t (columns), overriding GENERATED ALWAYS identities (their values
    come from the source)."""
    override = sql.SQL(" OVERRIDING SYSTEM VALUE") if table.has_always_identity else sql.SQL("")
    return sql.SQL("INSERT INTO {} ({}){}").format(
        table.ident, sql.SQL(", ").join(map(sql.Identifier, columns)), override
    )


def insert_origin_sql(table: TargetTable, columns: tuple[str, ...]) -> str:
    """A one-row INSERT that also records the origin position (origin_setup_sql's three
    parameters after the row's): one statement fewer for a transaction ending in an
    insert. The subquery runs exactly once (a volatile function is never pulled up or
    dropped), and the row's parameters take the column types as in INSERT ... VALUES."""
    key = ("IO", columns)
    text = table.statements.get(key)
    if text is None:
        n = len(columns)
        stmt = sql.SQL("{} SELECT {} FROM ({}) AS origin").format(
            _insert_into(table, columns),
            sql.SQL(", ").join(_p(i + 1) for i in range(n)),
            sql.SQL(origin_setup_sql(n + 1)),  # type: ignore[arg-type]
        )
        text = _render(stmt)
        table.statements[key] = text
    return text


def insert_sql(table: TargetTable, columns: tuple[str, ...], rows: int) -> str:
    key = ("I", columns, rows)
    text = table.statements.get(key)
    if text is None:
        n = len(columns)
        values = sql.SQL(", ").join(
            sql.SQL("({})").format(sql.SQL(", ").join(_p(r * n + i + 1) for i in range(n)))
            for r in range(rows)
        )
        if columns:
            stmt = sql.SQL("{} VALUES {}").format(_insert_into(table, columns), values)
        else:
            stmt = sql.SQL("INSERT INTO {} DEFAULT VALUES").format(table.ident)
        text = _render(stmt)
        table.statements[key] = text
    return text


def _where(
    table: TargetTable,
    columns: tuple[str, ...],
    first: int,
    full: bool,
    nulls: tuple[str, ...] = (),
) -> sql.Composable:
    """Which row: the key's values, or (full) the old row's values and `nulls`, the
    columns the old row holds NULL in without listing them (test_decoding leaves NULLs
    out of an old row)."""
    if not full:
        return sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), _p(first + i))
            for i, c in enumerate(columns)
        )
    conds = []
    for i, c in enumerate(columns):
        col = table.columns.get(c)
        if col is not None and col.text_compare:
            conds.append(
                sql.SQL("{}::text IS NOT DISTINCT FROM {}::text").format(
                    sql.Identifier(c), _p(first + i)
                )
            )
        else:
            conds.append(
                sql.SQL("{} IS NOT DISTINCT FROM {}").format(sql.Identifier(c), _p(first + i))
            )
    conds += [sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in nulls]
    # One row only: with duplicate rows and no key, the source changed exactly one of them.
    return sql.SQL("ctid = (SELECT ctid FROM ONLY {} WHERE {} LIMIT 1)").format(
        table.ident, sql.SQL(" AND ").join(conds)
    )


def update_sql(
    table: TargetTable,
    set_columns: tuple[str, ...],
    where_columns: tuple[str, ...],
    full: bool,
    nulls: tuple[str, ...] = (),
) -> str:
    key = ("U", set_columns, where_columns, full, nulls)
    text = table.statements.get(key)
    if text is None:
        sets = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), _p(i + 1))
            for i, c in enumerate(set_columns)
        )
        stmt = sql.SQL("UPDATE ONLY {} SET {} WHERE {}").format(
            table.ident, sets, _where(table, where_columns, len(set_columns) + 1, full, nulls)
        )
        text = _render(stmt)
        table.statements[key] = text
    return text


def update_rows_sql(
    table: TargetTable,
    columns: tuple[str, ...],
    set_columns: tuple[str, ...],
    rows: int,
) -> str:
    """One UPDATE of `rows` different rows found by the table's key: each row's
    parameters are the values of `columns` (a full new row, the key among them), cast to
    the columns' types; `set_columns` of them are written."""
    key = ("UR", columns, set_columns, rows)
    text = table.statements.get(key)
    if text is None:
        n = len(columns)
        types = [sql.SQL(table.columns[c].type) for c in columns]
        values = sql.SQL(", ").join(
            sql.SQL("({})").format(
                sql.SQL(", ").join(
                    sql.SQL("{}::{}").format(_p(r * n + i + 1), types[i]) for i in range(n)
                )
            )
            for r in range(rows)
        )
        stmt = sql.SQL("UPDATE ONLY {} AS t SET {} FROM (VALUES {}) AS v ({}) WHERE {}").format(
            table.ident,
            sql.SQL(", ").join(
                sql.SQL("{} = v.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in set_columns
            ),
            values,
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.SQL(" AND ").join(
                sql.SQL("t.{} = v.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in table.key
            ),
        )
        text = _render(stmt)
        table.statements[key] = text
    return text


def row_exists_sql(table: TargetTable, key_values: list[bytes | None]) -> sql.Composed:
    """Whether the table has the row of these key values (in key order), for messages."""
    return sql.SQL("SELECT EXISTS (SELECT 1 FROM ONLY {} WHERE {})").format(
        table.ident,
        sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(
                sql.Identifier(k), sql.Literal(None if v is None else v.decode())
            )
            for k, v in zip(table.key, key_values, strict=True)
        ),
    )


def delete_sql(
    table: TargetTable, where_columns: tuple[str, ...], full: bool, nulls: tuple[str, ...] = ()
) -> str:
    key = ("D", where_columns, full, nulls)
    text = table.statements.get(key)
    if text is None:
        stmt = sql.SQL("DELETE FROM ONLY {} WHERE {}").format(
            table.ident, _where(table, where_columns, 1, full, nulls)
        )
        text = _render(stmt)
        table.statements[key] = text
    return text


def truncate_sql(tables: list[TargetTable], restart_seqs: bool) -> str:
    stmt = sql.SQL("TRUNCATE ONLY {}{}").format(
        sql.SQL(", ").join(t.ident for t in tables),
        sql.SQL(" RESTART IDENTITY") if restart_seqs else sql.SQL(""),
    )
    return _render(stmt)


@functools.lru_cache(maxsize=4096)
def batch_sizes(rows: int, columns: int) -> tuple[int, ...]:
    """Split a run of inserts into few statement shapes (powers of 4, <= 65535 params)."""
    limit = 256
    while limit > 1 and limit * max(columns, 1) > 65535:
        limit //= 4
    sizes = []
    size = limit
    while rows > 0:
        while size > rows:
            size //= 4 if size >= 4 else 1
            size = max(size, 1)
        sizes.append(size)
        rows -= size
    return tuple(sizes)
