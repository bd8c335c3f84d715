"""docs/providers/: a page per service `filters init --for` knows, saying what the code
says (the wal_level and replication fixes), its filter command run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pgferry.catalog.providers import PROVIDERS, replication_fix, wal_level_fix
from pgferry.cli.main import main

PAGES = Path(__file__).resolve().parents[2] / "docs" / "providers"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_page_matches_the_code_and_its_command_runs(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = (PAGES / f"{provider}.md").read_text()
    assert wal_level_fix(provider) in page
    assert replication_fix(provider, "migrator") in page
    (command,) = re.findall(r"^pgferry filters init .*$", page, flags=re.M)
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(command)[1:]) == 0
    written = (tmp_path / "filters.ini").read_text()
    assert f"--for {provider}" in written
