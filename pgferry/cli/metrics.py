"""`pgferry metrics`, and --metrics-port on clone and follow: Prometheus metrics of DIR."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
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
from pgferry.pg.conninfo import ConnInfo


def register(sub: Any) -> None:
    p = sub.add_parser(
        "metrics",
        help="serve a migration's Prometheus metrics over HTTP, from its DIR",
        description="Serve the metrics of the migration in DIR (what pgferry status --json "
        "shows) at http://ADDRESS:PORT/metrics until stopped; with --source and --target "
        "also the servers' side (positions, the slot's WAL).",
    )
    add_dir(p)
    add_source(p)
    add_target(p)
    add_metrics_flags(p, default_port=9187)
    add_logging_flags(p)
    p.set_defaults(handler=handle_metrics)


def add_metrics_flags(p: argparse.ArgumentParser, *, default_port: int | None = None) -> None:
    g = p.add_argument_group("metrics")
    g.add_argument(
        "--metrics-port",
        type=int,
        default=default_port,
        metavar="PORT",
        help="serve Prometheus metrics on this port"
        + (f" (default {default_port})" if default_port else ""),
    )
    g.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the address to serve them on (default 127.0.0.1; 0.0.0.0 for all)",
    )


def start_metrics(
    args: argparse.Namespace,
    workdir: Path,
    source: ConnInfo | None = None,
    target: ConnInfo | None = None,
) -> None:
    """--metrics-port given: serve DIR's metrics from a daemon thread."""
    port = getattr(args, "metrics_port", None)
    if port is None:
        return
    from pgferry.monitor.metrics import serve

    if not 1 <= port <= 65535:
        raise InputError(f"--metrics-port {port} is not a port", fix="give 1 to 65535")
    try:
        serve(workdir, port, args.metrics_address, source, target)
    except OSError as exc:
        raise InputError(
            f"cannot serve metrics on {args.metrics_address}:{port}: {exc.strerror}",
            fix="choose another --metrics-port (or stop what uses it)",
        ) from None


def handle_metrics(args: argparse.Namespace) -> int:
    workdir = resolve_dir(args)
    start_metrics(
        args, workdir, resolve_optional_conn(args, "source"), resolve_optional_conn(args, "target")
    )
    print(
        f"serving the metrics of {workdir} on http://{args.metrics_address}:"
        f"{args.metrics_port}/metrics (Ctrl-C to stop)",
        flush=True,
    )
    threading.Event().wait()
    return 0
