"""pgoutput's publication against the tables in scope: what it lacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgferry.admin.replica_identity import read_tables
from pgferry.catalog.filters import Filters
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.replication import published_tables
from pgferry.text import listed


def not_published(source: ConnInfo, publication: str, filters: Filters) -> list[str]:
    """Tables in scope that the publication lacks (created after it): pgoutput never
    sends their changes."""
    with source.connect("pgferry publication") as conn:
        wanted = {(t.schema, t.name) for t in read_tables(conn, filters)}
        missing = sorted(wanted - published_tables(conn, publication))
    return [".".join(m) for m in missing]


@dataclass(frozen=True)
class UnpublishedWatch:
    """Asked while following: a table created in scope after the start, said rather than
    left silent. Plain data (the filters as stored), so the receiving process gets it."""

    source: ConnInfo
    publication: str
    filters: Any  # Filters.to_json() as the state store keeps it

    def __call__(self) -> str | None:
        missing = not_published(self.source, self.publication, Filters.from_json(self.filters))
        if not missing:
            return None
        return (
            f"{len(missing)} table(s) were created on the source after the migration started "
            f"({listed(missing, 5)}): pgoutput sends only the tables of "
            f"publication {self.publication}, so their changes are not captured"
        )
