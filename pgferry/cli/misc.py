"""Small commands: ping."""

from __future__ import annotations

import argparse
from typing import Any

from pgferry.cli.common import add_logging_flags, add_source, add_target, resolve_conn


def register(sub: Any) -> None:

    p = sub.add_parser("ping", help="connect to the source and the target")
    add_source(p)
    add_target(p)
    add_logging_flags(p)
    p.set_defaults(handler=handle_ping)


def handle_ping(args: argparse.Namespace) -> int:
    for role in ("source", "target"):
        info = resolve_conn(args, role)
        with info.connect("pgferry ping") as conn:
            version = conn.info.parameter_status("server_version")
        print(f"{role}: {info.short()} PostgreSQL {version}: ok")
    return 0
