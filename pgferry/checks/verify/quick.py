"""Quick mode's data checks: bounded work whatever the database size.

The largest tables are sampled by key range: the first and the last rows by key and
ranges starting at histogram bounds of the key, each read through the key's index with a
LIMIT and compared by row count and content hash. Only small tables are read whole (a
random choice of them). A big table is never scanned, and no check starts once the time
budget is spent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from pgferry.checks.compare import Side
from pgferry.checks.report import Report, Verdict
from pgferry.checks.verify.catalog import Pair
from pgferry.checks.verify.options import VerifyOptions
from pgferry.checks.verify.outcome import (
    TableOutcome,
    guarded_outcome,
    locate_differences,
    report_table,
)
from pgferry.checks.verify.ranges import Key, KeyRange, spread_bounds
from pgferry.checks.verify.reader import TableReader
from pgferry.text import human_bytes


def quick_data(
    report: Report,
    src: Side,
    tgt: Side,
    pairs: list[Pair],
    jobs: int,
    sample_tables: int,
    opts: VerifyOptions,
    deadline: float,
) -> None:
    """A sample of small tables compared whole, and of large tables by key ranges."""
    rnd = random.Random()
    small = [p for p in pairs if max(p.source.bytes, p.target.bytes) <= opts.small_table_bytes]
    rnd.shuffle(small)
    small = small[: opts.small_tables]
    large = [p for p in pairs if max(p.source.bytes, p.target.bytes) > opts.small_table_bytes]
    sampled = large[:sample_tables]
    tasks: list[tuple[str, Pair]] = [("sample", p) for p in sampled] + [("whole", p) for p in small]
    outcomes: list[tuple[str, TableOutcome | None]] = []
    with ThreadPoolExecutor(jobs, thread_name_prefix="verify") as pool:
        futures = [
            (kind, pool.submit(_quick_table, kind, p, src, tgt, opts, deadline, rnd.random()))
            for kind, p in tasks
        ]
        try:
            outcomes = [(kind, f.result()) for kind, f in futures]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            src.cancel()
            tgt.cancel()
            raise
    skipped = [kind for kind, o in outcomes if o is None]
    done = [(kind, o) for kind, o in outcomes if o is not None]
    for kind, o in done:
        if not o.ok:
            report_table(report, o, opts, "sampled key ranges" if kind == "sample" else "tables")
    small_total = len(pairs) - len(large)
    _quick_summary(report, done, len(sampled), len(large), len(small), small_total, skipped, opts)


def _quick_table(
    kind: str,
    p: Pair,
    src: Side,
    tgt: Side,
    opts: VerifyOptions,
    deadline: float,
    seed: float,
) -> TableOutcome | None:
    if time.monotonic() > deadline:
        return None
    outcome = TableOutcome(p)
    if kind == "whole" or not p.spec.key or not p.target_has_key:
        if kind == "sample":  # a large table that cannot be read by key range
            outcome.whole = True
            return outcome
        return guarded_outcome(outcome, partial(_compare_whole, outcome, src, tgt, opts))
    return guarded_outcome(
        outcome, partial(_sample_ranges, outcome, src, tgt, opts, deadline, seed)
    )


def _compare_whole(outcome: TableOutcome, src: Side, tgt: Side, opts: VerifyOptions) -> None:
    """A small table: its count and hash; its differing rows when it has a key."""
    spec = outcome.pair.spec
    s_reader, t_reader = TableReader(src, spec), TableReader(tgt, spec)
    s, t = s_reader.fingerprint(KeyRange()), t_reader.fingerprint(KeyRange())
    outcome.rows, outcome.ranges = s[0], 1
    outcome.whole = not (spec.key and outcome.pair.target_has_key)
    if s != t:
        outcome.differing.append((KeyRange(), s, t))
        if not outcome.whole:
            locate_differences(outcome, s_reader, t_reader, opts, 1)


def quick_ranges(
    first: tuple[Key, int] | None,
    last: tuple[Key, int] | None,
    middles: Sequence[tuple[Key, tuple[Key, int] | None]],
    rows: int,
) -> list[KeyRange]:
    """The key ranges a quick check compares, from what the source said (pure).

    `first`: last key of the first `rows` rows and how many were read; `last`: first
    key of the last `rows` rows; `middles`: (start bound, last key of the `rows` rows
    from it). The first range has no lower bound and the last no upper bound, so rows
    the target holds beyond the source's ends are counted too.
    """
    if first is None:  # empty on the source: is the target empty too?
        return [KeyRange()]
    if first[1] < rows:  # the whole table fits in one range
        return [KeyRange()]
    out = [KeyRange(upper=first[0], upper_inclusive=True)]
    for start, end in middles:
        if end is not None:
            out.append(KeyRange(lower=start, upper=end[0], upper_inclusive=True))
    if last is not None:
        out.append(KeyRange(lower=last[0]))
    return out


def _sample_ranges(
    outcome: TableOutcome,
    src: Side,
    tgt: Side,
    opts: VerifyOptions,
    deadline: float,
    seed: float,
) -> None:
    spec = outcome.pair.spec
    limit = 2 * opts.range_rows + 1  # the target may hold more rows than the source
    s_reader, t_reader = TableReader(src, spec, limit), TableReader(tgt, spec, limit)
    n = opts.range_rows
    first = s_reader.edge(KeyRange(), n)
    last = s_reader.edge(KeyRange(), n, from_end=True)
    middles: list[tuple[Key, tuple[Key, int] | None]] = []
    if first is not None and first[1] >= n:
        for bound in spread_bounds(
            s_reader.histogram(), opts.ranges_per_table - 2, random.Random(seed)
        ):
            start: Key = (bound,)
            middles.append((start, s_reader.edge(KeyRange(lower=start), n)))
    for rng in quick_ranges(first, last, middles, n):
        if time.monotonic() > deadline:
            outcome.complete = False
            break
        s, t = s_reader.fingerprint(rng), t_reader.fingerprint(rng)
        outcome.ranges += 1
        outcome.rows += s[0]
        if s != t:
            outcome.differing.append((rng, s, t))
    if outcome.differing:
        quick = VerifyOptions(leaf_rows=limit, max_keys=opts.max_keys)
        locate_differences(outcome, s_reader, t_reader, quick, opts.ranges_per_table)


def _quick_summary(
    report: Report,
    done: list[tuple[str, TableOutcome]],
    sampled: int,
    large: int,
    small: int,
    small_total: int,
    skipped: list[str],
    opts: VerifyOptions,
) -> None:
    samples = [o for kind, o in done if kind == "sample"]
    keyless = [o.pair.qualname for o in samples if o.whole]
    checked = [o for o in samples if not o.whole and not o.error]
    wholes = [o for kind, o in done if kind == "whole" and not o.error]
    ranges = sum(o.ranges for o in checked)
    rows = sum(o.rows for o in checked)
    lines = [
        f"{len(checked)} of the {sampled} largest tables sampled: {ranges} key ranges, "
        f"{rows:,} rows read by index",
        f"{len(wholes)} small tables (<= {human_bytes(opts.small_table_bytes)}) compared whole"
        + (f" (a random {small} of {small_total}: repeat to widen)" if small < small_total else ""),
    ]
    if large > sampled:
        lines.append(f"{large - sampled} other large tables not sampled (--full compares all)")
    names = [o.pair.qualname for o in checked]
    if keyless:
        report.warn(
            "data.keyless",
            f"{len(keyless)} large table(s) without a usable key on both sides, not sampled: "
            + ", ".join(keyless[: opts.max_listed]),
            fix="compare them with --full (whole-table checksums)",
            tables=keyless,
        )
    if skipped:
        report.warn(
            "data.budget",
            f"time budget ({opts.budget_seconds:g}s) reached: {len(skipped)} table check(s) "
            "not started",
            fix="verify again (other tables are drawn) or use --full",
        )
    failed = sum(1 for _, o in done if o.verdict == Verdict.FAIL)
    message = "\n".join(lines)
    if failed:
        report.fail("data.sample", f"{failed} table(s) differ (above)\n{message}", sampled=names)
    else:
        report.ok("data.sample", message, sampled=names)
