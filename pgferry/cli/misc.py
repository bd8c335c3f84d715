"""Small commands: ping, version, help."""

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

    v = sub.add_parser("version", help="print pgferry's version (as --version)")
    v.set_defaults(handler=handle_version)
    h = sub.add_parser("help", help="help on a command: pgferry help [COMMAND [SUBCOMMAND]]")
    h.add_argument("topic", nargs="*", metavar="COMMAND", help="the command to explain")
    h.set_defaults(handler=handle_help)


def handle_ping(args: argparse.Namespace) -> int:
    for role in ("source", "target"):
        info = resolve_conn(args, role)
        with info.connect("pgferry ping") as conn:
            version = conn.info.parameter_status("server_version")
        print(f"{role}: {info.short()} PostgreSQL {version}: ok")
    return 0


def handle_version(_args: argparse.Namespace) -> int:
    from pgferry import __version__

    print(f"pgferry {__version__}")
    return 0


def handle_help(args: argparse.Namespace) -> int:
    """The help of `pgferry TOPIC...`, as `pgferry TOPIC... --help` prints it."""
    from pgferry.cli.main import build_parser

    try:
        build_parser().parse_args([*args.topic, "--help"])
    except SystemExit as exc:  # argparse exits after printing the help (or an error)
        return int(exc.code or 0)
    return 0
