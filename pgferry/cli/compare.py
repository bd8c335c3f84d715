"""`pgferry compare schema` and `pgferry compare data` (pgcopydb's names).

Exit 0 when source and target hold the same, 1 when a difference is found.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pgferry.checks.compare import compare_data, compare_schema
from pgferry.cli.common import (
    add_logging_flags,
    add_source,
    add_target,
    positive,
    print_json,
    resolve_conn,
)
from pgferry.cli.env import env_int
from pgferry.errors import ExitCode
from pgferry.ui.compare import render_data, render_schema, render_verdict
from pgferry.ui.console import make_console

log = logging.getLogger(__name__)


def register(sub: Any) -> None:

    p = sub.add_parser("compare", help="compare the source and target databases")
    csub = p.add_subparsers(dest="what", metavar="WHAT")
    csub.required = True
    schema = csub.add_parser(
        "schema", help="compare object sets: tables, columns, indexes, constraints, ..."
    )
    data = csub.add_parser(
        "data", help="compare row counts and content of every table, sequences, large objects"
    )
    for c in (schema, data):
        add_source(c)
        add_target(c)
        c.add_argument("--dir", metavar="DIR", help="accepted for pgcopydb compatibility; unused")
        c.add_argument("--json", action="store_true", help="machine-readable output")
        add_logging_flags(c)
    data.add_argument(
        "--table-jobs",
        "--jobs",
        type=int,
        metavar="N",
        help="workers reading each side (env PGCOPYDB_TABLE_JOBS; default 4)",
    )
    schema.set_defaults(handler=handle_schema)
    data.set_defaults(handler=handle_data)


def handle_data(args: argparse.Namespace) -> int:
    source, target = resolve_conn(args, "source"), resolve_conn(args, "target")
    jobs = positive(
        "--table-jobs", args.table_jobs if args.table_jobs is not None else env_int("TABLE_JOBS", 4)
    )
    log.info("comparing data: %s -> %s (%d workers per side)", source.short(), target.short(), jobs)
    result = compare_data(source, target, jobs=jobs)
    if args.json:
        print_json(result.to_json())
    else:
        console = make_console()
        render_data(console, result)
        render_verdict(console, result.problems(), "data")
    return _exit_code(result.ok)


def handle_schema(args: argparse.Namespace) -> int:
    source, target = resolve_conn(args, "source"), resolve_conn(args, "target")
    log.info("comparing schemas: %s -> %s", source.short(), target.short())
    result = compare_schema(source, target)
    if args.json:
        print_json(result.to_json())
    else:
        console = make_console()
        render_schema(console, result)
        render_verdict(console, result.problems(), "schema")
    return _exit_code(result.ok)


def _exit_code(ok: bool) -> int:
    return int(ExitCode.OK if ok else ExitCode.FAILED)
