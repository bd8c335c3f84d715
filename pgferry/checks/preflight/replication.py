"""What --follow needs on the source: logical WAL, a role that may replicate, free slots and
WAL senders, our slot in the right state, nothing that would stall the slot's creation,
and a decoding plugin that loads.

Without --follow most of these are SKIP lines. The probes are the one place preflight
writes to the source: `probe_decoding_plugin` creates and drops a temporary slot, because
nothing else proves that the plugin's library loads.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from pgferry.catalog import providers
from pgferry.checks.preflight.facts import LISTED, PreflightOptions, RoleFacts, SourceFacts
from pgferry.checks.preflight.session import fetch_one, guarded_check
from pgferry.checks.report import Check, Report, Verdict
from pgferry.errors import PgferryError
from pgferry.pg.activity import OPEN_WRITE_TRANSACTIONS_SQL, WALSENDER_COUNT_SQL
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.describe import error_text
from pgferry.pg.plugins import PLUGINS
from pgferry.pg.profiles import PROBE
from pgferry.pg.replication import SlotRow, create_temporary_slot, drop_slot, list_slots
from pgferry.text import human_bytes, human_duration

LONG_TRANSACTION_SECONDS = 300


def judge_wal_level(wal_level: str, *, follow: bool, provider: str | None) -> Check:
    name = "source.wal_level"
    if wal_level == "logical":
        return Check(name, Verdict.PASS, "wal_level = logical")
    if not follow:
        return Check(
            name,
            Verdict.SKIP,
            f"wal_level = {wal_level}: enough without --follow (CDC needs logical)",
        )
    return Check(
        name,
        Verdict.FAIL,
        f"wal_level = {wal_level}: --follow needs logical decoding (wal_level = logical)",
        providers.wal_level_fix(provider),
    )


def judge_replication_role(role: RoleFacts, *, follow: bool, provider: str | None) -> Check:
    name = "source.replication_role"
    if role.superuser:
        return Check(name, Verdict.PASS, f"{role.user} is a superuser")
    if role.replication:
        return Check(name, Verdict.PASS, f"{role.user} has the REPLICATION attribute")
    if role.managed_replication_roles:
        return Check(
            name,
            Verdict.PASS,
            f"{role.user} is a member of {', '.join(role.managed_replication_roles)}",
        )
    message = f"{role.user} is neither a superuser nor has REPLICATION"
    if not follow:
        return Check(name, Verdict.SKIP, message + " (needed only for --follow)")
    return Check(
        name,
        Verdict.FAIL,
        message + ": it cannot create the replication slot --follow needs",
        providers.replication_fix(provider, role.user),
    )


def judge_capacity(
    name: str, what: str, used: int, maximum: int, needed: int, *, follow: bool, fix: str
) -> Check:
    """Free replication slots or WAL senders against what --follow takes."""
    free = maximum - used
    message = f"{used} of {maximum} {what} in use, {free} free"
    if not follow:
        return Check(name, Verdict.PASS if free > 0 else Verdict.SKIP, message)
    if free < needed:
        return Check(
            name,
            Verdict.FAIL,
            f"{message}: --follow needs {needed}",
            fix,
            {"used": used, "max": maximum, "needed": needed},
        )
    return Check(name, Verdict.PASS, message, details={"used": used, "max": maximum})


def judge_leftover_slot(
    slot: str, found: SlotRow | None, *, follow: bool, resume: bool, plugin: str, dbname: str
) -> Check:
    """Our slot: a leftover blocks a fresh --follow; a resumed one needs it intact."""
    name = "source.slot"
    cleanup = (
        f"pgferry cleanup --source ... --slot-name {slot} (if it is a leftover), or use --slot-name"
    )
    if found is None:
        if follow and resume:
            return Check(
                name,
                Verdict.WARN,
                f"replication slot {slot} does not exist: a --follow resume needs it, unless "
                "the previous run stopped before creating it",
                "if it was dropped, the changes since are lost: start over (pgferry cleanup, "
                "empty the target, clone --follow --restart)",
            )
        return Check(name, Verdict.PASS, f"no replication slot named {slot}")
    where = (
        f"{found.slot_type} slot in database {found.database}"
        if found.database
        else f"{found.slot_type} slot"
    )
    state = "active" if found.active else "inactive"
    if not (follow and resume):
        verdict = Verdict.FAIL if follow else Verdict.WARN
        extra = "" if follow else ": it holds back WAL on the source"
        return Check(
            name,
            verdict,
            f"replication slot {slot} already exists ({where}, {state}){extra}",
            cleanup,
        )
    if found.slot_type != "logical" or found.database != dbname:
        return Check(
            name,
            Verdict.FAIL,
            f"replication slot {slot} is a {where}, not a logical slot of {dbname}",
            "use the --slot-name of the migration being resumed",
        )
    if found.wal_status == "lost":
        return Check(
            name,
            Verdict.FAIL,
            f"replication slot {slot} was invalidated (wal_status lost): changes are missing",
            "start over: pgferry cleanup, empty the target, clone --follow --restart",
        )
    if found.active:
        return Check(
            name,
            Verdict.WARN,
            f"replication slot {slot} is in use by another session",
            "stop the pgferry still running on it (pgferry stop --dir DIR) before resuming",
        )
    message = f"replication slot {slot} exists and will be resumed ({found.plugin})"
    if found.plugin and found.plugin != plugin:
        message += f"; its plugin {found.plugin} is used, not --plugin {plugin}"
    return Check(name, Verdict.PASS, message)


def judge_wal_sender_timeout(timeout_ms: int, *, follow: bool, user: str) -> Check:
    name = "source.wal_sender_timeout"
    if timeout_ms == 0:
        return Check(name, Verdict.PASS, "wal_sender_timeout = 0")
    shown = human_duration(timeout_ms / 1000)
    if not follow:
        return Check(
            name, Verdict.SKIP, f"wal_sender_timeout = {shown} (matters only with --follow)"
        )
    role = sql.Identifier(user).as_string()
    return Check(
        name,
        Verdict.WARN,
        f"wal_sender_timeout = {shown}: a replication connection idle that long during an "
        "hours-long copy is dropped, and CDC has to recover",
        f"ALTER ROLE {role} SET wal_sender_timeout = 0; (for the migration role only), or "
        "wal_sender_timeout = 0 in the server configuration (parameter group on managed "
        "services), then reconnect",
    )


def check_slots(
    report: Report,
    conn: psycopg.Connection[Any],
    settings: Mapping[str, str],
    opts: PreflightOptions,
    dbname: str,
) -> None:
    """Replication slots: room for one more, and leftovers holding WAL."""
    with guarded_check(report, "source.replication_slots"):
        rows = list_slots(conn)
        slots = {r.name: r for r in rows}
        retained = {r.name: r.retained_bytes or 0 for r in rows}
        # The slot itself, and a temporary one when a resume redoes interrupted work.
        report.checks.append(
            judge_capacity(
                "source.replication_slots",
                "replication slots",
                len(slots),
                int(settings["max_replication_slots"]),
                1,
                follow=opts.follow,
                fix="raise max_replication_slots (restart; parameter group on managed "
                "services), or drop unused slots: SELECT pg_drop_replication_slot('name');",
            )
        )
        report.checks.append(
            judge_leftover_slot(
                opts.slot,
                slots.get(opts.slot),
                follow=opts.follow,
                resume=opts.resume,
                plugin=opts.plugin,
                dbname=dbname,
            )
        )
        stale = sorted(s for s, f in slots.items() if not f.active and s != opts.slot)
        if stale:
            shown = ", ".join(
                f"{s} ({slots[s].slot_type}, {human_bytes(retained[s])} retained"
                + (f", {slots[s].wal_status}" if slots[s].wal_status else "")
                + ")"
                for s in stale[:LISTED]
            )
            report.warn(
                "source.inactive_slots",
                f"{len(stale)} inactive slot(s) hold back WAL on the source: {shown}",
                "drop the ones nothing uses any more: SELECT pg_drop_replication_slot('name');",
            )
    with guarded_check(report, "source.wal_senders"):
        senders = int(fetch_one(conn, WALSENDER_COUNT_SQL))
        # The connection holding the slot's snapshot and the receiver stream at once.
        report.checks.append(
            judge_capacity(
                "source.wal_senders",
                "WAL senders",
                senders,
                int(settings["max_wal_senders"]),
                2,
                follow=opts.follow,
                fix="raise max_wal_senders (restart; parameter group on managed services)",
            )
        )


def check_max_slot_wal_keep_size(
    report: Report, settings: Mapping[str, str], opts: PreflightOptions
) -> None:
    """Whether max_slot_wal_keep_size could invalidate the slot during the copy."""
    value = settings.get("max_slot_wal_keep_size")
    if value is None or not opts.follow:
        return
    name = "source.max_slot_wal_keep_size"
    if int(value) < 0:
        report.ok(name, "max_slot_wal_keep_size = -1 (the slot keeps all the WAL it needs)")
        return
    report.warn(
        name,
        f"max_slot_wal_keep_size = {value}MB: the slot is invalidated if the receiver falls "
        "that far behind, and the migration must start over",
        "make sure pgferry keeps receiving during the copy (it does unless stopped), or set "
        "max_slot_wal_keep_size = -1 (reload; parameter group on managed services)",
    )


def check_long_transactions(report: Report, conn: psycopg.Connection[Any]) -> None:
    """Writing transactions running for long: creating the slot waits for them."""
    name = "source.long_transactions"
    with guarded_check(report, name):
        rows = conn.execute(
            OPEN_WRITE_TRANSACTIONS_SQL,
            (LONG_TRANSACTION_SECONDS, LISTED),
        ).fetchall()
        if not rows:
            report.ok(name, "no long-running writing transactions (among the visible sessions)")
            return
        shown = ", ".join(f"pid {r[0]} ({r[2]}@{r[1]}, {human_duration(r[3])})" for r in rows)
        report.warn(
            name,
            f"creating the replication slot waits until these transactions end: {shown}",
            "let them finish or end them (SELECT pg_terminate_backend(pid);) before starting",
        )


def probe_replication(
    report: Report, info: ConnInfo, facts: SourceFacts, opts: PreflightOptions
) -> None:
    """What --follow does first: a replication connection, and a slot with the plugin."""
    if opts.plugin not in PLUGINS:
        report.fail(
            "source.decoding_plugin",
            f"pgferry does not decode with {opts.plugin}",
            f"use --plugin {' or '.join(PLUGINS)}",
        )
        return
    name = "source.decoding_plugin"
    if facts.can_replicate is False:
        why = "not probed: the role cannot replicate (see source.replication_role)"
        report.skip("source.replication_connection", why)
        report.skip(name, why)
        return
    _probe_replication_connection(report, info)
    if facts.wal_level != "logical":
        report.skip(name, f"not probed: wal_level is {facts.wal_level}")
        return
    probe_decoding_plugin(report, info, opts.plugin)


def probe_decoding_plugin(report: Report, info: ConnInfo, plugin: str) -> None:
    """Create and drop a temporary logical slot with `plugin`: the only check that proves
    the plugin's library loads (pg_available_extensions does not list output plugins)."""
    name = "source.decoding_plugin"
    probe = f"pgferry_preflight_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with info.connect("pgferry preflight probe", settings=PROBE) as conn:
            create_temporary_slot(conn, probe, plugin)
            drop_slot(conn, probe)
    except PgferryError as exc:
        report.warn(name, f"not probed: {exc.message}", exc.fix)
        return
    except pgerrors.UndefinedFile as exc:
        report.fail(
            name,
            f"decoding plugin {plugin} is not installed on the source: {error_text(exc)}",
            _plugin_fix(plugin),
        )
        return
    except pgerrors.QueryCanceled:
        report.warn(
            name,
            f"not confirmed: creating a test slot waited more than "
            f"{PROBE['statement_timeout']} for running transactions to end; the "
            "migration's slot creation will wait for them too",
            "look for long or prepared transactions on the source (pg_stat_activity, "
            "pg_prepared_xacts) and end them before starting",
        )
        return
    except (pgerrors.InsufficientPrivilege, pgerrors.ConfigurationLimitExceeded) as exc:
        report.skip(name, f"not probed: {error_text(exc)}")
        return
    except psycopg.Error as exc:
        report.fail(
            name,
            f"cannot create a {plugin} slot: {error_text(exc)}",
            _plugin_fix(plugin),
        )
        return
    report.ok(name, f"a temporary {plugin} slot was created and dropped")


def _probe_replication_connection(report: Report, info: ConnInfo) -> None:
    name = "source.replication_connection"
    try:
        with info.connect_replication("pgferry preflight") as conn:
            result = conn.pgconn.exec_(b"IDENTIFY_SYSTEM")
            if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                raise pgerrors.error_from_result(result, encoding=conn.info.encoding)
    except PgferryError as exc:
        report.fail(
            name,
            f"a replication connection is refused: {exc.message}",
            "connect directly to the server, not through a pooler (pgbouncer, RDS Proxy); "
            "allow the role in pg_hba.conf; check REPLICATION and max_wal_senders",
        )
        return
    except psycopg.Error as exc:
        report.fail(
            name,
            f"the replication protocol is refused: {error_text(exc)}",
            "connect directly to the server, not through a pooler (pgbouncer, RDS Proxy)",
        )
        return
    report.ok(name, "replication connection accepted (IDENTIFY_SYSTEM)")


def _plugin_fix(plugin: str) -> str:
    if plugin == "wal2json":
        return (
            "install wal2json on the source (Debian/Ubuntu: postgresql-NN-wal2json; RDS, "
            "Aurora, Cloud SQL and Azure ship it), or use --plugin test_decoding"
        )
    if plugin == "test_decoding":
        return "install the PostgreSQL contrib package on the source (test_decoding is in it)"
    return f"install the {plugin} output plugin on the source"
