"""--notify-url: a local receiver gets the events in order with the documented payload;
the Slack format; a receiver that is down never fails the migration; the URL (a secret)
appears whole in no log line or output."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any

from tests.helpers.cli import run_pgferry
from tests.helpers.running import clone_args

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import DbPair

import pytest

TOKEN = "T0KEN-s3cr3t-9f2a"
SCHEMA = (
    "CREATE TABLE t (id int PRIMARY KEY, v text);"
    "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 1000) g"
)


class _Receiver(HTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        server = self.server
        assert isinstance(server, _Receiver)
        server.bodies.append(json.loads(self.rfile.read(length)))
        server.paths.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _url(server: _Receiver) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hooks/{TOKEN}"


def test_clone_posts_its_events_in_order(dbpair: DbPair, receiver: _Receiver) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
    done = run_pgferry(*clone_args(p, "--notify-url", _url(receiver)))
    names = [b["event"] for b in receiver.bodies]
    assert names[0] == "run_started" and names[-1] == "finished", names
    phases = [(b["event"], b.get("phase")) for b in receiver.bodies if "phase" in b]
    assert (
        phases.index(("phase_started", "catalog"))
        < phases.index(("phase_finished", "catalog"))
        < phases.index(("phase_started", "dump"))
    )
    assert ("phase_finished", "copy") in phases and ("phase_finished", "post-data") in phases
    first = receiver.bodies[0]
    assert set(first) >= {"event", "message", "dir", "time", "pgferry"}
    assert first["dir"] == str(p.workdir)
    assert receiver.paths[0] == f"/hooks/{TOKEN}"
    log = (p.workdir / "pgferry.log").read_text()
    for text in (done.stdout, done.stderr, log):
        assert TOKEN not in text
    assert "events posted to http://127.0.0.1:" in done.stderr


def test_slack_format_and_an_error_event(dbpair: DbPair, receiver: _Receiver) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
    with p.tgt_conn() as conn:
        conn.execute("CREATE TABLE already_here (id int)")  # a non-empty target: refused
    refused = run_pgferry(
        *clone_args(p, "--notify-url", _url(receiver), "--notify-format", "slack"), check=False
    )
    assert refused.returncode == 3
    assert receiver.bodies and all(set(b) == {"text"} for b in receiver.bodies)
    assert any("is not empty" in b["text"] or "target" in b["text"] for b in receiver.bodies)
    assert TOKEN not in refused.stderr


def test_a_receiver_that_is_down_does_not_fail_the_clone(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
    closed = _Receiver()
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
    done = run_pgferry(*clone_args(p, "--notify-url", url), timeout=120)
    with p.tgt_conn() as conn:  # copied all the same
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    assert TOKEN not in done.stderr + (p.workdir / "pgferry.log").read_text()
    bad = run_pgferry(*clone_args(p, "--notify-url", "ftp://x/y"), check=False)
    assert bad.returncode == 3 and "is not an http(s) URL" in bad.stderr
