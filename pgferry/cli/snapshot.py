"""`pgferry snapshot`: export a snapshot of the source and hold it until stopped, for
commands run meanwhile with --snapshot (pgcopydb's `snapshot`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from pgferry.cli.common import (
    add_decoding_flags,
    add_dir,
    add_logging_flags,
    add_source,
    add_target,
    resolve_conn,
    resolve_dir,
)

SNAPSHOT_FILE = "snapshot"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "snapshot",
        help="export a snapshot of the source and hold it until stopped",
        description="Export a snapshot of the source database, print its name, write it "
        "to DIR/snapshot and hold it until SIGTERM or Ctrl-C: clone, copy and dump commands "
        "run meanwhile with --snapshot NAME read the source as of that instant. With "
        "--follow, the snapshot is the new replication slot's (stream setup, --target "
        "needed): a clone --follow in the same DIR then goes on from the slot.",
    )
    add_source(p)
    add_target(p)
    add_dir(p)
    p.add_argument("--follow", action="store_true", help="create the replication slot too")
    add_decoding_flags(p)
    add_logging_flags(p)
    p.set_defaults(handler=handle_snapshot)


def handle_snapshot(args: argparse.Namespace) -> int:
    from pgferry.pg.snapshot import Snapshot, SnapshotHolder
    from pgferry.state.workdir import WorkDir

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    workdir = WorkDir(resolve_dir(args))
    workdir.create()
    holder = SnapshotHolder(resolve_conn(args, "source"))
    cdc: Any = None
    if args.follow:
        snapshot, cdc = _slot_snapshot(args)
    else:
        snapshot = holder.export()
    assert isinstance(snapshot, Snapshot)
    path = workdir.path / SNAPSHOT_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{snapshot.name}\n")
        print(snapshot.name, flush=True)
        print(
            f"holding snapshot {snapshot.name} (LSN {snapshot.lsn}); stop with Ctrl-C or "
            f"kill {os.getpid()}",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
    finally:
        path.unlink(missing_ok=True)
        holder.release()
        if cdc is not None:
            cdc.release_snapshot()
    return 0


def _slot_snapshot(args: argparse.Namespace) -> tuple[Any, Any]:
    """stream setup, keeping the slot's exported snapshot (DIR is left free)."""
    from pgferry.cdc.follow import stream_setup
    from pgferry.cli.clone import cdc_options_from_args
    from pgferry.cli.stream import follow_options

    args.endpos = args.group_txns = args.apply_jobs = None
    args.slot_name = getattr(args, "slot_name", None)
    return stream_setup(follow_options(args, cdc_options_from_args(args)), keep=True)
