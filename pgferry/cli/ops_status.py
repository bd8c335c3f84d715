"""`pgferry status` and `pgferry cdc-status`: monitor a migration from any terminal."""

from __future__ import annotations

import argparse
from typing import Any

from pgferry.cli.common import (
    add_dir,
    add_logging_flags,
    add_source,
    add_target,
    resolve_dir,
    resolve_optional_conn,
)
from pgferry.errors import InputError

DEFAULT_WATCH_SECONDS = 2.0


def register(sub: Any) -> None:

    p = sub.add_parser(
        "status",
        help="migration dashboard: run state, phases, copy progress, errors, target sessions",
        description="Show where the migration in DIR stands. Exit code 0 while it runs or "
        "once it finished, 1 when it failed, was interrupted or killed.",
    )
    _common(p)
    p.add_argument(
        "--window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="rate window for the copy rate and ETA (default 60)",
    )
    add_logging_flags(p)
    p.set_defaults(handler=handle_status)

    c = sub.add_parser(
        "cdc-status",
        help="CDC positions, backlog, apply rate, ETA, slot health, lag, caught-up verdict",
        description="Show where change data capture stands. Exit code 1 when the slot is "
        "lost, or the run failed, was interrupted or killed.",
    )
    _common(c)
    c.add_argument(
        "--sample",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="one-shot report: seconds between the two samples the rates come from "
        "(default 2; 0 for no rates)",
    )
    add_logging_flags(c)
    c.set_defaults(handler=handle_cdc_status)


def _common(p: argparse.ArgumentParser) -> None:
    add_dir(p)
    add_source(p)
    add_target(p)
    p.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=DEFAULT_WATCH_SECONDS,
        metavar="SECONDS",
        help=f"refresh every SECONDS (default {DEFAULT_WATCH_SECONDS:g}) until the run ends",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _interval(args: argparse.Namespace) -> float:
    if args.watch is not None and args.watch <= 0:
        raise InputError(
            "--watch needs a positive number of seconds", fix="use --watch 2, for example"
        )
    return float(args.watch or DEFAULT_WATCH_SECONDS)


def handle_status(args: argparse.Namespace) -> int:
    from pgferry.monitor.rundir import Servers
    from pgferry.monitor.status import StatusReport, status_report
    from pgferry.ui.dashboard import render_status, render_watched_status, show, watch

    workdir = resolve_dir(args)
    servers = Servers(
        source=resolve_optional_conn(args, "source"), target=resolve_optional_conn(args, "target")
    )
    try:

        def build() -> StatusReport:
            return status_report(workdir, servers=servers, window=args.window)

        if args.watch is None:
            report = build()
            show(report, render_status, as_json=args.json)
            return int(report["exit_code"])
        return watch(
            build,
            render_watched_status,
            interval=_interval(args),
            as_json=args.json,
            live=lambda r: r["state"] == "running",
            exit_code=lambda r: int(r["exit_code"]),
        )
    finally:
        servers.close()


def handle_cdc_status(args: argparse.Namespace) -> int:
    from pgferry.monitor.cdc_status import CdcHistory, cdc_status_report
    from pgferry.monitor.rundir import Servers
    from pgferry.ui.dashboard import render_cdc_status, show, watch

    workdir = resolve_dir(args)
    servers = Servers(
        source=resolve_optional_conn(args, "source"), target=resolve_optional_conn(args, "target")
    )
    try:
        if args.watch is None:
            report = cdc_status_report(workdir, servers=servers, sample_seconds=args.sample)
            show(report, render_cdc_status, as_json=args.json)
            return int(report["exit_code"])
        history = CdcHistory()
        return watch(
            lambda: cdc_status_report(workdir, servers=servers, history=history),
            render_cdc_status,
            interval=_interval(args),
            as_json=args.json,
            live=lambda r: r["state"] == "running",
            exit_code=lambda r: int(r["exit_code"]),
        )
    finally:
        servers.close()
