"""A random source schema from a seed: tables of every row-identity and layout pgferry must
handle, with columns of many kinds, and the DDL that creates them.

Pure Python: `generate_schema` only draws from its random stream; nothing touches a server.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from psycopg import sql

from tests.explorer.names import Namer
from tests.explorer.values import Kind, builtin_kinds, user_kinds


class Identity(StrEnum):
    """How a table's rows are identified for UPDATE and DELETE."""

    PK = "pk"
    PK_COMPOSITE = "pk-composite"
    PK_INCLUDE = "pk-include"
    USING_INDEX = "using-index"
    USING_INDEX_INCLUDE = "using-index-include"
    PK_AND_USING_INDEX = "pk+using-index"
    FULL_KEY = "full-key"
    FULL_NOKEY = "full-nokey"


class Layout(StrEnum):
    PLAIN = "plain"
    RANGE = "range"
    LIST = "list"
    HASH = "hash"
    RANGE_MULTI = "range-multi"
    INHERIT = "inherit"
    WIDE = "wide"


PARTITIONED = (Layout.RANGE, Layout.LIST, Layout.HASH, Layout.RANGE_MULTI)
_PK_IDENTITIES = (Identity.PK, Identity.PK_COMPOSITE, Identity.PK_INCLUDE, Identity.FULL_KEY)
_LAYOUT_IDENTITIES: dict[Layout, tuple[Identity, ...]] = {
    Layout.PLAIN: tuple(Identity),
    Layout.WIDE: (Identity.PK, Identity.PK_INCLUDE, Identity.FULL_KEY),
    Layout.INHERIT: (Identity.PK, Identity.PK_INCLUDE, Identity.FULL_KEY, Identity.FULL_NOKEY),
    **{layout: (*_PK_IDENTITIES, Identity.FULL_NOKEY) for layout in PARTITIONED},
}

# The pick column holds values in [0, PICK_RANGE): the workload finds "a row" by it.
PICK_RANGE = 1_000_000


class Role(StrEnum):
    KEY = "key"  # part of the primary key, values from the table's counter
    UNIQ = "uniq"  # the REPLICA IDENTITY USING INDEX column, values from the counter
    PICK = "pick"  # integer the workload selects rows by
    PART = "part"  # the partition key
    PAYLOAD = "payload"
    GENERATED = "generated"
    IDENTITY_ALWAYS = "identity-always"
    IDENTITY_BY_DEFAULT = "identity-by-default"
    DROPPED = "dropped"  # created, then dropped before the clone


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    role: Role
    included: bool = False  # in the INCLUDE list of the identity index

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.name)

    @property
    def writable(self) -> bool:
        return self.role in (Role.KEY, Role.UNIQ, Role.PICK, Role.PART, Role.PAYLOAD)


@dataclass
class Table:
    number: int
    schema: str
    name: str
    identity: Identity
    layout: Layout
    columns: list[Column]
    children: list[str] = field(default_factory=list)  # inheritance children
    leaves: list[str] = field(default_factory=list)  # partitions holding rows
    next_key: int = 1  # the counter key and uniq values come from (advanced by the workload)
    samples: list[list[str | None]] = field(default_factory=list)  # rows to insert again

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def of(self, role: Role) -> list[Column]:
        return [c for c in self.columns if c.role == role]

    @property
    def pick(self) -> Column:
        return self.of(Role.PICK)[0]

    @property
    def part(self) -> Column | None:
        parts = self.of(Role.PART)
        return parts[0] if parts else None

    @property
    def writable(self) -> list[Column]:
        return [c for c in self.columns if c.writable]

    @property
    def payload(self) -> list[Column]:
        return self.of(Role.PAYLOAD)

    @property
    def included(self) -> list[Column]:
        return [c for c in self.columns if c.included]

    @property
    def has_key(self) -> bool:
        return self.identity != Identity.FULL_NOKEY

    def describe(self) -> str:
        extra = f", {len(self.children)} children" if self.children else ""
        extra += f", {len(self.leaves)} leaves" if self.leaves else ""
        return f"{self.schema}.{self.name} [{self.layout}, {self.identity}{extra}]"


@dataclass
class Schema:
    """What one seed creates on the source, and the DDL to create it."""

    schemas: list[str]
    tables: list[Table]
    sequences: list[sql.Identifier]
    ddl: list[sql.Composed]
    after_load: list[sql.Composed]  # run once the initial rows are in (drop columns)


def key_value(kind: Kind, n: int) -> str:
    """The `n`th value of a key column: unique per `n` for every key kind."""
    if kind.label in ("int4", "int8"):
        return str(n)
    if kind.label == "uuid":
        return str(uuid.UUID(int=n))
    return f"k{n} '\""


def key_expression(kind: Kind, g: sql.Composable) -> sql.Composable:
    """`key_value(kind, g)` computed by the server, for bulk inserts."""
    if kind.label in ("int4", "int8"):
        return g
    if kind.label == "uuid":
        return sql.SQL("lpad(to_hex({}), 32, '0')::uuid").format(g)
    return sql.SQL("'k' || {} || ' ''\"'").format(g)


def part_value(layout: Layout, rng: random.Random) -> str:
    """A partition key value for `layout` (some fall into the default partition)."""
    if layout == Layout.LIST:
        return str(rng.randrange(0, 6))
    if layout == Layout.HASH:
        return str(rng.randrange(0, 1000))
    return str(rng.choice([rng.randrange(0, 300), rng.randrange(-50, 400)]))


def part_expression(layout: Layout, g: sql.Composable) -> sql.Composable:
    modulus = {Layout.LIST: 6, Layout.HASH: 1000}.get(layout, 300)
    return sql.SQL("({} * 37) % {}").format(g, sql.Literal(modulus))


def generate_schema(
    rng: random.Random,
    *,
    max_tables: int = 7,
    plain_type_names: bool = False,
) -> Schema:
    """Draw a schema: 2..max_tables tables, possibly a wide one, in one or two schemas."""
    hostile = rng.choice([0.0, 0.3, 0.6])

    def new_namer() -> Namer:
        return Namer(rng, hostile)

    schema_namer = new_namer()
    schemas = ["public"]
    if rng.random() < 0.5:
        schemas.append(schema_namer.name("Sch"))
    type_schema = schemas[-1]
    ddl: list[sql.Composed] = [
        sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(s)) for s in schemas[1:]
    ]
    type_ddl, extra_kinds = user_kinds(type_schema, plain=plain_type_names)
    ddl += type_ddl
    kinds = builtin_kinds() + extra_kinds
    relation_namers = {s: new_namer() for s in schemas}
    tables: list[Table] = []
    after_load: list[sql.Composed] = []
    count = rng.randrange(2, max_tables + 1)
    for number in range(1, count + 1):
        layout = rng.choices(list(Layout), weights=[6, 2, 1, 1, 1, 2, 1 if number == count else 0])[
            0
        ]
        identity = rng.choice(_LAYOUT_IDENTITIES[layout])
        schema = rng.choice(schemas)
        namer = relation_namers[schema]
        table = _table(rng, number, schema, namer, identity, layout, kinds, new_namer())
        tables.append(table)
        ddl += _table_ddl(rng, table, namer)
        after_load += [
            sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(table.ident, c.ident)
            for c in table.of(Role.DROPPED)
        ]
    sequences = [sql.Identifier(schemas[0], relation_namers[schemas[0]].name("seq"))]
    ddl += [sql.SQL("CREATE SEQUENCE {}").format(s) for s in sequences]
    return Schema(schemas, tables, sequences, ddl, after_load)


def _table(
    rng: random.Random,
    number: int,
    schema: str,
    namer: Namer,
    identity: Identity,
    layout: Layout,
    kinds: list[Kind],
    cols: Namer,
) -> Table:
    by_label = {k.label: k for k in kinds}
    key_kinds = [by_label[label] for label in ("int8", "int4", "text", "uuid")]
    columns: list[Column] = []
    if identity != Identity.FULL_NOKEY:
        columns.append(Column(cols.name("id"), rng.choice(key_kinds), Role.KEY))
        if identity == Identity.PK_COMPOSITE:
            columns.append(Column(cols.name("kb"), rng.choice(key_kinds), Role.KEY))
    if identity in (
        Identity.USING_INDEX,
        Identity.USING_INDEX_INCLUDE,
        Identity.PK_AND_USING_INDEX,
    ):
        columns.append(Column(cols.name("u"), by_label["int8"], Role.UNIQ))
    if identity == Identity.USING_INDEX or identity == Identity.USING_INDEX_INCLUDE:
        columns = [c for c in columns if c.role != Role.KEY]
    columns.append(Column(cols.name("k"), by_label["int4"], Role.PICK))
    if layout in PARTITIONED:
        columns.append(Column(cols.name("p"), by_label["int4"], Role.PART))
    if layout == Layout.WIDE:
        wide = [by_label[label] for label in ("int4", "text", "numeric", "bool")]
        payload_kinds = [rng.choice(wide) for _ in range(rng.randrange(80, 250))]
        payload_kinds.append(by_label["toast text"])
    else:
        payload_kinds = rng.sample(kinds, rng.randrange(3, 10))
        if rng.random() < 0.6 and not any(k.toast for k in payload_kinds):
            payload_kinds.append(by_label["toast text"])
        if identity in (Identity.FULL_NOKEY, Identity.FULL_KEY) and rng.random() < 0.7:
            # no equality operator: FULL identity cannot match rows with '='
            for label in ("json", "point", "xml"):
                if rng.random() < 0.6 and by_label[label] not in payload_kinds:
                    payload_kinds.append(by_label[label])
    include = identity in (Identity.PK_INCLUDE, Identity.USING_INDEX_INCLUDE)
    include_count = rng.randrange(1, 3) if include else 0
    # Index tuples hold INCLUDE values: no TOASTed kind there (index rows are < 2.7 kB).
    payload_kinds.sort(key=lambda k: k.toast)
    for i, kind in enumerate(payload_kinds):
        columns.append(Column(cols.name("c"), kind, Role.PAYLOAD, included=i < include_count))
    if layout in (Layout.PLAIN, Layout.WIDE, *PARTITIONED) and rng.random() < 0.4:
        columns.append(Column(cols.name("g"), by_label["int8"], Role.GENERATED))
    if layout in (Layout.PLAIN, Layout.WIDE) and rng.random() < 0.4:
        role = rng.choice([Role.IDENTITY_ALWAYS, Role.IDENTITY_BY_DEFAULT])
        columns.append(Column(cols.name("idn"), by_label["int8"], role))
    if rng.random() < 0.35:
        dropped = Column(cols.name("gone"), by_label["text"], Role.DROPPED)
        columns.insert(rng.randrange(len(columns) + 1), dropped)
    if rng.random() < 0.3:
        rng.shuffle(columns)
    return Table(number, schema, namer.name("T"), identity, layout, columns)


def _column_ddl(table: Table, col: Column) -> sql.Composable:
    if col.role == Role.GENERATED:
        return sql.SQL("{} bigint GENERATED ALWAYS AS ({} * 2) STORED").format(
            col.ident, table.pick.ident
        )
    if col.role == Role.IDENTITY_ALWAYS:
        return sql.SQL("{} bigint GENERATED ALWAYS AS IDENTITY").format(col.ident)
    if col.role == Role.IDENTITY_BY_DEFAULT:
        return sql.SQL("{} bigint GENERATED BY DEFAULT AS IDENTITY").format(col.ident)
    not_null = sql.SQL(" NOT NULL") if col.role in (Role.KEY, Role.UNIQ, Role.PICK) else sql.SQL("")
    return sql.SQL("{} {}{}").format(col.ident, col.kind.sqltype, not_null)


def _idents(columns: list[Column]) -> sql.Composable:
    return sql.SQL(", ").join(c.ident for c in columns)


def _primary_key(table: Table) -> sql.Composable | None:
    if table.identity in (Identity.USING_INDEX, Identity.USING_INDEX_INCLUDE, Identity.FULL_NOKEY):
        return None
    key = table.of(Role.KEY) + ([table.part] if table.part else [])
    text = sql.SQL("PRIMARY KEY ({})").format(_idents(key))
    if table.identity == Identity.PK_INCLUDE:
        text = sql.SQL("{} INCLUDE ({})").format(text, _idents(table.included))
    return text


def _table_ddl(rng: random.Random, table: Table, namer: Namer) -> list[sql.Composed]:
    parts = [_column_ddl(table, c) for c in table.columns]
    pk = _primary_key(table)
    if pk is not None:
        parts.append(pk)
    body = sql.SQL(", ").join(parts)
    ddl: list[sql.Composed] = []
    if table.layout in PARTITIONED:
        assert table.part is not None
        ddl.append(
            sql.SQL("CREATE TABLE {} ({}) PARTITION BY {} ({})").format(
                table.ident,
                body,
                sql.SQL(
                    "LIST"
                    if table.layout == Layout.LIST
                    else "HASH"
                    if table.layout == Layout.HASH
                    else "RANGE"
                ),
                table.part.ident,
            )
        )
        ddl += _partitions(table, namer)
    else:
        ddl.append(sql.SQL("CREATE TABLE {} ({})").format(table.ident, body))
    if table.layout == Layout.INHERIT:
        for _ in range(rng.randrange(1, 3)):
            child = namer.name("child")
            table.children.append(child)
            child_ident = sql.Identifier(table.schema, child)
            ddl.append(sql.SQL("CREATE TABLE {} () INHERITS ({})").format(child_ident, table.ident))
            if pk is not None:
                ddl.append(sql.SQL("ALTER TABLE {} ADD {}").format(child_ident, pk))
    if table.identity in (
        Identity.USING_INDEX,
        Identity.USING_INDEX_INCLUDE,
        Identity.PK_AND_USING_INDEX,
    ):
        index = sql.Identifier(namer.name("ix"))
        include: sql.Composable = sql.SQL("")
        if table.identity == Identity.USING_INDEX_INCLUDE:
            include = sql.SQL(" INCLUDE ({})").format(_idents(table.included))
        ddl.append(
            sql.SQL("CREATE UNIQUE INDEX {} ON {} ({}){}").format(
                index, table.ident, _idents(table.of(Role.UNIQ)), include
            )
        )
        ddl.append(
            sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(table.ident, index)
        )
    if table.identity in (Identity.FULL_KEY, Identity.FULL_NOKEY):
        holders = [table.name, *table.children, *table.leaves]
        ddl += [
            sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(
                sql.Identifier(table.schema, name)
            )
            for name in holders
        ]
    if rng.random() < 0.3:  # a secondary, non-unique index: must not matter to apply
        ddl.append(sql.SQL("CREATE INDEX ON {} ({})").format(table.ident, table.pick.ident))
    return ddl


def _partitions(table: Table, namer: Namer) -> list[sql.Composed]:
    """Partitions of `table`; `table.leaves` gets the ones that hold rows."""

    def child(
        bounds: str, *, leaf: bool = True, sub: sql.Composable | None = None
    ) -> tuple[str, sql.Composed]:
        name = namer.name("part")
        if leaf:
            table.leaves.append(name)
        return name, sql.SQL("CREATE TABLE {} PARTITION OF {} {}{}").format(
            sql.Identifier(table.schema, name), table.ident, sql.SQL(bounds), sub or sql.SQL("")
        )

    ddl: list[sql.Composed] = []
    if table.layout == Layout.LIST:
        ddl += [
            child("FOR VALUES IN (0, 1)")[1],
            child("FOR VALUES IN (2, 3)")[1],
            child("DEFAULT")[1],
        ]
    elif table.layout == Layout.HASH:
        ddl += [child(f"FOR VALUES WITH (MODULUS 3, REMAINDER {r})")[1] for r in range(3)]
    elif table.layout == Layout.RANGE:
        ddl += [
            child("FOR VALUES FROM (0) TO (100)")[1],
            child("FOR VALUES FROM (100) TO (200)")[1],
            child("DEFAULT")[1],
        ]
    else:  # two levels: a hash-partitioned range and a range-partitioned default
        key = (table.of(Role.KEY) or [table.pick])[0]
        assert table.part is not None
        ddl.append(child("FOR VALUES FROM (MINVALUE) TO (100)")[1])
        middle, text = child(
            "FOR VALUES FROM (100) TO (200)",
            leaf=False,
            sub=sql.SQL(" PARTITION BY HASH ({})").format(key.ident),
        )
        ddl.append(text)
        default, text = child(
            "DEFAULT",
            leaf=False,
            sub=sql.SQL(" PARTITION BY RANGE ({})").format(table.part.ident),
        )
        ddl.append(text)
        for parent, bounds in (
            (middle, "FOR VALUES WITH (MODULUS 2, REMAINDER 0)"),
            (middle, "FOR VALUES WITH (MODULUS 2, REMAINDER 1)"),
            (default, "FOR VALUES FROM (200) TO (250)"),
            (default, "DEFAULT"),
        ):
            name = namer.name("sub")
            table.leaves.append(name)
            ddl.append(
                sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
                    sql.Identifier(table.schema, name),
                    sql.Identifier(table.schema, parent),
                    sql.SQL(bounds),
                )
            )
    return ddl
