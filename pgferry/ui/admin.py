"""Rendering of the administration commands' plans (fix-replica-identity, target-clean)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from pgferry.admin.replica_identity import FixPlan
    from pgferry.admin.target_clean import CleanPlan


def render_fix_plan(console: Console, plan: FixPlan) -> None:
    """fix-replica-identity's plan: the tables, their problem and the proposed identity,
    then the statements and the grants they need."""
    if not plan.fixes:
        console.print(
            f"All {plan.checked} table(s) in scope on {plan.server} have a replica identity "
            "CDC can use."
        )
        return
    table = Table(
        title=f"{len(plan.fixes)} of {plan.checked} table(s) CDC could not update/delete",
        title_justify="left",
    )
    table.add_column("Table", overflow="fold")
    table.add_column("Problem", overflow="fold")
    table.add_column("Proposal", overflow="fold")
    table.add_column("Notes", overflow="fold")
    for f in plan.fixes:
        style = "yellow" if f.identity == "full" else "green"
        table.add_row(
            escape(str(f.table.qualname)),
            str(f.problem),
            f"[{style}]{escape(f.proposal)}[/]",
            escape("\n".join(f.notes)),
        )
    console.print(table)
    note = plan.full_cost_note()
    if note:
        console.print(f"[yellow]{escape(note)}[/]")
    console.print("Statements:")
    for f in plan.fixes:
        console.print(f.statement.as_string() + ";", markup=False, highlight=False)
    grants = plan.grants_needed()
    if grants:
        console.print(
            f"[yellow]{plan.role} does not own some of these tables[/]: only their owner (or a "
            "superuser) can change them. Grant the owners' roles first, revoke them after:"
        )
        for line in grants:
            console.print(f"  {line};", markup=False, highlight=False)


def render_clean_plan(console: Console, plan: CleanPlan) -> None:
    """target-clean's plan: what would be dropped, by kind, and what is kept."""
    if plan.empty:
        console.print(f"Nothing to drop: the database {plan.database} on {plan.server} is clean.")
    else:
        table = Table(
            title=f"What will be dropped from {plan.database} on {plan.server}",
            title_justify="left",
        )
        table.add_column("Kind", no_wrap=True)
        table.add_column("Name", overflow="fold")
        table.add_column("Details", overflow="fold")
        for item in plan.items:
            table.add_row(str(item.kind), escape(item.name), escape(item.detail))
        console.print(table)
    if plan.collateral:
        console.print(
            f"[bold yellow]Also dropped from what is kept[/] (they depend on what goes): "
            f"{len(plan.collateral)}"
        )
        for line in plan.collateral:
            console.print(f"  - {line}", markup=False)
    if plan.kept:
        console.print("Kept:")
        for name, why in plan.kept:
            console.print(f"  - {name}: {why}", markup=False)
    if plan.unsupported:
        console.print("Left in place (pgferry cannot drop them): " + ", ".join(plan.unsupported))
    if plan.other_origins:
        console.print(
            "Other replication origins on this cluster (not dropped; --origin NAME drops one): "
            + ", ".join(plan.other_origins),
            markup=False,
        )
    if plan.other_sessions:
        console.print(
            f"[yellow]{plan.other_sessions} other session(s) are connected to "
            f"{plan.database}[/]: a drop waits at most --lock-timeout for their locks."
        )
