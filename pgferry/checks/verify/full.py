"""Full mode's data check (`--full`): every row of every table in scope, exactly.

Each table is cut into key ranges of about `chunk_rows` rows (boundaries from a sample
of the key, never from reading every key); each range's count and content hash is
compared on both sides by parallel workers, each side read on one snapshot; a differing
range is bisected down to the differing rows, listed by key. A table without a usable
key is compared whole.
"""

from __future__ import annotations

from concurrent.futures import Future
from functools import partial
from typing import Any

import psycopg

from pgferry.checks.compare.side import Side, side_pools
from pgferry.checks.report import Report, Verdict
from pgferry.checks.verify.catalog import Pair
from pgferry.checks.verify.options import VerifyOptions
from pgferry.checks.verify.outcome import (
    TableOutcome,
    guarded_outcome,
    locate_differences,
    report_table,
)
from pgferry.checks.verify.queries import TableSpec
from pgferry.checks.verify.ranges import KeyRange, chunk_count, sample_percent, split_range
from pgferry.checks.verify.reader import TableReader
from pgferry.pg.describe import error_text


def full_data(
    report: Report, src: Side, tgt: Side, pairs: list[Pair], jobs: int, opts: VerifyOptions
) -> None:
    """Every row of every table compared, chunk by chunk; differences located."""
    outcomes: list[TableOutcome] = []
    with side_pools(src, tgt, jobs, "verify") as pools:
        plans = [(p, pools[0].submit(_plan_chunks, p, src, opts)) for p in pairs]
        work: list[tuple[TableOutcome, list[tuple[KeyRange, Future[Any], Future[Any]]]]] = []
        for p, plan in plans:
            outcome = TableOutcome(p)
            outcomes.append(outcome)
            ranges = plan.result()
            if isinstance(ranges, str):
                outcome.error = ranges
                continue
            outcome.whole = not (p.spec.key and p.target_has_key)
            chunks = []
            for rng in ranges:
                chunks.append(
                    (
                        rng,
                        pools[0].submit(_chunk, src, p.spec, rng),
                        pools[1].submit(_chunk, tgt, p.spec, rng),
                    )
                )
            work.append((outcome, chunks))
        for outcome, chunks in work:
            for rng, fs, ft in chunks:
                s, t = fs.result(), ft.result()
                if isinstance(s, str):
                    outcome.error = outcome.error or s
                    continue
                if isinstance(t, str):
                    outcome.error = outcome.error or t
                    continue
                outcome.ranges += 1
                outcome.rows += s[0]
                if s != t:
                    outcome.differing.append((rng, s, t))
    for o in outcomes:
        if o.differing and not o.whole:
            guarded_outcome(o, partial(_locate_chunks, o, src, tgt, opts))
        if not o.ok:
            report_table(report, o, opts, "key ranges" if not o.whole else "tables")
    bad = sum(1 for o in outcomes if o.verdict == Verdict.FAIL)
    rows = sum(o.rows for o in outcomes)
    compared = sum(o.ranges for o in outcomes)
    keyless = [o.pair.qualname for o in outcomes if o.whole and not o.pair.spec.key]
    message = (
        f"{len(outcomes)} tables, {compared:,} key ranges, {rows:,} source rows compared exactly"
        + (f"; {len(keyless)} without a key compared whole" if keyless else "")
    )
    if bad:
        report.fail("data.full", f"{bad} table(s) differ (above); {message}")
    else:
        report.ok("data.full", message, without_key=keyless)


def _locate_chunks(o: TableOutcome, src: Side, tgt: Side, opts: VerifyOptions) -> None:
    """The differing rows of a table's first differing chunks (in the calling thread)."""
    readers = TableReader(src, o.pair.spec), TableReader(tgt, o.pair.spec)
    locate_differences(o, *readers, opts, opts.max_located_chunks)


def _plan_chunks(p: Pair, src: Side, opts: VerifyOptions) -> list[KeyRange] | str:
    """Key ranges of about chunk_rows rows, cut at keys sampled from the source (or an
    error message)."""
    try:
        return _chunk_ranges(p, src, opts)
    except psycopg.Error as exc:
        return f"source: {error_text(exc)}"


def _chunk_ranges(p: Pair, src: Side, opts: VerifyOptions) -> list[KeyRange]:
    spec = p.spec
    if not spec.key or not p.target_has_key:
        return [KeyRange()]
    estimated = p.source.estimated_rows or 0.0
    if estimated <= 0 and p.source.bytes > 0:
        estimated = p.source.bytes / 100  # no statistics: guess ~100 bytes a row
    parts = chunk_count(estimated, opts.chunk_rows)
    if parts <= 1:
        return [KeyRange()]
    points = TableReader(src, spec).split_points(
        KeyRange(), parts, sample_percent(estimated, p.source.bytes // 8192, parts)
    )
    return split_range(KeyRange(), points)


def _chunk(side: Side, spec: TableSpec, rng: KeyRange) -> tuple[int, str] | str:
    try:
        return TableReader(side, spec).fingerprint(rng)
    except psycopg.Error as exc:
        return f"{side.info.role}: {error_text(exc)}"
