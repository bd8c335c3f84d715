"""`pgferry diagnose`: why is the copy slow or stuck?"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pgferry.cli.common import (
    add_logging_flags,
    add_source,
    add_target,
    print_json,
    resolve_conn,
    resolve_dir,
)
from pgferry.cli.env import env_value
from pgferry.errors import InputError
from pgferry.monitor import diagnose as diag_ops
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.sessions import dir_tag
from pgferry.state.store import StateStore
from pgferry.ui.console import make_console
from pgferry.ui.diagnose import render_diagnosis

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diagnose",
        help="why is the copy slow or stuck? (locks, waits, progress, autovacuum)",
        description="Sample pgferry's sessions on the target (and the source when given) "
        "twice, --seconds apart: lock waits and their blockers, wait events, bytes "
        "copied per second, autovacuum on the same tables; on the source, the COPY TO "
        "sessions, transactions holding back xmin and the slots' retained WAL. Exit code "
        "1 when a session made no progress and was blocked the whole window.",
    )
    add_target(p)
    add_source(p)
    p.add_argument(
        "--dir",
        metavar="DIR",
        help="only the sessions of the migration on DIR (default: every pgferry session)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        metavar="N",
        help="sampling window in seconds (default 5)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_logging_flags(p)
    p.set_defaults(handler=handle_diagnose)


def handle_diagnose(args: argparse.Namespace) -> int:
    if args.seconds < 0:
        raise InputError("--seconds must be 0 or more", fix="give seconds, e.g. 5")
    target = resolve_conn(args, "target")
    source: ConnInfo | None = None
    if args.source or env_value("SOURCE_PGURI"):
        source = resolve_conn(args, "source")
    tag = None
    running: dict[str, int] = {}
    if args.dir or env_value("DIR"):
        path = resolve_dir(args)
        tag = dir_tag(path)
        running = _running_units(path)
    result = diag_ops.diagnose(target, source, tag=tag, seconds=args.seconds, store_running=running)
    if args.json:
        print_json(result.to_json())
    else:
        render_diagnosis(make_console(), result)
    return result.exit_code()


def _running_units(path: Any) -> dict[str, int]:
    try:
        store = StateStore.open_dir(path, readonly=True)
    except InputError:
        return {}
    try:
        return {kind: n for (kind, status), n in store.counts().items() if status == "running"}
    finally:
        store.close()
