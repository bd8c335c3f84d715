"""Time pgferry clone against pg_dump | pg_restore and pgcopydb clone on one generated dataset.

    .venv/bin/python bench/clone_bench.py [--scale F] [--only pgferry,dump,pgcopydb]
                                          [--split SIZE] [--keep] [--workdir DIR --reuse-source]

Two throwaway local clusters (source with wal_level=logical, target) with the same settings,
a ~2 GB mixed dataset (bench/dataset.py) loaded once into the source. For each tool: both
servers restarted, OS page cache dropped, a fresh empty target database, then the timed
migration, then a check of the target against the source (per-table row count and content
hash, index/constraint/trigger/view definitions, sequences, large objects). The peak resident
memory of each tool's process tree is sampled every 100 ms. Results are printed and written
to bench/out/ as JSON. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dataset

from pgferry.demo.clusters import LocalCluster, find_server_bindir

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
SOURCE_DB = "bench"
TOOLS = ("pgferry", "dump", "pgcopydb")
TOOL_TITLES = {
    "pgferry": "pgferry clone",
    "dump": "pg_dump -Fd -j | pg_restore -j",
    "pgcopydb": "pgcopydb clone",
}
# The same settings on both clusters (LocalCluster adds fsync=off, synchronous_commit=off,
# full_page_writes=off: durability is not what we measure).
SERVER_SETTINGS = {
    "shared_buffers": "1GB",
    "max_wal_size": "8GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "maintenance_work_mem": "512MB",
    "work_mem": "32MB",
    "max_connections": "100",
    "max_parallel_maintenance_workers": "2",
    "max_parallel_workers": "4",
    "max_worker_processes": "16",
    "autovacuum": "on",
}
TARGET_RATIO_PGCOPYDB = 1.0  # pgferry wall time <= pgcopydb's
TARGET_RATIO_DUMP = 0.6  # pgferry wall time <= 0.6 x pg_dump | pg_restore
TARGET_PEAK_RSS_MB = 300.0
TOOL_TIMEOUT = 4 * 3600
USER_SCHEMAS_SQL = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pgferry', 'pgcopydb')"
    " AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'"
)


def say(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


# -- process tree memory ----------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, command name) for every process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        lpar, rpar = raw.find("("), raw.rfind(")")
        fields = raw[rpar + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), raw[lpar + 1 : rpar])
    return table


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class TreeSampler:
    """Samples VmRSS (and PSS) summed over a process and all its descendants."""

    root: int
    interval: float = 0.1
    peak_rss_kb: int = 0
    peak_pss_kb: int = 0
    peak_root_rss_kb: int = 0
    max_procs: int = 0
    samples: int = 0
    peak_procs: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            if pid in table:
                tree.append(pid)
                todo.extend(children.get(pid, []))
        rss = {pid: _status_kb(pid, "VmRSS:") for pid in tree}
        total = sum(rss.values())
        pss = sum(_pss_kb(pid) for pid in tree)
        self.samples += 1
        self.max_procs = max(self.max_procs, len(tree))
        self.peak_root_rss_kb = max(self.peak_root_rss_kb, rss.get(self.root, 0))
        self.peak_pss_kb = max(self.peak_pss_kb, pss)
        if total > self.peak_rss_kb:
            self.peak_rss_kb = total
            self.peak_procs = [f"{table[p][1]}[{p}]={rss[p] // 1024}MB" for p in tree]

    def result(self) -> dict[str, Any]:
        return {
            "peak_rss_mb": round(self.peak_rss_kb / 1024, 1),
            "peak_pss_mb": round(self.peak_pss_kb / 1024, 1),
            "peak_main_process_rss_mb": round(self.peak_root_rss_kb / 1024, 1),
            "max_processes": self.max_procs,
            "samples": self.samples,
            "processes_at_peak": self.peak_procs,
        }


def merge_memory(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Memory of steps run one after the other: the peak over the steps."""
    best = max(parts, key=lambda m: m["peak_rss_mb"])
    return {
        **best,
        "peak_pss_mb": max(m["peak_pss_mb"] for m in parts),
        "max_processes": max(m["max_processes"] for m in parts),
        "samples": sum(m["samples"] for m in parts),
    }


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, not idle or iowait)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def server_cpu_seconds(cluster: LocalCluster) -> float:
    """CPU seconds used by a server: postmaster, its exited children, its live children."""
    try:
        pid = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    ticks = 0
    for p, (ppid, _) in _proc_table().items():
        if p != pid and ppid != pid:
            continue
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        # utime, stime (and for the postmaster cutime, cstime: its exited backends).
        ticks += int(fields[11]) + int(fields[12])
        if p == pid:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLK_TCK


class CpuMeter:
    """Where the machine's CPU time went during a run: the tool, our two servers, others."""

    def __init__(self, clusters: list[LocalCluster]) -> None:
        self.clusters = clusters
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_seconds()
        self.children0 = _children_cpu()
        self.servers0 = sum(server_cpu_seconds(c) for c in clusters)

    def result(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        busy = machine_busy_seconds() - self.busy0
        tool = _children_cpu() - self.children0
        servers = sum(server_cpu_seconds(c) for c in self.clusters) - self.servers0
        return {
            "wall_seconds": round(wall, 1),
            "machine_busy_cpu_seconds": round(busy, 1),
            "machine_cpu_capacity_seconds": round(wall * (os.cpu_count() or 1), 1),
            "tool_cpu_seconds": round(tool, 1),
            "servers_cpu_seconds": round(servers, 1),
            "other_cpu_seconds": round(max(0.0, busy - tool - servers), 1),
        }


def wait_quiet(max_wait: float, threshold: float = 0.25, window: float = 5.0) -> float:
    """Wait (up to `max_wait` s) until the machine uses < `threshold` CPUs over `window` s.

    Returns the CPUs in use over the last window (other sessions may share the machine).
    """
    deadline = time.monotonic() + max_wait
    while True:
        b0 = machine_busy_seconds()
        time.sleep(window)
        busy = (machine_busy_seconds() - b0) / window
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_sampled(
    argv: list[str], log: Path, env: dict[str, str], timeout: float = TOOL_TIMEOUT
) -> tuple[int, float, dict[str, Any]]:
    """Run `argv` with output to `log`; return exit code, wall seconds, memory peak."""
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        sampler = TreeSampler(proc.pid).start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            out.write(b"\nbench: killed after timeout\n")
        finally:
            wall = time.monotonic() - t0
            sampler.stop()
    return rc, wall, sampler.result()


# -- clusters ---------------------------------------------------------------------------------


def _existing_cluster(workdir: Path, name: str) -> LocalCluster:
    """A LocalCluster object for a cluster a previous run left in `workdir/name`."""
    link = workdir / name
    home = link.resolve()
    conf = (home / "data" / "pgferry.conf").read_text()
    port = next(
        int(line.split("=")[1].strip().strip("'"))
        for line in conf.splitlines()
        if line.startswith("port")
    )
    return LocalCluster(
        name=name,
        bindir=find_server_bindir(),
        datadir=home / "data",
        port=port,
        socket_dir=home / "sock",
        home=home,
        link=link if link.is_symlink() else None,
    )


def _ensure_running(cluster: LocalCluster) -> None:
    try:
        with cluster.connect():
            return
    except psycopg.OperationalError:
        cluster.start()


def restart_cold(clusters: list[LocalCluster]) -> bool:
    """Restart the servers (empty shared_buffers), sync and drop the OS page cache."""
    for c in clusters:
        with c.connect() as conn:
            conn.execute("CHECKPOINT")
        c.stop()
    os.sync()
    dropped = True
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        dropped = False
    for c in clusters:
        c.start()
    return dropped


def db_size(cluster: LocalCluster, db: str) -> int:
    with cluster.connect() as conn:
        return int(conn.execute("SELECT pg_database_size(%s)", (db,)).fetchone()[0])  # type: ignore[index]


# -- correctness check ------------------------------------------------------------------------

SESSION_SETUP = (
    "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC';"
    " SET bytea_output = 'hex'; SET IntervalStyle = 'postgres'; SET search_path = '';"
    " SET statement_timeout = 0; SET max_parallel_workers_per_gather = 0"
)


def _tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in conn.execute(
            f"""SELECT n.nspname, c.relname FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS_SQL}
                ORDER BY pg_relation_size(c.oid) DESC, 1, 2"""
        ).fetchall()
    ]


def _catalog_fingerprint(conn: psycopg.Connection) -> dict[str, Any]:
    def rows(q: str) -> list[list[Any]]:
        return [[str(v) if v is not None else None for v in r] for r in conn.execute(q)]

    return {
        "tables": rows(
            f"""SELECT n.nspname, c.relname, c.relkind FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_SCHEMAS_SQL}
                ORDER BY 1, 2"""
        ),
        "indexes": rows(
            f"""SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid
                FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE {USER_SCHEMAS_SQL} ORDER BY 1, 2"""
        ),
        "constraints": rows(
            f"""SELECT n.nspname, co.conrelid::regclass::text, co.conname, co.contype,
                       pg_get_constraintdef(co.oid), co.convalidated
                FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
                WHERE {USER_SCHEMAS_SQL} ORDER BY 1, 2, 3"""
        ),
        "triggers": rows(
            f"""SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid)
                FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE NOT t.tgisinternal AND {USER_SCHEMAS_SQL} ORDER BY 1, 2, 3"""
        ),
        "sequences": rows(
            f"""SELECT s.schemaname, s.sequencename, s.last_value, s.start_value,
                       s.increment_by
                FROM pg_sequences s JOIN pg_namespace n ON n.nspname = s.schemaname
                WHERE {USER_SCHEMAS_SQL} ORDER BY 1, 2"""
        ),
        "large_objects": rows(
            """SELECT count(*),
                      coalesce(sum(hashtextextended(encode(lo_get(oid), 'hex'), 0)::numeric), 0)
               FROM pg_largeobject_metadata"""
        ),
    }


def fingerprint(cluster: LocalCluster, db: str, jobs: int = 2) -> dict[str, Any]:
    """Catalog definitions, and per-table row count and content hash, of database `db`."""
    uri = cluster.uri(db)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(SESSION_SETUP)
        fp = _catalog_fingerprint(conn)
        tables = _tables(conn)

    def hash_table(name: tuple[str, str]) -> tuple[str, list[str]]:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute(SESSION_SETUP)
            q = sql.SQL(
                "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)"
                " FROM ONLY {} AS t"
            ).format(sql.Identifier(*name))
            count, digest = conn.execute(q).fetchone()  # type: ignore[misc]
        return f"{name[0]}.{name[1]}", [str(count), str(digest)]

    with ThreadPoolExecutor(jobs) as pool:
        fp["data"] = dict(pool.map(hash_table, tables))
    return fp


def compare(source: dict[str, Any], target: dict[str, Any]) -> list[str]:
    """Differences between two fingerprints (empty when equal)."""
    problems = []
    for key in source:
        s, t = source[key], target.get(key)
        if s == t:
            continue
        if key == "data":
            t = t or {}
            for name in sorted(set(s) | set(t)):
                if s.get(name) != t.get(name):
                    problems.append(
                        f"data {name}: source rows/hash {s.get(name)} target {t.get(name)}"
                    )
        else:
            s_set = {json.dumps(r) for r in s}
            t_set = {json.dumps(r) for r in (t or [])}
            for r in sorted(s_set - t_set)[:10]:
                problems.append(f"{key}: missing on target: {r}")
            for r in sorted(t_set - s_set)[:10]:
                problems.append(f"{key}: extra on target: {r}")
    return problems


# -- the tools --------------------------------------------------------------------------------


@dataclass
class Ctx:
    source: LocalCluster
    target: LocalCluster
    runs_dir: Path
    jobs: int
    split: str | None
    env: dict[str, str]
    pg_bindir: Path


def run_pgferry(ctx: Ctx, target_uri: str) -> dict[str, Any]:
    workdir = ctx.runs_dir / "pgferry"
    exe = Path(sys.executable).parent / "pgferry"
    argv = [
        str(exe) if exe.exists() else "pgferry",
        "clone",
        "--source",
        ctx.source.uri(SOURCE_DB),
        "--target",
        target_uri,
        "--dir",
        str(workdir),
        "--table-jobs",
        str(ctx.jobs),
        "--index-jobs",
        str(ctx.jobs),
        "--no-progress",
    ]
    if ctx.split:
        argv += ["--split-tables-larger-than", ctx.split]
    log = ctx.runs_dir / "pgferry.out"
    rc, wall, mem = run_sampled(argv, log, ctx.env)
    result: dict[str, Any] = {"exit_code": rc, "wall_seconds": wall, "memory": mem, "log": str(log)}
    summary = workdir / "summary.json"
    if summary.exists():
        data = json.loads(summary.read_text())
        result["phases"] = data.get("phases")
        result["tables"] = data.get("tables", [])[:6]
        result["tool_reported_seconds"] = data.get("this_run_seconds")
    result["tool_log"] = str(workdir / "pgferry.log")
    result["slow_units"] = pgferry_units(workdir / "state.db")
    return result


def pgferry_units(state_db: Path, min_seconds: float = 0.5) -> list[str]:
    """pgferry's work units that took at least `min_seconds`: a timeline (start, end)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{state_db}?mode=ro", uri=True)) as db:
            (t0,) = db.execute("SELECT min(started_at) FROM runs").fetchone()
            rows = db.execute(
                "SELECT kind, label, started_at, finished_at, duration FROM units"
                " WHERE duration >= ? ORDER BY started_at",
                (min_seconds,),
            ).fetchall()
    except (sqlite3.Error, TypeError):
        return []
    return [
        f"{start - t0:6.1f}s -> {end - t0:6.1f}s  {dur:6.1f}s  {kind:<10} {label}"
        for kind, label, start, end, dur in rows
    ]


def run_dump_restore(ctx: Ctx, target_uri: str) -> dict[str, Any]:
    dumpdir = ctx.runs_dir / "dump" / "db.dump"
    dumpdir.parent.mkdir(parents=True, exist_ok=True)
    log = ctx.runs_dir / "dump.out"
    j = str(ctx.jobs)
    dump = [str(ctx.pg_bindir / "pg_dump"), "-Fd", "-j", j, "-f", str(dumpdir)]
    dump.append(ctx.source.uri(SOURCE_DB))
    restore = [str(ctx.pg_bindir / "pg_restore"), "-j", j, "-d", target_uri, str(dumpdir)]
    rc, t_dump, mem_dump = run_sampled(dump, log, ctx.env)
    result: dict[str, Any] = {"log": str(log), "dump_seconds": t_dump}
    mems = [mem_dump]
    t_restore = 0.0
    if rc == 0:
        result["dump_bytes"] = sum(p.stat().st_size for p in dumpdir.iterdir())
        rc, t_restore, mem_restore = run_sampled(restore, log, ctx.env)
        mems.append(mem_restore)
        result["restore_seconds"] = t_restore
    result.update(exit_code=rc, wall_seconds=t_dump + t_restore, memory=merge_memory(mems))
    return result


def run_pgcopydb(ctx: Ctx, target_uri: str) -> dict[str, Any]:
    workdir = ctx.runs_dir / "pgcopydb"
    argv = [
        shutil.which("pgcopydb", path=ctx.env["PATH"]) or "/usr/bin/pgcopydb",
        "clone",
        "--source",
        ctx.source.uri(SOURCE_DB),
        "--target",
        target_uri,
        "--dir",
        str(workdir),
        "--table-jobs",
        str(ctx.jobs),
        "--index-jobs",
        str(ctx.jobs),
    ]
    if ctx.split:
        argv += ["--split-tables-larger-than", ctx.split]
    log = ctx.runs_dir / "pgcopydb.out"
    rc, wall, mem = run_sampled(argv, log, ctx.env)
    result: dict[str, Any] = {"exit_code": rc, "wall_seconds": wall, "memory": mem, "log": str(log)}
    result["steps"] = pgcopydb_steps(log)
    return result


def pgcopydb_steps(log: Path) -> list[str]:
    """The step timing table pgcopydb prints at the end of its output."""
    lines = log.read_text(errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if "Step" in line and "Duration" in line), None)
    if start is None:
        return []
    table = []
    for line in lines[start:]:
        if not line.strip():
            break
        # Strip the log prefix ("HH:MM:SS pid INFO  ") when there is one.
        table.append(line.split(" INFO ", 1)[-1].rstrip() if " INFO " in line else line)
    return table


RUNNERS: dict[str, Callable[[Ctx, str], dict[str, Any]]] = {
    "pgferry": run_pgferry,
    "dump": run_dump_restore,
    "pgcopydb": run_pgcopydb,
}


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="dataset size factor (1.0 ~ 2 GB)")
    p.add_argument("--only", default=",".join(TOOLS), help="tools to run, comma separated")
    p.add_argument("--split", metavar="SIZE", help="--split-tables-larger-than for both clones")
    p.add_argument("--jobs", type=int, default=2, help="--table-jobs/--index-jobs/-j (2)")
    p.add_argument("--keep", action="store_true", help="keep the clusters and files at the end")
    p.add_argument("--workdir", type=Path, help="scratch directory (default: new one in /tmp)")
    p.add_argument(
        "--reuse-source",
        action="store_true",
        help="reuse the clusters and loaded source a --keep run left in --workdir",
    )
    p.add_argument(
        "--repeat", type=int, default=3, metavar="N", help="run each tool N times (median; 3)"
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=120,
        metavar="SECONDS",
        help="before each tool, wait up to this long for the machine to be idle (120)",
    )
    p.add_argument("--out", type=Path, default=OUT_DIR, help="where the JSON results go")
    args = p.parse_args(argv)
    args.tools = [t.strip() for t in args.only.split(",") if t.strip()]
    bad = [t for t in args.tools if t not in TOOLS]
    if bad:
        p.error(f"unknown tool(s) {', '.join(bad)}; choose from {', '.join(TOOLS)}")
    if args.reuse_source and not args.workdir:
        p.error("--reuse-source needs --workdir")
    return args


def setup_clusters(args: argparse.Namespace) -> tuple[Path, LocalCluster, LocalCluster, bool]:
    """The scratch dir and the two clusters, with the dataset in the source."""
    state_file = args.workdir / "bench-state.json" if args.workdir else None
    if args.reuse_source and state_file and state_file.exists():
        state = json.loads(state_file.read_text())
        if state.get("scale") != args.scale:
            raise SystemExit(f"{args.workdir} holds scale {state.get('scale')}, not {args.scale}")
        source = _existing_cluster(args.workdir, "source")
        target = _existing_cluster(args.workdir, "target")
        _ensure_running(source)
        _ensure_running(target)
        say(f"reusing the source loaded in {args.workdir}")
        return args.workdir, source, target, True
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pgferry-bench-", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # the postgres system user must reach the clusters in it
    say(f"scratch directory {workdir}")
    source = LocalCluster.create(
        "source", workdir, logical=True, extra_conf=SERVER_SETTINGS, password_roles=False
    )
    target = LocalCluster.create(
        "target", workdir, extra_conf=SERVER_SETTINGS, password_roles=False
    )
    say(f"source on port {source.port}, target on port {target.port}")
    source.create_database(SOURCE_DB)
    say(f"loading the dataset at scale {args.scale}")
    t0 = time.monotonic()
    dataset.load(source.uri(SOURCE_DB), args.scale, jobs=2, report=say)
    with source.connect(SOURCE_DB) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    say(f"dataset loaded in {time.monotonic() - t0:.0f}s")
    (workdir / "bench-state.json").write_text(json.dumps({"scale": args.scale}))
    return workdir, source, target, False


def source_description(source: LocalCluster) -> dict[str, Any]:
    with source.connect(SOURCE_DB) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        rels = conn.execute(
            f"""SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind = 'r' AND {USER_SCHEMAS_SQL}
                ORDER BY 2 DESC"""
        ).fetchall()
        counts = conn.execute(
            f"""SELECT
                  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace
                   WHERE relkind = 'r' AND {USER_SCHEMAS_SQL}),
                  (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS_SQL}),
                  (SELECT count(*) FROM pg_constraint WHERE contype = 'f'),
                  (SELECT count(*) FROM pg_sequences WHERE schemaname IN ('public', 'app')),
                  (SELECT count(*) FROM pg_largeobject_metadata)"""
        ).fetchone()
    top = {name: int(b) for name, b in rels[:4]}
    return {
        "server_version": version,
        "database_bytes": int(size),
        "largest_tables_bytes": top,
        "other_tables_bytes": int(sum(b for _, b in rels[4:])),
        "tables": counts[0],  # type: ignore[index]
        "indexes": counts[1],  # type: ignore[index]
        "foreign_keys": counts[2],  # type: ignore[index]
        "sequences": counts[3],  # type: ignore[index]
        "large_objects": counts[4],  # type: ignore[index]
    }


def machine_description() -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        pgcopydb = subprocess.run(
            ["pgcopydb", "--version"], capture_output=True, text=True, check=False
        ).stdout.split("\n")[0]
    except OSError:
        pgcopydb = "not installed"  # the pgferry-only benches run without it
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pgcopydb": pgcopydb.strip(),
    }


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds:.0f}s ({seconds / 60:.1f} min)"


def print_report(report: dict[str, Any]) -> None:
    results = report["results"]
    base = results.get("pgferry", {}).get("wall_seconds")
    print()
    src = report["source"]
    print(
        f"Dataset: {src['database_bytes'] / 1e9:.2f} GB (pg_database_size), {src['tables']} tables,"
        f" {src['indexes']} indexes, {src['foreign_keys']} foreign keys,"
        f" {src['large_objects']} large objects; jobs={report['jobs']}"
        + (f", split at {report['split']}" if report["split"] else "")
    )
    header = (
        f"{'tool':<34} {'wall time':>18} {'vs pgferry':>10} {'check':>6} {'peak RSS':>10}"
        f" {'others CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    many = report["repeat"] > 1
    for tool, r in results.items():
        ratio = f"{r['wall_seconds'] / base:.2f}x" if base and r.get("wall_seconds") else "-"
        check = "OK" if r.get("check_ok") else "FAIL"
        rss = f"{r['memory']['peak_rss_mb']:.0f} MB" if r.get("memory") else "-"
        frac = r.get("other_cpu_fraction")
        others = f"{100 * frac:.0f}%" if frac is not None else "-"
        print(
            f"{TOOL_TITLES[tool]:<34} {fmt_s(r.get('wall_seconds')):>18} {ratio:>10}"
            f" {check:>6} {rss:>10} {others:>10}"
            + (f"  runs: {', '.join(f'{w:.1f}' for w in r['wall_seconds_all'])}" if many else "")
        )
    print()
    for t in report["targets"]:
        print(f"  {t['name']:<44} {t['value']:>10} (target {t['target']}) {t['verdict']}")
    print()


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    pf = results.get("pgferry")

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    for tool, limit, name in (
        ("pgcopydb", TARGET_RATIO_PGCOPYDB, "pgferry / pgcopydb wall time"),
        ("dump", TARGET_RATIO_DUMP, "pgferry / (pg_dump + pg_restore) wall time"),
    ):
        other = results.get(tool)
        if pf and other and pf["exit_code"] == 0 and other["exit_code"] == 0:
            ratio = pf["wall_seconds"] / other["wall_seconds"]
            ok: bool | None = ratio <= limit and pf["check_ok"]
            value = f"{ratio:.2f}"
        else:
            ok, value = None, "-"
        targets.append(
            {"name": name, "value": value, "target": f"<= {limit}", "verdict": verdict(ok)}
        )
    if pf:
        rss = pf["memory"]["peak_rss_mb"]
        targets.append(
            {
                "name": "pgferry peak RSS (process tree)",
                "value": f"{rss:.0f} MB",
                "target": f"< {TARGET_PEAK_RSS_MB:.0f} MB",
                "verdict": verdict(rss < TARGET_PEAK_RSS_MB),
            }
        )
    return targets


def run_one(ctx: Ctx, tool: str, src_fp: dict[str, Any], args: argparse.Namespace) -> dict:
    """One timed, checked run of `tool` into a fresh target database."""
    source, target = ctx.source, ctx.target
    db = f"bench_{tool}"
    target.drop_database(db)
    target.create_database(db)
    if args.wait_quiet > 0:
        busy = wait_quiet(args.wait_quiet)
        if busy >= 0.25:
            say(f"the machine is still busy ({busy:.2f} CPUs in use): going ahead")
    dropped = restart_cold([source, target])
    say(
        f"{TOOL_TITLES[tool]}: servers restarted"
        + (", page cache dropped" if dropped else " (cannot drop the page cache)")
    )
    meter = CpuMeter([source, target])
    r = RUNNERS[tool](ctx, target.uri(db))
    r["cpu"] = meter.result()
    r["page_cache_dropped"] = dropped
    cpu = r["cpu"]
    say(
        f"{TOOL_TITLES[tool]}: exit {r['exit_code']} in {fmt_s(r['wall_seconds'])};"
        f" CPU seconds: tool {cpu['tool_cpu_seconds']}, servers"
        f" {cpu['servers_cpu_seconds']}, other processes {cpu['other_cpu_seconds']}"
        f" (of {cpu['machine_cpu_capacity_seconds']} available)"
    )
    if r["exit_code"] != 0:
        print(_tail(Path(r["log"])), flush=True)
    say(f"{TOOL_TITLES[tool]}: checking the target")
    t0 = time.monotonic()
    try:
        problems = compare(src_fp, fingerprint(target, db))
    except psycopg.Error as exc:
        problems = [f"check failed: {exc}"]
    r["target_database_bytes"] = db_size(target, db)
    r["check_ok"] = r["exit_code"] == 0 and not problems
    r["check_problems"] = problems[:50]
    verdict = "OK" if r["check_ok"] else "FAIL"
    say(f"{TOOL_TITLES[tool]}: check {verdict} ({time.monotonic() - t0:.0f}s)")
    for p in problems[:20]:
        print(f"    {p}", flush=True)
    if not args.keep:
        target.drop_database(db)
    return r


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one tool: the median wall time, all checks, the highest memory peak."""
    walls = sorted(r["wall_seconds"] for r in runs)
    median_run = sorted(runs, key=lambda r: r["wall_seconds"])[(len(runs) - 1) // 2]
    cap = sum(r["cpu"]["machine_cpu_capacity_seconds"] for r in runs)
    other = sum(r["cpu"]["other_cpu_seconds"] for r in runs)
    return {
        "wall_seconds": statistics.median(walls),
        "wall_seconds_all": [round(w, 1) for w in (r["wall_seconds"] for r in runs)],
        "wall_seconds_min": walls[0],
        "wall_seconds_max": walls[-1],
        "exit_code": next((r["exit_code"] for r in runs if r["exit_code"] != 0), 0),
        "check_ok": all(r["check_ok"] for r in runs),
        "memory": max((r["memory"] for r in runs), key=lambda m: m["peak_rss_mb"]),
        "other_cpu_fraction": round(other / cap, 3) if cap else None,
        "median_run": median_run,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pg_bindir = find_server_bindir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGCOPYDB_"))}
    env["PATH"] = f"{pg_bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["TMPDIR"] = "/tmp"
    started = dt.datetime.now(dt.UTC)
    workdir, source, target, reused = setup_clusters(args)
    ok = True
    try:
        src_info = source_description(source)
        say(
            f"source database: {src_info['database_bytes'] / 1e9:.2f} GB, "
            f"{src_info['tables']} tables, {src_info['indexes']} indexes"
        )
        say("fingerprinting the source (row counts, content hashes, definitions)")
        t0 = time.monotonic()
        src_fp = fingerprint(source, SOURCE_DB)
        say(f"source fingerprint in {time.monotonic() - t0:.0f}s")
        stamp = started.strftime("%Y%m%d-%H%M%S")
        runs_dir = workdir / f"runs-{stamp}"
        runs_dir.mkdir()
        ctx = Ctx(source, target, runs_dir, args.jobs, args.split, env, pg_bindir)
        runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in args.tools}
        for rnd in range(1, args.repeat + 1):
            ctx.runs_dir = runs_dir / f"round-{rnd}"
            ctx.runs_dir.mkdir()
            for tool in args.tools:
                if args.repeat > 1:
                    say(f"round {rnd}/{args.repeat}: {TOOL_TITLES[tool]}")
                runs[tool].append(run_one(ctx, tool, src_fp, args))
        results = {tool: aggregate(rs) for tool, rs in runs.items()}
        report = {
            "started_at": started.isoformat(timespec="seconds"),
            "machine": machine_description(),
            "scale": args.scale,
            "jobs": args.jobs,
            "split": args.split,
            "repeat": args.repeat,
            "source_reused": reused,
            "server_settings": SERVER_SETTINGS,
            "source": src_info,
            "results": results,
        }
        report["targets"] = evaluate(results)
        print_report(report)
        if "pgferry" in results and results["pgferry"]["median_run"].get("phases"):
            print("pgferry phases (summary.json of the median run):")
            for p in results["pgferry"]["median_run"]["phases"]:
                print(
                    f"  {p['title']:<28} wall {p['wall_seconds']:>8.1f}s"
                    f"  cumulative {p['cumulative_seconds']:>8.1f}s  x{p['concurrency']}"
                )
        if "pgferry" in results and results["pgferry"]["median_run"].get("slow_units"):
            print("pgferry units >= 0.5s (median run; start -> end, duration):")
            for line in results["pgferry"]["median_run"]["slow_units"]:
                print(f"  {line}")
        if "pgcopydb" in results and results["pgcopydb"]["median_run"].get("steps"):
            print("pgcopydb steps (median run):")
            for line in results["pgcopydb"]["median_run"]["steps"]:
                print(f"  {line}")
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out / f"clone_bench-{stamp}.json"
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        say(f"results written to {out}")
        ok = all(r["check_ok"] for r in results.values())
    finally:
        if args.keep:
            say(f"kept: {workdir} (source {source.uri(SOURCE_DB)}, target port {target.port});")
            say(f"  rerun with --workdir {workdir} --reuse-source --scale {args.scale}")
        else:
            source.destroy()
            target.destroy()
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
