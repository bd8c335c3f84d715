"""Shared fixtures: a source and a target PostgreSQL cluster for the whole session, and a
fresh pair of databases (one in each) per test.

The clusters come from the machine's server binaries (see pgferry.demo.clusters). Missing
binaries fail the tests rather than skip them: CI must not go green without a database.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgferry.demo.clusters import LocalCluster
from pgferry.errors import EnvironmentProblem
from tests.helpers.cli import SQL_DIR, run_psql


@dataclass
class DbPair:
    """A fresh source database and a fresh target database, dropped after the test."""

    source: LocalCluster
    target: LocalCluster
    src_db: str
    tgt_db: str
    workdir: Path  # for pgferry's --dir; private, not yet created

    @property
    def source_uri(self) -> str:
        return self.source.uri(self.src_db)

    @property
    def target_uri(self) -> str:
        return self.target.uri(self.tgt_db)

    def src_conn(self, **kwargs: object) -> psycopg.Connection:
        """An autocommit connection to the source database (close it: use `with`)."""
        return self.source.connect(self.src_db, **kwargs)

    def tgt_conn(self, **kwargs: object) -> psycopg.Connection:
        """An autocommit connection to the target database (close it: use `with`)."""
        return self.target.connect(self.tgt_db, **kwargs)

    def load_source(self, sql_file: Path) -> None:
        """Run a SQL file in the source database with psql, stopping at the first error."""
        run_psql(self.source_uri, file=sql_file)


def _start_cluster(name: str, basedir: Path, *, logical: bool) -> LocalCluster:
    try:
        return LocalCluster.create(name, basedir, logical=logical)
    except EnvironmentProblem as exc:
        pytest.fail(f"cannot start the {name} test cluster: {exc.one_line()}", pytrace=False)


@pytest.fixture(scope="session")
def source_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The source cluster (wal_level=logical), shared by the whole session."""
    cluster = _start_cluster("source", tmp_path_factory.mktemp("clusters"), logical=True)
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def target_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The target cluster (wal_level=replica), shared by the whole session."""
    cluster = _start_cluster("target", tmp_path_factory.mktemp("clusters"), logical=False)
    yield cluster
    cluster.destroy()


@pytest.fixture
def dbpair(
    request: pytest.FixtureRequest,
    source_cluster: LocalCluster,
    target_cluster: LocalCluster,
    tmp_path: Path,
) -> Iterator[DbPair]:
    """Empty databases named after the test, one per cluster, dropped afterwards."""
    with fresh_pair(request, source_cluster, target_cluster, tmp_path) as pair:
        yield pair


@contextmanager
def fresh_pair(
    request: pytest.FixtureRequest, source: LocalCluster, target: LocalCluster, tmp_path: Path
) -> Iterator[DbPair]:
    """Empty databases named after the test in `source` and `target`, dropped after."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    token = secrets.token_hex(3)
    pair = DbPair(
        source=source,
        target=target,
        src_db=f"src_{slug}_{token}",
        tgt_db=f"tgt_{slug}_{token}",
        workdir=tmp_path / "work",
    )
    source.create_database(pair.src_db)
    try:
        target.create_database(pair.tgt_db)
        yield pair
    finally:
        source.drop_database(pair.src_db)
        target.drop_database(pair.tgt_db)


@pytest.fixture(scope="session")
def rich_schema_sql() -> Path:
    """The rich test schema and data (tests/sql/rich_schema.sql)."""
    return SQL_DIR / "rich_schema.sql"
