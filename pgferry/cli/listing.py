"""`pgferry list ...`: what a work directory holds, readable while a run goes on; and
what a clone of the source would copy, as the clone decides it (pgcopydb's `list
tables|table-parts|indexes|sequences|extensions`: how filters are checked before a run)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pgferry.cli.common import (
    add_dir,
    add_filters,
    add_logging_flags,
    add_source,
    add_split_flags,
    print_json,
    resolve_conn,
    resolve_dir,
    resolve_filters,
    resolve_size,
)
from pgferry.errors import InputError
from pgferry.ui.progress_report import progress_report, render_progress


def register(sub: Any) -> None:

    p = sub.add_parser("list", help="what a work directory holds, or what a clone would copy")
    lsub = p.add_subparsers(dest="what", metavar="WHAT")
    lsub.required = True
    prog = lsub.add_parser("progress", help="phases and units of work, with their state")
    add_dir(prog)
    prog.add_argument("--json", action="store_true", help="machine-readable output")
    prog.add_argument("--summary", action="store_true", help="print the final summary JSON")
    add_logging_flags(prog)
    prog.set_defaults(handler=handle_progress)
    for what, text in SOURCE_LISTS.items():
        q = lsub.add_parser(what, help=text)
        add_source(q)
        add_filters(q)
        add_split_flags(q, only_threshold=what != "table-parts")
        q.add_argument("--json", action="store_true", help="machine-readable output")
        _add_pgcopydb_list_flags(q, what)
        add_logging_flags(q)
        q.set_defaults(handler=handle_source_list)
    for what, text in SERVER_LISTS.items():
        q = lsub.add_parser(what, help=text)
        add_source(q)
        q.add_argument("--json", action="store_true", help="machine-readable output")
        add_logging_flags(q)
        q.set_defaults(handler=handle_server_list)


SOURCE_LISTS = {
    "tables": "the tables a clone would create, with sizes and whether it copies their rows",
    "table-parts": "the copy's units: each table, or each part of a table copied in parts",
    "indexes": "the indexes and constraints a clone would build",
    "sequences": "the sequences a clone would create and set",
    "extensions": "the source's extensions, and whether a clone creates them",
    "depends": "the objects of the schema dump the filters leave out, and those depending on them",
    "schema": "the catalog a clone reads and what it keeps, as JSON",
}
# Read from the source directly (no schema dump).
SERVER_LISTS = {
    "databases": "the source cluster's databases, with their sizes",
    "collations": "the collations the source database's objects use, other than the default",
}


def _add_pgcopydb_list_flags(q: argparse.ArgumentParser, what: str) -> None:
    """The flags pgcopydb's list commands take, with their meaning."""
    if what in ("tables", "table-parts", "indexes", "depends"):
        q.add_argument("--schema-name", metavar="NAME", help="only the tables of this schema")
        q.add_argument("--table-name", metavar="NAME", help="only the tables of this name")
    if what in ("tables", "indexes", "depends"):
        q.add_argument(
            "--list-skipped", action="store_true", help="list what the filters leave out instead"
        )
    if what == "tables":
        q.add_argument(
            "--without-pkey", action="store_true", help="only the tables with no primary key"
        )
        q.add_argument(
            "--force",
            action="store_true",
            help="accepted for pgcopydb compatibility (the catalog is always read afresh)",
        )
    if what == "extensions":
        q.add_argument(
            "--available-versions",
            action="store_true",
            help="the versions of each extension the source server has packages for",
        )
        q.add_argument(
            "--requirements",
            action="store_true",
            help="print the versions as copy extensions --requirements reads them (JSON)",
        )


def _available_versions(args: argparse.Namespace) -> dict[str, list[str]]:
    from pgferry.catalog.facts import available_extension_versions

    with resolve_conn(args, "source").connect("pgferry list") as conn:
        return available_extension_versions(conn)


def _table_wanted(args: argparse.Namespace, schema: str, name: str) -> bool:
    wanted_schema = getattr(args, "schema_name", None)
    wanted_table = getattr(args, "table_name", None)
    return (wanted_schema is None or schema == wanted_schema) and (
        wanted_table is None or name == wanted_table
    )


def handle_source_list(args: argparse.Namespace) -> int:
    from pgferry.catalog.plan import PlanOptions
    from pgferry.clone.preview import preview
    from pgferry.state.store import UnitKind
    from pgferry.text import human_bytes

    plan = PlanOptions(
        split_tables_larger_than=0
        if getattr(args, "skip_split_by_ctid", False)
        else resolve_size(args.split_tables_larger_than, "SPLIT_TABLES_LARGER_THAN"),
        split_max_parts=getattr(args, "split_max_parts", None) or 0,
    )
    p = preview(
        resolve_conn(args, "source"),
        resolve_filters(args),
        plan,
        estimate_sizes=getattr(args, "estimate_table_sizes", False),
    )
    cat, scope = p.catalog, p.scope
    skipped = getattr(args, "list_skipped", False)
    rows: list[dict[str, Any]]
    if args.what == "schema":
        print_json(
            {
                "catalog": cat.to_json(),
                "scope": {
                    "tables": sorted(cat.table(o).qualname for o in scope.tables),
                    "copied": sorted(cat.table(o).qualname for o in scope.copy_tables),
                    "indexes": len(scope.indexes),
                    "sequences": len(scope.sequences),
                    "large_objects": scope.large_objects,
                    "notes": list(scope.warnings),
                },
            }
        )
        return 0
    with_pkey = {i.table_oid for i in cat.indexes if i.is_primary}
    if args.what == "depends":
        # pgcopydb's meaning: the objects the filters leave out (--list-skipped or not)
        rows = [
            {"dump_id": e.dump_id, "kind": e.desc, "schema": e.namespace or "-", "name": e.tag}
            for e in p.toc
            if e.dump_id not in scope.restore_ids
            and (e.namespace is None or _table_wanted(args, e.namespace, e.tag.split(" ")[0]))
        ]
        left = 0
    elif args.what == "tables":
        rows = [
            {
                "table": t.qualname,
                "kind": t.relkind,
                "bytes": t.bytes,
                "size": human_bytes(t.bytes),
                "rows_estimate": int(max(t.reltuples, 0)),
                "copies_rows": t.oid in scope.copy_tables,
                "parts": p.parts.get(t.oid, 0),
            }
            for t in sorted(cat.tables, key=lambda t: (-t.bytes, t.qualname))
            if (t.oid in scope.tables) != skipped
            and _table_wanted(args, t.schema, t.name)
            and not (args.without_pkey and t.oid in with_pkey)
        ]
        left = len(cat.tables) - len(rows)
    elif args.what == "table-parts":
        rows = [
            {"unit": u.label, "table": cat.table(u.table_oid).qualname, "part": u.part}
            | {k: v for k, v in (u.detail or {}).items() if k in ("first_page", "end_page")}
            for u in p.units
            if u.kind == UnitKind.COPY
            and _table_wanted(args, cat.table(u.table_oid).schema, cat.table(u.table_oid).name)
        ]
        left = 0
    elif args.what == "indexes":
        rows = [
            {
                "index": i.qualname,
                "table": cat.table(i.table_oid).qualname,
                "constraint": i.constraint_name,
                "definition": i.definition,
            }
            for i in sorted(cat.indexes, key=lambda i: i.qualname)
            if (i.oid in scope.indexes) != skipped
            and _table_wanted(args, cat.table(i.table_oid).schema, cat.table(i.table_oid).name)
        ]
        left = len(cat.indexes) - len(rows)
    elif args.what == "sequences":
        rows = [
            {"sequence": s.qualname}
            for s in sorted(cat.sequences, key=lambda s: s.qualname)
            if s.oid in scope.sequences
        ]
        left = len(cat.sequences) - len(rows)
    else:
        if args.requirements:
            print_json([{"name": e.name, "version": e.version} for e in cat.extensions])
            return 0
        available = _available_versions(args) if args.available_versions else {}
        rows = [
            {
                "extension": e.name,
                "version": e.version,
                "schema": e.schema,
                "created_by_clone": e.name in p.kept_extensions,
            }
            | ({"available": available.get(e.name, [])} if args.available_versions else {})
            for e in sorted(cat.extensions, key=lambda e: e.name)
        ]
        left = 0
    if args.json:
        print_json({"what": args.what, args.what.replace("-", "_"): rows, "left_out": left})
        return 0
    for w in scope.warnings:
        print(f"note: {w}", file=sys.stderr)
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items() if k != "bytes"))
    tail = f"; {left} left out by the filters" if left else ""
    print(f"{len(rows)} {args.what}{tail}")
    return 0


def handle_progress(args: argparse.Namespace) -> int:
    workdir = resolve_dir(args)
    if args.summary:
        path = workdir / "summary.json"
        if not path.exists():
            raise InputError(f"no summary in {workdir} yet", fix="the clone has not finished")
        sys.stdout.write(path.read_text())
        return 0
    report = progress_report(workdir)
    if args.json:
        print_json(report)
    else:
        render_progress(report)
    return 0


def handle_server_list(args: argparse.Namespace) -> int:
    from pgferry.catalog.facts import collations_in_use, databases
    from pgferry.text import human_bytes

    with resolve_conn(args, "source").connect("pgferry list") as conn:
        if args.what == "databases":
            rows = [
                {"database": name, "bytes": size, "size": human_bytes(size)}
                for name, size in databases(conn)
            ]
        else:
            rows = [
                {
                    "collation": f"{schema}.{name}",
                    "provider": {"c": "libc", "i": "icu", "d": "default"}.get(prov, prov),
                    "locale": locale,
                    "created_in_database": own,
                }
                for schema, name, prov, locale, own in collations_in_use(conn)
            ]
    if args.json:
        print_json({"what": args.what, args.what: rows})
        return 0
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items() if k != "bytes"))
    print(f"{len(rows)} {args.what}")
    return 0
