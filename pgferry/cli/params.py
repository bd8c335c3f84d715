"""`pgferry params`: the source's and the target's settings side by side."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pgferry.checks import params as params_ops
from pgferry.cli.common import (
    add_filters,
    add_logging_flags,
    add_source,
    add_target,
    print_json,
    resolve_conn,
    resolve_filters,
)
from pgferry.ui.console import make_console
from pgferry.ui.params import render_params

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "params",
        help="compare the source's and the target's settings",
        description="Compare pg_settings of the source and the target, grouped, with units "
        "normalised and what each change needs (session, reload, restart). Exit code 1 "
        "(FAIL) when the encoding, LC_COLLATE, LC_CTYPE, collation provider differ, or a "
        "collation the source's columns use is missing on the target; other differences "
        "that change application behaviour (TimeZone, DateStyle, search_path, "
        "preload libraries, major version, ...) are WARN, exit code 0.",
    )
    add_source(p)
    add_target(p)
    add_filters(p)
    p.add_argument("--all", action="store_true", help="every setting, not only the relevant ones")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_logging_flags(p)
    p.set_defaults(handler=handle_params)


def handle_params(args: argparse.Namespace) -> int:
    source, target = resolve_conn(args, "source"), resolve_conn(args, "target")
    result = params_ops.compare_params(source, target, resolve_filters(args))
    if args.json:
        print_json(result.to_json(args.all))
    else:
        render_params(make_console(), result, show_all=args.all)
    return result.exit_code()
