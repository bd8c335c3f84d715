"""`pgferry demo`: the newcomer's first run works end to end and leaves nothing behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.cli import run_pgferry


@pytest.mark.slow
def test_demo_clones_proves_equality_and_cleans_up() -> None:
    result = run_pgferry("demo", timeout=300)
    out = result.stdout
    assert "pgferry clone summary" in out
    assert re.search(r"shop\.order_items\s+│\s+[\d,]+\s+│\s+[\d,]+\s+│ same", out), out
    assert "Copied in parts: shop.order_items in 4 parts" in out
    # The migration was live: writes went on during it and were replayed before cutover.
    live = re.search(r"Cut over: ([\d,]+) shop transactions were made on the source", out)
    assert live and int(live.group(1).replace(",", "")) > 0, out
    assert "cutover point reached" in result.stderr
    assert "OK: source and target have the same schema and data." in out
    assert "the target is an exact copy of the source" in out

    match = re.search(r"Everything goes in (\S+)", out)
    assert match, out
    workdir = Path(match.group(1))
    assert not workdir.exists()
    assert not _processes_using(workdir)


def _processes_using(path: Path) -> list[str]:
    """Command lines of running processes that mention `path` (a leftover server)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text:
            found.append(text)
    return found
