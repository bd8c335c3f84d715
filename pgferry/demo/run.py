"""`pgferry demo`: clone a sample shop database between two throwaway local clusters, then
prove the copy is identical, saying what happens at every step.

Everything lives in one temporary directory (both clusters and the clone's work directory);
it is removed at the end, also after an error or Ctrl-C, unless `--keep` asks to leave the
clusters running for a look around.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table

from pgferry.cdc.engine import set_endpos_current
from pgferry.checks.compare import DataComparison, SchemaComparison, compare_data, compare_schema
from pgferry.clone.options import CloneOptions
from pgferry.clone.run import run_clone
from pgferry.demo.clusters import LocalCluster, find_server_bindir, server_major
from pgferry.demo.traffic import ShopTraffic
from pgferry.errors import (
    EnvironmentProblem,
    ExitCode,
    InputError,
    Interrupted,
    StepFailed,
)
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.lsn import lsn_or_none
from pgferry.state.store import StateStore
from pgferry.text import human_bytes, human_duration
from pgferry.ui.compare import render_data, render_verdict
from pgferry.ui.console import make_console

DATABASE = "shop"
BIG_TABLE = "shop.order_items"
SPLIT_PARTS = 4
JOBS = 2
STEPS = 6

_SUMMARY_SQL = """
WITH rel AS (
    SELECT c.* FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname IN ('shop', 'billing', 'audit'))
SELECT
  (SELECT count(*) FROM pg_namespace WHERE nspname IN ('shop', 'billing', 'audit')) AS schemas,
  (SELECT count(*) FROM rel WHERE relkind = 'r') AS tables,
  (SELECT count(*) FROM rel WHERE relkind = 'r' AND relispartition) AS partitions,
  (SELECT sum(reltuples)::int8 FROM rel WHERE relkind = 'r') AS rows,
  (SELECT count(*) FROM rel WHERE relkind IN ('v', 'm')) AS views,
  (SELECT count(*) FROM rel WHERE relkind = 'i') AS indexes,
  (SELECT count(*) FROM rel WHERE relkind = 'S') AS sequences,
  (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname IN ('shop', 'billing', 'audit')) AS functions,
  (SELECT count(*) FROM pg_trigger t JOIN rel ON rel.oid = t.tgrelid
    WHERE NOT t.tgisinternal) AS triggers,
  (SELECT count(*) FROM pg_largeobject_metadata) AS large_objects,
  pg_database_size(current_database()) AS database_bytes,
  pg_table_size(%s::regclass) AS big_table_bytes
"""


def run_demo(keep: bool, scale: int) -> int:
    """Run the demo; 0 when the target ended identical to the source, 1 otherwise."""
    if scale < 1:
        raise InputError(f"--scale must be 1 or more, not {scale}", fix="use --scale 1 or more")
    return Demo(make_console(), scale=scale, keep=keep).run()


class Demo:
    """The demo's steps, sharing the console, the temp dir and the clusters."""

    def __init__(self, console: Console, *, scale: int, keep: bool) -> None:
        self.console = console
        self.scale = scale
        self.keep = keep
        self.basedir: Path | None = None
        self.clusters: dict[str, LocalCluster] = {}
        self.step_no = 0
        self.t0 = time.monotonic()
        self.interrupted = False

    def run(self) -> int:
        self.console.print(
            "[bold]pgferry demo[/]: copy a live PostgreSQL database to another server and "
            "prove the copy is identical, on two throwaway clusters.",
            soft_wrap=True,
        )
        finished = False
        try:
            with self._interruptible():
                bindir = self.find_binaries()
                self.start_clusters(bindir)
                big_table_bytes = self.load_sample()
                self.clone(big_table_bytes)
                same = self.compare()
                finished = True
        except (Exception, KeyboardInterrupt) as exc:
            # Child processes get the terminal's Ctrl-C too and fail in their own words.
            if self.interrupted or isinstance(exc, (KeyboardInterrupt, Interrupted)):
                raise Interrupted("demo interrupted") from exc
            raise
        finally:
            if finished and self.keep:
                self.print_keep_hints()
            else:
                self.cleanup()
        self.console.print(
            f"\n[bold]Demo finished in {human_duration(time.monotonic() - self.t0)}[/]: "
            + (
                "[bold green]the target is an exact copy of the source.[/]"
                if same
                else "[bold red]the target differs from the source (see above).[/]"
            ),
            soft_wrap=True,
        )
        return int(ExitCode.OK if same else ExitCode.FAILED)

    @contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM stop the demo, which then cleans up (the clone installs its own
        handlers while it runs)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(_signum: int, _frame: Any) -> None:
            self.interrupted = True
            raise KeyboardInterrupt

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)

    # -- the steps ------------------------------------------------------------------------
    def step(self, title: str, *, last: bool = False) -> None:
        self.step_no = STEPS if last else self.step_no + 1
        self.console.print()
        self.console.rule(f"[bold cyan]Step {self.step_no}/{STEPS}: {title}", align="left")

    def say(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)

    def find_binaries(self) -> Path:
        self.step("find PostgreSQL")
        bindir = find_server_bindir()
        self.say(f"Server binaries: PostgreSQL {server_major(bindir)} in {bindir}")
        return bindir

    def start_clusters(self, bindir: Path) -> None:
        self.step("start two throwaway PostgreSQL clusters")
        self.basedir = Path(tempfile.mkdtemp(prefix="pgferry-demo-"))
        # The servers may run as the 'postgres' user (when we are root): let it in.
        os.chmod(self.basedir, 0o755)
        self.say(f"Everything goes in {self.basedir}")
        t0 = time.monotonic()
        with _readable_files(), ThreadPoolExecutor(2) as pool:
            futures = {
                name: pool.submit(
                    LocalCluster.create, name, self.basedir, logical=logical, password_roles=False
                )
                for name, logical in (("source", True), ("target", False))
            }
            errors: list[BaseException] = []
            for name, future in futures.items():
                while not future.done() or name not in self.clusters:
                    try:
                        self.clusters[name] = future.result()
                    except KeyboardInterrupt as exc:
                        # Keep waiting: a cluster we do not know of could not be removed.
                        errors.append(exc)
                    except Exception as exc:
                        errors.append(exc)
                        break
            if errors:
                raise errors[0]
        for name, cluster in self.clusters.items():
            wal = "wal_level=logical, ready for CDC" if name == "source" else "wal_level=replica"
            self.say(
                f"  {name:<7} listening on 127.0.0.1:{cluster.port}  ({wal})  data: "
                f"{cluster.datadir}"
            )
        self.say(f"Both started in {human_duration(time.monotonic() - t0)}.")

    def load_sample(self) -> int:
        self.step(f"create the sample database '{DATABASE}' on the source")
        source, target = self.clusters["source"], self.clusters["target"]
        source.create_database(DATABASE)
        target.create_database(DATABASE)
        self.say(
            f"Created an empty database '{DATABASE}' on both clusters; loading the sample "
            f"into the source (scale {self.scale})..."
        )
        t0 = time.monotonic()
        _run_psql(source, DATABASE, self.scale)
        with source.connect(DATABASE) as conn:
            f = conn.cursor(row_factory=dict_row).execute(_SUMMARY_SQL, (BIG_TABLE,)).fetchone()
        assert f is not None
        self.say(
            f"Loaded in {human_duration(time.monotonic() - t0)} "
            f"({human_bytes(f['database_bytes'])} on disk):"
        )
        facts = Table(show_header=False, box=None, padding=(0, 2))
        facts.add_column(justify="right")
        facts.add_column()
        for count, what in (
            (f["schemas"], "schemas (shop, billing, audit)"),
            (
                f["tables"],
                f"tables ({f['partitions']} are partitions of billing.payments: one per month "
                "and a default)",
            ),
            (f["rows"], "rows"),
            (f["views"], "views and materialized views"),
            (f["indexes"], "indexes"),
            (f["functions"], "functions and procedures"),
            (f["triggers"], "triggers"),
            (f["sequences"], "sequences (identity, serial and standalone)"),
            (f["large_objects"], "large objects (invoice PDFs)"),
        ):
            facts.add_row(f"{int(count):,}", what)
        self.console.print(facts)
        self.say(f"The biggest table, {BIG_TABLE}, takes {human_bytes(f['big_table_bytes'])}.")
        return int(f["big_table_bytes"])

    def clone(self, big_table_bytes: int) -> None:
        self.step("migrate live: copy while the shop takes orders, then cut over")
        source, target = self.clusters["source"], self.clusters["target"]
        assert self.basedir is not None
        split_at = split_size(big_table_bytes, SPLIT_PARTS)
        options = CloneOptions(
            source=ConnInfo.parse(source.uri(DATABASE), "source"),
            target=ConnInfo.parse(target.uri(DATABASE), "target"),
            dir=self.basedir / "work",
            table_jobs=JOBS,
            index_jobs=JOBS,
            split_tables_larger_than=split_at,
            progress=True,
            follow=True,
        )
        self.say(
            "The shop keeps taking orders during the whole migration. pgferry creates a "
            "logical replication slot, copies every table on the slot's snapshot "
            f"({JOBS} workers, biggest tables first; tables larger than "
            f"{_size_flag(split_at)} like {BIG_TABLE} in parts at the same time; indexes as "
            "soon as a table is in), keeps the changes made meanwhile on local disk, then "
            "replays them until the cutover. The same as running:"
        )
        self.say(
            f"  pgferry clone --follow --source {source.uri(DATABASE)} --target "
            f"{target.uri(DATABASE)} --dir {options.dir} --table-jobs {JOBS} --index-jobs "
            f"{JOBS} --split-tables-larger-than {_size_flag(split_at)}"
        )
        self.say(
            "  ... and, once it has caught up: pgferry stop-cdc --dir "
            f"{options.dir} --source {source.uri(DATABASE)}"
        )
        self.console.print()
        traffic = ShopTraffic(source.uri(DATABASE))
        traffic.start()
        cutover = _Cutover(options, traffic, self.say)
        cutover.start()
        try:
            summary = run_clone(options)
        finally:
            cutover.stop_event.set()
            traffic.stop_event.set()
            _close_file_log()
        self.say(
            f"Cut over: {traffic.transactions:,} shop transactions were made on the source "
            "during the migration; every one committed before the end position is on the "
            "target, and the sequences are synced."
        )
        split = [
            f"{t['schema']}.{t['name']} in {t['parts']} parts"
            for t in summary.get("tables", [])
            if t.get("parts", 1) > 1
        ]
        if split:
            self.say("Copied in parts: " + ", ".join(split) + ".")
        self.say(f"The clone's log, state store and summary.json are in {options.dir}.")

    def compare(self) -> bool:
        self.step("prove the target is identical to the source")
        self.say(
            "Comparing every table's row count and content hash, every sequence, every large "
            "object, and the schema object by object (pgferry compare data / schema)..."
        )
        source = ConnInfo.parse(self.clusters["source"].uri(DATABASE), "source")
        target = ConnInfo.parse(self.clusters["target"].uri(DATABASE), "target")
        schema = compare_schema(source, target)
        data = compare_data(source, target, jobs=JOBS)
        render_data(self.console, data)
        self.console.print()
        self.console.print(verdict_table(schema, data))
        render_verdict(self.console, schema.problems() + data.problems(), "schema and data")
        return schema.ok and data.ok

    def cleanup(self) -> None:
        if self.basedir is None:
            return  # nothing was started
        self.step("clean up", last=True)
        with _ctrl_c_ignored():
            for name, cluster in self.clusters.items():
                cluster.destroy()
                self.say(f"Stopped and removed the {name} cluster.")
            shutil.rmtree(self.basedir, ignore_errors=True)
            self.say(f"Removed {self.basedir}")

    def print_keep_hints(self) -> None:
        self.step("the clusters keep running (--keep)", last=True)
        assert self.basedir is not None
        for name, cluster in self.clusters.items():
            self.say(f"Connect to the {name}:  {cluster.psql_hint(DATABASE)}")
        self.say("When you are done, stop them and remove everything:")
        for cluster in self.clusters.values():
            pg_ctl = cluster.bindir / "pg_ctl"
            self.say("  " + _as_server_user(f"{pg_ctl} -D {cluster.datadir} stop"))
        self.say(f"  rm -rf {self.basedir}")


# -- helpers ------------------------------------------------------------------------------


class _Cutover(threading.Thread):
    """What an operator does during a live migration: watch the lag, stop the writes
    once apply has caught up, set the end position (pgferry stop-cdc)."""

    def __init__(self, options: CloneOptions, traffic: ShopTraffic, say: Any) -> None:
        super().__init__(name="demo-cutover", daemon=True)
        self.options, self.traffic, self.say = options, traffic, say
        self.stop_event = threading.Event()

    def run(self) -> None:

        state = self.options.dir / StateStore.FILENAME
        store: StateStore | None = None
        applying_since: float | None = None
        history: list[tuple[float, int]] = []
        while not self.stop_event.wait(0.5):
            if store is None:
                if not state.exists():
                    continue
                store = StateStore.open_dir(self.options.dir, readonly=True)
            row = store.sentinel()
            if row is None or not row.apply:
                continue
            now = time.monotonic()
            applying_since = applying_since or now
            applied = lsn_or_none(row.replay_lsn) or 0
            flushed = lsn_or_none(row.flush_lsn) or 0
            history.append((now, flushed))
            while len(history) > 1 and now - history[0][0] > 1.5:
                history.pop(0)
            # Caught up: apply holds what had arrived a second ago, while writes go on.
            # Let it run alongside the traffic a little, then cut over.
            caught_up = applied >= history[0][1]
            if now - applying_since > 3 and (caught_up or now - applying_since > 20):
                count = self.traffic.finish()
                self.say(
                    f"Caught up while the shop was busy ({count:,} transactions so far): "
                    "stopping the writes and cutting over."
                )
                writer = StateStore.open_dir(self.options.dir)
                try:
                    set_endpos_current(self.options.source, writer)
                finally:
                    writer.close()
                break
        if store is not None:
            store.close()


def split_size(table_bytes: int, parts: int) -> int:
    """A --split-tables-larger-than value that cuts a table of `table_bytes` into `parts`."""
    unit = 1024 * 1024 if table_bytes >= 24 * 1024 * 1024 else 64 * 1024
    return max(unit, math.ceil(table_bytes / parts / unit) * unit)


def _size_flag(n: int) -> str:
    mb = 1024 * 1024
    return f"{n // mb}MB" if n % mb == 0 else f"{n // 1024}kB"


def verdict_table(schema: SchemaComparison, data: DataComparison) -> Table:
    """What was compared, how much of it on each side, and whether it matches."""
    table = Table(title="Verdict", title_justify="left")
    table.add_column("Compared")
    table.add_column("Source", justify="right")
    table.add_column("Target", justify="right")
    table.add_column("Result")

    def result(ok: bool) -> str:
        return "[green]same[/]" if ok else "[bold red]DIFFERENT[/]"

    for k in schema.kinds:
        table.add_row(
            f"schema: {k.kind}", f"{k.source_count:,}", f"{k.target_count:,}", result(k.ok)
        )
    tables_ok = all(t.ok for t in data.tables)
    table.add_row(
        "table rows",
        f"{sum(t.source_rows or 0 for t in data.tables):,}",
        f"{sum(t.target_rows or 0 for t in data.tables):,}",
        result(tables_ok),
    )
    table.add_row(
        "table contents (hash)",
        f"{sum(t.source_hash is not None for t in data.tables)} tables",
        f"{sum(t.target_hash is not None for t in data.tables)} tables",
        result(tables_ok),
    )
    table.add_row(
        "sequence values",
        f"{len(data.sequences)}",
        f"{sum(s.target_last_value is not None for s in data.sequences)}",
        result(all(s.ok for s in data.sequences)),
    )
    table.add_row(
        "large objects",
        f"{data.large_objects.source_count}",
        f"{data.large_objects.target_count}",
        result(data.large_objects_ok),
    )
    return table


def _run_psql(cluster: LocalCluster, dbname: str, scale: int) -> None:
    """Load sample.sql with psql, stopping at the first error."""
    psql = cluster.bindir / "psql"
    if not os.access(psql, os.X_OK):
        found = shutil.which("psql")
        if found is None:
            raise EnvironmentProblem(
                "psql not found (needed to load the demo's sample database)",
                fix="install the PostgreSQL client: sudo apt-get install postgresql-client",
            )
        psql = Path(found)
    script = resources.files("pgferry.demo").joinpath("sample.sql")
    with resources.as_file(script) as path:
        args = [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"scale={scale}"]
        args += ["-f", str(path), "-d", cluster.uri(dbname)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        # In its own session: Ctrl-C reaches us, and we stop psql (subprocess.run kills it).
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    if result.returncode != 0:
        raise StepFailed(
            f"loading the sample database failed: {result.stderr.strip() or result.stdout}"
        )


def _as_server_user(command: str) -> str:
    """`command` as it must be typed when the servers run as the 'postgres' user."""
    if os.geteuid() != 0:
        return command
    if shutil.which("sudo"):
        return f"sudo -u postgres {command}"
    return f"su postgres -s /bin/sh -c '{command}'"


def _close_file_log() -> None:
    """The clone logs to a file in its work directory, which the demo removes."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == "file":
            root.removeHandler(handler)
            handler.close()


@contextmanager
def _readable_files() -> Iterator[None]:
    """Files we write into a cluster (its settings) must be readable by the server's user.

    The CLI makes everything private (umask 077); as root, the server runs as 'postgres'
    and could not read a root-owned 0600 settings file.
    """
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """A second Ctrl-C must not leave servers running behind a half-done clean-up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
