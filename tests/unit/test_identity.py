"""When two sessions are in the same database: the rule behind refusing a target that is
the source."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from pgferry.pg.identity import DatabaseIdentity, same_database_error

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SRC = DatabaseIdentity(7001, T0, 16384, "app", "10.0.0.1", 5432)


def test_the_same_database_however_reached() -> None:
    via_socket = replace(SRC, server_addr=None, server_port=None)
    via_pooler = replace(SRC, server_addr="10.0.0.9", server_port=6432)
    assert SRC.same_database(via_socket) and SRC.same_database(via_pooler)
    error = same_database_error(SRC, via_socket)
    assert error is not None and error.exit_code == 3
    assert "the target is the source" in error.message and "oid 16384" in error.message
    assert error.fix and "--target" in error.fix


def test_another_database_of_the_same_cluster() -> None:
    assert not SRC.same_database(replace(SRC, database_oid=16385, database_name="app2"))
    assert same_database_error(SRC, replace(SRC, database_oid=16385)) is None


def test_a_physical_copy_is_another_server() -> None:
    # A restored base backup keeps the system identifier and the oids; not the start time.
    copy = replace(SRC, started_at=T0 + dt.timedelta(days=3))
    assert not SRC.same_database(copy)


def test_another_cluster_started_at_the_same_instant() -> None:
    assert not SRC.same_database(replace(SRC, system_identifier=7002))


def test_without_pg_control_system_the_start_time_decides() -> None:
    hidden = replace(SRC, system_identifier=None)
    assert SRC.same_database(hidden) and hidden.same_database(SRC)
    assert not hidden.same_database(replace(hidden, started_at=T0 + dt.timedelta(seconds=1)))
    assert "started at" in hidden.describe()
