"""`pgferry verify`: compare source and target after a migration (PASS/WARN/FAIL).

Exit 0 when nothing failed (warnings included), 1 on any FAIL; bad input and connection
failures have their own codes (docs/exit-codes.md).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pgferry.catalog.filters import Filters, load_filters, no_filters
from pgferry.checks.verify import VerifyOptions, run_verify
from pgferry.cli.common import (
    add_filters,
    add_logging_flags,
    add_source,
    add_target,
    positive,
    resolve_conn,
)
from pgferry.cli.env import env_int, env_value
from pgferry.errors import InputError
from pgferry.state.store import Meta
from pgferry.ui.report import render_report

log = logging.getLogger(__name__)


def register(sub: Any) -> None:

    p = sub.add_parser(
        "verify",
        help="compare source and target: schema, counts, sequences, data (PASS/WARN/FAIL)",
        description=(
            "Compare the source and the target within the migration's filters. Quick mode "
            "(default) checks the catalogs, estimated row counts, sizes, sequences and "
            "spot-checks key ranges of the largest tables, in bounded time on any size; "
            "--full compares every row with chunked checksums and names differing keys."
        ),
    )
    add_source(p)
    add_target(p)
    add_filters(p)
    p.add_argument(
        "--dir",
        metavar="DIR",
        help="a migration's work directory (env PGCOPYDB_DIR): its filters are used when "
        "--filters is not given",
    )
    p.add_argument("--full", action="store_true", help="exact comparison of every row")
    p.add_argument(
        "--table-jobs",
        "--jobs",
        type=int,
        metavar="N",
        help="workers reading each side (env PGCOPYDB_TABLE_JOBS; default 4)",
    )
    p.add_argument(
        "--sample-tables",
        type=int,
        default=10,
        metavar="N",
        help="quick mode: how many of the largest tables to sample by key range (default 10)",
    )
    p.add_argument(
        "--row-tolerance",
        type=float,
        default=VerifyOptions.row_tolerance_pct,
        metavar="PCT",
        help="quick mode: estimated row counts may differ this much (default 5%%)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_logging_flags(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    source, target = resolve_conn(args, "source"), resolve_conn(args, "target")
    jobs = positive(
        "--table-jobs", args.table_jobs if args.table_jobs is not None else env_int("TABLE_JOBS", 4)
    )
    sample = positive("--sample-tables", args.sample_tables, low=0, high=10_000)
    if not 0 <= args.row_tolerance <= 1000:
        raise InputError(
            f"--row-tolerance must be between 0 and 1000, not {args.row_tolerance}",
            fix="give a percentage such as 5",
        )
    filters = _filters(args)
    log.info(
        "verifying %s -> %s (%s mode, %d workers per side)",
        source.short(),
        target.short(),
        "full" if args.full else "quick",
        jobs,
    )
    report = run_verify(
        source,
        target,
        filters,
        full=args.full,
        jobs=jobs,
        sample_tables=sample,
        options=VerifyOptions(row_tolerance_pct=args.row_tolerance),
    )
    if args.json:
        report.print_json()
    else:
        render_report(report)
    return report.exit_code()


def _filters(args: argparse.Namespace) -> Filters:
    """--filters, else the filters the migration in --dir ran with, else none."""
    workdir = args.dir or env_value("DIR")
    given = load_filters(args.filters) if args.filters else None
    stored = _stored_filters(Path(workdir)) if workdir else None
    if given is not None:
        if stored is not None and stored.fingerprint() != given.fingerprint():
            log.warning(
                "--filters differ from the filters the migration in %s ran with: %s "
                "(objects outside the migration's scope will show as missing)",
                workdir,
                "; ".join(stored.describe_difference(given)[:10]),
            )
        return given
    if stored is not None:
        log.info("using the filters of the migration in %s", workdir)
        return stored
    return no_filters()


def _stored_filters(workdir: Path) -> Filters | None:
    from pgferry.state.store import StateStore

    if not (workdir / StateStore.FILENAME).exists():
        log.warning("%s holds no migration state: its filters cannot be used", workdir)
        return None
    store = StateStore.open_dir(workdir, readonly=True)
    try:
        data = store.get_json(Meta.FILTERS)
    finally:
        store.close()
    return Filters.from_json(data) if data is not None else None
