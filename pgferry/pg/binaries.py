"""Finding pg_dump and pg_restore that can handle the source server."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pgferry.errors import EnvironmentProblem
from pgferry.pg.bundled import bundled_bindir

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class DumpTools:
    """A matching pg_dump/pg_restore pair."""

    pg_dump: Path
    pg_restore: Path
    major: int


def tool_major(path: Path) -> int | None:
    """Major version printed by `path --version`, or None if it does not run."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    m = _VERSION.search(out)
    return int(m.group(1)) if m else None


def candidate_bindirs() -> list[Path]:
    """Where to look: PGFERRY_PG_BINDIR alone if set, else PATH, Debian's layout and
    the bundled build (`pip install 'pgferry[server]'`)."""
    explicit = os.environ.get("PGFERRY_PG_BINDIR")
    if explicit:
        return [Path(explicit)]
    dirs: list[Path] = []
    found = shutil.which("pg_dump")
    if found:
        dirs.append(Path(found).resolve().parent)
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"):
        dirs.extend(Path(d) for d in sorted(glob.glob(pattern), reverse=True))
    bundled = bundled_bindir()
    if bundled is not None:
        dirs.append(bundled)
    return list(dict.fromkeys(dirs))  # first occurrence of each, in order


# pg_restore from this major on sets transaction_timeout, which older servers reject:
# its restore into one fails at its first statement.
TRANSACTION_TIMEOUT_MAJOR = 17


def find_dump_tools(source_major: int, target_major: int | None = None) -> DumpTools:
    """The pg_dump/pg_restore pair for a migration: of a major >= the source's (pg_dump
    reads older servers only), the newest that is not newer than the target (pg_restore
    writes what its own major knows); with none, the oldest (the closest to the target).
    One that cannot restore into the target at all is refused."""
    found: list[DumpTools] = []
    considered: list[str] = []
    for d in candidate_bindirs():
        dump, restore = d / "pg_dump", d / "pg_restore"
        if not (dump.exists() and restore.exists()):
            continue
        major = tool_major(dump)
        if major is None:
            continue
        considered.append(f"{dump} ({major})")
        if major >= source_major and tool_major(restore) == major:
            found.append(DumpTools(dump, restore, major))
    if not found:
        seen = ", ".join(considered) if considered else "none found"
        raise EnvironmentProblem(
            f"pg_dump {source_major} or newer is needed for a PostgreSQL {source_major} "
            f"source; candidates: {seen}",
            fix=f"install postgresql-client-{source_major} (or newer) or point "
            "PGFERRY_PG_BINDIR at its bin directory",
        )
    if target_major is None:
        return max(found, key=lambda t: t.major)
    ceiling = max(target_major, source_major)
    fitting = [t for t in found if t.major <= ceiling]
    tools = max(fitting, key=lambda t: t.major) if fitting else min(found, key=lambda t: t.major)
    if source_major >= TRANSACTION_TIMEOUT_MAJOR > target_major:
        raise EnvironmentProblem(
            f"a PostgreSQL {source_major} source needs pg_dump {source_major} or newer, "
            "whose pg_restore sets transaction_timeout, which the PostgreSQL "
            f"{target_major} target lacks: no pg_restore can go between them",
            fix=f"migrate to PostgreSQL {TRANSACTION_TIMEOUT_MAJOR} or newer",
        )
    if tools.major >= TRANSACTION_TIMEOUT_MAJOR > target_major:
        wanted = max(source_major, min(target_major, TRANSACTION_TIMEOUT_MAJOR - 1))
        raise EnvironmentProblem(
            f"pg_restore {tools.major} ({tools.pg_restore}) cannot restore into the "
            f"PostgreSQL {target_major} target: it sets transaction_timeout, which "
            f"PostgreSQL {target_major} lacks; candidates: {', '.join(considered)}",
            fix=f"install postgresql-client-{wanted} or point PGFERRY_PG_BINDIR at the bin "
            f"directory of PostgreSQL {source_major} to {TRANSACTION_TIMEOUT_MAJOR - 1}",
        )
    return tools
