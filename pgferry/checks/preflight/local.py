"""This machine: the filter file (does it parse, do its names exist on the source),
pg_dump and pg_restore for the source's version, and the working directory (writable,
not holding another migration, with disk space for the dump, the state store and the
CDC files).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from pathlib import Path

from pgferry.catalog.filters import FilterError, Filters, QualifiedName
from pgferry.checks.preflight.facts import PreflightOptions, SourceFacts
from pgferry.checks.preflight.scope import unmatched_filter_names
from pgferry.checks.report import Check, Report, Verdict
from pgferry.errors import EnvironmentProblem
from pgferry.pg.binaries import find_dump_tools
from pgferry.state.workdir import WorkDir
from pgferry.text import human_bytes, human_duration

# DIR holds the schema dump, logs and the state store at least; CDC files come on top.
DISK_HEADROOM = 256 * 1024 * 1024

# Conservative COPY throughput per table job, to guess how long the copy runs.
COPY_BYTES_PER_SECOND_PER_JOB = 25 * 1024 * 1024


def judge_disk(
    path: Path, free: int, needed: int, cdc_estimate: int | None, *, follow: bool, basis: str
) -> Check:
    """Free space in DIR: `needed` for the dump and state, `cdc_estimate` for CDC files."""
    name = "local.disk"
    message = f"{human_bytes(free)} free in {path}"
    fix = "free space there, or use a --dir on a bigger volume"
    if free < needed:
        return Check(name, Verdict.FAIL, f"{message}: at least {human_bytes(needed)} needed", fix)
    if follow and cdc_estimate is not None and free < needed + cdc_estimate:
        return Check(
            name,
            Verdict.WARN,
            f"{message}: CDC files during the copy may need about {human_bytes(cdc_estimate)} "
            f"({basis})",
            fix,
        )
    return Check(name, Verdict.PASS, message)


def check_filter_file(report: Report, filters: Filters, error: FilterError | None) -> None:
    name = "local.filters"
    if error is not None:
        report.fail(
            name,
            f"filter file: {error.message} (the checks below cover every object)",
            error.fix or "fix the line named above",
        )
        return
    if filters.is_empty():
        report.ok(name, "no filters: everything migrates")
        return
    if filters.warnings:
        report.warn(
            name,
            f"{filters.path}: {len(filters.entries)} entries; " + "; ".join(filters.warnings),
            "fix the lines named above",
        )
        return
    report.ok(name, f"{filters.path}: {len(filters.entries)} entries")


def local_checks(
    report: Report,
    src: SourceFacts | None,
    filters: Filters,
    opts: PreflightOptions,
    target_major: int | None = None,
) -> None:
    if src is not None and src.names is not None and not filters.is_empty():
        if include_only_matches_nothing(filters, src.names.relations, src.names.schemas):
            report.fail("local.filters_scope", *NOTHING_INCLUDED)
        unmatched = unmatched_filter_names(filters, src.names)
        if unmatched:
            report.warn(
                "local.filters_match",
                f"{len(unmatched)} filter name(s) match nothing: " + "; ".join(unmatched),
                "check the spelling (quote mixed-case names) or remove the lines",
            )
        else:
            report.ok("local.filters_match", "every filter name matches an object on the source")
    if src is None:
        report.skip("local.pg_dump", "not checked: the source version is unknown")
    else:
        try:
            tools = find_dump_tools(src.major, target_major)
        except EnvironmentProblem as exc:
            report.fail("local.pg_dump", exc.message, exc.fix)
        else:
            report.ok(
                "local.pg_dump",
                f"pg_dump and pg_restore {tools.major} ({tools.pg_dump.parent}) for a "
                f"PostgreSQL {src.major} source"
                + (f" and a PostgreSQL {target_major} target" if target_major else ""),
            )
    _check_workdir(report, opts)
    _check_disk(report, src, opts)


NOTHING_INCLUDED = (
    "no name in the filters' [include-only-table] or [include-only-schema] section matches "
    "the source: nothing would be copied",
    "check the spelling (schema.table; quote mixed-case names), or remove the section",
)


def include_only_matches_nothing(
    filters: Filters, relations: Collection[QualifiedName], schemas: Collection[str]
) -> bool:
    """An include-only section none of whose names is on the source: a clone would copy
    nothing and report success, which no one means (a single name that matches nothing
    among others is only a warning)."""
    tables, only_schemas = filters.include_only_table, filters.include_only_schema
    if tables and not any(name in relations for name in tables):
        return True
    return bool(only_schemas) and not any(name in schemas for name in only_schemas)


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_workdir(report: Report, opts: PreflightOptions) -> None:
    name = "local.workdir"
    path = opts.workdir
    base = _existing_parent(path)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        report.fail(name, f"{base} is not a writable directory", "choose another --dir")
        return
    if WorkDir(path).running_pid() == os.getpid():
        # The clone running these checks holds DIR and has already judged what it held.
        report.ok(name, f"{path} is this run's work directory")
        return
    has_state = (path / "state.db").exists()
    if has_state and not opts.resume:
        report.warn(
            name,
            f"{path} holds a previous migration",
            "continue it with --resume, discard it with --restart, or use another --dir",
        )
    elif opts.resume and not has_state:
        report.warn(name, f"--resume: {path} holds no migration to resume", "check --dir")
    else:
        report.ok(name, f"{path} is usable")


def _check_disk(report: Report, src: SourceFacts | None, opts: PreflightOptions) -> None:
    name = "local.disk"
    base = _existing_parent(opts.workdir)
    try:
        free = shutil.disk_usage(base).free
    except OSError as exc:
        report.warn(name, f"not checked: {exc.strerror or exc}")
        return
    # The schema dump grows with the number of catalog objects, a few KB each.
    dump = DISK_HEADROOM + (src.catalog_objects * 4096 if src else 0)
    cdc: int | None = None
    basis = ""
    if src is not None and src.size is not None:
        copy_seconds = src.size / (COPY_BYTES_PER_SECOND_PER_JOB * max(opts.table_jobs, 1))
        if src.wal_bytes_per_second is not None:
            cdc = int(src.wal_bytes_per_second * copy_seconds)
            basis = (
                f"the source writes {human_bytes(src.wal_bytes_per_second * 3600)} of WAL per "
                f"hour; the copy of {human_bytes(src.size)} may take {human_duration(copy_seconds)}"
            )
        else:
            cdc = src.size
            basis = f"no WAL rate known: as much as the database size, {human_bytes(src.size)}"
    report.checks.append(judge_disk(base, free, dump, cdc, follow=opts.follow, basis=basis))
