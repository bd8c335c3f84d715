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
    """Where to look: PGFERRY_PG_BINDIR alone if set, else PATH then Debian's layout."""
    explicit = os.environ.get("PGFERRY_PG_BINDIR")
    if explicit:
        return [Path(explicit)]
    dirs: list[Path] = []
    found = shutil.which("pg_dump")
    if found:
        dirs.append(Path(found).resolve().parent)
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"):
        dirs.extend(Path(d) for d in sorted(glob.glob(pattern), reverse=True))
    return list(dict.fromkeys(dirs))  # first occurrence of each, in order


def find_dump_tools(source_major: int) -> DumpTools:
    """The newest pg_dump/pg_restore pair whose major version is >= the source's."""
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
    return max(found, key=lambda t: t.major)
