"""Phases 2, 3 and 10: pg_dump the schema, pg_restore its pre-data and the rest of post-data."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.facts import role_names
from pgferry.catalog.model import Catalog
from pgferry.errors import StepFailed
from pgferry.pg.binaries import DumpTools
from pgferry.pg.conninfo import ConnInfo, scrub
from pgferry.pg.settings import setting_names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreOptions:
    jobs: int = 4
    no_owner: bool = False
    no_acl: bool = False
    no_comments: bool = False
    no_tablespaces: bool = False
    ignore_errors: int = 0


# pg_dump attempts when it loses a lock conflict (deadlock) with another session.
DUMP_ATTEMPTS = 5
_LOCK_CONFLICT = re.compile(r"deadlock detected|could not obtain lock|lock timeout")


def dump_schema(
    tools: DumpTools,
    source: ConnInfo,
    dump_file: Path,
    *,
    snapshot: str | None,
    large_objects: bool,
) -> None:
    """pg_dump -Fc of the pre-data and post-data sections, written atomically."""
    partial = dump_file.with_suffix(".partial")
    argv = [
        str(tools.pg_dump),
        "--format=custom",
        "--section=pre-data",
        "--section=post-data",
        "--no-sync",
        "--file",
        str(partial),
        "-b" if large_objects else "-B",
    ]
    if snapshot:
        argv += ["--snapshot", snapshot]
    argv += ["--dbname", source.dsn_without_password()]
    for attempt in range(1, DUMP_ATTEMPTS + 1):
        proc = _spawn(argv, source)
        if proc.returncode == 0:
            break
        conflict = _LOCK_CONFLICT.search(proc.stderr)
        if attempt == DUMP_ATTEMPTS or conflict is None:
            raise StepFailed(f"pg_dump failed: {_tail(scrub(proc.stderr, source.secrets()))}")
        # pg_dump locks every table (ACCESS SHARE) as it starts: a session locking tables
        # in another order (TRUNCATE, DDL) can deadlock with it, and pg_dump is then the
        # one cancelled. The snapshot is still held: dump again on it.
        log.warning(
            "pg_dump lost a lock conflict with another session (%s); dumping again in %ds",
            conflict.group(0),
            attempt,
        )
        time.sleep(attempt)
    os.chmod(partial, 0o600)
    partial.replace(dump_file)


def restore(
    tools: DumpTools,
    target: ConnInfo,
    dump_file: Path,
    list_file: Path,
    *,
    section: str,
    options: RestoreOptions,
    single_transaction: bool = False,
    clean: bool = False,
) -> list[str]:
    """pg_restore one section with a --use-list; returns the errors pg_restore ignored."""
    argv = [
        str(tools.pg_restore),
        "--dbname",
        target.dsn_without_password(),
        f"--section={section}",
        "--use-list",
        str(list_file),
        "--no-subscriptions",
    ]
    if options.no_owner:
        argv.append("--no-owner")
    if options.no_acl:
        argv.append("--no-acl")
    if options.no_comments:
        argv.append("--no-comments")
    if options.no_tablespaces:
        argv.append("--no-tablespaces")
    if clean:
        argv += ["--clean", "--if-exists"]
    if single_transaction and options.ignore_errors == 0:
        argv.append("--single-transaction")
    elif options.jobs > 1:
        argv.append(f"--jobs={options.jobs}")
    if options.ignore_errors == 0:
        argv.append("--exit-on-error")
    argv.append(str(dump_file))
    # Durable before the phase is recorded done, whatever the target's default (a crash
    # would lose asynchronous commits, and a resume would not restore them again).
    proc = _spawn(argv, target, options="-c synchronous_commit=on")
    errors = parse_restore_errors(proc.stderr)
    if proc.returncode == 0:
        return []
    if not errors:
        raise StepFailed(
            f"pg_restore ({section}) failed: {_tail(scrub(proc.stderr, target.secrets()))}"
        )
    if len(errors) > options.ignore_errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StepFailed(
            f"pg_restore ({section}) failed: {errors[0]}{more}",
            fix="fix the target, then --resume; or allow known harmless errors with "
            "--ignore-restore-errors N",
        )
    for e in errors:
        log.warning("pg_restore (%s): ignored error: %s", section, e)
    return errors


_ERROR = re.compile(r"^pg_restore: error: (.*)$")


def parse_restore_errors(stderr: str) -> list[str]:
    """Each pg_restore error with its statement, one line each."""
    out: list[str] = []
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        m = _ERROR.match(line)
        if not m or m.group(1).startswith("errors ignored on restore"):
            continue
        text = m.group(1)
        if i + 1 < len(lines) and lines[i + 1].startswith("Command was:"):
            text += " -- " + lines[i + 1][len("Command was:") :].strip()[:300]
        out.append(" ".join(text.split()))
    return out


def _spawn(argv: list[str], conn: ConnInfo, options: str = "") -> subprocess.CompletedProcess[str]:
    """Run a client program; `options` go to its server sessions (PGOPTIONS)."""
    log.debug("running %s", " ".join(argv[:1] + [scrub(a) for a in argv[1:]]))
    env = conn.child_env()
    if options:
        env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} {options}".strip()
    return subprocess.run(
        argv, capture_output=True, text=True, errors="replace", env=env, check=False
    )


def _tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-3:]) if lines else "no error output"


def apply_database_settings(
    conn: psycopg.Connection[Any], catalog: Catalog, dbname: str
) -> list[str]:
    """ALTER DATABASE/ROLE ... SET on the target, skipping unknown settings and roles."""
    skipped: list[str] = []
    with conn.cursor() as cur:
        known = setting_names(conn)
        roles = role_names(conn)
        for s in catalog.settings:
            if s.name not in known and "." not in s.name:
                skipped.append(f"{s.name} (unknown on the target)")
                continue
            if s.role is not None and s.role not in roles:
                skipped.append(f"{s.name} for role {s.role} (no such role on the target)")
                continue
            value = setting_value_sql(s.name, s.value)
            if s.role is None:
                stmt = sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(dbname), sql.Identifier(s.name), value
                )
            else:
                stmt = sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                    sql.Identifier(s.role), sql.Identifier(dbname), sql.Identifier(s.name), value
                )
            cur.execute(stmt)
    return skipped


# Settings whose stored value is a list of (possibly quoted) names: each element must
# become its own literal, as pg_dump does, or the list would turn into one name.
LIST_SETTINGS = frozenset(
    {"search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries"}
)


def split_setting_list(value: str) -> list[str]:
    """Split a stored list setting ('"$user", public') into its elements."""
    items: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t,":
            i += 1
        if i >= n:
            break
        if value[i] == '"':
            j, buf = i + 1, []
            while j < n:
                if value[j] == '"':
                    if j + 1 < n and value[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(value[j])
                j += 1
            items.append("".join(buf))
            i = j + 1
        else:
            j = value.find(",", i)
            j = n if j < 0 else j
            items.append(value[i:j].strip())
            i = j
    return items


def setting_value_sql(name: str, value: str) -> sql.Composable:
    if name in LIST_SETTINGS:
        return sql.SQL(", ").join(sql.Literal(v) for v in split_setting_list(value))
    return sql.Literal(value)
