"""`run_preflight`: the source, then the target, then this machine, into one `Report`.

The order matters: the target and local checks compare with what the source checks
learnt (`SourceFacts`), and a side that cannot be reached only skips its own checks.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg

from pgferry.admin.replica_identity import default_plugin, ownership_refusal, read_tables
from pgferry.catalog.filters import FilterError, Filters
from pgferry.checks.preflight.facts import PreflightOptions, SourceFacts
from pgferry.checks.preflight.local import check_filter_file, local_checks
from pgferry.checks.preflight.replication import probe_replication
from pgferry.checks.preflight.session import open_session
from pgferry.checks.preflight.source import source_checks
from pgferry.checks.preflight.target import target_checks
from pgferry.checks.report import Report
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.describe import error_text
from pgferry.pg.identity import read_identity, same_database_error
from pgferry.pg.plugins import DEFAULT_PLUGIN
from pgferry.state.workdir import default_dir


def run_preflight(
    source: ConnInfo,
    target: ConnInfo,
    filters: Filters,
    *,
    follow: bool,
    plugin: str = DEFAULT_PLUGIN,
    slot: str = "pgferry",
    origin: str = "pgferry",
    workdir: Path | None = None,
    table_jobs: int = 4,
    index_jobs: int = 4,
    drop_if_exists: bool = False,
    resume: bool = False,
    filters_error: FilterError | None = None,
    wal2json_numeric_as_string: bool = False,
    plugin_chosen: bool = False,
    allow_downgrade: bool = False,
    no_owner: bool = False,
    no_acl: bool = False,
    create_roles: bool = False,
) -> Report:
    """Check the source, the target and this machine for the migration described.

    `filters_error` is a filter file that did not parse: it is reported as a FAIL and the
    other checks then cover every object. Never raises for a server problem: connection
    failures and failed queries are lines of the report.
    """
    opts = PreflightOptions(
        follow=follow,
        plugin=plugin,
        slot=slot,
        origin=origin,
        workdir=(workdir or default_dir()).expanduser().absolute(),
        table_jobs=table_jobs,
        index_jobs=index_jobs,
        drop_if_exists=drop_if_exists,
        resume=resume,
        wal2json_numeric_as_string=wal2json_numeric_as_string,
        allow_downgrade=allow_downgrade,
        no_owner=no_owner,
        no_acl=no_acl,
        create_roles=create_roles,
    )
    report = Report(title="pgferry preflight")
    report.facts.update(
        {
            "source": source.short(),
            "target": target.short(),
            "migration": ("clone --follow" if follow else "clone")
            + (" --resume" if resume else "")
            + (f" (plugin {plugin}, slot {slot}, origin {origin})" if follow else ""),
            "dir": str(opts.workdir),
        }
    )
    check_filter_file(report, filters, filters_error)
    src: SourceFacts | None = None
    target_major: int | None = None
    with contextlib.ExitStack() as stack:
        src_conn = open_session(report, source, stack)
        if src_conn is not None:
            try:
                if opts.follow:
                    opts = _plugin(report, src_conn, filters, opts, chosen=plugin_chosen)
                src = source_checks(report, source, src_conn, filters, opts)
            except psycopg.Error as exc:
                report.fail("source.checks", f"source checks stopped: {error_text(exc)}")
            if src is not None and opts.follow:
                probe_replication(report, source, src, opts)
        tgt_conn = open_session(report, target, stack)
        if src_conn is not None and tgt_conn is not None:
            _check_not_same_database(report, src_conn, tgt_conn)
        if tgt_conn is not None:
            target_major = tgt_conn.info.server_version // 10000
            try:
                target_checks(report, target, tgt_conn, src, filters, opts)
            except psycopg.Error as exc:
                report.fail("target.checks", f"target checks stopped: {error_text(exc)}")
    local_checks(report, src, filters, opts, target_major)
    return report


def _plugin(
    report: Report,
    conn: psycopg.Connection[Any],
    filters: Filters,
    opts: PreflightOptions,
    *,
    chosen: bool,
) -> PreflightOptions:
    """The plugin the migration will use (the default one pgferry can publish the tables
    for, see default_plugin); with pgoutput, whether the role may publish them."""
    name = "source.plugin"
    if opts.plugin != "pgoutput":
        report.ok(name, f"plugin {opts.plugin}")
        return opts
    tables = read_tables(conn, filters)
    if not chosen:
        plugin, why = default_plugin(tables, conn.info.user)
        if why is not None:
            report.warn(name, f"the test_decoding plugin is used, not pgoutput: {why}")
            report.facts["migration"] = report.facts["migration"].replace(
                f"plugin {opts.plugin}", f"plugin {plugin}"
            )
            return replace(opts, plugin=plugin)
    refusal = ownership_refusal(tables, conn.info.user)
    if refusal is not None:
        report.fail(name, refusal.message, refusal.fix)
    else:
        report.ok(name, "plugin pgoutput: the role may publish every table in scope")
    return opts


def _check_not_same_database(
    report: Report, src_conn: psycopg.Connection[Any], tgt_conn: psycopg.Connection[Any]
) -> None:
    name = "target.not_source"
    try:
        source, target = read_identity(src_conn), read_identity(tgt_conn)
    except psycopg.Error as exc:
        report.fail(name, f"cannot tell whether the target is the source: {error_text(exc)}")
        return
    error = same_database_error(source, target)
    if error is not None:
        report.fail(name, error.message, error.fix)
    else:
        report.ok(name, f"the target is not the source ({target.describe()})")
