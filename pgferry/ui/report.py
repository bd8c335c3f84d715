"""Rendering of PASS/WARN/FAIL reports (preflight, verify, params, diagnose, ...)."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.table import Table
from rich.text import Text

from pgferry.checks.report import VERDICT_STYLE, Report, Verdict
from pgferry.ui.console import make_console


def render_report(report: Report, out: TextIO | None = None) -> None:
    """The report as a table; colour only when writing to a terminal."""
    out = out or sys.stdout
    console = make_console(out, soft_wrap=True)
    console.print(Text(report.title, style="bold"))
    for key, value in report.facts.items():
        console.print(Text(f"  {key}: {value}"))
    table = Table(show_header=True, header_style="bold")
    table.add_column("Result", no_wrap=True)
    table.add_column("Check", no_wrap=True)
    table.add_column("Details")
    for c in report.checks:
        # Names of objects may hold brackets: never let them be read as markup.
        text = c.message + (f"\nfix: {c.fix}" if c.fix and c.verdict != Verdict.PASS else "")
        table.add_row(
            Text(str(c.verdict), style=VERDICT_STYLE[c.verdict]), Text(c.name), Text(text)
        )
    console.print(table)
    counts = {v: sum(1 for c in report.checks if c.verdict == v) for v in Verdict}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    console.print(f"[{VERDICT_STYLE[report.verdict]}]{report.verdict}[/] ({summary})")
