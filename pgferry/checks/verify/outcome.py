"""One table's data comparison: its outcome, its differing rows, and its report line.

Shared by quick and full mode, which differ in the ranges they read, not in how a
difference is narrowed down to rows or written up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from pgferry.checks.report import Report, Verdict
from pgferry.checks.verify.catalog import Pair
from pgferry.checks.verify.locate import MOVED, RowDifference, locate_rows
from pgferry.checks.verify.options import VerifyOptions
from pgferry.checks.verify.ranges import KeyRange, key_text
from pgferry.checks.verify.reader import TableReader
from pgferry.checks.verify.text import listing
from pgferry.pg.describe import error_text

_TIMEOUT_STATES = {"57014", "55P03"}  # query_canceled (statement_timeout), lock_not_available


@dataclass
class TableOutcome:
    """The data comparison of one table."""

    pair: Pair
    rows: int = 0  # source rows read
    ranges: int = 0  # key ranges compared
    differing: list[tuple[KeyRange, tuple[int, str], tuple[int, str]]] = field(default_factory=list)
    located: list[RowDifference] = field(default_factory=list)
    complete: bool = True
    whole: bool = False  # compared as one range (no usable key)
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return (
            not self.differing and not self.error and not any(d.what != MOVED for d in self.located)
        )

    @property
    def only_moved(self) -> bool:
        """Every difference found is a row sorting elsewhere (collation), none lost."""
        return (
            self.complete
            and bool(self.located)
            and all(d.what == MOVED for d in self.located)
            and all(s[0] == t[0] for _, s, t in self.differing)
        )

    @property
    def verdict(self) -> Verdict:
        if self.ok:
            return Verdict.PASS
        if (self.error and self.timed_out) or (not self.error and self.only_moved):
            return Verdict.WARN
        return Verdict.FAIL


def guarded_outcome(outcome: TableOutcome, work: Callable[[], None]) -> TableOutcome:
    """Run one table's comparison; its query errors become its outcome."""
    try:
        work()
    except psycopg.Error as exc:
        outcome.error = error_text(exc)
        outcome.timed_out = getattr(exc, "sqlstate", None) in _TIMEOUT_STATES
    return outcome


def locate_differences(
    outcome: TableOutcome,
    src: TableReader,
    tgt: TableReader,
    opts: VerifyOptions,
    max_chunks: int,
) -> None:
    """The rows that differ in one table, located by key."""
    for rng, s, t in outcome.differing[:max_chunks]:
        left = opts.max_keys - len(outcome.located)
        if left <= 0:
            outcome.complete = False
            break
        loc = locate_rows(
            src, tgt, rng, leaf_rows=opts.leaf_rows, fanout=opts.fanout, max_keys=left, known=(s, t)
        )
        outcome.located.extend(loc.rows)
        outcome.complete &= loc.complete
    if len(outcome.differing) > max_chunks:
        outcome.complete = False


def report_table(report: Report, o: TableOutcome, opts: VerifyOptions, mode: str) -> None:
    """One FAIL (or WARN for a timeout / collation-only difference) line for a table."""
    key = o.pair.spec.key
    name = o.pair.qualname
    if o.error:
        verdict = Verdict.WARN if o.timed_out else Verdict.FAIL
        report.add(
            "data.table",
            verdict,
            f"{name}: could not compare: {o.error}",
            fix="retry when the server is less busy" if o.timed_out else None,
            table=name,
        )
        return
    real = [d for d in o.located if d.what != MOVED]
    if o.only_moved:
        report.warn(
            "data.table",
            f"{name}: the same rows, but {len(o.located)} of them sort elsewhere by key on "
            "the target (different collation?)",
            fix="compare the collations (pgferry params) before trusting text-keyed indexes",
            table=name,
        )
        return
    lines = []
    whole_range = len(o.differing) == 1 and o.differing[0][0] == KeyRange()
    for rng, s, t in o.differing[: opts.max_listed]:
        what = (
            f"{s[0]:,} rows on source, {t[0]:,} on target"
            if s[0] != t[0]
            else f"same row count ({s[0]:,}), different content"
        )
        lines.append(what if whole_range else f"key range {rng.describe(key)}: {what}")
    if len(o.differing) > opts.max_listed:
        lines.append(f"... and {len(o.differing) - opts.max_listed} more ranges")
    if o.whole and not key:
        lines.append("no primary key or unique NOT NULL index: a key is needed to locate the rows")
    elif o.whole:
        lines.append("the target has no unique index on the key: rows not located")
    for d in real[: opts.max_keys]:
        lines.append(f"row {key_text(key, d.key)}: {d.what}")
    if real and not o.complete:
        lines.append(f"(first {len(real)} differing rows shown; there may be more)")
    summary = (
        f"{name}: rows differ"
        if whole_range
        else f"{name}: {len(o.differing)} of {o.ranges} {mode} differ"
    )
    report.fail(
        "data.table",
        summary + "\n" + listing(lines, 10**6),
        fix="re-copy the table (or the listed rows) from the source",
        table=name,
        ranges=[
            {"condition": r.describe(key), "source_rows": s[0], "target_rows": t[0]}
            for r, s, t in o.differing
        ],
        rows=[
            {"key": dict(zip(key, d.key, strict=False)), "difference": d.what} for d in o.located
        ],
    )
