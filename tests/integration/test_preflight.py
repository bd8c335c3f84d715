"""`pgferry preflight` on real clusters: each problem a migration would hit is one FAIL or
WARN line naming the fix, and a good setup passes.

Most tests call `run_preflight` directly (fast); the exit code and output of the command
itself are checked through the CLI. Situations the test clusters cannot produce (an
extension the target lacks, prepared transactions, XID wraparound, a full disk) are
covered by tests/unit/test_preflight_rules.py on the rules themselves.
"""

from __future__ import annotations

import json
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from psycopg import sql

from pgferry.catalog.filters import load_filters, no_filters, parse_filters
from pgferry.checks.preflight import probe_decoding_plugin, run_preflight
from pgferry.checks.report import Check, Report, Verdict
from pgferry.pg import profiles
from pgferry.pg.conninfo import ConnInfo
from tests.helpers.cli import run_pgferry

if TYPE_CHECKING:
    from tests.conftest import DbPair


# -- helpers ----------------------------------------------------------------------------
def preflight_of(p: DbPair, *, source: str | None = None, **options: Any) -> Report:
    """run_preflight from the pair's source to its target (or from `source`)."""
    options.setdefault("follow", True)
    options.setdefault("filters", no_filters())
    return run_preflight(
        ConnInfo.parse(source or p.source_uri, "source"),
        ConnInfo.parse(options.pop("target", p.target_uri), "target"),
        workdir=p.workdir,
        **options,
    )


def check(report: Report, name: str) -> Check:
    found = [c for c in report.checks if c.name == name]
    assert found, f"no check {name} in {[c.name for c in report.checks]}"
    return found[0]


def failed(report: Report) -> list[str]:
    return [c.name for c in report.failed]


@pytest.fixture
def role(dbpair: DbPair) -> Iterator[str]:
    """A LOGIN role without REPLICATION, SUPERUSER or BYPASSRLS, on the source cluster and
    (as a migration has it: the grants name it) on the target's."""
    name = f"pf_role_{secrets.token_hex(3)}"
    for cluster in (dbpair.source, dbpair.target):
        with cluster.connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    yield name
    with dbpair.src_conn() as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    with dbpair.tgt_conn() as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    for cluster in (dbpair.source, dbpair.target):
        with cluster.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def grant_reads(p: DbPair, role: str, *tables: str) -> None:
    with p.src_conn() as conn:
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        for table in tables:
            conn.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(
                    sql.Identifier("public", table), sql.Identifier(role)
                )
            )


# -- a good setup -----------------------------------------------------------------------
def test_good_setup_passes(rich_source: DbPair) -> None:
    p = rich_source
    r = run_pgferry(
        "preflight",
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        "--follow",
        "--plugin",
        "wal2json",
        "--json",
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    verdicts = {c["name"]: c["verdict"] for c in out["checks"]}
    assert "FAIL" not in verdicts.values()
    for name in (
        "source.wal_level",
        "source.replication_role",
        "source.replication_slots",
        "source.wal_senders",
        "source.slot",
        "source.decoding_plugin",
        "source.replication_connection",
        "source.read_privileges",
        "source.rls",
        "target.empty",
        "target.extensions",  # hstore, citext, pg_trgm exist on both clusters
        "target.origin",
        "local.pg_dump",
        "local.disk",
    ):
        assert verdicts[name] == "PASS", (name, out)
    # The rich schema has large objects and an unlogged table: CDC caveats, not blockers.
    assert verdicts["source.large_objects"] == "WARN"
    assert verdicts["source.unlogged_tables"] == "WARN"
    # Its numeric and float columns would lose NaN/Infinity through wal2json 2.5.
    assert verdicts["source.wal2json_numbers"] == "WARN"
    # No slot is left behind by the plugin probe.
    with p.source.connect() as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry_preflight%'"
        ).fetchone()
    assert left == (0,)


def test_human_report_shows_fixes(dbpair: DbPair) -> None:
    p = dbpair
    with p.tgt_conn() as conn:
        conn.execute("CREATE TABLE already_here (x int)")
    r = run_pgferry(
        "preflight", "--source", p.source_uri, "--target", p.target_uri, "--dir", str(p.workdir),
        check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert "target.empty" in r.stdout and "fix: use an empty database" in r.stdout


# -- source -------------------------------------------------------------------------------
def test_wal_level_not_logical(dbpair: DbPair) -> None:
    p = dbpair  # the target cluster runs with wal_level = replica: use it as the source
    report = preflight_of(p, source=p.target_uri, target=p.source_uri)
    wal = check(report, "source.wal_level")
    assert wal.verdict == Verdict.FAIL
    assert wal.fix == "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"
    assert check(report, "source.decoding_plugin").verdict == Verdict.SKIP
    assert report.exit_code() == 1
    # Without --follow, replica is enough.
    report = preflight_of(p, source=p.target_uri, target=p.source_uri, follow=False)
    assert check(report, "source.wal_level").verdict == Verdict.SKIP
    assert report.exit_code() == 0


def test_role_without_replication(dbpair: DbPair, role: str) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    grant_reads(p, role, "t")
    report = preflight_of(p, source=p.source.uri(p.src_db, user=role))
    found = check(report, "source.replication_role")
    assert found.verdict == Verdict.FAIL
    assert found.fix == f'ALTER ROLE "{role}" WITH REPLICATION; (as a superuser)'
    assert failed(report) == ["source.replication_role"]
    assert check(report, "source.read_privileges").verdict == Verdict.PASS


def test_pgoutput_needs_the_tables_owner_and_names_the_grant(dbpair: DbPair, role: str) -> None:
    """Only a table's owner may publish it: asked for, pgoutput fails preflight with the
    GRANT that allows it; by default, test_decoding is used instead, and said."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        owner = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        conn.execute(sql.SQL("ALTER ROLE {} WITH REPLICATION").format(sql.Identifier(role)))
    grant_reads(p, role, "t")
    uri = p.source.uri(p.src_db, user=role)
    asked = preflight_of(p, source=uri, plugin="pgoutput", plugin_chosen=True)
    found = check(asked, "source.plugin")
    assert found.verdict == Verdict.FAIL and "does not own 1 (public.t)" in found.message
    assert found.fix is not None and f'GRANT "{owner}" TO "{role}"' in found.fix
    default = preflight_of(p, source=uri)
    fallback = check(default, "source.plugin")
    assert fallback.verdict == Verdict.WARN and "test_decoding plugin is used" in fallback.message
    assert "plugin test_decoding" in default.facts["migration"]
    assert "source.plugin" not in failed(default)


def test_no_free_replication_slot(dbpair: DbPair) -> None:
    p = dbpair
    token = secrets.token_hex(3)
    made: list[str] = []
    with p.source.connect() as conn:
        limit = int(conn.execute("SHOW max_replication_slots").fetchone()[0])  # type: ignore[index]
        used = conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0]  # type: ignore[index]
        try:
            for i in range(limit - used):
                name = f"pf_fill_{token}_{i}"
                conn.execute("SELECT pg_create_physical_replication_slot(%s)", (name,))
                made.append(name)
            report = preflight_of(p)
        finally:
            for name in made:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
    slots = check(report, "source.replication_slots")
    assert slots.verdict == Verdict.FAIL
    assert f"{limit} of {limit}" in slots.message
    assert slots.fix is not None and "max_replication_slots" in slots.fix
    assert check(report, "source.inactive_slots").verdict == Verdict.WARN


def test_leftover_slot(dbpair: DbPair) -> None:
    p = dbpair
    slot = f"pf_left_{secrets.token_hex(3)}"
    with p.src_conn() as conn:  # dropped with the database at the end
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
    report = preflight_of(p, slot=slot)
    found = check(report, "source.slot")
    assert found.verdict == Verdict.FAIL
    assert found.fix is not None and f"pgferry cleanup --source ... --slot-name {slot}" in found.fix
    assert failed(report) == ["source.slot"]
    # Resuming needs exactly that slot.
    resumed = preflight_of(p, slot=slot, resume=True)
    assert check(resumed, "source.slot").verdict == Verdict.PASS


def test_rls_table_the_role_cannot_bypass(dbpair: DbPair, role: str) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(
            "CREATE TABLE secrets (id int PRIMARY KEY, owner text);"
            "ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;"
            "CREATE POLICY mine ON secrets USING (owner = current_user)"
        )
    grant_reads(p, role, "secrets")
    report = preflight_of(p, source=p.source.uri(p.src_db, user=role), follow=False)
    rls = check(report, "source.rls")
    assert rls.verdict == Verdict.FAIL
    assert "public.secrets" in rls.message
    assert rls.fix is not None and f'ALTER ROLE "{role}" BYPASSRLS' in rls.fix
    assert failed(report) == ["source.rls"]


def test_table_without_replica_identity_warns(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE keyless (v text); CREATE TABLE keyed (id int PRIMARY KEY)")
    report = preflight_of(p)
    ri = check(report, "source.replica_identity")
    assert ri.verdict == Verdict.WARN
    assert "public.keyless (no primary key)" in ri.message and "keyed" not in ri.message
    assert ri.fix is not None and "pgferry fix-replica-identity" in ri.fix
    assert report.exit_code() == 0


def test_missing_select_grant(dbpair: DbPair, role: str) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE open (id int PRIMARY KEY); CREATE TABLE closed (id int)")
    grant_reads(p, role, "open")
    report = preflight_of(p, source=p.source.uri(p.src_db, user=role), follow=False)
    reads = check(report, "source.read_privileges")
    assert reads.verdict == Verdict.FAIL
    assert "public.closed" in reads.message and "public.open" not in reads.message
    assert reads.fix is not None
    assert f'GRANT SELECT ON "public"."closed" TO "{role}";' in reads.fix
    assert failed(report) == ["source.read_privileges"]


def test_plugin_that_is_not_installed(dbpair: DbPair) -> None:
    report = Report("probe")
    probe_decoding_plugin(report, ConnInfo.parse(dbpair.source_uri, "source"), "no_such_plugin")
    found = check(report, "source.decoding_plugin")
    assert found.verdict == Verdict.FAIL and "not installed" in found.message
    assert found.fix == "install the no_such_plugin output plugin on the source"


def test_slot_probe_waits_for_a_running_transaction(
    dbpair: DbPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = dbpair
    monkeypatch.setitem(profiles.PROBE, "statement_timeout", "1s")
    with p.src_conn(autocommit=False) as busy:
        busy.execute("SELECT txid_current()")  # a transaction with an ID, still open
        report = Report("probe")
        probe_decoding_plugin(report, ConnInfo.parse(p.source_uri, "source"), "test_decoding")
    found = check(report, "source.decoding_plugin")
    assert found.verdict == Verdict.WARN and "running transactions" in found.message


def test_unreachable_source_is_a_fail_line(dbpair: DbPair) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = preflight_of(dbpair, source=f"postgresql://postgres@127.0.0.1:{port}/nowhere")
    found = check(report, "source.connect")
    assert found.verdict == Verdict.FAIL and found.fix is not None
    assert not [c for c in report.checks if c.name.startswith("source.") and c is not found]
    assert check(report, "target.empty").verdict == Verdict.PASS  # the target is still checked


def test_provider_internals_suggest_a_filter_file(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:  # what a Supabase database looks like, in miniature
        conn.execute("CREATE SCHEMA auth; CREATE SCHEMA storage; CREATE TABLE auth.users (id int)")
    report = preflight_of(p, follow=False)
    found = check(report, "source.provider")
    assert found.verdict == Verdict.WARN and "Supabase" in found.message
    assert found.fix is not None and "pgferry filters init --for supabase" in found.fix
    covered = parse_filters("[exclude-schema]\nauth\nstorage\n", "f.ini")
    report = preflight_of(p, follow=False, filters=covered)
    assert check(report, "source.provider").verdict == Verdict.PASS


# -- target -------------------------------------------------------------------------------
def test_non_empty_target(dbpair: DbPair) -> None:
    p = dbpair
    with p.tgt_conn() as conn:
        conn.execute("CREATE TABLE already_here (x int)")
    report = preflight_of(p, follow=False)
    empty = check(report, "target.empty")
    assert empty.verdict == Verdict.FAIL
    assert "relation public.already_here" in empty.message
    assert empty.fix is not None and "--drop-if-exists" in empty.fix
    assert failed(report) == ["target.empty"]
    replaced = preflight_of(p, follow=False, drop_if_exists=True)
    assert check(replaced, "target.empty").verdict == Verdict.WARN
    assert replaced.exit_code() == 0


def test_leftover_origin_on_target(dbpair: DbPair) -> None:
    p = dbpair
    origin = f"pf_origin_{secrets.token_hex(3)}"
    with p.tgt_conn() as conn:  # origins are cluster-wide: drop it at the end
        conn.execute("SELECT pg_replication_origin_create(%s)", (origin,))
        try:
            report = preflight_of(p, origin=origin)
        finally:
            conn.execute("SELECT pg_replication_origin_drop(%s)", (origin,))
    found = check(report, "target.origin")
    assert found.verdict == Verdict.FAIL
    assert found.fix is not None and f"--origin {origin}" in found.fix


@pytest.fixture
def target_role(dbpair: DbPair) -> Iterator[str]:
    """A LOGIN role on the target cluster that is not a superuser."""
    name = f"pf_trole_{secrets.token_hex(3)}"
    with dbpair.target.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    yield name
    with dbpair.target.connect() as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_target_role_that_cannot_apply_changes(dbpair: DbPair, target_role: str) -> None:
    p = dbpair
    report = preflight_of(p, target=p.target.uri(p.tgt_db, user=target_role))
    cdc = check(report, "target.cdc_privileges")
    assert cdc.verdict == Verdict.FAIL
    assert cdc.fix is not None
    assert f'GRANT SET ON PARAMETER session_replication_role TO "{target_role}"' in cdc.fix
    assert "pg_catalog.pg_replication_origin_create(text)" in cdc.fix
    privileges = check(report, "target.privileges")
    assert privileges.verdict == Verdict.FAIL
    assert f'GRANT CREATE ON DATABASE "{p.tgt_db}" TO "{target_role}";' in (privileges.fix or "")


# -- this machine -------------------------------------------------------------------------
def test_malformed_filter_file(dbpair: DbPair, tmp_path: Path) -> None:
    p = dbpair
    bad = tmp_path / "bad.ini"
    bad.write_text("[exclude-schema]\nscratch\n[exclude-tables]\npublic.t\n")
    r = run_pgferry(
        "preflight", "--source", p.source_uri, "--target", p.target_uri, "--dir", str(p.workdir),
        "--filters", str(bad), "--json",
        check=False,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    found = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["local.filters"]
    assert found["verdict"] == "FAIL"
    assert f"{bad}:3: unknown section [exclude-tables]" in found["message"]
    assert found["fix"] == "did you mean [exclude-table]?"


def test_filter_names_that_match_nothing(dbpair: DbPair, tmp_path: Path) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    path = tmp_path / "filters.ini"
    path.write_text("[exclude-table]\npublic.t\npublic.not_there\n")
    report = preflight_of(p, follow=False, filters=load_filters(path))
    found = check(report, "local.filters_match")
    assert found.verdict == Verdict.WARN
    assert f"{path}:3: [exclude-table] public.not_there matches nothing" in found.message
    assert "public.t " not in found.message
    assert report.exit_code() == 0


def test_too_old_pg_dump(dbpair: DbPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "oldbin"
    bindir.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        script = bindir / tool
        script.write_text(f"#!/bin/sh\necho '{tool} (PostgreSQL) 12.3'\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PGFERRY_PG_BINDIR", str(bindir))
    report = preflight_of(dbpair, follow=False)
    found = check(report, "local.pg_dump")
    assert found.verdict == Verdict.FAIL
    assert "pg_dump 15 or newer" in found.message and f"{bindir}/pg_dump (12)" in found.message
    assert found.fix is not None and "postgresql-client-15" in found.fix
    assert failed(report) == ["local.pg_dump"]


def test_filters_init_writes_a_file_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "filters.ini"
    r = run_pgferry("filters", "init", "--for", "supabase", "--output", str(out))
    assert f"wrote {out}" in r.stdout
    assert "auth" in load_filters(out).exclude_schema
    again = run_pgferry("filters", "init", "--for", "rds", "--output", str(out), check=False)
    assert again.returncode == 3 and "--force" in again.stderr
    assert "auth" in load_filters(out).exclude_schema  # untouched
    run_pgferry("filters", "init", "--for", "rds", "--output", str(out), "--force")
    assert "rds_tools" in load_filters(out).exclude_extension


def test_roles_the_restore_names_must_exist_on_the_target(dbpair: DbPair) -> None:
    """An owner and a grantee of objects in scope that the target lacks: FAIL naming both
    (a clone would stop in its pre-data restore); --no-owner and --no-acl take each out;
    objects the filters leave out do not count; created on the target, PASS."""
    p = dbpair
    owner, reader, gone = (f"pf_{w}_{secrets.token_hex(3)}" for w in ("own", "read", "gone"))
    with p.source.connect() as conn:
        for r in (owner, reader, gone):
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(r)))
    try:
        with p.src_conn() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE kept (id int PRIMARY KEY); ALTER TABLE kept OWNER TO {o};"
                    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';"
                    "ALTER FUNCTION f() OWNER TO {o}; GRANT SELECT ON kept TO {r};"
                    "CREATE SCHEMA out; CREATE TABLE out.t (id int); GRANT SELECT ON out.t TO {g}"
                ).format(
                    o=sql.Identifier(owner), r=sql.Identifier(reader), g=sql.Identifier(gone)
                )  # fmt: skip
            )
        skip_out = parse_filters("[exclude-schema]\nout\n")
        roles = check(preflight_of(p, follow=False, filters=skip_out), "target.roles")
        assert roles.verdict == Verdict.FAIL
        assert f"{owner} (owns 2)" in roles.message and f"{reader} (granted on 1)" in roles.message
        assert gone not in roles.message  # only out.t names it: filtered out
        assert "--no-owner" in (roles.fix or "")
        every = check(preflight_of(p, follow=False), "target.roles")
        assert gone in every.message
        no_owner = check(
            preflight_of(p, follow=False, filters=skip_out, no_owner=True), "target.roles"
        )
        assert owner not in no_owner.message and reader in no_owner.message
        both = preflight_of(p, follow=False, filters=skip_out, no_owner=True, no_acl=True)
        assert check(both, "target.roles").verdict == Verdict.PASS
        with p.target.connect() as conn:
            for r in (owner, reader):
                conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(r)))
        present = check(preflight_of(p, follow=False, filters=skip_out), "target.roles")
        assert present.verdict == Verdict.PASS
    finally:
        with p.src_conn() as conn:
            conn.execute("DROP SCHEMA out CASCADE; DROP TABLE kept; DROP FUNCTION f()")
        for cluster in (p.source, p.target):
            with cluster.connect() as conn:
                for r in (owner, reader, gone):
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(r)))
