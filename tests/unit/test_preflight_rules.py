"""Preflight's decisions, from facts to PASS/WARN/FAIL with the fix (ops/preflight/).

The situations a test cluster cannot produce (a target without an extension, a server
out of replication slots at a low max_replication_slots, pending prepared transactions,
XID wraparound, a full disk) are tested here on the rules themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgferry.catalog.filters import QualifiedName, no_filters, parse_filters
from pgferry.catalog.row_identity import RowIdentity
from pgferry.checks.preflight import (
    AvailableExtension,
    RoleFacts,
    ScopeTable,
    SourceNames,
    extensions_in_scope,
    judge_capacity,
    judge_disk,
    judge_extensions,
    judge_leftover_slot,
    judge_parallel_workers,
    judge_prepared_transactions,
    judge_replication_role,
    judge_source_version,
    judge_target_empty,
    judge_target_version,
    judge_wal_level,
    judge_wal_sender_timeout,
    judge_xid_age,
    replica_identity_problem,
    table_in_scope,
    unmatched_filter_names,
)
from pgferry.checks.report import Verdict
from pgferry.pg.replication import SlotRow

GiB = 1024**3


def _available(**versions: str) -> dict[str, AvailableExtension]:
    return {n: AvailableExtension(n, frozenset(v.split(","))) for n, v in versions.items()}


def test_extension_missing_on_target_fails_listing_it() -> None:
    check = judge_extensions(
        {"postgis": "3.4.2", "citext": "1.6"},
        _available(citext="1.6"),
        installed=[],
        target_superuser=True,
    )
    assert check.name == "target.extensions"
    assert check.verdict == Verdict.FAIL
    assert "postgis 3.4.2" in check.message
    assert check.fix is not None and "[exclude-extension]" in check.fix


def test_extensions_all_available_pass() -> None:
    check = judge_extensions(
        {"citext": "1.6"}, _available(citext="1.5,1.6"), installed=[], target_superuser=False
    )
    assert check.verdict == Verdict.PASS


def test_extension_in_another_version_or_needing_superuser_warns() -> None:
    available = _available(hstore="1.8")
    available["plperlu"] = AvailableExtension("plperlu", frozenset({"1.0"}), superuser_only=True)
    check = judge_extensions(
        {"hstore": "1.7", "plperlu": "1.0"}, available, installed=[], target_superuser=False
    )
    assert check.verdict == Verdict.WARN
    assert "hstore 1.7" in check.message and "plperlu" in check.message
    # Created beforehand on the target: nothing to warn about.
    check = judge_extensions(
        {"hstore": "1.7", "plperlu": "1.0"},
        available,
        installed=["hstore", "plperlu"],
        target_superuser=False,
    )
    assert check.verdict == Verdict.PASS


def test_excluded_extensions_are_not_needed() -> None:
    filters = parse_filters("[exclude-extension]\npostgis\n")
    assert extensions_in_scope(filters, {"postgis": "3", "citext": "1"}) == {"citext": "1"}
    only = parse_filters("[include-only-extension]\ncitext\n")
    assert extensions_in_scope(only, {"postgis": "3", "citext": "1"}) == {"citext": "1"}


def test_no_free_replication_slot_fails_with_follow() -> None:
    fix = "raise max_replication_slots"
    check = judge_capacity(
        "source.replication_slots", "replication slots", 4, 4, 1, follow=True, fix=fix
    )
    assert check.verdict == Verdict.FAIL and check.fix == fix
    assert "4 of 4" in check.message
    assert (
        judge_capacity("source.replication_slots", "slots", 3, 4, 1, follow=True, fix=fix).verdict
        == Verdict.PASS
    )
    # Without --follow no slot is needed.
    assert (
        judge_capacity("source.replication_slots", "slots", 4, 4, 1, follow=False, fix=fix).verdict
        == Verdict.SKIP
    )


def test_wal_senders_need_two_for_follow() -> None:
    check = judge_capacity("source.wal_senders", "WAL senders", 9, 10, 2, follow=True, fix="x")
    assert check.verdict == Verdict.FAIL


def _slot(wal_status: str = "reserved", database: str = "app") -> SlotRow:
    return SlotRow("pgferry", "logical", database, "test_decoding", False, wal_status, 0, None)


def _judge_slot(found: SlotRow | None, *, resume: bool, follow: bool = True) -> Verdict:
    return judge_leftover_slot(
        "pgferry", found, follow=follow, resume=resume, plugin="test_decoding", dbname="app"
    ).verdict


def test_leftover_slot() -> None:
    fresh = judge_leftover_slot(
        "pgferry", _slot(), follow=True, resume=False, plugin="test_decoding", dbname="app"
    )
    assert fresh.verdict == Verdict.FAIL and "pgferry cleanup" in (fresh.fix or "")
    assert _judge_slot(_slot(), resume=True) == Verdict.PASS
    assert _judge_slot(_slot(wal_status="lost"), resume=True) == Verdict.FAIL
    assert _judge_slot(_slot(database="other"), resume=True) == Verdict.FAIL
    assert _judge_slot(None, resume=True) == Verdict.WARN
    assert _judge_slot(None, resume=False) == Verdict.PASS
    assert _judge_slot(_slot(), resume=False, follow=False) == Verdict.WARN


def test_wal_level() -> None:
    assert judge_wal_level("logical", follow=True, provider=None).verdict == Verdict.PASS
    assert judge_wal_level("replica", follow=False, provider=None).verdict == Verdict.SKIP
    check = judge_wal_level("replica", follow=True, provider="rds")
    assert check.verdict == Verdict.FAIL and "rds.logical_replication = 1" in (check.fix or "")


def test_replication_role() -> None:
    plain = RoleFacts("app", superuser=False, replication=False)
    check = judge_replication_role(plain, follow=True, provider=None)
    assert check.verdict == Verdict.FAIL
    assert check.fix == 'ALTER ROLE "app" WITH REPLICATION; (as a superuser)'
    rds = RoleFacts("app", False, False, managed_replication_roles=("rds_replication",))
    assert judge_replication_role(rds, follow=True, provider="rds").verdict == Verdict.PASS
    assert judge_replication_role(plain, follow=False, provider=None).verdict == Verdict.SKIP


def test_wal_sender_timeout() -> None:
    check = judge_wal_sender_timeout(60000, follow=True, user="app")
    assert check.verdict == Verdict.WARN
    assert 'ALTER ROLE "app" SET wal_sender_timeout = 0;' in (check.fix or "")
    assert judge_wal_sender_timeout(0, follow=True, user="app").verdict == Verdict.PASS


def test_prepared_transactions_block_the_slot() -> None:
    pending = [("tx1", "app", 7200)]
    check = judge_prepared_transactions(pending, follow=True)
    assert check.verdict == Verdict.FAIL and "ROLLBACK PREPARED" in (check.fix or "")
    assert judge_prepared_transactions(pending, follow=False).verdict == Verdict.WARN
    assert judge_prepared_transactions([], follow=True).verdict == Verdict.PASS


@pytest.mark.parametrize(
    ("age", "verdict"),
    [(100_000, Verdict.PASS), (1_700_000_000, Verdict.WARN), (2_100_000_000, Verdict.FAIL)],
)
def test_xid_age(age: int, verdict: Verdict) -> None:
    check = judge_xid_age("app", age)
    assert check.verdict == verdict
    if verdict != Verdict.PASS:
        assert "VACUUM (FREEZE" in (check.fix or "")


def test_target_empty() -> None:
    objects = ["relation public.t"]
    fail = judge_target_empty(objects, drop_if_exists=False, resume=False, dbname="app")
    assert fail.verdict == Verdict.FAIL and "target-clean" in (fail.fix or "")
    assert (
        judge_target_empty(objects, drop_if_exists=True, resume=False, dbname="app").verdict
        == Verdict.WARN
    )
    assert (
        judge_target_empty(objects, drop_if_exists=False, resume=True, dbname="app").verdict
        == Verdict.PASS
    )


def test_versions() -> None:
    older = judge_target_version(16, 15, "15.4")
    assert older.verdict == Verdict.FAIL
    assert "older than the source (16)" in older.message
    assert older.fix is not None and "--allow-downgrade" in older.fix
    allowed = judge_target_version(16, 15, "15.4", allow_downgrade=True)
    assert allowed.verdict == Verdict.WARN
    assert "transaction_timeout" in allowed.message  # the limits, written out
    assert judge_target_version(15, 17, "17.0").verdict == Verdict.PASS
    assert judge_target_version(15, 15, "15.2", allow_downgrade=True).verdict == Verdict.PASS
    assert judge_source_version(11, "11.22", False, False).verdict == Verdict.FAIL
    assert judge_source_version(15, "15.4", True, True).verdict == Verdict.FAIL
    assert judge_source_version(16, "16.2", True, True).verdict == Verdict.PASS


def test_parallel_workers() -> None:
    assert judge_parallel_workers(4, 8, 8).verdict == Verdict.PASS
    check = judge_parallel_workers(8, 8, 2)
    assert check.verdict == Verdict.WARN and "max_parallel_workers" in (check.fix or "")


def test_disk() -> None:
    path = Path("/data")
    assert judge_disk(path, 100 * 2**20, GiB, None, follow=False, basis="").verdict == Verdict.FAIL
    warn = judge_disk(path, 5 * GiB, GiB, 10 * GiB, follow=True, basis="estimate")
    assert warn.verdict == Verdict.WARN and "--dir" in (warn.fix or "")
    assert judge_disk(path, 5 * GiB, GiB, 10 * GiB, follow=False, basis="").verdict == (
        Verdict.PASS
    )


def _table(replident: str, has_pk: bool = False, ri_index: bool = False) -> ScopeTable:
    index = ("t_ri" if ri_index else None) if replident == "i" else ("t_pkey" if has_pk else None)
    return ScopeTable(
        oid=1,
        schema="public",
        name="t",
        relkind="r",
        persistence="p",
        identity=RowIdentity(replident, index, True, ("id",) if index else ()),
        rls=False,
        can_select=True,
        schema_usage=True,
        parent_oids=(),
        tablespaces=(),
    )


def test_replica_identity() -> None:
    assert replica_identity_problem(_table("d", has_pk=True)) is None
    assert replica_identity_problem(_table("f")) is None
    assert replica_identity_problem(_table("i", ri_index=True)) is None
    assert replica_identity_problem(_table("d")) == "no primary key"
    assert replica_identity_problem(_table("n", has_pk=True)) == "REPLICA IDENTITY NOTHING"


def test_wal2json_numbers_warning() -> None:
    """wal2json 2.5 turns NaN/Infinity into NULL: warned about only when it matters."""
    from dataclasses import replace

    from pgferry.checks.preflight.facts import PreflightOptions
    from pgferry.checks.preflight.tables import check_special_tables
    from pgferry.checks.report import Report

    floats = replace(_table("d", has_pk=True), float_columns=True)

    def verdicts(tables: list[ScopeTable], **opts: object) -> dict[str, Verdict]:
        report = Report(title="t")
        check_special_tables(report, tables, PreflightOptions(**opts))  # type: ignore[arg-type]
        return {c.name: c.verdict for c in report.checks}

    warned = verdicts([floats], follow=True, plugin="wal2json")
    assert warned["source.wal2json_numbers"] == Verdict.WARN
    assert "source.wal2json_numbers" not in verdicts([floats], follow=True)  # test_decoding
    assert "source.wal2json_numbers" not in verdicts([floats], plugin="wal2json")  # no CDC
    assert "source.wal2json_numbers" not in verdicts(
        [floats], follow=True, plugin="wal2json", wal2json_numeric_as_string=True
    )
    assert "source.wal2json_numbers" not in verdicts(
        [_table("d", has_pk=True)], follow=True, plugin="wal2json"
    )


def test_scope_follows_filters_and_partition_parents() -> None:
    t = QualifiedName("app", "orders_2024")
    parent = QualifiedName("app", "orders")
    assert table_in_scope(no_filters(), t, [parent])
    assert not table_in_scope(parse_filters("[exclude-schema]\napp\n"), t, [parent])
    assert not table_in_scope(parse_filters("[exclude-table]\napp.orders\n"), t, [parent])
    only = parse_filters("[include-only-table]\napp.orders\n")
    assert table_in_scope(only, t, [parent])
    assert not table_in_scope(only, QualifiedName("app", "other"), [])
    assert not table_in_scope(parse_filters("[include-only-schema]\nbilling\n"), t, [])


def test_unmatched_filter_names_name_file_and_line() -> None:
    filters = parse_filters(
        "[exclude-schema]\nscratch\nmissing\n\n[exclude-table]\npublic.t\npublic.nope\n",
        "f.ini",
    )
    names = SourceNames(
        schemas=frozenset({"public", "scratch"}),
        relations=frozenset({QualifiedName("public", "t")}),
    )
    assert unmatched_filter_names(filters, names) == [
        "f.ini:3: [exclude-schema] missing matches nothing on the source",
        "f.ini:7: [exclude-table] public.nope matches nothing on the source",
    ]
