"""`pgferry fix-replica-identity`: make every table in scope updatable by CDC.

Logical decoding identifies an updated or deleted row by the table's replica identity. A
table without one (no primary key under the default identity, NOTHING, or USING INDEX of
an index that was dropped or is invalid) decodes its UPDATEs and DELETEs without a key:
CDC cannot apply them. Decoding uses the leaf partitions' identities, and setting one on a
partitioned table does not reach its partitions: every leaf is checked and fixed itself.

For each such table the proposal is `REPLICA IDENTITY USING INDEX` on the smallest
suitable unique index (unique, immediate, valid, not partial, no expressions, every key
column NOT NULL), else `REPLICA IDENTITY FULL` (every UPDATE/DELETE then logs the whole
old row, and the target finds the row by all its columns). Each statement runs in its own
transaction with a short lock_timeout, so one busy table fails alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.filters import Filters, QualifiedName
from pgferry.catalog.inscope import ancestors_of, table_in_scope
from pgferry.catalog.row_identity import (
    IDENTITIES_NOW_SQL,
    IDENTITY_INDEXES_SQL,
    IDENTITY_TABLES_SQL,
    NO_EQUALITY_SQL,
    TEXT_COMPARE_TYPES,
    Problem,
    RowIdentity,
)
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.profiles import UTF8
from pgferry.pg.settings import set_settings
from pgferry.text import listed


@dataclass(frozen=True)
class IndexCandidate:
    """A unique index of a table, with what decides whether it can be the identity."""

    name: str
    immediate: bool = True
    valid: bool = True
    partial: bool = False
    expressions: bool = False
    key_columns: tuple[str, ...] = ()
    nullable_columns: tuple[str, ...] = ()
    size: int = 0

    def why_not(self) -> str | None:
        """Why REPLICA IDENTITY USING INDEX would refuse it; None when it is suitable."""
        if not self.valid:
            return "not valid"
        if self.partial:
            return "partial"
        if self.expressions:
            return "has expressions"
        if not self.immediate:
            return "deferrable"
        if self.nullable_columns:
            return "nullable column(s) " + ", ".join(self.nullable_columns)
        return None


@dataclass(frozen=True)
class TableIdentity:
    """What the catalog says about one table's replica identity."""

    oid: int
    schema: str
    name: str
    identity: RowIdentity
    has_pk: bool  # whether it has a primary key (DEFAULT would then identify its rows)
    ancestors: tuple[QualifiedName, ...] = ()  # partition parents, nearest first
    owner: str = ""
    indexes: tuple[IndexCandidate, ...] = ()
    no_equality_columns: tuple[str, ...] = ()  # json, point, xml...: compared as text
    can_alter: bool = True  # we own it (or are superuser / a member of its owner)

    @property
    def qualname(self) -> QualifiedName:
        return QualifiedName(self.schema, self.name)


def problem_of(t: TableIdentity) -> Problem | None:
    """Why CDC cannot update/delete rows of `t`; None when it can."""
    return t.identity.problem


def choose_index(indexes: Iterable[IndexCandidate]) -> IndexCandidate | None:
    """The smallest suitable unique index: fewest key columns, then smallest, then name."""
    usable = [i for i in indexes if i.why_not() is None]
    if not usable:
        return None
    return min(usable, key=lambda i: (len(i.key_columns), i.size, i.name))


class Identity(StrEnum):
    DEFAULT = "default"  # the primary key
    INDEX = "index"
    FULL = "full"


FULL_COST = (
    "REPLICA IDENTITY FULL: every UPDATE/DELETE logs the whole old row (more WAL on the "
    "source), and the target finds each row by all its columns (slow without an index there)"
)


def identity_statement(
    schema: str, table: str, identity: Identity, index: str | None = None
) -> sql.Composed:
    """ALTER TABLE schema.table REPLICA IDENTITY {DEFAULT | USING INDEX index | FULL}."""
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    if identity == Identity.INDEX:
        if index is None:
            raise ValueError("USING INDEX needs an index")
        return sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(
            target, sql.Identifier(index)
        )
    keyword = sql.SQL("DEFAULT" if identity == Identity.DEFAULT else "FULL")
    return sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(target, keyword)


@dataclass(frozen=True)
class Fix:
    """The proposal for one table."""

    table: TableIdentity
    problem: Problem
    identity: Identity
    index: str | None  # for Identity.INDEX
    statement: sql.Composed
    notes: tuple[str, ...] = ()

    @property
    def proposal(self) -> str:
        if self.identity == Identity.INDEX:
            return f"USING INDEX {self.index}"
        return "DEFAULT (primary key)" if self.identity == Identity.DEFAULT else "FULL"


def propose(t: TableIdentity) -> Fix | None:
    """The fix for one table (pure), with the notes the user should read; None if fine."""
    problem = problem_of(t)
    if problem is None:
        return None
    notes: list[str] = []
    if t.ancestors:
        notes.append(f"partition of {t.ancestors[0]} (decoding uses each partition's identity)")
    if t.has_pk:
        notes.append("it has a primary key: the default identity uses it")
        stmt = identity_statement(t.schema, t.name, Identity.DEFAULT)
        return Fix(t, problem, Identity.DEFAULT, None, stmt, tuple(notes))
    best = choose_index(t.indexes)
    if best is not None:
        notes.append(f"unique index {best.name} on ({', '.join(best.key_columns)})")
        stmt = identity_statement(t.schema, t.name, Identity.INDEX, best.name)
        return Fix(t, problem, Identity.INDEX, best.name, stmt, tuple(notes))
    nearly = [
        i
        for i in t.indexes
        if i.why_not()
        and i.nullable_columns
        and not (i.partial or i.expressions or not i.valid or not i.immediate)
    ]
    if nearly:
        i = min(nearly, key=lambda x: (len(x.key_columns), x.size, x.name))
        cols = ", ".join(i.nullable_columns)
        notes.append(
            f"unique index {i.name} would do if {cols} were NOT NULL (ALTER TABLE ... ALTER "
            "COLUMN ... SET NOT NULL, then USING INDEX: cheaper than FULL)"
        )
    if t.no_equality_columns:
        notes.append(
            "columns without an equality operator ("
            + ", ".join(t.no_equality_columns)
            + "): pgferry compares them as text; native logical replication cannot"
        )
    stmt = identity_statement(t.schema, t.name, Identity.FULL)
    return Fix(t, problem, Identity.FULL, None, stmt, tuple(notes))


def in_scope(filters: Filters, table: QualifiedName, ancestors: Sequence[QualifiedName]) -> bool:
    """Whether CDC applies changes of `table` (catalog.inscope's rule, with its rows)."""
    return table_in_scope(filters, table, ancestors, data=True)


# -- reading the catalog -------------------------------------------------------------------


def read_tables(conn: psycopg.Connection[Any], filters: Filters) -> list[TableIdentity]:
    """Every ordinary (leaf) table in scope, with its identity and unique indexes."""
    base = []
    for r in conn.execute(IDENTITY_TABLES_SQL):
        ancestors = ancestors_of(r[8])
        if in_scope(filters, QualifiedName(r[1], r[2]), ancestors):
            base.append((r, ancestors, RowIdentity.of(r[3], r[5], r[6], r[7])))
    problems = [r[0] for r, _, identity in base if identity.problem is not None]
    indexes: dict[int, list[IndexCandidate]] = {}
    no_eq: dict[int, list[str]] = {}
    if problems:
        for r in conn.execute(IDENTITY_INDEXES_SQL, (problems,)):
            indexes.setdefault(r[0], []).append(
                IndexCandidate(
                    name=r[1],
                    immediate=r[2],
                    valid=r[3],
                    partial=r[4],
                    expressions=r[5],
                    key_columns=tuple(r[6]),
                    nullable_columns=tuple(r[7]),
                    size=int(r[8] or 0),
                )
            )
        for oid, col in conn.execute(
            NO_EQUALITY_SQL, {"oids": problems, "textcmp": list(TEXT_COMPARE_TYPES)}
        ):
            no_eq.setdefault(oid, []).append(col)
    return [
        TableIdentity(
            oid=r[0],
            schema=r[1],
            name=r[2],
            identity=identity,
            has_pk=r[4],
            ancestors=ancestors,
            owner=r[9],
            indexes=tuple(sorted(indexes.get(r[0], ()), key=lambda i: i.name)),
            no_equality_columns=tuple(no_eq.get(r[0], ())),
            can_alter=r[10],
        )
        for r, ancestors, identity in base
    ]


@dataclass(frozen=True)
class PublicationRefusal:
    """Why pgferry will not publish the tables in scope for pgoutput."""

    message: str
    remedy: str  # what makes pgoutput possible

    @property
    def fix(self) -> str:
        return f"{self.remedy}, or use --plugin test_decoding"


def publication_refusal(tables: list[TableIdentity], role: str) -> PublicationRefusal | None:
    """pgoutput sends the changes of published tables. A published table without a usable
    replica identity makes the source application's own UPDATEs and DELETEs on it fail, so
    pgferry never publishes one; and only a table's owner may publish it."""
    unidentified = [str(t.qualname) for t in tables if t.identity.problem is not None]
    if unidentified:
        return PublicationRefusal(
            f"pgoutput publishes the tables in scope, and {len(unidentified)} have no usable "
            f"replica identity ({listed(unidentified, 5)}): the source's own UPDATEs and DELETEs "
            "on a published table without one fail",
            "give them one with pgferry fix-replica-identity",
        )
    return ownership_refusal(tables, role)


def ownership_refusal(tables: list[TableIdentity], role: str) -> PublicationRefusal | None:
    """Only a table's owner (or a member of the owning role, or a superuser) may publish it:
    what to grant when `role` is not."""
    owners = sorted({t.owner for t in tables if not t.can_alter})
    if owners:
        not_owned = [str(t.qualname) for t in tables if not t.can_alter]
        me = sql.Identifier(role).as_string()
        grants = "; ".join(f"GRANT {sql.Identifier(o).as_string()} TO {me}" for o in owners)
        return PublicationRefusal(
            f"pgoutput needs a publication of the tables in scope, which only their owner "
            f"may create; {role} does not own {len(not_owned)} ({listed(not_owned, 5)})",
            f"{grants} (revoke it after the migration)",
        )
    return None


def default_plugin(tables: list[TableIdentity], role: str) -> tuple[str, str | None]:
    """The plugin a new migration uses when none is asked for: pgoutput, unless pgferry
    cannot publish the tables in scope (`read_tables`) as `role`; then test_decoding,
    with the reason."""
    refusal = publication_refusal(tables, role)
    if refusal is None:
        return "pgoutput", None
    return "test_decoding", f"{refusal.message} (to use pgoutput: {refusal.remedy})"


@dataclass
class FixPlan:
    """The tables checked and the fixes proposed."""

    server: str
    role: str
    checked: int
    fixes: list[Fix]
    partitioned_parents: list[str] = field(default_factory=list)

    def grants_needed(self) -> list[str]:
        """GRANT owner TO us, for the owners of tables we may not alter (pgcopydb's advice:
        grant for the change, revoke after)."""
        owners = sorted({f.table.owner for f in self.fixes if not f.table.can_alter})
        me = sql.Identifier(self.role).as_string()
        return [f"GRANT {sql.Identifier(o).as_string()} TO {me}" for o in owners]

    def full_cost_note(self) -> str | None:
        """What REPLICA IDENTITY FULL costs, when a fix proposes it."""
        return FULL_COST if any(f.identity == Identity.FULL for f in self.fixes) else None


def plan_fixes(info: ConnInfo, filters: Filters) -> FixPlan:
    """Read the source and propose a fix for every table CDC could not update/delete."""
    with info.connect("pgferry fix-replica-identity", settings=UTF8) as conn:
        tables = read_tables(conn, filters)
        role = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    fixes = [f for f in (propose(t) for t in tables) if f is not None]
    parents = sorted({str(t.ancestors[-1]) for t in tables if t.ancestors})
    return FixPlan(info.short(), role, len(tables), fixes, parents)


# -- applying --------------------------------------------------------------------------------


class FixOutcome(StrEnum):
    APPLIED = "applied"
    FAILED = "failed"
    NOT_RUN = "not run"


@dataclass(frozen=True)
class FixResult:
    fix: Fix
    outcome: FixOutcome
    error: str | None = None
    sqlstate: str | None = None
    hint: str | None = None


def _hint(sqlstate: str | None, fix: Fix, role: str) -> str | None:
    owner = sql.Identifier(fix.table.owner).as_string()
    if sqlstate == "42501":
        return (
            f"only the owner ({fix.table.owner}) or a superuser can change it: GRANT {owner} "
            f"TO {sql.Identifier(role).as_string()}, run again, then REVOKE it"
        )
    if sqlstate == "55P03":
        return (
            "the table was busy (lock timeout): run again when it is quieter, or raise "
            "--lock-timeout"
        )
    if sqlstate == "57014":
        return "cancelled (statement timeout): run again when the table is quieter"
    return None


def apply_fixes(
    info: ConnInfo, fixes: Sequence[Fix], *, lock_timeout: float = 5.0, role: str = ""
) -> list[FixResult]:
    """Run each statement in its own transaction; one failure does not stop the others.

    Success is read back from pg_class afterwards, not assumed from the statement.
    """
    results: list[FixResult] = []
    with info.connect("pgferry fix-replica-identity", settings=UTF8) as conn:
        for fix in fixes:
            try:
                with conn.transaction():
                    timeouts = {
                        "lock_timeout": f"{int(lock_timeout * 1000)}ms",
                        "statement_timeout": f"{int(lock_timeout * 4000)}ms",
                    }
                    set_settings(conn, timeouts, local=True)
                    conn.execute(fix.statement)
            except psycopg.Error as exc:
                state = exc.sqlstate
                message = (exc.diag.message_primary or str(exc)).strip()
                results.append(
                    FixResult(fix, FixOutcome.FAILED, message, state, _hint(state, fix, role))
                )
                continue
            results.append(FixResult(fix, FixOutcome.APPLIED))
        actual = _identities(conn, [r.fix.table.oid for r in results])
    checked: list[FixResult] = []
    for r in results:
        if r.outcome == FixOutcome.APPLIED and actual.get(r.fix.table.oid) != _expected(r.fix):
            r = FixResult(
                r.fix,
                FixOutcome.FAILED,
                f"the statement ran but the table's identity is {actual.get(r.fix.table.oid)}",
            )
        checked.append(r)
    return checked


def _expected(fix: Fix) -> tuple[str, str | None]:
    return {Identity.INDEX: ("i", fix.index), Identity.DEFAULT: ("d", None)}.get(
        fix.identity, ("f", None)
    )


def _identities(
    conn: psycopg.Connection[Any], oids: list[int]
) -> dict[int, tuple[str, str | None]]:
    """Each table's relreplident and, under USING INDEX, the index (row_identity's rule)."""
    query = IDENTITIES_NOW_SQL
    found: dict[int, tuple[str, str | None]] = {}
    for r in conn.execute(query, (oids,)):
        identity = RowIdentity.of(r[1], r[2], r[3], r[4])
        found[r[0]] = (identity.replident, identity.index if identity.replident == "i" else None)
    return found
