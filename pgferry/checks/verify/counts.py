"""The checks that read catalogs and counters, never table rows.

Estimated row counts, table sizes, sequence positions and large objects: cheap on any
database size, they run before the data checks (estimates in quick mode only, where
nothing counts rows exactly).
"""

from __future__ import annotations

from pgferry.catalog.facts import large_object_count
from pgferry.catalog.objects import FilterScope, SchemaObject
from pgferry.checks.compare import Side, compare_large_objects, compare_sequences
from pgferry.checks.report import Report
from pgferry.checks.verify.catalog import Pair
from pgferry.checks.verify.options import VerifyOptions
from pgferry.checks.verify.text import listing
from pgferry.text import human_bytes


def estimate_drift(
    source: float | None, target: float | None, tolerance_pct: float, tolerance_rows: int
) -> float | None:
    """The difference in percent of the source's estimate when it is beyond both
    tolerances (None when within, or when either side has no estimate)."""
    if source is None or target is None:
        return None
    diff = abs(source - target)
    if diff <= tolerance_rows:
        return None
    pct = 100.0 * diff / max(source, 1.0)
    return pct if pct > tolerance_pct else None


def check_estimates(report: Report, pairs: list[Pair], opts: VerifyOptions) -> None:
    """Row estimates per table on both sides: a large drift is reported."""
    drifted = []
    unknown = []
    for p in pairs:
        s, t = p.source.estimated_rows, p.target.estimated_rows
        if s is None or t is None:
            unknown.append(p.qualname)
            continue
        pct = estimate_drift(s, t, opts.row_tolerance_pct, opts.row_tolerance_rows)
        if pct is not None:
            drifted.append((pct, p.qualname, s, t))
    drifted.sort(reverse=True)
    note = f"; {len(unknown)} without statistics" if unknown else ""
    if drifted:
        lines = [
            f"{n}: source ~{s:,.0f}, target ~{t:,.0f} ({pct:.1f}%)" for pct, n, s, t in drifted
        ]
        report.warn(
            "rows.estimates",
            f"estimated row counts differ by more than {opts.row_tolerance_pct:g}% in "
            f"{len(drifted)} of {len(pairs)} tables{note} (estimates: not proof)\n"
            + listing(lines, opts.max_listed),
            fix="run ANALYZE on both sides and verify again; use --full for exact counts",
            tables=[
                {"table": n, "source": s, "target": t, "pct": round(pct, 1)}
                for pct, n, s, t in drifted
            ],
            without_statistics=unknown,
        )
    else:
        total = sum(p.source.estimated_rows or 0 for p in pairs)
        report.ok(
            "rows.estimates",
            f"estimated row counts agree within {opts.row_tolerance_pct:g}% "
            f"({len(pairs)} tables, ~{total:,.0f} rows){note}",
            without_statistics=unknown,
        )


def check_sizes(report: Report, pairs: list[Pair], opts: VerifyOptions) -> None:
    """Sizes differ for good reasons (bloat, fill factor): only an empty target table
    whose source has rows is worth a warning."""
    s_total = sum(p.source.bytes for p in pairs)
    t_total = sum(p.target.bytes for p in pairs)
    empty = [
        p.qualname
        for p in pairs
        if p.target.bytes == 0 and p.source.bytes > 0 and (p.source.estimated_rows or 0) > 0
    ]
    message = f"tables: {human_bytes(s_total)} on source, {human_bytes(t_total)} on target"
    if empty:
        report.warn(
            "sizes",
            f"{message}; {len(empty)} table(s) empty on target but not on source\n"
            + listing(empty, opts.max_listed),
            fix="compare them with --full",
            empty_on_target=empty,
        )
    else:
        report.ok("sizes", message, source_bytes=s_total, target_bytes=t_total)


def check_sequences(
    report: Report,
    src: Side,
    tgt: Side,
    src_objects: dict[str, list[SchemaObject]],
    scope: FilterScope,
    opts: VerifyOptions,
) -> None:
    """Sequences: the target's are not behind the source's."""
    wanted = {(o.parts[0], o.parts[1]) for o in src_objects["sequences"] if scope.keeps(o)}
    s_seqs = {k: v for k, v in src.sequences().items() if k in wanted}
    t_seqs = {k: v for k, v in tgt.sequences().items() if k in wanted}
    results = [
        r for r in compare_sequences(s_seqs, t_seqs) if r.target_last_value is not None or r.error
    ]
    bad = [r for r in results if not r.ok]
    if bad:
        report.fail(
            "sequences",
            f"{len(bad)} sequence(s) behind on the target (it would hand out values the source "
            "already used)\n" + listing([r.problem() or "" for r in bad], opts.max_listed),
            fix="setval() them to at least the source's value (pgferry syncs them at cutover)",
            sequences=[r.qualname for r in bad],
        )
    else:
        report.ok("sequences", f"{len(results)} sequence(s): target at or ahead of source")


def check_large_objects(report: Report, src: Side, tgt: Side, full: bool) -> None:
    """Large objects: how many, and what copying them costs."""
    if full:
        lo = compare_large_objects(src, tgt)
        if lo.ok:
            report.ok("large_objects", f"{lo.source_count:,} large objects, same content")
        else:
            report.fail("large_objects", "\n".join(lo.problems()))
        return
    counts = [large_object_count(s.holder) for s in (src, tgt)]
    if counts[0] == counts[1]:
        report.ok(
            "large_objects",
            f"{counts[0]:,} large objects on both sides (count only; --full reads them)",
        )
    else:
        report.fail(
            "large_objects", f"{counts[0]:,} large objects on source, {counts[1]:,} on target"
        )
