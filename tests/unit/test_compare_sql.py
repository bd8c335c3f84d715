"""The SQL that `pgferry compare` builds, and its verdicts, without a database."""

from __future__ import annotations

import pytest

from pgferry.checks.compare import (
    DataComparison,
    LargeObjectResult,
    SequenceResult,
    TableResult,
    diff_objects,
    fingerprint_query,
    sequence_behind,
    sequence_query,
)
from pgferry.text import display_name

LONG = "ü" * 31 + "x"  # 63 bytes in UTF-8: the longest identifier PostgreSQL keeps
HOSTILE = [
    ('we"ird', '"we""ird"'),
    ("dot.ted", '"dot.ted"'),
    ("semi; DROP TABLE x; --", '"semi; DROP TABLE x; --"'),
    ("Ünïcödé 表", '"Ünïcödé 表"'),
    ("MixedCase", '"MixedCase"'),
    (LONG, f'"{LONG}"'),
]


def render(composed: object) -> str:
    return composed.as_string(None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "quoted"), HOSTILE)
def test_fingerprint_query_quotes_schema_table_and_columns(name: str, quoted: str) -> None:
    text = render(fingerprint_query(name, name, [name, "id"]))
    assert f"FROM ONLY {quoted}.{quoted} AS r" in text
    assert f'ROW("r".{quoted}, "r"."id")' in text


def test_fingerprint_query_shape() -> None:
    text = render(fingerprint_query("shop", "orders", ["id", "r", "t"]))
    assert text == (
        "SELECT pg_catalog.count(*), "
        "coalesce(pg_catalog.sum(('x' || pg_catalog.substr(pg_catalog.md5("
        'ROW("r"."id", "r"."r", "r"."t")::text), 1, 16))::bit(64)::bigint::numeric), 0)::text '
        'FROM ONLY "shop"."orders" AS r'
    )


def test_fingerprint_query_of_a_table_without_columns() -> None:
    assert "md5(ROW()::text)" in render(fingerprint_query("public", "empty", []))


def test_sequence_query_quotes_every_sequence() -> None:
    text = render(sequence_query([("public", 'se"q'), (LONG, "dot.ted")]))
    assert text == (
        'SELECT 0::int, last_value::int8, is_called FROM "public"."se""q"'
        " UNION ALL "
        f'SELECT 1::int, last_value::int8, is_called FROM "{LONG}"."dot.ted"'
    )


@pytest.mark.parametrize(
    ("parts", "shown"),
    [
        (("shop", "orders"), "shop.orders"),
        (("odd.schema", 'we"ird'), '"odd.schema"."we""ird"'),
        (("public", "Ünïcödé"), 'public."Ünïcödé"'),
        (("s", "t", "col_1$"), "s.t.col_1$"),
        (("s", "1abc"), 's."1abc"'),
    ],
)
def test_display_name_quotes_only_when_needed(parts: tuple[str, ...], shown: str) -> None:
    assert display_name(*parts) == shown


@pytest.mark.parametrize(
    ("source", "target", "increment", "behind"),
    [
        ((42, True), (42, True), 1, False),
        ((42, True), (100, True), 1, False),  # target ahead is fine
        ((42, True), (41, True), 1, True),
        ((42, True), (42, False), 1, True),  # would hand out 42 again
        ((42, True), (43, False), 1, False),
        ((1, False), (1, False), 1, False),  # never used on either side
        ((1, False), (1, True), 1, False),
        ((-5, True), (-5, True), -1, False),  # descending
        ((-5, True), (-4, True), -1, True),
        ((-5, True), (-9, True), -1, False),
    ],
)
def test_sequence_behind(
    source: tuple[int, bool], target: tuple[int, bool], increment: int, behind: bool
) -> None:
    assert sequence_behind(*source, *target, increment) is behind


def test_diff_objects_lists_missing_extra_and_changed() -> None:
    result = diff_objects(
        "indexes",
        {"shop.a": "CREATE INDEX a", "shop.b": "CREATE INDEX b", "shop.c": "x"},
        {"shop.a": "CREATE INDEX a", "shop.c": "y", "shop.d": "CREATE INDEX d"},
    )
    assert not result.ok
    assert result.only_on_source == ("shop.b",)
    assert result.only_on_target == ("shop.d",)
    assert result.different == (("shop.c", "x", "y"),)
    assert result.problems() == [
        "index shop.b: missing on target",
        "index shop.d: only on target",
        "index shop.c: definition differs: source 'x', target 'y'",
    ]


def test_diff_objects_equal() -> None:
    assert diff_objects("triggers", {"a": "x"}, {"a": "x"}).ok


def _table(**kw: object) -> TableResult:
    base: dict[str, object] = dict(
        schema="shop",
        name='or"ders',
        source_rows=10,
        target_rows=10,
        source_hash="1",
        target_hash="1",
        ok=True,
    )
    base.update(kw)
    return TableResult(**base)  # type: ignore[arg-type]


def test_problem_lines_name_the_table() -> None:
    assert _table().problem() is None
    assert (
        _table(target_rows=9, target_hash="2", ok=False).problem()
        == 'table shop."or""ders": 10 rows on source, 9 rows on target'
    )
    assert (
        _table(target_hash="2", ok=False).problem()
        == 'table shop."or""ders": same row count (10 rows) but different content'
    )
    assert (
        _table(target_rows=None, target_hash=None, ok=False).problem()
        == 'table shop."or""ders": missing on target'
    )
    assert (
        _table(source_rows=None, source_hash=None, ok=False).problem()
        == 'table shop."or""ders": only on target'
    )


def test_data_comparison_verdict() -> None:
    seq = SequenceResult("shop", "s", 42, True, 1, True, ok=False)
    comparison = DataComparison(
        tables=(_table(),),
        sequences=(seq,),
        large_objects=LargeObjectResult(2, 1, missing_on_target=(16400,)),
    )
    assert not comparison.ok
    assert not comparison.large_objects_ok
    assert comparison.problems() == [
        "sequence shop.s: target is behind the source (source last_value 42, target 1)",
        "large objects missing on target (1): 16400",
    ]
    payload = comparison.to_json()
    assert payload["ok"] is False
    assert payload["tables"][0]["name"] == 'or"ders'
