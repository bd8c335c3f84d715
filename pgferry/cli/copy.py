"""`pgferry copy sequences|blobs|roles`: one step of the clone again, on its own (pgcopydb's
`copy` commands; the others come with the rest of its command set)."""

from __future__ import annotations

import argparse
from typing import Any

from pgferry.cli.common import add_logging_flags, add_source, add_target, resolve_conn
from pgferry.text import human_bytes


def register(sub: Any) -> None:
    p = sub.add_parser(
        "copy",
        help="redo one step of the clone: sequences, blobs, roles",
        description="Redo one step of the clone on its own, e.g. after the cutover.",
    )
    steps = p.add_subparsers(dest="copy_step", metavar="STEP")
    steps.required = True
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
    for q, handler in ((seq, handle_sequences), (blobs, handle_blobs), (roles, handle_roles)):
        add_source(q)
        add_target(q)
        add_logging_flags(q)
        q.set_defaults(handler=handler)


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

    done = copy_roles(resolve_conn(args, "source"), resolve_conn(args, "target"))
    print(
        f"created {len(done.created)} role(s)"
        + (f": {', '.join(done.created)}" if done.created else "")
        + f"; {done.existing} already on the target, left alone; "
        f"{done.memberships} membership(s) granted"
    )
    return 0
