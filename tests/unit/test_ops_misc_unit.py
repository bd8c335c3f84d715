"""The pure parts of params, fix-replica-identity, target-clean, stop and diagnose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pgferry.admin import replica_identity as ri
from pgferry.admin import stop as st
from pgferry.admin import target_clean as tc
from pgferry.catalog.filters import QualifiedName, parse_filters
from pgferry.catalog.row_identity import RowIdentity
from pgferry.checks import params as p
from pgferry.checks.report import Verdict
from pgferry.monitor.diagnose import SampledSession, judge, wait_meaning
from pgferry.pg.replication import drop_origin_sql

HOSTILE = ['a"b', "x; DROP TABLE t; --", "Ünïcödé 表", "with.dot", "MixedCase", "y" * 63]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- params: units ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "unit", "value", "kind"),
    [
        ("16384", "8kB", 134217728, "bytes"),
        ("4096", "kB", 4194304, "bytes"),
        ("1024", "MB", 1073741824, "bytes"),
        ("16777216", "B", 16777216, "bytes"),
        ("60000", "ms", 60.0, "seconds"),
        ("2", "ms", 0.002, "seconds"),
        ("300", "s", 300.0, "seconds"),
        ("5", "min", 300.0, "seconds"),
        ("on", None, None, None),
        ("abc", "kB", None, None),
    ],
)
def test_normalize_multiplies_the_unit(setting, unit, value, kind):
    n = p.normalize(setting, unit)
    assert n.kind == kind
    assert n.value == pytest.approx(value) if value is not None else n.value is None


@pytest.mark.parametrize(
    ("name", "setting", "unit", "shown"),
    [
        ("shared_buffers", "16384", "8kB", "128MB"),
        ("work_mem", "4096", "kB", "4MB"),
        ("effective_cache_size", "524288", "8kB", "4GB"),
        ("max_wal_size", "1024", "MB", "1GB"),
        ("wal_segment_size", "16777216", "B", "16MB"),
        ("track_activity_query_size", "1000", "B", "1000B"),
        ("temp_file_limit", "-1", "kB", "-1"),
        ("statement_timeout", "0", "ms", "0"),
        ("wal_sender_timeout", "60000", "ms", "1min"),
        ("checkpoint_timeout", "300", "s", "5min"),
        ("deadlock_timeout", "1000", "ms", "1s"),
        ("bgwriter_delay", "200", "ms", "200ms"),
        ("vacuum_cost_delay", "0.5", "ms", "0.5ms"),
        ("log_rotation_age", "1440", "min", "1d"),
        ("archive_timeout", "7200", "s", "2h"),
        ("DateStyle", "ISO, MDY", None, "ISO, MDY"),
        ("primary_conninfo", "host=x password=secret", None, "(set)"),
        ("archive_command", "", None, "(empty)"),
    ],
)
def test_display_value_uses_a_common_unit(name, setting, unit, shown):
    assert p.display_value(name, setting, unit) == shown


def test_same_value_knows_equivalent_spellings():
    assert p.same_value("TimeZone", "UTC", "Etc/UTC")
    assert not p.same_value("TimeZone", "UTC", "Europe/Paris")
    assert p.same_value("shared_preload_libraries", "a, b", "b,a")
    assert not p.same_value("shared_preload_libraries", "a", "a,b")
    assert p.same_value("lc_monetary", "en_US.UTF-8", "en_US.utf8")
    assert not p.same_value("lc_monetary", "en_US.UTF-8", "de_DE.UTF-8")
    assert p.same_value("random_page_cost", "4", "4.0")
    assert p.same_value("DateStyle", "ISO, MDY", "iso, mdy")
    assert not p.same_value("search_path", '"$user", public', "public")
    assert p.same_value("search_path", '"$user", public', '"$user",public')
    assert not p.same_value("search_path", "a, b", "b, a")


def test_direction_compares_normalised_numbers():
    assert p.direction("4096", "65536", "kB") == "higher"
    assert p.direction("100", "50", None) == "lower"
    assert p.direction("on", "off", None) is None
    assert p.direction("1", "1", None) is None


def test_groups_and_restart_labels():
    assert p.group_of("shared_buffers", "Resource Usage / Memory") == p.Group.MEMORY
    assert p.group_of("checkpoint_timeout", "Write-Ahead Log / Checkpoints") == p.Group.CHECKPOINTS
    assert p.group_of("wal_level", "Write-Ahead Log / Settings") == p.Group.WAL
    assert p.group_of("max_wal_senders", "Replication / Sending Servers") == p.Group.WAL
    assert p.group_of("autovacuum_naptime", "Autovacuum") == p.Group.AUTOVACUUM
    assert (
        p.group_of("max_parallel_workers", "Resource Usage / Asynchronous") == p.Group.PARALLELISM
    )
    assert p.group_of("shared_preload_libraries", "x") == p.Group.PRELOAD
    assert p.group_of("lc_collate", "Preset Options") == p.Group.LOCALE
    assert p.group_of("enable_seqscan", "?") == p.Group.PLANNER
    assert p.group_of("zzz", "Developer Options") == p.Group.OTHER
    assert p.restart_label("postmaster") == "restart"
    assert p.restart_label("sighup") == "reload"
    assert p.restart_label("internal") == "initdb"
    assert p.restart_label("user") == "SET"


def _facts(settings: dict[str, str], encoding="UTF8", collate="en_US.UTF-8", version=150004):
    return p.ServerFacts(
        version_num=version,
        version=str(version),
        settings={
            name: p.Setting(name, value, None, "string", "user", "", "default")
            for name, value in settings.items()
        },
        database=p.DatabaseLocale(encoding, collate, collate, "libc", None, None, None),
        extensions=frozenset({"pg_stat_statements"}),
    )


def test_behaviour_differences_warn_and_locale_differences_fail():
    src = _facts({"DateStyle": "ISO, MDY", "shared_preload_libraries": "pg_stat_statements"})
    tgt = _facts(
        {"DateStyle": "SQL, DMY", "shared_preload_libraries": ""},
        encoding="SQL_ASCII",
        collate="C",
        version=170002,
    )
    rows = p.compare_settings(src, tgt)
    report = p.Report("t")
    p.check_behaviour(report, src, tgt, rows, parse_filters(""), {})
    verdicts = {c.name: c.verdict for c in report.checks}
    assert verdicts["setting.DateStyle"] == Verdict.WARN
    assert verdicts["locale.encoding"] == Verdict.FAIL
    assert verdicts["locale.lc_collate"] == Verdict.FAIL
    assert verdicts["server.version"] == Verdict.WARN
    assert verdicts["preload.libraries"] == Verdict.WARN
    assert report.exit_code() == 1


def test_preload_of_an_excluded_extension_is_not_the_applications_problem():
    src = _facts({"shared_preload_libraries": "pg_stat_statements"})
    tgt = _facts({"shared_preload_libraries": ""})
    report = p.Report("t")
    filters = parse_filters("[exclude-extension]\npg_stat_statements\n")
    p.check_behaviour(report, src, tgt, p.compare_settings(src, tgt), filters, {})
    assert "preload.libraries" not in {c.name for c in report.checks}
    assert report.exit_code() == 0


# -- fix-replica-identity ----------------------------------------------------------------------


def _table(
    replident: str = "d",
    has_pk: bool = False,
    identity_index: str | None = None,
    identity_index_valid: bool = True,
    **kw: Any,
) -> ri.TableIdentity:
    """A table as read from the catalog: under DEFAULT, FULL and NOTHING the identity
    query finds the primary key; under USING INDEX the index flagged for it."""
    index = identity_index if replident == "i" else ("t_pkey" if has_pk else None)
    identity = RowIdentity(replident, index, identity_index_valid, ("id",) if index else ())
    base: dict[str, Any] = {
        "oid": 1,
        "schema": "app",
        "name": "t",
        "identity": identity,
        "has_pk": has_pk,
    }
    base.update(kw)
    return ri.TableIdentity(**base)


def test_problems_cdc_cannot_live_with():
    assert ri.problem_of(_table(has_pk=True)) is None
    assert ri.problem_of(_table()) == ri.Problem.NO_KEY
    assert ri.problem_of(_table(replident="f")) is None
    assert ri.problem_of(_table(replident="n", has_pk=True)) == ri.Problem.NOTHING
    assert ri.problem_of(_table(replident="i")) == ri.Problem.INDEX_DROPPED
    assert (
        ri.problem_of(_table(replident="i", identity_index="x", identity_index_valid=False))
        == ri.Problem.INDEX_INVALID
    )
    assert (
        ri.problem_of(_table(replident="i", identity_index="x", identity_index_valid=True)) is None
    )


def test_choose_index_takes_the_smallest_suitable_one():
    good_wide = ri.IndexCandidate("wide", key_columns=("a", "b"), size=10)
    good_big = ri.IndexCandidate("big", key_columns=("c",), size=900)
    good_small = ri.IndexCandidate("small", key_columns=("d",), size=100)
    unsuitable = [
        ri.IndexCandidate("partial", key_columns=("e",), partial=True),
        ri.IndexCandidate("expr", key_columns=(), expressions=True),
        ri.IndexCandidate("deferrable", key_columns=("f",), immediate=False),
        ri.IndexCandidate("nullable", key_columns=("g",), nullable_columns=("g",)),
        ri.IndexCandidate("invalid", key_columns=("h",), valid=False),
    ]
    best = ri.choose_index([good_wide, good_big, good_small, *unsuitable])
    assert best is not None and best.name == "small"
    assert ri.choose_index(unsuitable) is None
    assert {i.name: i.why_not() for i in unsuitable} == {
        "partial": "partial",
        "expr": "has expressions",
        "deferrable": "deferrable",
        "nullable": "nullable column(s) g",
        "invalid": "not valid",
    }


def test_propose_index_default_or_full():
    t = _table(indexes=(ri.IndexCandidate("u", key_columns=("id",)),))
    fix = ri.propose(t)
    assert fix is not None and fix.identity == ri.Identity.INDEX and fix.index == "u"
    assert fix.statement.as_string() == 'ALTER TABLE "app"."t" REPLICA IDENTITY USING INDEX "u"'

    fix = ri.propose(_table(replident="n", has_pk=True))
    assert fix is not None and fix.identity == ri.Identity.DEFAULT
    assert fix.statement.as_string() == 'ALTER TABLE "app"."t" REPLICA IDENTITY DEFAULT'

    t = _table(
        indexes=(ri.IndexCandidate("almost", key_columns=("a",), nullable_columns=("a",)),),
        no_equality_columns=("doc", "where"),
        ancestors=(QualifiedName("app", "parent"),),
    )
    fix = ri.propose(t)
    assert fix is not None and fix.identity == ri.Identity.FULL
    assert fix.statement.as_string() == 'ALTER TABLE "app"."t" REPLICA IDENTITY FULL'
    notes = " ".join(fix.notes)
    assert "partition of app.parent" in notes
    assert "almost would do if a were NOT NULL" in notes
    assert "doc, where" in notes

    assert ri.propose(_table(has_pk=True)) is None


@pytest.mark.parametrize("name", HOSTILE)
def test_identity_statements_quote_hostile_names(name):
    stmt = ri.identity_statement(name, name, ri.Identity.INDEX, name).as_string()
    q = _quoted(name)
    assert stmt == f"ALTER TABLE {q}.{q} REPLICA IDENTITY USING INDEX {q}"
    assert ri.identity_statement(name, "t", ri.Identity.FULL).as_string() == (
        f'ALTER TABLE {q}."t" REPLICA IDENTITY FULL'
    )


def test_scope_follows_filters_and_partition_parents():
    parent = QualifiedName("app", "events")
    leaf = QualifiedName("app", "events_2024")
    other = QualifiedName("app", "other")
    none = parse_filters("")
    assert ri.in_scope(none, leaf, (parent,))
    only = parse_filters("[include-only-table]\napp.events\n")
    assert ri.in_scope(only, leaf, (parent,))
    assert not ri.in_scope(only, other, ())
    excl = parse_filters("[exclude-table]\napp.events\n")
    assert not ri.in_scope(excl, leaf, (parent,))
    assert ri.in_scope(excl, other, ())
    nodata = parse_filters("[exclude-table-data]\napp.other\n")
    assert not ri.in_scope(nodata, other, ())
    schema = parse_filters("[exclude-schema]\napp\n")
    assert not ri.in_scope(schema, other, ())
    only_schema = parse_filters("[include-only-schema]\nlib\n")
    assert not ri.in_scope(only_schema, other, ())


# -- target-clean ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_target_clean_statements_quote_hostile_names(name):
    q = _quoted(name)
    assert tc.drop_schema(name).as_string() == f"DROP SCHEMA IF EXISTS {q} CASCADE"
    assert tc.drop_extension(name).as_string() == f"DROP EXTENSION IF EXISTS {q} CASCADE"
    assert tc.drop_event_trigger(name).as_string() == f"DROP EVENT TRIGGER IF EXISTS {q}"
    assert tc.drop_publication(name).as_string() == f"DROP PUBLICATION IF EXISTS {q}"
    assert [s.as_string() for s in tc.drop_subscription(name, True, True)] == [
        f"ALTER SUBSCRIPTION {q} DISABLE",
        f"ALTER SUBSCRIPTION {q} SET (slot_name = NONE)",
        f"DROP SUBSCRIPTION IF EXISTS {q}",
    ]
    literal = "'" + name.replace("'", "''") + "'"
    assert drop_origin_sql(name).as_string() == f"SELECT pg_replication_origin_drop({literal})"


def test_subscription_without_slot_or_disabled_is_just_dropped():
    assert [s.as_string() for s in tc.drop_subscription("s", False, False)] == [
        'DROP SUBSCRIPTION IF EXISTS "s"'
    ]


def test_drop_identified_uses_the_servers_identity():
    stmt = tc.drop_identified("operator class", "s.fam USING btree")
    assert stmt is not None
    assert stmt.as_string() == "DROP OPERATOR CLASS IF EXISTS s.fam USING btree CASCADE"
    stmt = tc.drop_identified("cast", "(s.c AS pg_catalog.text)")
    assert stmt is not None
    assert stmt.as_string() == "DROP CAST IF EXISTS (s.c AS pg_catalog.text) CASCADE"
    assert tc.drop_identified("rule", "r on s.t") is None


def test_kept_extensions_bring_what_they_need():
    exts = [
        tc._Extension(1, "postgis", "3", "public", ()),
        tc._Extension(2, "postgis_topology", "3", "topology", ("postgis",)),
        tc._Extension(3, "hstore", "1", "public", ()),
        tc._Extension(4, "plpgsql", "1", "pg_catalog", ()),
    ]
    kept = tc.kept_extensions(exts, ["postgis_topology", "some_schema"])
    assert kept == {
        "postgis_topology": "--keep",
        "postgis": "needed by a kept extension",
        "plpgsql": "always kept",
    }


def test_keep_decides_whole_emptied_and_dropped_schemas():
    exts = [
        tc._Extension(1, "pg_trgm", "1", "ext", ()),
        tc._Extension(2, "hstore", "1", "public", ()),
    ]
    schemas = [(10, "public"), (11, "ext"), (12, "app"), (13, "Keep Me")]
    keep = tc.decide_keep(schemas, exts, {"pg_trgm", "Keep Me"})
    assert keep.extensions == {"pg_trgm": "--keep"}
    assert keep.whole == ["Keep Me"]
    assert keep.emptied == [(10, "public"), (11, "ext")]
    assert keep.dropped == [(12, "app")]
    assert ('schema "Keep Me"', "--keep (with everything in it)") in keep.reasons


# -- diagnose ----------------------------------------------------------------------------------


def _session(**kw: Any) -> SampledSession:
    base: dict[str, Any] = {
        "pid": 10,
        "application_name": "pgferry:abc copy-1",
        "command": "COPY FROM",
        "relation": "app.t",
        "relid": 1,
        "state": "active",
        "wait_type": None,
        "wait_event": None,
        "query_start": 1000.0,
        "query_seconds": 5.0,
        "query": "COPY app.t FROM STDIN",
    }
    base.update(kw)
    return SampledSession(**base)


def test_blocked_without_progress_fails():
    before = _session(bytes_processed=100, wait_type="Lock", wait_event="relation", blocked_by=(7,))
    after = _session(bytes_processed=100, wait_type="Lock", wait_event="relation", blocked_by=(7,))
    verdict, message = judge(before, after, 5.0)
    assert verdict == Verdict.FAIL
    assert "pid 7" in message


def test_waiting_to_open_the_table_without_counters_fails():
    before = _session(wait_type="Lock", wait_event="relation", blocked_by=(7,))
    after = _session(wait_type="Lock", wait_event="relation", blocked_by=(7,))
    assert judge(before, after, 5.0)[0] == Verdict.FAIL


def test_no_progress_but_not_blocked_warns_and_explains():
    before = _session(bytes_processed=100)
    after = _session(bytes_processed=100, wait_type="Client", wait_event="ClientRead")
    verdict, message = judge(before, after, 5.0)
    assert verdict == Verdict.WARN
    assert "source side" in message


def test_slow_copy_warns_and_fast_copy_passes():
    before = _session(bytes_processed=0)
    slow = _session(bytes_processed=5 * 1024)
    fast = _session(bytes_processed=500 * 1024 * 1024)
    assert judge(before, slow, 5.0)[0] == Verdict.WARN
    verdict, message = judge(before, fast, 5.0)
    assert verdict == Verdict.PASS
    assert "/s" in message


def test_progress_despite_a_late_blocker_is_not_a_failure():
    before = _session(bytes_processed=0)
    after = _session(bytes_processed=50 * 1024 * 1024, blocked_by=(7,), wait_type="Lock")
    assert judge(before, after, 5.0)[0] == Verdict.PASS


def test_finished_or_moved_on_sessions_pass():
    before = _session(bytes_processed=100)
    assert judge(before, None, 5.0)[0] == Verdict.PASS
    moved = _session(bytes_processed=3, query_start=1004.0)
    assert judge(before, moved, 5.0)[0] == Verdict.PASS


def test_index_build_without_counter_change_is_not_called_stuck():
    before = _session(command="CREATE INDEX", phase="building index: scanning table")
    after = _session(command="CREATE INDEX", phase="building index: scanning table")
    verdict, message = judge(before, after, 5.0)
    assert verdict == Verdict.PASS
    assert "building index" in message


def test_wait_meanings():
    assert "on CPU" in wait_meaning(None, None)
    assert "target side" in wait_meaning("Client", "ClientWrite")
    assert "disk" in wait_meaning("IO", "DataFileRead")
    assert "lock" in wait_meaning("Lock", "tuple")
    assert "Extension:Foo" in wait_meaning("Extension", "Foo")


# -- stop --------------------------------------------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    from pathlib import Path
    from pgferry.state.workdir import WorkDir
    wd = WorkDir(Path(sys.argv[1]))
    wd.create()
    wd.lock()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(sys.argv[1], "child").write_text(str(child.pid))
    if sys.argv[2] == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        def stop(*_):
            child.terminate(); child.wait(); wd.unlock(); sys.exit(6)
        signal.signal(signal.SIGTERM, stop)
    Path(sys.argv[1], "ready").write_text("1")
    while True:
        time.sleep(0.05)
    """
)


def _hold(workdir: Path, mode: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(workdir), mode], env=env, start_new_session=True
    )
    deadline = time.monotonic() + 20
    while not (workdir / "ready").exists():
        assert proc.poll() is None, "the lock holder died"
        assert time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.05)
    return proc


def test_stop_with_nothing_running(tmp_path: Path):
    result = st.stop_migration(tmp_path)
    assert result.outcome == st.StopOutcome.NOTHING
    assert result.exit_code() == 0


def test_stop_terms_a_cooperative_process(tmp_path: Path):
    proc = _hold(tmp_path, "cooperate")
    result = st.stop_migration(tmp_path, grace=20)
    assert proc.wait(timeout=10) == 6
    assert result.outcome == st.StopOutcome.STOPPED
    assert result.pid == proc.pid
    assert st.WorkDir(tmp_path).running_pid() is None


def test_stop_kills_a_process_that_ignores_term_and_its_children(tmp_path: Path):
    proc = _hold(tmp_path, "ignore")
    child = int((tmp_path / "child").read_text())
    result = st.stop_migration(tmp_path, grace=0.5)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert result.outcome == st.StopOutcome.KILLED
    assert child in result.killed
    deadline = time.monotonic() + 10
    while st.alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not st.alive(child)
    assert st.WorkDir(tmp_path).running_pid() is None


def test_without_a_window_only_the_wait_is_judged():
    blocked = _session(wait_type="Lock", wait_event="relation", blocked_by=(7,))
    verdict, message = judge(blocked, blocked, 0.0)
    assert verdict == Verdict.WARN
    assert "pid 7" in message
    assert judge(_session(), _session(), 0.0)[0] == Verdict.PASS
