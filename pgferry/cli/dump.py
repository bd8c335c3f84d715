"""`pgferry dump ...` and `pgferry restore ...`: pgcopydb's schema steps, one at a time.

`dump schema` reads the catalog and dumps the schema into DIR (no target needed);
`restore pre-data|post-data|schema` restores it into the target, as clone does (the same
phases of the same engine, see clone.options.SECTIONS). `dump roles` writes the source
cluster's roles into DIR; `restore roles` creates the ones the target lacks."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from pgferry.cli.clone import add_clone_flags
from pgferry.cli.common import (
    add_dir,
    add_filters,
    add_logging_flags,
    add_source,
    add_target,
    resolve_conn,
    resolve_dir,
)
from pgferry.errors import InputError

ROLES_FILE = "roles.json"


def register(sub: Any) -> None:
    dump = sub.add_parser("dump", help="dump the schema or the roles into DIR")
    dsub = dump.add_subparsers(dest="dump_what", metavar="WHAT")
    dsub.required = True
    for name, text in (
        ("schema", "dump the source's schema (pre-data and post-data) into DIR"),
        ("pre-data", "same as dump schema: the dump holds both sections"),
        ("post-data", "same as dump schema: the dump holds both sections"),
    ):
        q = dsub.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}, with the catalog the restore and "
            "copy commands use there; --target is optional (it picks pg_dump's version).",
        )
        add_clone_flags(q, section="dump")
        q.set_defaults(handler=handle_section)
    roles = dsub.add_parser(
        "roles",
        help="write the source cluster's roles into DIR (schema/roles.json)",
        description="Write the source cluster's roles, their attributes, memberships and "
        "(when readable) password hashes into DIR/schema/roles.json, readable by you only.",
    )
    add_source(roles)
    add_dir(roles)
    roles.add_argument(
        "--no-role-passwords", action="store_true", help="leave the password hashes out"
    )
    add_logging_flags(roles)
    roles.set_defaults(handler=handle_dump_roles)

    restore = sub.add_parser("restore", help="restore the schema or the roles from DIR")
    rsub = restore.add_subparsers(dest="restore_what", metavar="WHAT")
    rsub.required = True
    for name, section, text in (
        ("schema", "schema", "restore the schema in DIR into the target: pre-data, post-data"),
        ("pre-data", "pre-data", "restore the pre-data section (types, tables, functions...)"),
        (
            "post-data",
            "post-data",
            "restore the post-data section (indexes, constraints, triggers...) but what "
            "copy indexes and copy constraints built already",
        ),
    ):
        q = rsub.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}; dumps the schema first if DIR holds none.",
        )
        add_clone_flags(q, section=section)
        q.set_defaults(handler=handle_section)
    rroles = rsub.add_parser(
        "roles",
        help="create the roles of DIR's dump roles the target lacks",
        description="Create on the target the roles dump roles wrote into DIR that it "
        "lacks, with their memberships; roles the target has are left alone.",
    )
    add_target(rroles)
    add_dir(rroles)
    add_logging_flags(rroles)
    rroles.set_defaults(handler=handle_restore_roles)
    parse = rsub.add_parser(
        "parse-list",
        help="print the dump's table of contents as the restore uses it",
        description="Print the table of contents of the schema dump in DIR as pgferry "
        "passes it to pg_restore --use-list: what the filters leave out is commented with "
        "';'. Use it to check a filter file.",
    )
    add_dir(parse)
    add_filters(parse)
    add_logging_flags(parse)
    parse.set_defaults(handler=handle_parse_list)


def handle_section(args: argparse.Namespace) -> int:
    from pgferry.cli.copy import handle_section as run_section

    return run_section(args)


def handle_dump_roles(args: argparse.Namespace) -> int:
    from pgferry.catalog.roles import read_cluster_roles
    from pgferry.pg.profiles import SNAPSHOT_READER
    from pgferry.state.workdir import WorkDir

    workdir = WorkDir(resolve_dir(args))
    workdir.create()
    with resolve_conn(args, "source").connect("pgferry dump roles", settings=SNAPSHOT_READER) as c:
        roles = read_cluster_roles(c, passwords=not args.no_role_passwords)
    path = workdir.schema_dir / ROLES_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(roles.to_json(), f, indent=1)
        f.write("\n")
    print(
        f"wrote {len(roles.roles)} role(s) and {len(roles.memberships)} membership(s) to "
        f"{path}" + ("" if roles.passwords else " (without password hashes)")
    )
    return 0


def handle_restore_roles(args: argparse.Namespace) -> int:
    from pgferry.catalog.roles import ClusterRoles
    from pgferry.cli.copy import print_roles_copied
    from pgferry.clone.redo import create_roles
    from pgferry.state.workdir import WorkDir

    path = WorkDir(resolve_dir(args)).schema_dir / ROLES_FILE
    try:
        roles = ClusterRoles.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise InputError(
            f"no roles in {path.parent.parent}", fix="run pgferry dump roles with this --dir"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise InputError(
            f"{path} is not a roles file of pgferry dump roles",
            fix="write it again with pgferry dump roles",
        ) from None
    print_roles_copied(create_roles(resolve_conn(args, "target"), roles))
    return 0


def handle_parse_list(args: argparse.Namespace) -> int:
    import sys

    from pgferry.cli.common import resolve_filters
    from pgferry.clone.preview import restore_list

    given = resolve_filters(args) if args.filters else None
    sys.stdout.write(restore_list(resolve_dir(args), given))
    return 0
