"""SQL built from catalog names is quoted: hostile names stay names."""

from __future__ import annotations

import psycopg
import pytest

from pgferry.catalog.model import Index, Table
from pgferry.clone.copydata import CopySpec, source_copy_sql, target_copy_sql
from pgferry.clone.indexes import add_constraint_sql, create_index_sql, index_extras_sql
from pgferry.clone.schema import setting_value_sql, split_setting_list

HOSTILE = ['a"b', "x; DROP TABLE t; --", "Ünïcödé 表", "with.dot", "MixedCase", "y" * 63]


def _render(composable) -> str:
    # as_string needs a context; psycopg accepts None for pure-identifier/literal SQL.
    return composable.as_string(None)


def _table(schema: str, name: str, cols: tuple[str, ...]) -> Table:
    return Table(
        oid=1,
        schema=schema,
        name=name,
        relkind="r",
        persistence="p",
        access_method="heap",
        is_partition=False,
        parent_oids=(),
        pages=10,
        bytes=1,
        reltuples=1.0,
        columns=cols,
        rls_enabled=False,
        rls_forced=False,
    )


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.mark.parametrize("name", HOSTILE)
def test_copy_sql_quotes_everything(name: str) -> None:
    t = _table(name, name, (name, "plain"))
    whole = _render(source_copy_sql(CopySpec(t)))
    assert whole == f'COPY {_quoted(name)}.{_quoted(name)} ({_quoted(name)}, "plain") TO STDOUT'
    part = _render(source_copy_sql(CopySpec(t, first_page=10, end_page=20, binary=True)))
    assert "FROM ONLY " + _quoted(name) in part
    assert "ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid" in part
    assert part.endswith("WITH (FORMAT binary)")
    into = _render(target_copy_sql(CopySpec(t), freeze=True))
    assert into.endswith("FROM STDIN WITH (FREEZE)")


def test_zero_column_table() -> None:
    t = _table("s", "empty", ())
    assert _render(source_copy_sql(CopySpec(t))) == 'COPY "s"."empty" TO STDOUT'
    assert _render(target_copy_sql(CopySpec(t), freeze=False)) == 'COPY "s"."empty" FROM STDIN'


def _idx(contype: str | None, name: str = 'my "idx"') -> Index:
    return Index(
        oid=5,
        table_oid=1,
        schema="s",
        name=name,
        definition=f'CREATE UNIQUE INDEX "{name}" ON s.t USING btree (a)',
        is_unique=True,
        is_primary=contype == "p",
        is_replident=True,
        is_clustered=True,
        tablespace=None,
        stat_targets=((1, 500),),
        constraint_oid=6 if contype else None,
        constraint_name='c "1"' if contype else None,
        constraint_type=contype,
        constraint_def="EXCLUDE USING gist (r WITH &&)" if contype == "x" else None,
        deferrable=True,
        deferred=contype == "u",
    )


def test_constraint_sql() -> None:
    t = _table("s", 'T"t', ("a",))
    pk = _render(add_constraint_sql(_idx("p"), t))
    assert pk == (
        'ALTER TABLE ONLY "s"."T""t" ADD CONSTRAINT "c ""1""" PRIMARY KEY '
        'USING INDEX "my ""idx""" DEFERRABLE'
    )
    uq = _render(add_constraint_sql(_idx("u"), t))
    assert uq.endswith("DEFERRABLE INITIALLY DEFERRED") and " UNIQUE USING INDEX " in uq
    ex = _render(add_constraint_sql(_idx("x"), t))
    assert (
        ex == 'ALTER TABLE ONLY "s"."T""t" ADD CONSTRAINT "c ""1""" EXCLUDE USING gist (r WITH &&)'
    )


def test_index_sql_and_extras() -> None:
    t = _table("s", "t", ("a",))
    idx = _idx(None)
    assert _render(create_index_sql(idx, if_not_exists=True)).startswith(
        "CREATE UNIQUE INDEX IF NOT EXISTS "
    )
    extras = [_render(s) for s in index_extras_sql(idx, t)]
    assert extras == [
        'ALTER INDEX "s"."my ""idx""" ALTER COLUMN 1 SET STATISTICS 500',
        'ALTER TABLE ONLY "s"."t" REPLICA IDENTITY USING INDEX "my ""idx"""',
        'ALTER TABLE ONLY "s"."t" CLUSTER ON "my ""idx"""',
    ]


def test_setting_lists() -> None:
    assert split_setting_list('"$user", public') == ["$user", "public"]
    assert split_setting_list('"a ""b""", c d') == ['a "b"', "c d"]
    assert _render(setting_value_sql("search_path", '"$user", public')) == "'$user', 'public'"
    assert _render(setting_value_sql("work_mem", "8MB")) == "'8MB'"


def test_rendering_is_real_sql() -> None:
    # A sanity check that the rendering above is what psycopg sends.
    assert isinstance(source_copy_sql(CopySpec(_table("a", "b", ("c",)))), psycopg.sql.Composed)


def test_apply_insert_carrying_the_origin_setup() -> None:
    from pgferry.cdc.sqlgen import Column, TargetTable, insert_origin_sql, origin_setup_sql

    table = TargetTable(
        schema='S "1"',
        name="täble",
        columns={"Id": Column("Id", "integer", always_identity=True), "v v": Column("v v", "text")},
        key=("Id",),
        identity="d",
    )
    text = insert_origin_sql(table, ("Id", "v v"))
    assert text == (
        'INSERT INTO "S ""1"""."täble" ("Id", "v v") OVERRIDING SYSTEM VALUE SELECT $1, $2 '
        f"FROM ({origin_setup_sql(3)}) AS origin"
    )
    assert "$3::pg_lsn" in origin_setup_sql(3) and "$5::pg_lsn" in origin_setup_sql(3)
    assert insert_origin_sql(table, ("Id", "v v")) is text  # cached per column list


def test_names_with_percent_signs_survive_parameters() -> None:
    """psycopg reads %b or %s anywhere in a query run with parameters as a placeholder:
    with_params doubles the % of names and literals, never of the SQL's own %s."""
    from psycopg import sql

    from pgferry.pg.query import with_params

    query = sql.SQL("SELECT {}, {} FROM {} WHERE x = %s").format(
        sql.Identifier("v%t"), sql.Literal("50%"), sql.Identifier("s%s", "t%b")
    )
    assert with_params(query).as_string(None) == (
        """SELECT "v%%t", '50%%' FROM "s%%s"."t%%b" WHERE x = %s"""
    )
    plain = sql.SQL("SELECT 1 WHERE x = %s")
    assert with_params(plain) is plain


@pytest.mark.parametrize("name", HOSTILE)
def test_apply_update_of_many_rows_and_row_lookup(name: str) -> None:
    """Updates sent together: every name quoted, each parameter cast to its column's
    type, the rows found by the key; the lookup of a row for messages quotes its values."""
    from pgferry.cdc.sqlgen import Column, TargetTable, row_exists_sql, update_rows_sql

    table = TargetTable(
        schema=name,
        name=name,
        columns={
            name: Column(name, "integer"),
            "v": Column("v", "character varying(5)"),
            "g": Column("g", "integer", generated=True),
        },
        key=(name,),
        identity="d",
    )
    q = _quoted(name)
    text = update_rows_sql(table, (name, "v", "g"), (name, "v"), 2)
    assert text == (
        f'UPDATE ONLY {q}.{q} AS t SET {q} = v.{q}, "v" = v."v" FROM (VALUES '
        "($1::integer, $2::character varying(5), $3::integer), "
        "($4::integer, $5::character varying(5), $6::integer)) "
        f'AS v ({q}, "v", "g") WHERE t.{q} = v.{q}'
    )
    assert update_rows_sql(table, (name, "v", "g"), (name, "v"), 2) is text  # cached
    lookup = _render(row_exists_sql(table, [b"1'; DROP TABLE x; --"]))
    assert lookup == (
        f"SELECT EXISTS (SELECT 1 FROM ONLY {q}.{q} WHERE {q} = '1''; DROP TABLE x; --')"
    )
