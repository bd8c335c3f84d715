"""Integration fixtures: source databases pre-loaded with test data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from psycopg import sql

from pgferry.demo.clusters import LocalCluster
from tests.helpers.cli import run_psql

if TYPE_CHECKING:
    from tests.conftest import DbPair

RICH_TEMPLATE_DB = "rich_template"


@pytest.fixture(scope="session")
def rich_template(source_cluster: LocalCluster, rich_schema_sql: Path) -> Iterator[str]:
    """A database in the source cluster loaded once with rich_schema.sql, to copy from."""
    source_cluster.create_database(RICH_TEMPLATE_DB)
    run_psql(source_cluster.uri(RICH_TEMPLATE_DB), file=rich_schema_sql)
    yield RICH_TEMPLATE_DB
    source_cluster.drop_database(RICH_TEMPLATE_DB)


@pytest.fixture
def rich_source(dbpair: DbPair, rich_template: str) -> DbPair:
    """`dbpair` whose source database holds rich_schema.sql (copied from the template)."""
    load_template(dbpair, rich_template)
    return dbpair


def load_template(pair: DbPair, template: str) -> None:
    """The pair's source database becomes a copy of `template` (in the same cluster)."""
    pair.source.drop_database(pair.src_db)
    with pair.source.connect() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(pair.src_db), sql.Identifier(template)
            )
        )


@pytest.fixture(params=["pgoutput", "test_decoding", "wal2json"])
def plugin(request: pytest.FixtureRequest) -> str:
    """Each logical decoding plugin in turn: a CDC test asking for it runs on all three."""
    return str(request.param)
