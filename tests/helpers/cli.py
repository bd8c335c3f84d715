"""Run pgferry and the PostgreSQL client programs (psql, pg_dump) from tests."""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = REPO_ROOT / "tests" / "sql"


class CommandFailed(subprocess.CalledProcessError):
    """A command exited non-zero; its message shows what it printed."""

    def __str__(self) -> str:
        parts = [f"{' '.join(map(str, self.cmd))} exited with {self.returncode}"]
        for label, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text and text.strip():
                parts.append(f"--- {label} (tail) ---\n{_tail(text)}")
        return "\n".join(parts)


def run_pgferry(
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 600,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m pgferry ARGS` with output captured; raise CommandFailed if `check`.

    `env` is merged over os.environ; this checkout is put first on PYTHONPATH so the
    pgferry under test is the one run, installed or not.
    """
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH")) if p
    )
    result = subprocess.run(
        [sys.executable, "-m", "pgferry", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise CommandFailed(result.returncode, result.args, result.stdout, result.stderr)
    return result


@functools.cache
def pg_program(name: str) -> Path:
    """The newest PostgreSQL client program `name` (pg_dump, psql) on this machine.

    Newest, because pg_dump refuses servers newer than itself.
    """
    candidates = [Path(d) / name for d in glob.glob("/usr/lib/postgresql/*/bin")]
    if os.environ.get("PGFERRY_PG_BINDIR"):
        candidates.append(Path(os.environ["PGFERRY_PG_BINDIR"]) / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    usable = [p for p in candidates if os.access(p, os.X_OK)]
    if not usable:
        raise FileNotFoundError(f"{name} not found: install postgresql-client-15")
    return max(usable, key=_program_version)


def _program_version(program: Path) -> tuple[int, ...]:
    out = subprocess.run([str(program), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in match.groups() if g) if match else (0,)


def split_password(uri: str) -> tuple[str, str | None]:
    """`uri` as a conninfo string without its password, and the password (or None)."""
    params = conninfo_to_dict(uri)
    password = params.pop("password", None)
    return make_conninfo("", **params), (str(password) if password is not None else None)


def client_env(password: str | None) -> dict[str, str]:
    """os.environ plus PGPASSWORD when there is one: passwords never go in argv."""
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return env


def run_psql(
    uri: str, *, file: Path | None = None, command: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a SQL file or command with psql, stopping at the first error."""
    conninfo, password = split_password(uri)
    args = [str(pg_program("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo]
    if file is not None:
        args += ["-f", str(file)]
    if command is not None:
        args += ["-c", command]
    result = subprocess.run(
        args, capture_output=True, text=True, env=client_env(password), stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise CommandFailed(result.returncode, args, result.stdout, result.stderr)
    return result


def dump_restore(source_uri: str, target_uri: str, *dump_args: str) -> None:
    """Copy a database the reference way: pg_dump SOURCE | psql TARGET."""
    src_conninfo, src_password = split_password(source_uri)
    tgt_conninfo, tgt_password = split_password(target_uri)
    dump_cmd = [str(pg_program("pg_dump")), "-d", src_conninfo, *dump_args]
    load_cmd = [str(pg_program("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", tgt_conninfo]
    with tempfile.TemporaryFile("w+") as dump_err:
        dump = subprocess.Popen(
            dump_cmd, stdout=subprocess.PIPE, stderr=dump_err, env=client_env(src_password)
        )
        assert dump.stdout is not None
        load = subprocess.run(
            load_cmd,
            stdin=dump.stdout,
            capture_output=True,
            text=True,
            env=client_env(tgt_password),
        )
        dump.stdout.close()
        dump_rc = dump.wait()
        dump_err.seek(0)
        dump_stderr = dump_err.read()
    # psql stopping first makes pg_dump fail on a broken pipe: psql's error is the cause.
    if load.returncode != 0:
        raise CommandFailed(load.returncode, load_cmd, load.stdout, load.stderr)
    if dump_rc != 0:
        raise CommandFailed(dump_rc, dump_cmd, "", dump_stderr)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
