"""`list progress`: a report built from the state store alone (any process can read it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.table import Table

from pgferry.state.store import Meta, StateStore, Status
from pgferry.state.workdir import WorkDir
from pgferry.text import human_bytes, human_duration
from pgferry.ui.console import make_console


def progress_report(path: Path) -> dict[str, Any]:
    workdir = WorkDir(path)
    store = StateStore.open_dir(workdir.path, readonly=True)
    try:
        pid = workdir.running_pid()
        now = time.time()
        phases = [
            {
                "name": p.name,
                "status": str(p.status),
                "started_at": p.started_at,
                "duration": p.duration
                if p.duration is not None
                else (now - p.started_at if p.started_at and p.status == Status.RUNNING else None),
            }
            for p in store.phases()
        ]
        kinds: dict[str, dict[str, int]] = {}
        for (kind, status), n in store.counts().items():
            kinds.setdefault(kind, {})[status] = n
        units = store.units()
        running = [
            {
                "kind": str(u.kind),
                "label": u.label,
                "pid": u.pid,
                "bytes": u.bytes,
                "seconds": round(now - u.started_at, 1) if u.started_at else None,
            }
            for u in units
            if u.status == Status.RUNNING
        ]
        failed = [
            {"kind": str(u.kind), "label": u.label, "error": u.error}
            for u in units
            if u.status == Status.FAILED
        ]
        copies = [u for u in units if u.kind == "copy"]
        tables = store.tables()
        return {
            "dir": str(workdir.path),
            "status": store.get_meta(Meta.STATUS, "unknown"),
            "running_pid": pid,
            "phases": phases,
            "units": kinds,
            "tables_total": len(tables),
            "tables_done": sum(1 for t in tables if t.status == Status.DONE),
            "bytes_copied": sum(u.bytes for u in copies),
            "bytes_estimated": sum(t.bytes for t in tables),
            "running": running,
            "failed": failed,
        }
    finally:
        store.close()


def render_progress(report: dict[str, Any]) -> None:
    console = make_console(soft_wrap=True)
    state = report["status"]
    pid = report["running_pid"]
    console.print(f"{report['dir']}: {state}" + (f" (pid {pid} running)" if pid else ""))
    t = Table(title="phases", title_justify="left")
    t.add_column("phase")
    t.add_column("status")
    t.add_column("duration", justify="right")
    for p in report["phases"]:
        t.add_row(p["name"], p["status"], human_duration(p["duration"]))
    console.print(t)
    u = Table(title="units of work", title_justify="left")
    for col in ("kind", "pending", "running", "done", "failed"):
        u.add_column(col, justify="left" if col == "kind" else "right")
    for kind, counts in sorted(report["units"].items()):
        u.add_row(kind, *(str(counts.get(s, 0)) for s in ("pending", "running", "done", "failed")))
    console.print(u)
    console.print(
        f"tables {report['tables_done']}/{report['tables_total']}, "
        f"{human_bytes(report['bytes_copied'])} copied of ~{human_bytes(report['bytes_estimated'])}"
    )
    for r in report["running"]:
        console.print(
            f"  running: {r['kind']} {r['label']} ({human_duration(r['seconds'])}, "
            f"{human_bytes(r['bytes'])})"
        )
    for f in report["failed"]:
        console.print(f"  FAILED: {f['kind']} {f['label']}: {f['error']}")
