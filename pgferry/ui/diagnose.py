"""Rendering of `pgferry diagnose`: pgferry's sessions and what surrounds them."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO, cast

from rich.console import Console
from rich.table import Table

from pgferry.text import human_bytes, human_duration
from pgferry.ui.report import render_report

if TYPE_CHECKING:  # annotations only: diagnose (monitor/) sits above ui/
    from pgferry.monitor.diagnose import Diagnosis, SideDiagnosis


def render_diagnosis(console: Console, d: Diagnosis) -> None:
    """Tables for the sessions and what surrounds them, then the verdicts."""
    for side in (d.target, d.source):
        if side is None:
            continue
        _render_sessions(console, side)
        if side.blocked:
            t = Table(title=f"{side.role}: backends waiting for locks", title_justify="left")
            for col in ("pid", "application", "wait", "blocked by", "query"):
                t.add_column(col, overflow="fold")
            for r in side.blocked:
                t.add_row(
                    str(r["pid"]),
                    r["application_name"] or "",
                    r["wait"] or "",
                    ", ".join(map(str, r["blocked_by"] or ())),
                    r["query"] or "",
                )
            console.print(t)
        if side.ungranted:
            t = Table(title=f"{side.role}: ungranted locks", title_justify="left")
            for col in ("pid", "locktype", "mode", "relation", "blocked by", "query"):
                t.add_column(col, overflow="fold")
            for r in side.ungranted:
                t.add_row(
                    str(r["pid"]),
                    r["locktype"],
                    r["mode"],
                    r["relation"] or "",
                    ", ".join(map(str, r["blocked_by"] or ())),
                    r["query"] or "",
                )
            console.print(t)
        if side.vacuums:
            t = Table(title=f"{side.role}: vacuums running", title_justify="left")
            for col in ("pid", "table", "phase", "scanned", "wait", "transaction age"):
                t.add_column(col, overflow="fold")
            for v in side.vacuums:
                t.add_row(
                    str(v.pid),
                    v.relation or str(v.relid),
                    v.phase,
                    f"{v.scanned_pct}%" if v.scanned_pct is not None else "",
                    v.wait or "",
                    human_duration(v.xact_seconds),
                )
            console.print(t)
        if side.idle_in_transaction:
            t = Table(
                title=f"{side.role}: {len(side.idle_in_transaction)} idle in transaction",
                title_justify="left",
            )
            for col in ("pid", "application", "idle for", "last query"):
                t.add_column(col, overflow="fold")
            for r in side.idle_in_transaction[:20]:
                t.add_row(
                    str(r["pid"]),
                    r["application_name"] or "",
                    human_duration(r["seconds"]),
                    r["query"] or "",
                )
            console.print(t)
        if side.waits:
            t = Table(title=f"{side.role}: wait events", title_justify="left")
            for col in ("backend type", "state", "wait type", "wait event", "count"):
                t.add_column(col)
            for r in side.waits:
                t.add_row(
                    r["backend_type"],
                    r["state"],
                    r["wait_event_type"],
                    r["wait_event"],
                    str(r["count"]),
                )
            console.print(t)
        if side.slots:
            t = Table(title=f"{side.role}: replication slots", title_justify="left")
            for col in ("slot", "plugin", "active", "wal_status", "retained WAL"):
                t.add_column(col)
            for r in side.slots:
                t.add_row(
                    r["slot_name"],
                    r["plugin"] or "",
                    "yes" if r["active"] else "no",
                    r["wal_status"] or "",
                    human_bytes(r["retained_bytes"]) if r["retained_bytes"] is not None else "",
                )
            console.print(t)
    console.print(
        "Wait events: Client:ClientRead = the target waits for data (the source side is "
        "slow); Client:ClientWrite = the source waits for pgferry to take data (the target "
        "side is slow); IO = disk-bound; Lock/LWLock = contention; IPC:SyncRep = waiting "
        "for a synchronous standby.",
        soft_wrap=True,
        style="dim",
    )
    render_report(d.report, cast(TextIO, console.file))


def _render_sessions(console: Console, side: SideDiagnosis) -> None:
    if not side.sessions:
        return
    t = Table(title=f"{side.role}: pgferry sessions", title_justify="left")
    for col in ("pid", "command", "table", "wait", "running for", "progress", "rate", "verdict"):
        t.add_column(col, overflow="fold")
    for s in side.sessions:
        cur = s.after or s.before
        if cur.bytes_processed is not None:
            progress = human_bytes(cur.bytes_processed)
        elif cur.phase:
            progress = cur.phase
        else:
            progress = ""
        rate = f"{human_bytes(s.rate)}/s" if s.rate is not None else ""
        t.add_row(
            str(cur.pid),
            cur.command,
            cur.relation or "",
            cur.wait or "",
            human_duration(cur.query_seconds),
            progress,
            rate,
            str(s.verdict),
        )
    console.print(t)
