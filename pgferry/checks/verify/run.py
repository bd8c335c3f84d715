"""The run of `pgferry verify`: connect, read both catalogs, scope them, run the checks.

The order of the report is decided here (filters, schema, estimates, sizes, sequences,
large objects, then the data of the chosen mode); each check lives in its own module.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from pgferry.catalog.filters import Filters
from pgferry.catalog.objects import FilterScope, SchemaObject
from pgferry.checks.compare import Side
from pgferry.checks.report import Report
from pgferry.checks.verify.catalog import Pair, pair_tables, read_side_catalog
from pgferry.checks.verify.counts import (
    check_estimates,
    check_large_objects,
    check_sequences,
    check_sizes,
)
from pgferry.checks.verify.deparse import deparsed_on_target
from pgferry.checks.verify.full import full_data
from pgferry.checks.verify.options import VerifyOptions
from pgferry.checks.verify.quick import quick_data
from pgferry.checks.verify.schema import check_schema
from pgferry.errors import StepFailed
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.describe import error_text


def run_verify(
    source: ConnInfo,
    target: ConnInfo,
    filters: Filters,
    *,
    full: bool = False,
    jobs: int = 4,
    sample_tables: int = 10,
    options: VerifyOptions | None = None,
) -> Report:
    """Compare source and target within the filters' scope; FAIL on any lost or changed
    object or row, WARN on what deserves a look (estimates, sizes, extras)."""
    opts = options or VerifyOptions()
    t0 = time.monotonic()
    deadline = t0 + opts.budget_seconds
    report = Report("pgferry verify: " + ("full comparison" if full else "quick comparison"))
    report.facts.update(
        source=source.short(),
        target=target.short(),
        mode="full (every row, chunked checksums)"
        if full
        else f"quick (catalogs, estimates, {sample_tables} largest tables sampled by key range)",
        filters=filters.path or "none",
    )
    # JIT compiles each checksum query for longer than most of them run.
    data_settings = {"jit": "off"}
    if not full:
        data_settings.update(
            statement_timeout=str(opts.statement_timeout_ms),
            lock_timeout=str(opts.lock_timeout_ms),
            # Sampled ranges must be index range scans: never a scan of a big table.
            enable_seqscan="off",
        )
    src = Side(source, "verify", data_settings)
    try:
        tgt = Side(target, "verify", data_settings)
    except BaseException:
        src.close()
        raise
    try:
        _run(report, src, tgt, filters, full, max(1, jobs), sample_tables, opts, deadline)
    except psycopg.Error as exc:
        raise StepFailed(
            f"verify stopped: a query failed: {error_text(exc)}",
            fix="check the connection and privileges; nothing was compared as equal",
        ) from exc
    finally:
        src.close()
        tgt.close()
    report.facts["seconds"] = round(time.monotonic() - t0, 1)
    return report


def _run(
    report: Report,
    src: Side,
    tgt: Side,
    filters: Filters,
    full: bool,
    jobs: int,
    sample_tables: int,
    opts: VerifyOptions,
    deadline: float,
) -> None:
    with ThreadPoolExecutor(2, thread_name_prefix="verify-catalog") as pool:
        src_cat, tgt_cat = pool.submit(read_side_catalog, src), pool.submit(read_side_catalog, tgt)
        (s_version, src_objects, src_rels), (t_version, tgt_objects, tgt_rels) = (
            src_cat.result(),
            tgt_cat.result(),
        )
    versions = (s_version, t_version)
    report.facts["versions"] = f"source {versions[0] // 10000}, target {versions[1] // 10000}"
    scope = FilterScope(
        filters, [o for side in (src_objects, tgt_objects) for objs in side.values() for o in objs]
    )
    for warning in [*filters.warnings, *_unmatched(filters, src_objects)]:
        report.warn("filters", warning, fix="use the same filters as the migration")
    cross_version = versions[0] // 10000 != versions[1] // 10000
    if cross_version:
        src_objects = deparsed_on_target(tgt.info, src_objects, tgt_objects)
    check_schema(report, src_objects, tgt_objects, scope, cross_version, opts)

    in_scope = [k for k in src_rels if scope.copies_data(*k)]
    pairs = [pair_tables(src_rels[k], tgt_rels[k]) for k in in_scope if k in tgt_rels]
    missing = len(in_scope) - len(pairs)
    report.facts["tables in scope"] = f"{len(in_scope)} with data" + (
        f" ({missing} missing on target)" if missing else ""
    )
    pairs = [p for p in pairs if _populated(report, p)]
    pairs.sort(key=lambda p: (-p.source.bytes, p.spec.schema, p.spec.name))
    if not full:
        check_estimates(report, pairs, opts)
    check_sizes(report, pairs, opts)
    check_sequences(report, src, tgt, src_objects, scope, opts)
    check_large_objects(report, src, tgt, full)
    if full:
        full_data(report, src, tgt, pairs, jobs, opts)
    else:
        quick_data(report, src, tgt, pairs, jobs, sample_tables, opts, deadline)


def _unmatched(filters: Filters, src_objects: dict[str, list[SchemaObject]]) -> list[str]:
    """Filter entries naming no table, schema or extension of the source."""
    if not filters.entries:
        return []
    tables = {
        (o.parts[0], o.parts[1]) for k in ("tables", "materialized views") for o in src_objects[k]
    }
    schemas = {o.parts[0] for o in src_objects["schemas"]}
    extensions = {o.parts[0] for o in src_objects["extensions"]}
    known: dict[str, set[Any]] = {
        "include-only-table": tables,
        "exclude-table": tables,
        "exclude-table-data": tables,
        "include-only-schema": schemas,
        "exclude-schema": schemas,
        "include-only-extension": extensions,
        "exclude-extension": extensions,
    }
    where = filters.path or "<filters>"
    return [
        f"{where}:{e.line}: [{e.section}] {e} matches nothing on the source"
        for e in filters.entries
        if e.section in known
        and ((e.schema, e.name) if e.schema is not None else e.name) not in known[e.section]
    ]


def _populated(report: Report, p: Pair) -> bool:
    """Whether a materialized view's rows can be compared; FAIL when populated on the
    source only."""
    if p.source.populated and p.target.populated:
        return True
    if p.source.populated:
        report.fail(
            "data.table",
            f"materialized view {p.qualname} is not populated on the target",
            fix=f"REFRESH MATERIALIZED VIEW {p.qualname} on the target",
            table=p.qualname,
        )
    return False
