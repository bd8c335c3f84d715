"""What the source holds: frozen records filled by catalog/queries.py.

The whole catalog is stored as JSON in the state store, so a resumed run works on the
same objects and the same split decisions as the run it continues.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from psycopg import sql


@dataclass(frozen=True)
class Table:
    """A relation with a TOC entry: r (table), p (partitioned), m (matview), f (foreign)."""

    oid: int
    schema: str
    name: str
    relkind: str
    persistence: str  # p permanent, u unlogged
    access_method: str | None
    is_partition: bool
    parent_oids: tuple[int, ...]  # direct parents (partition parent or inheritance parents)
    pages: int  # main fork pages (pg_relation_size / block size)
    bytes: int  # total size used to order and split (heap + TOAST)
    reltuples: float
    columns: tuple[str, ...]  # copyable columns (not generated, not dropped), attnum order
    rls_enabled: bool
    rls_forced: bool

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def qualname(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def has_storage(self) -> bool:
        """Only ordinary tables (leaves, children) hold rows pgferry copies."""
        return self.relkind == "r"


@dataclass(frozen=True)
class Index:
    """An index on an ordinary table, possibly backing a PK/UNIQUE/EXCLUDE constraint."""

    oid: int
    table_oid: int
    schema: str
    name: str
    definition: str  # pg_get_indexdef, schema-qualified
    is_unique: bool
    is_primary: bool
    is_replident: bool
    is_clustered: bool
    tablespace: str | None
    stat_targets: tuple[tuple[int, int], ...]  # (index column number, statistics target)
    constraint_oid: int | None = None
    constraint_name: str | None = None
    constraint_type: str | None = None  # p, u, x
    constraint_def: str | None = None
    deferrable: bool = False
    deferred: bool = False

    @property
    def qualname(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Sequence:
    oid: int
    schema: str
    name: str
    owner_table_oid: int | None  # owned by (serial) or identity

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def qualname(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Extension:
    oid: int
    name: str
    version: str
    schema: str


@dataclass(frozen=True)
class Named:
    """A catalog object known by oid and name only (schemas, event triggers)."""

    oid: int
    name: str


@dataclass(frozen=True)
class DatabaseSetting:
    role: str | None  # None: ALTER DATABASE ... SET; else ALTER ROLE r IN DATABASE
    name: str
    value: str


@dataclass(frozen=True)
class Catalog:
    """Everything phase 1 learnt about the source database."""

    server_version_num: int
    dbname: str
    encoding: str
    block_size: int
    tables: tuple[Table, ...]
    indexes: tuple[Index, ...]
    sequences: tuple[Sequence, ...]
    extensions: tuple[Extension, ...]
    schemas: tuple[Named, ...]
    event_triggers: tuple[Named, ...]
    settings: tuple[DatabaseSetting, ...]
    large_objects: int
    roles: tuple[str, ...] = field(default=())

    @property
    def major(self) -> int:
        return self.server_version_num // 10000

    def table(self, oid: int) -> Table:
        return self._tables_by_oid()[oid]

    def _tables_by_oid(self) -> dict[int, Table]:
        cache = self.__dict__.get("_by_oid")
        if cache is None:
            cache = {t.oid: t for t in self.tables}
            object.__setattr__(self, "_by_oid", cache)
        return cache

    def to_json(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalog:
        return cls(
            server_version_num=data["server_version_num"],
            dbname=data["dbname"],
            encoding=data["encoding"],
            block_size=data["block_size"],
            tables=tuple(_table(t) for t in data["tables"]),
            indexes=tuple(_index(i) for i in data["indexes"]),
            sequences=tuple(Sequence(**s) for s in data["sequences"]),
            extensions=tuple(Extension(**e) for e in data["extensions"]),
            schemas=tuple(Named(**s) for s in data["schemas"]),
            event_triggers=tuple(Named(**s) for s in data["event_triggers"]),
            settings=tuple(DatabaseSetting(**s) for s in data["settings"]),
            large_objects=data["large_objects"],
            roles=tuple(data.get("roles", ())),
        )


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(value).items()}
    return value


def _table(d: dict[str, Any]) -> Table:
    d = dict(d)
    d["parent_oids"] = tuple(d["parent_oids"])
    d["columns"] = tuple(d["columns"])
    return Table(**d)


def _index(d: dict[str, Any]) -> Index:
    d = dict(d)
    d["stat_targets"] = tuple(tuple(x) for x in d["stat_targets"])
    return Index(**d)
