"""Rendering of `pgferry compare` results (also shown by `pgferry demo`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from pgferry.text import human_duration

if TYPE_CHECKING:
    from pgferry.checks.compare import DataComparison, SchemaComparison, SequenceResult, TableResult


def render_data(console: Console, result: DataComparison, *, title: str | None = None) -> None:
    """Tables, then sequences, then large objects: source vs target, one row each."""
    tables = Table(title=title or "Tables", title_justify="left")
    tables.add_column("Table", overflow="fold")
    tables.add_column("Source rows", justify="right")
    tables.add_column("Target rows", justify="right")
    tables.add_column("Result")
    for t in result.tables:
        tables.add_row(t.qualname, _count(t.source_rows), _count(t.target_rows), _table_verdict(t))
    console.print(tables)
    if result.sequences:
        seqs = Table(title="Sequences", title_justify="left")
        seqs.add_column("Sequence", overflow="fold")
        seqs.add_column("Source", justify="right")
        seqs.add_column("Target", justify="right")
        seqs.add_column("Result")
        for s in result.sequences:
            seqs.add_row(
                s.qualname,
                _position(s.source_last_value, s.source_is_called),
                _position(s.target_last_value, s.target_is_called),
                _sequence_verdict(s),
            )
        console.print(seqs)
    lo = result.large_objects
    verdict = "[green]same[/]" if lo.ok else "[bold red]DIFFERENT[/]"
    console.print(
        f"Large objects: {lo.source_count:,} on source, {lo.target_count:,} on target: {verdict}",
        soft_wrap=True,
    )
    rows = sum(t.source_rows or 0 for t in result.tables)
    console.print(
        f"Compared {len(result.tables)} tables ({rows:,} source rows), "
        f"{len(result.sequences)} sequences and {lo.source_count:,} large objects "
        f"in {human_duration(result.seconds)}.",
        soft_wrap=True,
    )


def render_schema(console: Console, result: SchemaComparison) -> None:
    """One row per object type: how many on each side, and whether they match."""
    table = Table(title="Schema objects", title_justify="left")
    table.add_column("Object type")
    table.add_column("Source", justify="right")
    table.add_column("Target", justify="right")
    table.add_column("Result")
    for k in result.kinds:
        differences = len(k.only_on_source) + len(k.only_on_target) + len(k.different)
        verdict = (
            "[green]same[/]"
            if k.ok
            else f"[bold red]{differences} difference{'s' if differences > 1 else ''}[/]"
        )
        table.add_row(k.kind, f"{k.source_count:,}", f"{k.target_count:,}", verdict)
    console.print(table)


def render_verdict(console: Console, problems: list[str], what: str) -> None:
    """The differences, one per line, and a one-line verdict."""
    if not problems:
        console.print(f"[bold green]OK[/]: source and target have the same {what}.", soft_wrap=True)
        return
    console.print(f"[bold red]{len(problems)} difference(s)[/] in the {what}:", soft_wrap=True)
    for line in problems:
        console.print(f"  - {line}", markup=False, highlight=False, soft_wrap=True)


def _table_verdict(t: TableResult) -> str:
    if t.ok:
        return "[green]same[/]"
    if t.error:
        return "[bold red]ERROR[/]"
    if t.source_rows is None and t.source_hash is None:
        return "[bold red]only on target[/]"
    if t.target_rows is None and t.target_hash is None:
        return "[bold red]missing on target[/]"
    return "[bold red]DIFFERENT[/]"


def _sequence_verdict(s: SequenceResult) -> str:
    if s.ok:
        if (s.source_last_value, s.source_is_called) == (s.target_last_value, s.target_is_called):
            return "[green]same[/]"
        return "[green]target ahead[/]"
    if s.error:
        return "[bold red]ERROR[/]"
    if s.source_last_value is None:
        return "[bold red]only on target[/]"
    if s.target_last_value is None:
        return "[bold red]missing on target[/]"
    return "[bold red]BEHIND[/]"


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _position(last_value: int | None, is_called: bool | None) -> str:
    if last_value is None:
        return "-"
    return f"{last_value:,}" + ("" if is_called else " (unused)")
