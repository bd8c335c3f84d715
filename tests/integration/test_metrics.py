"""Prometheus metrics: scraped during a clone and during follow, the values move and agree
with `pgferry status --json`; no connection string or password in them; a port in use is
one clear error."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import TYPE_CHECKING

from tests.helpers.cdc import follow_args, sentinel, wait_applied, wait_until
from tests.helpers.cli import run_pgferry
from tests.helpers.net import free_port
from tests.helpers.running import SLOW_COPY, clone_args, kill_group, start_pgferry

if TYPE_CHECKING:
    from tests.conftest import DbPair

ROWS = """
CREATE TABLE big (id int PRIMARY KEY, pad text);
INSERT INTO big SELECT g, repeat('x', 400) FROM generate_series(1, 60000) g;
CREATE TABLE small (id int PRIMARY KEY, v int);
INSERT INTO small SELECT g, g FROM generate_series(1, 100) g;
"""


def _scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value of every sample."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _scrapable(port: int) -> bool:
    return _value(port, "pgferry_up") == 1.0


def _value(port: int, key: str) -> float:
    """One sample's value; -1 when it cannot be read (yet)."""
    try:
        return _scrape(port).get(key, -1.0)
    except OSError:
        return -1.0


def test_metrics_during_a_clone_move_and_match_status(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(ROWS)
    port = free_port()
    slow = {**SLOW_COPY, "PGFERRY_TEST_COPY_CHUNK_DELAY": "0.08"}  # about 8 s of copy
    proc = start_pgferry(*clone_args(p, "--metrics-port", str(port)), env=slow)
    try:
        wait_until(lambda: _scrapable(port), what="metrics", proc=proc)
        wait_until(
            lambda: _value(port, "pgferry_copy_bytes_total") > 0, what="bytes copied", proc=proc
        )
        first = _scrape(port)["pgferry_copy_bytes_total"]
        wait_until(
            lambda: _value(port, "pgferry_copy_bytes_total") > first,
            what="the copy to move",
            proc=proc,
        )
        status = json.loads(run_pgferry("status", "--dir", str(p.workdir), "--json").stdout)
        m = _scrape(port)
        assert m['pgferry_copy_tables{state="total"}'] == status["copy"]["tables_total"] == 2
        assert m['pgferry_phase_state{phase="copy",state="running"}'] == 1.0
        assert m['pgferry_run_state{state="running"}'] == 1.0
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    finally:
        kill_group(proc)


def test_metrics_during_follow_and_standalone(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(ROWS)
    port = free_port()
    proc = start_pgferry(*follow_args(p, "pgoutput", "--metrics-port", str(port)))
    try:
        wait_until(lambda: _scrapable(port), what="metrics", proc=proc)
        wait_until(lambda: bool(sentinel(p.workdir).get("startpos")), what="the slot", proc=proc)
        with p.src_conn() as conn:  # after the slot: a change for CDC to carry
            conn.execute("UPDATE small SET v = v + 1")
        wait_applied(p, proc)
        key = 'pgferry_cdc_lsn_bytes{position="applied"}'
        wait_until(lambda: _value(port, key) > 0, what="the CDC metrics", proc=proc)
        m = _scrape(port)
        applied = m['pgferry_cdc_lsn_bytes{position="applied"}']
        assert applied > 0 and m["pgferry_cdc_applied_transactions_total"] >= 1
        assert m["pgferry_slot_exists"] == 1.0 and "pgferry_slot_retained_wal_bytes" in m
        with p.src_conn() as conn:
            conn.execute("UPDATE small SET v = v + 1")
        wait_until(
            lambda: _value(port, 'pgferry_cdc_lsn_bytes{position="applied"}') > applied,
            what="applied to move",
            proc=proc,
        )
        # The standalone server, from DIR and the servers: the same figures.
        other = free_port()
        standalone = start_pgferry(
            "metrics", "--dir", str(p.workdir), "--metrics-port", str(other),
            "--source", p.source_uri, "--target", p.target_uri,
        )  # fmt: skip
        try:
            wait_until(lambda: _scrapable(other), what="standalone metrics", proc=standalone)
            text = urllib.request.urlopen(f"http://127.0.0.1:{other}/metrics").read().decode()
            assert "postgresql://" not in text and "127.0.0.1" not in text
            assert re.search(r'^pgferry_cdc_lsn_bytes\{position="applied"\} ', text, re.M)
            busy = run_pgferry(
                "metrics", "--dir", str(p.workdir), "--metrics-port", str(other), check=False
            )
            assert busy.returncode == 3 and "choose another --metrics-port" in busy.stderr
            assert "Traceback" not in busy.stderr
        finally:
            kill_group(standalone)
    finally:
        kill_group(proc)
