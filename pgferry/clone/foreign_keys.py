"""Foreign keys of a resumed live migration: added NOT VALID, validated after catch-up.

When a crash made some tables' data come from a later snapshot than others, the copy is
not one consistent image: a child row may already be there while its parent row is still
in the change stream. Such foreign keys are created NOT VALID (they are enforced for new
rows at once) and validated once apply has reached the end position, when the target is
a consistent image of the source again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.queries import FOREIGN_KEYS_SQL
from pgferry.catalog.target import constraint_exists
from pgferry.catalog.toc import TocEntry
from pgferry.errors import StepFailed
from pgferry.pg.conninfo import ConnInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForeignKey:
    oid: int
    schema: str
    table: str
    relkind: str
    name: str
    definition: str  # pg_get_constraintdef
    validated_on_source: bool

    def add_sql(self) -> sql.Composed:
        only = sql.SQL("ONLY ") if self.relkind == "r" else sql.SQL("")
        definition = self.definition
        if not definition.endswith("NOT VALID"):
            definition += " NOT VALID"
        return sql.SQL("ALTER TABLE {}{} ADD CONSTRAINT {} {}").format(
            only,
            sql.Identifier(self.schema, self.table),
            sql.Identifier(self.name),
            sql.SQL(definition),  # type: ignore[arg-type]  # catalog text
        )

    def validate_sql(self) -> sql.Composed:
        return sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
            sql.Identifier(self.schema, self.table), sql.Identifier(self.name)
        )


def fk_entries(toc: list[TocEntry], keep: frozenset[int]) -> list[TocEntry]:
    return [e for e in toc if e.desc == "FK CONSTRAINT" and e.dump_id in keep]


def read_foreign_keys(source: ConnInfo, oids: list[int]) -> list[ForeignKey]:
    with source.connect("pgferry catalog") as conn:
        rows = conn.execute(FOREIGN_KEYS_SQL, (oids,)).fetchall()
    return [ForeignKey(*r) for r in rows]


def add_not_valid(conn: psycopg.Connection[Any], fks: list[ForeignKey]) -> None:
    for fk in fks:
        exists = constraint_exists(conn, fk.schema, fk.table, fk.name)
        if not exists:
            conn.execute(fk.add_sql())


def validate(conn: psycopg.Connection[Any], fks: list[ForeignKey]) -> None:
    """VALIDATE what the source has validated; a violation means the copy is wrong."""
    for fk in fks:
        if not fk.validated_on_source:
            continue
        try:
            conn.execute(fk.validate_sql())
        except psycopg.errors.ForeignKeyViolation as exc:
            raise StepFailed(
                f"foreign key {fk.name} on {fk.schema}.{fk.table} does not hold on the target "
                f"after catch-up: {str(exc).strip().splitlines()[0]}",
                fix="compare the tables (pgferry verify --full); this should not happen",
            ) from None
    log.info("validated %d foreign keys", sum(1 for fk in fks if fk.validated_on_source))


def to_json(fks: list[ForeignKey]) -> list[dict[str, Any]]:
    return [asdict(fk) for fk in fks]


def from_json(data: list[dict[str, Any]]) -> list[ForeignKey]:
    return [ForeignKey(**d) for d in data]
