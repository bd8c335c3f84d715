"""`pgferry copy ...`: pgcopydb's `copy` commands. `copy db` is clone; `copy schema|data|
table-data|indexes|constraints` run some of the clone's phases in DIR (clone.options.SECTIONS),
each going on from what an earlier one there did; `copy sequences|blobs|roles|extensions`
redo one step on its own, e.g. after the cutover."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgferry.cli.clone import add_clone_flags
from pgferry.cli.common import (
    add_filters,
    add_logging_flags,
    add_source,
    add_target,
    resolve_conn,
    resolve_filters,
)
from pgferry.errors import InputError
from pgferry.text import human_bytes

if TYPE_CHECKING:
    from pgferry.clone.redo import RolesCopied


def register(sub: Any) -> None:
    p = sub.add_parser(
        "copy",
        help="one part of the clone: db, schema, data, table-data, indexes, constraints, "
        "sequences, blobs, roles, extensions",
        description="Redo one step of the clone on its own, e.g. after the cutover.",
    )
    steps = p.add_subparsers(dest="copy_step", metavar="STEP")
    steps.required = True
    db = steps.add_parser(
        "db",
        help="copy the whole database (same as clone)",
        description="Clone the source database into the target database (pgferry clone).",
    )
    add_clone_flags(db)
    db.set_defaults(handler=handle_clone)
    for name, section, text in SECTION_COMMANDS:
        q = steps.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        add_clone_flags(q, section=section)
        q.set_defaults(handler=handle_section)
    seq = steps.add_parser(
        "sequences",
        help="set the target's sequences to the source's current values",
        description="Set every sequence the target has to the source's current value, "
        "read on one snapshot and written in one transaction (what the cutover does). "
        "Sequences the target lacks are named and left out.",
    )
    blobs = steps.add_parser(
        "blobs",
        aliases=["large-objects"],
        help="copy the large objects again (CDC does not carry their changes)",
        description="Copy every large object of the source to the target again, "
        "creating the missing ones, in batches of one transaction each. Objects only on "
        "the target are left alone.",
    )
    roles = steps.add_parser(
        "roles",
        help="create the source cluster's roles the target lacks",
        description="Create on the target the roles of the source cluster it lacks, with "
        "their attributes, their password hashes when the source role may read them "
        "(superuser), and their memberships. Roles the target has are left alone.",
    )
    roles.add_argument(
        "--no-role-passwords",
        action="store_true",
        help="create the roles without their passwords",
    )
    ext = steps.add_parser(
        "extensions",
        help="create the source's extensions on the target (the privileged step)",
        description="Create on the target the extensions of the source database the filters "
        "keep, in the same schema and at the same version (CASCADE); those it has are left "
        "alone. Run it as a superuser, then clone --skip-extensions as a role that may not.",
    )
    add_filters(ext)
    ext.add_argument(
        "--requirements",
        metavar="FILE",
        help='pin versions: a JSON list of {"name": ..., "version": ...} '
        "(list extensions --json shows the source's)",
    )
    for q, handler in (
        (seq, handle_sequences),
        (blobs, handle_blobs),
        (roles, handle_roles),
        (ext, handle_extensions),
    ):
        add_source(q)
        add_target(q)
        add_logging_flags(q)
        q.set_defaults(handler=handler)


# pgcopydb's copy commands that are phases of the clone: (command, section, help).
SECTION_COMMANDS = (
    ("schema", "schema", "create the schema on the target: pre-data, then post-data, no rows"),
    (
        "data",
        "data",
        "copy the rows, large objects and sequences and build the indexes and constraints "
        "into the tables the target has (after copy schema or restore pre-data)",
    ),
    ("table-data", "table-data", "copy the tables' rows only (no index, no VACUUM)"),
    ("indexes", "indexes", "build the indexes the target lacks (after table-data)"),
    (
        "constraints",
        "constraints",
        "add the primary key, unique and exclusion constraints the target lacks (building "
        "their indexes when copy indexes has not)",
    ),
)


def handle_clone(args: argparse.Namespace) -> int:
    from pgferry.cli.clone import handle

    return handle(args)


def handle_section(args: argparse.Namespace) -> int:
    from pgferry.cli.clone import options_from_args
    from pgferry.clone.run import run_clone

    run_clone(options_from_args(args))
    return 0


def handle_sequences(args: argparse.Namespace) -> int:
    from pgferry.clone.redo import copy_sequences

    done = copy_sequences(resolve_conn(args, "source"), resolve_conn(args, "target"))
    left = f"; {len(done.left_out)} not on the target, left out" if done.left_out else ""
    print(f"copied {done.objects} sequence value(s) from the source{left}")
    return 0


def handle_blobs(args: argparse.Namespace) -> int:
    from pgferry.clone.redo import copy_blobs

    done = copy_blobs(resolve_conn(args, "source"), resolve_conn(args, "target"))
    print(f"copied {done.objects} large object(s), {human_bytes(done.bytes)}")
    return 0


def handle_roles(args: argparse.Namespace) -> int:
    from pgferry.clone.redo import copy_roles

    done = copy_roles(
        resolve_conn(args, "source"),
        resolve_conn(args, "target"),
        passwords=not args.no_role_passwords,
    )
    print_roles_copied(done)
    return 0


def print_roles_copied(done: RolesCopied) -> None:
    print(
        f"created {len(done.created)} role(s)"
        + (f": {', '.join(done.created)}" if done.created else "")
        + f"; {done.existing} already on the target, left alone; "
        f"{done.memberships} membership(s) granted"
    )


def handle_extensions(args: argparse.Namespace) -> int:
    from pgferry.clone.redo import copy_extensions

    done = copy_extensions(
        resolve_conn(args, "source"),
        resolve_conn(args, "target"),
        resolve_filters(args),
        read_requirements(args.requirements),
    )
    print(
        f"created {len(done.created)} extension(s)"
        + (f": {', '.join(done.created)}" if done.created else "")
        + f"; {len(done.existing)} already on the target, left alone"
    )
    return 0


def read_requirements(path: str | None) -> dict[str, str]:
    """--requirements FILE: [{"name": ..., "version": ...}, ...] as name -> version."""
    if path is None:
        return {}
    import json

    try:
        data = json.loads(Path(path).read_text())
        return {str(e["name"]): str(e["version"]) for e in data}
    except OSError as exc:
        raise InputError(f"--requirements: cannot read {path}: {exc.strerror}") from None
    except (ValueError, TypeError, KeyError):
        raise InputError(
            f"--requirements: {path} is not a JSON list of name and version pairs",
            fix='write it as [{"name": "hstore", "version": "1.8"}]',
        ) from None
