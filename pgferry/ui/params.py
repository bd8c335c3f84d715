"""Rendering of `pgferry params`: the verdicts and how many settings differ first, then one
table per group of settings, the differing ones at its top."""

from __future__ import annotations

from typing import TextIO, cast

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pgferry.checks.params import NOISE, Group, ParamsComparison
from pgferry.ui.report import render_report


def render_params(console: Console, result: ParamsComparison, *, show_all: bool = False) -> None:
    """The behaviour verdicts and the count of differences, then one table per group
    (differences first, highlighted)."""
    render_report(result.report, cast(TextIO, console.file))
    differing = sum(1 for r in result.rows if r.differs and r.name not in NOISE)
    console.print(
        f"{differing} setting(s) differ"
        + ("" if show_all else " (shown: differences and key settings; --all for every one)"),
        soft_wrap=True,
    )
    rows = result.visible(show_all)
    for group in Group:
        members = sorted((r for r in rows if r.group == group), key=lambda r: not r.differs)
        if not members:
            continue
        table = Table(title=str(group), title_justify="left")
        table.add_column("Setting", no_wrap=True)
        table.add_column("Source", overflow="fold")
        table.add_column("Target", overflow="fold")
        table.add_column("Change needs", no_wrap=True)
        table.add_column("Note", overflow="fold")
        for r in members:
            note = []
            if r.differs:
                note.append("target " + r.direction if r.direction else "differs")
            if r.behaviour and r.differs:
                note.append(r.behaviour)
            style = "yellow" if r.differs else ""
            table.add_row(
                r.name,
                escape(r.shown(r.source)),
                f"[{style}]{escape(r.shown(r.target))}[/]" if style else escape(r.shown(r.target)),
                r.restart,
                "; ".join(note),
            )
        console.print(table)
