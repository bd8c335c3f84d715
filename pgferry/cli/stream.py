"""`pgferry stream sentinel ...` and `pgferry stop-cdc`: the CDC controls in DIR."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pgferry.catalog.filters import no_filters
from pgferry.cdc.engine import parse_endpos, set_endpos_current
from pgferry.cli.common import (
    add_decoding_flags,
    add_dir,
    add_filters,
    add_logging_flags,
    add_source,
    add_target,
    print_json,
    resolve_conn,
    resolve_dir,
)
from pgferry.errors import InputError, UsageError
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.lsn import format_lsn
from pgferry.state.store import Meta, StateStore

SENTINEL_FIELDS = ("startpos", "endpos", "apply", "write_lsn", "flush_lsn", "replay_lsn")


def register(sub: Any) -> None:

    stream = sub.add_parser("stream", help="CDC controls (pgcopydb compatible)")
    ssub = stream.add_subparsers(dest="stream_cmd", metavar="COMMAND")
    ssub.required = True
    _register_steps(ssub)
    sentinel = ssub.add_parser("sentinel", help="read or set the CDC sentinel")
    sent = sentinel.add_subparsers(dest="sentinel_cmd", metavar="get|set|setup|create|drop")
    sent.required = True
    for name in ("setup", "create"):
        q = sent.add_parser(
            name,
            help="set the start and end positions"
            + (" (alias of setup)" if name != "setup" else ""),
            description="pgferry's sentinel lives in DIR and is made by stream setup; this "
            "sets its start and end positions (pgcopydb's sentinel setup).",
        )
        q.add_argument("startpos", nargs="?", help="the LSN to receive from (before any is)")
        q.add_argument("endpos", nargs="?", help="the end position LSN")
        q.add_argument("--startpos", dest="startpos_flag", metavar="LSN", help="as above")
        q.add_argument("--endpos", dest="endpos_flag", metavar="LSN", help="as above")
        add_dir(q)
        add_logging_flags(q)
        q.set_defaults(handler=handle_sentinel_setup)
    drop = sent.add_parser(
        "drop",
        help="clear the end position (the sentinel itself goes with DIR)",
        description="pgferry keeps no sentinel table on the source: its sentinel is in DIR "
        "and goes with stream cleanup and the directory. This clears the end position.",
    )
    add_dir(drop)
    add_logging_flags(drop)
    drop.set_defaults(handler=handle_sentinel_drop)

    get = sent.add_parser("get", help="print the sentinel")
    add_dir(get)
    get.add_argument("--json", action="store_true", help="machine-readable output")
    for name in SENTINEL_FIELDS:
        flag = "--" + name.replace("_", "-")
        get.add_argument(flag, dest=f"only_{name}", action="store_true", help=f"print only {name}")
    add_logging_flags(get)
    get.set_defaults(handler=handle_get)

    setp = sent.add_parser("set", help="set endpos, apply or prefetch")
    what = setp.add_subparsers(dest="what", metavar="startpos|endpos|apply|prefetch")
    what.required = True
    startpos = what.add_parser("startpos", help="set the start position (before receiving)")
    startpos.add_argument("lsn", help="an LSN such as 0/3000148")
    add_dir(startpos)
    add_logging_flags(startpos)
    startpos.set_defaults(handler=handle_set_startpos)
    endpos = what.add_parser("endpos", help="set the end position")
    endpos.add_argument("lsn", nargs="?", help="an LSN such as 0/3000148")
    endpos.add_argument(
        "--current", action="store_true", help="the source's current WAL position (needs --source)"
    )
    add_dir(endpos)
    add_source(endpos)
    add_logging_flags(endpos)
    endpos.set_defaults(handler=handle_set_endpos)
    for name, value in (("apply", 1), ("prefetch", 0)):
        p = what.add_parser(
            name,
            help="let apply run" if value else "pause apply (keep receiving changes)",
        )
        add_dir(p)
        add_logging_flags(p)
        p.set_defaults(handler=handle_set_apply, apply_value=value)

    stop = sub.add_parser(
        "stop-cdc", help="cut over: set the end position to the source's current WAL position"
    )
    add_dir(stop)
    add_source(stop)
    stop.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add_logging_flags(stop)
    stop.set_defaults(handler=handle_stop_cdc)


def _store(args: argparse.Namespace, *, write: bool) -> StateStore:
    workdir = resolve_dir(args)
    if not (workdir / StateStore.FILENAME).exists():
        raise InputError(
            f"no pgferry state in {workdir}",
            fix="check --dir: it must be the directory of a clone --follow or follow",
        )
    store = StateStore.open_dir(workdir, readonly=not write)
    if store.sentinel() is None:
        store.close()
        raise InputError(
            f"{workdir} has no CDC sentinel (it was not a --follow run)",
            fix="pass the --dir of a clone --follow or follow run",
        )
    return store


def sentinel_dict(store: StateStore) -> dict[str, Any]:
    row = store.sentinel()
    assert row is not None
    values = row.to_json()
    out = {k: values[k] for k in SENTINEL_FIELDS}
    # Not sentinel fields (pgcopydb has none of them): what the slot decodes with.
    out["plugin"] = store.get_meta(Meta.CDC_PLUGIN)
    out["protocol"] = store.get_meta(Meta.CDC_PROTOCOL)
    return out


def handle_get(args: argparse.Namespace) -> int:
    store = _store(args, write=False)
    try:
        values = sentinel_dict(store)
    finally:
        store.close()
    only = [k for k in SENTINEL_FIELDS if getattr(args, f"only_{k}")]
    if only:
        for k in only:
            print(values[k] if values[k] is not None else "")
    elif args.json:
        print_json(values)
    else:
        for k in (*SENTINEL_FIELDS, "plugin", "protocol"):
            print(f"{k:<11} {values[k] if values[k] is not None else '-'}")
    return 0


def _source_for(args: argparse.Namespace, store: StateStore) -> ConnInfo:
    if getattr(args, "source", None) or _env_source():
        return resolve_conn(args, "source")
    raise UsageError("--current needs the source", fix="pass --source or set PGCOPYDB_SOURCE_PGURI")


def _env_source() -> bool:
    from pgferry.cli.env import env_value

    return env_value("SOURCE_PGURI") is not None


def handle_set_endpos(args: argparse.Namespace) -> int:
    if bool(args.lsn) == bool(args.current):
        raise UsageError(
            "give either an LSN or --current",
            fix="stream sentinel set endpos 0/16B3748, or --current with the source",
        )
    store = _store(args, write=True)
    try:
        if args.current:
            lsn = set_endpos_current(_source_for(args, store), store)
        else:
            lsn = parse_endpos(args.lsn)
            store.set_sentinel(endpos=format_lsn(lsn))
            store.set_meta(Meta.ENDPOS_KIND, "lsn")
    finally:
        store.close()
    print(format_lsn(lsn))
    return 0


def handle_set_apply(args: argparse.Namespace) -> int:
    store = _store(args, write=True)
    try:
        store.set_sentinel(apply=args.apply_value)
        # An explicit pause outlives the end of the copy (which otherwise enables apply).
        store.set_meta(Meta.APPLY_HOLD, "0" if args.apply_value else "1")
    finally:
        store.close()
    print("apply enabled" if args.apply_value else "apply paused (prefetch only)")
    return 0


def handle_stop_cdc(args: argparse.Namespace) -> int:
    from pgferry.cdc.protocol import current_wal_lsn

    store = _store(args, write=True)
    try:
        source = _source_for(args, store)
        with source.connect("pgferry stop-cdc") as conn:
            lsn = current_wal_lsn(conn)
        row = store.sentinel()
        assert row is not None
        print(f"source current WAL position: {format_lsn(lsn)}")
        print(f"applied so far:              {row.replay_lsn or '-'}")
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    "stop-cdc asks for confirmation",
                    fix="stop writes on the source, then run with --yes",
                )
            answer = input(
                "Writes on the source must be stopped. Set the end position "
                f"to {format_lsn(lsn)}? [y/N] "
            )
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing changed")
                return 1
        store.set_sentinel(endpos=format_lsn(lsn))
        store.set_meta(Meta.ENDPOS_KIND, "current")
    finally:
        store.close()
    print(
        f"end position set to {format_lsn(lsn)}: pgferry applies everything up to it, "
        "syncs sequences and exits"
    )
    return 0


def _register_steps(ssub: Any) -> None:
    """pgcopydb's stream steps: setup, then receive and catchup (one after the other, or
    replay for both at once), then cleanup."""
    for name in ("setup", "create"):
        q = ssub.add_parser(
            name,
            help="create the replication slot, the origin and the sentinel"
            + (" (alias of setup)" if name != "setup" else ""),
            description="Create the replication slot on the source (with pgoutput, its "
            "publication first), the replication origin on the target and the sentinel in "
            "DIR, as follow does; nothing is received yet. Prints the slot's snapshot and "
            "start position.",
        )
        add_source(q)
        add_target(q)
        add_dir(q)
        add_filters(q)
        add_decoding_flags(q)
        add_logging_flags(q)
        q.set_defaults(handler=handle_setup)
    for name in ("cleanup", "drop"):
        q = ssub.add_parser(
            name,
            help="drop the slot, its publication and the origin"
            + (" (alias of cleanup)" if name != "cleanup" else ""),
        )
        add_source(q)
        add_target(q)
        add_dir(q)
        q.add_argument(
            "--slot-name", metavar="NAME", help="the slot (default: DIR's, else pgferry)"
        )
        q.add_argument("--origin", metavar="NAME", help="the origin (default: DIR's, else pgferry)")
        add_logging_flags(q)
        q.set_defaults(handler=handle_cleanup)
    steps = (
        ("receive", "receive changes into DIR until the end position; apply none"),
        ("prefetch", "same as receive (changes are decoded as they are received)"),
        ("catchup", "apply the changes received into DIR, up to the end position"),
        ("apply", "same as catchup"),
        ("replay", "receive and apply at once, live, until the end position (follow)"),
    )
    for name, text in steps:
        q = ssub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        add_source(q)
        add_target(q)
        add_dir(q)
        q.add_argument("--endpos", metavar="LSN", help="set the end position first")
        add_logging_flags(q)
        q.set_defaults(handler=handle_step, step=name)


def follow_options(args: argparse.Namespace, cdc: Any = None) -> Any:
    from pgferry.cdc.engine import CdcOptions
    from pgferry.cdc.follow import FollowOptions
    from pgferry.cli.common import resolve_filters
    from pgferry.pg.identity import refuse_same_database

    source, target = resolve_conn(args, "source"), resolve_conn(args, "target")
    refuse_same_database(source, target)
    return FollowOptions(
        source=source,
        target=target,
        dir=resolve_dir(args),
        cdc=cdc or CdcOptions(),
        filters=resolve_filters(args) if getattr(args, "filters", None) else no_filters(),
        resume=True,
    )


def handle_setup(args: argparse.Namespace) -> int:
    from pgferry.cdc.follow import stream_setup
    from pgferry.cli.clone import cdc_options_from_args

    args.endpos = args.group_txns = args.apply_jobs = None
    args.slot_name = getattr(args, "slot_name", None)
    snapshot = stream_setup(follow_options(args, cdc_options_from_args(args)))
    print(f"slot created at {snapshot.lsn}; snapshot {snapshot.name} (released)")
    return 0


def handle_cleanup(args: argparse.Namespace) -> int:
    from pgferry.cli.follow import handle_cleanup as cleanup

    return cleanup(args)


def handle_step(args: argparse.Namespace) -> int:
    from pgferry.cdc.follow import run_follow, stream_catchup, stream_receive

    options = follow_options(args)
    if args.endpos:
        store = _store(args, write=True)
        try:
            store.set_sentinel(endpos=format_lsn(parse_endpos(args.endpos)))
            store.set_meta(Meta.ENDPOS_KIND, "lsn")
        finally:
            store.close()
    if args.step in ("receive", "prefetch"):
        lsn = stream_receive(options)
        print(f"received everything up to the end position; durable up to {format_lsn(lsn)}")
    elif args.step in ("catchup", "apply"):
        lsn = stream_catchup(options)
        print(f"applied up to {format_lsn(lsn)}")
    else:
        lsn = run_follow(options)
        print(f"applied up to {format_lsn(lsn)}")
    return 0


def handle_sentinel_setup(args: argparse.Namespace) -> int:
    start = args.startpos_flag or args.startpos
    end = args.endpos_flag or args.endpos
    store = _store(args, write=True)
    try:
        if start:
            _set_startpos(store, start)
        if end:
            store.set_sentinel(endpos=format_lsn(parse_endpos(end)))
            store.set_meta(Meta.ENDPOS_KIND, "lsn")
        values = sentinel_dict(store)
    finally:
        store.close()
    print(f"startpos {values['startpos'] or '-'}  endpos {values['endpos'] or '-'}")
    return 0


def handle_set_startpos(args: argparse.Namespace) -> int:
    store = _store(args, write=True)
    try:
        _set_startpos(store, args.lsn)
    finally:
        store.close()
    print(format_lsn(parse_endpos(args.lsn)))
    return 0


def _set_startpos(store: StateStore, text: str) -> None:
    """Only before anything is received: later it would skip or repeat changes."""
    lsn = parse_endpos(text)
    row = store.sentinel()
    assert row is not None
    if row.flush_lsn != row.startpos:
        raise InputError(
            "changes have been received already: the start position can no longer move",
            fix="leave it; set the end position instead (stream sentinel set endpos)",
        )
    value = format_lsn(lsn)
    store.set_sentinel(startpos=value, write_lsn=value, flush_lsn=value)


def handle_sentinel_drop(args: argparse.Namespace) -> int:
    store = _store(args, write=True)
    try:
        store.set_sentinel(endpos=None)
    finally:
        store.close()
    print("end position cleared")
    return 0
