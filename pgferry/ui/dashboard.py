"""Rendering of `status` and `cdc-status` reports, once or live (`--watch`).

Reports are plain dicts (the same ones `--json` prints); this module only turns them into
rich renderables. Colour appears on a terminal only (rich decides from the stream).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pgferry.text import human_bytes, human_duration
from pgferry.ui.console import make_console

if TYPE_CHECKING:  # annotations only: the reports' shapes live with their builders (monitor/)
    from pgferry.monitor.cdc_status import CdcReport, CdcSummary, EndposJson
    from pgferry.monitor.rundir import RunJson
    from pgferry.monitor.status import (
        ActiveOperations,
        StatusReport,
        UnitCounts,
    )

R = TypeVar("R")

STATE_STYLE = {
    "running": "bold green",
    "finished": "bold green",
    "failed": "bold red",
    "killed": "bold red",
    "interrupted": "bold yellow",
    "not started": "yellow",
}
PHASE_STYLE = {
    "done": "green",
    "running": "yellow",
    "stopped": "red",
    "failed": "bold red",
    "skipped": "dim",
    "pending": "dim",
}
VERDICT_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _b(n: float | None) -> str:
    return "-" if n is None else human_bytes(n)


def _rate(n: float | None) -> str:
    return "-" if n is None else f"{human_bytes(n)}/s"


def _state_line(run: RunJson, state: str) -> Text:
    text = Text()
    text.append(state.upper(), style=STATE_STYLE.get(state, "bold"))
    if run.get("pid"):
        text.append(f" (pid {run['pid']})")
    if run.get("command"):
        text.append(f"  {run['command']}")
    if run.get("runs", 0) > 1:
        text.append(f" (run {run['runs']}, resumed)")
    text.append(f"  started {_when(run.get('started_at'))}")
    if run.get("runs", 0) > 1 and run.get("first_started_at"):
        text.append(f" (migration started {_when(run['first_started_at'])})")
    text.append(f"  elapsed {human_duration(run.get('elapsed'))}")
    if state == "killed":
        text.append(
            f"\n  no process holds the directory; last activity {_when(run.get('last_activity'))}"
            " (kill -9, crash or reboot): resume with the same command and --resume",
            style="red",
        )
    elif state == "interrupted":
        text.append("\n  stopped; resume with the same command and --resume", style="yellow")
    return text


# -- status ----------------------------------------------------------------------------


def _counts(c: UnitCounts) -> str:
    parts = [f"{c['done']}/{c['total']}"]
    for key in ("running", "failed", "interrupted", "skipped"):
        if c.get(key):
            parts.append(f"{c[key]} {key}")
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


def _phase_detail(name: str, report: StatusReport) -> str:
    copy = report["copy"]
    details = {
        "copy": f"{copy['parts_done']}/{copy['parts_total']} parts" if copy["parts_total"] else "",
        "indexes": _counts(report["indexes"]) if report["indexes"]["total"] else "",
        "constraints": _counts(report["constraints"]) if report["constraints"]["total"] else "",
        "vacuum": _counts(report["vacuum"]) if report["vacuum"]["total"] else "",
        "sequences": _counts(report["sequences"]) if report["sequences"]["total"] else "",
        "large-objects": _counts(report["large_objects"])
        if report["large_objects"]["total"]
        else "",
    }
    return details.get(name, "")


def _copy_lines(report: StatusReport) -> list[str]:
    c = report["copy"]
    if not c["parts_total"]:
        return []
    tables = f"tables {c['tables_done']}/{c['tables_total']}"
    if c["split_tables"]:
        tables += f" (incl. {c['split_parts']} parts from {c['split_tables']} split tables)"
    parts = f"parts {_counts(c)}"  # the copy's units are its parts
    pct = f" ({c['percent']:.1f}%)" if c["percent"] is not None else ""
    data = f"data {_b(c['bytes_copied'])} of ~{_b(c['bytes_estimated_total'])}{pct}"
    if c["rate_bytes_per_second"] is not None:
        data += (
            f", {_rate(c['rate_bytes_per_second'])} over the last "
            f"{human_duration(c['rate_window_seconds'])}"
        )
    elif c["average_rate_bytes_per_second"] is not None:
        data += f", {_rate(c['average_rate_bytes_per_second'])} on average"
    if c["eta_seconds"] is not None and c["parts_done"] < c["parts_total"]:
        data += f", ETA {human_duration(c['eta_seconds'])}"
    return [f"copy: {tables}; {parts}", f"      {data}"]


# status --watch: what a 50-row terminal shows at most of each list (the rest folded).
WATCH_ROWS = {"running": 6, "sessions": 5, "log": 3, "errors": 4}


def render_watched_status(report: StatusReport) -> RenderableType:
    """The dashboard for status --watch: errors first, finished phases and long lists
    folded, so that it fits a 50-row terminal."""
    return render_status(report, compact=True)


def render_status(report: StatusReport, *, compact: bool = False) -> RenderableType:
    """The dashboard: state, phases, progress, running work, errors, CDC, server sessions.
    `compact`: errors right after the state, finished phases in one line, lists cut to
    WATCH_ROWS (each saying how many more there are)."""
    items: list[RenderableType] = []
    items.append(Text(f"pgferry status: {report['dir']}", style="bold blue"))
    items.append(_state_line(report["run"], report["state"]))
    if report.get("source") or report.get("target"):
        items.append(
            Text(f"source {report.get('source')}\ntarget {report.get('target')}", style="dim")
        )
    if compact:
        items.append(_errors(report, compact))
    phases = report["phases"]
    if compact:  # finished and pending phases in a line each, the others in the table
        for states, what in ((("done", "skipped"), "done"), (("pending",), "to come")):
            folded = [p["name"] for p in phases if p["status"] in states]
            if folded:
                items.append(Text(f"phases {what}: {', '.join(folded)}", style="dim"))
        phases = [p for p in phases if p["status"] not in ("done", "skipped", "pending")]
    if phases:
        t = Table(title="phases", title_justify="left", show_edge=False, pad_edge=False)
        for col, just in (
            ("#", "right"),
            ("phase", "left"),
            ("status", "left"),
            ("duration", "right"),
            ("progress", "left"),
        ):
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        for p in phases:
            t.add_row(
                str(p["seq"]),
                p["name"],
                Text(p["status"], style=PHASE_STYLE.get(p["status"], "")),
                human_duration(p["duration"]) if p["started_at"] else "-",
                _phase_detail(p["name"], report),
            )
        items.append(t)
    lines = _copy_lines(report)
    for name in ("indexes", "constraints", "vacuum", "sequences"):
        if report[name]["total"]:
            lines.append(f"{name}: {_counts(report[name])}")
    lo = report["large_objects"]
    if lo["total"]:
        lines.append(
            f"large objects: {lo['objects_done']}/{lo['objects_total']} "
            f"({_counts(lo)} batches, {_b(lo['bytes_done'])})"
        )
    if report["overall_percent"] is not None:
        lines.append(f"overall (parts, indexes, constraints): {report['overall_percent']:.1f}%")
    if lines:
        items.append(Text("\n".join(lines)))
    running = report["running"]
    if compact:
        running = running[: WATCH_ROWS["running"]]
    if running:
        t = Table(title="running units", title_justify="left", show_edge=False, pad_edge=False)
        for col in ("kind", "unit", "state", "for", "bytes"):
            t.add_column(col)
        for r in running:
            t.add_row(
                r["kind"],
                r["label"],
                Text(r["state"], style="yellow" if r["state"] == "running" else "red"),
                human_duration(r["seconds"]),
                _b(r["bytes"]) if r["kind"] in ("copy", "blobs") else "",
            )
        items.append(t)
        if len(report["running"]) > len(running):
            items.append(Text(f"  ... and {len(report['running']) - len(running)} more running"))
    log = report["log"]
    if not compact:
        items.append(_errors(report, compact))
    cdc = report.get("cdc")
    if cdc:
        items.append(_cdc_brief(cdc))
    for role, ops in report["active"].items():
        items.append(_sessions_table(role, ops, WATCH_ROWS["sessions"] if compact else None))
    for role, error in report.get("server_errors", {}).items():
        items.append(Text(f"{role}: {error}", style="yellow"))
    if not report["active"]:
        items.append(
            Text(
                "active operations: pass --target (or PGCOPYDB_TARGET_PGURI) to see them",
                style="dim",
            )
        )
    tail = log["tail"][-WATCH_ROWS["log"] :] if compact else log["tail"]
    if tail:
        items.append(Text("recent log:", style="dim"))
        for line in tail:
            items.append(Text("  " + line, style="dim", no_wrap=True, overflow="ellipsis"))
    items.append(Text(f"generated {_when(report['generated_at'])}", style="dim"))
    return Group(*items)


def _errors(report: StatusReport, compact: bool) -> Text:
    errors = report["errors"]
    log = report["log"]
    if not (errors or log["errors"] or log["ignored"]):
        return Text("errors: none", style="green")
    shown = errors[: WATCH_ROWS["errors"]] if compact else errors
    text = Text("errors:\n", style="bold red")
    for e in shown:
        what = " ".join(x for x in (e.get("where"), e.get("kind"), e.get("label")) if x)
        text.append(f"  {what}: {e.get('error') or 'failed'}\n", style="red")
    if len(errors) > len(shown):
        text.append(f"  ... and {len(errors) - len(shown)} more (pgferry status)\n", style="red")
    if log["errors"]:
        text.append(
            f"  {log['errors']} ERROR line(s) in the log of this run; last:\n"
            f"    {(log['last_error'] or '')[:300]}\n",
            style="red",
        )
    for line in log["ignored"][-(2 if compact else 5) :]:
        text.append(f"  {line[:300]}\n", style="yellow")
    text.rstrip()
    return text


def _cut(line: str, width: int = 160) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def _progress_text(progress: dict[str, Any]) -> str:
    out = []
    if "copy" in progress:
        p = progress["copy"]
        out.append(f"{_b(p['bytes_processed'])}, {p['tuples_processed']} rows")
    if "create_index" in progress:
        p = progress["create_index"]
        done, total = p["blocks_done"], p["blocks_total"]
        if not total:
            done, total = p["tuples_done"], p["tuples_total"]
        pct = f" {100.0 * done / total:.0f}%" if total else ""
        out.append(f"{p['phase']}{pct}")
    if "vacuum" in progress:
        p = progress["vacuum"]
        total = p["heap_blks_total"]
        pct = f" {100.0 * p['heap_blks_scanned'] / total:.0f}%" if total else ""
        out.append(f"vacuum {p['phase']}{pct}")
    if "analyze" in progress:
        out.append(f"analyze {progress['analyze']['phase']}")
    return "; ".join(out)


def _sessions_table(role: str, ops: ActiveOperations, most: int | None = None) -> RenderableType:
    if ops.get("error"):
        return Text(f"active operations on the {role}: {ops['error']}", style="yellow")
    sessions = ops["sessions"]
    if not sessions:
        return Text(
            f"active operations on the {role}: none ({ops['idle']} idle sessions)", style="dim"
        )
    t = Table(
        title=f"active operations on the {role} ({ops['idle']} idle sessions)",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    for col in ("pid", "worker", "operation", "for", "wait", "progress"):
        t.add_column(col)
    # Blocked sessions first: what to look at when there is no room for all.
    shown = sessions if most is None else sorted(sessions, key=lambda s: not s["blocked_by"])
    more = len(shown) - most if most is not None and len(shown) > most else 0
    for s in shown[: len(shown) - more]:
        wait = f"{s['wait_event_type']}:{s['wait_event']}" if s["wait_event_type"] else ""
        if s["blocked_by"]:
            wait += f" blocked by {', '.join(map(str, s['blocked_by']))}"
        t.add_row(
            str(s["pid"]),
            Text(
                s["purpose"] + (" (orphan)" if s.get("orphan") else ""),
                style="red" if s.get("orphan") else "",
            ),
            s["operation"],
            human_duration(s["seconds"]),
            Text(wait, style="red" if s["blocked_by"] else ""),
            _progress_text(s["progress"]),
        )
    if more:
        t.add_row("", Text(f"... and {more} more", style="dim"), "", "", "", "")
    if any(s.get("orphan") for s in sessions):
        return Group(
            t,
            Text(
                "  (orphan): left running by the pgferry that died; a --resume ends them "
                "(or pg_terminate_backend)",
                style="red",
            ),
        )
    return t


def _plugin(figures: CdcSummary | CdcReport) -> str:
    """The plugin, and what it was asked for once the receiver has connected."""
    protocol = figures.get("protocol")
    return f"{figures['plugin']}, {protocol}" if protocol else str(figures["plugin"])


def _cdc_brief(cdc: CdcSummary) -> Text:
    pos = cdc["positions"]
    backlog = cdc["backlog"]
    text = Text("cdc: ", style="bold")
    text.append(
        f"slot {cdc['slot']} ({_plugin(cdc)}), apply {cdc['apply']['state']}; "
        f"received {pos['received']}, flushed {pos['flushed']}, applied {pos['applied']}"
        f"; backlog {_b(backlog['bytes'])}, {cdc['apply']['pending_txns']} transactions "
        f"waiting; lag {human_duration(cdc['lag']['seconds'])}",
        style="",
    )
    if cdc["endpos"]["lsn"]:
        text.append(
            f"; end position {cdc['endpos']['lsn']}"
            + (" reached" if cdc["endpos"]["reached"] else "")
        )
    if cdc["caught_up"]:
        text.append("  CAUGHT UP", style="bold green")
    text.append("\n     (details: pgferry cdc-status)", style="dim")
    return text


# -- cdc-status ------------------------------------------------------------------------


def render_cdc_status(report: CdcReport) -> RenderableType:
    items: list[RenderableType] = []
    items.append(Text(f"pgferry cdc-status: {report['dir']}", style="bold blue"))
    items.append(_state_line(report["run"], report["state"]))
    items.append(
        Text(
            f"slot {report['slot']} ({_plugin(report)}), origin {report['origin']}, "
            f"apply {report['apply']['state']}",
        )
    )
    pos = report["positions"]
    t = Table(title="positions", title_justify="left", show_edge=False, pad_edge=False)
    t.add_column("position")
    t.add_column("LSN")
    t.add_column("behind the previous", justify="right")
    rows = [
        ("source current", pos["source_current"], None),
        ("received", pos["received"], report["backlog"]["to_receive_bytes"]),
        ("flushed", pos["flushed"], report["backlog"]["to_flush_bytes"]),
        ("applied", pos["applied"], None),
    ]
    for name, lsn, behind in rows:
        if name == "source current" and lsn is None:
            lsn = "(pass --source)"
        t.add_row(name, lsn or "-", _b(behind) if behind is not None else "")
    origin = "target origin" if pos["applied_origin"] else "sentinel (pass --target for the origin)"
    t.add_row("  applied from", origin, "")
    if pos["applied_effective"] != pos["applied"]:
        t.add_row("  effective", pos["applied_effective"] or "-", "nothing waits before it")
    t.add_row("end position", pos["endpos"] or "not set", _endpos_text(report["endpos"]))
    items.append(t)
    backlog = report["backlog"]
    rate = report["rate"]
    apply = report["apply"]
    lines = [
        f"backlog: {_b(backlog['bytes'])} ({backlog['basis']}); "
        f"{apply['pending_txns']} transactions ({_b(apply['pending_spool_bytes'])}) received "
        f"and waiting; {apply['applied_txns']} applied so far",
    ]
    if (apply.get("group_txns") or 1) > 1:  # a line of its own: the one above is long
        lines.append(
            f"grouping: up to {apply['group_txns']} source transactions per target "
            "transaction (--group-txns)"
        )
    if rate["window_seconds"]:
        per_hour = rate["apply_bytes_per_hour"]
        lines.append(
            f"apply rate: {_rate(rate['apply_bytes_per_second'])}"
            f" ({_b(per_hour)}/h), {rate['apply_txns_per_second']:.1f} transactions/s"
            + (
                f"; source writes {_rate(rate['source_wal_bytes_per_second'])}"
                if rate["source_wal_bytes_per_second"] is not None
                else ""
            )
            + f" (over {human_duration(rate['window_seconds'])})"
        )
    else:
        lines.append("apply rate: - (needs two samples; the run is not live)")
    eta = report["eta_seconds"]
    eta_text = "-" if eta is None else "now" if eta == 0 else human_duration(eta)
    lines.append(f"ETA to catch up: {eta_text} ({report['eta_note']})")
    lag = report["lag"]
    lines.append(f"lag: {human_duration(lag['seconds'])} ({lag['basis']})")
    if lag["last_applied_commit_time"]:
        lines.append(
            f"     last applied transaction committed {_when(lag['last_applied_commit_time'])}"
        )
    items.append(Text("\n".join(lines)))
    slot = report["slot_health"]
    if slot and slot.get("exists"):
        s = Table(
            title="slot health (source)",
            title_justify="left",
            show_edge=False,
            pad_edge=False,
            show_header=False,
        )
        s.add_column("")
        s.add_column("")
        s.add_row(
            "active",
            f"yes (walsender pid {slot['active_pid']})" if slot["active"] else "no",
        )
        s.add_row("wal_status", str(slot["wal_status"]))
        safe = slot["safe_wal_size"]
        s.add_row(
            "safe_wal_size",
            _b(safe)
            if safe is not None
            else f"unlimited (max_slot_wal_keep_size {slot['max_slot_wal_keep_size']})",
        )
        s.add_row(
            "retained WAL", f"{_b(slot['retained_wal_bytes'])} (restart_lsn {slot['restart_lsn']})"
        )
        s.add_row(
            "confirmed_flush_lsn",
            f"{slot['confirmed_flush_lsn']} ({_b(slot['unconfirmed_bytes'])} behind the source)",
        )
        if slot["walsender_state"]:
            lags = ", ".join(
                f"{k} {human_duration(slot[k + '_lag_seconds'])}"
                for k in ("write", "flush", "replay")
            )
            s.add_row(
                "walsender",
                f"{slot['walsender_state']}; {lags}; last reply "
                f"{human_duration(slot['seconds_since_reply'])} ago",
            )
        items.append(s)
    if report.get("source_database_bytes") is not None:
        items.append(Text(f"source database size: {_b(report['source_database_bytes'])}"))
    log = report["log"]
    if log and log["errors"]:
        items.append(
            Text(
                f"{log['errors']} ERROR line(s) in the log of this run; last: "
                f"{_cut(log['last_error'] or '', 300)}",
                style="red",
            )
        )
    verdict = report["caught_up"]
    v = Text(
        "CAUGHT UP" if verdict["caught_up"] else "NOT CAUGHT UP",
        style="bold green" if verdict["caught_up"] else "bold yellow",
    )
    v.append(": " + "; ".join(verdict["reasons"]), style="")
    items.append(v)
    c = Table(show_edge=False, pad_edge=False, show_header=False)
    c.add_column()
    c.add_column()
    c.add_column()
    for check in report["checks"]:
        msg = check["message"] + (
            f"\nfix: {check['fix']}"
            if check.get("fix") and check["verdict"] in ("FAIL", "WARN")
            else ""
        )
        c.add_row(Text(check["verdict"], style=VERDICT_STYLE[check["verdict"]]), check["name"], msg)
    items.append(c)
    for role, error in report.get("server_errors", {}).items():
        items.append(Text(f"{role}: {error}", style="yellow"))
    items.append(Text(f"generated {_when(report['generated_at'])}", style="dim"))
    return Group(*items)


def _endpos_text(endpos: EndposJson) -> str:
    if endpos["lsn"] is None:
        return ""
    if endpos["reached"]:
        return "reached"
    return f"{_b(endpos['remaining_bytes'])} to go"


# -- once, or live ---------------------------------------------------------------------


def show(
    report: R,
    render: Callable[[R], RenderableType],
    *,
    as_json: bool,
    out: TextIO | None = None,
) -> None:
    out = out or sys.stdout
    if as_json:
        json.dump(report, out, indent=2, default=str)
        out.write("\n")
    else:
        make_console(out).print(render(report))
    out.flush()


def watch(
    build: Callable[[], R],
    render: Callable[[R], RenderableType],
    *,
    interval: float,
    as_json: bool,
    live: Callable[[R], bool],
    exit_code: Callable[[R], int],
    out: TextIO | None = None,
) -> int:
    """Refresh until the run is no longer live (or Ctrl-C); returns the last exit code.

    On a terminal the report redraws in place (rich Live); otherwise each refresh is
    printed in full after the previous one (JSON: one document per line).
    """
    out = out or sys.stdout
    report = build()
    interactive = out.isatty() and not as_json
    try:
        if interactive:
            console = make_console(out)
            with Live(
                render(report), console=console, auto_refresh=False, vertical_overflow="ellipsis"
            ) as screen:
                while live(report):
                    time.sleep(interval)
                    report = build()
                    screen.update(render(report), refresh=True)
        else:
            while True:
                if as_json:
                    out.write(json.dumps(report, default=str) + "\n")
                else:
                    make_console(out).print(render(report))
                    out.write("\n")
                out.flush()
                if not live(report):
                    break
                time.sleep(interval)
                report = build()
    except KeyboardInterrupt:
        pass
    return exit_code(report)
