"""`clone --dry-run`'s time estimate, from rates measured on the two servers.

A sample of the largest table (about SAMPLE_BYTES) is read from the
source with COPY, as a copy worker reads it, and written on the target into a temporary
table of text columns (the session's own, inside a transaction rolled back: nothing
stays), then indexed once. From the rates, in bytes of table on disk per second:

    copy    the largest unit alone, or all units over the table jobs, whichever is longer
    indexes every build, over the index jobs
    vacuum  each table read once more, faster than it was copied

It is a range because neither server's load nor its cores are known.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from psycopg import sql

from pgferry.catalog.model import Catalog, Table
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.profiles import SNAPSHOT_READER
from pgferry.state.store import NewUnit, UnitKind

SAMPLE_BYTES = 48 * 1024 * 1024
FIXED_SECONDS = (3.0, 10.0)  # catalog, schema dump, pre-data and post-data restores
VACUUM_SPEEDUP = 4.0  # VACUUM ANALYZE reads a table about this much faster than it is copied


@dataclass(frozen=True)
class Estimate:
    low: float  # seconds
    middle: float
    high: float
    copy_rate: float  # bytes of table per second, one worker
    index_rate: float  # bytes of table per second, one index build
    sampled: int  # bytes of COPY data sampled


@dataclass(frozen=True)
class _Sample:
    rows: int
    copy_bytes: int
    copy_seconds: float
    index_seconds: float


def estimate(
    source: ConnInfo,
    target: ConnInfo,
    catalog: Catalog,
    order: list[Table],
    units: list[NewUnit],
    *,
    table_jobs: int,
    index_jobs: int,
    vacuum: bool,
) -> Estimate | None:
    """The range of the clone's wall time; None with nothing to copy or sample."""
    sampled = next((t for t in order if t.columns and t.reltuples > 0 and t.bytes > 0), None)
    if sampled is None:
        return None
    s = _sample(source, target, sampled)
    if s.rows == 0 or s.copy_seconds <= 0:
        return None
    table_bytes = s.rows * sampled.bytes / max(sampled.reltuples, 1.0)
    copy_rate = table_bytes / s.copy_seconds
    index_rate = table_bytes / max(s.index_seconds, 1e-3)

    copies = [u for u in units if u.kind == UnitKind.COPY]
    by_oid = {t.oid: t for t in order}

    def unit_bytes(u: NewUnit) -> float:
        t = by_oid.get(u.table_oid)
        parts = int((u.detail or {}).get("parts", 1))
        return t.bytes / parts if t is not None else 0.0

    total = sum(t.bytes for t in order)
    largest = max((unit_bytes(u) for u in copies), default=0.0)
    workers = max(1, min(table_jobs, len(copies)))
    builders = max(1, index_jobs)
    indexed = sum(by_oid[i.table_oid].bytes for i in catalog.indexes if i.table_oid in by_oid)
    vacuumed = total if vacuum else 0

    def seconds(copy_jobs: float, index_jobs_: float, fixed: float) -> float:
        """With the jobs scaling to `copy_jobs` and `index_jobs_` at once."""
        copying = max(largest, total / copy_jobs) / copy_rate
        building = indexed / index_rate / index_jobs_
        vacuuming = vacuumed / (copy_rate * VACUUM_SPEEDUP * copy_jobs)
        return fixed + copying + building + vacuuming

    # Neither server's cores nor load are known: the jobs scale fully (low), up to the
    # cores of this machine, which every COPY stream goes through (the middle), or not
    # at all (high).
    cores = os.cpu_count() or 1
    low = seconds(workers, builders, FIXED_SECONDS[0])
    middle = seconds(min(workers, cores), min(builders, cores), sum(FIXED_SECONDS) / 2)
    high = seconds(1, 1, FIXED_SECONDS[1])
    return Estimate(
        low=low,
        middle=middle,
        high=high,
        copy_rate=copy_rate,
        index_rate=index_rate,
        sampled=s.copy_bytes,
    )


def _sample(source: ConnInfo, target: ConnInfo, table: Table) -> _Sample:
    """Read part of `table` on the source and write it on the target, timed."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    limit = max(1, int(SAMPLE_BYTES / max(table.bytes / max(table.reltuples, 1.0), 1.0)))
    read = sql.SQL("COPY (SELECT {} FROM ONLY {} LIMIT {}) TO STDOUT").format(
        cols, table.ident, sql.Literal(limit)
    )
    probe = sql.Identifier("pgferry_probe")
    create = sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(
        probe,
        sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in table.columns),
    )
    chunks: list[bytes] = []
    with source.connect("pgferry estimate", settings=SNAPSHOT_READER) as src:
        src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        started = time.monotonic()
        with src.cursor() as cur, cur.copy(read) as copy:
            for chunk in copy:
                chunks.append(bytes(chunk))
        read_seconds = time.monotonic() - started
    whole = b"".join(chunks)
    rows = whole.count(b"\n")
    with (
        target.connect("pgferry estimate") as tgt,
        tgt.transaction(force_rollback=True),
        tgt.cursor() as cur,
    ):
        cur.execute(create)
        started = time.monotonic()
        with cur.copy(sql.SQL("COPY {} FROM STDIN").format(probe)) as copy:
            copy.write(whole)
        write_seconds = time.monotonic() - started
        started = time.monotonic()
        cur.execute(
            sql.SQL("CREATE INDEX ON {} ({})").format(probe, sql.Identifier(table.columns[0]))
        )
        index_seconds = time.monotonic() - started
    return _Sample(rows, len(whole), max(read_seconds, write_seconds), index_seconds)
