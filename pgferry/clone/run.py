"""`pgferry clone`: the ten phases, in order, resumable at every step.

    catalog -> dump -> pre-data -> [copy | large objects | indexes | constraints | vacuum
    | sequences] -> post-data -> summary

Decisions (what to copy, how to split, what to build) are made once and stored; a
resumed run reads them back and only redoes what is not done.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql

from pgferry import events
from pgferry import log as pflog
from pgferry.catalog.facts import extension_names, large_object_oids
from pgferry.catalog.filters import Filters, QualifiedName
from pgferry.catalog.model import Catalog
from pgferry.catalog.plan import plan_units
from pgferry.catalog.queries import read_catalog
from pgferry.catalog.scope import (
    PG_CLASS,
    PG_CONSTRAINT,
    Scope,
    resolve_scope,
    without_publication,
)
from pgferry.catalog.target import (
    check_source_reads,
    missing_extensions,
    relation_exists,
    require_empty_target,
    user_objects,
)
from pgferry.catalog.toc import TocEntry, read_toc, render_use_list
from pgferry.cdc.apply import ApplyScope
from pgferry.cdc.engine import Cdc, CdcOptions, drop_interrupted_setup, settle_plugin
from pgferry.checks.preflight import judge_target_version, run_preflight
from pgferry.checks.preflight.local import NOTHING_INCLUDED, include_only_matches_nothing
from pgferry.checks.report import Verdict
from pgferry.clone.foreign_keys import (
    ForeignKey,
    add_not_valid,
    fk_entries,
    read_foreign_keys,
    validate,
)
from pgferry.clone.foreign_keys import from_json as fk_from_json
from pgferry.clone.foreign_keys import to_json as fk_json
from pgferry.clone.options import DATA_STEPS, PHASES, CloneOptions
from pgferry.clone.partitioned import PartitionedPass, partitioned_pass
from pgferry.clone.redo import copy_roles
from pgferry.clone.scheduler import Scheduler, kinds_of_steps
from pgferry.clone.schema import RestoreOptions, apply_database_settings, dump_schema, restore
from pgferry.clone.summary import build_summary
from pgferry.clone.workers import RunContext
from pgferry.errors import InputError, Interrupted, PgferryError, TableRewritten
from pgferry.faults import crash_point
from pgferry.pg.binaries import DumpTools, find_dump_tools
from pgferry.pg.identity import refuse_same_database_conns
from pgferry.pg.lsn import lsn_or_none
from pgferry.pg.profiles import DURABLE_WRITER, SNAPSHOT_READER
from pgferry.pg.sessions import dir_tag, terminate_orphans
from pgferry.pg.snapshot import Snapshot, SnapshotHolder, begin_on_snapshot
from pgferry.state.store import Meta, StateStore, Status, UnitKind
from pgferry.state.workdir import WorkDir
from pgferry.text import listed
from pgferry.ui.progress import make_reporter
from pgferry.ui.summary import print_summary

log = logging.getLogger(__name__)

# Above this many restore entries a single-transaction pre-data restore risks running
# out of lock table space on the target; it then runs without and cleans on resume.
SINGLE_TRANSACTION_MAX_ENTRIES = 4000


@dataclass
class Prepared:
    """What the early phases produced, for the later ones."""

    catalog: Catalog
    toc: list[TocEntry]
    scope: Scope
    tools: DumpTools


class Clone:
    """One invocation of `pgferry clone` on a work directory."""

    def __init__(self, options: CloneOptions) -> None:
        tag = dir_tag(options.dir)
        self.o = replace(
            options, source=options.source.with_tag(tag), target=options.target.with_tag(tag)
        )
        self.tag = tag
        self.workdir = WorkDir(options.dir)
        self.store: StateStore | None = None
        self.holder = SnapshotHolder(self.o.source)
        self.stop = threading.Event()
        self.cdc: Cdc | None = None
        # A resume's new snapshot: every worker locks all the tables still to copy at
        # once (see RunContext.lock_first).
        self.lock_first = False
        # A resume with tables still to copy takes its new snapshot only when the data
        # phase starts (see _fresh_snapshot).
        self.fresh_pending = False
        self.run_id = 0

    # -- entry point ----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) the clone; returns the summary. Raises PgferryError."""
        pflog.add_secret(self.o.source.password)
        pflog.add_secret(self.o.target.password)
        if self.o.resume:
            self.workdir.require_previous_run()
        self.workdir.create()
        self.workdir.lock()
        pflog.log_to_file(self.workdir.log_file)
        try:
            with self._signals():
                return self._run_locked()
        finally:
            self._release_snapshot()
            if self.cdc is not None:
                self.cdc.stop_receiver()
            if self.store is not None:
                self.store.close()
            self.workdir.unlock()

    def _run_locked(self) -> dict[str, Any]:
        o = self.o
        source = o.source.connect("pgferry check", settings=SNAPSHOT_READER)
        target = None if o.no_target else o.target.connect("pgferry check")
        try:
            source_major = int(source.info.server_version) // 10000
            target_major = source_major
            if target is not None:
                refuse_same_database_conns(source, target)
                self._refuse_downgrade(source_major, target)
                target_major = int(target.info.server_version) // 10000
            tools = find_dump_tools(source_major, target_major)
            self._decide_start(target)
            store = self.store
            assert store is not None
            self.run_id = store.begin_run("clone", os.getpid())
            events.emit("run_started", "clone started", command="clone")
            store.define_phases(PHASES)
            store.phase_reset_running()
            log.info(
                "source %s (PostgreSQL %s), target %s; using %s",
                o.source.short(),
                source.info.parameter_status("server_version"),
                "none"
                if target is None
                else f"{o.target.short()} (PostgreSQL "
                f"{target.info.parameter_status('server_version')})",
                tools.pg_dump,
            )
        finally:
            source.close()
            if target is not None:
                target.close()
        for side in (self.o.source,) if o.no_target else (self.o.source, self.o.target):
            terminate_orphans(side, self.tag)
        if o.follow:
            self.o = o = replace(o, cdc=self._plugin(o.cdc))
            if self.cdc is not None:
                self.cdc.options = o.cdc
        if not o.skip_preflight:
            self._preflight_checks()
        try:
            summary = self._phases(tools)
        except Interrupted as exc:
            self._end_run("interrupted", exc.message)
            raise
        except PgferryError as exc:
            self._end_run("failed", exc.one_line())
            raise
        except BaseException as exc:
            self._end_run("failed", f"internal error: {exc!r}")
            raise
        self._end_run("done", None)
        return summary

    def _plugin(self, cdc: CdcOptions) -> CdcOptions:
        """The plugin a resumed setup has, or the one a new slot gets."""
        assert self.store is not None
        stored = self.store.get_meta(Meta.CDC_PLUGIN)
        if stored:
            return replace(cdc, plugin=stored, plugin_chosen=True)
        return settle_plugin(self.o.source, self.o.filters, cdc)

    def _preflight_checks(self) -> None:
        """pgferry preflight, before anything is written: a FAIL stops the clone."""

        o = self.o
        resuming = self._target_written()
        report = run_preflight(
            o.source,
            o.target,
            o.filters,
            follow=o.follow,
            plugin=o.cdc.plugin,
            plugin_chosen=o.cdc.plugin_chosen,  # settled already: not decided again
            slot=o.cdc.slot,
            origin=o.cdc.origin,
            workdir=self.workdir.path,
            table_jobs=o.table_jobs,
            index_jobs=o.index_jobs,
            drop_if_exists=o.drop_if_exists or o.restart,
            resume=resuming,
            wal2json_numeric_as_string=o.cdc.numeric_as_string,
            allow_downgrade=o.allow_downgrade,
            no_owner=o.no_owner,
            no_acl=o.no_acl,
            create_roles=o.roles,
        )
        for check in report.warnings:
            log.warning(
                "preflight: %s: %s%s",
                check.name,
                check.message,
                f" (fix: {check.fix})" if check.fix else "",
            )
        if report.failed:
            # The first failure is the error line; any others are listed before it.
            for check in report.failed[1:]:
                log.error(
                    "preflight: %s: %s%s",
                    check.name,
                    check.message,
                    f" (fix: {check.fix})" if check.fix else "",
                )
            first = report.failed[0]
            more = f" (and {len(report.failed) - 1} more above)" if len(report.failed) > 1 else ""
            raise InputError(
                f"preflight failed: {first.name}: {first.message}{more}",
                fix=(first.fix or "see the preflight lines above")
                + "; run pgferry preflight for the full report",
            )
        log.info(
            "preflight: %d checks passed, %d warnings",
            len(report.checks) - len(report.warnings),
            len(report.warnings),
        )

    def _refuse_downgrade(self, source_major: int, target: Any) -> None:
        """Even with --skip-preflight: a target older than the source, before anything is
        written, unless --allow-downgrade."""
        check = judge_target_version(
            source_major,
            int(target.info.server_version) // 10000,
            target.info.parameter_status("server_version") or "?",
            allow_downgrade=self.o.allow_downgrade,
        )
        if check.verdict == Verdict.FAIL:
            raise InputError(check.message, fix=check.fix)

    def _end_run(self, status: str, error: str | None) -> None:
        if status == "done":
            events.emit("finished", "the clone is done", command="clone")
        if self.store is not None and self.run_id:
            self.store.end_run(self.run_id, status, error)
            self.store.set_meta(Meta.STATUS, status)

    # -- fresh start, resume or restart -------------------------------------------------
    def _decide_start(self, target: Any) -> None:
        o = self.o
        had_state = self.workdir.exists()
        if had_state and o.restart:
            old = StateStore.open_dir(self.workdir.path)
            try:
                counts = old.counts()
                done = sum(n for (_, st), n in counts.items() if st == Status.DONE)
                total = sum(counts.values())
                objects = user_objects(target) if target is not None else []
                if objects and not o.drop_if_exists:
                    raise InputError(
                        f"--restart: the target still holds {len(objects)} objects from the "
                        f"previous run ({', '.join(objects[:3])}...)",
                        fix="add --drop-if-exists to replace them, or empty the target with "
                        "pgferry target-clean, then --restart",
                    )
                log.warning(
                    "--restart: discarding the previous run in %s (%d of %d units done)",
                    self.workdir.path,
                    done,
                    total,
                )
                drop_interrupted_setup(o.source, o.target, old)
            finally:
                old.close()
            self.workdir.wipe()
            had_state = False
        self.store = StateStore.open_dir(self.workdir.path)
        started = self._target_written()
        if (
            had_state
            and not started
            and self.store.get_meta(Meta.STARTED_AT) is not None
            and self.store.get_meta(Meta.STATUS) != "done"  # e.g. a dump schema, to go on from
        ):
            # A previous attempt stopped before writing anything: start afresh.
            log.info(
                "previous run in %s never wrote to the target; starting afresh", self.workdir.path
            )
            drop_interrupted_setup(o.source, o.target, self.store)
            # In place, in one transaction: an end position stop-cdc gave the attempt that
            # stopped (or gives right now) is kept for this one.
            self.store.reset_keeping_endpos()
            self.workdir.wipe(keep_state=True)
        if started and not (o.resume or o.partial):
            raise InputError(
                f"{self.workdir.path} holds a previous clone (status: "
                f"{self.store.get_meta(Meta.STATUS, 'unknown')})",
                fix="continue it with --resume, or discard it with --restart",
            )
        if started or (had_state and o.partial):
            self._check_resume_compatible()
            return
        if not o.drop_if_exists and "pre-data" in o.steps:
            require_empty_target(target, o.target.dbname)
        if o.follow and not self._cdc().is_set_up:  # else made by stream setup, snapshot
            self._cdc().check_fresh()
        self.store.set_json(Meta.OPTIONS, self.o.plan_fingerprint())
        self.store.set_json(Meta.FILTERS, self.o.filters.to_json())
        self.store.set_meta(Meta.SOURCE, o.source.masked())
        self.store.set_meta(Meta.TARGET, o.target.masked())
        self.store.set_meta(Meta.STARTED_AT, str(time.time()))
        self.store.set_meta(Meta.STATUS, "running")

    def _cdc(self) -> Cdc:
        if self.cdc is None:
            assert self.store is not None
            self.cdc = Cdc(
                self.o.source, self.o.target, self.workdir, self.store, self.o.cdc, self.stop
            )
        return self.cdc

    def _release_snapshot(self) -> None:
        self.holder.release()
        if self.cdc is not None:
            self.cdc.release_snapshot()

    def _refuse_empty_scope(self, catalog: Catalog) -> None:
        """Even with --skip-preflight: filters that keep no table fail, before the target
        is written, rather than copy nothing and succeed."""

        relations = {QualifiedName(t.schema, t.name) for t in catalog.tables}
        schemas = {s.name for s in catalog.schemas}
        if include_only_matches_nothing(self.o.filters, relations, schemas):
            raise InputError(*NOTHING_INCLUDED)

    def _target_written(self) -> bool:
        """Did a previous run start writing to the target (pre-data restore onwards)?"""
        assert self.store is not None
        row = self.store.phase("pre-data")
        return row is not None and row.started_at is not None

    def _check_resume_compatible(self) -> None:
        assert self.store is not None
        stored = self.store.get_json(Meta.OPTIONS) or {}
        given = self.o.plan_fingerprint()
        if stored.get("target") is None or given["target"] is None:
            del given["target"]  # a dump schema run has none: it comes with a later step
        diffs = [
            f"{k}: was {stored.get(k)!r}, now {given.get(k)!r}"
            for k in sorted(given)
            if stored.get(k) != given.get(k)
        ]
        if "filters" in {d.split(":")[0] for d in diffs}:
            old = Filters.from_json(self.store.get_json(Meta.FILTERS))
            diffs = [d for d in diffs if not d.startswith("filters:")]
            diffs += [f"filters: {line}" for line in old.describe_difference(self.o.filters)]
        if diffs:
            raise InputError(
                "--resume with options that change the plan: " + "; ".join(diffs),
                fix="resume with the original options, or start over with --restart",
            )
        log.info(
            "%s the clone in %s",
            "going on with" if self.o.partial else "resuming",
            self.workdir.path,
        )
        if self.o.resume:
            events.emit("resumed", f"resuming the clone in {self.workdir.path}")
        self.store.set_meta(Meta.STATUS, "running")

    # -- the phases -----------------------------------------------------------------------
    def _phases(self, tools: DumpTools) -> dict[str, Any]:
        store = self.store
        assert store is not None
        t0 = time.time()
        snapshot = self._snapshot()
        catalog = self._phase_catalog(snapshot)
        snapshot = self._phase_dump(tools, snapshot)
        toc = read_toc(tools.pg_restore, self.workdir.dump_file)
        scope = resolve_scope(
            catalog,
            self.o.filters,
            toc,
            self.o.scope_options(),
        )
        if self.o.follow:
            scope = without_publication(
                scope, toc, store.get_meta(Meta.CDC_SLOT) or self.o.cdc.slot
            )
        for w in scope.warnings:
            log.warning("%s", w)
        self._refuse_empty_scope(catalog)
        prepared = Prepared(catalog, toc, scope, tools)
        steps = self.o.steps
        if steps - {"catalog", "dump"}:
            self._preflight(prepared)
        self._plan(prepared, snapshot)
        self._write_lists(prepared)
        if "pre-data" in steps:
            self._phase_pre_data(prepared)
        if steps & DATA_STEPS:
            self._data_phase(prepared, snapshot)
        self._release_snapshot()
        if "post-data" in steps:
            self._phase_post_data(prepared)
        summary = build_summary(store, catalog, self.o, wall=time.time() - t0)
        self.workdir.summary_file.write_text(json.dumps(summary, indent=2) + "\n")
        os.chmod(self.workdir.summary_file, 0o600)
        print_summary(summary)
        if self.o.follow:
            self._follow(prepared)
        return summary

    def _follow(self, p: Prepared) -> None:
        """After the copy: apply the prefetched and live changes until the end position."""
        store = self.store
        cdc = self.cdc
        assert store is not None and cdc is not None
        if store.get_meta(Meta.APPLY_HOLD) != "1":
            store.set_sentinel(apply=1)
        else:
            log.info("apply is paused (stream sentinel set prefetch): only receiving changes")
        tables = {}
        for t in store.tables():
            if t.copy_data:
                tables[(t.nspname, t.relname)] = lsn_or_none(t.snapshot_lsn) or 0
        sequences = [s for s in p.catalog.sequences if s.oid in p.scope.sequences]
        cdc.cutover(
            ApplyScope(tables=tables),
            sequences,
            self.o.filters,
            after_apply=self._validate_deferred_foreign_keys,
        )

    def _validate_deferred_foreign_keys(self) -> None:
        """Foreign keys added NOT VALID (a copy from mixed snapshots) hold once apply has
        caught up: validate them, once."""
        store = self.store
        assert store is not None
        deferred = store.get_json(Meta.DEFERRED_FOREIGN_KEYS) or []
        if deferred and store.get_meta(Meta.FOREIGN_KEYS_VALIDATED) != "1":
            with self.o.target.connect("pgferry validate", settings=DURABLE_WRITER) as conn:
                validate(conn, fk_from_json(deferred))
            store.set_meta(Meta.FOREIGN_KEYS_VALIDATED, "1")

    def _snapshot(self) -> Snapshot:
        if self.o.follow:
            return self._follow_snapshot()
        if self.o.not_consistent:
            log.info("--not-consistent: no shared snapshot; each worker reads the latest data")
            return Snapshot(None, None)
        if self.o.snapshot:
            return Snapshot(self.o.snapshot, None)
        return self.holder.export()

    def _follow_snapshot(self) -> Snapshot:
        """The slot's snapshot (fresh start), or a new one taken with its LSN (resume)."""
        store = self.store
        assert store is not None
        cdc = self._cdc()
        if not cdc.is_set_up:
            snapshot = cdc.create(self.o.filters)
        else:
            cdc.ensure_slot()
            cdc.ensure_origin()
            copied = store.has_plan() and all(
                u.status == Status.DONE for u in store.units() if u.kind == UnitKind.COPY
            )
            snapshot = Snapshot(None, None)
            if not copied:
                self.fresh_pending = True
                self.lock_first = True
        cdc.start_receiver()
        return snapshot

    def _fresh_snapshot(self, snapshot: Snapshot) -> Snapshot:
        """A resume's new snapshot, taken as late as possible: a TRUNCATE that commits
        between it and the workers' locks makes the copy start over (run_clone), so the
        receiver, the table of contents and the plan come first, and the workers lock
        the tables a few milliseconds after it is taken."""
        if not self.fresh_pending:
            return snapshot
        self.fresh_pending = False
        return self._cdc().fresh_snapshot()

    @contextmanager
    def _phase(self, name: str) -> Iterator[bool]:
        """Yields True when the phase still has to run; records its outcome."""
        store = self.store
        assert store is not None
        row = store.phase(name)
        if row is not None and row.status == Status.DONE:
            yield False
            return
        log.info("phase %s", name)
        events.emit("phase_started", f"phase {name} started", phase=name)
        store.phase_start(name, concurrency=1)
        try:
            yield True
        except BaseException:
            store.phase_done(name, status=Status.FAILED)
            raise
        store.phase_done(name)
        events.emit("phase_finished", f"phase {name} finished", phase=name)

    def _phase_catalog(self, snapshot: Snapshot) -> Catalog:
        store = self.store
        assert store is not None
        with self._phase("catalog") as todo:
            if todo:
                conn = self.o.source.connect("pgferry catalog", settings=SNAPSHOT_READER)
                try:
                    begin_on_snapshot(conn, snapshot)
                    catalog = read_catalog(conn, estimate_sizes=self.o.estimate_table_sizes)
                    conn.execute("ROLLBACK")
                finally:
                    conn.close()
                store.set_json(Meta.CATALOG, catalog.to_json())
                log.info(
                    "source: %d relations, %d indexes, %d sequences, %d large objects",
                    len(catalog.tables),
                    len(catalog.indexes),
                    len(catalog.sequences),
                    catalog.large_objects,
                )
        return Catalog.from_json(store.get_json(Meta.CATALOG))

    def _phase_dump(self, tools: DumpTools, snapshot: Snapshot) -> Snapshot:
        """The schema dump; returns the snapshot the run goes on with."""
        with self._phase("dump") as todo:
            if todo or not self.workdir.dump_file.exists():
                snapshot = self._fresh_snapshot(snapshot)
                dump_schema(
                    tools,
                    self.o.source,
                    self.workdir.dump_file,
                    snapshot=snapshot.name,
                    large_objects=not self.o.skip_large_objects,
                )
            crash_point("dumped")  # nothing written to the target yet
        return snapshot

    def _preflight(self, p: Prepared) -> None:
        """Checks that need the scope; nothing has been written to the target yet."""
        store = self.store
        assert store is not None
        if store.phase("pre-data") and store.phase("pre-data").status == Status.DONE:  # type: ignore[union-attr]
            return
        source = self.o.source.connect("pgferry check", settings=SNAPSHOT_READER)
        target = self.o.target.connect("pgferry check")
        try:
            if "pre-data" not in self.o.steps:
                # A later step alone (copy data, restore post-data): no schema to create.
                self._require_tables_on_target(target, p)
                if "copy" in self.o.steps:
                    check_source_reads(source, sorted(p.scope.copy_tables))
                return
            check_source_reads(source, sorted(p.scope.copy_tables))
            kept = {
                e.tag for e in p.toc if e.desc == "EXTENSION" and e.dump_id in p.scope.restore_ids
            }
            missing = missing_extensions(target, p.catalog, kept)
            installed = extension_names(target)
            absent = sorted(p.scope.preinstalled_extensions - installed)
            if absent:
                raise InputError(
                    f"extension(s) {', '.join(absent)} are not created by the clone (filters or "
                    "--skip-extensions) but kept objects use them, and the target lacks them",
                    fix="CREATE EXTENSION them on the target first, or keep them in the filters",
                )
            if missing:
                raise InputError(
                    f"the target cannot create extension(s) {', '.join(missing)}",
                    fix="install them on the target server, or exclude them "
                    "([exclude-extension] in the filters, or --skip-extensions)",
                )
        finally:
            source.close()
            target.close()

    def _require_tables_on_target(self, target: Any, p: Prepared) -> None:
        """A data step without the schema step: the tables must be on the target already."""
        names = [(t.schema, t.name) for t in p.catalog.tables if t.oid in p.scope.copy_tables]
        missing = [f"{s}.{n}" for s, n in names if not relation_exists(target, s, n)]
        if missing:
            raise InputError(
                f"the target lacks {len(missing)} of the tables to copy ({listed(missing, 5)})",
                fix="create the schema first: pgferry copy schema (or restore pre-data) with "
                "the same --dir",
            )

    def _plan(self, p: Prepared, snapshot: Snapshot) -> None:
        store = self.store
        assert store is not None
        if store.has_plan():
            self._reset_for_resume(p, snapshot)
            return
        lo_oids: list[int] = []
        if p.scope.large_objects:
            conn = self.o.source.connect("pgferry catalog", settings=SNAPSHOT_READER)
            try:
                begin_on_snapshot(conn, snapshot)
                lo_oids = large_object_oids(conn)
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        units, parts = plan_units(p.catalog, p.scope, self.o.plan_options(), lo_oids)
        for oid, n in parts.items():
            t = p.catalog.table(oid)
            store.add_table(oid, t.schema, t.name, t.bytes, t.reltuples, n, copy_data=True)
        store.add_units(units)
        store.set_meta(Meta.PLAN_DONE, "1")
        split = {oid: n for oid, n in parts.items() if n > 1}
        log.info(
            "plan: %d tables to copy (%d split into %d parts), %d indexes, %d sequences, "
            "%d large objects",
            len(parts),
            len(split),
            sum(split.values()),
            len(p.scope.indexes),
            len(p.scope.sequences),
            len(lo_oids),
        )

    def _reset_for_resume(self, p: Prepared, snapshot: Snapshot) -> None:
        """Make every unfinished unit pending; split tables not finished start over."""
        store = self.store
        assert store is not None
        redo: list[int] = []
        for u in store.units():
            if u.status in (Status.RUNNING, Status.FAILED):
                redo.append(u.id)
        copies = store.units(UnitKind.COPY)
        by_table: dict[int, list[Any]] = {}
        for u in copies:
            by_table.setdefault(u.table_oid, []).append(u)
        for t in store.tables():
            parts = by_table.get(t.oid, [])
            unfinished = t.parts > 1 and any(u.status != Status.DONE for u in parts)
            if unfinished and (t.snapshot != snapshot.name or snapshot.name is None):
                redo += [u.id for u in parts]
                store.set_table(t.oid, truncated=False, status=str(Status.PENDING))
        if redo:
            store.units_reset(set(redo))
            log.info("resume: %d units to redo", len(set(redo)))

    def _write_lists(self, p: Prepared) -> None:
        # post-data's lists are written by its phase (two passes, see clone/partitioned.py).
        self.pre_list = self.workdir.schema_dir / "pre-data.list"
        self.pre_list.write_text(render_use_list(p.toc, set(p.scope.restore_ids)))

    def _built_by_workers(self, p: Prepared) -> frozenset[int]:
        """Dump entries pgferry has built itself (so pg_restore must not): all of the
        indexes and constraints in scope after a clone's data phase, none when the data
        phase has not run (restore post-data), some after copy indexes."""
        assert self.store is not None
        by_oid = {i.oid: i for i in p.catalog.indexes}
        built = {
            (u.kind, u.obj_oid)
            for u in self.store.units()
            if u.kind in (UnitKind.INDEX, UnitKind.CONSTRAINT) and u.status == Status.DONE
        }
        constraint_oids = {
            by_oid[oid].constraint_oid
            for oid in p.scope.indexes
            if by_oid[oid].constraint_oid is not None and (UnitKind.CONSTRAINT, oid) in built
        }
        plain = {
            oid
            for oid in p.scope.indexes
            if by_oid[oid].constraint_oid is None and (UnitKind.INDEX, oid) in built
        }
        return frozenset(
            e.dump_id
            for e in p.toc
            if (e.desc == "INDEX" and e.catalog_oid == PG_CLASS and e.oid in plain)
            or (
                e.desc == "CONSTRAINT"
                and e.catalog_oid == PG_CONSTRAINT
                and e.oid in constraint_oids
            )
        )

    def _restore_options(self) -> RestoreOptions:
        return RestoreOptions(
            jobs=self.o.effective_restore_jobs,
            no_owner=self.o.no_owner,
            no_acl=self.o.no_acl,
            no_comments=self.o.no_comments,
            no_tablespaces=self.o.no_tablespaces,
            ignore_errors=self.o.ignore_restore_errors,
        )

    def _phase_pre_data(self, p: Prepared) -> None:
        store = self.store
        assert store is not None
        previous = store.phase("pre-data")
        tried = previous is not None and previous.started_at is not None
        with self._phase("pre-data") as todo:
            if not todo:
                return
            if self.o.roles:
                made = copy_roles(self.o.source, self.o.target, passwords=self.o.role_passwords)
                log.info(
                    "--roles: created %d role(s) on the target%s; %d were there already",
                    len(made.created),
                    f" ({listed(list(made.created), 10)})" if made.created else "",
                    made.existing,
                )
            single = len(p.scope.restore_ids) <= SINGLE_TRANSACTION_MAX_ENTRIES
            if tried and single and not self.o.drop_if_exists and self._pre_data_committed():
                # One transaction, on a target that was empty: it committed, and the
                # previous attempt stopped before recording it (killed, or DIR full).
                log.info("pre-data: restored by the previous attempt")
            else:
                restore(
                    p.tools,
                    self.o.target,
                    self.workdir.dump_file,
                    self.pre_list,
                    section="pre-data",
                    options=self._restore_options(),
                    single_transaction=single,
                    clean=self.o.drop_if_exists or (tried and not single),
                )
            crash_point("pre-data-restored")  # restored, not yet recorded
            if not self.o.skip_db_properties and p.catalog.settings:
                target = self.o.target.connect("pgferry pre-data", settings=DURABLE_WRITER)
                try:
                    skipped = apply_database_settings(target, p.catalog, self.o.target.dbname)
                finally:
                    target.close()
                for s in skipped:
                    log.warning("database setting not copied: %s", s)

    def _pre_data_committed(self) -> bool:
        """Does the target hold the objects a single-transaction pre-data creates?"""
        with self.o.target.connect("pgferry pre-data") as conn:
            return bool(user_objects(conn, extensions=False))

    def _data_phase(self, p: Prepared, snapshot: Snapshot) -> None:
        store = self.store
        assert store is not None
        # A table's data comes from the snapshot of the run that copied it; decide from
        # its units (a crash can fall between a unit's end and the table's status).
        unfinished = [u for u in store.units(UnitKind.COPY) if u.status != Status.DONE]
        pending = {u.table_oid for u in unfinished}
        early = self._open_early(len(unfinished))
        try:
            snapshot = self._fresh_snapshot(snapshot)
            ctx = RunContext(
                source=self.o.source,
                target=self.o.target,
                catalog=p.catalog,
                snapshot=snapshot,
                store=store,
                binary=self.o.use_copy_binary,
                maintenance_work_mem=self.o.maintenance_work_mem,
                use_tablespaces=not self.o.no_tablespaces,
                stop=self.stop,
                if_not_exists=self.o.partial,
                fail_fast=self.o.fail_fast,
            )
            if self.lock_first and snapshot.name is not None:
                ctx.lock_first = tuple(
                    sql.Identifier(t.nspname, t.relname) for t in store.tables() if t.oid in pending
                )
                ctx.lock_ahead(early)
        except BaseException:
            for conn in early:
                conn.close()
            raise
        try:
            self._run_data_phase(ctx, p, snapshot, pending)
        finally:
            ctx.close_ready()

    def _open_early(self, unfinished: int) -> list[psycopg.Connection[Any]]:
        """A resume's new snapshot is still to be taken: connect the copy workers' source
        sessions first, so that only the snapshot import and the locks follow it."""
        if not (self.fresh_pending and self.lock_first):
            return []
        conns: list[psycopg.Connection[Any]] = []
        try:
            for n in range(min(self.o.table_jobs, unfinished)):
                conns.append(self.o.source.connect(f"pgferry copy-{n}", settings=SNAPSHOT_READER))
        except BaseException:
            for conn in conns:
                conn.close()
            raise
        return conns

    def _run_data_phase(
        self, ctx: RunContext, p: Prepared, snapshot: Snapshot, pending: set[int]
    ) -> None:
        store = self.store
        assert store is not None
        ctx.truncated = {t.oid for t in store.tables() if t.truncated}
        for t in store.tables():
            if t.oid in pending:
                store.set_table(
                    t.oid,
                    snapshot=snapshot.name,
                    snapshot_lsn=snapshot.lsn,
                    status=str(Status.PENDING),
                )
            elif t.status != Status.DONE:
                store.set_table(t.oid, status=str(Status.DONE))
        sizes = {
            "copy": self.o.table_jobs,
            "index": self.o.index_jobs,
            "vacuum": self.o.table_jobs,
            "blobs": self.o.large_objects_jobs,
            "sequences": 1,
        }
        reporter = make_reporter(enabled=self.o.progress)
        scheduler = Scheduler(
            ctx, sizes, on_tick=reporter.update, kinds=kinds_of_steps(self.o.steps)
        )
        reporter.start()
        try:
            scheduler.run()
        finally:
            reporter.stop()
        for name in ("copy", "large-objects", "indexes", "constraints", "vacuum", "sequences"):
            if name not in self.o.steps:
                continue  # left for a later command (copy indexes, ...)
            row = store.phase(name)
            if row is not None and row.status == Status.PENDING:
                store.phase_done(name, status=Status.SKIPPED)

    def _phase_post_data(self, p: Prepared) -> None:
        store = self.store
        assert store is not None
        previous = store.phase("post-data")
        tried = previous is not None and previous.started_at is not None
        with self._phase("post-data") as todo:
            if not todo:
                return
            keep = set(p.scope.restore_ids - self._built_by_workers(p))
            deferred: list[ForeignKey] = []
            if self.o.follow and self._mixed_snapshots():
                # Parts of the copy come from different snapshots: foreign keys may not
                # hold until apply catches up. Add them NOT VALID, validate at the end.
                fks = fk_entries(p.toc, frozenset(keep))
                deferred = read_foreign_keys(self.o.source, [e.oid for e in fks])
                keep -= {e.dump_id for e in fks}
                store.set_json(Meta.DEFERRED_FOREIGN_KEYS, fk_json(deferred))
            first = partitioned_pass(self.o.source, p.toc, keep)
            if first.dump_ids:
                self._restore_partitioned(p, first)
                keep -= first.dump_ids
            post_list = self.workdir.schema_dir / "post-data-rest.list"
            post_list.write_text(render_use_list(p.toc, keep))
            restore(
                p.tools,
                self.o.target,
                self.workdir.dump_file,
                post_list,
                section="post-data",
                options=self._restore_options(),
                clean=tried,
            )
            crash_point("post-data-restored")
            if deferred:
                with self.o.target.connect("pgferry post-data", settings=DURABLE_WRITER) as conn:
                    add_not_valid(conn, deferred)
                log.info(
                    "%d foreign keys added NOT VALID: the copy mixes snapshots after a "
                    "resume; they are validated once apply has caught up",
                    len(deferred),
                )

    def _restore_partitioned(self, p: Prepared, first: PartitionedPass) -> None:
        """Partitioned tables' indexes and their attachments: one transaction, once."""
        if first.restored_on(self.o.target):
            log.info("post-data: the partitioned tables' indexes were restored already")
            return
        listed = self.workdir.schema_dir / "post-data-partitioned.list"
        listed.write_text(render_use_list(p.toc, set(first.dump_ids)))
        restore(
            p.tools,
            self.o.target,
            self.workdir.dump_file,
            listed,
            section="post-data",
            options=replace(self._restore_options(), jobs=1),
            single_transaction=True,
        )
        crash_point("post-data-partitioned")

    def _mixed_snapshots(self) -> bool:
        assert self.store is not None
        lsns = {t.snapshot_lsn for t in self.store.tables() if t.copy_data}
        return len(lsns) > 1

    # -- signals ----------------------------------------------------------------------
    @contextmanager
    def _signals(self) -> Iterator[None]:
        """Ctrl-C / SIGTERM: stop workers cleanly, leave DIR resumable."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: Any) -> None:
            if self.stop.is_set():
                raise KeyboardInterrupt
            log.warning(
                "received %s: stopping workers (send it again to abort at once)",
                signal.Signals(signum).name,
            )
            self.stop.set()

        previous: dict[int, Callable[..., Any] | int | None] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for number, h in previous.items():
                signal.signal(number, h)  # type: ignore[arg-type]


# A table truncated (or rewritten) on the source after the snapshot is copied again
# under a new one, in the same command, up to this many times.
RECOPY_ATTEMPTS = 5


def run_clone(options: CloneOptions) -> dict[str, Any]:
    """Run the clone. A table truncated or rewritten on the source after the copy's
    snapshot (TRUNCATE is not MVCC-safe: that snapshot would read it empty) is copied
    again under a new snapshot by resuming at once, as `--resume` would: every table
    records the LSN of the snapshot it was copied under, and apply skips the changes
    that snapshot already holds."""
    for attempt in range(1, RECOPY_ATTEMPTS + 1):
        try:
            return Clone(options).run()
        except TableRewritten as exc:
            if attempt == RECOPY_ATTEMPTS:
                raise
            log.warning(
                "%s; copying it again under a new snapshot (attempt %d of %d)",
                exc.message,
                attempt + 1,
                RECOPY_ATTEMPTS,
            )
            options = replace(options, resume=True, restart=False)
    raise AssertionError("unreachable")
