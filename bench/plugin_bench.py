"""The three decoding plugins on the same change stream: what each costs the source, what it
sends, and what decoding it costs pgferry.

    .venv/bin/python bench/plugin_bench.py [--scale 2] [--tpcb-seconds 20]
                                           [--bulk-txns 200] [--repeat 3] [--keep]

One throwaway source cluster (the settings of clone_bench.py). A pgbench database plus the
`bulk` table of cdc_bench.py; one publication of those tables (pgbench_history gets REPLICA
IDENTITY FULL, as pgferry fix-replica-identity would: pgoutput publishes only tables with an
identity) and, per stream, one slot per plugin created at the same position. Then the stream
runs once (tpcb: `pgbench -c 2 -T S`; bulk: N transactions of 1000-row INSERT ... SELECT), and
for each plugin in turn the slot is read with the options pgferry's receiver uses, through
pg_logical_slot_peek_binary_changes in a fresh backend (each plugin --repeat times; the
median counts, the least for pgferry's decoding, which is pure CPU):

- source CPU per change: that backend's user+system CPU (from /proc) while it decodes and
  formats the whole stream (what a walsender spends on it, without the network);
- bytes per change: the plugin's output, summed over every message (framing excluded: the
  replication protocol adds the same 25 bytes to each message of every plugin);
- pgferry decode CPU per change: the process CPU time of pgferry's own decoder for the
  plugin (`cdc.apply.decoder_for`, the function apply calls) over all those messages.

A change is a row change (INSERT, UPDATE, DELETE) as pgferry decodes it; every plugin must
yield the same count, or the run says so. Results go to bench/out/plugin_bench-<ts>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cdc_bench import BULK_SCRIPT, SOURCE_DDL
from clone_bench import SERVER_SETTINGS, say

from pgferry.cdc.apply import decoder_for
from pgferry.cdc.decode import TEST_DECODING_OPTIONS, WAL2JSON_OPTIONS
from pgferry.demo.clusters import LocalCluster, find_server_bindir

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
DB = "plugins"
PUBLICATION = "bench_plugins"
PLUGINS = ("test_decoding", "wal2json", "pgoutput")
TABLES = "pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history, bulk"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def options(plugin: str) -> dict[str, str]:
    """What pgferry's receiver asks each plugin for (pgoutput: protocol 1, text values;
    the receiver asks for protocol 2 with streaming, which only changes large
    transactions, and the SQL interface cannot stream). pgoutput-binary: the same slot
    read with `binary true`, for the source's side of that choice only."""
    if plugin == "wal2json":
        return dict(WAL2JSON_OPTIONS)
    if plugin == "pgoutput":
        return {"proto_version": "1", "publication_names": PUBLICATION}
    if plugin == "pgoutput-binary":
        return {"proto_version": "1", "publication_names": PUBLICATION, "binary": "true"}
    return dict(TEST_DECODING_OPTIONS)


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def read_slot(source: LocalCluster, slot: str, plugin: str) -> dict[str, Any]:
    """Decode the slot's whole stream in a fresh backend: its CPU, the messages."""
    opts = options(plugin)
    args = [x for kv in opts.items() for x in kv]
    with source.connect(DB) as conn:
        pid = conn.info.backend_pid
        cpu0 = backend_cpu(pid)
        t0 = time.monotonic()
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL"
            + ", %s" * len(args)
            + ")",
            [slot, *args],
        ).fetchall()
        wall = time.monotonic() - t0
        cpu = backend_cpu(pid) - cpu0
    messages = [bytes(r[0]) for r in rows]
    return {"messages": messages, "source_cpu": cpu, "source_wall": wall}


def decode_all(plugin: str, messages: list[bytes]) -> tuple[int, float]:
    """Row changes pgferry decodes from the messages, and its CPU seconds doing it."""
    decode = decoder_for(plugin)
    changes = 0
    # Without the cyclic collector's passes, which land at random (apply runs it rarely).
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        for message in messages:
            change = decode(message, 0)
            if change is not None and change.kind in ("I", "U", "D"):
                changes += 1
        return changes, time.process_time() - t0
    finally:
        gc.enable()


def measure(source: LocalCluster, slots: dict[str, str], repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for plugin in PLUGINS:
        runs = []
        for _ in range(repeat):
            got = read_slot(source, slots[plugin], plugin)
            changes, decode_cpu = decode_all(plugin, got["messages"])
            runs.append(
                {
                    "changes": changes,
                    "messages": len(got["messages"]),
                    "bytes": sum(len(m) for m in got["messages"]),
                    "source_cpu_s": got["source_cpu"],
                    "source_wall_s": got["source_wall"],
                    "decode_cpu_s": decode_cpu,
                }
            )
            del got
        changes = runs[0]["changes"]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        out[plugin] = {
            "runs": runs,
            "changes": changes,
            "bytes_per_change": med["bytes"] / changes if changes else None,
            "source_cpu_us_per_change": 1e6 * med["source_cpu_s"] / changes if changes else None,
            # The least of the runs: decoding is pure CPU, and what varies is disturbance.
            "decode_cpu_us_per_change": 1e6 * min(r["decode_cpu_s"] for r in runs) / changes
            if changes
            else None,
        }
    out["pgoutput-binary"] = _binary(source, slots["pgoutput"], out["pgoutput"]["changes"], repeat)
    counts = {p: out[p]["changes"] for p in PLUGINS}
    out["same_changes"] = len(set(counts.values())) == 1
    if not out["same_changes"]:
        say(f"  WARNING: the plugins decoded different numbers of changes: {counts}")
    return out


def _binary(source: LocalCluster, slot: str, changes: int, repeat: int) -> dict[str, Any]:
    """pgoutput's slot read again with `binary true`: what the source spends and sends
    (pgferry asks for text, so nothing is decoded)."""
    runs = [read_slot(source, slot, "pgoutput-binary") for _ in range(repeat)]
    cpu = statistics.median(r["source_cpu"] for r in runs)
    size = statistics.median(sum(len(m) for m in r["messages"]) for r in runs)
    return {
        "changes": changes,
        "bytes_per_change": size / changes if changes else None,
        "source_cpu_us_per_change": 1e6 * cpu / changes if changes else None,
    }


def create_slots(source: LocalCluster, stream: str) -> dict[str, str]:
    slots = {}
    with source.connect(DB) as conn:
        for plugin in PLUGINS:
            name = f"bench_{stream}_{plugin}"
            conn.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (name, plugin))
            slots[plugin] = name
    return slots


def drop_slots(source: LocalCluster, slots: dict[str, str]) -> None:
    with source.connect(DB) as conn:
        for name in slots.values():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))


def run_stream(source: LocalCluster, stream: str, args: argparse.Namespace, env: dict) -> None:
    pgbench = shutil.which("pgbench", path=env["PATH"]) or "pgbench"
    if stream == "tpcb":
        cmd = [pgbench, "-n", "-c", "2", "-j", "2", "-T", str(args.tpcb_seconds)]
    else:
        script = Path(tempfile.mkstemp(suffix=".sql")[1])
        script.write_text(BULK_SCRIPT)
        cmd = [pgbench, "-n", "-c", "1", "-t", str(args.bulk_txns), "-D", "rows=1000"]
        cmd += ["-f", str(script)]
    subprocess.run([*cmd, source.uri(DB)], env=env, check=True, capture_output=True)


def table(results: dict[str, Any]) -> str:
    lines = [
        "| stream | plugin | changes | bytes / change | source CPU us / change |"
        " pgferry decode CPU us / change |",
        "|---|---|---|---|---|---|",
    ]
    for stream, r in results.items():
        for plugin in (*PLUGINS, "pgoutput-binary"):
            p = r[plugin]
            decode = p.get("decode_cpu_us_per_change")
            lines.append(
                f"| {stream} | {plugin} | {p['changes']:,} | {p['bytes_per_change']:.0f} |"
                f" {p['source_cpu_us_per_change']:.2f} |"
                f" {'-' if decode is None else f'{decode:.2f}'} |"
            )
    return "\n".join(lines)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets: pgoutput's source CPU and bytes per change <= 0.5 x wal2json's;
    pgferry's decode CPU per change for pgoutput <= 0.5 x test_decoding's."""
    out = {}
    for stream, r in results.items():
        pgo, w2j, td = r["pgoutput"], r["wal2json"], r["test_decoding"]
        out[stream] = {
            "source_cpu_vs_wal2json": pgo["source_cpu_us_per_change"]
            / w2j["source_cpu_us_per_change"],
            "bytes_vs_wal2json": pgo["bytes_per_change"] / w2j["bytes_per_change"],
            "decode_cpu_vs_test_decoding": pgo["decode_cpu_us_per_change"]
            / td["decode_cpu_us_per_change"],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=2, help="pgbench -i -s N (2)")
    parser.add_argument("--tpcb-seconds", type=int, default=20, help="pgbench -T (20)")
    parser.add_argument("--bulk-txns", type=int, default=200, help="1000-row inserts (200)")
    parser.add_argument("--repeat", type=int, default=3, help="reads per plugin (3)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster")
    args = parser.parse_args(argv)
    bindir = find_server_bindir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    workdir = Path(tempfile.mkdtemp(prefix="pgferry-plugin-bench-"))
    started = dt.datetime.now(dt.UTC)
    source = LocalCluster.create(
        "source", workdir, logical=True, extra_conf=SERVER_SETTINGS, password_roles=False
    )
    results: dict[str, Any] = {}
    try:
        source.create_database(DB)
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(args.scale), source.uri(DB)],
            env=env,
            check=True,
            capture_output=True,
        )
        with source.connect(DB) as conn:
            conn.execute(SOURCE_DDL)
            conn.execute("ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
            conn.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLES}")
        for stream in ("tpcb", "bulk"):
            slots = create_slots(source, stream)
            say(f"{stream}: running the stream once, for the three slots")
            run_stream(source, stream, args, env)
            with source.connect(DB) as conn:
                conn.execute("CHECKPOINT")
            say(f"{stream}: reading each slot {args.repeat} times")
            results[stream] = measure(source, slots, args.repeat)
            drop_slots(source, slots)
    finally:
        if not args.keep:
            source.destroy()
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(results))
    targets = ratios(results)
    for stream, t in targets.items():
        say(
            f"{stream}: pgoutput vs wal2json: source CPU {t['source_cpu_vs_wal2json']:.2f}x,"
            f" bytes {t['bytes_vs_wal2json']:.2f}x; pgferry decode vs test_decoding"
            f" {t['decode_cpu_vs_test_decoding']:.2f}x (targets <= 0.5x)"
        )
    OUT_DIR.mkdir(exist_ok=True)
    out = OUT_DIR / f"plugin_bench-{started.strftime('%Y%m%d-%H%M%S')}.json"
    for r in results.values():
        for plugin in PLUGINS:
            r[plugin].pop("messages", None)
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "args": vars(args),
                "results": results,
                "ratios": targets,
            },
            indent=2,
        )
    )
    say(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
