"""What a preflight run is asked to check, and what the source told it.

`PreflightOptions` describes the migration; `SourceFacts` and the frozen records around it
carry what the source checks learnt to the target and local checks, so no side queries the
source twice. Records that only one family of checks uses live with it (`ScopeTable`,
`AvailableExtension`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pgferry.catalog.filters import QualifiedName
from pgferry.catalog.row_identity import RowIdentity
from pgferry.pg.plugins import DEFAULT_PLUGIN
from pgferry.state.workdir import default_dir

LISTED = 10  # names shown in one message


@dataclass(frozen=True)
class PreflightOptions:
    """What the migration will be asked to do."""

    follow: bool = False
    plugin: str = DEFAULT_PLUGIN
    slot: str = "pgferry"
    origin: str = "pgferry"
    workdir: Path = field(default_factory=default_dir)
    table_jobs: int = 4
    index_jobs: int = 4
    drop_if_exists: bool = False
    resume: bool = False
    wal2json_numeric_as_string: bool = False
    allow_downgrade: bool = False
    no_owner: bool = False  # the clone's --no-owner: owners are not restored
    no_acl: bool = False  # --no-acl: privileges are not restored
    create_roles: bool = False  # the clone's --roles: it creates the missing roles first


@dataclass(frozen=True)
class ScopeTable:
    """A relation of the source, with what the checks need to know about it."""

    oid: int
    schema: str
    name: str
    relkind: str  # r, p, m, f, S
    persistence: str  # p, u
    identity: RowIdentity  # what identifies its rows in decoded UPDATEs/DELETEs
    rls: bool
    can_select: bool
    schema_usage: bool
    parent_oids: tuple[int, ...]
    tablespaces: tuple[str, ...]  # of the table and its indexes, when not the default
    float_columns: bool = False  # numeric, real or double precision (or a domain over one)

    @property
    def qualname(self) -> QualifiedName:
        return QualifiedName(self.schema, self.name)


@dataclass(frozen=True)
class SourceNames:
    """Object names of the source, to match filter entries against."""

    schemas: frozenset[str] = frozenset()
    relations: frozenset[QualifiedName] = frozenset()  # tables, matviews, foreign tables
    indexes: frozenset[QualifiedName] = frozenset()
    extensions: frozenset[str] = frozenset()
    event_triggers: frozenset[str] = frozenset()


@dataclass
class SourceFacts:
    """What the source told us; fields stay None when their query failed."""

    major: int
    version: str
    user: str
    superuser: bool
    provider: str | None
    size: int | None = None
    encoding: str | None = None
    wal_level: str | None = None
    extensions: dict[str, str] | None = None  # name -> version, plpgsql left out
    event_triggers: list[str] | None = None
    all_tables_publications: list[str] | None = None
    tables: list[ScopeTable] | None = None
    names: SourceNames | None = None
    can_replicate: bool | None = None
    catalog_objects: int = 0
    wal_bytes_per_second: float | None = None
    # (role, 'owner' | 'grantee', schema, relation) for the objects the restore creates
    roles_in_use: list[tuple[str, str, str | None, str | None]] | None = None


@dataclass(frozen=True)
class RoleFacts:
    user: str
    superuser: bool
    replication: bool
    bypassrls: bool = False
    managed_replication_roles: tuple[str, ...] = ()  # e.g. rds_replication, when a member
