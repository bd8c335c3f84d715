"""`pgferry clone` (aliases `fork` and `copy-db`, as in pgcopydb)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pgferry.cdc.engine import (
    DEFAULT_APPLY_JOBS,
    DEFAULT_GROUP_TXNS,
    MAX_APPLY_JOBS,
    MAX_GROUP_TXNS,
    CdcOptions,
    parse_endpos,
)
from pgferry.cli.common import (
    add_decoding_flags,
    add_dir,
    add_downgrade_flag,
    add_filters,
    add_logging_flags,
    add_notify_flags,
    add_source,
    add_split_flags,
    add_target,
    positive,
    resolve_conn,
    resolve_decoding,
    resolve_dir,
    resolve_filters,
    resolve_optional_conn,
    resolve_size,
    start_notify,
)
from pgferry.cli.env import env_bool, env_int, env_value
from pgferry.cli.metrics import add_metrics_flags, start_metrics
from pgferry.clone.options import ALL_STEPS, SECTIONS, CloneOptions
from pgferry.errors import InputError, UsageError


def register(sub: Any) -> None:

    for name in ("clone", "fork", "copy-db"):
        p = sub.add_parser(
            name,
            help="copy a database: schema, data, indexes, constraints, sequences, large objects"
            if name == "clone"
            else "alias of clone",
            description="Clone the source database into the target database.",
        )
        add_clone_flags(p)
        p.set_defaults(handler=handle)


def add_clone_flags(p: argparse.ArgumentParser, *, section: str | None = None) -> None:
    """clone's flags; a granular command (`section`, see clone.options.SECTIONS) takes
    the same ones, less those of a whole migration (--follow and CDC, --dry-run)."""
    add_source(p)
    add_target(p)
    add_dir(p)
    add_filters(p)
    jobs = p.add_argument_group("concurrency")
    jobs.add_argument(
        "--table-jobs",
        "--jobs",
        type=int,
        metavar="N",
        help="COPY workers (env PGCOPYDB_TABLE_JOBS; default 4)",
    )
    jobs.add_argument(
        "--index-jobs",
        type=int,
        metavar="N",
        help="CREATE INDEX workers (env PGCOPYDB_INDEX_JOBS; default 4)",
    )
    jobs.add_argument(
        "--restore-jobs",
        type=int,
        metavar="N",
        help="pg_restore --jobs for post-data (default: --index-jobs)",
    )
    jobs.add_argument(
        "--large-objects-jobs", type=int, metavar="N", help="large object workers (default 4)"
    )
    add_split_flags(jobs)
    jobs.add_argument(
        "--skip-analyze",
        action="store_true",
        help="accepted for pgcopydb compatibility: pgferry never runs ANALYZE on the source",
    )
    sch = p.add_argument_group("schema")
    sch.add_argument(
        "--drop-if-exists",
        action="store_true",
        help="replace objects that already exist on the target",
    )
    sch.add_argument("--no-owner", action="store_true", help="do not restore ownership")
    sch.add_argument("--no-acl", action="store_true", help="do not restore privileges")
    sch.add_argument("--no-comments", action="store_true", help="do not restore comments")
    sch.add_argument(
        "--no-tablespaces",
        action="store_true",
        help="create everything in the default tablespace",
    )
    sch.add_argument(
        "--roles",
        action="store_true",
        help="first create the source cluster's roles the target lacks (copy roles)",
    )
    sch.add_argument(
        "--no-role-passwords",
        action="store_true",
        help="with --roles: create the roles without their passwords",
    )
    sch.add_argument(
        "--skip-ext-comments",
        "--skip-ext-comment",
        action="store_true",
        help="do not restore COMMENT ON EXTENSION (only the extension's owner may)",
    )
    sch.add_argument(
        "--skip-collations",
        action="store_true",
        help="do not create the source's own collations (create them on the target first)",
    )
    sch.add_argument(
        "--skip-publications",
        action="store_true",
        help="do not create the source's publications on the target",
    )
    sch.add_argument(
        "--skip-db-properties",
        action="store_true",
        help="do not copy ALTER DATABASE/ROLE ... SET settings",
    )
    sch.add_argument(
        "--skip-extensions",
        action="store_true",
        help="do not create extensions (create them on the target first)",
    )
    sch.add_argument(
        "--skip-large-objects",
        "--skip-blobs",
        action="store_true",
        help="do not copy large objects",
    )
    sch.add_argument("--skip-vacuum", action="store_true", help="no VACUUM ANALYZE")
    sch.add_argument(
        "--ignore-restore-errors",
        "--restore-tolerance",
        type=int,
        default=0,
        metavar="N",
        help="tolerate up to N pg_restore errors (each is reported)",
    )
    run = p.add_argument_group("run")
    run.add_argument("--resume", action="store_true", help="continue a previous run in DIR")
    run.add_argument(
        "--restart", action="store_true", help="discard a previous run in DIR and start over"
    )
    run.add_argument(
        "--not-consistent",
        action="store_true",
        help="no shared snapshot (each worker reads the latest data)",
    )
    run.add_argument(
        "--snapshot", metavar="ID", help="use this exported snapshot (env PGCOPYDB_SNAPSHOT)"
    )
    run.add_argument(
        "--use-copy-binary",
        action="store_true",
        help="COPY in binary format (same types on both sides)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress display")
    run.add_argument(
        "--fail-fast",
        action="store_true",
        help="at the first failure, cancel the work under way at once (env PGCOPYDB_FAIL_FAST)",
    )
    add_downgrade_flag(run)
    if section is not None:
        # The whole-database preflight (an empty target, CDC settings) is the clone's;
        # a granular command checks what its step needs.
        run.set_defaults(
            dry_run=False, follow=False, skip_preflight=True, detach=False, section=section
        )
        add_logging_flags(p)
        return
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (what would be copied, in what order, the disk it needs) "
        "and stop: nothing is written to either server",
    )
    run.add_argument(
        "--skip-preflight",
        action="store_true",
        help="do not run the preflight checks first (experts only)",
    )
    run.add_argument(
        "--detach",
        action="store_true",
        help="run in the background, immune to the terminal closing; "
        "log to DIR (follow it with pgferry status --watch)",
    )
    add_cdc_flags(p, follow=True)
    add_metrics_flags(p)
    add_notify_flags(p)
    add_logging_flags(p)


def add_cdc_flags(p: argparse.ArgumentParser, *, follow: bool) -> None:
    g = p.add_argument_group("change data capture")
    if follow:
        g.add_argument(
            "--follow",
            action="store_true",
            help="keep the target in sync after the copy (logical decoding)",
        )
    add_decoding_flags(g)
    g.add_argument(
        "--create-slot",
        action="store_true",
        help="accepted for pgcopydb compatibility (the slot is always created)",
    )
    g.add_argument("--endpos", metavar="LSN", help="stop applying at this LSN")
    g.add_argument(
        "--group-txns",
        metavar="N",
        type=int,
        help="apply up to N small source transactions already waiting as one target "
        f"transaction, each whole and in order (faster catch-up; 1 to {MAX_GROUP_TXNS}, "
        f"default {DEFAULT_GROUP_TXNS}; 1: one target transaction per source transaction; "
        "a live stream is applied one by one either way)",
    )
    g.add_argument(
        "--apply-jobs",
        metavar="N",
        type=int,
        help="apply on N target sessions at once: transactions that change different rows "
        f"run side by side, still committed in commit order and exactly once (1 to "
        f"{MAX_APPLY_JOBS}, default {DEFAULT_APPLY_JOBS})",
    )


def cdc_options_from_args(args: argparse.Namespace) -> CdcOptions:
    plugin, chosen, numeric = resolve_decoding(args)
    if numeric and plugin != "wal2json":
        raise UsageError(
            "--wal2json-numeric-as-string needs --plugin wal2json",
            fix="add --plugin wal2json, or leave out --wal2json-numeric-as-string",
        )
    return CdcOptions(
        slot=args.slot_name or "pgferry",
        plugin=plugin,
        origin=args.origin or "pgferry",
        endpos=endpos(args.endpos),
        numeric_as_string=numeric,
        group_txns=group_txns(args.group_txns),
        apply_jobs=apply_jobs(args.apply_jobs),
        plugin_chosen=chosen,
    )


def endpos(text: str | None) -> int | None:
    """--endpos as an LSN."""
    if not text:
        return None
    try:
        return parse_endpos(text)
    except InputError as exc:
        raise InputError(
            f"--endpos: {exc.message}", fix="give the end position as X/X, e.g. 0/16B3748"
        ) from None


def group_txns(value: int | None) -> int:
    return _in_range(
        value,
        "--group-txns",
        DEFAULT_GROUP_TXNS,
        MAX_GROUP_TXNS,
        "use 1 (one target transaction per source transaction) or a group size such as 32",
    )


def apply_jobs(value: int | None) -> int:
    return _in_range(
        value,
        "--apply-jobs",
        DEFAULT_APPLY_JOBS,
        MAX_APPLY_JOBS,
        "use 1 (one target session) or about as many as the target has cores",
    )


def _in_range(value: int | None, flag: str, default: int, most: int, fix: str) -> int:
    """A count flag's value: `default` when not given, else 1 to `most`."""
    if value is None:
        return default
    if not 1 <= value <= most:
        raise InputError(f"{flag} must be between 1 and {most}, not {value}", fix=fix)
    return value


def options_from_args(args: argparse.Namespace) -> CloneOptions:
    section: str | None = getattr(args, "section", None)
    source = resolve_conn(args, "source")  # first: its errors come first, as for every command
    target = (
        resolve_optional_conn(args, "target") if section == "dump" else resolve_conn(args, "target")
    )
    if args.resume and args.restart:
        raise UsageError(
            "--resume and --restart cannot be used together",
            fix="--resume continues the run in DIR, --restart discards it: choose one",
        )
    snapshot = args.snapshot or env_value("SNAPSHOT")
    if snapshot and args.not_consistent:
        raise UsageError(
            "--snapshot and --not-consistent cannot be used together",
            fix="--snapshot reads one exported snapshot, --not-consistent none: choose one",
        )

    def jobs(flag: int | None, env: str, default: int) -> int:
        value = flag if flag is not None else env_int(env, default)
        return positive(f"--{env.lower().replace('_', '-')}", value)

    table_jobs = jobs(args.table_jobs, "TABLE_JOBS", 4)
    index_jobs = jobs(args.index_jobs, "INDEX_JOBS", 4)
    restore_jobs = (
        args.restore_jobs if args.restore_jobs is not None else env_int("RESTORE_JOBS", 0)
    )
    if restore_jobs:
        positive("--restore-jobs", restore_jobs)
    split_max = (
        args.split_max_parts if args.split_max_parts is not None else env_int("SPLIT_MAX_PARTS", 0)
    )
    if split_max < 0 or (split_max == 0 and args.split_max_parts is not None):
        raise InputError(
            f"--split-max-parts must be 1 or more, not {split_max}",
            fix="give the most parts a split table may have, or leave the flag out for no cap",
        )
    return CloneOptions(
        source=source,
        target=target or source,
        no_target=target is None,
        dir=resolve_dir(args),
        table_jobs=table_jobs,
        index_jobs=index_jobs,
        restore_jobs=restore_jobs,
        large_objects_jobs=jobs(args.large_objects_jobs, "LARGE_OBJECTS_JOBS", 4),
        split_tables_larger_than=resolve_size(
            args.split_tables_larger_than, "SPLIT_TABLES_LARGER_THAN"
        ),
        split_max_parts=split_max,
        estimate_table_sizes=args.estimate_table_sizes or env_bool("ESTIMATE_TABLE_SIZES"),
        filters=resolve_filters(args),
        no_owner=args.no_owner,
        no_acl=args.no_acl,
        no_comments=args.no_comments,
        no_tablespaces=args.no_tablespaces or env_bool("SKIP_TABLESPACES"),
        skip_db_properties=args.skip_db_properties or env_bool("SKIP_DB_PROPERTIES"),
        skip_extensions=args.skip_extensions,
        skip_large_objects=args.skip_large_objects,
        skip_vacuum=args.skip_vacuum or env_bool("SKIP_VACUUM"),
        drop_if_exists=args.drop_if_exists or env_bool("DROP_IF_EXISTS"),
        resume=args.resume,
        restart=args.restart,
        not_consistent=args.not_consistent,
        snapshot=snapshot,
        use_copy_binary=args.use_copy_binary or env_bool("USE_COPY_BINARY"),
        ignore_restore_errors=positive(
            "--ignore-restore-errors",
            args.ignore_restore_errors or env_int("RESTORE_TOLERANCE", 0),
            low=0,
            high=1_000_000,
        ),
        maintenance_work_mem=env_value("MAINTENANCE_WORK_MEM") or "1GB",
        progress=not args.no_progress and not args.quiet,
        follow=args.follow,
        cdc=cdc_options_from_args(args) if section is None else CdcOptions(),
        skip_preflight=args.skip_preflight,
        allow_downgrade=args.allow_downgrade,
        roles=args.roles,
        role_passwords=not args.no_role_passwords,
        skip_ext_comments=args.skip_ext_comments,
        skip_collations=args.skip_collations,
        skip_publications=args.skip_publications,
        skip_split_by_ctid=args.skip_split_by_ctid or env_bool("SKIP_CTID_SPLIT"),
        fail_fast=args.fail_fast or env_bool("FAIL_FAST"),
        steps=SECTIONS[section] if section is not None else ALL_STEPS,
    )


def handle(args: argparse.Namespace) -> int:
    if args.detach:
        from pgferry.admin.detach import detach

        return detach(sys.argv[1:], resolve_dir(args))
    from pgferry.clone.run import run_clone

    options = options_from_args(args)
    if not args.dry_run:
        start_notify(args, options.dir)
        start_metrics(args, options.dir, options.source, options.target)
    if args.dry_run:
        from pgferry.clone.preview import print_plan

        print_plan(options)
        return 0
    run_clone(options)
    sys.stdout.flush()
    return 0
