"""Run one seed: build its source, `clone --follow` it while the workload and the faults
happen, cut over, compare. Every wait is bounded; a run past its bound is a HANG.

Outcomes: PASS; FAIL (pgferry stopped with an error, or the target differs from the
source); HANG (a bound was reached: pgferry did not finish, apply did not start, a source
statement stayed blocked); ERROR (the generator's own fault: SQL the source rejects).
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import psycopg
from psycopg import sql

from pgferry.demo.clusters import LocalCluster
from tests.explorer.faults import (
    NEEDS_APPLY,
    Fault,
    FaultKind,
    generate_faults,
    maybe_crash_at_setup,
)
from tests.explorer.known import DEFAULT_AVOID
from tests.explorer.schema import Schema, generate_schema
from tests.explorer.values import ValueContext
from tests.explorer.workload import Txn, Workload, generate_workload, run_op, run_txn
from tests.helpers.cdc import lsn, sentinel
from tests.helpers.cli import REPO_ROOT, run_pgferry
from tests.helpers.compare import database_differences

PLUGINS = ("test_decoding", "wal2json", "pgoutput")
TICK_TABLE = sql.Identifier("public", "explorer tick")
# pgferry's stop when a table was truncated after the snapshot, before its copy began
# (TRUNCATE is not MVCC-safe): --resume copies it again under a new snapshot.
RESUMABLE_STOP = "was truncated or rewritten on the source after the copy's snapshot"
# --resume of a run killed before it recorded anything.
NOTHING_TO_RESUME = "holds no migration to resume"


def overlaps(seed: int, step: int, faults: list[Fault]) -> bool:
    """Whether transaction `step` stays open over `step + 1` (one in ten; a stream of its
    own, so every seed's schema, workload and faults stay as they were drawn)."""
    if any(f.step in (step, step + 1) for f in faults):
        return False
    return random.Random(seed * 104_729 + step).random() < 0.1


def invalid_indexes(conn: psycopg.Connection) -> set[str]:
    """Qualified names of the invalid indexes of the database."""
    rows = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    return {str(r[0]) for r in rows}


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    HANG = "HANG"
    ERROR = "ERROR"


@dataclass(frozen=True)
class Limits:
    """Bounds, in seconds, of every wait of a seed."""

    seed: float = 600.0  # the whole seed, setup to comparison
    apply_start: float = 180.0  # from a connection fault's step until apply runs
    cutover: float = 240.0  # from stop-cdc until pgferry exits
    statement: float = 60.0  # one workload statement on the source
    pause: float = 0.01  # at most this long between two workload transactions


STOP_CDC_TRIES = 20  # stop-cdc while a fresh start has no sentinel yet: try again


@dataclass(frozen=True)
class Plan:
    """Everything one seed determines, before anything runs."""

    seed: int
    plugin: str
    schema: Schema
    workload: Workload
    faults: list[Fault]
    group_txns: int
    early_workload: bool  # the workload starts before pgferry has its slot
    with_faults: bool
    txns_override: int | None
    avoid: frozenset[str]  # known issues steered around (tests.explorer.known)
    # pgoutput: the source streams transactions past 64kB (its least work memory for
    # decoding) instead of past 64MB, so the workload's larger ones arrive in segments.
    stream_small: bool = False
    apply_jobs: int = 1  # --apply-jobs (parallel apply); not drawn: the caller's

    def replay(self) -> str:
        """The one command that runs this seed again."""
        parts = ["python -m tests.explorer", f"--seed {self.seed}", f"--plugin {self.plugin}"]
        if not self.with_faults:
            parts.append("--no-faults")
        if self.txns_override is not None:
            parts.append(f"--txns {self.txns_override}")
        if self.avoid != DEFAULT_AVOID:
            parts.append(f"--avoid {','.join(sorted(self.avoid)) or 'none'}")
        if self.apply_jobs != 1:
            parts.append(f"--apply-jobs {self.apply_jobs}")
        return " ".join(parts)


def plan_seed(
    seed: int,
    plugin: str,
    *,
    faults: bool = True,
    txns: int | None = None,
    avoid: frozenset[str] = DEFAULT_AVOID,
    apply_jobs: int = 1,
) -> Plan:
    """Draw the schema, the workload and the faults of `seed` (pure: nothing runs)."""
    rng = random.Random(seed)
    schema = generate_schema(
        rng,
        plain_type_names=plugin == "wal2json" and "wal2json-quoted-type" in avoid,
    )
    drawn = rng.randrange(40, 160)
    workload = generate_workload(
        rng, schema, ValueContext(plugin), txns=txns if txns is not None else drawn
    )
    # The faults have their own stream: --no-faults leaves the schema and workload alone.
    fault_rng = random.Random(seed * 1_000_003 + 7)
    drawn_faults = generate_faults(fault_rng, len(workload.txns)) + maybe_crash_at_setup(seed)
    group = fault_rng.choice([1, 1, 4, 32])
    early = fault_rng.random() < 0.15
    # Its own stream too: the plans of earlier seeds stay as they were.
    stream_small = plugin == "pgoutput" and random.Random(seed * 7_919 + 3).random() < 0.7
    return Plan(
        seed,
        plugin,
        schema,
        workload,
        drawn_faults if faults else [],
        group,
        early,
        faults,
        txns,
        avoid,
        stream_small,
        apply_jobs,
    )


@dataclass
class SeedResult:
    seed: int
    plugin: str
    status: Status
    tables: int
    changes: int
    faults: list[str]
    wall: float
    detail: str
    replay: str
    kept: str = ""

    def line(self) -> str:
        faults = ",".join(self.faults) or "-"
        return (
            f"seed {self.seed:>5} {self.plugin:<13} tables={self.tables:<2} "
            f"changes={self.changes:<6} faults={faults:<40} wall={self.wall:6.1f}s "
            f"{self.status}"
        )


@dataclass
class Clusters:
    """Where seeds run: a logical source cluster, a target cluster, a scratch directory."""

    source: LocalCluster
    target: LocalCluster
    scratch: Path


class Outcome(Exception):
    """Ends a seed early with a status and what was seen."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class Ferry:
    """One pgferry command line, started (and restarted with --resume) as its own process
    group, its output appended to a file (a pipe could fill and block it)."""

    def __init__(self, args: list[str], output: Path, root: Path = REPO_ROOT) -> None:
        """`root`: the checkout whose pgferry runs (another one: did a seed fail before?)."""
        self.args, self.output, self.root = args, output, root
        self.proc: subprocess.Popen[bytes] | None = None
        self.env_extra: dict[str, str] = {}
        self.runs = 0

    def start(self, *extra: str, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(self.root) + os.pathsep + full_env.get("PYTHONPATH", "")
        self.env_extra = dict(env or {})
        full_env.update(self.env_extra)
        self.runs += 1
        with self.output.open("ab") as out:
            out.write(f"\n=== run {self.runs}: {' '.join(extra) or '(first)'}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                # faulthandler: SIGABRT prints every thread's stack (see dump_stacks).
                [sys.executable, "-X", "faulthandler", "-m", "pgferry", *self.args, *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=self.root,  # python -m puts the working directory first on sys.path
                start_new_session=True,
            )

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """kill -9 of the whole process group (pgferry and its pg_dump/pg_restore)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=60)

    def resume(self) -> None:
        self.start("--resume")

    def last_run(self) -> list[str]:
        text = self.output.read_text(errors="replace")
        return text.rsplit("\n=== run ", 1)[-1].splitlines()[1:]

    def errors(self) -> str:
        lines = [ln for ln in self.last_run() if " ERROR " in ln or "Error" in ln]
        return "\n".join(lines[-6:]) or "\n".join(self.last_run()[-6:])

    def dump_stacks(self) -> str:
        """Abort a running pgferry so that faulthandler prints its threads' stacks."""
        if self.proc is None or self.proc.poll() is not None:
            return ""
        os.kill(self.proc.pid, signal.SIGABRT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            return "(no stack: pgferry did not abort)"
        lines = self.last_run()
        start = next((i for i, ln in enumerate(lines) if "Fatal Python error" in ln), None)
        return "" if start is None else "\n".join(lines[start:])

    def process_state(self) -> str:
        if self.proc is None or self.proc.poll() is not None:
            return "not running"
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text().split()
            ticks = os.sysconf("SC_CLK_TCK")
            cpu = (int(stat[13]) + int(stat[14])) / ticks
            return f"pid {self.proc.pid} state {stat[2]}, {cpu:.1f} s CPU"
        except (OSError, IndexError, ValueError):
            return f"pid {self.proc.pid}"


@dataclass
class SeedRun:
    clusters: Clusters
    plan: Plan
    limits: Limits = field(default_factory=Limits)
    keep: bool = False
    pgferry_root: Path = REPO_ROOT

    def __post_init__(self) -> None:
        token = secrets.token_hex(2)
        base = f"x{self.plan.seed}_{self.plan.plugin[:3]}_{token}"
        self.src_db, self.tgt_db = f"{base}_src", f"{base}_tgt"
        self.slot, self.origin = f"s_{base}", f"o_{base}"
        self.workdir = self.clusters.scratch / base / "work"
        self.workdir.parent.mkdir(parents=True, exist_ok=True)
        self.ferry = Ferry(self._args(), self.workdir.parent / "pgferry.out", self.pgferry_root)
        self.changes = 0
        self.deadline = time.monotonic() + self.limits.seed
        self.crash_pending = False
        # What happened besides the planned faults: documented stops, deadlocks.
        self.notes: Counter[str] = Counter()
        self.threads: list[threading.Thread] = []  # faults injected from other threads
        self.thread_errors: list[str] = []

    @property
    def source_uri(self) -> str:
        return self.clusters.source.uri(self.src_db)

    @property
    def target_uri(self) -> str:
        return self.clusters.target.uri(self.tgt_db)

    def _args(self) -> list[str]:
        return [
            "clone",
            "--follow",
            "--plugin",
            self.plan.plugin,
            "--source",
            self.clusters.source.uri(self.src_db),
            "--target",
            self.clusters.target.uri(self.tgt_db),
            "--dir",
            str(self.workdir),
            "--slot-name",
            self.slot,
            "--origin",
            self.origin,
            "--table-jobs",
            "2",
            "--index-jobs",
            "2",
            "--group-txns",
            str(self.plan.group_txns),
            *(["--apply-jobs", str(self.plan.apply_jobs)] if self.plan.apply_jobs != 1 else []),
            "--no-progress",
        ]

    def left(self, cap: float) -> float:
        return max(0.0, min(cap, self.deadline - time.monotonic()))

    # -- the run --------------------------------------------------------------------------

    def run(self) -> SeedResult:
        started = time.monotonic()
        status, detail = Status.PASS, ""
        try:
            self.clusters.source.create_database(self.src_db)
            self.clusters.target.create_database(self.tgt_db)
            if self.plan.stream_small:
                self.notes["streaming-past-64kB"] += 1
                with self.clusters.source.connect() as conn:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} SET logical_decoding_work_mem = '64kB'").format(
                            sql.Identifier(self.src_db)
                        )
                    )
            self._build_source()
            self._follow()
            problems = self._differences()
            if problems:
                raise Outcome(Status.FAIL, "target differs from source:\n" + "\n".join(problems))
        except Outcome as outcome:
            status, detail = outcome.status, outcome.detail
            if status == Status.HANG:
                detail += "\n" + self._diagnose_hang()
        finally:
            if self.ferry.poll() is None:
                self.ferry.kill()
        kept = ""
        if self.keep and status != Status.PASS:
            kept = (
                f"kept: source {self.source_uri}, target {self.target_uri}, "
                f"work dir {self.workdir}, output {self.ferry.output}"
            )
        else:
            self._clean_up()
        return SeedResult(
            self.plan.seed,
            self.plan.plugin,
            status,
            len(self.plan.schema.tables),
            self.changes,
            [f.describe() for f in self.plan.faults]
            + [f"{note}×{n}" for note, n in sorted(self.notes.items()) if n],
            time.monotonic() - started,
            detail,
            self.plan.replay(),
            kept,
        )

    def _build_source(self) -> None:
        """The generated schema and initial rows; any error here is the generator's."""
        try:
            with self._source_conn() as conn:
                for statement in self.plan.schema.ddl:
                    conn.execute(statement)
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE {} (id int PRIMARY KEY, n int); INSERT INTO {} VALUES (1, 0)"
                    ).format(TICK_TABLE, TICK_TABLE)
                )
                for txn in self.plan.workload.initial:
                    run_txn(conn, txn)
                for statement in self.plan.schema.after_load:
                    conn.execute(statement)
                conn.execute("ANALYZE")
        except psycopg.Error as exc:
            raise Outcome(
                Status.ERROR, f"generator: the source rejected the schema: {exc}"
            ) from exc

    def _source_conn(self) -> psycopg.Connection:
        return psycopg.connect(
            self.source_uri,
            autocommit=True,
            connect_timeout=10,
            options=f"-c statement_timeout={int(self.limits.statement * 1000)}",
        )

    def _follow(self) -> None:
        crash = [f for f in self.plan.faults if f.kind == FaultKind.CRASH_AFTER_COMMITS]
        env = {}
        if crash:
            env["PGFERRY_TEST_CRASH_AFTER_COMMITS"] = str(int(crash[0].arg))
            self.crash_pending = True
        if any(f.kind == FaultKind.CRASH_AT_SETUP for f in self.plan.faults):
            env["PGFERRY_TEST_CRASH_AT"] = "cdc-setup"
            self.crash_pending = True
        self.ferry.start(env=env)
        if not self.plan.early_workload:
            self._wait_sentinel()  # else the workload may all land in the copy, not in CDC
        conn = self._source_conn()
        try:
            txns = self.plan.workload.txns
            held: Txn | None = None  # a transaction left open over the next one
            for step, txn in enumerate(txns):
                for fault in self.plan.faults:
                    if fault.step == step and fault.kind not in (
                        FaultKind.CRASH_AFTER_COMMITS,
                        FaultKind.CRASH_AT_SETUP,
                        FaultKind.KILL_AT_CUTOVER,
                    ):
                        conn = self._inject(fault, conn)
                if held is not None:
                    self.changes += self._interleaved(conn, held, txn)
                    held = None
                elif step + 1 < len(txns) and overlaps(self.plan.seed, step, self.plan.faults):
                    held = txn
                    continue
                else:
                    self.changes += self._run_workload_txn(conn, txn)
                self._check_running("during the workload")
                if self.left(1) <= 0:
                    raise Outcome(Status.HANG, "the seed's time ran out during the workload")
                time.sleep(random.Random(step).uniform(0, self.limits.pause))
        finally:
            conn.close()
        self._cutover()

    def _interleaved(self, conn: psycopg.Connection, first: Txn, second: Txn) -> int:
        """`first` begins on a second connection, `second` runs whole on `conn`, then
        `first` commits: overlapping transactions, committed out of their start order."""
        with self._source_conn() as other:
            other.execute("BEGIN")
            try:
                changed = sum(run_op(other, op) for op in first.ops)
            except (psycopg.errors.IntegrityError, psycopg.errors.DeadlockDetected):
                other.execute("ROLLBACK")
                return self._run_workload_txn(conn, second)
            except psycopg.Error as exc:
                raise Outcome(
                    Status.ERROR, f"generator: the source rejected {first.labels()}: {exc}"
                ) from exc
            # `second` may want a row `first` holds: it gives up instead of waiting for us.
            conn.execute("SET lock_timeout = '2s'")
            try:
                changed += self._run_workload_txn(conn, second)
            finally:
                conn.execute("SET lock_timeout = 0")
            other.execute("COMMIT")
            self.notes["overlapping-txns"] += 1
            return changed

    def _run_workload_txn(self, conn: psycopg.Connection, txn: Txn) -> int:
        try:
            return run_txn(conn, txn)
        except psycopg.errors.DeadlockDetected:
            # A TRUNCATE against the copy's locks (taken one table at a time in its
            # snapshot transaction): the source's transaction is the one aborted, as an
            # application's would be. Counted, not the generator's fault.
            self.notes["source-deadlock"] += 1
            return 0
        except psycopg.errors.LockNotAvailable:
            self.notes["lock-timeout-rollback"] += 1  # see _interleaved
            return 0
        except psycopg.errors.QueryCanceled as exc:
            raise Outcome(
                Status.HANG,
                f"a source statement stayed blocked over {self.limits.statement:.0f} s "
                f"(pgferry holding a lock?): {exc}",
            ) from exc
        except psycopg.Error as exc:
            raise Outcome(
                Status.ERROR, f"generator: the source rejected {txn.labels()}: {exc}"
            ) from exc

    def _check_running(self, when: str) -> None:
        rc = self.ferry.poll()
        if rc is None or self._resumed(rc):
            return
        raise Outcome(Status.FAIL, f"pgferry exited with code {rc} {when}:\n{self.ferry.errors()}")

    def _resumed(self, rc: int) -> bool:
        """Resume after an exit the seed asked for; False for any other exit."""
        if rc == -signal.SIGKILL and self.crash_pending:
            self.crash_pending = False  # PGFERRY_TEST_CRASH_AFTER_COMMITS fired
            self.ferry.resume()
            return True
        output = self.ferry.last_run()
        if (
            rc == 1
            and self.notes["truncated-in-copy-resume"] < 3
            and any(RESUMABLE_STOP in line for line in output)
        ):
            # A table truncated during its copy: pgferry stops and says to --resume.
            self.notes["truncated-in-copy-resume"] += 1
            self.ferry.resume()
            return True
        if (
            rc == 3
            and not self.notes["fresh-start"]
            and any(NOTHING_TO_RESUME in line for line in output)
        ):
            # Killed before it recorded anything: as its message says, start anew.
            self.notes["fresh-start"] += 1
            self.ferry.start()
            return True
        return False

    # -- faults ---------------------------------------------------------------------------

    def _inject(self, fault: Fault, conn: psycopg.Connection) -> psycopg.Connection:
        if fault.kind in NEEDS_APPLY:
            self._wait_applying()
        if fault.kind == FaultKind.KILL:
            self._check_running("before a kill")
            self.ferry.kill()
            self.crash_pending = False
            self.ferry.resume()
        elif fault.kind == FaultKind.WALSENDER:
            # Later, from another thread: the walsender dies while the workload's next
            # transactions stream, not while everything is quiet.
            self._later(
                fault.arg * 0.3,
                self.clusters.source,
                "postgres",
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                " WHERE slot_name = %s AND active_pid IS NOT NULL",
                self.slot,
            )
        elif fault.kind == FaultKind.APPLY_SESSION:
            self._later(
                fault.arg * 0.3,
                self.clusters.target,
                "postgres",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name LIKE 'pgferry%%'",
                self.tgt_db,
            )
        elif fault.kind == FaultKind.SOURCE_RESTART:
            conn.close()
            self.clusters.source.stop("fast")
            self.clusters.source.start()
            return self._source_conn()
        elif fault.kind == FaultKind.TARGET_RESTART:
            self.clusters.target.stop("immediate" if fault.arg < 0.5 else "fast")
            self.clusters.target.start()
        return conn

    def _later(self, delay: float, cluster: LocalCluster, db: str, query: str, param: str) -> None:
        """Run `query` on `cluster` after `delay` seconds, in a thread of its own."""

        def run() -> None:
            time.sleep(delay)
            try:
                with cluster.connect(db) as admin:
                    admin.execute(query, (param,))
            except psycopg.Error as exc:
                self.thread_errors.append(f"fault query failed: {exc}")

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _wait_applying(self) -> None:
        """Until apply has applied a change made now (the copy is over)."""
        # The change must come after the slot: pgferry's origin starts at the slot's
        # position, past a change made earlier (the workload may start before the slot).
        self._wait_sentinel()
        with self._source_conn() as conn, conn.transaction():
            conn.execute(sql.SQL("UPDATE {} SET n = n + 1").format(TICK_TABLE))
            # Before the commit record: the applied position passes it once this commits.
            row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
            mark = row[0] if row else "0/0"
        deadline = time.monotonic() + self.left(self.limits.apply_start)
        while time.monotonic() < deadline:
            if self._applied() >= lsn(mark):
                return
            self._check_running("waiting for apply to start")
            time.sleep(0.1)
        raise Outcome(
            Status.HANG,
            f"apply did not reach {mark} within {self.limits.apply_start:.0f} s "
            f"(sentinel {sentinel(self.workdir)}; origin {self._origin_progress()}; "
            f"{self.ferry.process_state()})",
        )

    def _applied(self) -> int:
        """The applied position: the sentinel's, or the target origin's (the truth) when
        the sentinel's staleness is avoided."""
        if "sentinel-stale-when-idle" in self.plan.avoid:
            return lsn(self._origin_progress())
        return lsn(sentinel(self.workdir).get("replay_lsn"))

    def _origin_progress(self) -> str | None:
        try:
            with self.clusters.target.connect(self.tgt_db) as conn:
                row = conn.execute(
                    "SELECT pg_replication_origin_progress(roname, false)::text"
                    " FROM pg_replication_origin WHERE roname = %s",
                    (self.origin,),
                ).fetchone()
        except psycopg.Error:
            return None  # not created yet, or the target is restarting
        return row[0] if row else None

    def _wait_sentinel(self) -> None:
        """Until pgferry has recorded its start position (stop-cdc needs the sentinel)."""
        deadline = time.monotonic() + self.left(self.limits.apply_start)
        while not sentinel(self.workdir).get("startpos"):
            self._check_running("before recording its start position")
            if time.monotonic() >= deadline:
                raise Outcome(
                    Status.HANG,
                    f"no start position in the sentinel after {self.limits.apply_start:.0f} s",
                )
            time.sleep(0.1)

    # -- the end --------------------------------------------------------------------------

    def _cutover(self) -> None:
        for thread in self.threads:
            thread.join(timeout=30)
        if self.thread_errors:
            raise Outcome(Status.ERROR, "\n".join(self.thread_errors))
        self._check_running("before the cutover")
        for _ in range(STOP_CDC_TRIES):
            self._wait_sentinel()
            try:
                result = run_pgferry(
                    "stop-cdc",
                    "--yes",
                    "--dir",
                    str(self.workdir),
                    "--source",
                    self.source_uri,
                    check=False,
                    timeout=max(5.0, self.left(60)),
                )
            except subprocess.TimeoutExpired as exc:
                raise Outcome(Status.HANG, f"stop-cdc did not return: {exc}") from exc
            # A start that stopped before writing to the target begins afresh (a new
            # slot, a new sentinel): like a user, try again once it is there.
            if result.returncode == 0 or "has no CDC sentinel" not in result.stderr:
                break
            time.sleep(0.5)
        if result.returncode != 0:
            raise Outcome(Status.FAIL, f"stop-cdc failed: {result.stderr.strip()[-2000:]}")
        for fault in self.plan.faults:
            if fault.kind == FaultKind.KILL_AT_CUTOVER:
                time.sleep(fault.arg)
                if self.ferry.poll() is None:
                    self.ferry.kill()
                    self.crash_pending = False
                    self.ferry.resume()
        deadline = time.monotonic() + self.left(self.limits.cutover)
        while True:
            rc = self.ferry.wait(min(5.0, deadline - time.monotonic()))
            if rc is None and time.monotonic() >= deadline:
                state = self.ferry.process_state()
                raise Outcome(
                    Status.HANG,
                    f"pgferry did not reach the end position within "
                    f"{self.limits.cutover:.0f} s ({state}; sentinel {sentinel(self.workdir)})\n"
                    + "\n".join(self.ferry.last_run()[-5:]),
                )
            if rc is None:
                continue
            if rc != 0 and self._resumed(rc):
                continue
            if rc != 0:
                detail = f"pgferry exited with code {rc} at the cutover:\n{self.ferry.errors()}"
                # Its own verify may be what failed: say whether the data agrees.
                problems = self._differences()
                detail += "\nthe explorer's own comparison: " + (
                    "\n".join(problems) if problems else "source and target are equal"
                )
                raise Outcome(Status.FAIL, detail)
            return

    def _diagnose_hang(self) -> str:
        """What pgferry's sessions wait on, on both sides, and its threads' stacks."""
        lines = []
        for side, cluster, db in (
            ("source", self.clusters.source, self.src_db),
            ("target", self.clusters.target, self.tgt_db),
        ):
            try:
                with cluster.connect() as conn:
                    rows = conn.execute(
                        "SELECT pid, application_name, backend_type, state,"
                        " wait_event_type || ':' || wait_event, now() - state_change,"
                        " left(query, 160) FROM pg_stat_activity"
                        " WHERE (datname = %s OR backend_type = 'walsender')"
                        " AND pid <> pg_backend_pid()",
                        (db,),
                    ).fetchall()
                lines += [f"{side} session: {row}" for row in rows]
            except psycopg.Error as exc:
                lines.append(f"{side}: cannot list sessions: {exc}")
        stacks = self.ferry.dump_stacks()
        if stacks:
            lines.append("pgferry's threads (SIGABRT, faulthandler):\n" + stacks)
        return "\n".join(lines)

    def _differences(self) -> list[str]:
        """tests.helpers.compare's comparison, plus index validity, which a schema dump
        does not show (a partitioned index left invalid prints the same)."""
        problems = database_differences(self.source_uri, self.target_uri)
        with (
            psycopg.connect(self.source_uri, autocommit=True) as src,
            psycopg.connect(self.target_uri, autocommit=True) as tgt,
        ):
            source, target = invalid_indexes(src), invalid_indexes(tgt)
        if source != target:
            problems.append(
                f"invalid indexes differ: source {sorted(source)}, target {sorted(target)}"
            )
        return problems

    def _clean_up(self) -> None:
        try:
            run_pgferry(
                "cleanup",
                "--source",
                self.source_uri,
                "--target",
                self.target_uri,
                "--dir",
                str(self.workdir),
                check=False,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            pass
        for cluster, db in (
            (self.clusters.source, self.src_db),
            (self.clusters.target, self.tgt_db),
        ):
            try:
                cluster.drop_database(db)
            except psycopg.Error:
                pass
        # The slot is cluster-wide: gone with the database, or dropped here if it was left.
        try:
            with self.clusters.source.connect() as conn:
                conn.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE slot_name = %s AND NOT active",
                    (self.slot,),
                )
        except psycopg.Error:
            pass


def run_seed(
    clusters: Clusters,
    seed: int,
    plugin: str,
    *,
    faults: bool = True,
    txns: int | None = None,
    limits: Limits | None = None,
    keep: bool = False,
    avoid: frozenset[str] = DEFAULT_AVOID,
    pgferry_root: Path = REPO_ROOT,
    apply_jobs: int = 1,
) -> SeedResult:
    """Plan and run one seed; never raises for what pgferry or the generator did."""
    plan = plan_seed(seed, plugin, faults=faults, txns=txns, avoid=avoid, apply_jobs=apply_jobs)
    return SeedRun(clusters, plan, limits or Limits(), keep, pgferry_root).run()
