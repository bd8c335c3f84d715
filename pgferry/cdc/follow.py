"""`pgferry follow`: change data capture on its own, and `pgferry cleanup`."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, overload

from pgferry import log as pflog
from pgferry.catalog.filters import Filters, no_filters
from pgferry.catalog.inscope import read_ancestors
from pgferry.catalog.model import Catalog, Sequence
from pgferry.catalog.queries import SEQUENCES_SQL
from pgferry.cdc.apply import ApplyScope
from pgferry.cdc.engine import (
    Cdc,
    CdcOptions,
    drop_interrupted_setup,
)
from pgferry.errors import InputError, Interrupted, PgferryError
from pgferry.pg.activity import APPLY_SESSIONS_SQL
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.lsn import lsn_or_none
from pgferry.pg.replication import (
    drop_origin,
    drop_publication,
    drop_slot,
    end_slot_user,
    lane_origins,
    origin_exists,
    slot_exists,
    slot_user,
)
from pgferry.pg.sessions import dir_tag, terminate_orphans
from pgferry.pg.settings import set_settings
from pgferry.pg.snapshot import Snapshot
from pgferry.state.store import Meta, StateStore
from pgferry.state.workdir import WorkDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FollowOptions:
    source: ConnInfo
    target: ConnInfo
    dir: Path
    cdc: CdcOptions = field(default_factory=CdcOptions)
    filters: Filters = field(default_factory=no_filters)
    resume: bool = False
    restart: bool = False


def run_follow(options: FollowOptions, stop: threading.Event | None = None) -> int:
    """Receive and apply changes until the end position; returns the applied LSN."""
    with _locked(options, stop, command="follow") as (o, store, cdc):
        scope = _prepare(o, store, cdc)
        cdc.start_receiver()
        if store.get_meta(Meta.APPLY_HOLD) != "1":
            store.set_sentinel(apply=1)
        return cdc.cutover(scope, _sequences(o, store), o.filters)


def _prepare(o: FollowOptions, store: StateStore, cdc: Cdc) -> ApplyScope:
    if cdc.is_set_up:
        if not o.resume:
            raise InputError(f"{o.dir} already holds a CDC setup", fix="continue it with --resume")
        if store.get_meta(Meta.CDC_DONE) == "1" and not o.resume:
            raise InputError(
                f"{o.dir} holds a finished migration",
                fix="nothing to follow; start a new one in another --dir",
            )
        cdc.ensure_slot()
        cdc.ensure_origin()
        if store.has_plan() and not _copy_done(store):
            raise InputError(
                "the clone in this directory has not finished copying",
                fix="resume it with pgferry clone --follow --resume",
            )
        log.info("following changes from slot %s (resuming)", store.get_meta(Meta.CDC_SLOT))
    else:
        drop_interrupted_setup(o.source, o.target, store)
        cdc.check_fresh()
        snapshot = cdc.create(o.filters)
        cdc.release_snapshot()
        store.set_meta(Meta.STARTED_AT, str(time.time()))
        log.warning(
            "new slot at %s: changes committed before it are not captured; the target must "
            "already hold the source's data as of that point",
            snapshot.lsn,
        )
        store.set_json(Meta.FOLLOW_FILTERS, o.filters.to_json())
    return _scope(o, store)


def _copy_done(store: StateStore) -> bool:
    return all(u.status == "done" for u in store.units() if u.kind == "copy")


def _scope(o: FollowOptions, store: StateStore) -> ApplyScope:
    if store.has_plan():
        tables = {
            (t.nspname, t.relname): lsn_or_none(t.snapshot_lsn) or 0
            for t in store.tables()
            if t.copy_data
        }
        return ApplyScope(tables=tables)
    return _everything(o)


def _everything(o: FollowOptions) -> ApplyScope:
    """`follow` without a clone in DIR: every table the filters keep on the source."""
    if o.filters.is_empty():
        return ApplyScope(tables={}, everything=True, filters=o.filters)
    with o.source.connect("pgferry scope") as conn:
        ancestors = read_ancestors(conn)
    return ApplyScope(tables={}, everything=True, filters=o.filters, ancestors=ancestors)


def _sequences(o: FollowOptions, store: StateStore) -> list[Sequence]:
    catalog = store.get_json(Meta.CATALOG)
    if catalog is not None:
        return list(Catalog.from_json(catalog).sequences)
    with o.source.connect("pgferry sequences") as conn:
        set_settings(conn, {"search_path": ""}, local=False)
        rows = conn.execute(SEQUENCES_SQL).fetchall()
    scope = _everything(o)
    return [Sequence(r[0], r[1], r[2], r[3]) for r in rows if scope.applies(r[1], r[2])]


@dataclass(frozen=True)
class CleanupResult:
    dropped: list[str]
    absent: list[str]


def cleanup(source: ConnInfo, target: ConnInfo, slot: str, origin: str) -> CleanupResult:
    """Drop the slot (ending its walsender) and the origin; idempotent."""
    dropped: list[str] = []
    absent: list[str] = []
    with source.connect("pgferry cleanup") as conn:
        exists, pid = slot_user(conn, slot)
        if not exists:
            absent.append(f"replication slot {slot} on the source")
        else:
            if pid is not None:
                end_slot_user(conn, slot, pid)
            drop_slot(conn, slot)
            dropped.append(f"replication slot {slot} on the source")
        if slot_exists(conn, slot):
            raise InputError(f"replication slot {slot} is still there")
        if drop_publication(conn, slot):  # pgoutput's, named after its slot
            dropped.append(f"publication {slot} on the source")
    with target.connect("pgferry cleanup") as conn:
        if not origin_exists(conn, origin):
            absent.append(f"replication origin {origin} on the target")
        else:
            rows = conn.execute(APPLY_SESSIONS_SQL).fetchall()
            for (pid,) in rows:
                conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            for name in lane_origins(conn, origin):  # with parallel apply's lanes
                drop_origin(conn, name)
                dropped.append(f"replication origin {name} on the target")
    return CleanupResult(dropped, absent)


@overload
def stream_setup(options: FollowOptions) -> Snapshot: ...
@overload
def stream_setup(options: FollowOptions, *, keep: Literal[True]) -> tuple[Snapshot, Cdc]: ...
def stream_setup(options: FollowOptions, *, keep: bool = False) -> Any:
    """`stream setup`: the slot (with pgoutput, its publication), the origin and the
    sentinel, as `follow` and `clone --follow` create them; nothing is received yet.
    With `keep` (`snapshot --follow`), the slot's snapshot stays exported: the Cdc that
    holds it is returned, for release_snapshot()."""
    with _locked(options, command="stream setup", keep_snapshot=keep) as (o, store, cdc):
        if cdc.is_set_up:
            raise InputError(
                f"{o.dir} already holds a CDC setup (slot {store.get_meta(Meta.CDC_SLOT)})",
                fix="go on with it (stream receive, follow --resume), or drop it with "
                "stream cleanup",
            )
        drop_interrupted_setup(o.source, o.target, store)
        cdc.check_fresh()
        snapshot = cdc.create(o.filters)
        store.set_json(Meta.FOLLOW_FILTERS, o.filters.to_json())
        if keep:
            return snapshot, cdc
        cdc.release_snapshot()
        return snapshot


def stream_receive(options: FollowOptions, stop: threading.Event | None = None) -> int:
    """`stream receive` (and prefetch): changes into DIR's spool until the end position
    is received (or a stop), nothing applied; returns the durable LSN."""
    stop = stop or threading.Event()
    with _locked(options, stop, command="stream receive") as (o, store, cdc):
        _require_setup(o, store, cdc)
        cdc.start_receiver()
        receiver = cdc.receiver
        assert receiver is not None
        while not receiver.finished():  # _locked stops it, whatever happens
            if stop.wait(0.5):
                raise Interrupted("stopped; run the same command again to go on")
        if receiver.error is not None:
            raise receiver.error
        return receiver.durable


def stream_catchup(options: FollowOptions, stop: threading.Event | None = None) -> int:
    """`stream catchup` (and apply): what DIR's spool holds applied to the target, up to
    the end position, exactly once (the replication origin); nothing is received."""
    stop = stop or threading.Event()
    with _locked(options, stop, command="stream catchup") as (o, store, cdc):
        _require_setup(o, store, cdc)
        cdc.ensure_origin()
        if store.get_meta(Meta.APPLY_HOLD) != "1":
            store.set_sentinel(apply=1)
        row = store.sentinel()
        if row is not None and row.endpos is None:
            log.info(
                "no end position: applying what arrives until stopped (set one with "
                "stream sentinel set endpos)"
            )
        return cdc.apply_until_endpos(_scope(o, store))


def _require_setup(o: FollowOptions, store: StateStore, cdc: Cdc) -> None:
    if not cdc.is_set_up:
        raise InputError(
            f"{o.dir} holds no CDC setup", fix="run pgferry stream setup with this --dir first"
        )
    cdc.options = replace(cdc.options, slot=store.get_meta(Meta.CDC_SLOT) or cdc.options.slot)


@contextmanager
def _locked(
    options: FollowOptions,
    stop: threading.Event | None = None,
    *,
    command: str,
    keep_snapshot: bool = False,
) -> Iterator[tuple[FollowOptions, StateStore, Cdc]]:
    """DIR taken for one CDC command (recorded as a run), the sessions a killed one left
    ended; its store and CDC handle, closed after."""
    tag = dir_tag(options.dir)
    o = replace(options, source=options.source.with_tag(tag), target=options.target.with_tag(tag))
    pflog.add_secret(o.source.password)
    pflog.add_secret(o.target.password)
    workdir = WorkDir(o.dir)
    workdir.create()
    workdir.lock()
    pflog.log_to_file(workdir.log_file)
    store = StateStore.open_dir(workdir.path)
    cdc = Cdc(o.source, o.target, workdir, store, o.cdc, stop or threading.Event())
    run_id = store.begin_run(command, os.getpid())
    try:
        for side in (o.source, o.target):
            terminate_orphans(side, tag)
        yield o, store, cdc
        store.end_run(run_id, "done")
    except BaseException as exc:
        cdc.release_snapshot()
        if isinstance(exc, Interrupted):
            store.end_run(run_id, "interrupted", exc.message)
        elif isinstance(exc, PgferryError):
            store.end_run(run_id, "failed", exc.one_line())
        raise
    finally:
        cdc.stop_receiver()
        if not keep_snapshot:
            cdc.release_snapshot()
        store.close()
        workdir.unlock()
