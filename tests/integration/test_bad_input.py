"""Bad input fails early: one clear line naming the fix, a distinct exit code, and no
change on the target."""

from __future__ import annotations

import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

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
