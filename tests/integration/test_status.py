"""Monitoring: `status` and `cdc-status` tell the truth while a migration runs, after it
finished, failed or was killed; `clone --detach` outlives the shell that started it."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from rich.console import Console

from pgferry.state.store import StateStore
from pgferry.ui.dashboard import render_status, render_watched_status
from tests.helpers.cdc import (
    Pgbench,
    cutover,
    follow_args,
    lsn,
    names,
    wait_applied,
    wait_until,
)
from tests.helpers.cli import REPO_ROOT, run_pgferry
from tests.helpers.compare import assert_same_database
from tests.helpers.running import clone_args, kill_group, start_pgferry, wait_for
from tests.integration.test_bad_input import PASSWORD, ROLE, _ensure_password_role

if TYPE_CHECKING:
    from tests.conftest import DbPair

# Functions that are slow (or fail) only in the target database: the source loads at full
# speed, the clone has a COPY and an index build that last seconds.
SETUP = """
CREATE SCHEMA app;
CREATE FUNCTION app.on_target() RETURNS bool LANGUAGE sql STABLE
    AS $$ SELECT current_database() LIKE 'tgt\\_%' $$;
CREATE FUNCTION app.slow_check(i int) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS
    $$ BEGIN IF app.on_target() THEN PERFORM pg_sleep(0.1); END IF; RETURN true; END $$;
CREATE FUNCTION app.slow(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
    $$ BEGIN IF app.on_target() THEN PERFORM pg_sleep(0.4); END IF; RETURN i; END $$;
CREATE TABLE app.events (id bigint PRIMARY KEY, kind text NOT NULL, payload text);
INSERT INTO app.events
    SELECT g, 'kind-' || (g % 17), repeat(md5(g::text), 4) FROM generate_series(1, 100000) g;
CREATE INDEX events_kind ON app.events (kind);
CREATE TABLE app.small (id serial PRIMARY KEY, note text);
INSERT INTO app.small (note) SELECT 'n' || g FROM generate_series(1, 1000) g;
CREATE TABLE app.slowcopy (id int CHECK (app.slow_check(id)));
INSERT INTO app.slowcopy SELECT generate_series(1, 40);
CREATE TABLE app.slowidx (id int);
INSERT INTO app.slowidx SELECT generate_series(1, 40);
CREATE INDEX slowidx_slow ON app.slowidx (app.slow(id));
"""

FAILING_INDEX = """
CREATE FUNCTION app.boom(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
    $$ BEGIN IF app.on_target() THEN RAISE EXCEPTION 'boom on the target'; END IF;
       RETURN i; END $$;
CREATE INDEX small_boom ON app.small (app.boom(id));
"""


def _args(p: DbPair, *extra: str) -> list[str]:
    return clone_args(p, "--split-tables-larger-than", "3MB", *extra)


@pytest.fixture
def monitored(dbpair: DbPair) -> DbPair:
    with dbpair.src_conn() as conn:
        conn.execute(SETUP)
    return dbpair


def status(p: DbPair, *extra: str, command: str = "status") -> tuple[int, dict[str, Any]]:
    r = run_pgferry(command, "--dir", str(p.workdir), "--json", *extra, check=False)
    assert r.stdout.strip(), r.stderr
    return r.returncode, json.loads(r.stdout)


def store(workdir: Path) -> dict[str, list[dict[str, Any]]]:
    """The state store's units, tables and runs, read through it (read-only)."""
    state = StateStore.open_dir(workdir, readonly=True)
    try:
        return {
            "units": [dataclasses.asdict(u) for u in state.units()],
            "tables": [dataclasses.asdict(t) for t in state.tables()],
            "runs": [dataclasses.asdict(r) for r in state.runs()],
        }
    finally:
        state.close()


def done_bytes(rows: dict[str, list[dict[str, Any]]]) -> int:
    return sum(u["bytes"] for u in rows["units"] if u["kind"] == "copy" and u["status"] == "done")


def copied_bytes(rows: dict[str, list[dict[str, Any]]]) -> int:
    return sum(
        u["bytes"]
        for u in rows["units"]
        if u["kind"] == "copy" and u["status"] in ("done", "running")
    )


def count(rows: dict[str, list[dict[str, Any]]], kind: str, status: str) -> int:
    return sum(1 for u in rows["units"] if u["kind"] == kind and u["status"] == status)


def running_unit(kind: str, label: str):
    return lambda us: any(
        u["kind"] == kind and u["label"] == label and u["status"] == "running" for u in us
    )


@pytest.mark.slow
def test_status_during_and_after_a_clone(monitored: DbPair) -> None:
    p = monitored
    proc = start_pgferry(*_args(p))
    try:
        # During the copy: app.slowcopy's COPY crawls on the target.
        wait_for(proc, p.workdir, running_unit("copy", "app.slowcopy"), timeout=120)
        before = store(p.workdir)
        code, report = status(p, "--target", p.target_uri)
        after = store(p.workdir)
        assert code == 0
        assert report["state"] == "running"
        assert report["run"]["pid"] == proc.pid
        copy = report["copy"]
        assert copy["parts_total"] == sum(1 for u in after["units"] if u["kind"] == "copy")
        assert copy["tables_total"] == len(after["tables"])
        assert copy["split_tables"] == 1 and copy["split_parts"] >= 2  # app.events
        done_tables = [
            sum(1 for t in s["tables"] if t["status"] == "done") for s in (before, after)
        ]
        assert done_tables[0] <= copy["tables_done"] <= done_tables[1]
        assert done_bytes(before) <= copy["bytes_done"] <= done_bytes(after)
        assert copied_bytes(before) <= copy["bytes_copied"] <= copied_bytes(after)
        assert copy["bytes_estimated_total"] >= copy["bytes_copied"]
        assert any(
            r["label"] == "app.slowcopy" and r["state"] == "running" for r in report["running"]
        )
        phases = {ph["name"]: ph["status"] for ph in report["phases"]}
        assert phases["catalog"] == phases["dump"] == phases["pre-data"] == "done"
        assert phases["copy"] == "running"
        sessions = report["active"]["target"]["sessions"]
        copying = [
            s
            for s in sessions
            if s["operation"].startswith("COPY") and "slowcopy" in s["operation"]
        ]
        assert copying, sessions
        assert copying[0]["purpose"].startswith("copy-")
        assert "tuples_processed" in copying[0]["progress"]["copy"]
        assert copying[0]["seconds"] is not None
        _fits_a_watching_terminal(report)

        # During the slow index build, once the copy is done: the build shows on the target.
        building = running_unit("index", "app.slowidx_slow")
        wait_for(
            proc,
            p.workdir,
            lambda us: (
                building(us) and all(u["status"] == "done" for u in us if u["kind"] == "copy")
            ),
            timeout=120,
        )
        code, report = status(p, "--target", p.target_uri)
        rows = store(p.workdir)
        assert code == 0 and report["state"] == "running"
        copy = report["copy"]
        assert copy["parts_done"] == copy["parts_total"] == count(rows, "copy", "done")
        assert copy["tables_done"] == copy["tables_total"] == len(rows["tables"])
        assert copy["bytes_done"] == copy["bytes_copied"] == done_bytes(rows)
        assert copy["bytes_estimated_total"] == copy["bytes_done"]
        assert copy["percent"] == 100.0
        assert report["indexes"]["total"] == sum(1 for u in rows["units"] if u["kind"] == "index")
        assert report["indexes"]["running"] >= 1
        building = [
            s
            for s in report["active"]["target"]["sessions"]
            if s["operation"] == "CREATE INDEX slowidx_slow"
        ]
        assert building, report["active"]["target"]
        assert building[0]["progress"]["create_index"]["phase"]
        # The human dashboard renders the same state.
        text = run_pgferry("status", "--dir", str(p.workdir), "--target", p.target_uri)
        assert "RUNNING" in text.stdout and "slowidx_slow" in text.stdout
    finally:
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err

    # Finished: exact figures, nothing running, exit 0.
    code, report = status(p, "--target", p.target_uri)
    rows = store(p.workdir)
    assert code == 0
    assert report["state"] == "finished" and report["run"]["pid"] is None
    copy = report["copy"]
    assert copy["tables_done"] == copy["tables_total"] == len(rows["tables"])
    assert (
        copy["parts_done"]
        == copy["parts_total"]
        == len([u for u in rows["units"] if u["kind"] == "copy"])
    )
    assert copy["bytes_done"] == copy["bytes_estimated_total"] == done_bytes(rows)
    assert copy["rows_done"] == 100000 + 1000 + 40 + 40  # events, small, slowcopy, slowidx
    assert copy["eta_seconds"] is None and copy["rate_bytes_per_second"] is None
    for kind in ("indexes", "constraints", "vacuum", "sequences"):
        assert report[kind]["done"] == report[kind]["total"], kind
    assert {ph["status"] for ph in report["phases"]} <= {"done", "skipped"}
    assert report["errors"] == [] and report["running"] == []
    assert report["active"]["target"]["sessions"] == []
    assert report["overall_percent"] == 100.0
    text = run_pgferry("status", "--dir", str(p.workdir))
    assert "FINISHED" in text.stdout
    # --watch on a finished run prints once and exits.
    watched = run_pgferry("status", "--dir", str(p.workdir), "--watch", "0.5", timeout=60)
    assert "FINISHED" in watched.stdout


def test_status_after_a_failure(monitored: DbPair) -> None:
    p = monitored
    with p.src_conn() as conn:
        conn.execute(FAILING_INDEX)
    result = run_pgferry(*_args(p), check=False)
    assert result.returncode == 1, result.stderr
    code, report = status(p, "--target", p.target_uri)
    assert code == 1
    assert report["state"] == "failed"
    assert "boom on the target" in report["run"]["error"]
    [unit] = [e for e in report["errors"] if e["where"] == "unit"]
    assert unit["kind"] == "index" and unit["label"] == "app.small_boom"
    assert "P0001" in unit["error"] and "boom on the target" in unit["error"]
    assert report["indexes"]["failed"] == 1
    assert report["log"]["errors"] >= 1
    text = run_pgferry("status", "--dir", str(p.workdir), check=False)
    assert text.returncode == 1
    assert "FAILED" in text.stdout and "boom on the target" in text.stdout


@pytest.mark.slow
def test_status_after_kill_9(monitored: DbPair) -> None:
    p = monitored
    proc = start_pgferry(*_args(p))
    wait_for(proc, p.workdir, running_unit("copy", "app.slowcopy"), timeout=120)
    kill_group(proc)
    rows = store(p.workdir)
    code, report = status(p, "--target", p.target_uri)
    assert code == 1
    assert report["state"] == "killed" and report["run"]["pid"] is None
    stale = count(rows, "copy", "running")
    assert stale >= 1  # the store still says running: status knows better
    copy = report["copy"]
    assert copy["parts_running"] == 0 and copy["interrupted"] == stale
    assert copy["bytes_done"] == done_bytes(rows)
    assert all(r["state"] == "interrupted" for r in report["running"])
    phases = {ph["name"]: ph["status"] for ph in report["phases"]}
    assert phases["copy"] == "stopped"
    assert report["run"]["elapsed"] is not None
    text = run_pgferry("status", "--dir", str(p.workdir), check=False)
    assert text.returncode == 1 and "KILLED" in text.stdout and "--resume" in text.stdout
    # Resumed, it finishes; status follows.
    run_pgferry(*_args(p, "--resume"))
    code, report = status(p)
    assert code == 0 and report["state"] == "finished" and report["run"]["runs"] == 2


@pytest.mark.slow
def test_cdc_status_under_pgbench(dbpair: DbPair) -> None:
    p = dbpair
    bench = Pgbench(p.source_uri)
    bench.init(scale=1)
    slot, origin = names(p)
    proc = start_pgferry(
        *follow_args(p, "test_decoding", "--group-txns", "8"),
        env={"PGFERRY_TEST_APPLY_REPORT_SECONDS": "1"},
    )
    cdc = ("--source", p.source_uri, "--target", p.target_uri)
    try:
        bench.start(clients=2, rate=200)
        wait_applied(p, proc, timeout=180)
        seen_backlog = False
        for _ in range(5):
            code, report = status(p, *cdc, command="cdc-status")
            assert code == 0, report["checks"]
            pos = report["positions"]
            source_lsn, received, flushed, applied = (
                lsn(pos[k]) for k in ("source_current", "received", "flushed", "applied")
            )
            assert source_lsn >= received >= flushed >= applied > 0
            assert pos["applied_origin"] == pos["applied"]
            assert report["slot"] == slot and report["origin"] == origin
            health = report["slot_health"]
            assert health["exists"] and health["active"] and health["wal_status"] == "reserved"
            assert health["retained_wal_bytes"] >= 0
            assert report["apply"]["state"] == "applying"
            assert report["apply"]["group_txns"] == 8
            assert report["rate"]["apply_txns_per_second"] > 0
            assert report["rate"]["source_wal_bytes_per_second"] > 0
            assert report["backlog"]["bytes"] == max(0, source_lsn - lsn(pos["applied_effective"]))
            seen_backlog = seen_backlog or report["backlog"]["bytes"] > 0
            if seen_backlog:
                break
        assert seen_backlog
        # status shows the CDC part too.
        _, dash = status(p, *cdc)
        assert dash["cdc"]["slot"] == slot and dash["cdc"]["apply"]["state"] == "applying"
    finally:
        bench.stop()

    # Writes stopped: it catches up, and says so.
    def caught_up() -> bool:
        code, report = status(p, *cdc, "--sample", "1", command="cdc-status")
        assert code == 0
        return bool(report["caught_up"]["caught_up"])

    wait_until(caught_up, what="caught up", proc=proc, timeout=120)
    code, report = status(p, *cdc, command="cdc-status")
    assert report["eta_seconds"] == 0.0 and report["lag"]["seconds"] < 10
    assert report["apply"]["pending_txns"] == 0
    text = run_pgferry("cdc-status", "--dir", str(p.workdir), *cdc)
    assert "CAUGHT UP" in text.stdout
    assert "grouping: up to 8 source transactions per target transaction" in text.stdout
    err = cutover(p, proc)
    # The foreground said what apply was doing while it applied.
    progress = re.findall(r"apply: (\d+) transactions applied \((\d+)/s over the last", err)
    assert progress and int(progress[-1][0]) > 0 and max(int(r) for _, r in progress) > 0
    code, report = status(p, *cdc, command="cdc-status")
    assert code == 0 and report["state"] == "finished"
    assert report["endpos"]["reached"] is True
    assert lsn(report["positions"]["applied"]) >= lsn(report["positions"]["endpos"])
    # The slot stays until cleanup, holding WAL on the source: said, with the fix.
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE churn AS SELECT g FROM generate_series(1, 20000) g")
    code, report = status(p, *cdc, command="cdc-status")
    slot_check = {c["name"]: c for c in report["checks"]}["cdc.slot"]
    assert slot_check["verdict"] == "WARN", slot_check
    assert "is inactive and holds" in slot_check["message"]
    assert f"pgferry cleanup --dir {p.workdir}" in slot_check["fix"]
    run_pgferry(
        "cleanup", "--source", p.source_uri, "--target", p.target_uri, "--dir", str(p.workdir)
    )
    # The slot is gone after cleanup: fine once the cutover is done.
    code, report = status(p, *cdc, command="cdc-status")
    assert code == 0 and report["slot_health"]["exists"] is False


def _fits_a_watching_terminal(report: dict[str, Any]) -> None:
    """status --watch's dashboard of this report, grown to a big migration's lists (60
    running units, 40 target sessions, 12 errors, a long log), fits 50 rows of 120
    columns, errors first; the full dashboard does not."""
    big = deepcopy(report)
    big["running"] = report["running"] * 60
    sessions = big["active"]["target"]["sessions"]
    big["active"]["target"]["sessions"] = (sessions * 40)[:40]
    big["errors"] = [{"where": "copy", "kind": "copy", "label": f"t{i}", "error": "boom"}
                     for i in range(12)]  # fmt: skip
    big["log"]["tail"] = [f"log line {i}" for i in range(30)]

    def rows(renderable: object) -> list[str]:
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(renderable)
        return console.export_text().splitlines()

    watched = rows(render_watched_status(big))  # type: ignore[arg-type]
    assert len(watched) <= 50, "\n".join(watched)
    assert len(rows(render_status(big))) > 50  # type: ignore[arg-type]
    text = "\n".join(watched)
    assert text.index("errors:") < text.index("running units")
    assert "... and 8 more (pgferry status)" in text
    assert f"... and {60 * len(report['running']) - 6} more running" in text


def _pgferry_cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.slow
def test_detach_survives_its_shell(monitored: DbPair) -> None:
    p = monitored
    for cluster in (p.source, p.target):
        _ensure_password_role(cluster)
    source = p.source.uri(p.src_db, user=ROLE, password=PASSWORD)
    target = p.target.uri(p.tgt_db, user=ROLE, password=PASSWORD)
    args = _args(p)
    args[args.index("--source") + 1] = source
    args[args.index("--target") + 1] = target
    command = " ".join(
        [sys.executable, "-m", "pgferry", *(f"'{a}'" for a in args), "--detach", "; sleep 30"]
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    shell = subprocess.Popen(
        ["bash", "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert shell.stdout is not None
    first = shell.stdout.readline()
    assert first.startswith("pgferry runs in the background: pid "), first
    pid = int(first.split("pid ")[1].split()[0])
    # The launching shell and its whole process group go away: hangup, then kill -9.
    os.killpg(shell.pid, signal.SIGHUP)
    os.killpg(shell.pid, signal.SIGKILL)
    shell.communicate(timeout=30)
    time.sleep(0.5)
    code, report = status(p)
    assert code == 0 and report["state"] == "running" and report["run"]["pid"] == pid
    cmdline = _pgferry_cmdline(pid)
    assert PASSWORD.encode() not in cmdline and b"--detach" not in cmdline
    log = p.workdir / "pgferry.detached.log"
    assert log.stat().st_mode & 0o777 == 0o600
    # --watch follows the run until it ends (JSON: one report per refresh).
    watched = run_pgferry("status", "--dir", str(p.workdir), "--watch", "1", "--json", timeout=300)
    reports = [json.loads(line) for line in watched.stdout.splitlines()]
    assert reports[0]["state"] == "running" and len(reports) >= 2
    assert reports[-1]["state"] == "finished", reports[-1]["errors"]
    assert watched.returncode == 0
    assert PASSWORD not in log.read_text()
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)
    # A background run that cannot start says so at once, with its exit code.
    again = run_pgferry(*_args(p), "--detach", check=False, timeout=120)
    assert again.returncode == 3, again.stderr
    assert "--resume" in again.stderr
