"""docs/runbook.md, run: its commands, in its order, on throwaway clusters, with the
connection strings and the work directory in the environment as it shows them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers.cdc import sentinel, wait_until
from tests.helpers.cli import REPO_ROOT, run_pgferry
from tests.helpers.compare import assert_same_database

if TYPE_CHECKING:
    from tests.conftest import DbPair

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"

# Each step as the runbook writes it (checked below), and the extra arguments the test
# gives it (the filter file, and --yes where the runbook has a human confirm).
STEPS = [
    ("pgferry filters init --for", ["self-hosted", "-o", "{filters}"]),
    ("pgferry list tables --filters filters.ini", []),
    ("pgferry clone --dry-run --filters filters.ini", []),
    ("pgferry copy roles", []),
    ("pgferry fix-replica-identity --dry-run", []),
    ("pgferry fix-replica-identity", ["--yes"]),
    ("pgferry preflight --follow --filters filters.ini", []),
    ("pgferry params", []),
    ("pgferry clone --follow --detach --filters filters.ini", ["--table-jobs", "2"]),
    ("pgferry status", []),
    ("pgferry cdc-status", []),
    ("pgferry stop-cdc", ["--yes"]),
    ("pgferry verify --full", []),
    ("pgferry copy sequences", []),
    ("pgferry copy blobs", []),
    ("pgferry cleanup", []),
]

SCHEMA = """
CREATE TABLE orders (id bigserial PRIMARY KEY, total numeric, note text);
CREATE TABLE events (at timestamptz DEFAULT now(), what text);  -- no key
INSERT INTO orders (total, note) SELECT g * 1.5, 'n' || g FROM generate_series(1, 2000) g;
INSERT INTO events (what) SELECT 'e' || g FROM generate_series(1, 500) g;
SELECT lo_from_bytea(0, 'invoice');
"""


def test_the_runbook_runs_as_written(dbpair: DbPair, tmp_path: Path) -> None:
    text = RUNBOOK.read_text()
    for step, _ in STEPS:
        assert step.replace("filters.ini", "").split(" --")[0] in text, step
        for flag in step.split()[2:]:
            if flag.startswith("--"):
                assert flag in text, f"{step}: {flag} is not in the runbook"
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
    env = {
        "PGCOPYDB_SOURCE_PGURI": p.source_uri,
        "PGCOPYDB_TARGET_PGURI": p.target_uri,
        "PGCOPYDB_DIR": str(p.workdir),
    }
    filters = tmp_path / "filters.ini"
    for step, extra in STEPS:
        argv = [a.replace("filters.ini", str(filters)) for a in step.split()[1:]]
        argv += [a.format(filters=filters) for a in extra]
        if argv[0] == "stop-cdc":
            with p.src_conn() as conn:  # writes during the follow, before the cutover
                conn.execute("UPDATE orders SET note = 'changed' WHERE id <= 100")
                conn.execute("INSERT INTO events (what) VALUES ('late')")
            _wait_caught_up(env)
        done = run_pgferry(*argv, env=env, timeout=300)
        assert done.returncode == 0, (step, done.stderr)
        if argv[:2] == ["clone", "--follow"]:
            wait_until(lambda: bool(sentinel(p.workdir).get("apply")), what="apply")
        if argv[0] == "stop-cdc":
            _wait_finished(env)
            log = (p.workdir / "pgferry.log").read_text()
            assert "cutover point reached" in log and "verify: the target matches" in log
            with p.tgt_conn() as conn:  # pgferry's publication stays on the source alone
                assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    assert_same_database(p.source_uri, p.target_uri)


def _wait_caught_up(env: dict[str, str]) -> None:
    def caught_up() -> bool:
        r = run_pgferry("cdc-status", "--json", "--sample", "0.5", env=env, check=False)
        return bool(json.loads(r.stdout)["caught_up"]["caught_up"])

    wait_until(caught_up, what="caught up", timeout=120)


def _wait_finished(env: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = run_pgferry("status", "--json", env=env, check=False)
        state = json.loads(r.stdout)["state"]
        if state != "running":
            assert state == "finished", r.stdout
            return
        time.sleep(0.5)
    pytest.fail("the detached clone did not finish after stop-cdc")
