"""`pgferry cutover`: the end of a live migration in one command, under pgbench load, with
and without fencing the source, ending in an exact copy; refused (and nothing set) when
apply is too far behind or nothing applies."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

from tests.helpers.cdc import (
    Pgbench,
    follow_args,
    identify_every_table,
    pause_apply,
    sentinel,
    wait_applied,
)
from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database
from tests.helpers.running import kill_group, start_pgferry

if TYPE_CHECKING:
    import subprocess

    from tests.conftest import DbPair


def _following(p: DbPair, bench: Pgbench) -> subprocess.Popen[str]:
    bench.init()
    identify_every_table(p)
    proc = start_pgferry(*follow_args(p, "pgoutput"))
    bench.start(clients=2, rate=200)
    wait_applied(p, proc)
    return proc


def _cutover(p: DbPair, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_pgferry(
        "cutover",
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        *extra,
        check=check,
        timeout=400,
    )


def test_cutover_with_fence_under_pgbench(dbpair: DbPair) -> None:
    p = dbpair
    bench = Pgbench(p.source_uri)
    proc = _following(p, bench)
    try:
        time.sleep(2)
        done = _cutover(p, "--fence", "--app-role", "postgres", "--yes")
        assert "fence: the source is read-only for new sessions; " in done.stderr
        assert "cutover done:" in done.stdout and "verify: the target matches" in done.stdout
        assert "pgferry cleanup --dir" in done.stdout and "--unfence" in done.stdout
        proc.wait(60)
        assert proc.returncode == 0
        with p.src_conn() as conn:  # a new session: read-only
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        status = json.loads(run_pgferry("status", "--dir", str(p.workdir), "--json").stdout)
        steps = status["cutover"]["steps"]
        assert [steps[k] for k in ("caught up", "fence", "quiet", "applied", "verify")] == [
            "done"
        ] * 5
        assert_same_database(p.source_uri, p.target_uri)
        again = _cutover(p)  # already cut over: verifies again, changes nothing
        assert "done by an earlier cutover" in again.stderr
        run_pgferry("cutover", "--unfence", "--source", p.source_uri, "--dir", str(p.workdir))
        with p.src_conn() as conn:
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("off",)
    finally:
        bench.stop()
        kill_group(proc)
        run_pgferry("cutover", "--unfence", "--source", p.source_uri, check=False)


def test_cutover_waits_for_the_writes_to_stop(dbpair: DbPair) -> None:
    """No fence: the command waits while pgbench writes, goes on once it stops."""
    p = dbpair
    bench = Pgbench(p.source_uri)
    proc = _following(p, bench)
    stopper = threading.Timer(6.0, bench.stop)
    try:
        stopper.start()
        done = _cutover(p, "--quiet-seconds", "2")
        assert "quiet: no write for 2s; end position set to" in done.stderr
        proc.wait(60)
        assert proc.returncode == 0
        assert_same_database(p.source_uri, p.target_uri)
    finally:
        stopper.cancel()
        bench.stop()
        kill_group(proc)


def test_cutover_refuses_when_apply_is_behind_or_absent(dbpair: DbPair) -> None:
    p = dbpair
    bench = Pgbench(p.source_uri)
    proc = _following(p, bench)
    try:
        pause_apply(p)
        time.sleep(3)  # pgbench writes on; nothing is applied
        refused = _cutover(p, "--max-lag", "1kB", check=False)
        assert refused.returncode == 1, refused.stderr
        status = json.loads(run_pgferry("status", "--dir", str(p.workdir), "--json").stdout)
        assert status["cutover"]["steps"] == {"caught up": "failed"}
        assert "step 1 (caught up): apply is" in refused.stderr
        assert "raise --max-lag" in refused.stderr and "Traceback" not in refused.stderr
        assert sentinel(p.workdir).get("endpos") is None  # nothing set
        bench.stop()
        kill_group(proc)
        proc.wait(30)
        absent = _cutover(p, check=False)
        assert absent.returncode == 1 and "no pgferry is applying changes" in absent.stderr
        assert sentinel(p.workdir).get("endpos") is None
    finally:
        bench.stop()
        kill_group(proc)
