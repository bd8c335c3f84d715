"""The cluster's roles, as `copy roles` (and `clone --roles`) read them on the source and
create them on the target: attributes, password hashes where this role may read them,
memberships. Predefined roles (pg_*) are the server's own and never read."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

# pg_authid (the password hashes) is readable by superusers only; pg_roles by everyone.
_ROLES_SQL = """
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
       r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::text, {password}
  FROM pg_catalog.pg_roles r
 WHERE r.rolname !~ '^pg_'
 ORDER BY r.rolname
"""
_PASSWORD = "(SELECT a.rolpassword FROM pg_catalog.pg_authid a WHERE a.oid = r.oid)"
_CAN_READ_PASSWORDS = "SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT')"
MEMBERSHIPS_SQL = """
SELECT g.rolname, m.rolname, am.admin_option
  FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
  JOIN pg_catalog.pg_roles m ON m.oid = am.member
 WHERE g.rolname !~ '^pg_' OR m.rolname !~ '^pg_'
 ORDER BY 1, 2
"""
ROLE_NAMES_SQL = "SELECT rolname FROM pg_catalog.pg_roles"
CAN_CREATE_SQL = (
    "SELECT rolsuper, rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user"
)

# Attributes only a superuser may give (the others need CREATEROLE).
SUPERUSER_ONLY = ("SUPERUSER", "REPLICATION", "BYPASSRLS")


@dataclass(frozen=True)
class Role:
    name: str
    attributes: tuple[str, ...]  # SUPERUSER, LOGIN, ... as CREATE ROLE spells them
    connection_limit: int
    valid_until: str | None
    password: str | None  # the hash as stored, when readable; never printed


@dataclass(frozen=True)
class ClusterRoles:
    """What `dump roles` writes and `restore roles` reads: the roles and memberships."""

    roles: tuple[Role, ...]
    memberships: tuple[tuple[str, str, bool], ...]  # (group, member, admin option)
    passwords: bool  # whether the password hashes were read

    def to_json(self) -> dict[str, Any]:
        return {
            "roles": [asdict(r) for r in self.roles],
            "memberships": [list(m) for m in self.memberships],
            "passwords": self.passwords,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterRoles:
        return cls(
            roles=tuple(Role(**{**r, "attributes": tuple(r["attributes"])}) for r in data["roles"]),
            memberships=tuple((g, m, bool(a)) for g, m, a in data["memberships"]),
            passwords=bool(data["passwords"]),
        )


def read_cluster_roles(conn: psycopg.Connection[Any], *, passwords: bool = True) -> ClusterRoles:
    """The source's roles and memberships; without `passwords`, no hash is read."""
    roles, readable = read_roles(conn)
    if not passwords:
        roles = [Role(r.name, r.attributes, r.connection_limit, r.valid_until, None) for r in roles]
    members = tuple((r[0], r[1], bool(r[2])) for r in conn.execute(MEMBERSHIPS_SQL))
    return ClusterRoles(tuple(roles), members, readable and passwords)


def read_roles(conn: psycopg.Connection[Any]) -> tuple[list[Role], bool]:
    """The source's roles, and whether their password hashes could be read."""
    readable = bool(conn.execute(_CAN_READ_PASSWORDS).fetchone()[0])  # type: ignore[index]
    rows = conn.execute(_ROLES_SQL.format(password=_PASSWORD if readable else "NULL")).fetchall()
    names = ("SUPERUSER", "INHERIT", "CREATEROLE", "CREATEDB", "LOGIN", "REPLICATION", "BYPASSRLS")
    roles = [
        Role(
            name=r[0],
            attributes=tuple(n if on else f"NO{n}" for n, on in zip(names, r[1:8], strict=True)),
            connection_limit=int(r[8]),
            valid_until=r[9],
            password=r[10],
        )
        for r in rows
    ]
    return roles, readable


def create_role_sql(role: Role, *, superuser: bool) -> tuple[sql.Composed, list[str]]:
    """CREATE ROLE for `role`; without `superuser`, the attributes only a superuser may
    give are left out (and returned)."""
    dropped = [a for a in role.attributes if a in SUPERUSER_ONLY and not superuser]
    attrs = [a for a in role.attributes if a not in dropped]
    parts: list[sql.Composable] = [sql.SQL(a) for a in attrs]
    parts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(role.connection_limit)))
    if role.valid_until is not None and role.valid_until != "infinity":
        parts.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(role.valid_until)))
    if role.password is not None:
        parts.append(sql.SQL("PASSWORD {}").format(sql.Literal(role.password)))
    statement = sql.SQL("CREATE ROLE {} WITH {}").format(
        sql.Identifier(role.name), sql.SQL(" ").join(parts)
    )
    return statement, dropped


def grant_membership_sql(group: str, member: str, admin: bool) -> sql.Composed:
    return sql.SQL("GRANT {} TO {}{}").format(
        sql.Identifier(group),
        sql.Identifier(member),
        sql.SQL(" WITH ADMIN OPTION" if admin else ""),
    )
