"""Managed PostgreSQL services: recognising them and what migrating off them needs.

Each service leaves markers in the catalog: its own settings (``rds.extensions``,
``cloudsql.iam_authentication``, ``azure.extensions``), admin roles, internal schemas or
functions. `detect_provider` reads them; `identify_provider` is the pure decision, so it can
be tested without the service. `provider_filters` writes a starting filter file that leaves
out the service's internals (schemas, extensions, event triggers) that cannot or should not
be recreated on another server. The fixes for wal_level and the replication privilege
differ per service too and live here, next to the knowledge they come from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.facts import function_names, role_names, schema_names
from pgferry.pg.settings import setting_names

SELF_HOSTED = "self-hosted"

# Names accepted by `pgferry filters init --for`, in the order shown in --help.
PROVIDERS: tuple[str, ...] = (
    "rds",
    "aurora",
    "supabase",
    "alloydb",
    "cloudsql",
    "azure",
    SELF_HOSTED,
)

DESCRIPTIONS: dict[str, str] = {
    "rds": "Amazon RDS for PostgreSQL",
    "aurora": "Amazon Aurora PostgreSQL",
    "supabase": "Supabase",
    "alloydb": "Google AlloyDB for PostgreSQL",
    "cloudsql": "Google Cloud SQL for PostgreSQL",
    "azure": "Azure Database for PostgreSQL",
    SELF_HOSTED: "self-hosted PostgreSQL",
}

# Roles whose membership gives the replication privilege on a managed service, where the
# REPLICATION attribute itself cannot be granted (membership never passes that attribute
# on in core PostgreSQL; RDS and Aurora special-case this role).
MANAGED_REPLICATION_ROLES: tuple[str, ...] = ("rds_replication",)

_SETTING_PREFIXES = ("rds.", "aurora.", "apg_", "cloudsql.", "alloydb.", "azure.", "supautils.")
_MARKER_ROLES = (
    "rds_superuser",
    "rds_replication",
    "cloudsqlsuperuser",
    "alloydbsuperuser",
    "azure_pg_admin",
    "azuresu",
    "supabase_admin",
)
_SUPABASE_SCHEMAS = frozenset(
    {"auth", "storage", "realtime", "supabase_functions", "graphql_public", "supabase_migrations"}
)
_MARKER_FUNCTIONS = ("aurora_version",)


@dataclass(frozen=True)
class ProviderMarkers:
    """What the catalog says about who runs the server."""

    settings: frozenset[str] = frozenset()  # names of settings with a provider prefix
    roles: frozenset[str] = frozenset()  # provider admin roles that exist
    schemas: frozenset[str] = frozenset()  # schema names of the database
    functions: frozenset[str] = frozenset()  # provider functions that exist

    @classmethod
    def of(
        cls,
        settings: Iterable[str] = (),
        roles: Iterable[str] = (),
        schemas: Iterable[str] = (),
        functions: Iterable[str] = (),
    ) -> ProviderMarkers:
        return cls(frozenset(settings), frozenset(roles), frozenset(schemas), frozenset(functions))


def identify_provider(markers: ProviderMarkers) -> str | None:
    """The managed service the markers point at, or None (self-hosted or unrecognised).

    Order matters: Aurora also has every RDS marker, and AlloyDB some Cloud SQL ones.
    """

    def setting(prefix: str) -> bool:
        return any(name.startswith(prefix) for name in markers.settings)

    if "aurora_version" in markers.functions or setting("aurora.") or setting("apg_"):
        return "aurora"
    if setting("rds.") or "rds_superuser" in markers.roles:
        return "rds"
    if setting("alloydb.") or "alloydbsuperuser" in markers.roles:
        return "alloydb"
    if setting("cloudsql.") or "cloudsqlsuperuser" in markers.roles:
        return "cloudsql"
    if setting("azure.") or {"azure_pg_admin", "azuresu"} & markers.roles:
        return "azure"
    if (
        setting("supautils.")
        or "supabase_admin" in markers.roles
        or len(_SUPABASE_SCHEMAS & markers.schemas) >= 2
    ):
        return "supabase"
    return None


def read_markers(conn: psycopg.Connection[Any]) -> ProviderMarkers:
    """Read the provider markers through `conn` (read-only catalog queries)."""
    pattern = "^(" + "|".join(p.replace(".", "\\.") for p in _SETTING_PREFIXES) + ")"
    settings = sorted(setting_names(conn, pattern))
    roles = role_names(conn, _MARKER_ROLES)
    schemas = schema_names(conn)
    functions = function_names(conn, _MARKER_FUNCTIONS)
    return ProviderMarkers.of(settings, roles, schemas, functions)


def detect_provider(conn: psycopg.Connection[Any]) -> str | None:
    """The managed service `conn` is connected to, or None (self-hosted or unrecognised)."""
    return identify_provider(read_markers(conn))


def describe(provider: str | None) -> str:
    """A human name for a provider key (None: nothing recognised)."""
    if provider is None:
        return "self-hosted or unrecognised (no managed-service marker found)"
    return DESCRIPTIONS.get(provider, provider)


# -- fixes that differ per service -----------------------------------------------------------


def wal_level_fix(provider: str | None) -> str:
    """How to get wal_level = logical on this service."""
    return {
        "rds": "set rds.logical_replication = 1 in the instance's DB parameter group, "
        "then reboot the instance",
        "aurora": "set rds.logical_replication = 1 in the DB cluster parameter group, "
        "then reboot the writer instance",
        "cloudsql": "set the database flag cloudsql.logical_decoding = on (gcloud sql instances "
        "patch INSTANCE --database-flags=cloudsql.logical_decoding=on); the instance restarts",
        "alloydb": "set the flag alloydb.logical_decoding = on on the primary instance; "
        "it restarts",
        "azure": "set the server parameter wal_level = logical (portal: Server parameters, or "
        "az postgres flexible-server parameter set --name wal_level --value logical), "
        "then restart the server",
        "supabase": "Supabase projects run with wal_level = logical: check that you are "
        "connected to the project's primary database, not a read replica",
    }.get(
        provider or "",
        "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
    )


def replication_fix(provider: str | None, user: str) -> str:
    """How to give `user` the right to create and read a logical replication slot."""
    role = sql.Identifier(user).as_string()
    if provider in ("rds", "aurora"):
        return f"GRANT rds_replication TO {role}; (as a member of rds_superuser)"
    if provider in ("cloudsql", "alloydb"):
        admin = "cloudsqlsuperuser" if provider == "cloudsql" else "alloydbsuperuser"
        return f"ALTER USER {role} WITH REPLICATION; (as a member of {admin})"
    if provider == "azure":
        return f"ALTER ROLE {role} WITH REPLICATION; (as a member of azure_pg_admin)"
    if provider == "supabase":
        return (
            f"connect as the postgres role (it has REPLICATION), or ALTER ROLE {role} "
            "WITH REPLICATION; as postgres"
        )
    return f"ALTER ROLE {role} WITH REPLICATION; (as a superuser)"


# -- starting filter files --------------------------------------------------------------------

_HEADER = """\
# pgferry filter file (pgcopydb's format) for a source on {description}.
# Written by `pgferry filters init --for {provider}`: a starting point, review it.
#
# Sections: [include-only-schema] [exclude-schema] [include-only-table] [exclude-table]
#           [exclude-index] [exclude-table-data] [include-only-extension]
#           [exclude-extension] [exclude-event-trigger]
# One name per line (tables and indexes as schema.name; quote mixed-case names).
# An excluded extension is not created on the target; objects of yours that use it
# still migrate and then need it there (clone names them): exclude those too.
# `pgferry preflight --filters FILE` warns about names that match nothing on the source.
# pgferry accepts comment lines inside sections; pgcopydb does not (it reads them as
# names): delete the comments before using this file with pgcopydb.
"""

_SELF_HOSTED = """
# Nothing is excluded: a self-hosted server has no platform objects of its own.
# Examples, to uncomment and adapt:
#
# [exclude-schema]
# scratch
#
# [exclude-table-data]
# public.audit_log
#
# [exclude-extension]
# pg_stat_statements
"""

_RDS_EXTENSIONS = """
[exclude-extension]
# Amazon-only extensions: no other server can create them.
# Names that your source does not have are harmless (preflight lists them).
rds_tools
aws_commons
aws_s3
aws_lambda
# log_fdw reads the RDS server log files; it only works on RDS.
log_fdw
# pg_transport copies databases between RDS instances; RDS-only.
pg_transport
"""

_AURORA_EXTRA = """# Aurora-only: query plan management, ML integration, Aurora statistics helpers.
apg_plan_mgmt
aws_ml
aurora_stat_utils
"""

_SUPABASE = """
[exclude-schema]
# Supabase Auth (GoTrue): users, sessions, identities. Managed by the platform; remove
# this line to copy the users as plain tables (foreign keys from your tables to
# auth.users are excluded with the schema otherwise: preflight and clone say which).
auth
# Supabase Storage metadata (buckets, objects): the files themselves are not in the
# database and do not move with it.
storage
# Realtime, edge-function hooks, migration history, the GraphQL API, the connection
# pooler's auth function, Vault secrets and pg_net's queue: platform internals.
realtime
_realtime
supabase_functions
supabase_migrations
graphql
graphql_public
pgbouncer
vault
pgsodium
pgsodium_masks
net
_analytics

[exclude-extension]
# Supabase platform extensions; most other servers cannot create them.
pg_graphql
pg_net
pgsodium
supabase_vault
pgjwt
# pg_cron needs shared_preload_libraries on the target and its jobs name the source
# database: recreate the jobs you need by hand after the cutover.
pg_cron

[exclude-event-trigger]
# Supabase's event triggers re-grant access after DDL and reload the API schema cache;
# creating event triggers needs a superuser, and they call functions of excluded
# extensions.
issue_graphql_placeholder
issue_pg_cron_access
issue_pg_graphql_access
issue_pg_net_access
pgrst_ddl_watch
pgrst_drop_watch
"""

_ALLOYDB = """
[exclude-schema]
# AlloyDB internals: AI/ML integration, the performance snapshot and statistics
# collectors, and helper objects of the managed service.
ai
google_ml
helpobj
perfsnap
pgsnap

[exclude-extension]
# Google-only extensions (statistics, columnar engine, index advisor, Vertex AI
# integration): no other server can create them.
g_stats
google_columnar_engine
google_db_advisor
google_ml_integration
"""

_CLOUDSQL = """
[exclude-schema]
# Created by google_ml_integration (Vertex AI from SQL); Google-only.
google_ml

[exclude-extension]
# Google-only extensions: Vertex AI integration and the Cloud SQL index advisor.
google_ml_integration
google_db_advisor
"""

_AZURE = """
[exclude-extension]
# Azure-only extensions: Blob Storage access and Azure AI / OpenAI integration. The
# azure_sys and azure_maintenance databases are the service's own and are never
# migrated: connect to your application's database.
azure_storage
azure_ai
"""


def provider_filters(provider: str) -> str:
    """The text of a starting filter file for a source on `provider` (see PROVIDERS)."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}: expected one of {', '.join(PROVIDERS)}")
    header = _HEADER.format(description=DESCRIPTIONS[provider], provider=provider)
    body = {
        "rds": _RDS_EXTENSIONS,
        "aurora": _RDS_EXTENSIONS + _AURORA_EXTRA,
        "supabase": _SUPABASE,
        "alloydb": _ALLOYDB,
        "cloudsql": _CLOUDSQL,
        "azure": _AZURE,
        SELF_HOSTED: _SELF_HOSTED,
    }[provider]
    return header + body
