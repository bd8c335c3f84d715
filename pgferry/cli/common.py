"""Flags shared by several commands, resolved the pgcopydb way (env first, flag wins)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pgferry import events
from pgferry import log as pflog
from pgferry.catalog.filters import FilterError, Filters, load_filters, no_filters
from pgferry.cli.env import env_bool, env_value
from pgferry.errors import InputError, UsageError
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.plugins import DEFAULT_PLUGIN, PLUGINS
from pgferry.state.workdir import default_dir
from pgferry.text import parse_size

log = logging.getLogger("pgferry")


def add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source", metavar="URI", help="source connection string (env PGCOPYDB_SOURCE_PGURI)"
    )


def add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target", metavar="URI", help="target connection string (env PGCOPYDB_TARGET_PGURI)"
    )


def add_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir", metavar="DIR", help="work directory (env PGCOPYDB_DIR; default $TMPDIR/pgferry)"
    )


def add_decoding_flags(g: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The logical decoding flags of clone --follow, follow and preflight --follow."""
    g.add_argument(
        "--plugin",
        choices=PLUGINS,
        help="logical decoding plugin (env PGCOPYDB_OUTPUT_PLUGIN; default pgoutput)",
    )
    g.add_argument(
        "--wal2json-numeric-as-string",
        action="store_true",
        help="ask wal2json (>= 2.6) for numbers as strings",
    )
    g.add_argument("--slot-name", metavar="NAME", help="replication slot (default pgferry)")
    g.add_argument(
        "--origin", metavar="NAME", help="replication origin on the target (default pgferry)"
    )


def add_downgrade_flag(g: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="accept a target of an older major than the source (refused otherwise; "
        "the restore may fail on what the older server lacks)",
    )


def resolve_decoding(args: argparse.Namespace) -> tuple[str, bool, bool]:
    """The plugin (flag, then PGCOPYDB_OUTPUT_PLUGIN, then pgoutput), whether it was asked
    for, and whether wal2json is asked for numbers as strings (flag or
    PGCOPYDB_WAL2JSON_NUMERIC_AS_STRING)."""
    asked = args.plugin or env_value("OUTPUT_PLUGIN")
    plugin = asked or DEFAULT_PLUGIN
    if plugin not in PLUGINS:
        raise InputError(f"unknown plugin {plugin}", fix=f"use one of {', '.join(PLUGINS)}")
    numeric = args.wal2json_numeric_as_string or env_bool("WAL2JSON_NUMERIC_AS_STRING")
    return plugin, bool(asked), numeric


def add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--filters",
        "--filter",
        metavar="FILE",
        dest="filters",
        help="filter file (pgcopydb's INI format)",
    )


def resolve_conn(args: argparse.Namespace, role: str) -> ConnInfo:
    """--source/--target, else PGFERRY_/PGCOPYDB_{SOURCE,TARGET}_PGURI."""
    flag = getattr(args, role, None)
    value = flag or env_value(f"{role.upper()}_PGURI")
    if not value:
        raise UsageError(
            f"no {role} given",
            fix=f"pass --{role} URI or set PGCOPYDB_{role.upper()}_PGURI",
        )
    info = ConnInfo.parse(value, role)
    moved = os.environ.get(f"PGFERRY_{role.upper()}_PASSWORD")
    if flag and moved and info.password is None:
        # hide_passwords_from_ps() took it out of our argv
        info = info.with_password(moved)
        log.warning(
            "a password was given in --%s: pgferry hid it from ps, but prefer PGPASSWORD, "
            "~/.pgpass or PGCOPYDB_%s_PGURI (the shell history keeps it)",
            role,
            role.upper(),
        )
    elif flag and info.password:
        log.warning(
            "the password in --%s is visible to other users of this machine (ps); prefer "
            "PGPASSWORD, ~/.pgpass or PGCOPYDB_%s_PGURI",
            role,
            role.upper(),
        )
    return info


def resolve_optional_conn(args: argparse.Namespace, role: str) -> ConnInfo | None:
    """Like resolve_conn, but None when neither the flag nor the environment gives one."""
    if not (getattr(args, role, None) or env_value(f"{role.upper()}_PGURI")):
        return None
    return resolve_conn(args, role)


def resolve_dir(args: argparse.Namespace) -> Path:
    value = getattr(args, "dir", None) or env_value("DIR")
    return Path(value) if value else default_dir()


def resolve_filters(args: argparse.Namespace) -> Filters:
    path = getattr(args, "filters", None)
    if not path:
        return no_filters()
    try:
        return load_filters(path)
    except FilterError as exc:
        if exc.fix is None:
            exc.fix = "correct the filter file (pgcopydb's INI format; pgferry filters init "
            exc.fix += "writes a commented one)"
        raise


def resolve_size(value: str | None, env: str) -> int:
    text = value if value is not None else env_value(env)
    if text is None:
        return 0
    try:
        return parse_size(text)
    except ValueError as exc:
        raise InputError(str(exc), fix="give a size such as 50MB or 2GB") from None


def positive(name: str, value: int, low: int = 1, high: int = 128) -> int:
    if not low <= value <= high:
        raise InputError(
            f"{name} must be between {low} and {high}, not {value}",
            fix=f"give {name} a number from {low} to {high}",
        )
    return value


def add_split_flags(g: Any, *, only_threshold: bool = False) -> None:
    """How tables are split for the copy (clone, list): the same flags everywhere."""
    g.add_argument(
        "--split-tables-larger-than",
        "--split-at",
        metavar="SIZE",
        help="copy tables larger than SIZE in parts at the same time "
        "(env PGCOPYDB_SPLIT_TABLES_LARGER_THAN)",
    )
    if only_threshold:
        return
    g.add_argument(
        "--split-max-parts", type=int, metavar="N", help="at most N parts per split table"
    )
    g.add_argument(
        "--skip-split-by-ctid",
        action="store_true",
        help="split no table (pgferry splits by CTID page ranges only; env "
        "PGCOPYDB_SKIP_CTID_SPLIT)",
    )
    g.add_argument(
        "--estimate-table-sizes",
        action="store_true",
        help="use statistics instead of pg_table_size()",
    )


def add_notify_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("events")
    g.add_argument(
        "--notify-url",
        action="append",
        default=[],
        metavar="URL",
        help="POST each event (phase, error, caught up, slot in danger, cutover, finished) "
        "to this webhook; repeatable; env PGFERRY_NOTIFY_URL keeps it out of ps",
    )
    g.add_argument(
        "--notify-format",
        choices=("json", "slack"),
        default=None,
        help="the POST's body: json (default) or slack (an incoming webhook's text)",
    )


def start_notify(args: argparse.Namespace, workdir: Path) -> None:
    """--notify-url (or PGFERRY_NOTIFY_URL): post this command's events there."""
    urls = list(getattr(args, "notify_url", None) or [])
    from_env = os.environ.get("PGFERRY_NOTIFY_URL")
    if from_env:
        urls += [u for u in from_env.split() if u]
    fmt = getattr(args, "notify_format", None) or os.environ.get("PGFERRY_NOTIFY_FORMAT") or "json"
    if fmt not in events.FORMATS:
        raise InputError(f"notify format {fmt!r} is not json or slack", fix="use json or slack")
    for url in urls:
        pflog.add_secret(url)
    events.configure(urls, fmt, str(workdir))


def add_logging_flags(p: argparse.ArgumentParser) -> None:
    """--verbose, --debug and --quiet, for every command."""
    g = p.add_argument_group("logging")
    g.add_argument("--verbose", "-v", "--notice", action="store_true", help="more detail")
    g.add_argument("--debug", "--trace", action="store_true", help="debug output and tracebacks")
    g.add_argument("--quiet", "-q", action="store_true", help="errors only")


def print_json(payload: Any) -> None:
    """One JSON document on stdout (values json cannot encode are written as text)."""
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def confirm(question: str, *, yes: bool, refusal: str) -> bool:
    """True when the user agrees (or --yes); refuse outright when nobody can answer."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            f"{refusal}: stdin is not a terminal, so nobody can confirm",
            fix="pass --yes to confirm non-interactively (or --dry-run to only look)",
        )
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")
