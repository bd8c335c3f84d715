"""One very large transaction under pgoutput with streaming: memory, the source's spill,
exactness, and the same transaction aborted.

    .venv/bin/python bench/stream_bench.py [--rows 5000000] [--keep]

Two throwaway clusters (the settings of clone_bench.py; the source's
logical_decoding_work_mem is left at its default, 64MB). A table `big (id bigint primary
key, k int, label text, created timestamptz)` is cloned empty with `pgferry clone --follow`
(pgoutput, the default); then, with apply running:

1. one transaction inserts --rows rows and commits;
2. one transaction inserts --rows more rows and rolls back at the end.

While it runs, the resident memory of pgferry's whole process tree is sampled every 100 ms.
At the end: the target's row count (exactly --rows), `pg_stat_replication_slots` of the slot
(stream_txns and stream_bytes above 0: the transactions were streamed; spill_bytes 0), the
WAL both transactions took, and the times. Then stop-cdc (the cutover verifies the target
against the source). Results go to bench/out/stream_bench-<ts>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cdc_bench import lsn_int, pgferry_exe, tree_pids, wait_until
from clone_bench import SERVER_SETTINGS, say

from pgferry.demo.clusters import LocalCluster, find_server_bindir
from pgferry.state.store import StateStore

OUT_DIR = Path(__file__).resolve().parent / "out"
DB = "stream"
SLOT = "bench_stream"
INSERT = (
    "INSERT INTO big SELECT g, g %% 1000, 'label ' || g || ' ' || md5(g::text), now()"
    " FROM generate_series(%s::bigint, %s::bigint) g"
)


class RssSampler(threading.Thread):
    """Peak summed VmRSS of a process and all its descendants."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.stop_event = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.1):
            total = 0
            for pid in tree_pids(self.pid):
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                except OSError:
                    continue
            self.peak_kb = max(self.peak_kb, total)


def applied_lsn(workdir: Path) -> int:
    try:
        store = StateStore.open_dir(workdir, readonly=True)
        try:
            row = store.sentinel()
        finally:
            store.close()
    except Exception:
        return 0
    return lsn_int(row.replay_lsn) if row is not None else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    bindir = find_server_bindir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGCOPYDB_"))}
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    base = Path(tempfile.mkdtemp(prefix="pgferry-stream-bench-"))
    started = dt.datetime.now(dt.UTC)
    source = LocalCluster.create(
        "source", base, logical=True, extra_conf=SERVER_SETTINGS, password_roles=False
    )
    target = LocalCluster.create("target", base, extra_conf=SERVER_SETTINGS, password_roles=False)
    workdir = base / "work"
    result: dict[str, Any] = {"rows": args.rows}
    proc: subprocess.Popen[bytes] | None = None
    try:
        source.create_database(DB)
        target.create_database(DB)
        with source.connect(DB) as conn:
            conn.execute(
                "CREATE TABLE big (id bigint PRIMARY KEY, k int, label text, created timestamptz)"
            )
        where = ["--source", source.uri(DB), "--target", target.uri(DB), "--dir", str(workdir)]
        argv = [pgferry_exe(), "clone", "--follow", *where, "--slot-name", SLOT, "--no-progress"]
        log = (base / "pgferry.out").open("wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        sampler = RssSampler(proc.pid)
        sampler.start()
        if not wait_until(lambda: applied_lsn(workdir) > 0, 300, alive=proc):
            raise RuntimeError("pgferry did not start applying")
        with source.connect(DB) as conn:
            wal0 = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]  # type: ignore[index]
            say(f"one transaction of {args.rows:,} rows, committed")
            t0 = time.monotonic()
            with conn.transaction():
                conn.execute(INSERT, (1, args.rows))
            result["commit_seconds"] = round(time.monotonic() - t0, 1)
            wal1 = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]  # type: ignore[index]
            say(f"one transaction of {args.rows:,} rows, rolled back at the end")
            conn.execute("BEGIN")
            conn.execute(INSERT, (args.rows + 1, 2 * args.rows))
            conn.execute("ROLLBACK")
            wal2 = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]  # type: ignore[index]
        result["wal_bytes_committed"] = lsn_int(wal1) - lsn_int(wal0)
        result["wal_bytes_aborted"] = lsn_int(wal2) - lsn_int(wal1)
        say("waiting for apply to reach the committed transaction")
        t1 = time.monotonic()
        if not wait_until(lambda: applied_lsn(workdir) >= lsn_int(wal1), 3600, alive=proc):
            raise RuntimeError("apply did not reach the large transaction")
        result["applied_seconds_after_commit"] = round(time.monotonic() - t1, 1)
        with target.connect(DB) as conn:
            result["target_rows"] = conn.execute("SELECT count(*) FROM big").fetchone()[0]  # type: ignore[index]
        with source.connect(DB) as conn:
            row = conn.execute(
                "SELECT spill_txns, spill_bytes, stream_txns, stream_bytes, total_bytes"
                " FROM pg_stat_replication_slots WHERE slot_name = %s",
                (SLOT,),
            ).fetchone()
        keys = ("spill_txns", "spill_bytes", "stream_txns", "stream_bytes", "total_bytes")
        result["slot_stats"] = dict(zip(keys, row or (), strict=False))
        say("cutover (stop-cdc, then pgferry's own verify)")
        subprocess.run(
            [pgferry_exe(), "stop-cdc", "--yes", "--dir", str(workdir), "--source", source.uri(DB)],
            env=env,
            check=True,
            capture_output=True,
        )
        result["exit_code"] = proc.wait(timeout=3600)
        sampler.stop_event.set()
        result["peak_rss_mb"] = round(sampler.peak_kb / 1024, 1)
        out = (base / "pgferry.out").read_text()
        result["verified"] = "verify: the target matches the source" in out
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if not args.keep:
            source.destroy()
            target.destroy()
            shutil.rmtree(base, ignore_errors=True)
    ok = (
        result.get("exit_code") == 0
        and result.get("target_rows") == args.rows
        and result.get("verified")
        and result["slot_stats"].get("spill_bytes") == 0
        and (result["slot_stats"].get("stream_txns") or 0) >= 2
        and result["peak_rss_mb"] < 300
    )
    result["ok"] = bool(ok)
    say(json.dumps(result))
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"stream_bench-{started.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    say(f"{'OK' if ok else 'NOT OK'}; written to {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
