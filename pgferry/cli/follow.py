"""`pgferry follow` and `pgferry cleanup`."""

from __future__ import annotations

import argparse
from typing import Any

from pgferry.cli.clone import add_cdc_flags, cdc_options_from_args
from pgferry.cli.common import (
    add_dir,
    add_filters,
    add_logging_flags,
    add_notify_flags,
    add_source,
    add_target,
    resolve_conn,
    resolve_dir,
    resolve_filters,
    start_notify,
)
from pgferry.cli.metrics import add_metrics_flags, start_metrics
from pgferry.errors import UsageError
from pgferry.pg.identity import refuse_same_database
from pgferry.state.store import Meta, StateStore
from pgferry.state.workdir import WorkDir


def register(sub: Any) -> None:

    p = sub.add_parser("follow", help="replay changes from the source (CDC) until the end position")
    add_source(p)
    add_target(p)
    add_dir(p)
    add_filters(p)
    p.add_argument("--resume", action="store_true", help="continue CDC in DIR")
    p.add_argument("--restart", action="store_true", help="accepted for pgcopydb compatibility")
    p.add_argument(
        "--not-consistent", action="store_true", help="accepted for pgcopydb compatibility"
    )
    p.add_argument("--snapshot", help="accepted for pgcopydb compatibility")
    add_cdc_flags(p, follow=False)
    add_metrics_flags(p)
    add_notify_flags(p)
    add_logging_flags(p)
    p.set_defaults(handler=handle_follow)

    c = sub.add_parser("cleanup", help="drop the replication slot and origin of a migration")
    add_source(c)
    add_target(c)
    add_dir(c)
    c.add_argument("--slot-name", metavar="NAME", help="the slot (default: DIR's, else pgferry)")
    c.add_argument("--origin", metavar="NAME", help="the origin (default: DIR's, else pgferry)")
    add_logging_flags(c)
    c.set_defaults(handler=handle_cleanup)


def handle_follow(args: argparse.Namespace) -> int:
    from pgferry.cdc.follow import FollowOptions, run_follow

    if args.resume and args.restart:
        raise UsageError(
            "--resume and --restart cannot be used together",
            fix="--resume continues the run in DIR, --restart discards it: choose one",
        )
    source, target = resolve_conn(args, "source"), resolve_conn(args, "target")
    cdc = cdc_options_from_args(args)
    if args.resume:
        WorkDir(resolve_dir(args)).require_previous_run()
    refuse_same_database(source, target)
    start_notify(args, resolve_dir(args))
    start_metrics(args, resolve_dir(args), source, target)
    run_follow(
        FollowOptions(
            source=source,
            target=target,
            dir=resolve_dir(args),
            cdc=cdc,
            filters=resolve_filters(args),
            resume=args.resume,
        )
    )
    return 0


def handle_cleanup(args: argparse.Namespace) -> int:
    from pgferry.cdc.follow import cleanup

    workdir = resolve_dir(args)
    slot, origin = args.slot_name, args.origin
    state = workdir / StateStore.FILENAME
    if state.exists() and (slot is None or origin is None):
        store = StateStore.open_dir(workdir, readonly=True)
        try:
            slot = slot or store.get_meta(Meta.CDC_SLOT)
            origin = origin or store.get_meta(Meta.CDC_ORIGIN)
        finally:
            store.close()
    source, target = resolve_conn(args, "source"), resolve_conn(args, "target")
    refuse_same_database(source, target)
    result = cleanup(
        source,
        target,
        slot or "pgferry",
        origin or "pgferry",
    )
    for what in result.dropped:
        print(f"dropped {what}")
    for what in result.absent:
        print(f"already gone: {what}")
    return 0
