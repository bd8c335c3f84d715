"""The schema checks of `pgferry verify`: the objects of each kind, compared by definition.

Missing or changed objects FAIL; extras, comments and owners WARN. Between major versions
definitions print differently, so they are compared loosely there.
"""

from __future__ import annotations

import re
from typing import Any

from pgferry.catalog.definitions import DECORATION_QUERIES, SCHEMA_QUERIES
from pgferry.catalog.objects import FilterScope, SchemaObject, scoped_definitions
from pgferry.checks.compare import ObjectKindComparison, diff_objects
from pgferry.checks.report import Report
from pgferry.checks.verify.options import VerifyOptions
from pgferry.checks.verify.text import clip, listing

_LOOSE = re.compile(r"[\s()]+")


def loosely_equal(a: str, b: str) -> bool:
    """Equal but for spacing and parentheses: how server versions print definitions
    differently (pg_get_viewdef, pg_get_constraintdef, ...)."""
    return _LOOSE.sub("", a) == _LOOSE.sub("", b)


def check_schema(
    report: Report,
    src_objects: dict[str, list[SchemaObject]],
    tgt_objects: dict[str, list[SchemaObject]],
    scope: FilterScope,
    cross_version: bool,
    opts: VerifyOptions,
) -> None:
    """Schema objects of both sides compared by kind and definition."""
    src, tgt = scoped_definitions(src_objects, scope), scoped_definitions(tgt_objects, scope)
    for kind in SCHEMA_QUERIES:
        _schema_kind(report, diff_objects(kind, src[kind], tgt[kind]), cross_version, opts)
    for kind in DECORATION_QUERIES:
        _decoration_kind(report, diff_objects(kind, src[kind], tgt[kind]), opts)


def _schema_kind(
    report: Report, k: ObjectKindComparison, cross_version: bool, opts: VerifyOptions
) -> None:
    """Missing or changed: FAIL. Extra on the target: WARN (ignored for extensions).
    Between major versions a definition printed differently is a WARN, and none at all
    when it differs only in spacing and parentheses; extension versions WARN."""
    name = f"schema.{k.kind.replace(' ', '_')}"
    changed = [d for d in k.different if not (cross_version and loosely_equal(d[1], d[2]))]
    soft = k.kind == "extensions" or cross_version
    lines = [f"missing on target: {n}" for n in k.only_on_source]
    lines += [
        f"definition differs: {n}: source {clip(s)!r}, target {clip(t)!r}" for n, s, t in changed
    ]
    extra = [] if k.kind == "extensions" else list(k.only_on_target)
    details: dict[str, Any] = {
        "missing_on_target": list(k.only_on_source),
        "only_on_target": list(k.only_on_target),
        "different": [{"name": n, "source": s, "target": t} for n, s, t in changed],
    }
    counts = f"{k.source_count} on source, {k.target_count} on target"
    if k.only_on_source or (changed and not soft):
        report.fail(
            name,
            f"{k.kind}: {len(k.only_on_source)} missing, {len(changed)} different ({counts})\n"
            + listing(lines, opts.max_listed),
            fix="re-create the missing objects on the target (pg_dump --schema-only of them)",
            **details,
        )
    elif changed or extra:
        lines += [f"only on target: {n}" for n in extra]
        report.warn(name, f"{k.kind}: {counts}\n" + listing(lines, opts.max_listed), **details)
    elif k.source_count == k.target_count:
        report.ok(name, f"{k.kind}: {k.source_count} on both sides, same definitions")
    else:
        report.ok(name, f"{k.kind}: {counts}, all of the source's on the target")


def _decoration_kind(report: Report, k: ObjectKindComparison, opts: VerifyOptions) -> None:
    """Comments and owners: a warning at most (--no-comments, --no-owner)."""
    name = f"schema.{k.kind}"
    if k.ok:
        report.ok(name, f"{k.kind}: {k.source_count} on both sides, the same")
        return
    if k.kind == "owners":
        changes: dict[tuple[str, str], int] = {}
        for _, s, t in k.different:
            changes[(s, t)] = changes.get((s, t), 0) + 1
        lines = [
            f"{n} object(s) owned by {s} on source, {t} on target" for (s, t), n in changes.items()
        ]
        lines += [f"{n}: owned by {s} on source, {t} on target" for n, s, t in k.different]
    else:
        lines = [f"missing on target: comment on {n}" for n in k.only_on_source]
        lines += [f"differs: comment on {n}" for n, _, _ in k.different]
        lines += [f"only on target: comment on {n}" for n in k.only_on_target]
    report.warn(
        name,
        f"{k.kind}: {len(k.only_on_source) + len(k.different) + len(k.only_on_target)} "
        f"difference(s) (expected after --no-{'owner' if k.kind == 'owners' else 'comments'})\n"
        + listing(lines, opts.max_listed),
        missing_on_target=list(k.only_on_source),
        only_on_target=list(k.only_on_target),
        different=[{"name": n, "source": s, "target": t} for n, s, t in k.different],
    )
