"""`pgferry list ...`: what a work directory holds, readable while a run goes on."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pgferry.cli.common import add_dir, add_logging_flags, print_json, resolve_dir
from pgferry.errors import InputError
from pgferry.ui.progress_report import progress_report, render_progress


def register(sub: Any) -> None:

    p = sub.add_parser("list", help="list what a work directory holds")
    lsub = p.add_subparsers(dest="what", metavar="WHAT")
    lsub.required = True
    prog = lsub.add_parser("progress", help="phases and units of work, with their state")
    add_dir(prog)
    prog.add_argument("--json", action="store_true", help="machine-readable output")
    prog.add_argument("--summary", action="store_true", help="print the final summary JSON")
    add_logging_flags(prog)
    prog.set_defaults(handler=handle_progress)


def handle_progress(args: argparse.Namespace) -> int:
    workdir = resolve_dir(args)
    if args.summary:
        path = workdir / "summary.json"
        if not path.exists():
            raise InputError(f"no summary in {workdir} yet", fix="the clone has not finished")
        sys.stdout.write(path.read_text())
        return 0
    report = progress_report(workdir)
    if args.json:
        print_json(report)
    else:
        render_progress(report)
    return 0
