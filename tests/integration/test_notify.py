"""--notify-url: a local receiver gets the events in order with the documented payload;
the Slack format; a receiver that is down never fails the migration; the URL (a secret)
appears whole in no log line or output."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tests.helpers.cli import run_pgferry
from tests.helpers.net import WebhookReceiver, free_port
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


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    try:
        yield server
    finally:
        server.stop()


def _url(server: WebhookReceiver) -> str:
    return server.url(f"/hooks/{TOKEN}")


def test_clone_posts_its_events_in_order(dbpair: DbPair, receiver: WebhookReceiver) -> None:
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


def test_slack_format_and_an_error_event(dbpair: DbPair, receiver: WebhookReceiver) -> None:
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
    url = f"http://127.0.0.1:{free_port()}/hooks/{TOKEN}"  # nothing listens there
    done = run_pgferry(*clone_args(p, "--notify-url", url), timeout=120)
    with p.tgt_conn() as conn:  # copied all the same
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    assert TOKEN not in done.stderr + (p.workdir / "pgferry.log").read_text()
    bad = run_pgferry(*clone_args(p, "--notify-url", "ftp://x/y"), check=False)
    assert bad.returncode == 3 and "is not an http(s) URL" in bad.stderr


def test_no_password_in_events_or_metrics(dbpair: DbPair, receiver: WebhookReceiver) -> None:
    """The source and target given with passwords (in the URIs): no event body, metric or
    log line carries them."""
    p = dbpair
    secret = "Pw-7c1e-secret"
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
    source = p.source.uri(p.src_db, password=secret)
    target = p.target.uri(p.tgt_db, password=secret)
    port = free_port()
    done = run_pgferry(
        "clone", "--source", source, "--target", target, "--dir", str(p.workdir),
        "--notify-url", _url(receiver), "--metrics-port", str(port), "--no-progress",
    )  # fmt: skip
    refused = run_pgferry(
        "clone",
        "--source",
        source,
        "--target",
        target,
        "--dir",
        str(p.workdir / "again"),
        "--notify-url",
        _url(receiver),
        check=False,
    )  # fmt: skip  (the target is not empty now: an error event)
    assert refused.returncode == 3
    assert any(b["event"] == "error" for b in receiver.bodies)
    bodies = json.dumps(receiver.bodies)
    log = (p.workdir / "pgferry.log").read_text()
    for text in (bodies, done.stderr, done.stdout, refused.stderr, log):
        assert secret not in text and TOKEN not in text
