"""A target that is the source is refused, whatever the spelling, before anything is written;
two databases of one cluster are still a legitimate migration."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TYPE_CHECKING

import pytest
from psycopg import sql

from tests.helpers.cli import run_pgferry

if TYPE_CHECKING:
    from tests.conftest import DbPair

ROWS = 1000


@pytest.fixture
def loaded(dbpair: DbPair) -> DbPair:
    with dbpair.src_conn() as conn:
        conn.execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);"
            f"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g"
        )
    return dbpair


def _spellings(p: DbPair) -> dict[str, str]:
    """The source database, written as a user might write it again as the target."""
    c, db = p.source, p.src_db
    return {
        "localhost": f"postgresql://{c.superuser}@localhost:{c.port}/{db}",
        "key=value": f"host=127.0.0.1 port={c.port} dbname={db} user={c.superuser}",
        "unix socket": f"host={c.socket_dir} port={c.port} dbname={db} user={c.superuser}",
        "uri socket": f"postgresql:///{db}?host={c.socket_dir}&port={c.port}&user={c.superuser}",
    }


def _source_state(p: DbPair) -> tuple[object, ...]:
    with p.src_conn() as conn:
        rows = conn.execute("SELECT count(*), sum(hashtext(v)) FROM t").fetchone()
        slots = conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()
        origins = conn.execute("SELECT count(*) FROM pg_replication_origin").fetchone()
        pubs = conn.execute("SELECT count(*) FROM pg_publication").fetchone()
        objects = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ).fetchone()
    return rows, slots, origins, pubs, objects


def _assert_refused(result: object, before: tuple[object, ...], p: DbPair) -> None:
    import subprocess

    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert "the target is the source" in errors[0] and "fix:" in errors[0]
    assert "Traceback" not in result.stderr
    assert _source_state(p) == before
    assert _source_state(p)[0] == (ROWS, before[0][1])  # type: ignore[index]


@pytest.mark.parametrize("spelling", ["localhost", "key=value", "unix socket", "uri socket"])
def test_clone_into_the_source_is_refused(loaded: DbPair, spelling: str) -> None:
    p = loaded
    before = _source_state(p)
    target = _spellings(p)[spelling]
    r = run_pgferry(
        "clone",
        "--source",
        p.source_uri,
        "--target",
        target,
        "--dir",
        str(p.workdir),
        "--drop-if-exists",
        "--follow",
        check=False,
    )
    _assert_refused(r, before, p)
    # Also when preflight is skipped: the check is not a preflight line.
    r = run_pgferry(
        "clone",
        "--source",
        target,
        "--target",
        p.source_uri,
        "--dir",
        str(p.workdir),
        "--drop-if-exists",
        "--skip-preflight",
        check=False,
    )
    _assert_refused(r, before, p)


@pytest.mark.parametrize(
    "command",
    [
        ("follow",),
        ("cleanup",),
        ("target-clean", "--yes"),
    ],
    ids=lambda c: c[0],
)
def test_other_writers_refuse_the_source(loaded: DbPair, command: tuple[str, ...]) -> None:
    p = loaded
    before = _source_state(p)
    target = _spellings(p)["unix socket"]
    r = run_pgferry(
        *command,
        "--source",
        p.source_uri,
        "--target",
        target,
        "--dir",
        str(p.workdir),
        check=False,
    )
    _assert_refused(r, before, p)


def test_target_clean_takes_the_source_from_the_environment(loaded: DbPair) -> None:
    p = loaded
    before = _source_state(p)
    r = run_pgferry(
        "target-clean",
        "--target",
        _spellings(p)["key=value"],
        "--yes",
        env={"PGCOPYDB_SOURCE_PGURI": p.source_uri},
        check=False,
    )
    _assert_refused(r, before, p)


def test_preflight_fails_on_the_source_as_target(loaded: DbPair) -> None:
    p = loaded
    r = run_pgferry(
        "preflight",
        "--source",
        p.source_uri,
        "--target",
        _spellings(p)["localhost"],
        "--dir",
        str(p.workdir),
        "--json",
        check=False,
    )
    assert r.returncode == 1, r.stderr
    assert "target.not_source" in r.stdout and "the target is the source" in r.stdout


def test_another_database_of_the_same_cluster_is_a_target(loaded: DbPair) -> None:
    p = loaded
    other = p.tgt_db + "_same_cluster"
    with p.source.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other)))
    try:
        run_pgferry(
            "clone",
            "--source",
            p.source_uri,
            "--target",
            _spellings(p)["localhost"].replace(f"/{p.src_db}", f"/{other}"),
            "--dir",
            str(p.workdir),
        )
        with p.source.connect(other) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (ROWS,)
    finally:
        p.source.drop_database(other)


class TcpProxy(threading.Thread):
    """A TCP forwarder to a server: what a pooler or a DNS alias looks like from outside
    (another address and port, the same server behind it)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.upstream = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    def run(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def test_the_source_behind_a_proxy_is_refused(loaded: DbPair) -> None:
    p = loaded
    before = _source_state(p)
    proxy = TcpProxy(p.source.port)
    proxy.start()
    try:
        behind = f"host=127.0.0.1 port={proxy.port} dbname={p.src_db} user={p.source.superuser}"
        r = run_pgferry(
            "clone", "--source", p.source_uri, "--target", behind, "--dir", str(p.workdir),
            "--drop-if-exists", check=False,
        )  # fmt: skip
    finally:
        proxy.close()
    _assert_refused(r, before, p)


def test_refused_where_pg_control_system_is_not_allowed(loaded: DbPair) -> None:
    """Managed services may hide pg_control_system(): the server's start time decides."""
    p = loaded
    with p.src_conn() as conn:
        conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ferry_plain') "
            "THEN CREATE ROLE ferry_plain LOGIN; END IF; END $$;"
            "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC;"
            "GRANT SELECT ON t TO ferry_plain"
        )
    before = _source_state(p)
    c = p.source
    plain = f"host={c.socket_dir} port={c.port} dbname={p.src_db} user=ferry_plain"
    r = run_pgferry(
        "follow", "--source", c.uri(p.src_db, user="ferry_plain"), "--target", plain,
        "--dir", str(p.workdir), check=False,
    )  # fmt: skip
    _assert_refused(r, before, p)
    assert "started at" in r.stderr  # no system identifier to name
