"""`pgferry preflight` and `pgferry filters init`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pgferry.catalog.filters import FilterError, Filters, no_filters, parse_filters
from pgferry.catalog.providers import PROVIDERS, provider_filters
from pgferry.cli.common import (
    add_decoding_flags,
    add_dir,
    add_downgrade_flag,
    add_filters,
    add_logging_flags,
    add_source,
    add_target,
    positive,
    resolve_conn,
    resolve_decoding,
    resolve_dir,
    resolve_filters,
)
from pgferry.cli.env import env_int
from pgferry.errors import InputError
from pgferry.ui.report import render_report


def register(sub: Any) -> None:

    p = sub.add_parser(
        "preflight",
        help="check the source, the target and this machine before a migration",
        description="Check everything that would make the migration fail or lose data, "
        "without writing anything. Exit 1 when a check fails.",
    )
    add_source(p)
    add_target(p)
    add_dir(p)
    add_filters(p)
    p.add_argument(
        "--follow", action="store_true", help="check for clone --follow (logical decoding)"
    )
    add_decoding_flags(p)
    p.add_argument(
        "--table-jobs",
        "--jobs",
        type=int,
        metavar="N",
        help="COPY workers planned (env PGCOPYDB_TABLE_JOBS; default 4)",
    )
    p.add_argument(
        "--index-jobs",
        type=int,
        metavar="N",
        help="CREATE INDEX workers planned (env PGCOPYDB_INDEX_JOBS; default 4)",
    )
    p.add_argument(
        "--drop-if-exists",
        action="store_true",
        help="the migration will replace objects on a non-empty target",
    )
    p.add_argument("--resume", action="store_true", help="check for resuming the migration in DIR")
    add_downgrade_flag(p)
    p.add_argument("--no-owner", action="store_true", help="the clone will not restore owners")
    p.add_argument("--no-acl", action="store_true", help="the clone will not restore privileges")
    p.add_argument(
        "--roles", action="store_true", help="the clone will create the missing roles first"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_logging_flags(p)
    p.set_defaults(handler=handle_preflight)

    f = sub.add_parser("filters", help="filter file helpers")
    fsub = f.add_subparsers(dest="filters_command", metavar="COMMAND")
    fsub.required = True
    init = fsub.add_parser(
        "init",
        help="write a starting filter file for a source on a managed service",
        description="Write a filter file that excludes the internal schemas, extensions "
        "and event triggers of a managed PostgreSQL service, each with the reason.",
    )
    init.add_argument(
        "--for", dest="provider", required=True, choices=PROVIDERS, help="where the source runs"
    )
    init.add_argument(
        "--output", "-o", metavar="FILE", default="filters.ini", help="default ./filters.ini"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    add_logging_flags(init)
    init.set_defaults(handler=handle_filters_init)


def handle_preflight(args: argparse.Namespace) -> int:
    from pgferry.checks.preflight import run_preflight

    plugin, chosen, numeric = resolve_decoding(args)
    filters, problem = _filters(args)
    report = run_preflight(
        resolve_conn(args, "source"),
        resolve_conn(args, "target"),
        filters,
        follow=args.follow,
        plugin=plugin,
        plugin_chosen=chosen,
        slot=args.slot_name or "pgferry",
        origin=args.origin or "pgferry",
        workdir=resolve_dir(args),
        table_jobs=_jobs(args.table_jobs, "TABLE_JOBS"),
        index_jobs=_jobs(args.index_jobs, "INDEX_JOBS"),
        drop_if_exists=args.drop_if_exists,
        resume=args.resume,
        filters_error=problem,
        wal2json_numeric_as_string=numeric,
        allow_downgrade=args.allow_downgrade,
        no_owner=args.no_owner,
        no_acl=args.no_acl,
        create_roles=args.roles,
    )
    if args.json:
        report.print_json()
    else:
        render_report(report)
    return report.exit_code()


def _filters(args: argparse.Namespace) -> tuple[Filters, FilterError | None]:
    """A filter file that does not parse is a line of the report, not an early exit."""
    try:
        return resolve_filters(args), None
    except FilterError as exc:
        return no_filters(), exc


def _jobs(flag: int | None, env: str) -> int:
    value = flag if flag is not None else env_int(env, 4)
    return positive(f"--{env.lower().replace('_', '-')}", value)


def handle_filters_init(args: argparse.Namespace) -> int:
    text = provider_filters(args.provider)
    entries = len(parse_filters(text, f"<{args.provider} filters>").entries)
    path = Path(args.output)
    if path.exists() and not args.force:
        raise InputError(
            f"{path} already exists", fix="choose another --output, or add --force to replace it"
        )
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"cannot write {path}: {exc.strerror or exc}", fix="choose a writable path"
        ) from None
    print(f"wrote {path}: {entries} exclusions for a source on {args.provider}")
    print(f"review it, then: pgferry preflight --filters {path} ...")
    return 0
