"""`pgferry target-clean`: empty the target database for a fresh start.

What goes: every schema but the system's (with all it holds), every extension but
plpgsql, the objects left in `public` (the schema itself, its owner and its privileges
stay), large objects, publications, subscriptions (disabled and detached from their slot
first, so dropping needs no publisher), event triggers, user-defined casts, languages,
foreign-data wrappers and servers, access methods, and pgferry's replication origins
(cluster-wide objects: only the names given, `pgferry` by default).

What stays: names given with --keep (a schema keeps everything in it; an extension keeps
its objects, the extensions it needs, and the schema it lives in, which is emptied of
everything else), database settings, roles, tablespaces.

The plan is read from the catalog before anything is dropped, including what a CASCADE
would take from the kept places (a column of a kept table whose type is dropped, ...),
so the confirmation shows exactly what will go. Each drop runs on its own with a lock
timeout, failures are reported and do not stop the others, and the database is read
again afterwards: anything left is reported, never claimed clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.facts import large_object_count
from pgferry.catalog.filters import quote_ident
from pgferry.catalog.target import (
    COLLATERAL_SQL,
    DELETE_LARGE_OBJECTS_SQL,
    GLOBAL_OBJECTS_SQL,
    PUBLICATIONS_SQL,
    SCHEMA_CONTENT_COUNTS_SQL,
    SCHEMA_OBJECTS_SQL,
    SUBSCRIPTIONS_SQL,
    TARGET_EVENT_TRIGGERS_SQL,
    TARGET_EXTENSIONS_SQL,
    TARGET_SCHEMAS_SQL,
)
from pgferry.errors import InputError
from pgferry.pg.activity import DATABASE_SESSIONS_SQL
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.profiles import UTF8
from pgferry.pg.replication import drop_origin_sql, lane_origins, list_origins
from pgferry.pg.settings import set_settings

ALWAYS_KEPT_EXTENSIONS = frozenset({"plpgsql"})
DEFAULT_ORIGINS = ("pgferry",)
PGFERRY_SESSIONS = "pgferry:%"  # application_name of a running clone/follow's sessions
FIRST_NORMAL_OID = 16384
LO_BATCH = 10000

# Catalog OIDs (fixed in every PostgreSQL): the classid of pg_depend rows.
PG_NAMESPACE = 2615
PG_EXTENSION = 3079
PG_EVENT_TRIGGER = 3466
PG_PUBLICATION = 6104

# pg_identify_object()'s type -> the DROP statement's keyword.
DROP_KEYWORD: dict[str, str] = {
    "table": "TABLE",
    "view": "VIEW",
    "materialized view": "MATERIALIZED VIEW",
    "foreign table": "FOREIGN TABLE",
    "sequence": "SEQUENCE",
    "type": "TYPE",
    "domain": "DOMAIN",
    "function": "FUNCTION",
    "procedure": "PROCEDURE",
    "aggregate": "AGGREGATE",
    "operator": "OPERATOR",
    "operator class": "OPERATOR CLASS",
    "operator family": "OPERATOR FAMILY",
    "collation": "COLLATION",
    "conversion": "CONVERSION",
    "text search configuration": "TEXT SEARCH CONFIGURATION",
    "text search dictionary": "TEXT SEARCH DICTIONARY",
    "text search parser": "TEXT SEARCH PARSER",
    "text search template": "TEXT SEARCH TEMPLATE",
    "statistics object": "STATISTICS",
    "cast": "CAST",
    "language": "LANGUAGE",
    "foreign-data wrapper": "FOREIGN DATA WRAPPER",
    "server": "SERVER",
    "access method": "ACCESS METHOD",
}

# Drop order inside an emptied schema: relations first (they use the rest), types last.
_TYPE_ORDER = {
    t: i
    for i, t in enumerate(
        [
            "materialized view",
            "view",
            "foreign table",
            "table",
            "sequence",
            "aggregate",
            "procedure",
            "function",
            "operator",
            "operator class",
            "operator family",
        ]
    )
}


# -- statements (pure) -----------------------------------------------------------------


def drop_schema(name: str) -> sql.Composed:
    return sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))


def drop_extension(name: str) -> sql.Composed:
    return sql.SQL("DROP EXTENSION IF EXISTS {} CASCADE").format(sql.Identifier(name))


def drop_event_trigger(name: str) -> sql.Composed:
    return sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(name))


def drop_publication(name: str) -> sql.Composed:
    return sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name))


def drop_subscription(name: str, enabled: bool, has_slot: bool) -> tuple[sql.Composed, ...]:
    """Disable, detach from the slot (so DROP does not contact the publisher), drop."""
    ident = sql.Identifier(name)
    out = []
    if enabled:
        out.append(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
    if has_slot:
        out.append(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
    out.append(sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(ident))
    return tuple(out)


def drop_identified(obj_type: str, identity: str) -> sql.Composed | None:
    """DROP for an object named by pg_identify_object() (already quoted by the server)."""
    keyword = DROP_KEYWORD.get(obj_type)
    if keyword is None:
        return None
    return sql.SQL("DROP {} IF EXISTS {} CASCADE").format(sql.SQL(keyword), sql.SQL(identity))


# -- the plan --------------------------------------------------------------------------


class Kind(StrEnum):
    EVENT_TRIGGER = "event trigger"
    SUBSCRIPTION = "subscription"
    PUBLICATION = "publication"
    SCHEMA = "schema"
    OBJECT = "object"  # one object in a schema that stays (public, an extension's schema)
    EXTENSION = "extension"
    GLOBAL = "database object"  # cast, language, foreign-data wrapper, server, access method
    LARGE_OBJECTS = "large objects"
    ORIGIN = "replication origin"


@dataclass(frozen=True)
class Item:
    """One thing that goes, and the statements that drop it."""

    kind: Kind
    name: str
    detail: str = ""
    statements: tuple[sql.Composed, ...] = ()
    count: int = 1  # large objects: how many

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "name": self.name,
            "detail": self.detail,
            "count": self.count,
            "statements": [s.as_string() for s in self.statements],
        }


@dataclass
class CleanPlan:
    server: str
    database: str
    items: list[Item]
    kept: list[tuple[str, str]]  # (what, why)
    collateral: list[str]  # objects in kept places that the drops take with them
    pgferry_sessions: list[tuple[int, str]] = field(default_factory=list)
    other_sessions: int = 0
    unsupported: list[str] = field(default_factory=list)  # objects we cannot drop
    other_origins: list[str] = field(default_factory=list)  # on the cluster, not ours

    @property
    def empty(self) -> bool:
        return not self.items

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "database": self.database,
            "drop": [i.to_json() for i in self.items],
            "kept": [{"name": n, "reason": r} for n, r in self.kept],
            "also_dropped_from_kept": self.collateral,
            "pgferry_sessions": [
                {"pid": p, "application_name": a} for p, a in self.pgferry_sessions
            ],
            "other_sessions": self.other_sessions,
            "not_droppable": self.unsupported,
            "other_origins": self.other_origins,
        }


@dataclass(frozen=True)
class _Extension:
    oid: int
    name: str
    version: str
    schema: str
    requires: tuple[str, ...]


def kept_extensions(extensions: Sequence[_Extension], keep: Iterable[str]) -> dict[str, str]:
    """Extension name -> why it stays: asked, always kept, or needed by a kept one."""
    by_name = {e.name: e for e in extensions}
    kept: dict[str, str] = {}
    todo = []
    for name in sorted(set(keep) & set(by_name)):
        kept[name] = "--keep"
        todo.append(name)
    for name in sorted(ALWAYS_KEPT_EXTENSIONS & set(by_name)):
        kept.setdefault(name, "always kept")
        todo.append(name)
    while todo:
        for req in by_name[todo.pop()].requires:
            if req not in kept and req in by_name:
                kept[req] = "needed by a kept extension"
                todo.append(req)
    return kept


@dataclass
class _Keep:
    """What --keep decides: extensions kept (and why), schemas kept whole, schemas kept
    but emptied (public, the homes of kept extensions), schemas dropped."""

    extensions: dict[str, str]
    extension_oids: list[int]
    whole: list[str]
    emptied: list[tuple[int, str]]
    dropped: list[tuple[int, str]]
    reasons: list[tuple[str, str]]


def decide_keep(
    schemas: Sequence[tuple[int, str]], extensions: Sequence[_Extension], keep: set[str]
) -> _Keep:
    """Apply the keep-list to the schemas and extensions (pure)."""
    ext_keep = kept_extensions(extensions, keep)
    reasons = [
        (f"extension {quote_ident(e.name)}", ext_keep[e.name])
        for e in extensions
        if e.name in ext_keep
    ]
    whole = sorted(n for _, n in schemas if n in keep)
    reasons += [(f"schema {quote_ident(n)}", "--keep (with everything in it)") for n in whole]
    hosts = {e.schema for e in extensions if e.name in ext_keep}
    emptied = sorted(
        (oid, n) for oid, n in schemas if n not in keep and (n == "public" or n in hosts)
    )
    for _, n in emptied:
        why = " (it holds kept extensions' objects)" if n in hosts else " (public stays)"
        reasons.append((f"schema {quote_ident(n)}", "kept, emptied" + why))
    return _Keep(
        extensions=ext_keep,
        extension_oids=[e.oid for e in extensions if e.name in ext_keep],
        whole=whole,
        emptied=emptied,
        dropped=[(oid, n) for oid, n in schemas if n not in keep and (oid, n) not in emptied],
        reasons=reasons,
    )


@dataclass
class _Items:
    """The plan's items in drop order, and what their drops start from (for CASCADE)."""

    items: list[Item] = field(default_factory=list)
    seeds: list[tuple[int, int]] = field(default_factory=list)  # (classid, objid)
    unsupported: list[str] = field(default_factory=list)

    def add(self, item: Item, classid: int | None = None, objid: int | None = None) -> None:
        self.items.append(item)
        if classid is not None and objid is not None:
            self.seeds.append((classid, objid))

    def add_identified(
        self, kind: Kind, classid: int, objid: int, obj_type: str, identity: str
    ) -> None:
        stmt = drop_identified(obj_type, identity)
        if stmt is None:
            self.unsupported.append(f"{obj_type} {identity}")
        else:
            self.add(Item(kind, identity, obj_type, (stmt,)), int(classid), objid)


def plan_clean(
    conn: psycopg.Connection[Any],
    keep: Iterable[str] = (),
    origins: Iterable[str] = DEFAULT_ORIGINS,
    server: str = "",
) -> CleanPlan:
    """Everything that would go, in drop order, and what stays and why (reads only)."""
    keep = set(keep)
    database = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    schemas = [(r[0], r[1]) for r in conn.execute(TARGET_SCHEMAS_SQL)]
    extensions = [
        _Extension(r[0], r[1], r[2], r[3], tuple(r[4])) for r in conn.execute(TARGET_EXTENSIONS_SQL)
    ]
    unknown = keep - {n for _, n in schemas} - {e.name for e in extensions}
    if unknown:
        raise InputError(
            f"--keep {', '.join(sorted(unknown))}: no schema or extension of that name in "
            f"the target database {database}",
            fix="check the spelling (a misspelt --keep would drop what you meant to keep)",
        )
    decided = decide_keep(schemas, extensions, keep)
    out = _Items()
    _add_replication_objects(conn, out, decided)
    _add_schemas(conn, out, decided)
    for e in extensions:
        if e.name not in decided.extensions:
            detail = f"version {e.version} in schema {e.schema}"
            stmts = (drop_extension(e.name),)
            out.add(Item(Kind.EXTENSION, quote_ident(e.name), detail, stmts), PG_EXTENSION, e.oid)
    for classid, oid, obj_type, identity in conn.execute(GLOBAL_OBJECTS_SQL, (FIRST_NORMAL_OID,)):
        out.add_identified(Kind.GLOBAL, classid, oid, obj_type, identity)
    lo = large_object_count(conn)
    if lo:
        out.add(Item(Kind.LARGE_OBJECTS, f"{lo} large object(s)", "", (), count=int(lo)))
    # With parallel apply's lanes (ORIGIN.1, ...): they go with their origin.
    lanes = {name for o in origins for name in lane_origins(conn, o)}
    other_origins = _add_origins(conn, out, sorted(set(origins) | lanes))
    pgferry, others = _sessions(conn)
    return CleanPlan(
        server=server,
        database=database,
        items=out.items,
        kept=decided.reasons,
        collateral=_collateral(conn, out.seeds, decided.whole, decided.extension_oids),
        pgferry_sessions=pgferry,
        other_sessions=others,
        unsupported=out.unsupported,
        other_origins=other_origins,
    )


def _add_replication_objects(conn: psycopg.Connection[Any], out: _Items, keep: _Keep) -> None:
    """Event triggers first (a sql_drop trigger could refuse the drops), then
    subscriptions and publications."""
    for oid, name, event in conn.execute(TARGET_EVENT_TRIGGERS_SQL, (keep.extension_oids,)):
        item = Item(
            Kind.EVENT_TRIGGER, quote_ident(name), f"on {event}", (drop_event_trigger(name),)
        )
        out.add(item, PG_EVENT_TRIGGER, oid)
    for name, enabled, slot in conn.execute(SUBSCRIPTIONS_SQL):
        detail = f"its slot {slot} stays on the publisher: drop it there" if slot else ""
        stmts = drop_subscription(name, enabled, bool(slot))
        out.add(Item(Kind.SUBSCRIPTION, quote_ident(name), detail, stmts))
    for oid, name in conn.execute(PUBLICATIONS_SQL):
        item = Item(Kind.PUBLICATION, quote_ident(name), "", (drop_publication(name),))
        out.add(item, PG_PUBLICATION, oid)


def _add_schemas(conn: psycopg.Connection[Any], out: _Items, keep: _Keep) -> None:
    """Whole schemas, then the objects of the emptied ones (relations first)."""
    counts = _schema_counts(conn, [oid for oid, _ in keep.dropped])
    for oid, name in keep.dropped:
        stmts = (drop_schema(name),)
        out.add(
            Item(Kind.SCHEMA, quote_ident(name), counts.get(oid, "empty"), stmts), PG_NAMESPACE, oid
        )
    objects = conn.execute(SCHEMA_OBJECTS_SQL, ([oid for oid, _ in keep.emptied],)).fetchall()
    objects.sort(key=lambda r: (_TYPE_ORDER.get(r[3], len(_TYPE_ORDER)), r[4]))
    for _, classid, objid, obj_type, identity in objects:
        out.add_identified(Kind.OBJECT, classid, objid, obj_type, identity)


def _add_origins(conn: psycopg.Connection[Any], out: _Items, wanted: list[str]) -> list[str]:
    """The replication origins asked for; returns the cluster's other origins."""
    others = []
    for name in list_origins(conn):
        if name in wanted:
            detail = "cluster-wide: no other database may use it"
            out.add(Item(Kind.ORIGIN, name, detail, (drop_origin_sql(name),)))
        else:
            others.append(name)
    return others


def _sessions(conn: psycopg.Connection[Any]) -> tuple[list[tuple[int, str]], int]:
    """pgferry's sessions on this database, and how many other client sessions."""
    rows = conn.execute(
        DATABASE_SESSIONS_SQL,
        (PGFERRY_SESSIONS,),
    ).fetchall()
    return [(pid, app) for pid, app, ours in rows if ours], sum(1 for r in rows if not r[2])


def _schema_counts(conn: psycopg.Connection[Any], oids: list[int]) -> dict[int, str]:
    """'12 tables, 3 views, ...' for each schema."""
    if not oids:
        return {}
    rows = conn.execute(
        SCHEMA_CONTENT_COUNTS_SQL,
        (oids,),
    ).fetchall()
    out: dict[int, list[str]] = {}
    for oid, obj_type, n in rows:
        out.setdefault(oid, []).append(f"{n} {obj_type}{'s' if n > 1 else ''}")
    return {oid: ", ".join(parts) for oid, parts in out.items()}


def _collateral(
    conn: psycopg.Connection[Any],
    seeds: list[tuple[int, int]],
    kept_schemas: list[str],
    kept_ext_oids: list[int],
) -> list[str]:
    """What CASCADE would take from the kept schemas and extensions."""
    if not seeds or not (kept_schemas or kept_ext_oids):
        return []
    rows = conn.execute(
        COLLATERAL_SQL,
        {
            "classids": [c for c, _ in seeds],
            "objids": [o for _, o in seeds],
            "subids": [0] * len(seeds),
            "kept_schemas": kept_schemas,
            "kept_exts": kept_ext_oids,
        },
    ).fetchall()
    return [r[0] for r in rows]


# -- running it ------------------------------------------------------------------------


class DropOutcome(StrEnum):
    DROPPED = "dropped"
    FAILED = "failed"


@dataclass(frozen=True)
class ItemResult:
    item: Item
    outcome: DropOutcome
    error: str | None = None
    sqlstate: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.item.kind),
            "name": self.item.name,
            "outcome": str(self.outcome),
            "error": self.error,
            "sqlstate": self.sqlstate,
        }


def execute_plan(
    conn: psycopg.Connection[Any],
    plan: CleanPlan,
    *,
    lock_timeout: float = 10.0,
    progress: Callable[[Item], None] | None = None,
) -> list[ItemResult]:
    """Drop every item in order, each on its own (autocommit); failures do not stop."""
    set_settings(conn, {"lock_timeout": f"{int(lock_timeout * 1000)}ms"}, local=False)
    results = []
    for item in plan.items:
        if progress is not None:
            progress(item)
        try:
            if item.kind == Kind.LARGE_OBJECTS:
                _unlink_large_objects(conn)
            else:
                for stmt in item.statements:
                    conn.execute(stmt)
        except psycopg.Error as exc:
            message = (exc.diag.message_primary or str(exc)).strip()
            results.append(ItemResult(item, DropOutcome.FAILED, message, exc.sqlstate))
            continue
        results.append(ItemResult(item, DropOutcome.DROPPED))
    return results


def _unlink_large_objects(conn: psycopg.Connection[Any]) -> None:
    """In batches: one transaction per batch keeps lock tables small."""
    while True:
        with conn.transaction():
            row = conn.execute(
                DELETE_LARGE_OBJECTS_SQL,
                (LO_BATCH,),
            ).fetchone()
        if not row or not row[0]:
            return


def connect(info: ConnInfo) -> psycopg.Connection[Any]:
    """The connection target-clean reads and drops with."""
    return info.connect("pgferry target-clean", settings=UTF8)
