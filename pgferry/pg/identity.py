"""Which database a connection reached, as the server tells it: to refuse a target that is
the source whatever the spelling of the two connection strings.

127.0.0.1, localhost, a unix socket directory, a DNS alias, a pooler in front, a URI or a
key=value string: strings cannot say whether two connections reach the same database; the
servers can. A cluster is known by its `system_identifier` (pg_control_system()), which a
physical copy shares with its origin, so the postmaster's start time is compared as well:
it tells a restored copy from its origin, and stands in where a managed service hides
pg_control_system(). Within a cluster, the database is known by its oid.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from pgferry.errors import InputError
from pgferry.pg.conninfo import ConnInfo

_IDENTITY_QUERY = """
SELECT d.oid, d.datname, pg_catalog.pg_postmaster_start_time(),
       pg_catalog.host(pg_catalog.inet_server_addr()), pg_catalog.inet_server_port()
FROM pg_catalog.pg_database d
WHERE d.datname = pg_catalog.current_database()
"""
_SYSTEM_ID_QUERY = "SELECT system_identifier FROM pg_catalog.pg_control_system()"


@dataclass(frozen=True)
class DatabaseIdentity:
    """What a server says about the database a session is connected to."""

    system_identifier: int | None  # None where pg_control_system() is not allowed
    started_at: dt.datetime  # pg_postmaster_start_time()
    database_oid: int
    database_name: str
    server_addr: str | None  # inet_server_addr(): None over a unix socket; display only
    server_port: int | None

    def same_database(self, other: DatabaseIdentity) -> bool:
        """Both sessions are in the same database of the same running cluster."""
        if (
            self.system_identifier is not None
            and other.system_identifier is not None
            and self.system_identifier != other.system_identifier
        ):
            return False
        return self.started_at == other.started_at and self.database_oid == other.database_oid

    def describe(self) -> str:
        """For messages: the database and the cluster, as the server names them."""
        cluster = (
            f"system identifier {self.system_identifier}"
            if self.system_identifier is not None
            else f"started at {self.started_at.isoformat(timespec='seconds')}"
        )
        return f'database "{self.database_name}" (oid {self.database_oid}) of the cluster {cluster}'


def read_identity(conn: psycopg.Connection[Any]) -> DatabaseIdentity:
    """Ask the server which database `conn` is in; read-only, works for any role."""
    with conn.cursor() as cur:
        cur.execute(_IDENTITY_QUERY)
        row = cur.fetchone()
        assert row is not None  # current_database() is always in pg_database
        system_identifier: int | None
        try:
            with conn.transaction():
                cur.execute(_SYSTEM_ID_QUERY)
                sysrow = cur.fetchone()
            system_identifier = int(sysrow[0]) if sysrow else None
        except psycopg.Error:
            # Revoked, or not offered by a managed service (Aurora): the start time decides.
            system_identifier = None
    if not conn.autocommit:
        conn.rollback()
    return DatabaseIdentity(
        system_identifier=system_identifier,
        started_at=row[2],
        database_oid=int(row[0]),
        database_name=str(row[1]),
        server_addr=row[3],
        server_port=row[4],
    )


def same_database_error(source: DatabaseIdentity, target: DatabaseIdentity) -> InputError | None:
    """The error to raise when the target is the source, else None."""
    if not source.same_database(target):
        return None
    return InputError(
        f"the target is the source: both connection strings reach {source.describe()}; "
        "nothing was written",
        fix="point --target (or PGCOPYDB_TARGET_PGURI) at another database or server",
    )


def refuse_same_database_conns(
    source: psycopg.Connection[Any], target: psycopg.Connection[Any]
) -> None:
    """Raise InputError when two open sessions are in the same database."""
    error = same_database_error(read_identity(source), read_identity(target))
    if error is not None:
        raise error


def refuse_same_database(source: ConnInfo, target: ConnInfo) -> None:
    """Connect to both sides and raise InputError when the target is the source.

    Every command that writes to the target calls this (or the `_conns` form, when it
    already holds both sessions) before it writes anything, anywhere.
    """
    with (
        source.connect("pgferry identity") as src_conn,
        target.connect("pgferry identity") as tgt_conn,
    ):
        refuse_same_database_conns(src_conn, tgt_conn)
