"""Rendering of the clone's end-of-run summary (clone/summary.py builds it)."""

from __future__ import annotations

from typing import Any

from rich.table import Table as RichTable

from pgferry.text import human_bytes, human_duration
from pgferry.ui.console import make_console


def print_summary(summary: dict[str, Any]) -> None:
    """The end-of-run table: per phase wall and cumulative time, bytes, concurrency."""
    console = make_console(soft_wrap=True, piped_width=120)
    table = RichTable(title="pgferry clone summary", title_justify="left")
    table.add_column("Phase")
    table.add_column("Status")
    table.add_column("Wall time", justify="right")
    table.add_column("Cumulative", justify="right")
    table.add_column("Bytes", justify="right")
    table.add_column("Concurrency", justify="right")
    for p in summary["phases"]:
        table.add_row(
            p["title"],
            p["status"],
            human_duration(p["wall_seconds"]),
            human_duration(p["cumulative_seconds"]),
            human_bytes(p["bytes"]) if p["bytes"] else "",
            str(p["concurrency"]),
        )
    table.add_row(
        "Total (this run)",
        "",
        human_duration(summary["this_run_seconds"]),
        "",
        human_bytes(summary["total_bytes"]),
        "",
    )
    console.print(table)
    console.print(
        f"{len(summary['tables'])} tables, {summary['total_rows']:,} rows, "
        f"{human_bytes(summary['total_bytes'])} copied from {summary['source']} to "
        f"{summary['target']}"
    )
