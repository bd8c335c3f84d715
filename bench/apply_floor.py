"""The ceiling of statement-level apply on this machine: a bare client replays pgbench-like
transactions the way pgferry's apply does, with nothing else to do.

    .venv/bin/python bench/apply_floor.py [--transactions 60000] [--scale 10]

One throwaway cluster (clone_bench.py's settings), `pgbench -i -s N`, then for each variant
one session (session_replication_role = replica, synchronous_commit = off, a replication
origin) queues random tpcb-like transactions through pgferry's own Pipeline: no spool, no
decoding, parameters made up front. It prints the target backend's CPU and the wall time
per transaction. The variants are what cdc/apply.py sends and what was tried instead:

- origin-last-insert: 3 UPDATE, then the INSERT that carries the origin setup (pgferry now)
- origin-statement: the origin setup as its own statement, then 3 UPDATE and 1 INSERT
- no-origin: the 4 statements alone (what the origin bookkeeping costs)
- begin-commit: explicit BEGIN/COMMIT, one sync per 64 transactions, origin statement first
- begin-commit-last-insert: explicit BEGIN/COMMIT, one sync per 64, origin in the INSERT
- one-statement: all of it in one statement of data-modifying CTEs
- group-16: --group-txns 16: 16 transactions' statements, the last INSERT carrying the
  origin setup, then one sync (one implicit target transaction for the 16)

If pgferry's CPU cost nothing, catch-up could not beat the best of these here.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clone_bench import SERVER_SETTINGS, say

from pgferry.cdc.pipeline import Ctx, Pipeline
from pgferry.cdc.sqlgen import origin_setup_sql
from pgferry.demo.clusters import LocalCluster
from pgferry.pg.lsn import format_lsn

ACCOUNTS = "UPDATE ONLY public.pgbench_accounts SET aid = $1, bid = $2, abalance = $3, filler = $4"
TELLERS = "UPDATE ONLY public.pgbench_tellers SET tid = $1, bid = $2, tbalance = $3, filler = $4"
BRANCHES = "UPDATE ONLY public.pgbench_branches SET bid = $1, bbalance = $2, filler = $3"
UPDATES = (ACCOUNTS + " WHERE aid = $5", TELLERS + " WHERE tid = $5", BRANCHES + " WHERE bid = $4")
HISTORY = "INSERT INTO public.pgbench_history (tid, bid, aid, delta, mtime, filler) "
INSERT = HISTORY + "VALUES ($1, $2, $3, $4, $5, $6)"
INSERT_ORIGIN = HISTORY + f"SELECT $1, $2, $3, $4, $5, $6 FROM ({origin_setup_sql(7)}) AS origin"
ONE_STATEMENT = (
    "WITH a AS (UPDATE ONLY public.pgbench_accounts SET aid = $1, bid = $2, abalance = $3,"
    " filler = $4 WHERE aid = $5 RETURNING 1),"
    " t AS (UPDATE ONLY public.pgbench_tellers SET tid = $6, bid = $7, tbalance = $8,"
    " filler = $9 WHERE tid = $10 RETURNING 1),"
    " b AS (UPDATE ONLY public.pgbench_branches SET bid = $11, bbalance = $12, filler = $13"
    " WHERE bid = $14 RETURNING 1),"
    " h AS (" + HISTORY + "VALUES ($15, $16, $17, $18, $19, $20))"
    f" {origin_setup_sql(21)}"
    " WHERE 1 / (EXISTS (SELECT FROM a) AND EXISTS (SELECT FROM t)"
    " AND EXISTS (SELECT FROM b))::int = 1"
)
MTIME = b"2026-11-24 10:00:00.123456"
VARIANTS = (
    "origin-last-insert",
    "origin-statement",
    "no-origin",
    "begin-commit",
    "begin-commit-last-insert",
    "one-statement",
    "group-16",
)
GROUPED = ("begin-commit", "begin-commit-last-insert")


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def run_variant(cluster: LocalCluster, variant: str, n: int, scale: int) -> dict[str, float]:
    rng = random.Random(1)
    txns: list[tuple[list[bytes | None], ...]] = []
    for _ in range(n):
        aid = str(rng.randint(1, 100_000 * scale)).encode()
        tid = str(rng.randint(1, 10 * scale)).encode()
        bid = str(rng.randint(1, scale)).encode()
        delta = str(rng.randint(-5000, 5000)).encode()
        txns.append(
            (
                [aid, bid, delta, b" " * 84, aid],
                [tid, bid, delta, None, tid],
                [bid, delta, None, bid],
                [tid, bid, aid, delta, MTIME, None],
            )
        )
    with cluster.connect() as conn:
        for name, value in (("session_replication_role", "replica"), ("synchronous_commit", "off")):
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        conn.execute(
            "SELECT pg_replication_origin_create('floor') WHERE pg_replication_origin_oid("
            "'floor') IS NULL"
        )
        conn.execute("SELECT pg_replication_origin_advance('floor', '1/0')")
        conn.execute("SELECT pg_replication_origin_session_setup('floor')")
        pid = conn.info.backend_pid
        pipe = Pipeline(conn)
        previous = 1 << 32
        queue: Callable[[tuple[list[bytes | None], ...], list[bytes], bool], None]

        def plain(t: tuple[list[bytes | None], ...], origin: list[bytes], last: bool) -> None:
            if variant in GROUPED:
                pipe.execute("BEGIN", (), Ctx("begin"))
            if variant in ("origin-statement", "begin-commit"):
                pipe.execute(origin_setup_sql(1), origin, Ctx("origin"))
            for text, params in zip(UPDATES, t[:3], strict=True):
                pipe.execute(text, params, Ctx("update", None, True))
            if variant in ("origin-last-insert", "begin-commit-last-insert") or (
                variant == "group-16" and last
            ):
                pipe.execute(INSERT_ORIGIN, t[3] + origin, Ctx("insert"))  # type: ignore[operator]
            else:
                pipe.execute(INSERT, t[3], Ctx("insert"))
            if variant in GROUPED:
                pipe.execute("COMMIT", (), Ctx("commit"))

        def one(t: tuple[list[bytes | None], ...], origin: list[bytes], last: bool) -> None:
            params = t[0] + t[1] + t[2] + t[3] + origin  # type: ignore[operator]
            pipe.execute(ONE_STATEMENT, params, Ctx("txn"))

        queue = one if variant == "one-statement" else plain
        cpu0, wall0 = backend_cpu(pid), time.perf_counter()
        me0 = resource.getrusage(resource.RUSAGE_SELF)
        group = 16 if variant == "group-16" else 1
        synced = previous  # the commit the last sync recorded: the continuity check's
        for i, t in enumerate(txns):
            commit = previous + 1000
            last = i % group == group - 1
            origin = [format_lsn(commit).encode(), MTIME + b"+00", format_lsn(synced).encode()]
            queue(t, origin, last)
            previous = commit
            if last:
                synced = commit
            if (variant not in GROUPED and last) or i % 64 == 63:
                pipe.sync()
            if i % 32 == 0:
                if pipe.syncs_sent - pipe.syncs > 500:
                    pipe.wait_for_sync(pipe.syncs_sent - 250)
                else:
                    pipe.poll()
        pipe.sync_and_wait()
        cpu1, wall1 = backend_cpu(pid), time.perf_counter()
        me1 = resource.getrusage(resource.RUSAGE_SELF)
        pipe.close()
    client = me1.ru_utime + me1.ru_stime - me0.ru_utime - me0.ru_stime
    return {
        "backend_us": 1e6 * (cpu1 - cpu0) / n,
        "client_us": 1e6 * client / n,
        "wall_us": 1e6 * (wall1 - wall0) / n,
        "txn_per_s": n / (wall1 - wall0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transactions", type=int, default=60_000)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--only", help=f"comma-separated variants (default: {','.join(VARIANTS)})")
    args = ap.parse_args()
    variants = args.only.split(",") if args.only else list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="pgferry-floor-") as tmp:
        cluster = LocalCluster.create("floor", Path(tmp), extra_conf=SERVER_SETTINGS)
        try:
            say(f"pgbench -i -s {args.scale}")
            pgbench = cluster.bindir / "pgbench"
            subprocess.run(
                [str(pgbench), "-i", "-q", "-s", str(args.scale), cluster.uri()],
                check=True,
                capture_output=True,
            )
            print(
                f"{'variant':<20} {'backend us':>10} {'client us':>10} {'wall us':>8} {'txn/s':>8}"
            )
            for variant in variants:
                r = run_variant(cluster, variant, args.transactions, args.scale)
                print(
                    f"{variant:<20} {r['backend_us']:>10.1f} {r['client_us']:>10.1f}"
                    f" {r['wall_us']:>8.1f} {r['txn_per_s']:>8,.0f}",
                    flush=True,
                )
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
