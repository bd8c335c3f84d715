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
