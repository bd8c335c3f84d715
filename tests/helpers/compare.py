"""Proof that a copy is right: compare two databases' schema, rows, sequences and blobs.

Row content is compared through an order-independent, multiplicity-sensitive hash of each
row's text form, computed by the server, so tables of any shape (no key, zero columns,
duplicate rows) compare the same way.
"""

from __future__ import annotations

import difflib
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from pgferry.pg.replication import PUBLICATION_MARK
from tests.helpers.cli import CommandFailed, client_env, pg_program, split_password

SYSTEM_SCHEMAS_SQL = """
    n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_toast'
    AND n.nspname !~ '^pg_temp_'
"""

# Fixed output settings, so both sides render values the same way whatever the servers'
# defaults are; row_security off makes an RLS-filtered read fail instead of lying.
_STABLE_OUTPUT = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, MDY'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 3",
    "SET LOCAL bytea_output = 'hex'",
    "SET LOCAL lc_monetary = 'C'",
    "SET LOCAL xmloption = 'content'",
    "SET LOCAL row_security = off",
)

_DROPPED_PREFIXES = ("--", "\\restrict", "\\unrestrict", "SET ")


def schema_dump(
    uri: str, *, no_owner: bool = True, no_acl: bool = True, pg_dump: Path | None = None
) -> str:
    """`pg_dump --schema-only` of `uri`, without comments, SET lines and blank lines
    (`pg_dump`: that program rather than the machine's newest)."""
    conninfo, password = split_password(uri)
    args = [str(pg_dump or pg_program("pg_dump")), "--schema-only", "-d", conninfo]
    if no_owner:
        args.append("--no-owner")
    if no_acl:
        args.append("--no-acl")
    result = subprocess.run(args, capture_output=True, text=True, env=client_env(password))
    if result.returncode != 0:
        raise CommandFailed(result.returncode, args, result.stdout, result.stderr)
    own = _own_publications(uri)
    lines = [
        line
        for line in result.stdout.splitlines()
        if line.strip()
        and not line.startswith(_DROPPED_PREFIXES)
        and _publication_of(line) not in own
    ]
    return "\n".join(lines) + "\n"


_PUBLICATION_LINE = re.compile(r'^(?:CREATE|ALTER|COMMENT ON) PUBLICATION ("(?:[^"]|"")*"|\S+)')


def _publication_of(line: str) -> str | None:
    """The publication a dump line creates, alters or comments on (None: no such line)."""
    m = _PUBLICATION_LINE.match(line)
    if m is None:
        return None
    name = m.group(1)
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _own_publications(uri: str) -> frozenset[str]:
    """pgferry's own publications there (marked by its comment): the migration's tool, not
    the application's schema (pgferry leaves them out of the target's)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT p.pubname FROM pg_publication p JOIN pg_description d"
            " ON d.objoid = p.oid AND d.classoid = 'pg_publication'::regclass"
            " WHERE d.description = %s",
            (PUBLICATION_MARK,),
        ).fetchall()
    return frozenset(r[0] for r in rows)


def table_fingerprints(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Qualified name -> (row count, content hash) for every relation holding rows.

    Covers ordinary and unlogged tables, leaf partitions, inheritance parents (their own
    rows: FROM ONLY) and materialized views (an unpopulated one counts as (-1, "unpopulated"),
    so a forgotten REFRESH shows); partitioned parents hold no rows and are left out.
    """
    query = sql.SQL(
        "SELECT count(*), "
        "coalesce(sum(('x' || substr(md5(pgferry_row::text), 1, 16))::bit(64)::bigint::numeric)"
        ", 0) FROM ONLY {}.{} AS pgferry_row"
    )
    with _snapshot(conn):
        tables = conn.execute(
            f"""
            SELECT n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                   c.relispopulated
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'm') AND {SYSTEM_SCHEMAS_SQL}
            ORDER BY 1, 2
            """
        ).fetchall()
        result: dict[str, tuple[int, str]] = {}
        for schema, table, qualified, populated in tables:
            if not populated:
                result[qualified] = (-1, "unpopulated")
                continue
            row = conn.execute(
                query.format(sql.Identifier(schema), sql.Identifier(table))
            ).fetchone()
            assert row is not None
            result[qualified] = (int(row[0]), str(row[1]))
    return result


def sequence_values(conn: psycopg.Connection) -> dict[str, tuple[int, bool]]:
    """Qualified name -> (last_value, is_called) for every sequence."""
    with _snapshot(conn):
        sequences = conn.execute(
            f"""
            SELECT n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'S' AND {SYSTEM_SCHEMAS_SQL}
            ORDER BY 1, 2
            """
        ).fetchall()
        result: dict[str, tuple[int, bool]] = {}
        for schema, name, qualified in sequences:
            row = conn.execute(
                sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(name)
                )
            ).fetchone()
            assert row is not None
            result[qualified] = (int(row[0]), bool(row[1]))
    return result


def large_objects(conn: psycopg.Connection) -> dict[int, str]:
    """Large object OID -> md5 of its content."""
    with _snapshot(conn):
        rows = conn.execute(
            "SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid"
        ).fetchall()
    return {int(oid): str(digest) for oid, digest in rows}


def assert_same_database(
    source_uri: str,
    target_uri: str,
    *,
    schema: bool = True,
    no_owner: bool = True,
    no_acl: bool = True,
) -> None:
    """Raise AssertionError, with a readable diff, unless both databases hold the same.

    Compared: the schema dump (if `schema`), every table's row count and content hash,
    sequence values and large objects.
    """
    problems = database_differences(
        source_uri, target_uri, schema=schema, no_owner=no_owner, no_acl=no_acl
    )
    if problems:
        raise AssertionError("source and target differ:\n" + "\n".join(problems))


def database_differences(
    source_uri: str,
    target_uri: str,
    *,
    schema: bool = True,
    no_owner: bool = True,
    no_acl: bool = True,
) -> list[str]:
    """What `assert_same_database` compares, as readable lines; empty when they match."""
    problems: list[str] = []
    if schema:
        source_ddl = schema_dump(source_uri, no_owner=no_owner, no_acl=no_acl)
        target_ddl = schema_dump(target_uri, no_owner=no_owner, no_acl=no_acl)
        if source_ddl != target_ddl:
            diff = difflib.unified_diff(
                source_ddl.splitlines(),
                target_ddl.splitlines(),
                "source schema",
                "target schema",
                lineterm="",
            )
            problems.append("schema dumps differ:\n" + _head("\n".join(diff), 200))
    with (
        psycopg.connect(source_uri, autocommit=True) as src,
        psycopg.connect(target_uri, autocommit=True) as tgt,
    ):
        problems += _diff_maps("table", table_fingerprints(src), table_fingerprints(tgt))
        problems += _diff_maps("sequence", sequence_values(src), sequence_values(tgt))
        problems += _diff_maps("large object", large_objects(src), large_objects(tgt))
    return problems


def _diff_maps(kind: str, source: dict, target: dict) -> list[str]:
    """One line per key missing on a side or with a different value."""
    lines = []
    for key in sorted(source.keys() | target.keys(), key=str):
        if key not in target:
            lines.append(f"  {kind} {key}: only in source {source[key]}")
        elif key not in source:
            lines.append(f"  {kind} {key}: only in target {target[key]}")
        elif source[key] != target[key]:
            lines.append(f"  {kind} {key}: source {source[key]} != target {target[key]}")
    if lines:
        lines.insert(0, f"{kind}s differ ({len(lines)}):")
    return lines


@contextmanager
def _snapshot(conn: psycopg.Connection) -> Iterator[None]:
    """A read-only transaction with stable output settings (one snapshot if we may set it)."""
    fresh = conn.autocommit  # otherwise we may be inside the caller's transaction
    with conn.transaction():
        if fresh:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for statement in _STABLE_OUTPUT:
            conn.execute(statement)
        yield


def _head(text: str, lines: int) -> str:
    all_lines = text.splitlines()
    if len(all_lines) <= lines:
        return text
    return "\n".join(all_lines[:lines]) + f"\n... ({len(all_lines) - lines} more lines)"
