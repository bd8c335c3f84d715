"""The state store: one SQLite file in DIR, the spine of every run.

The migration process is the only writer (one connection shared by its threads under a
lock); `status`, `list progress`, `stream sentinel` and friends open it from other
processes. WAL mode lets those readers see progress while the run writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pgferry.errors import InputError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    command     TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    status      TEXT NOT NULL,
    error       TEXT
);
CREATE TABLE IF NOT EXISTS phases (
    name        TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    status      TEXT NOT NULL,
    started_at  REAL,
    finished_at REAL,
    duration    REAL,
    cumulative  REAL,
    bytes       INTEGER,
    concurrency INTEGER,
    detail      TEXT
);
CREATE TABLE IF NOT EXISTS tables (
    oid          INTEGER PRIMARY KEY,
    nspname      TEXT NOT NULL,
    relname      TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    reltuples    REAL NOT NULL,
    parts        INTEGER NOT NULL,
    copy_data    INTEGER NOT NULL,
    truncated    INTEGER NOT NULL DEFAULT 0,
    snapshot     TEXT,
    snapshot_lsn TEXT,
    status       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS units (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    table_oid   INTEGER NOT NULL DEFAULT 0,
    part        INTEGER NOT NULL DEFAULT 0,
    obj_oid     INTEGER NOT NULL DEFAULT 0,
    label       TEXT NOT NULL,
    status      TEXT NOT NULL,
    pid         INTEGER,
    started_at  REAL,
    finished_at REAL,
    duration    REAL,
    bytes       INTEGER NOT NULL DEFAULT 0,
    rows        INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    detail      TEXT,
    UNIQUE (kind, table_oid, part, obj_oid)
);
CREATE INDEX IF NOT EXISTS units_by_kind ON units (kind, status);
CREATE TABLE IF NOT EXISTS sentinel (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    startpos   TEXT,
    endpos     TEXT,
    apply      INTEGER NOT NULL DEFAULT 0,
    write_lsn  TEXT,
    flush_lsn  TEXT,
    replay_lsn TEXT,
    updated_at REAL
);
"""


class Meta(StrEnum):
    """The keys of the state store's `meta` table: every one pgferry writes."""

    STATUS = "status"  # the run's state: running, done, failed...
    SOURCE = "source"  # the source's connection, without its password
    TARGET = "target"  # the target's connection, without its password
    OPTIONS = "options"  # the clone options that shape the plan (JSON)
    FILTERS = "filters"  # the clone's filters (JSON)
    FOLLOW_FILTERS = "follow_filters"  # the filters of `pgferry follow` alone (JSON)
    CATALOG = "catalog"  # the source catalog read at the start (JSON)
    PLAN_DONE = "plan_done"  # '1' once the plan (tables, parts, units) is stored
    STARTED_AT = "started_at"  # when the migration started (Unix time)
    CDC_SLOT = "cdc_slot"  # the replication slot's name
    CDC_ORIGIN = "cdc_origin"  # the target's replication origin's name
    CDC_PLUGIN = "cdc_plugin"  # the logical decoding plugin
    CDC_PROTOCOL = "cdc_protocol"  # what the receiver asked the plugin for, in words
    CDC_CREATED = "cdc_created"  # '1' once slot and origin exist and are recorded
    CDC_NUMERIC_AS_STRING = "cdc_numeric_as_string"  # wal2json's numeric-as-string
    CDC_GROUP_TXNS = "cdc_group_txns"  # --group-txns of the run
    CDC_APPLIED_TXNS = "cdc_applied_txns"  # how many source transactions apply has committed
    CDC_DONE = "cdc_done"  # '1' once the cutover point is reached
    APPLY_HOLD = "apply_hold"  # '1' while apply is held (stream sentinel set prefetch)
    ENDPOS_KIND = "endpos_kind"  # 'current': endpos was the source's position
    DEFERRED_FOREIGN_KEYS = "deferred_foreign_keys"  # added NOT VALID, validated at cutover
    FOREIGN_KEYS_VALIDATED = "foreign_keys_validated"  # '1' once those are validated
    CUTOVER = "cutover"  # pgferry cutover's steps done so far, and its outcome (JSON)


@dataclass(frozen=True)
class Sentinel:
    """The CDC sentinel: the positions receive and apply have reached, and what they may
    do (`stream sentinel` shows and sets it)."""

    startpos: str | None
    endpos: str | None
    apply: bool
    write_lsn: str | None
    flush_lsn: str | None
    replay_lsn: str | None
    updated_at: float | None

    def to_json(self) -> dict[str, Any]:
        """Field by field, for `--json` outputs."""
        return {
            "startpos": self.startpos,
            "endpos": self.endpos,
            "apply": self.apply,
            "write_lsn": self.write_lsn,
            "flush_lsn": self.flush_lsn,
            "replay_lsn": self.replay_lsn,
            "updated_at": self.updated_at,
        }


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class UnitKind(StrEnum):
    COPY = "copy"  # one table, or one part of a split table
    INDEX = "index"  # CREATE INDEX (also the unique index behind a PK/UNIQUE)
    CONSTRAINT = "constraint"  # ALTER TABLE ADD CONSTRAINT (USING INDEX, EXCLUDE)
    VACUUM = "vacuum"
    SEQUENCE = "sequence"
    BLOBS = "blobs"  # a batch of large objects


@dataclass(frozen=True)
class UnitRow:
    """One unit of work as stored."""

    id: int
    kind: UnitKind
    table_oid: int
    part: int
    obj_oid: int
    label: str
    status: Status
    pid: int | None
    started_at: float | None
    finished_at: float | None
    duration: float | None
    bytes: int
    rows: int | None
    attempts: int
    error: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class NewUnit:
    kind: UnitKind
    label: str
    table_oid: int = 0
    part: int = 0
    obj_oid: int = 0
    detail: dict[str, Any] | None = None
    status: Status = Status.PENDING


@dataclass(frozen=True)
class PhaseRow:
    name: str
    seq: int
    status: Status
    started_at: float | None
    finished_at: float | None
    duration: float | None
    cumulative: float | None
    bytes: int | None
    concurrency: int | None
    detail: str | None


@dataclass(frozen=True)
class RunRow:
    """One run of a command in DIR (clone, follow...), as begun and ended."""

    id: int
    command: str
    pid: int
    started_at: float
    finished_at: float | None
    status: str
    error: str | None


@dataclass(frozen=True)
class TableRow:
    oid: int
    nspname: str
    relname: str
    bytes: int
    reltuples: float
    parts: int
    copy_data: bool
    truncated: bool
    snapshot: str | None
    snapshot_lsn: str | None
    status: Status


class StateStore:
    """Typed access to DIR/state.db."""

    FILENAME = "state.db"

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        if readonly:
            if not path.exists():
                raise InputError(
                    f"no pgferry state in {path.parent}",
                    fix="check --dir: it must be the directory of a clone or follow run",
                )
            uri = f"file:{path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        else:
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
            path.chmod(0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._init_version()
        self._db.row_factory = sqlite3.Row

    @classmethod
    def open_dir(cls, workdir: Path, *, readonly: bool = False) -> StateStore:
        return cls(workdir / cls.FILENAME, readonly=readonly)

    def _init_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._db.commit()
        elif int(row[0]) != SCHEMA_VERSION:
            raise InputError(
                f"{self.path} was written by another pgferry version (state schema {row[0]}, "
                f"this one reads {SCHEMA_VERSION})",
                fix="finish it with the pgferry that started it, or start over with --restart",
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def reset_keeping_endpos(self) -> None:
        """Forget a previous attempt (it wrote nothing to the target) in one transaction,
        except an end position already given: a stop-cdc running at the same moment either
        lands before this (and is kept) or after it (on the fresh state), never in a
        store about to be deleted."""
        with self._write() as db:
            for table in ("runs", "phases", "tables", "units"):
                db.execute(f"DELETE FROM {table}")
            db.execute(
                "DELETE FROM meta WHERE key NOT IN ('schema_version', ?)", (Meta.ENDPOS_KIND,)
            )
            db.execute(
                "UPDATE sentinel SET startpos = NULL, apply = 0, write_lsn = NULL, "
                "flush_lsn = NULL, replay_lsn = NULL, updated_at = ?",
                (time.time(),),
            )

    # -- meta ---------------------------------------------------------------------------
    def get_meta(self, key: Meta, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def get_json(self, key: Meta) -> Any:
        value = self.get_meta(key)
        return None if value is None else json.loads(value)

    def set_meta(self, key: Meta, value: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def set_json(self, key: Meta, value: Any) -> None:
        self.set_meta(key, json.dumps(value, sort_keys=True))

    def has_plan(self) -> bool:
        return self.get_meta(Meta.PLAN_DONE) == "1"

    # -- runs ---------------------------------------------------------------------------
    def begin_run(self, command: str, pid: int) -> int:
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO runs(command, pid, started_at, status) VALUES (?, ?, ?, 'running')",
                (command, pid, time.time()),
            )
            return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, status: str, error: str | None = None) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, error = ? WHERE id = ?",
                (time.time(), status, error, run_id),
            )

    def runs(self) -> list[RunRow]:
        """Every run in DIR, oldest first."""
        rows = self._query(
            "SELECT id, command, pid, started_at, finished_at, status, error FROM runs ORDER BY id"
        )
        return [RunRow(*r) for r in rows]

    # -- phases -------------------------------------------------------------------------
    def define_phases(self, names: Iterable[str]) -> None:
        with self._write() as db:
            for seq, name in enumerate(names, start=1):
                db.execute(
                    "INSERT INTO phases(name, seq, status) VALUES (?, ?, 'pending') "
                    "ON CONFLICT(name) DO NOTHING",
                    (name, seq),
                )

    def phase(self, name: str) -> PhaseRow | None:
        rows = self._query("SELECT * FROM phases WHERE name = ?", (name,))
        return _phase(rows[0]) if rows else None

    def phases(self) -> list[PhaseRow]:
        return [_phase(r) for r in self._query("SELECT * FROM phases ORDER BY seq")]

    def phase_start(self, name: str, concurrency: int | None = None) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE phases SET status = 'running', started_at = coalesce(started_at, ?), "
                "concurrency = coalesce(?, concurrency) WHERE name = ?",
                (time.time(), concurrency, name),
            )

    def phase_done(
        self,
        name: str,
        *,
        status: Status = Status.DONE,
        cumulative: float | None = None,
        bytes_: int | None = None,
        detail: str | None = None,
    ) -> None:
        now = time.time()
        with self._write() as db:
            db.execute(
                "UPDATE phases SET status = ?, finished_at = ?, "
                "started_at = coalesce(started_at, ?), "
                "duration = ? - coalesce(started_at, ?), cumulative = coalesce(?, cumulative), "
                "bytes = coalesce(?, bytes), detail = coalesce(?, detail) WHERE name = ?",
                (str(status), now, now, now, now, cumulative, bytes_, detail, name),
            )

    def phase_reset_running(self) -> None:
        """After a crash: phases left running go back to pending (their time restarts)."""
        with self._write() as db:
            db.execute("UPDATE phases SET status = 'pending' WHERE status IN ('running', 'failed')")

    # -- tables -------------------------------------------------------------------------
    def add_table(
        self,
        oid: int,
        nspname: str,
        relname: str,
        bytes_: int,
        reltuples: float,
        parts: int,
        copy_data: bool,
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO tables(oid, nspname, relname, bytes, reltuples, parts, copy_data, "
                "status) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
                (oid, nspname, relname, bytes_, reltuples, parts, int(copy_data)),
            )

    def tables(self) -> list[TableRow]:
        return [_table(r) for r in self._query("SELECT * FROM tables ORDER BY bytes DESC, oid")]

    def table(self, oid: int) -> TableRow:
        return _table(self._query("SELECT * FROM tables WHERE oid = ?", (oid,))[0])

    def set_table(self, oid: int, **values: Any) -> None:
        allowed = {"truncated", "snapshot", "snapshot_lsn", "status"}
        if not values or set(values) - allowed:
            raise ValueError(f"bad table columns: {sorted(values)}")
        cols = ", ".join(f"{k} = ?" for k in values)
        args = [int(v) if isinstance(v, bool) else v for v in values.values()]
        with self._write() as db:
            db.execute(f"UPDATE tables SET {cols} WHERE oid = ?", (*args, oid))

    # -- units --------------------------------------------------------------------------
    def add_units(self, units: Iterable[NewUnit]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO units(kind, table_oid, part, obj_oid, label, status, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(kind, table_oid, part, obj_oid) DO NOTHING",
                [
                    (
                        str(u.kind),
                        u.table_oid,
                        u.part,
                        u.obj_oid,
                        u.label,
                        str(u.status),
                        json.dumps(u.detail or {}, sort_keys=True),
                    )
                    for u in units
                ],
            )

    def units(self, kind: UnitKind | None = None, status: Status | None = None) -> list[UnitRow]:
        sql, args = "SELECT * FROM units", []
        conds = []
        if kind is not None:
            conds.append("kind = ?")
            args.append(str(kind))
        if status is not None:
            conds.append("status = ?")
            args.append(str(status))
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        return [_unit(r) for r in self._query(sql + " ORDER BY id", args)]

    def unit(self, unit_id: int) -> UnitRow:
        return _unit(self._query("SELECT * FROM units WHERE id = ?", (unit_id,))[0])

    def unit_running(self, unit_id: int, pid: int) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE units SET status = 'running', pid = ?, started_at = ?, finished_at = NULL, "
                "duration = NULL, bytes = 0, error = NULL, attempts = attempts + 1 WHERE id = ?",
                (pid, time.time(), unit_id),
            )

    def unit_progress(self, progress: dict[int, int]) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE units SET bytes = ? WHERE id = ? AND status = 'running'",
                [(b, uid) for uid, b in progress.items()],
            )

    def unit_done(
        self,
        unit_id: int,
        *,
        bytes_: int = 0,
        rows: int | None = None,
        status: Status = Status.DONE,
        detail: dict[str, Any] | None = None,
    ) -> None:
        now = time.time()
        with self._write() as db:
            db.execute(
                "UPDATE units SET status = ?, finished_at = ?, "
                "duration = ? - coalesce(started_at, ?), bytes = ?, rows = ?, error = NULL "
                "WHERE id = ?",
                (str(status), now, now, now, bytes_, rows, unit_id),
            )
            if detail is not None:
                db.execute(
                    "UPDATE units SET detail = ? WHERE id = ?",
                    (json.dumps(detail, sort_keys=True), unit_id),
                )

    def unit_failed(self, unit_id: int, error: str) -> None:
        now = time.time()
        with self._write() as db:
            db.execute(
                "UPDATE units SET status = 'failed', finished_at = ?, "
                "duration = ? - coalesce(started_at, ?), error = ? WHERE id = ?",
                (now, now, now, error, unit_id),
            )

    def units_reset(self, ids: Iterable[int]) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE units SET status = 'pending', pid = NULL, started_at = NULL, "
                "finished_at = NULL, duration = NULL, bytes = 0, rows = NULL WHERE id = ?",
                [(i,) for i in ids],
            )

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self._query("SELECT kind, status, count(*) FROM units GROUP BY kind, status")
        return {(r[0], r[1]): int(r[2]) for r in rows}

    # -- sentinel (CDC) -----------------------------------------------------------------
    def sentinel(self) -> Sentinel | None:
        """The sentinel, or None before CDC was set up."""
        rows = self._query(
            "SELECT startpos, endpos, apply, write_lsn, flush_lsn, replay_lsn, updated_at "
            "FROM sentinel WHERE id = 1"
        )
        if not rows:
            return None
        r = rows[0]
        return Sentinel(
            startpos=r["startpos"],
            endpos=r["endpos"],
            apply=bool(r["apply"]),
            write_lsn=r["write_lsn"],
            flush_lsn=r["flush_lsn"],
            replay_lsn=r["replay_lsn"],
            updated_at=r["updated_at"],
        )

    def set_sentinel(self, **values: Any) -> None:
        allowed = {"startpos", "endpos", "apply", "write_lsn", "flush_lsn", "replay_lsn"}
        if not values or set(values) - allowed:
            raise ValueError(f"bad sentinel columns: {sorted(values)}")
        with self._write() as db:
            db.execute("INSERT INTO sentinel(id) VALUES (1) ON CONFLICT(id) DO NOTHING")
            cols = ", ".join(f"{k} = ?" for k in values)
            db.execute(
                f"UPDATE sentinel SET {cols}, updated_at = ? WHERE id = 1",
                (*values.values(), time.time()),
            )


def _phase(r: sqlite3.Row) -> PhaseRow:
    return PhaseRow(
        name=r["name"],
        seq=r["seq"],
        status=Status(r["status"]),
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        duration=r["duration"],
        cumulative=r["cumulative"],
        bytes=r["bytes"],
        concurrency=r["concurrency"],
        detail=r["detail"],
    )


def _table(r: sqlite3.Row) -> TableRow:
    return TableRow(
        oid=r["oid"],
        nspname=r["nspname"],
        relname=r["relname"],
        bytes=r["bytes"],
        reltuples=r["reltuples"],
        parts=r["parts"],
        copy_data=bool(r["copy_data"]),
        truncated=bool(r["truncated"]),
        snapshot=r["snapshot"],
        snapshot_lsn=r["snapshot_lsn"],
        status=Status(r["status"]),
    )


def _unit(r: sqlite3.Row) -> UnitRow:
    return UnitRow(
        id=r["id"],
        kind=UnitKind(r["kind"]),
        table_oid=r["table_oid"],
        part=r["part"],
        obj_oid=r["obj_oid"],
        label=r["label"],
        status=Status(r["status"]),
        pid=r["pid"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        duration=r["duration"],
        bytes=r["bytes"],
        rows=r["rows"],
        attempts=r["attempts"],
        error=r["error"],
        detail=json.loads(r["detail"] or "{}"),
    )
