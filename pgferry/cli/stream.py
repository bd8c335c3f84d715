"""`pgferry stream sentinel ...` and `pgferry stop-cdc`: the CDC controls in DIR."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pgferry.cdc.engine import parse_endpos, set_endpos_current
from pgferry.cli.common import (
    add_dir,
    add_logging_flags,
    add_source,
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
    sentinel = ssub.add_parser("sentinel", help="read or set the CDC sentinel")
    sent = sentinel.add_subparsers(dest="sentinel_cmd", metavar="get|set")
    sent.required = True

    get = sent.add_parser("get", help="print the sentinel")
    add_dir(get)
    get.add_argument("--json", action="store_true")
    for name in SENTINEL_FIELDS:
        flag = "--" + name.replace("_", "-")
        get.add_argument(flag, dest=f"only_{name}", action="store_true", help=f"print only {name}")
    add_logging_flags(get)
    get.set_defaults(handler=handle_get)

    setp = sent.add_parser("set", help="set endpos, apply or prefetch")
    what = setp.add_subparsers(dest="what", metavar="endpos|apply|prefetch")
    what.required = True
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
