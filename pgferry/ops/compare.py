"""Compare a source and a target database: their data (`compare_data`) and their schema
(`compare_schema`).

Data: every table's row count and an order-independent, multiplicity-sensitive hash of its
rows, computed by each server over the columns both sides have (sorted by name, so a
different physical column order does not matter); sequence positions (the target may be
ahead, never behind); large objects (count, and a digest of each one's content read in
bounded chunks). Each side is read on one snapshot shared by all its workers, with fixed
output settings so that values render the same way on both servers.

Schema: per object type (schemas, tables, columns, indexes, constraints, ...) the set of
names on each side and, where it has one, each object's definition as the server prints it.

Both skip the system schemas, pgferry's own schema and objects that belong to extensions:
the same scope as the migration. `FilterScope` narrows that scope to what the filters
keep, by name on both sides (used by `compare_schema(filters=...)` and `pgferry verify`).

Each side's reads share one exported snapshot; worker transactions restart on it every
LOCK_BUDGET relations so that thousands of tables do not exhaust the lock table.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.filters import Filters, no_filters
from pgferry.catalog.queries import SYSTEM_SCHEMA_FILTER
from pgferry.pg.conninfo import ConnInfo

log = logging.getLogger(__name__)

# Values must render identically on both sides whatever the servers' defaults are;
# row_security off makes a read that RLS would filter fail instead of lying.
READ_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
    "xmloption": "content",
    "row_security": "off",
    "search_path": "",
    "statement_timeout": "0",
}
# Connection-level: the snapshot-holding transaction idles while the workers read.
_SESSION_SETTINGS = {"idle_in_transaction_session_timeout": "0"}

# Relations a worker's transaction reads before it starts a new one on the same snapshot:
# each read keeps a lock on the relation (and its indexes) until the transaction ends, and
# thousands of tables would exhaust the server's lock table (max_locks_per_transaction).
LOCK_BUDGET = 32
SEQUENCE_BATCH = LOCK_BUDGET
LARGE_OBJECT_CHUNK = 4 * 1024 * 1024  # bytes read by lo_get per object per round
LARGE_OBJECT_BATCH = 5000  # objects per query
_MAX_LISTED = 10  # large object OIDs named in one problem line


def _not_member(classid: str, oid: str) -> str:
    """SQL condition: the object is not part of an extension."""
    return (
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
        f"WHERE d.classid = 'pg_catalog.{classid}'::pg_catalog.regclass "
        f"AND d.objid = {oid} AND d.deptype = 'e')"
    )


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableResult:
    """One table on both sides; rows/hash are None where the table is missing or failed."""

    schema: str
    name: str
    source_rows: int | None
    target_rows: int | None
    source_hash: str | None
    target_hash: str | None
    ok: bool
    kind: str = "table"  # or "materialized view"
    only_on_source_columns: tuple[str, ...] = ()
    only_on_target_columns: tuple[str, ...] = ()
    error: str | None = None

    @property
    def qualname(self) -> str:
        return display_name(self.schema, self.name)

    def problem(self) -> str | None:
        """One human line saying what differs, or None when both sides hold the same rows."""
        if self.ok:
            return None
        what = f"{self.kind} {self.qualname}"
        if self.error:
            return f"{what}: {self.error}"
        if self.source_rows is None and self.source_hash is None:
            return f"{what}: only on target"
        if self.target_rows is None and self.target_hash is None:
            return f"{what}: missing on target"
        notes = []
        if self.only_on_source_columns:
            notes.append("columns only on source: " + ", ".join(self.only_on_source_columns))
        if self.only_on_target_columns:
            notes.append("columns only on target: " + ", ".join(self.only_on_target_columns))
        if self.source_rows != self.target_rows:
            notes.insert(
                0, f"{_rows(self.source_rows)} on source, {_rows(self.target_rows)} on target"
            )
        elif self.source_hash != self.target_hash:
            notes.insert(0, f"same row count ({_rows(self.source_rows)}) but different content")
        return f"{what}: " + "; ".join(notes)


def _rows(n: int | None) -> str:
    if n is None:
        return "not populated"
    return f"{n:,} row" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class SequenceResult:
    """One sequence's position on both sides (None where missing or unreadable)."""

    schema: str
    name: str
    source_last_value: int | None
    source_is_called: bool | None
    target_last_value: int | None
    target_is_called: bool | None
    ok: bool
    error: str | None = None

    @property
    def qualname(self) -> str:
        return display_name(self.schema, self.name)

    def problem(self) -> str | None:
        if self.ok:
            return None
        what = f"sequence {self.qualname}"
        if self.error:
            return f"{what}: {self.error}"
        if self.source_last_value is None:
            return f"{what}: only on target"
        if self.target_last_value is None:
            return f"{what}: missing on target"
        return (
            f"{what}: target is behind the source (source last_value "
            f"{self.source_last_value}{'' if self.source_is_called else ' (not called)'}, "
            f"target {self.target_last_value}{'' if self.target_is_called else ' (not called)'})"
        )


@dataclass(frozen=True)
class LargeObjectResult:
    """Large objects on both sides: which are missing, extra, or hold other bytes."""

    source_count: int
    target_count: int
    missing_on_target: tuple[int, ...] = ()
    only_on_target: tuple[int, ...] = ()
    different: tuple[int, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.error or self.missing_on_target or self.only_on_target or self.different)

    def problems(self) -> list[str]:
        lines = []
        if self.error:
            lines.append(f"large objects: {self.error}")
        for label, oids in (
            ("missing on target", self.missing_on_target),
            ("only on target", self.only_on_target),
            ("with different content", self.different),
        ):
            if oids:
                lines.append(f"large objects {label} ({len(oids)}): {_oid_list(oids)}")
        return lines


def _oid_list(oids: Sequence[int]) -> str:
    shown = ", ".join(str(o) for o in oids[:_MAX_LISTED])
    return shown + (f", ... ({len(oids) - _MAX_LISTED} more)" if len(oids) > _MAX_LISTED else "")


@dataclass(frozen=True)
class DataComparison:
    """The outcome of `compare_data`."""

    tables: tuple[TableResult, ...]
    sequences: tuple[SequenceResult, ...]
    large_objects: LargeObjectResult
    seconds: float = 0.0

    @property
    def large_objects_ok(self) -> bool:
        return self.large_objects.ok

    @property
    def ok(self) -> bool:
        return (
            all(t.ok for t in self.tables)
            and all(s.ok for s in self.sequences)
            and self.large_objects_ok
        )

    def problems(self) -> list[str]:
        """One human line per difference, tables first."""
        lines = [p for t in self.tables if (p := t.problem())]
        lines += [p for s in self.sequences if (p := s.problem())]
        return lines + self.large_objects.problems()

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems(), **asdict(self)}


@dataclass(frozen=True)
class ObjectKindComparison:
    """One object type (indexes, triggers, ...): names on each side, differing definitions."""

    kind: str
    source_count: int
    target_count: int
    only_on_source: tuple[str, ...] = ()
    only_on_target: tuple[str, ...] = ()
    different: tuple[tuple[str, str, str], ...] = ()  # (name, source def, target def)

    @property
    def ok(self) -> bool:
        return not (self.only_on_source or self.only_on_target or self.different)

    def problems(self) -> list[str]:
        singular = _SINGULAR.get(self.kind, self.kind)
        lines = [f"{singular} {name}: missing on target" for name in self.only_on_source]
        lines += [f"{singular} {name}: only on target" for name in self.only_on_target]
        lines += [
            f"{singular} {name}: definition differs: source {_clip(s)!r}, target {_clip(t)!r}"
            for name, s, t in self.different
        ]
        return lines


def _clip(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass(frozen=True)
class SchemaComparison:
    """The outcome of `compare_schema`: one entry per object type."""

    kinds: tuple[ObjectKindComparison, ...]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(k.ok for k in self.kinds)

    def problems(self) -> list[str]:
        return [line for k in self.kinds for line in k.problems()]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems(), **asdict(self)}


# ---------------------------------------------------------------------------------------
# SQL text (pure: unit tested with hostile names)
# ---------------------------------------------------------------------------------------

_PLAIN_IDENT = re.compile(r"^[a-z_][a-z0-9_$]*$")


def display_name(*parts: str) -> str:
    """schema.name for humans: each part double-quoted only when it needs to be."""
    return ".".join(p if _PLAIN_IDENT.match(p) else '"' + p.replace('"', '""') + '"' for p in parts)


def fingerprint_query(schema: str, name: str, columns: Sequence[str]) -> sql.Composed:
    """Row count and content hash of one relation's own rows (not its children's).

    The hash is the sum of the first 64 bits of each row's md5: independent of row order,
    sensitive to duplicates. Rows are built from `columns` in the given order, referenced
    through the alias so that a column named like the alias cannot be mistaken for it.
    """
    row = sql.SQL("ROW({})").format(
        sql.SQL(", ").join(sql.Identifier("r", column) for column in columns)
    )
    return sql.SQL(
        "SELECT pg_catalog.count(*), "
        "coalesce(pg_catalog.sum(('x' || pg_catalog.substr(pg_catalog.md5({row}::text), 1, 16))"
        "::bit(64)::bigint::numeric), 0)::text "
        "FROM ONLY {table} AS r"
    ).format(row=row, table=sql.Identifier(schema, name))


def sequence_query(sequences: Sequence[tuple[str, str]]) -> sql.Composed:
    """last_value and is_called of several sequences in one statement, in the given order."""
    parts = [
        sql.SQL("SELECT {i}::int, last_value::int8, is_called FROM {seq}").format(
            i=sql.Literal(i), seq=sql.Identifier(schema, name)
        )
        for i, (schema, name) in enumerate(sequences)
    ]
    return sql.SQL(" UNION ALL ").join(parts)


def sequence_behind(
    source_last: int, source_called: bool, target_last: int, target_called: bool, increment: int
) -> bool:
    """Whether the target would hand out a value the source already handed out."""
    step = increment or 1
    source_next = source_last + (step if source_called else 0)
    target_next = target_last + (step if target_called else 0)
    return target_next < source_next if step > 0 else target_next > source_next


# ---------------------------------------------------------------------------------------
# Reading one side
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Relation:
    schema: str
    name: str
    kind: str  # 'r' or 'm'
    populated: bool
    bytes: int
    columns: tuple[str, ...]  # in attnum order, generated columns included


_RELATIONS_SQL = f"""
SELECT n.nspname, c.relname, c.relkind::text, c.relispopulated,
       CASE WHEN c.relkind = 'r' OR c.relispopulated THEN pg_catalog.pg_relation_size(c.oid)
            ELSE 0 END,
       coalesce((SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
                   FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}')
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm')
   AND c.relpersistence IN ('p', 'u')
   AND {SYSTEM_SCHEMA_FILTER}
   AND {_not_member("pg_class", "c.oid")}
"""

_SEQUENCES_SQL = f"""
SELECT n.nspname, c.relname, s.seqincrement,
       pg_catalog.has_sequence_privilege(c.oid, 'SELECT')
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
 WHERE c.relkind = 'S'
   AND {SYSTEM_SCHEMA_FILTER}
   AND {_not_member("pg_class", "c.oid")}
 ORDER BY 1, 2
"""

_LARGE_OBJECT_CHUNK_SQL = """
SELECT m.oid::int8, pg_catalog.md5(c), pg_catalog.length(c)
  FROM pg_catalog.unnest(%s::pg_catalog.oid[]) AS m(oid),
       LATERAL pg_catalog.lo_get(m.oid, %s::int8, %s::int4) AS c
"""


def _begin(
    conn: psycopg.Connection[Any],
    snapshot: str | None,
    settings: Mapping[str, str] | None = None,
) -> None:
    """Open the read-only transaction every read of one side runs in.

    `settings` (transaction-local) come after READ_SETTINGS and may override them.
    """
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot is not None:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    _set_local(conn, {**READ_SETTINGS, **(settings or {})})


def _set_local(conn: psycopg.Connection[Any], settings: Mapping[str, str]) -> None:
    """Transaction-local settings, in one round trip."""
    if not settings:
        return
    calls = sql.SQL(", ").join(
        sql.SQL("pg_catalog.set_config({}, {}, true)").format(sql.Literal(k), sql.Literal(v))
        for k, v in settings.items()
    )
    conn.execute(sql.SQL("SELECT {}").format(calls))


@contextmanager
def _savepoint(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Keep the snapshot transaction usable when one statement fails."""
    conn.execute("SAVEPOINT pgferry_compare")
    try:
        yield
    except psycopg.Error:
        if not conn.closed:
            conn.execute("ROLLBACK TO SAVEPOINT pgferry_compare")
        raise
    conn.execute("RELEASE SAVEPOINT pgferry_compare")


def _error_text(exc: psycopg.Error) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    return f"{text} (SQLSTATE {state})" if state else text


class _Side:
    """One side of the comparison: a snapshot-holding connection and the workers' ones.

    Workers (threads) each get their own connection on first use, importing the snapshot
    the holder exported, so that every table of one side is read as of the same moment.
    """

    def __init__(
        self,
        info: ConnInfo,
        purpose: str = "compare",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.info = info
        self.purpose = f"pgferry {purpose} {info.role}"
        self.settings = dict(settings or {})  # transaction-local, on top of READ_SETTINGS
        self.holder = info.connect(self.purpose, settings=_SESSION_SETTINGS)
        self.snapshot: str | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._workers: list[psycopg.Connection[Any]] = []
        try:
            self._hold_snapshot()
        except BaseException:
            self.holder.close()
            raise

    def _hold_snapshot(self) -> None:
        info = self.info
        self.holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            row = self.holder.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
            self.snapshot = row[0] if row else None
        except psycopg.Error as exc:
            # e.g. a server that cannot export snapshots: each worker then reads its own.
            log.warning(
                "%s: cannot share one snapshot between workers (%s); each reads its own",
                info.role,
                _error_text(exc),
            )
            self.holder.execute("ROLLBACK")
            self.holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        _set_local(self.holder, READ_SETTINGS)

    # -- catalog, sequences and large objects: on the holder --------------------------
    def relations(self) -> dict[tuple[str, str], _Relation]:
        rows = self.holder.execute(_RELATIONS_SQL).fetchall()
        return {
            (r[0], r[1]): _Relation(r[0], r[1], r[2], bool(r[3]), int(r[4]), tuple(r[5]))
            for r in rows
        }

    def sequences(self) -> dict[tuple[str, str], tuple[int, bool, int] | str]:
        """(schema, name) -> (last_value, is_called, increment), or an error message."""
        listed = self.holder.execute(_SEQUENCES_SQL).fetchall()
        result: dict[tuple[str, str], tuple[int, bool, int] | str] = {}
        readable: list[tuple[str, str, int]] = []
        for schema, name, increment, can_read in listed:
            if can_read:
                readable.append((schema, name, int(increment)))
            else:
                result[(schema, name)] = f"no SELECT privilege on the {self.info.role}"
        for start in range(0, len(readable), SEQUENCE_BATCH):
            batch = readable[start : start + SEQUENCE_BATCH]
            try:
                rows = self.fetch(sequence_query([(s, n) for s, n, _ in batch]), None, len(batch))
            except psycopg.Error as exc:
                for schema, name, _ in batch:
                    result[(schema, name)] = f"{self.info.role}: {_error_text(exc)}"
                continue
            for i, last_value, is_called in rows:
                schema, name, increment = batch[i]
                result[(schema, name)] = (int(last_value), bool(is_called), increment)
        return result

    def large_objects(self) -> dict[int, str]:
        """OID -> digest of the content, read LARGE_OBJECT_CHUNK bytes at a time."""
        oids = [
            int(r[0])
            for r in self.holder.execute(
                "SELECT oid::int8 FROM pg_catalog.pg_largeobject_metadata ORDER BY oid"
            ).fetchall()
        ]
        digests: dict[int, str] = {}
        for start in range(0, len(oids), LARGE_OBJECT_BATCH):
            digests.update(self._large_object_batch(oids[start : start + LARGE_OBJECT_BATCH]))
        return digests

    def _large_object_batch(self, oids: list[int]) -> dict[int, str]:
        hashes = {oid: hashlib.md5(usedforsecurity=False) for oid in oids}
        pending, offset = list(oids), 0
        while pending:
            rows = self.holder.execute(
                _LARGE_OBJECT_CHUNK_SQL, (pending, offset, LARGE_OBJECT_CHUNK)
            ).fetchall()
            pending = []
            for oid, digest, length in rows:
                hashes[int(oid)].update(f"{digest}:{length};".encode())
                if length == LARGE_OBJECT_CHUNK:
                    pending.append(int(oid))
            offset += LARGE_OBJECT_CHUNK
        return {oid: h.hexdigest() for oid, h in hashes.items()}

    # -- table fingerprints: on the calling worker's connection ------------------------
    def fingerprint(
        self, query: sql.SQL | sql.Composed, params: Sequence[Any] | None = None
    ) -> tuple[int, str]:
        """(row count, hash) from a fingerprint-shaped query."""
        rows = self.fetch(query, params)
        return int(rows[0][0]), str(rows[0][1])

    def fetch(
        self, query: sql.SQL | sql.Composed, params: Sequence[Any] | None = None, relations: int = 1
    ) -> list[Any]:
        """All rows of a query reading `relations` relations, on the calling thread's
        connection (in the snapshot)."""
        conn = self._worker_conn()
        self._spend(conn, relations)
        with _savepoint(conn):
            return conn.execute(query, params).fetchall()

    def _spend(self, conn: psycopg.Connection[Any], relations: int) -> None:
        """Start a new transaction on the shared snapshot once LOCK_BUDGET is spent (not
        possible without a shared snapshot: a new one would read another moment)."""
        spent = getattr(self._local, "spent", 0)
        if self.snapshot is not None and spent and spent + relations > LOCK_BUDGET:
            conn.execute("COMMIT")
            _begin(conn, self.snapshot, self.settings)
            spent = 0
        self._local.spent = spent + relations

    def _worker_conn(self) -> psycopg.Connection[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.info.connect(self.purpose, settings=_SESSION_SETTINGS)
            with self._lock:
                self._workers.append(conn)
            _begin(conn, self.snapshot, self.settings)
            self._local.conn = conn
        return conn

    def cancel(self) -> None:
        """Interrupt the queries the workers are running (on Ctrl-C)."""
        with self._lock:
            conns = list(self._workers)
        for conn in conns:
            try:
                conn.cancel_safe()
            except (psycopg.Error, OSError):
                pass

    def close(self) -> None:
        with self._lock:
            conns, self._workers = self._workers + [self.holder], []
        for conn in conns:
            conn.close()


# ---------------------------------------------------------------------------------------
# compare_data
# ---------------------------------------------------------------------------------------

_Outcome = tuple[int, str] | str  # (rows, hash) or an error message


def compare_data(
    source: ConnInfo,
    target: ConnInfo,
    *,
    tables: list[tuple[str, str]] | None = None,
    jobs: int = 2,
    on_table: Callable[[TableResult], None] | None = None,
) -> DataComparison:
    """Compare every table's rows, every sequence's position and every large object.

    `tables` limits the table comparison to these (schema, name) pairs; `jobs` workers
    read each side (one connection per worker per side). `on_table` is called, in the
    calling thread, as each table's result is known.
    """
    t0 = time.monotonic()
    src = _Side(source)
    try:
        tgt = _Side(target)
    except BaseException:
        src.close()
        raise
    try:
        table_results = _compare_tables(src, tgt, tables, max(1, jobs), on_table)
        sequences = _compare_sequences(src.sequences(), tgt.sequences())
        large_objects = _compare_large_objects(src, tgt)
    finally:
        src.close()
        tgt.close()
    return DataComparison(
        tables=tuple(table_results),
        sequences=tuple(sequences),
        large_objects=large_objects,
        seconds=round(time.monotonic() - t0, 3),
    )


def _compare_tables(
    src: _Side,
    tgt: _Side,
    wanted: list[tuple[str, str]] | None,
    jobs: int,
    on_table: Callable[[TableResult], None] | None,
) -> list[TableResult]:
    src_rels, tgt_rels = src.relations(), tgt.relations()
    keys = set(wanted) if wanted is not None else src_rels.keys() | tgt_rels.keys()
    # Biggest first, so that the last table to finish is a small one.
    order = sorted(keys, key=lambda k: (-_size(k, src_rels, tgt_rels), k))
    pools = [
        ThreadPoolExecutor(jobs, thread_name_prefix="compare-source"),
        ThreadPoolExecutor(jobs, thread_name_prefix="compare-target"),
    ]
    pending: list[tuple[tuple[str, str], Future[_Outcome] | None, Future[_Outcome] | None]] = []
    results: list[TableResult] = []
    try:
        for key in order:
            s_rel, t_rel = src_rels.get(key), tgt_rels.get(key)
            columns = _common_columns(s_rel, t_rel)
            futures = [
                pool.submit(_fingerprint, side, rel, columns) if rel is not None else None
                for pool, side, rel in ((pools[0], src, s_rel), (pools[1], tgt, t_rel))
            ]
            pending.append((key, futures[0], futures[1]))
        for key, s_future, t_future in pending:
            result = _table_result(
                key,
                src_rels.get(key),
                tgt_rels.get(key),
                s_future.result() if s_future else None,
                t_future.result() if t_future else None,
            )
            results.append(result)
            if on_table is not None:
                on_table(result)
    except BaseException:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        src.cancel()
        tgt.cancel()
        raise
    finally:
        for pool in pools:
            pool.shutdown(wait=True)
    return sorted(results, key=lambda r: (r.schema, r.name))


def _size(key: tuple[str, str], *sides: dict[tuple[str, str], _Relation]) -> int:
    return max((side[key].bytes for side in sides if key in side), default=0)


def _common_columns(a: _Relation | None, b: _Relation | None) -> tuple[str, ...]:
    """Columns hashed: those both sides have, by name (physical order may differ)."""
    if a is not None and b is not None:
        return tuple(sorted(set(a.columns) & set(b.columns)))
    one = a or b
    return tuple(sorted(one.columns)) if one is not None else ()


def _fingerprint(side: _Side, rel: _Relation, columns: tuple[str, ...]) -> _Outcome:
    if rel.kind == "m" and not rel.populated:
        return "not populated"
    try:
        return side.fingerprint(fingerprint_query(rel.schema, rel.name, columns))
    except psycopg.Error as exc:
        return f"{side.info.role}: {_error_text(exc)}"


def _table_result(
    key: tuple[str, str],
    s_rel: _Relation | None,
    t_rel: _Relation | None,
    s_out: _Outcome | None,
    t_out: _Outcome | None,
) -> TableResult:
    schema, name = key
    rel = s_rel or t_rel
    if rel is None:
        return TableResult(schema, name, None, None, None, None, False, error="not found")
    kind = "materialized view" if rel.kind == "m" else "table"
    s_cols = set(s_rel.columns) if s_rel else set()
    t_cols = set(t_rel.columns) if t_rel else set()
    only_s = tuple(sorted(s_cols - t_cols)) if s_rel and t_rel else ()
    only_t = tuple(sorted(t_cols - s_cols)) if s_rel and t_rel else ()
    errors = [o for o in (s_out, t_out) if isinstance(o, str) and o != "not populated"]
    s_rows, s_hash = _split(s_out)
    t_rows, t_hash = _split(t_out)
    ok = (
        s_rel is not None
        and t_rel is not None
        and not errors
        and not only_s
        and not only_t
        and (s_rows, s_hash) == (t_rows, t_hash)
    )
    return TableResult(
        schema=schema,
        name=name,
        source_rows=s_rows,
        target_rows=t_rows,
        source_hash=s_hash,
        target_hash=t_hash,
        ok=ok,
        kind=kind,
        only_on_source_columns=only_s,
        only_on_target_columns=only_t,
        error="; ".join(errors) or None,
    )


def _split(outcome: _Outcome | None) -> tuple[int | None, str | None]:
    if outcome is None:
        return None, None
    if isinstance(outcome, str):
        return None, outcome if outcome == "not populated" else None
    return outcome


def _compare_sequences(
    source: dict[tuple[str, str], tuple[int, bool, int] | str],
    target: dict[tuple[str, str], tuple[int, bool, int] | str],
) -> list[SequenceResult]:
    results = []
    for key in sorted(source.keys() | target.keys()):
        s, t = source.get(key), target.get(key)
        errors = [v for v in (s, t) if isinstance(v, str)]
        s_val = s if isinstance(s, tuple) else None
        t_val = t if isinstance(t, tuple) else None
        ok = (
            not errors
            and s_val is not None
            and t_val is not None
            and not sequence_behind(s_val[0], s_val[1], t_val[0], t_val[1], s_val[2])
        )
        results.append(
            SequenceResult(
                schema=key[0],
                name=key[1],
                source_last_value=s_val[0] if s_val else None,
                source_is_called=s_val[1] if s_val else None,
                target_last_value=t_val[0] if t_val else None,
                target_is_called=t_val[1] if t_val else None,
                ok=ok,
                error="; ".join(errors) or None,
            )
        )
    return results


def _compare_large_objects(src: _Side, tgt: _Side) -> LargeObjectResult:
    digests: list[dict[int, str]] = []
    for side in (src, tgt):
        try:
            with _savepoint(side.holder):
                digests.append(side.large_objects())
        except psycopg.Error as exc:
            return LargeObjectResult(0, 0, error=f"{side.info.role}: {_error_text(exc)}")
    s, t = digests
    return LargeObjectResult(
        source_count=len(s),
        target_count=len(t),
        missing_on_target=tuple(sorted(s.keys() - t.keys())),
        only_on_target=tuple(sorted(t.keys() - s.keys())),
        different=tuple(sorted(oid for oid in s.keys() & t.keys() if s[oid] != t[oid])),
    )


# ---------------------------------------------------------------------------------------
# compare_schema
# ---------------------------------------------------------------------------------------

_SINGULAR = {
    "schemas": "schema",
    "extensions": "extension",
    "event triggers": "event trigger",
    "types": "type",
    "tables": "table",
    "columns": "column",
    "indexes": "index",
    "constraints": "constraint",
    "sequences": "sequence",
    "views": "view",
    "materialized views": "materialized view",
    "functions": "function",
    "triggers": "trigger",
    "policies": "policy",
}

_NS = SYSTEM_SCHEMA_FILTER
_REL_MEMBER = _not_member("pg_class", "c.oid")
_NO_REFS = "'{}'::text[]"


def _relation_refs(how: str, condition: str) -> str:
    """SQL: the (how, schema, relation) triples of the relations `rc` matching `condition`."""
    return f"""coalesce((
        SELECT pg_catalog.array_agg(DISTINCT ARRAY['{how}', rn.nspname::text, rc.relname::text])
          FROM pg_catalog.pg_class rc
          JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
         WHERE {condition}), {_NO_REFS})"""


_OWNER_TABLE = """rc.oid IN (
    SELECT d.refobjid FROM pg_catalog.pg_depend d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.deptype IN ('a', 'i'))"""

_VIEW_USES = """rc.oid IN (
    SELECT d.refobjid FROM pg_catalog.pg_rewrite rw
      JOIN pg_catalog.pg_depend d
        ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = rw.oid
       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     WHERE rw.ev_class = c.oid AND d.refobjid <> c.oid)"""

# Each query returns (schema, relation, refs, name parts, definition): the namespace and
# the relation the filters judge the object by, the relations it depends on (triples: how,
# schema, relation), its name parts (joined and quoted in Python, so that both sides name
# objects alike whatever their server version quotes) and its definition as the server
# prints it.
SCHEMA_QUERIES: dict[str, str] = {
    "schemas": f"""
        SELECT n.nspname, NULL, {_NO_REFS}, ARRAY[n.nspname::text], ''
          FROM pg_catalog.pg_namespace n
         WHERE {_NS} AND {_not_member("pg_namespace", "n.oid")}""",
    "extensions": f"""
        SELECT n.nspname, NULL, {_NO_REFS}, ARRAY[e.extname::text], 'version ' || e.extversion
          FROM pg_catalog.pg_extension e
          JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace""",
    "event triggers": f"""
        SELECT NULL, NULL, {_NO_REFS}, ARRAY[e.evtname::text],
               'on ' || e.evtevent || ' execute ' || e.evtfoid::pg_catalog.regprocedure::text
               || coalesce(' when tag in (' || pg_catalog.array_to_string(e.evttags, ', ')
                           || ')', '')
               || CASE e.evtenabled WHEN 'D' THEN ' (disabled)' WHEN 'R' THEN ' (replica)'
                                    WHEN 'A' THEN ' (always)' ELSE '' END
          FROM pg_catalog.pg_event_trigger e
         WHERE {_not_member("pg_event_trigger", "e.oid")}""",
    "types": f"""
        SELECT n.nspname, NULL, {_NO_REFS}, ARRAY[n.nspname::text, t.typname::text],
               CASE t.typtype
                 WHEN 'e' THEN 'enum (' || (SELECT pg_catalog.string_agg(
                          pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                        FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid) || ')'
                 WHEN 'd' THEN 'domain over '
                          || pg_catalog.format_type(t.typbasetype, t.typtypmod)
                          || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                 WHEN 'c' THEN 'composite'
                 WHEN 'r' THEN 'range'
                 WHEN 'm' THEN 'multirange'
                 ELSE 'base type' END
          FROM pg_catalog.pg_type t
          JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
          LEFT JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
         WHERE {_NS}
           AND (t.typrelid = 0 OR c.relkind = 'c')
           AND NOT (t.typelem <> 0 AND t.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc)
           AND t.typtype <> 'p'
           AND {_not_member("pg_type", "t.oid")}""",  # noqa: E501
    "tables": f"""
        SELECT n.nspname, c.relname,
               coalesce((SELECT pg_catalog.array_agg(ARRAY[
                                  CASE WHEN c.relispartition THEN 'partition of'
                                       ELSE 'inherits' END,
                                  pn.nspname::text, pc.relname::text] ORDER BY i.inhseqno)
                           FROM pg_catalog.pg_inherits i
                           JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent
                           JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
                          WHERE i.inhrelid = c.oid), {_NO_REFS}),
               ARRAY[n.nspname::text, c.relname::text],
               CASE c.relkind WHEN 'p' THEN 'partitioned table'
                              WHEN 'f' THEN 'foreign table' ELSE 'table' END
               || CASE c.relpersistence WHEN 'u' THEN ' (unlogged)' ELSE '' END
               || CASE WHEN c.relispartition
                       THEN ' partition of ' || (SELECT i.inhparent::pg_catalog.regclass::text
                              FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)
                            || ' ' || pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                       ELSE '' END
               || CASE WHEN c.relrowsecurity THEN ' with row level security' ELSE '' END
               || CASE WHEN c.relforcerowsecurity THEN ' (forced)' ELSE '' END
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'f') AND c.relpersistence IN ('p', 'u')
           AND {_NS} AND {_REL_MEMBER}""",
    "columns": f"""
        SELECT n.nspname, c.relname, {_NO_REFS},
               ARRAY[n.nspname::text, c.relname::text, a.attname::text],
               pg_catalog.format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attcollation <> t.typcollation
                       THEN ' COLLATE ' || co.collname::text ELSE '' END
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
               || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                     WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY'
                                     ELSE '' END
               || CASE WHEN a.attgenerated = 's'
                       THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                            || ') STORED'
                       WHEN d.adbin IS NOT NULL
                       THEN ' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                       ELSE '' END
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
          LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
           AND {_NS} AND {_REL_MEMBER}""",
    "indexes": f"""
        SELECT n.nspname, c.relname, {_NO_REFS}, ARRAY[n.nspname::text, ci.relname::text],
               pg_catalog.pg_get_indexdef(i.indexrelid)
               || CASE WHEN NOT i.indisvalid THEN ' (invalid)' ELSE '' END
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
          JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = ci.relnamespace
         WHERE {_NS} AND {_REL_MEMBER}""",
    "constraints": f"""
        SELECT n.nspname, c.relname,
               pg_catalog.array_cat(
                   {_relation_refs("references", "rc.oid = con.confrelid")},
                   {_relation_refs("index", "rc.oid = con.conindid")}),
               ARRAY[n.nspname::text, coalesce(c.relname, t.typname)::text, con.conname::text],
               pg_catalog.pg_get_constraintdef(con.oid)
               || CASE WHEN NOT con.convalidated THEN ' (not validated)' ELSE '' END
          FROM pg_catalog.pg_constraint con
          JOIN pg_catalog.pg_namespace n ON n.oid = con.connamespace
          LEFT JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
          LEFT JOIN pg_catalog.pg_type t ON t.oid = con.contypid
         WHERE (c.oid IS NOT NULL OR t.oid IS NOT NULL)
           AND {_NS}
           AND (c.oid IS NULL OR {_REL_MEMBER})
           AND (t.oid IS NULL OR {_not_member("pg_type", "t.oid")})""",
    "sequences": f"""
        SELECT n.nspname, NULL, {_relation_refs("owned by", _OWNER_TABLE)},
               ARRAY[n.nspname::text, c.relname::text],
               pg_catalog.format_type(s.seqtypid, NULL)
               || ' increment ' || s.seqincrement || ' min ' || s.seqmin
               || ' max ' || s.seqmax || ' start ' || s.seqstart || ' cache ' || s.seqcache
               || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
         WHERE c.relkind = 'S' AND {_NS} AND {_REL_MEMBER}""",
    "views": f"""
        SELECT n.nspname, c.relname, {_relation_refs("uses", _VIEW_USES)},
               ARRAY[n.nspname::text, c.relname::text], pg_catalog.pg_get_viewdef(c.oid)
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'v' AND {_NS} AND {_REL_MEMBER}""",
    "materialized views": f"""
        SELECT n.nspname, c.relname, {_relation_refs("uses", _VIEW_USES)},
               ARRAY[n.nspname::text, c.relname::text], pg_catalog.pg_get_viewdef(c.oid)
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'm' AND {_NS} AND {_REL_MEMBER}""",
    "functions": f"""
        SELECT n.nspname, NULL, {_NO_REFS},
               ARRAY[n.nspname::text, p.proname::text,
                     pg_catalog.pg_get_function_identity_arguments(p.oid)],
               CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                              WHEN 'w' THEN 'window function' ELSE 'function' END
               || coalesce(' returns ' || pg_catalog.pg_get_function_result(p.oid), '')
               || ' language ' || l.lanname
               || ' body md5 ' || pg_catalog.md5(coalesce(p.prosrc, '') || coalesce(p.probin, ''))
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_catalog.pg_language l ON l.oid = p.prolang
         WHERE {_NS} AND {_not_member("pg_proc", "p.oid")}""",
    "triggers": f"""
        SELECT n.nspname, c.relname, {_NO_REFS},
               ARRAY[n.nspname::text, c.relname::text, tg.tgname::text],
               pg_catalog.pg_get_triggerdef(tg.oid)
               || CASE tg.tgenabled WHEN 'D' THEN ' (disabled)' WHEN 'R' THEN ' (replica)'
                                    WHEN 'A' THEN ' (always)' ELSE '' END
          FROM pg_catalog.pg_trigger tg
          JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT tg.tgisinternal AND {_NS} AND {_REL_MEMBER}""",
    "policies": f"""
        SELECT n.nspname, c.relname, {_NO_REFS},
               ARRAY[n.nspname::text, c.relname::text, pol.polname::text],
               CASE WHEN pol.polpermissive THEN 'permissive' ELSE 'restrictive' END
               || ' for ' || CASE pol.polcmd WHEN 'r' THEN 'select' WHEN 'a' THEN 'insert'
                                             WHEN 'w' THEN 'update' WHEN 'd' THEN 'delete'
                                             ELSE 'all' END
               || ' to ' || CASE WHEN pol.polroles = '{{0}}' THEN 'public'
                                 ELSE (SELECT pg_catalog.string_agg(
                                                  pg_catalog.quote_ident(r.rolname), ', '
                                                  ORDER BY r.rolname)
                                         FROM pg_catalog.pg_roles r
                                        WHERE r.oid = ANY (pol.polroles)) END
               || coalesce(' using (' || pg_catalog.pg_get_expr(pol.polqual, pol.polrelid)
                           || ')', '')
               || coalesce(' with check ('
                           || pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid) || ')', '')
          FROM pg_catalog.pg_policy pol
          JOIN pg_catalog.pg_class c ON c.oid = pol.polrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE {_NS} AND {_REL_MEMBER}""",
}

# Comments and owners: the objects are rows x(classid, objid, subid, value). Their scope
# is read from the catalogs (pg_identify_object quotes names): the relation they are or
# belong to, its namespace (else the object's own), and the extension or event trigger.
_DECORATED = """
  LEFT JOIN LATERAL (
        SELECT n.nspname, c.relname
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = CASE x.classid
                 WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN x.objid
                 WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass
                 THEN (SELECT k.conrelid FROM pg_catalog.pg_constraint k WHERE k.oid = x.objid)
                 WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass
                 THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = x.objid)
                 WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass
                 THEN (SELECT p.polrelid FROM pg_catalog.pg_policy p WHERE p.oid = x.objid)
                 END) r ON true
  CROSS JOIN LATERAL (SELECT coalesce(r.nspname, CASE x.classid
                 WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass
                 THEN (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = x.objid)
                 WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass
                 THEN (SELECT n.nspname FROM pg_catalog.pg_proc p
                         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                        WHERE p.oid = x.objid)
                 WHEN 'pg_catalog.pg_type'::pg_catalog.regclass
                 THEN (SELECT n.nspname FROM pg_catalog.pg_type t
                         JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                        WHERE t.oid = x.objid)
                 WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass
                 THEN (SELECT n.nspname FROM pg_catalog.pg_constraint k
                         JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace
                        WHERE k.oid = x.objid) END) AS nspname) ns
  CROSS JOIN LATERAL pg_catalog.pg_identify_object(x.classid, x.objid, x.subid) o
  CROSS JOIN LATERAL pg_catalog.pg_identify_object_as_address(x.classid, x.objid, x.subid) a
 WHERE x.objid >= 16384
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                    WHERE e.classid = x.classid AND e.objid = x.objid AND e.deptype = 'e')
   AND coalesce(ns.nspname, '') NOT IN ('pg_catalog', 'information_schema', 'pgferry')
   AND coalesce(ns.nspname, '') !~ '^pg_(toast|temp_)'"""

_DECORATED_COLUMNS = """ns.nspname, r.relname,
       CASE WHEN o.type IN ('extension', 'event trigger')
            THEN ARRAY[ARRAY[o.type, '', a.object_names[1]]] ELSE '{}'::text[] END,
       ARRAY[o.type, o.identity]"""

# Not in `compare schema`, and never more than a warning in `verify`: --no-comments and
# --no-owner migrations leave them out on purpose. Same row shape as SCHEMA_QUERIES; the
# name parts are the server's (object type, identity).
DECORATION_QUERIES: dict[str, str] = {
    "comments": f"""
        SELECT {_DECORATED_COLUMNS}, x.value
          FROM (SELECT d.classoid AS classid, d.objoid AS objid, d.objsubid AS subid,
                       d.description AS value
                  FROM pg_catalog.pg_description d
                 WHERE d.classoid <> 'pg_catalog.pg_largeobject'::pg_catalog.regclass) x
        {_DECORATED}""",
    "owners": f"""
        SELECT n.nspname, c.relname, {_NO_REFS},
               ARRAY[CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                                    WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
                                    ELSE 'table' END,
                     pg_catalog.quote_ident(n.nspname) || '.'
                     || pg_catalog.quote_ident(c.relname)],
               pg_catalog.pg_get_userbyid(c.relowner)
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND {_NS} AND {_REL_MEMBER}
        UNION ALL
        SELECT n.nspname, NULL, {_NO_REFS},
               ARRAY[CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                                    ELSE 'function' END,
                     pg_catalog.quote_ident(n.nspname) || '.'
                     || pg_catalog.quote_ident(p.proname) || '('
                     || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')'],
               pg_catalog.pg_get_userbyid(p.proowner)
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE {_NS} AND {_not_member("pg_proc", "p.oid")}
        UNION ALL
        SELECT n.nspname, NULL, {_NO_REFS}, ARRAY['schema', pg_catalog.quote_ident(n.nspname)],
               pg_catalog.pg_get_userbyid(n.nspowner)
          FROM pg_catalog.pg_namespace n
         WHERE {_NS} AND {_not_member("pg_namespace", "n.oid")}
        UNION ALL
        SELECT n.nspname, NULL, {_NO_REFS},
               ARRAY['type', pg_catalog.format_type(t.oid, NULL)],
               pg_catalog.pg_get_userbyid(t.typowner)
          FROM pg_catalog.pg_type t
          JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
          LEFT JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
         WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND c.relkind = 'c'))
           AND {_NS} AND {_not_member("pg_type", "t.oid")}""",
}

# Relations the include-only-table filter selects among (the others it never excludes).
TABLE_LIKE_KINDS = ("tables", "materialized views")


@dataclass(frozen=True)
class SchemaObject:
    """One catalog object as `compare_schema` sees it, with what the filters judge it by."""

    kind: str  # a key of SCHEMA_QUERIES
    parts: tuple[str, ...]  # name parts: (schema, table, column), (schema, name, args), ...
    definition: str
    schema: str | None = None  # namespace (None: extensions' and event triggers' own rules)
    relation: str | None = None  # the table or view it is or belongs to, in `schema`
    refs: tuple[tuple[str, str, str], ...] = ()  # (how, schema, relation) it depends on

    @property
    def name(self) -> str:
        """The name shown to users (quoted where needed)."""
        if self.kind == "functions":
            return f"{display_name(*self.parts[:2])}({self.parts[2]})"
        if self.kind in DECORATION_QUERIES:  # (object type, identity), quoted by the server
            return " ".join(self.parts)
        return display_name(*self.parts)


def read_schema_objects(
    conn: psycopg.Connection[Any], queries: Mapping[str, str] = SCHEMA_QUERIES
) -> dict[str, list[SchemaObject]]:
    """Every object type's objects on one side (run inside a `_begin` transaction)."""
    objects: dict[str, list[SchemaObject]] = {}
    for kind, query in queries.items():
        objects[kind] = [
            SchemaObject(
                kind=kind,
                parts=tuple(parts),
                definition=definition or "",
                schema=schema,
                relation=relation,
                refs=tuple((str(r[0]), str(r[1]), str(r[2])) for r in refs or ()),
            )
            for schema, relation, refs, parts, definition in conn.execute(query).fetchall()
        ]
    return objects


class FilterScope:
    """Which objects and which tables' rows the filters keep, judged by name.

    Mirrors the migration's rules (pgferry.catalog.scope) on catalog names, so that the
    same decision applies to both sides: excluded schemas and tables, include-only lists
    (with the partitions and parents of an included table), excluded indexes and the
    constraints they back, extensions and event triggers; and what depends on an excluded
    relation (views using it, foreign keys referencing it, sequences it owns). Objects that
    belong to extensions never reach here: the queries leave them out.
    """

    def __init__(self, filters: Filters, objects: Iterable[SchemaObject] = ()) -> None:
        self.filters = filters
        # The filters' sets, computed once (the Filters properties build them per call).
        self._exclude_schemas = set(filters.exclude_schema)
        self._only_schemas = set(filters.include_only_schema)
        self._exclude_tables = {(q.schema, q.name) for q in filters.exclude_table}
        self._exclude_indexes = {(q.schema, q.name) for q in filters.exclude_index}
        self._only_extensions = set(filters.include_only_extension)
        self._exclude_extensions = set(filters.exclude_extension)
        self._exclude_event_triggers = set(filters.exclude_event_trigger)
        objs = list(objects)
        self._table_like = {(o.parts[0], o.parts[1]) for o in objs if o.kind in TABLE_LIKE_KINDS}
        self._ext_schemas = {
            o.schema for o in objs if o.kind == "extensions" and self.keeps_extension(o.parts[0])
        }
        parents: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        children: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        partitions: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        for o in objs:
            if o.kind != "tables":
                continue
            key = (o.parts[0], o.parts[1])
            for how, schema, name in o.refs:
                parents[key].add((schema, name))
                children[(schema, name)].add(key)
                if how == "partition of":
                    partitions[(schema, name)].add(key)
        self._wanted: set[tuple[str, str]] | None = None
        if filters.include_only_table:
            seeds = {(q.schema, q.name) for q in filters.include_only_table}
            self._wanted = seeds | _reach(seeds, children) | _reach(seeds, parents)
        no_data = {(q.schema, q.name) for q in filters.exclude_table_data}
        self._no_data = no_data | _reach(no_data, partitions)
        self._dependent = self._dependent_views(objs)

    # -- names ----------------------------------------------------------------------------
    def schema_excluded(self, schema: str | None) -> bool:
        if schema is None:
            return False
        if schema in self._exclude_schemas:
            return True
        return bool(self._only_schemas) and schema not in self._only_schemas

    def keeps_extension(self, name: str) -> bool:
        if self._only_extensions:
            return name in self._only_extensions
        return name not in self._exclude_extensions

    def _table_out(self, key: tuple[str, str]) -> bool:
        """Excluded by the filters themselves (not through a dependency)."""
        if self.schema_excluded(key[0]):
            return True
        if key in self._exclude_tables:
            return True
        return self._wanted is not None and key in self._table_like and key not in self._wanted

    def keeps_relation(self, schema: str, name: str) -> bool:
        """A table, view, materialized view or sequence (by name) is in scope."""
        key = (schema, name)
        return not self._table_out(key) and key not in self._dependent

    def keeps_index(self, schema: str, name: str) -> bool:
        return (schema, name) not in self._exclude_indexes

    def copies_data(self, schema: str, name: str) -> bool:
        """The table is in scope and its rows are copied (not [exclude-table-data])."""
        return self.keeps_relation(schema, name) and (schema, name) not in self._no_data

    def _dependent_views(self, objs: list[SchemaObject]) -> set[tuple[str, str]]:
        """Views and materialized views that use an excluded relation, at any depth."""
        views = [o for o in objs if o.kind in ("views", "materialized views")]
        out: set[tuple[str, str]] = set()
        changed = True
        while changed:
            changed = False
            for v in views:
                key = (v.parts[0], v.parts[1])
                if key in out:
                    continue
                if any(self._table_out((s, r)) or (s, r) in out for _, s, r in v.refs):
                    out.add(key)
                    changed = True
        return out

    # -- objects --------------------------------------------------------------------------
    def keeps(self, obj: SchemaObject) -> bool:
        """Whether the migration would have created this object on the target."""
        kind = obj.kind
        if kind == "extensions":
            return self.keeps_extension(obj.parts[0])
        if kind == "event triggers":
            return obj.parts[0] not in self._exclude_event_triggers
        if kind == "schemas":
            return not self.schema_excluded(obj.parts[0]) or obj.parts[0] in self._ext_schemas
        if self.schema_excluded(obj.schema):
            return False
        if kind in ("tables", "views", "materialized views"):
            return self.keeps_relation(obj.parts[0], obj.parts[1])
        if (
            obj.relation is not None
            and obj.schema is not None
            and not self.keeps_relation(obj.schema, obj.relation)
        ):
            return False
        if kind == "indexes" and not self.keeps_index(obj.parts[0], obj.parts[1]):
            return False
        for how, schema, name in obj.refs:
            if how == "extension" and not self.keeps_extension(name):
                return False
            if how == "event trigger" and name in self._exclude_event_triggers:
                return False
            if how == "index" and not self.keeps_index(schema, name):
                return False
            if how in ("references", "owned by") and not self.keeps_relation(schema, name):
                return False
        return True


def _reach(
    seeds: set[tuple[str, str]], edges: dict[tuple[str, str], set[tuple[str, str]]]
) -> set[tuple[str, str]]:
    """Everything reachable from the seeds along the edges (not the seeds themselves)."""
    out: set[tuple[str, str]] = set()
    todo = deque(seeds)
    while todo:
        for nxt in edges.get(todo.popleft(), ()):
            if nxt not in out and nxt not in seeds:
                out.add(nxt)
                todo.append(nxt)
    return out


def scoped_definitions(
    objects: dict[str, list[SchemaObject]], scope: FilterScope
) -> dict[str, dict[str, str]]:
    """Object type -> {display name: definition} of the objects the filters keep."""
    return {
        kind: {o.name: o.definition for o in found if scope.keeps(o)}
        for kind, found in objects.items()
    }


def compare_schema(
    source: ConnInfo, target: ConnInfo, filters: Filters | None = None
) -> SchemaComparison:
    """Compare the sets of objects of each type, and their definitions, on both sides.

    With `filters`, only what the migration would have created is compared.
    """
    t0 = time.monotonic()
    src_objects = _schema_objects(source)
    tgt_objects = _schema_objects(target)
    scope = FilterScope(
        filters or no_filters(),
        [o for side in (src_objects, tgt_objects) for objs in side.values() for o in objs],
    )
    src, tgt = scoped_definitions(src_objects, scope), scoped_definitions(tgt_objects, scope)
    kinds = tuple(diff_objects(kind, src[kind], tgt[kind]) for kind in SCHEMA_QUERIES)
    return SchemaComparison(kinds=kinds, seconds=round(time.monotonic() - t0, 3))


def _schema_objects(info: ConnInfo) -> dict[str, list[SchemaObject]]:
    """One side's objects, read on one snapshot."""
    conn = info.connect(f"pgferry compare {info.role}")
    try:
        _begin(conn, None)
        objects = read_schema_objects(conn)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return objects


def diff_objects(kind: str, source: dict[str, str], target: dict[str, str]) -> ObjectKindComparison:
    """Names only on one side, and names whose definitions differ."""
    return ObjectKindComparison(
        kind=kind,
        source_count=len(source),
        target_count=len(target),
        only_on_source=tuple(sorted(source.keys() - target.keys())),
        only_on_target=tuple(sorted(target.keys() - source.keys())),
        different=tuple(
            (name, source[name], target[name])
            for name in sorted(source.keys() & target.keys())
            if source[name] != target[name]
        ),
    )
