"""`pgferry demo`: the whole workflow on two throwaway local clusters."""

from __future__ import annotations

import argparse
from typing import Any

from pgferry.cli.common import add_logging_flags


def register(sub: Any) -> None:

    p = sub.add_parser("demo", help="run a migration between two throwaway local clusters")
    p.add_argument(
        "--keep", action="store_true", help="leave the clusters running and print how to connect"
    )
    p.add_argument("--scale", type=int, default=1, help="sample data size factor")
    add_logging_flags(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pgferry.demo.run import run_demo

    return run_demo(keep=args.keep, scale=args.scale)
