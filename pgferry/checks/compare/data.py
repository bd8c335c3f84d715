"""`compare_data`: every table's rows, every sequence's position, every large object.

Tables: the row count and an order-independent, multiplicity-sensitive hash of the rows,
computed by each server over the columns both sides have (sorted by name, so that a
different physical column order does not matter), biggest tables first, on a bounded pool
of workers per side. Sequences: the target may be ahead, never behind. Large objects: the
count, and a digest of each one's content read in bounded chunks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future

import psycopg

from pgferry.checks.compare.results import (
    DataComparison,
    LargeObjectResult,
    SequenceResult,
    TableResult,
)
from pgferry.checks.compare.side import Relation, Side, savepoint, side_pools
from pgferry.checks.compare.sqltext import fingerprint_query
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.describe import error_text

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
    src = Side(source)
    try:
        tgt = Side(target)
    except BaseException:
        src.close()
        raise
    try:
        table_results = _compare_tables(src, tgt, tables, max(1, jobs), on_table)
        sequences = compare_sequences(src.sequences(), tgt.sequences())
        large_objects = compare_large_objects(src, tgt)
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
    src: Side,
    tgt: Side,
    wanted: list[tuple[str, str]] | None,
    jobs: int,
    on_table: Callable[[TableResult], None] | None,
) -> list[TableResult]:
    src_rels, tgt_rels = src.relations(), tgt.relations()
    keys = set(wanted) if wanted is not None else src_rels.keys() | tgt_rels.keys()
    # Biggest first, so that the last table to finish is a small one.
    order = sorted(keys, key=lambda k: (-_size(k, src_rels, tgt_rels), k))
    pending: list[tuple[tuple[str, str], Future[_Outcome] | None, Future[_Outcome] | None]] = []
    results: list[TableResult] = []
    with side_pools(src, tgt, jobs, "compare") as pools:
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
    return sorted(results, key=lambda r: (r.schema, r.name))


def _size(key: tuple[str, str], *sides: dict[tuple[str, str], Relation]) -> int:
    return max((side[key].bytes for side in sides if key in side), default=0)


def _common_columns(a: Relation | None, b: Relation | None) -> tuple[str, ...]:
    """Columns hashed: those both sides have, by name (physical order may differ)."""
    if a is not None and b is not None:
        return tuple(sorted(set(a.columns) & set(b.columns)))
    one = a or b
    return tuple(sorted(one.columns)) if one is not None else ()


def _fingerprint(side: Side, rel: Relation, columns: tuple[str, ...]) -> _Outcome:
    if rel.kind == "m" and not rel.populated:
        return "not populated"
    try:
        return side.fingerprint(fingerprint_query(rel.schema, rel.name, columns))
    except psycopg.Error as exc:
        return f"{side.info.role}: {error_text(exc)}"


def _table_result(
    key: tuple[str, str],
    s_rel: Relation | None,
    t_rel: Relation | None,
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


def sequence_behind(
    source_last: int, source_called: bool, target_last: int, target_called: bool, increment: int
) -> bool:
    """Whether the target would hand out a value the source already handed out."""
    step = increment or 1
    source_next = source_last + (step if source_called else 0)
    target_next = target_last + (step if target_called else 0)
    return target_next < source_next if step > 0 else target_next > source_next


def compare_sequences(
    source: dict[tuple[str, str], tuple[int, bool, int] | str],
    target: dict[tuple[str, str], tuple[int, bool, int] | str],
) -> list[SequenceResult]:
    """Each sequence's position on both sides; the target may be ahead, never behind."""
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


def compare_large_objects(src: Side, tgt: Side) -> LargeObjectResult:
    """The large objects of both sides: count and content."""
    digests: list[dict[int, str]] = []
    for side in (src, tgt):
        try:
            with savepoint(side.holder):
                digests.append(side.large_objects())
        except psycopg.Error as exc:
            return LargeObjectResult(0, 0, error=f"{side.info.role}: {error_text(exc)}")
    s, t = digests
    return LargeObjectResult(
        source_count=len(s),
        target_count=len(t),
        missing_on_target=tuple(sorted(s.keys() - t.keys())),
        only_on_target=tuple(sorted(t.keys() - s.keys())),
        different=tuple(sorted(oid for oid in s.keys() & t.keys() if s[oid] != t[oid])),
    )
