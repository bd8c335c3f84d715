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
        q.add_argument(
            "--split-tables-larger-than",
            "--split-at",
            metavar="SIZE",
            help="as for clone (env PGCOPYDB_SPLIT_TABLES_LARGER_THAN)",
        )
        q.add_argument("--json", action="store_true", help="machine-readable output")
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


def handle_source_list(args: argparse.Namespace) -> int:
    from pgferry.catalog.plan import PlanOptions
    from pgferry.clone.preview import preview
    from pgferry.state.store import UnitKind
    from pgferry.text import human_bytes

    plan = PlanOptions(
        split_tables_larger_than=resolve_size(
            args.split_tables_larger_than, "SPLIT_TABLES_LARGER_THAN"
        )
    )
    p = preview(resolve_conn(args, "source"), resolve_filters(args), plan)
    cat, scope = p.catalog, p.scope
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
    if args.what == "depends":
        rows = [
            {"dump_id": e.dump_id, "kind": e.desc, "schema": e.namespace or "-", "name": e.tag}
            for e in p.toc
            if e.dump_id not in scope.restore_ids
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
            if t.oid in scope.tables
        ]
        left = len(cat.tables) - len(rows)
    elif args.what == "table-parts":
        rows = [
            {"unit": u.label, "table": cat.table(u.table_oid).qualname, "part": u.part}
            | {k: v for k, v in (u.detail or {}).items() if k in ("first_page", "end_page")}
            for u in p.units
            if u.kind == UnitKind.COPY
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
            if i.oid in scope.indexes
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
        rows = [
            {
                "extension": e.name,
                "version": e.version,
                "schema": e.schema,
                "created_by_clone": e.name in p.kept_extensions,
            }
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


DATABASES_SQL = """
SELECT d.datname, pg_catalog.pg_database_size(d.oid)::int8
  FROM pg_catalog.pg_database d
 WHERE d.datallowconn AND NOT d.datistemplate
   AND pg_catalog.has_database_privilege(d.oid, 'CONNECT')
 ORDER BY 1
"""

# Collations other than the default that the database's columns, indexes and domains
# use, and those created in it: the target must have them (or the clone creates them).
COLLATIONS_SQL = """
SELECT DISTINCT n.nspname, c.collname, c.collprovider::text,
       coalesce(c.collcollate, ''), c.collnamespace <> 'pg_catalog'::regnamespace
  FROM pg_catalog.pg_collation c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
 WHERE c.oid <> 100 AND (
       c.collnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    OR c.oid IN (SELECT a.attcollation FROM pg_catalog.pg_attribute a
                   JOIN pg_catalog.pg_class r ON r.oid = a.attrelid
                  WHERE r.relnamespace NOT IN ('pg_catalog'::regnamespace,
                                               'information_schema'::regnamespace)
                    AND NOT a.attisdropped)
    OR c.oid IN (SELECT t.typcollation FROM pg_catalog.pg_type t
                  WHERE t.typtype = 'd'
                    AND t.typnamespace NOT IN ('pg_catalog'::regnamespace,
                                               'information_schema'::regnamespace)))
 ORDER BY 1, 2
"""


def handle_server_list(args: argparse.Namespace) -> int:
    from pgferry.text import human_bytes

    with resolve_conn(args, "source").connect("pgferry list") as conn:
        if args.what == "databases":
            rows = [
                {"database": name, "bytes": size, "size": human_bytes(size)}
                for name, size in conn.execute(DATABASES_SQL)
            ]
        else:
            rows = [
                {
                    "collation": f"{schema}.{name}",
                    "provider": {"c": "libc", "i": "icu", "d": "default"}.get(prov, prov),
                    "locale": locale,
                    "created_in_database": own,
                }
                for schema, name, prov, locale, own in conn.execute(COLLATIONS_SQL)
            ]
    if args.json:
        print_json({"what": args.what, args.what: rows})
        return 0
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items() if k != "bytes"))
    print(f"{len(rows)} {args.what}")
    return 0
