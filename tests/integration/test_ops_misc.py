"""params, fix-replica-identity, target-clean, stop and diagnose against real clusters."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg import sql

from pgferry.catalog.target import user_objects
from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database
from tests.helpers.running import clone_args, kill_group, start_pgferry, wait_for

if TYPE_CHECKING:
    from tests.conftest import DbPair


def _json(*args: str, expect: int = 0, **kw: Any) -> dict[str, Any]:
    result = run_pgferry(*args, "--json", check=False, **kw)
    assert result.returncode == expect, result.stdout + result.stderr
    return json.loads(result.stdout)


def _checks(payload: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in payload["checks"]}


# -- params --------------------------------------------------------------------------------


def test_params_shows_normalised_differences_and_flags_behaviour(dbpair: DbPair) -> None:
    with dbpair.target.connect() as conn:
        for setting, value in (("work_mem", "64MB"), ("DateStyle", "SQL, DMY")):
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(dbpair.tgt_db), sql.Identifier(setting), sql.Literal(value)
                )
            )
    payload = _json("params", "--source", dbpair.source_uri, "--target", dbpair.target_uri)
    rows = {r["name"]: r for r in payload["settings"]}
    work_mem = rows["work_mem"]
    assert work_mem["differs"] and work_mem["direction"] == "higher"
    assert work_mem["target"]["normalized"] == 64 * 1024 * 1024
    assert work_mem["target"]["normalized_unit"] == "bytes"
    assert work_mem["target"]["display"] == "64MB"
    assert work_mem["target"]["source"] == "database"
    assert work_mem["group"] == "memory"
    assert rows["shared_buffers"]["restart"] == "restart"
    checks = _checks(payload)
    assert checks["setting.DateStyle"] == "WARN"
    assert checks["locale.encoding"] == "PASS"
    assert payload["verdict"] == "WARN"

    human = run_pgferry("params", "--source", dbpair.source_uri, "--target", dbpair.target_uri)
    assert "64MB" in human.stdout and "DateStyle" in human.stdout
    # The verdicts and the count of differences first, then the tables.
    out = human.stdout
    assert out.index("WARN") < out.index("setting(s) differ") < out.index("Change needs")


@pytest.fixture
def other_encoding_db(dbpair: DbPair) -> Iterator[str]:
    """A target database whose encoding and collation differ from the source's."""
    with dbpair.src_conn() as conn:
        encoding = conn.execute("SHOW server_encoding").fetchone()[0]  # type: ignore[index]
    other = "SQL_ASCII" if encoding == "UTF8" else "UTF8"
    name = f"other_{secrets.token_hex(3)}"
    with dbpair.target.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name), sql.Literal(other))
        )
    try:
        yield dbpair.target.uri(name)
    finally:
        dbpair.target.drop_database(name)


def test_params_fails_on_another_encoding(dbpair: DbPair, other_encoding_db: str) -> None:
    payload = _json(
        "params", "--source", dbpair.source_uri, "--target", other_encoding_db, expect=1
    )
    assert _checks(payload)["locale.encoding"] == "FAIL"
    assert payload["verdict"] == "FAIL"


# -- fix-replica-identity ------------------------------------------------------------------

RI_SQL = """
CREATE SCHEMA app;
CREATE TABLE app.with_key (id int PRIMARY KEY, v text);
CREATE TABLE app.with_unique (a int NOT NULL, b int NOT NULL, c int, v json);
CREATE UNIQUE INDEX with_unique_ab ON app.with_unique (a, b);
CREATE UNIQUE INDEX with_unique_b ON app.with_unique (b);
CREATE UNIQUE INDEX with_unique_c ON app.with_unique (c);          -- nullable
CREATE UNIQUE INDEX with_unique_part ON app.with_unique (a) WHERE a > 0;
CREATE TABLE app.no_index (a int, p point);
CREATE TABLE app.events (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE app.events_2023 PARTITION OF app.events
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE app.events_2024 PARTITION OF app.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app."We;ird ""T"" x" (x int);
CREATE SCHEMA skipped;
CREATE TABLE skipped.no_key (a int);
"""


def _identities(conn: psycopg.Connection) -> dict[str, tuple[str, str | None]]:
    rows = conn.execute(
        """
        SELECT format('%I.%I', n.nspname, c.relname), c.relreplident::text,
               (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                 WHERE i.indrelid = c.oid AND i.indisreplident)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('app', 'skipped') AND c.relkind IN ('r', 'p')
        """
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.fixture
def ri_source(dbpair: DbPair, tmp_path: Any) -> DbPair:
    with dbpair.src_conn() as conn:
        conn.execute(RI_SQL)
    (tmp_path / "filters.ini").write_text("[exclude-schema]\nskipped\n")
    return dbpair


def _fix_args(p: DbPair, tmp_path: Any, *extra: str) -> list[str]:
    return [
        "fix-replica-identity",
        "--source",
        p.source_uri,
        "--filters",
        str(tmp_path / "filters.ini"),
        *extra,
    ]


def test_fix_replica_identity_proposes_shows_and_applies(ri_source: DbPair, tmp_path: Any) -> None:
    p = ri_source
    with p.src_conn() as conn:
        before = _identities(conn)

    plan = _json(*_fix_args(p, tmp_path, "--dry-run"))
    fixes = {f["table"]: f for f in plan["fixes"]}
    assert set(fixes) == {
        "app.with_unique",
        "app.no_index",
        "app.events_2023",
        "app.events_2024",
        'app."We;ird ""T"" x"',
    }
    assert fixes["app.with_unique"]["proposal"] == "index"
    assert fixes["app.with_unique"]["index"] == "with_unique_b"
    assert fixes["app.no_index"]["proposal"] == "full"
    assert any("p" in n and "equality" in n for n in fixes["app.no_index"]["notes"])
    assert fixes["app.events_2023"]["partition_of"] == ["app.events"]
    assert fixes['app."We;ird ""T"" x"']["statement"] == (
        'ALTER TABLE "app"."We;ird ""T"" x" REPLICA IDENTITY FULL'
    )

    # Shown in full, and nothing changed by --dry-run or by a run nobody can confirm.
    shown = run_pgferry(*_fix_args(p, tmp_path, "--dry-run"))
    assert 'ALTER TABLE "app"."with_unique" REPLICA IDENTITY USING INDEX "with_unique_b";' in (
        shown.stdout
    )
    refused = run_pgferry(*_fix_args(p, tmp_path), check=False)
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    with p.src_conn() as conn:
        assert _identities(conn) == before

    applied = _json(*_fix_args(p, tmp_path, "--yes"))
    assert {r["outcome"] for r in applied["results"]} == {"applied"}
    with p.src_conn() as conn:
        after = _identities(conn)
    assert after["app.with_unique"] == ("i", "with_unique_b")
    assert after["app.no_index"] == ("f", None)
    assert after["app.events_2023"] == ("f", None)
    assert after["app.events_2024"] == ("f", None)
    assert after['app."We;ird ""T"" x"'] == ("f", None)
    assert after["app.events"] == before["app.events"]  # the parent: decoding never uses it
    assert after["app.with_key"] == ("d", None)
    assert after["skipped.no_key"] == ("d", None)  # out of scope

    again = _json(*_fix_args(p, tmp_path, "--yes"))
    assert again["fixes"] == []


def test_fix_replica_identity_reports_a_busy_table(ri_source: DbPair, tmp_path: Any) -> None:
    p = ri_source
    with p.src_conn() as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE app.no_index IN ACCESS SHARE MODE")
        result = run_pgferry(
            *_fix_args(p, tmp_path, "--yes", "--lock-timeout", "0.5", "--json"), check=False
        )
        holder.execute("ROLLBACK")
    assert result.returncode == 1, result.stdout + result.stderr
    payload = json.loads(result.stdout)
    outcomes = {r["table"]: r for r in payload["results"]}
    assert outcomes["app.no_index"]["outcome"] == "failed"
    assert outcomes["app.no_index"]["sqlstate"] == "55P03"
    assert "lock" in outcomes["app.no_index"]["hint"]
    assert outcomes["app.with_unique"]["outcome"] == "applied"
    with p.src_conn() as conn:
        after = _identities(conn)
    assert after["app.no_index"] == ("d", None)
    assert after["app.with_unique"] == ("i", "with_unique_b")


# -- target-clean --------------------------------------------------------------------------

TARGET_SQL = """
CREATE EXTENSION hstore;
CREATE SCHEMA app;
CREATE TABLE app.t (id int PRIMARY KEY, h hstore);
CREATE VIEW app.v AS SELECT id FROM app.t;
CREATE SCHEMA "Keep Me";
CREATE TABLE "Keep Me".k (id int, note text);
INSERT INTO "Keep Me".k VALUES (1, 'kept');
CREATE TABLE public.pt (id int) PARTITION BY RANGE (id);
CREATE TABLE public.pt_1 PARTITION OF public.pt FOR VALUES FROM (0) TO (10);
CREATE TYPE public.mood AS ENUM ('ok');
CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION public.evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE EVENT TRIGGER "no; drops" ON sql_drop EXECUTE FUNCTION public.evt();
CREATE PUBLICATION pub FOR TABLE app.t;
CREATE CAST (public.mood AS integer) WITH INOUT;
CREATE FOREIGN DATA WRAPPER fdw;
CREATE SERVER srv FOREIGN DATA WRAPPER fdw;
SELECT lo_from_bytea(0, 'blob');
"""


@pytest.fixture
def full_target(dbpair: DbPair) -> Iterator[tuple[DbPair, str]]:
    origin = f"pgferry_test_{secrets.token_hex(3)}"
    with dbpair.tgt_conn() as conn:
        conn.execute(TARGET_SQL)
        conn.execute("SELECT pg_replication_origin_create(%s)", (origin,))
        # A parallel apply lane's (--apply-jobs): it goes with its origin.
        conn.execute("SELECT pg_replication_origin_create(%s)", (f"{origin}.1",))
    try:
        yield dbpair, origin
    finally:
        with dbpair.tgt_conn() as conn:
            conn.execute(
                "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin "
                "WHERE roname IN (%s, %s)",
                (origin, f"{origin}.1"),
            )


def _origin_exists(conn: psycopg.Connection, origin: str) -> bool:
    row = conn.execute("SELECT pg_replication_origin_oid(%s)", (origin,)).fetchone()
    return row is not None and row[0] is not None


def _clean_args(p: DbPair, origin: str, *extra: str) -> list[str]:
    return ["target-clean", "--target", p.target_uri, "--origin", origin, *extra]


def test_target_clean_asks_first_then_drops_all_but_the_kept(
    full_target: tuple[DbPair, str],
) -> None:
    p, origin = full_target
    with p.tgt_conn() as conn:
        before = user_objects(conn)
    assert "schema app" in before and "extension hstore" in before

    refused = run_pgferry(*_clean_args(p, origin, "--keep", "Keep Me"), check=False)
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert "hstore" in refused.stdout  # the list of what would go came first
    dry = _json(*_clean_args(p, origin, "--keep", "Keep Me", "--dry-run"))
    assert {"schema app", "extension hstore", "large objects"} <= {
        f"{i['kind']} {i['name']}" if i["kind"] != "large objects" else "large objects"
        for i in dry["drop"]
    }
    with p.tgt_conn() as conn:
        assert user_objects(conn) == before
        assert _origin_exists(conn, origin)

    typo = run_pgferry(*_clean_args(p, origin, "--keep", "Kep Me", "--yes"), check=False)
    assert typo.returncode == 3
    assert "Kep Me" in typo.stderr

    done = _json(*_clean_args(p, origin, "--keep", "Keep Me", "--yes"))
    assert done["verdict"] == "PASS"
    assert done["left"] == []
    with p.tgt_conn() as conn:
        assert user_objects(conn) == ['relation "Keep Me".k', 'schema "Keep Me"']
        assert conn.execute('SELECT note FROM "Keep Me".k').fetchall() == [("kept",)]
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_event_trigger").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_cast WHERE oid >= 16384").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_foreign_data_wrapper").fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'public'"
        ).fetchone() == (1,)
        assert not _origin_exists(conn, origin)
        assert not _origin_exists(conn, f"{origin}.1")

    again = _json(*_clean_args(p, origin, "--keep", "Keep Me", "--yes"))
    assert again["drop"] == []


def test_target_clean_keeps_an_extension_and_refuses_while_pgferry_runs(
    full_target: tuple[DbPair, str],
) -> None:
    p, origin = full_target
    with psycopg.connect(p.target_uri, application_name="pgferry:0123456789 copy-1"):
        busy = run_pgferry(*_clean_args(p, origin, "--yes"), check=False)
        assert busy.returncode == 3
        assert "pgferry session" in busy.stderr
    with p.tgt_conn() as conn:
        assert "schema app" in user_objects(conn)

    plan = _json(*_clean_args(p, origin, "--keep", "hstore", "--dry-run"))
    kept = {k["name"] for k in plan["kept"]}
    assert "extension hstore" in kept
    done = _json(*_clean_args(p, origin, "--keep", "hstore", "--yes"))
    assert done["verdict"] == "PASS"
    with p.tgt_conn() as conn:
        assert user_objects(conn) == ["extension hstore"]


# -- stop and diagnose during a clone, then resume -----------------------------------------

CLONE_SQL = """
CREATE SCHEMA app;
CREATE TABLE app.events (id bigint PRIMARY KEY, payload text);
INSERT INTO app.events SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 50000) g;
CREATE TABLE app.small (id serial PRIMARY KEY, note text);
INSERT INTO app.small (note) SELECT 'n' || g FROM generate_series(1, 1000) g;
-- An index that takes seconds to build: a slow immutable function over a few rows.
CREATE FUNCTION app.slow(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
    $$ BEGIN PERFORM pg_sleep(0.4); RETURN i; END $$;
CREATE TABLE app.slowidx (id int);
INSERT INTO app.slowidx SELECT generate_series(1, 20);
CREATE INDEX slowidx_slow ON app.slowidx (app.slow(id));
"""


@pytest.mark.slow
def test_diagnose_and_stop_a_running_clone_then_resume(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(CLONE_SQL)
    proc = start_pgferry(*clone_args(p))
    try:
        wait_for(
            proc,
            p.workdir,
            lambda us: any(
                u["kind"] == "index"
                and u["label"] == "app.slowidx_slow"
                and u["status"] == "running"
                for u in us
            ),
            timeout=180,
        )
        diag = _json(
            "diagnose",
            "--target",
            p.target_uri,
            "--source",
            p.source_uri,
            "--dir",
            str(p.workdir),
            "--seconds",
            "1",
        )
        sessions = [s["before"] for s in diag["target"]["sessions"]]
        assert any(
            s["command"] == "CREATE INDEX" and s["relation"] == "app.slowidx" for s in sessions
        ), sessions
        assert all(s["application_name"].startswith("pgferry:") for s in sessions)
        assert diag["state_store_running_units"].get("index", 0) >= 1
        assert diag["verdict"] in ("PASS", "WARN")

        stopped = _json("stop", "--dir", str(p.workdir), "--grace", "60")
        assert stopped["outcome"] == "stopped", stopped
        assert proc.wait(timeout=30) == 6
        assert "--resume" in stopped["next_steps"][0]
    finally:
        if proc.poll() is None:
            kill_group(proc)
        else:
            proc.communicate()
    nothing = run_pgferry("stop", "--dir", str(p.workdir))
    assert "Nothing to stop" in nothing.stdout

    run_pgferry(*clone_args(p, "--resume"))
    assert_same_database(p.source_uri, p.target_uri, no_owner=False, no_acl=False)


# -- diagnose: a COPY blocked by a lock ----------------------------------------------------


def test_diagnose_fails_a_copy_blocked_by_a_lock(dbpair: DbPair) -> None:
    p = dbpair
    with p.tgt_conn() as conn:
        conn.execute("CREATE TABLE blocked (id int)")
    holder = p.tgt_conn()
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE blocked IN ACCESS EXCLUSIVE MODE")
    holder_pid = holder.info.backend_pid
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            with (
                psycopg.connect(p.target_uri, application_name="pgferry:feedc0ffee copy-1") as c,
                c.cursor() as cur,
                cur.copy("COPY blocked FROM STDIN") as cp,
            ):
                cp.write_row((1,))
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    copier = threading.Thread(target=copy)
    copier.start()
    try:
        with p.tgt_conn() as conn:
            for _ in range(100):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND application_name LIKE 'pgferry:feedc0ffee%'"
                ).fetchone()
                if row and row[0]:
                    break
                threading.Event().wait(0.05)
        diag = _json("diagnose", "--target", p.target_uri, "--seconds", "1", expect=1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        copier.join(timeout=30)
    assert not errors
    failed = [s for s in diag["target"]["sessions"] if s["verdict"] == "FAIL"]
    assert len(failed) == 1, diag["target"]["sessions"]
    assert failed[0]["before"]["relation"] == "blocked"
    assert [b["pid"] for b in failed[0]["blockers"]] == [holder_pid]
    assert _checks(diag)[f"target.pid.{failed[0]['before']['pid']}"] == "FAIL"
    with p.tgt_conn() as conn:
        assert conn.execute("SELECT count(*) FROM blocked").fetchone() == (1,)
