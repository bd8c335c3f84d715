"""One step of the clone done again on its own (pgcopydb's `copy sequences`, `copy blobs`
and `copy roles`): after a cutover, the sequences' values, or large objects changed on
the source since the copy (CDC does not carry them); before a clone, the roles its
objects name. The clone's own code does the work."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgferry.catalog.facts import extension_names, large_object_oids
from pgferry.catalog.filters import Filters
from pgferry.catalog.model import Extension, Sequence
from pgferry.catalog.plan import LARGE_OBJECT_BATCH
from pgferry.catalog.queries import EXTENSIONS_SQL, SEQUENCES_SQL
from pgferry.catalog.roles import (
    CAN_CREATE_SQL,
    MEMBERSHIPS_SQL,
    ROLE_NAMES_SQL,
    ClusterRoles,
    create_role_sql,
    grant_membership_sql,
    read_cluster_roles,
)
from pgferry.catalog.sequences import read_sequence, set_sequence
from pgferry.clone.blobs import copy_large_objects
from pgferry.errors import InputError, StepFailed
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.profiles import DURABLE_WRITER, SNAPSHOT_READER
from pgferry.pg.snapshot import Snapshot, begin_on_snapshot
from pgferry.text import listed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Copied:
    objects: int
    bytes: int = 0
    left_out: tuple[str, ...] = ()


def copy_sequences(source: ConnInfo, target: ConnInfo) -> Copied:
    """Every sequence of the source's user schemas that the target has too takes the
    source's value (as the cutover does), read on one snapshot and set in one target
    transaction; those the target lacks (filtered out of the migration) are named."""
    with (
        source.connect("pgferry copy sequences", settings=SNAPSHOT_READER) as src,
        target.connect("pgferry copy sequences", settings=DURABLE_WRITER) as tgt,
    ):
        begin_on_snapshot(src, Snapshot(None, None))
        sequences = [Sequence(r[0], r[1], r[2], r[3]) for r in src.execute(SEQUENCES_SQL)]
        on_target = {(r[1], r[2]) for r in tgt.execute(SEQUENCES_SQL)}
        kept = [s for s in sequences if (s.schema, s.name) in on_target]
        values = [(s, *read_sequence(src, s)) for s in kept]
        with tgt.transaction():
            for seq, last_value, is_called in values:
                set_sequence(tgt, seq, last_value, is_called)
    missing = tuple(s.qualname for s in sequences if (s.schema, s.name) not in on_target)
    if missing:
        log.warning(
            "%d sequence(s) of the source are not on the target, left out: %s",
            len(missing),
            listed(list(missing), 10),
        )
    return Copied(len(kept), left_out=missing)


def copy_blobs(source: ConnInfo, target: ConnInfo) -> Copied:
    """Every large object of the source, created on the target where missing and its
    contents written again, in batches (one target transaction each) read on one
    snapshot. Objects only on the target are left alone."""
    objects = total = 0
    with (
        source.connect("pgferry copy blobs", settings=SNAPSHOT_READER) as src,
        target.connect("pgferry copy blobs", settings=DURABLE_WRITER) as tgt,
    ):
        begin_on_snapshot(src, Snapshot(None, None))
        oids = large_object_oids(src)
        for start in range(0, len(oids), LARGE_OBJECT_BATCH):
            batch = oids[start : start + LARGE_OBJECT_BATCH]
            count, size = copy_large_objects(src, tgt, batch[0], batch[-1])
            objects, total = objects + count, total + size
            log.info("large objects: %d of %d copied", objects, len(oids))
    return Copied(objects, total)


@dataclass(frozen=True)
class RolesCopied:
    created: tuple[str, ...]
    existing: int  # roles the target had already: left alone
    memberships: int  # GRANT role TO role made
    passwords: bool  # whether the source's password hashes could be read (superuser)
    without: tuple[str, ...] = ()  # "role: SUPERUSER" attributes the target could not give


def copy_roles(source: ConnInfo, target: ConnInfo, *, passwords: bool = True) -> RolesCopied:
    """The source cluster's roles the target lacks, created with their attributes and
    (where readable) their password hashes, in one target transaction; memberships
    between roles granted where missing. Roles the target has are left alone."""
    with source.connect("pgferry copy roles", settings=SNAPSHOT_READER) as src:
        roles = read_cluster_roles(src, passwords=passwords)
    return create_roles(target, roles)


def create_roles(target: ConnInfo, given: ClusterRoles) -> RolesCopied:
    """`copy roles` on the target side, also `restore roles` from a dump roles file."""
    roles, readable = list(given.roles), given.passwords
    with target.connect("pgferry copy roles", settings=DURABLE_WRITER) as tgt:
        superuser, createrole = tgt.execute(CAN_CREATE_SQL).fetchone()  # type: ignore[misc]
        present = {r[0] for r in tgt.execute(ROLE_NAMES_SQL)}
        todo = [r for r in roles if r.name not in present]
        if todo and not (superuser or createrole):
            raise InputError(
                f"the target role can create no role ({len(todo)} to create: "
                f"{listed([r.name for r in todo], 5)})",
                fix="connect to the target as a role with CREATEROLE (or a superuser), or "
                "create the roles there yourself",
            )
        without: list[str] = []
        granted = 0
        with tgt.transaction():
            for role in todo:
                statement, dropped = create_role_sql(role, superuser=bool(superuser))
                tgt.execute(statement)
                without += [f"{role.name}: {a}" for a in dropped]
            have = present | {r.name for r in todo}
            done = {(r[0], r[1]) for r in tgt.execute(MEMBERSHIPS_SQL)}
            for group, member, admin in given.memberships:
                if group in have and member in have and (group, member) not in done:
                    try:
                        with tgt.transaction():  # a savepoint: one refusal is not fatal
                            tgt.execute(grant_membership_sql(group, member, admin))
                        granted += 1
                    except psycopg.errors.InsufficientPrivilege:
                        without.append(f"{member}: member of {group}")
    if without:
        log.warning("not given on the target (only a superuser may): %s", listed(without, 10))
    if todo and not readable:
        log.warning(
            "the source's password hashes were not read (readable by superusers only, or "
            "--no-role-passwords): the %d role(s) created have no password; set them on the "
            "target (ALTER ROLE ... PASSWORD)",
            len(todo),
        )
    return RolesCopied(
        created=tuple(r.name for r in todo),
        existing=len(roles) - len(todo),
        memberships=granted,
        passwords=readable,
        without=tuple(without),
    )


@dataclass(frozen=True)
class ExtensionsCopied:
    created: tuple[str, ...]  # "name version"
    existing: tuple[str, ...]


def copy_extensions(
    source: ConnInfo,
    target: ConnInfo,
    filters: Filters,
    requirements: dict[str, str] | None = None,
) -> ExtensionsCopied:
    """The source database's extensions (those the filters keep) the target lacks:
    CREATE EXTENSION in the source's schema, at the source's version or the one
    `requirements` pins, CASCADE; each in its own transaction. The privileged step of a
    clone that then runs with --skip-extensions as a role that may not create them."""
    pinned = requirements or {}
    with source.connect("pgferry copy extensions", settings=SNAPSHOT_READER) as src:
        rows = src.execute(EXTENSIONS_SQL).fetchall()
    wanted = [Extension(*r) for r in rows if r[1] != "plpgsql" and filters.keeps_extension(r[1])]
    created: list[str] = []
    existing: list[str] = []
    with target.connect("pgferry copy extensions", settings=DURABLE_WRITER) as tgt:
        tgt.autocommit = True
        have = extension_names(tgt)
        for ext in wanted:
            version = pinned.get(ext.name, ext.version)
            if ext.name in have:
                existing.append(ext.name)
                continue
            try:
                tgt.execute(
                    sql.SQL(
                        "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {} VERSION {} CASCADE"
                    ).format(
                        sql.Identifier(ext.name),
                        sql.Identifier(ext.schema),
                        sql.Literal(version),
                    )
                )
            except psycopg.Error as exc:
                raise StepFailed(
                    f"CREATE EXTENSION {ext.name} {version} failed on the target: "
                    f"{' '.join(str(exc).split())}",
                    fix="install the extension's package on the target server, create the "
                    f"schema {ext.schema} first, or pin another version with --requirements",
                ) from None
            created.append(f"{ext.name} {version}")
            have = extension_names(tgt)  # CASCADE may have created others
    return ExtensionsCopied(tuple(created), tuple(existing))
