"""No password in the argv of any process pgferry runs, in its output, logs, or DIR."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database
from tests.integration.test_bad_input import PASSWORD, ROLE, _ensure_password_role

if TYPE_CHECKING:
    from tests.conftest import DbPair


class ArgvWatcher(threading.Thread):
    """Samples every process's command line while a command runs."""

    def __init__(self, needle: str) -> None:
        super().__init__(daemon=True)
        self.needle = needle.encode()
        self.stop = threading.Event()
        self.seen: dict[int, bytes] = {}
        self.samples = 0

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit() or int(entry.name) == me:
                    continue
                try:
                    cmdline = Path(entry.path, "cmdline").read_bytes()
                except OSError:
                    continue
                if b"pgferry" in cmdline or b"pg_dump" in cmdline or b"pg_restore" in cmdline:
                    self.seen[int(entry.name)] = cmdline
                    self.samples += 1
            time.sleep(0.005)


def _files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            hits.append(str(path))
    return hits


def test_no_password_anywhere(dbpair: DbPair) -> None:
    p = dbpair
    for cluster in (p.source, p.target):
        _ensure_password_role(cluster)
    with p.src_conn() as conn:
        conn.execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);"
            "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;"
            "SELECT lo_from_bytea(0, 'secret-free blob');"
        )
    source = p.source.uri(p.src_db, user=ROLE, password=PASSWORD)
    target = p.target.uri(p.tgt_db, user=ROLE, password=PASSWORD)
    watcher = ArgvWatcher(PASSWORD)
    watcher.start()
    try:
        # One side through the environment, the other on the command line.
        result = run_pgferry(
            "clone",
            "--target",
            target,
            "--dir",
            str(p.workdir),
            "--debug",
            env={"PGCOPYDB_SOURCE_PGURI": source},
        )
    finally:
        watcher.stop.set()
        watcher.join()
    assert_same_database(p.source_uri, p.target_uri)
    children = [c for c in watcher.seen.values() if b"pg_dump" in c or b"pg_restore" in c]
    assert children, "pg_dump/pg_restore were never observed"
    quoted = PASSWORD.replace("@", "%40").replace(":", "%3A").replace("/", "%2F").encode()
    # pgferry's own argv held the URI for the instant before it re-executed itself;
    # every process it started, and pgferry once running, never showed it.
    leaks = [c for c in children if PASSWORD.encode() in c or quoted in c]
    assert not leaks, leaks
    assert PASSWORD not in result.stdout + result.stderr
    assert quoted.decode() not in result.stdout + result.stderr
    assert "hid it from ps" in result.stderr
    assert not _files_containing(p.workdir, PASSWORD.encode())
    assert not _files_containing(p.workdir, quoted)
    mode = p.workdir.stat().st_mode & 0o777
    assert mode == 0o700
    for path in p.workdir.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path


# -- the acceptance run: every command, every way of giving a password, ps all along ------

STARTUP = 0.2  # seconds: a process younger than this may still show its own argv


class PsSampler(threading.Thread):
    """Samples every process's command line every 0.1 s, as `ps` would, and keeps the
    hits on any of `needles`, with the age of the process when it was seen."""

    def __init__(self, needles: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.needles = needles
        self.stop = threading.Event()
        self.hits: list[tuple[float, bytes]] = []
        self.samples = 0
        self.tick = os.sysconf("SC_CLK_TCK")

    def _age(self, pid: str) -> float:
        stat = Path("/proc", pid, "stat").read_bytes()
        started = int(stat[stat.rindex(b")") + 2 :].split()[19]) / self.tick
        return float(Path("/proc/uptime").read_text().split()[0]) - started

    def run(self) -> None:
        me = str(os.getpid())
        while not self.stop.is_set():
            self.samples += 1
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit() or entry.name == me:
                    continue
                try:
                    cmdline = Path(entry.path, "cmdline").read_bytes()
                    if any(n in cmdline for n in self.needles):
                        self.hits.append((self._age(entry.name), cmdline))
                except OSError:
                    continue
            time.sleep(0.1)

    def after_startup(self) -> list[bytes]:
        return [cmd for age, cmd in self.hits if age >= STARTUP]


def test_no_password_in_any_command_or_output(dbpair: DbPair, tmp_path: Path) -> None:
    import json
    import subprocess
    from urllib.parse import quote

    from tests.helpers.cdc import cutover, sentinel, wait_applied, wait_until
    from tests.helpers.running import start_pgferry

    p = dbpair
    for cluster in (p.source, p.target):
        _ensure_password_role(cluster)
    with p.src_conn() as conn:
        conn.execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);"
            "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g"
        )
    source = p.source.uri(p.src_db, user=ROLE, password=PASSWORD)
    target = p.target.uri(p.tgt_db, user=ROLE, password=PASSWORD)
    bare_source = p.source.uri(p.src_db, user=ROLE)
    bare_target = p.target.uri(p.tgt_db, user=ROLE)
    quoted = quote(PASSWORD, safe="")
    needles = [PASSWORD.encode(), quoted.encode()]
    sampler = PsSampler(needles)
    sampler.start()
    outputs: list[str] = []

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        r = run_pgferry(*args, env=env, check=False)
        outputs.extend([r.stdout, r.stderr])
        return r

    try:
        # clone --follow: the source in a flag, the target in PGCOPYDB_TARGET_PGURI.
        proc = start_pgferry(
            "clone", "--follow", "--source", source, "--dir", str(p.workdir),
            "--slot-name", f"s_{p.src_db[-30:]}", "--origin", f"o_{p.src_db[-30:]}",
            "--no-progress",
            env={"PGCOPYDB_TARGET_PGURI": target},
        )  # fmt: skip
        wait_until(lambda: bool(sentinel(p.workdir).get("startpos")), what="slot", proc=proc)
        with p.src_conn() as conn:
            conn.execute("UPDATE t SET v = v || 'x' WHERE id <= 100")
        wait_applied(p, proc)
        status = run("status", "--dir", str(p.workdir), "--json")
        assert status.returncode == 0, status.stderr
        json.loads(status.stdout)
        cdc = run(
            "cdc-status", "--dir", str(p.workdir), "--json", "--sample", "0",
            "--source", source, env={"PGCOPYDB_TARGET_PGURI": target},
        )  # fmt: skip
        assert cdc.returncode == 0, cdc.stderr
        json.loads(cdc.stdout)
        # verify with PGPASSWORD, and with both URIs in the environment.
        verify = run(
            "verify", "--source", bare_source, "--target", bare_target, "--json",
            env={"PGPASSWORD": PASSWORD},
        )  # fmt: skip
        assert verify.returncode in (0, 1), verify.stderr  # CDC may lag: WARN/FAIL is fine
        json.loads(verify.stdout)
        verify_env = run(
            "verify", "--json",
            env={"PGCOPYDB_SOURCE_PGURI": source, "PGCOPYDB_TARGET_PGURI": target},
        )  # fmt: skip
        assert verify_env.returncode in (0, 1), verify_env.stderr
        # An abbreviated flag, a malformed URI, a wrong database: refused, not echoed.
        abbreviated = run("verify", "--sourc", source, "--target", target)
        assert abbreviated.returncode == 2
        malformed = run(
            "verify", "--source", f"postgresql//{ROLE}:{PASSWORD}@127.0.0.1/x", "--target", target
        )
        assert malformed.returncode == 3
        escape = run("verify", "--source", source + "%zz", "--target", target)
        assert escape.returncode in (3, 4)
        failing = run(
            "verify", "--source", p.source.uri("no_such_db", user=ROLE, password=PASSWORD),
            "--target", target,
        )  # fmt: skip
        assert failing.returncode == 4
        outputs.append(cutover(p, proc))  # the clone's stderr, with the verify after cutover
    finally:
        sampler.stop.set()
        sampler.join()
        if proc.poll() is None:
            proc.kill()
    assert sampler.samples > 10
    assert not sampler.after_startup(), sampler.after_startup()
    for text in outputs:
        assert PASSWORD not in text
        assert quoted not in text
    for needle in needles:
        assert not _files_containing(p.workdir, needle)
