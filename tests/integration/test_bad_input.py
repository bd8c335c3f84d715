"""Bad input fails early: one clear line naming the fix, a distinct exit code, and no
change on the target."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest
from psycopg import sql

from pgferry.demo.clusters import LocalCluster
from tests.helpers.cli import run_pgferry

if TYPE_CHECKING:
    from tests.conftest import DbPair

PASSWORD = "Right-p@ss:w/rd%1"
ROLE = "ferry_pw"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_password_role(cluster: LocalCluster) -> None:
    with cluster.connect() as conn:
        conn.execute(
            f"""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
                CREATE ROLE {ROLE} LOGIN SUPERUSER IN ROLE pwauth;
              END IF;
            END $$;
            ALTER ROLE {ROLE} PASSWORD '{PASSWORD}';
            """
        )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


def _assert_target_untouched(p: DbPair) -> None:
    with p.tgt_conn() as conn:
        objects = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname !~ '^pg_toast'"
        ).fetchone()
        settings = conn.execute(
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d "
            "ON d.oid = s.setdatabase WHERE d.datname = current_database()"
        ).fetchone()
    assert objects == (0,)
    assert settings == (0,)


@pytest.fixture
def small_source(dbpair: DbPair) -> DbPair:
    with dbpair.src_conn() as conn:
        conn.execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');"
            "ALTER DATABASE " + dbpair.src_db + " SET work_mem = '8MB'"
        )
    return dbpair


def _clone(p: DbPair, source: str, target: str, *extra: str, env: dict[str, str] | None = None):
    return run_pgferry(
        "clone",
        "--source",
        source,
        "--target",
        target,
        "--dir",
        str(p.workdir),
        *extra,
        check=False,
        env=env,
    )


def test_unreachable_source(small_source: DbPair) -> None:
    p = small_source
    r = _clone(p, f"postgresql://postgres@127.0.0.1:{_free_port()}/nowhere", p.target_uri)
    assert r.returncode == 4
    [line] = _error_lines(r.stderr)
    assert "cannot connect to source" in line and "fix:" in line
    _assert_target_untouched(p)


def test_wrong_password(small_source: DbPair) -> None:
    p = small_source
    _ensure_password_role(p.source)
    wrong = "Wrong-p@ss-123"
    r = _clone(p, p.source.uri(p.src_db, user=ROLE, password=wrong), p.target_uri)
    assert r.returncode == 4
    [line] = _error_lines(r.stderr)
    assert "password authentication failed" in line and "fix:" in line
    assert wrong not in r.stderr + r.stdout
    _assert_target_untouched(p)


def test_missing_target_database(small_source: DbPair) -> None:
    p = small_source
    r = _clone(p, p.source_uri, p.target.uri("no_such_db_here"))
    assert r.returncode == 4
    [line] = _error_lines(r.stderr)
    assert "does not exist" in line and "createdb" in line


def test_non_empty_target(small_source: DbPair) -> None:
    p = small_source
    with p.tgt_conn() as conn:
        conn.execute("CREATE TABLE already_here (x int); INSERT INTO already_here VALUES (1)")
    r = _clone(p, p.source_uri, p.target_uri)
    assert r.returncode == 3
    [line] = _error_lines(r.stderr)
    assert "not empty" in line and "--drop-if-exists" in line and "target-clean" in line
    with p.tgt_conn() as conn:
        tables = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ).fetchall()
    assert tables == [("already_here",)]


def test_too_old_pg_dump(small_source: DbPair, tmp_path: Path) -> None:
    p = small_source
    bindir = tmp_path / "oldbin"
    bindir.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        script = bindir / tool
        script.write_text(f"#!/bin/sh\necho '{tool} (PostgreSQL) 12.3'\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    r = _clone(p, p.source_uri, p.target_uri, env={"PGFERRY_PG_BINDIR": str(bindir)})
    assert r.returncode == 5
    [line] = _error_lines(r.stderr)
    assert "pg_dump 15 or newer" in line and "PGFERRY_PG_BINDIR" in line
    _assert_target_untouched(p)
    # The failed attempt does not block the next one.
    ok = _clone(p, p.source_uri, p.target_uri)
    assert ok.returncode == 0, ok.stderr


def test_conflicting_flags(small_source: DbPair) -> None:
    p = small_source
    r = run_pgferry(
        "clone",
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        "--resume",
        "--restart",
        check=False,
    )
    assert r.returncode == 2
    _assert_target_untouched(p)


@pytest.mark.parametrize("value", ["0", "257", "-3"])
def test_group_txns_out_of_range(small_source: DbPair, value: str) -> None:
    p = small_source
    r = _clone(p, p.source_uri, p.target_uri, "--follow", "--group-txns", value)
    assert r.returncode == 3
    [line] = _error_lines(r.stderr)
    assert "--group-txns must be between 1 and 256" in line
    _assert_target_untouched(p)


def test_missing_source_option(small_source: DbPair) -> None:
    p = small_source
    r = run_pgferry(
        "clone",
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        check=False,
        env={"PGCOPYDB_SOURCE_PGURI": "", "PGFERRY_SOURCE_PGURI": ""},
    )
    assert r.returncode == 2
    assert "PGCOPYDB_SOURCE_PGURI" in r.stderr


# -- the table: every bad input, one clear line, the documented code, nothing changed ----


@dataclass(frozen=True)
class Ctx:
    """What a case's command line and set-up may use."""

    p: DbPair
    tmp: Path

    @property
    def dir(self) -> str:
        return str(self.p.workdir)

    def pair(self) -> list[str]:
        return ["--source", self.p.source_uri, "--target", self.p.target_uri]

    def clone(self, *extra: str) -> list[str]:
        return ["clone", *self.pair(), "--dir", self.dir, *extra]

    def source_as(self, spelling: str) -> str:
        """The source database, spelled differently."""
        c, db = self.p.source, self.p.src_db
        return {
            "localhost": f"postgresql://{c.superuser}@localhost:{c.port}/{db}",
            "socket": f"host={c.socket_dir} port={c.port} dbname={db} user={c.superuser}",
        }[spelling]


Hook = Callable[[Ctx], object]


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Ctx], list[str]]
    code: int
    says: str  # in the error line
    env: Callable[[Ctx], dict[str, str]] | None = None
    setup: Hook | None = None
    teardown: Hook | None = None
    root: bool = False  # needs to mount a file system


def _filters_file(ctx: Ctx, text: str) -> str:
    path = ctx.tmp / "filters.ini"
    path.write_text(text)
    return str(path)


def _a_file(ctx: Ctx) -> str:
    path = ctx.tmp / "a-file"
    path.write_text("not a directory\n")
    return str(path)


def _mount(ctx: Ctx, name: str, options: str) -> Path:
    where = ctx.tmp / name
    where.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    return where


def _umount(ctx: Ctx) -> None:
    for name in ("ro", "full"):
        where = ctx.tmp / name
        if where.is_mount():
            subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(ctx: Ctx) -> None:
    where = _mount(ctx, "full", "size=1m")
    with open(where / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


_LOCKS: list[IO[str]] = []


def _hold_lock(ctx: Ctx) -> None:
    ctx.p.workdir.mkdir(mode=0o700)
    f = open(ctx.p.workdir / "pgferry.pid", "w+")  # noqa: SIM115 (closed in teardown)
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write("424242\n")
    f.flush()
    _LOCKS.append(f)


def _release_lock(ctx: Ctx) -> None:
    while _LOCKS:
        _LOCKS.pop().close()


def _previous_clone(ctx: Ctx) -> None:
    run_pgferry(*ctx.clone("--no-progress"))


def _slot(ctx: Ctx) -> None:
    with ctx.p.src_conn() as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('pgferry', 'test_decoding')")


def _drop_slot(ctx: Ctx) -> None:
    with ctx.p.src_conn() as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = 'pgferry'"
        )


def _origin(ctx: Ctx, action: str) -> None:
    with ctx.p.tgt_conn() as conn:
        exists = conn.execute(
            "SELECT count(*) FROM pg_replication_origin WHERE roname = 'pgferry'"
        ).fetchone() == (1,)
        if action == "create" and not exists:
            conn.execute("SELECT pg_replication_origin_create('pgferry')")
        elif action == "drop" and exists:
            conn.execute("SELECT pg_replication_origin_drop('pgferry')")


def _role(cluster: LocalCluster, name: str) -> None:
    with cluster.connect() as conn:
        conn.execute(
            sql.SQL(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {}) "
                "THEN CREATE ROLE {} LOGIN; END IF; END $$"
            ).format(sql.Literal(name), sql.Identifier(name))
        )


def _no_read_role(ctx: Ctx) -> None:
    _role(ctx.p.source, "ferry_noread")


def _no_create_role(ctx: Ctx) -> None:
    _role(ctx.p.target, "ferry_nocreate")
    with ctx.p.tgt_conn() as conn:
        conn.execute(
            sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(sql.Identifier(ctx.p.tgt_db))
        )
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


def _old_bindir(ctx: Ctx) -> dict[str, str]:
    bindir = ctx.tmp / "oldbin"
    bindir.mkdir(exist_ok=True)
    for tool in ("pg_dump", "pg_restore"):
        script = bindir / tool
        script.write_text(f"#!/bin/sh\necho '{tool} (PostgreSQL) 12.3'\n")
        script.chmod(0o755)
    return {"PGFERRY_PG_BINDIR": str(bindir)}


def _no_source_env(ctx: Ctx) -> dict[str, str]:
    return {"PGCOPYDB_SOURCE_PGURI": "", "PGFERRY_SOURCE_PGURI": ""}


PW_BAD = "Leak-me-not-42"

CASES = [
    # flags: values (3) and command lines (2)
    Case("table-jobs-0", lambda c: c.clone("--table-jobs", "0"), 3, "--table-jobs must be"),
    Case("table-jobs-abc", lambda c: c.clone("--table-jobs", "abc"), 3, "invalid int value"),
    Case("index-jobs-999", lambda c: c.clone("--index-jobs", "999"), 3, "--index-jobs must be"),
    Case("lo-jobs-neg", lambda c: c.clone("--large-objects-jobs", "-1"), 3, "must be between"),
    Case("restore-jobs-500", lambda c: c.clone("--restore-jobs", "500"), 3, "--restore-jobs"),
    Case("split-parts-0", lambda c: c.clone("--split-max-parts", "0"), 3, "--split-max-parts"),
    Case("split-parts-neg", lambda c: c.clone("--split-max-parts", "-2"), 3, "--split-max-parts"),
    Case(
        "ignore-errors-neg",
        lambda c: c.clone("--ignore-restore-errors", "-1"),
        3,
        "--ignore-restore-errors must be between 0",
    ),
    Case("split-size", lambda c: c.clone("--split-tables-larger-than", "10XB"), 3, "not a size"),
    Case("group-txns-0", lambda c: c.clone("--follow", "--group-txns", "0"), 3, "--group-txns"),
    Case("group-txns-abc", lambda c: c.clone("--follow", "--group-txns", "x"), 3, "invalid int"),
    Case("apply-jobs-0", lambda c: c.clone("--follow", "--apply-jobs", "0"), 3, "--apply-jobs"),
    Case("apply-jobs-65", lambda c: c.clone("--follow", "--apply-jobs", "65"), 3, "--apply-jobs"),
    Case("plugin", lambda c: c.clone("--follow", "--plugin", "decoderbufs"), 3, "invalid choice"),
    Case("endpos", lambda c: c.clone("--follow", "--endpos", "zz"), 3, "--endpos: not an LSN"),
    Case(
        "numeric-no-wal2json",
        lambda c: c.clone("--follow", "--wal2json-numeric-as-string"),
        2,
        "needs --plugin wal2json",
    ),
    Case("resume-restart", lambda c: c.clone("--resume", "--restart"), 2, "cannot be used"),
    Case(
        "snapshot-not-consistent",
        lambda c: c.clone("--snapshot", "00000003-1", "--not-consistent"),
        2,
        "cannot be used together",
    ),
    Case("unknown-flag", lambda c: c.clone("--bogus"), 2, "unrecognized arguments: --bogus"),
    Case(
        "abbreviated-flag",
        lambda c: ["clone", "--sourc", c.p.source_uri, "--target", c.p.target_uri],
        2,
        "unrecognized arguments: --sourc",
    ),
    Case(
        "no-source",
        lambda c: ["clone", "--target", c.p.target_uri, "--dir", c.dir],
        2,
        "no source given",
        env=_no_source_env,
    ),
    Case(
        "env-jobs",
        lambda c: c.clone(),
        3,
        "PGCOPYDB_TABLE_JOBS='abc' is not an integer",
        env=lambda c: {"PGCOPYDB_TABLE_JOBS": "abc"},
    ),
    Case(
        "env-bool",
        lambda c: c.clone(),
        3,
        "PGCOPYDB_DROP_IF_EXISTS='maybe' is not a boolean",
        env=lambda c: {"PGCOPYDB_DROP_IF_EXISTS": "maybe"},
    ),
    Case(
        "verify-tolerance",
        lambda c: ["verify", *c.pair(), "--row-tolerance", "5000"],
        3,
        "--row-tolerance",
    ),
    Case("status-watch-0", lambda c: ["status", "--dir", c.dir, "--watch", "0"], 3, "--watch"),
    # connection strings and connections (4)
    Case(
        "malformed-uri",
        lambda c: ["clone", "--source", f"postgresql//u:{PW_BAD}@h/db", "--target", "x=1"],
        3,
        "invalid source connection string",
    ),
    Case(
        "bad-percent-escape",
        lambda c: [
            "clone",
            "--source",
            c.p.source_uri,
            "--target",
            f"postgresql://u:{PW_BAD}%zz@h/d",
        ],
        3,
        "invalid target connection string",
    ),
    Case(
        "unknown-option",
        lambda c: ["clone", "--source", c.p.source_uri + "?sslmod=require", "--target", "x"],
        3,
        "invalid source connection string",
    ),
    Case(
        "source-down",
        lambda c: (
            c.clone()[:2] + [f"postgresql://postgres@127.0.0.1:{_free_port()}/x"] + c.clone()[3:]
        ),
        4,
        "cannot connect to source",
    ),
    Case(
        "target-down",
        lambda c: [
            "clone",
            "--source",
            c.p.source_uri,
            "--target",
            f"postgresql://postgres@127.0.0.1:{_free_port()}/x",
            "--dir",
            c.dir,
        ],
        4,
        "cannot connect to target",
    ),
    Case(
        "no-such-source-db",
        lambda c: [
            "clone",
            "--source",
            c.p.source.uri("nope_src"),
            "--target",
            c.p.target_uri,
            "--dir",
            c.dir,
        ],
        4,
        "does not exist",
    ),
    Case(
        "no-such-role",
        lambda c: [
            "clone",
            "--source",
            c.p.source.uri(c.p.src_db, user="nobody_here"),
            "--target",
            c.p.target_uri,
            "--dir",
            c.dir,
        ],
        4,
        "nobody_here",
    ),
    Case(
        "wrong-password",
        lambda c: [
            "clone",
            "--source",
            c.p.source_uri,
            "--target",
            c.p.target.uri(c.p.tgt_db, user=ROLE, password=PW_BAD),
            "--dir",
            c.dir,
        ],
        4,
        "password authentication failed",
        setup=lambda c: _ensure_password_role(c.p.target),
    ),
    # privileges and server settings (preflight: 3)
    Case(
        "cannot-read-source-table",
        lambda c: [
            "clone",
            "--source",
            c.p.source.uri(c.p.src_db, user="ferry_noread"),
            "--target",
            c.p.target_uri,
            "--dir",
            c.dir,
        ],
        3,
        "preflight failed: source.read_privileges",
        setup=_no_read_role,
    ),
    Case(
        "cannot-create-on-target",
        lambda c: [
            "clone",
            "--source",
            c.p.source_uri,
            "--target",
            c.p.target.uri(c.p.tgt_db, user="ferry_nocreate"),
            "--dir",
            c.dir,
        ],
        3,
        "preflight failed: target.privileges",
        setup=_no_create_role,
    ),
    Case(
        "source-wal-level-replica",
        lambda c: [
            "clone",
            "--follow",
            "--source",
            c.p.target_uri,
            "--target",
            c.p.source_uri,
            "--drop-if-exists",
            "--dir",
            c.dir,
        ],
        3,
        "preflight failed: source.wal_level",
    ),
    # filters (3)
    Case("filters-missing", lambda c: c.clone("--filters", "/no/such.ini"), 3, "filter file"),
    Case(
        "filters-unknown-section",
        lambda c: c.clone("--filters", _filters_file(c, "[bogus]\nx\n")),
        3,
        "unknown section [bogus]",
    ),
    Case(
        "filters-match-nothing",
        lambda c: c.clone("--filters", _filters_file(c, "[include-only-table]\npublic.nope\n")),
        3,
        "matches the source: nothing would be copied",
    ),
    Case(
        "filters-no-such-schema",
        lambda c: c.clone("--filters", _filters_file(c, "[include-only-schema]\nnope\n")),
        3,
        "nothing would be copied",
    ),
    Case(
        "filters-match-nothing-no-preflight",
        lambda c: c.clone(
            "--skip-preflight",
            "--filters",
            _filters_file(c, "[include-only-table]\npublic.nope\n"),
        ),
        3,
        "nothing would be copied",
    ),
    # DIR (3) and disk (5)
    Case("dir-is-a-file", lambda c: c.clone()[:-1] + [_a_file(c)], 3, "is not a directory"),
    Case(
        "dir-under-a-file",
        lambda c: c.clone()[:-1] + [_a_file(c) + "/sub"],
        3,
        "is not a directory",
    ),
    Case(
        "dir-read-only",
        lambda c: c.clone()[:-1] + [str(c.tmp / "ro" / "work")],
        3,
        "read-only file system",
        setup=lambda c: _mount(c, "ro", "ro,size=1m"),
        teardown=_umount,
        root=True,
    ),
    Case(
        "dir-disk-full",
        lambda c: (
            c.clone("--skip-preflight")[:-2] + [str(c.tmp / "full" / "work"), "--skip-preflight"]
        ),
        5,
        "no space left",
        setup=_fill,
        teardown=_umount,
        root=True,
    ),
    Case("resume-missing-dir", lambda c: c.clone("--resume"), 3, "no migration to resume"),
    Case(
        "resume-empty-dir",
        lambda c: c.clone("--resume"),
        3,
        "no migration to resume",
        setup=lambda c: c.p.workdir.mkdir(mode=0o700),
    ),
    Case(
        "follow-resume-missing-dir",
        lambda c: ["follow", *c.pair(), "--dir", c.dir, "--resume"],
        3,
        "no migration to resume",
    ),
    Case(
        "dir-in-use",
        lambda c: c.clone(),
        3,
        "another pgferry (pid 424242)",
        setup=_hold_lock,
        teardown=_release_lock,
    ),
    Case(
        "previous-clone",
        lambda c: c.clone("--no-progress"),
        3,
        "holds a previous clone",
        setup=_previous_clone,
    ),
    Case("status-no-dir", lambda c: ["status", "--dir", c.dir], 3, "no pgferry state"),
    Case("cdc-status-no-dir", lambda c: ["cdc-status", "--dir", c.dir], 3, "no pgferry state"),
    Case("stop-no-dir", lambda c: ["stop", "--dir", c.dir], 3, "no work directory"),
    # versions (5)
    Case("old-pg-dump", lambda c: c.clone(), 5, "pg_dump 15 or newer", env=_old_bindir),
    # leftovers (3)
    Case(
        "target-not-empty",
        lambda c: c.clone(),
        3,
        "not empty",
        setup=lambda c: c.p.tgt_conn().execute("CREATE TABLE here (x int)").connection.close(),
    ),
    Case(
        "leftover-slot",
        lambda c: c.clone("--follow"),
        3,
        "replication slot pgferry already exists",
        setup=_slot,
        teardown=_drop_slot,
    ),
    Case(
        "leftover-origin",
        lambda c: c.clone("--follow"),
        3,
        "origin pgferry",
        setup=lambda c: _origin(c, "create"),
        teardown=lambda c: _origin(c, "drop"),
    ),
    # same source and target (3)
    Case(
        "same-db-localhost",
        lambda c: [
            "clone",
            "--source",
            c.p.source_uri,
            "--target",
            c.source_as("localhost"),
            "--dir",
            c.dir,
            "--drop-if-exists",
        ],
        3,
        "the target is the source",
    ),
    Case(
        "same-db-socket-follow",
        lambda c: [
            "follow",
            "--source",
            c.p.source_uri,
            "--target",
            c.source_as("socket"),
            "--dir",
            c.dir,
        ],
        3,
        "the target is the source",
    ),
    Case(
        "same-db-target-clean",
        lambda c: [
            "target-clean",
            "--source",
            c.p.source_uri,
            "--target",
            c.source_as("socket"),
            "--yes",
        ],
        3,
        "the target is the source",
    ),
    Case(
        "same-db-cleanup",
        lambda c: [
            "cleanup",
            "--source",
            c.p.source_uri,
            "--target",
            c.source_as("localhost"),
            "--dir",
            c.dir,
        ],
        3,
        "the target is the source",
    ),
]


def _world(p: DbPair) -> dict[str, object]:
    """Everything a refused command must leave as it was, on both sides."""
    out: dict[str, object] = {}
    for side, connect in (("source", p.src_conn), ("target", p.tgt_conn)):
        with connect() as conn:
            for what, query in (
                ("objects", _OBJECTS),
                ("slots", "SELECT slot_name FROM pg_replication_slots ORDER BY 1"),
                ("origins", "SELECT roname FROM pg_replication_origin ORDER BY 1"),
                ("publications", "SELECT pubname FROM pg_publication ORDER BY 1"),
                ("settings", _DB_SETTINGS),
            ):
                out[f"{side}.{what}"] = conn.execute(query).fetchall()
    with p.src_conn() as conn:
        out["source.rows"] = conn.execute("SELECT count(*), sum(hashtext(v)) FROM t").fetchone()
    return out


_OBJECTS = (
    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' "
    "ORDER BY 1, 2"
)
_DB_SETTINGS = (
    "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
    "WHERE d.datname = current_database() ORDER BY 1"
)


def _problem_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if " ERROR " in ln or ": error: " in ln]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_table(small_source: DbPair, tmp_path: Path, case: Case) -> None:
    if case.root and os.geteuid() != 0:
        pytest.skip("needs root to mount a small file system")
    ctx = Ctx(small_source, tmp_path)
    try:
        if case.setup is not None:
            case.setup(ctx)
        before = _world(ctx.p)
        r = run_pgferry(*case.argv(ctx), env=case.env(ctx) if case.env else None, check=False)
        assert r.returncode == case.code, r.stderr
        lines = _problem_lines(r.stderr)
        assert len(lines) == 1, r.stderr
        assert case.says in lines[0], lines[0]
        assert "fix:" in lines[0], lines[0]
        assert "Traceback" not in r.stderr + r.stdout
        assert PW_BAD not in r.stderr + r.stdout
        assert _world(ctx.p) == before
    finally:
        if case.teardown is not None:
            case.teardown(ctx)


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


def test_a_fresh_clone_warns_about_nothing(small_source: DbPair) -> None:
    """The DIR warning users learn to ignore was raised by every fresh clone: state.db was
    created before preflight looked at DIR."""
    p = small_source
    r = _clone(p, p.source_uri, p.target_uri, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "previous migration" not in r.stderr
    assert " WARNING " not in r.stderr, r.stderr
    assert "preflight:" in r.stderr  # preflight did run


def test_disk_fills_up_during_cdc_then_resume(small_source: DbPair, tmp_path: Path) -> None:
    """DIR filling up while CDC spools changes: exit 5 with the fix, no traceback; once
    there is room again, --resume finishes the migration."""
    from tests.helpers.cdc import cutover, names, sentinel, wait_until
    from tests.helpers.compare import assert_same_database
    from tests.helpers.running import start_pgferry

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small file system")
    p = small_source
    ctx = Ctx(p, tmp_path)
    small = _mount(ctx, "full", "size=3m")
    p.workdir = small / "work"  # where the cdc helpers look
    slot, origin = names(p)
    args = [
        "clone", "--follow", *ctx.pair(), "--dir", str(p.workdir), "--skip-preflight",
        "--no-progress", "--slot-name", slot, "--origin", origin,
    ]  # fmt: skip
    try:
        proc = start_pgferry(*args)
        wait_until(lambda: bool(sentinel(p.workdir).get("startpos")), what="slot", proc=proc)
        with p.src_conn() as conn:
            for _ in range(10):  # about 15 MB of WAL for a 3 MB DIR
                conn.execute(
                    "INSERT INTO t SELECT g, repeat(md5(g::text), 20) FROM "
                    "generate_series((SELECT max(id) FROM t) + 1, (SELECT max(id) FROM t) + 2000) g"
                )
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 5, err
        assert "Traceback" not in err
        assert "no space left on the device" in _problem_lines(err)[-1]
        assert "fix:" in _problem_lines(err)[-1]
        assert len(_problem_lines(err)) == 1, err  # said once, not by each thread too
        subprocess.run(["mount", "-o", "remount,size=256m", str(small)], check=True)
        proc = start_pgferry(*args, "--resume")
        wait_until(lambda: bool(sentinel(p.workdir).get("apply")), what="apply", proc=proc)
        cutover(p, proc)
        assert_same_database(p.source_uri, p.target_uri)
    finally:
        if proc.poll() is None:
            proc.kill()
        _umount(ctx)
