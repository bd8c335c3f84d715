"""Cloning with a filter file: each section leaves out exactly what it names, and what
depends on it, and everything else arrives intact.

Every test builds its own small source schema, clones it with one filter file and then
looks at the target catalog: the excluded objects are gone, the kept ones are there, and
every kept table holds the same rows as on the source.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import TYPE_CHECKING

import psycopg
import pytest

from pgferry.catalog.target import user_objects
from pgferry.errors import ExitCode
from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database, sequence_values, table_fingerprints

if TYPE_CHECKING:
    import subprocess

    from tests.conftest import DbPair

USER_RELATIONS_SQL = """
SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry')
   AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
"""


# -- helpers ----------------------------------------------------------------------------
def setup_source(p: DbPair, ddl: str) -> None:
    with p.src_conn() as conn:
        conn.execute(ddl)


def clone(
    p: DbPair, filters: str, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`pgferry clone` with `filters` written to a file next to the work directory."""
    path = p.workdir.parent / "filters.ini"
    path.write_text(filters)
    return run_pgferry(
        "clone",
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        "--filters",
        str(path),
        "--table-jobs",
        "2",
        "--index-jobs",
        "2",
        *extra,
        check=check,
    )


def relations(conn: psycopg.Connection) -> dict[str, str]:
    """Qualified name -> relkind of every user relation (extension members left out)."""
    return {name: kind for name, kind in conn.execute(USER_RELATIONS_SQL).fetchall()}


def names(conn: psycopg.Connection, query: str, *params: object) -> set[str]:
    """The first column of `query`, as a set of strings."""
    return {str(r[0]) for r in conn.execute(query, params or None).fetchall()}


def constraints(conn: psycopg.Connection) -> set[str]:
    """schema.table.constraint (contype) of every constraint on a user table."""
    return names(
        conn,
        """
        SELECT format('%I.%I.%I (%s)', n.nspname, c.relname, k.conname, k.contype)
          FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND k.contype <> 'n'  -- NOT NULL constraints (PostgreSQL 18)
        """,
    )


def user_comments(conn: psycopg.Connection) -> set[str]:
    """Comments on objects that are not built in (oids of the initial catalog are < 16384)."""
    return names(conn, "SELECT description FROM pg_description WHERE objoid >= 16384")


def indexes(conn: psycopg.Connection) -> set[str]:
    return names(
        conn,
        """
        SELECT format('%I.%I', n.nspname, c.relname)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname !~ '^pg_toast'
        """,
    )


def assert_kept_data_identical(p: DbPair, left_out: Collection[str] = ()) -> None:
    """Every source table except `left_out` is on the target with the same row count and
    content hash, and the target holds no other table; every sequence on the target has
    its source value."""
    with p.src_conn() as src, p.tgt_conn() as tgt:
        source = table_fingerprints(src)
        target = table_fingerprints(tgt)
        source_seqs = sequence_values(src)
        target_seqs = sequence_values(tgt)
    unknown = set(left_out) - source.keys()
    assert not unknown, f"not tables of the source: {unknown}"
    assert target == {k: v for k, v in source.items() if k not in left_out}
    assert target_seqs == {k: v for k, v in source_seqs.items() if k in target_seqs}


def warning_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if " WARNING " in line]


# -- [exclude-table] ----------------------------------------------------------------------
EXCLUDE_TABLE_SQL = """
CREATE TABLE public.keep (id int PRIMARY KEY, v text);
CREATE TABLE public.gone (id serial PRIMARY KEY, v text, keep_id int REFERENCES public.keep);
CREATE INDEX gone_v_idx ON public.gone (v);
CREATE TABLE public.child (
    id int PRIMARY KEY,
    gone_id int CONSTRAINT child_gone_fk REFERENCES public.gone,
    keep_id int CONSTRAINT child_keep_fk REFERENCES public.keep
);
CREATE VIEW public.gone_view AS SELECT id, v FROM public.gone;
CREATE VIEW public.gone_view_2 AS SELECT * FROM public.gone_view;
CREATE VIEW public.keep_view AS SELECT id, v FROM public.keep;
COMMENT ON TABLE public.gone IS 'comment on gone';
COMMENT ON COLUMN public.gone.v IS 'comment on gone.v';
COMMENT ON TABLE public.keep IS 'comment on keep';
GRANT SELECT ON public.gone TO PUBLIC;
GRANT SELECT ON public.keep TO PUBLIC;
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN NEW.v := upper(NEW.v); RETURN NEW; END $$;
CREATE TRIGGER gone_touch BEFORE INSERT ON public.gone FOR EACH ROW EXECUTE FUNCTION public.touch();
ALTER TABLE public.gone ENABLE ROW LEVEL SECURITY;
CREATE POLICY gone_policy ON public.gone USING (true);
INSERT INTO public.keep SELECT g, 'k' || g FROM generate_series(1, 50) g;
INSERT INTO public.gone (v, keep_id) SELECT 'g' || g, g FROM generate_series(1, 30) g;
INSERT INTO public.child SELECT g, g, g FROM generate_series(1, 20) g;
"""


def test_exclude_table_removes_it_and_its_dependents(dbpair: DbPair) -> None:
    p = dbpair
    setup_source(p, EXCLUDE_TABLE_SQL)
    result = clone(p, "[exclude-table]\npublic.gone\n")

    with p.tgt_conn() as tgt:
        assert relations(tgt) == {
            "public.keep": "r",
            "public.keep_pkey": "i",
            "public.child": "r",
            "public.child_pkey": "i",
            "public.keep_view": "v",
        }
        # The foreign key to the excluded table is gone, the one to the kept table is not.
        assert constraints(tgt) == {
            "public.keep.keep_pkey (p)",
            "public.child.child_pkey (p)",
            "public.child.child_keep_fk (f)",
        }
        assert names(tgt, "SELECT viewname FROM pg_views WHERE schemaname = 'public'") == {
            "keep_view"
        }
        assert names(tgt, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal") == set()
        assert names(tgt, "SELECT polname FROM pg_policy") == set()
        assert names(
            tgt,
            "SELECT description FROM pg_description d "
            "JOIN pg_class c ON c.oid = d.objoid WHERE d.classoid = 'pg_class'::regclass",
        ) == {"comment on keep"}
        # The GRANT on the kept table arrived (so the one on the excluded table was not
        # dropped for lack of ACL support).
        granted = "SELECT relname FROM pg_class WHERE relacl::text LIKE '%=r/%'"
        assert names(tgt, granted + " AND relnamespace = 'public'::regnamespace") == {"keep"}
        # The trigger function does not depend on the table: it stays.
        assert names(
            tgt, "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        ) == {"touch"}
    assert_kept_data_identical(p, {"public.gone"})

    # The user is told which views went with the table.
    warnings = "\n".join(warning_lines(result))
    assert "view public.gone_view is excluded too" in warnings
    assert "public.gone_view_2" in warnings
    assert "sequence public.gone_id_seq" in warnings
    assert "foreign key child_gone_fk on public.child" in warnings
    assert "public.keep" not in warnings
    assert "child_keep_fk" not in warnings


# -- [exclude-schema] ---------------------------------------------------------------------
EXCLUDE_SCHEMA_SQL = """
CREATE SCHEMA gone;
CREATE SCHEMA kept;
CREATE TYPE gone.mood AS ENUM ('sad', 'happy');
CREATE TABLE gone.ref (id int PRIMARY KEY, mood gone.mood);
CREATE SEQUENCE gone.counter;
CREATE FUNCTION gone.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE TABLE kept.t (id int PRIMARY KEY, ref_id int CONSTRAINT t_ref_fk REFERENCES gone.ref);
CREATE TABLE public.p (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
CREATE VIEW kept.uses_gone AS SELECT r.id FROM gone.ref r;
CREATE VIEW kept.uses_kept AS SELECT t.id FROM kept.t t;
INSERT INTO gone.ref SELECT g, 'happy' FROM generate_series(1, 10) g;
INSERT INTO kept.t SELECT g, g FROM generate_series(1, 10) g;
INSERT INTO public.p (v) SELECT 'p' || g FROM generate_series(1, 25) g;
SELECT nextval('gone.counter');
"""


def test_exclude_schema_removes_its_objects_and_references_to_them(dbpair: DbPair) -> None:
    p = dbpair
    setup_source(p, EXCLUDE_SCHEMA_SQL)
    result = clone(p, "[exclude-schema]\ngone\n")

    with p.tgt_conn() as tgt:
        assert names(tgt, "SELECT nspname FROM pg_namespace") >= {"kept", "public"}
        assert "gone" not in names(tgt, "SELECT nspname FROM pg_namespace")
        assert relations(tgt) == {
            "kept.t": "r",
            "kept.t_pkey": "i",
            "kept.uses_kept": "v",
            "public.p": "r",
            "public.p_pkey": "i",
            "public.p_id_seq": "S",
        }
        assert constraints(tgt) == {"kept.t.t_pkey (p)", "public.p.p_pkey (p)"}
        assert names(tgt, "SELECT typname FROM pg_type WHERE typname = 'mood'") == set()
        assert names(tgt, "SELECT proname FROM pg_proc WHERE proname = 'f'") == set()
    assert_kept_data_identical(p, {"gone.ref"})
    warnings = "\n".join(warning_lines(result))
    assert "view kept.uses_gone" in warnings
    assert "foreign key t_ref_fk on kept.t" in warnings
    assert "uses_kept" not in warnings


# -- [include-only-schema] ----------------------------------------------------------------
INCLUDE_ONLY_SCHEMA_SQL = """
CREATE SCHEMA app;
CREATE SCHEMA other;
CREATE TABLE app.a (id serial PRIMARY KEY, v text);
CREATE INDEX a_v_idx ON app.a (v);
CREATE MATERIALIZED VIEW app.a_mv AS SELECT count(*) AS n FROM app.a;
CREATE TABLE other.o (id int PRIMARY KEY);
CREATE TABLE public.pub (id int PRIMARY KEY);
INSERT INTO app.a (v) SELECT 'a' || g FROM generate_series(1, 40) g;
REFRESH MATERIALIZED VIEW app.a_mv;
INSERT INTO other.o SELECT generate_series(1, 5);
INSERT INTO public.pub SELECT generate_series(1, 5);
"""


def test_include_only_schema_keeps_only_those_schemas(dbpair: DbPair) -> None:
    p = dbpair
    setup_source(p, INCLUDE_ONLY_SCHEMA_SQL)
    clone(p, "[include-only-schema]\napp\n")

    with p.tgt_conn() as tgt:
        schemas = names(tgt, "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_'")
        assert "app" in schemas
        assert "other" not in schemas
        assert relations(tgt) == {
            "app.a": "r",
            "app.a_pkey": "i",
            "app.a_v_idx": "i",
            "app.a_id_seq": "S",
            "app.a_mv": "m",
        }
        last = tgt.execute("SELECT last_value FROM app.a_id_seq").fetchone()
        assert last is not None and last[0] == 40
    assert_kept_data_identical(p, {"other.o", "public.pub"})


# -- [include-only-table] -----------------------------------------------------------------
INCLUDE_ONLY_TABLE_SQL = """
CREATE TABLE public.events (id int, at date NOT NULL, v text, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE public.events_2023 PARTITION OF public.events
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE public.events_2024 PARTITION OF public.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY HASH (id);
CREATE TABLE public.events_2024_h0 PARTITION OF public.events_2024
    FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE public.events_2024_h1 PARTITION OF public.events_2024
    FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE INDEX events_v_idx ON public.events (v);
CREATE TABLE public.lookup (code text PRIMARY KEY);
CREATE TABLE public.other (id serial PRIMARY KEY, code text REFERENCES public.lookup);
CREATE VIEW public.other_view AS SELECT * FROM public.other;
CREATE VIEW public.events_view AS SELECT id FROM public.events;
INSERT INTO public.events
    SELECT g, date '2023-06-01' + g * 2, CASE WHEN g % 2 = 0 THEN 'x' ELSE 'y' END
      FROM generate_series(1, 200) g;
INSERT INTO public.lookup VALUES ('a'), ('b');
INSERT INTO public.other (code) SELECT 'a' FROM generate_series(1, 10);
"""


def test_include_only_table_with_a_partitioned_table(dbpair: DbPair) -> None:
    p = dbpair
    setup_source(p, INCLUDE_ONLY_TABLE_SQL)
    result = clone(p, "[include-only-table]\npublic.events\npublic.lookup\n")

    with p.tgt_conn() as tgt:
        rels = relations(tgt)
        tables = {k: v for k, v in rels.items() if v not in ("i", "I")}
        assert tables == {
            "public.events": "p",
            "public.events_2023": "r",
            "public.events_2024": "p",
            "public.events_2024_h0": "r",
            "public.events_2024_h1": "r",
            "public.lookup": "r",
            "public.events_view": "v",
        }
        # Partition indexes came with their parents'.
        assert {
            "public.events_pkey",
            "public.events_v_idx",
            "public.events_2023_pkey",
            "public.events_2024_h0_pkey",
            "public.events_2024_h1_pkey",
            "public.lookup_pkey",
        } <= indexes(tgt)
        assert not any("other" in name for name in rels)
        rows = tgt.execute("SELECT count(*) FROM public.events").fetchone()
        assert rows is not None and rows[0] == 200
    assert_kept_data_identical(p, {"public.other"})
    assert "public.other_view" in "\n".join(warning_lines(result))


# -- [exclude-table-data] -----------------------------------------------------------------
EXCLUDE_TABLE_DATA_SQL = """
CREATE TABLE public.nodata (
    id int PRIMARY KEY,
    code text CONSTRAINT nodata_code_key UNIQUE,
    n int CONSTRAINT nodata_n_check CHECK (n >= 0)
);
CREATE INDEX nodata_n_idx ON public.nodata (n);
CREATE TABLE public.full_table (id int PRIMARY KEY, nodata_id int REFERENCES public.nodata);
CREATE MATERIALIZED VIEW public.mv_nodata AS SELECT id, n FROM public.nodata;
CREATE UNIQUE INDEX mv_nodata_id ON public.mv_nodata (id);
CREATE MATERIALIZED VIEW public.mv_full AS SELECT count(*) AS n FROM public.full_table;
INSERT INTO public.nodata SELECT g, 'c' || g, g FROM generate_series(1, 100) g;
INSERT INTO public.full_table SELECT g, NULL FROM generate_series(1, 60) g;
REFRESH MATERIALIZED VIEW public.mv_nodata;
REFRESH MATERIALIZED VIEW public.mv_full;
CREATE TABLE public.parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (50);
CREATE TABLE public.parted_2 PARTITION OF public.parted FOR VALUES FROM (50) TO (100);
INSERT INTO public.parted SELECT generate_series(0, 99);
"""


def test_exclude_table_data_creates_empty_table_and_unpopulated_matview(dbpair: DbPair) -> None:
    p = dbpair
    setup_source(p, EXCLUDE_TABLE_DATA_SQL)
    clone(p, "[exclude-table-data]\npublic.nodata\npublic.mv_nodata\npublic.parted\n")

    with p.tgt_conn() as tgt:
        assert relations(tgt) == {
            "public.nodata": "r",
            "public.nodata_pkey": "i",
            "public.nodata_code_key": "i",
            "public.nodata_n_idx": "i",
            "public.full_table": "r",
            "public.full_table_pkey": "i",
            "public.mv_nodata": "m",
            "public.mv_nodata_id": "i",
            "public.mv_full": "m",
            "public.parted": "p",
            "public.parted_pkey": "I",
            "public.parted_1": "r",
            "public.parted_1_pkey": "i",
            "public.parted_2": "r",
            "public.parted_2_pkey": "i",
        }
        assert constraints(tgt) == {
            "public.nodata.nodata_pkey (p)",
            "public.nodata.nodata_code_key (u)",
            "public.nodata.nodata_n_check (c)",
            "public.full_table.full_table_pkey (p)",
            "public.full_table.full_table_nodata_id_fkey (f)",
            "public.parted.parted_pkey (p)",
            "public.parted_1.parted_1_pkey (p)",
            "public.parted_2.parted_2_pkey (p)",
        }
        rows = tgt.execute("SELECT count(*) FROM public.nodata").fetchone()
        assert rows is not None and rows[0] == 0
        populated: dict[str, bool] = dict(
            tgt.execute(
                "SELECT relname, relispopulated FROM pg_class WHERE relkind = 'm'"
            ).fetchall()
        )
        assert populated == {"mv_nodata": False, "mv_full": True}
        invalid = names(tgt, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")
        assert invalid == set()

    with p.src_conn() as src, p.tgt_conn() as tgt:
        source = table_fingerprints(src)
        target = table_fingerprints(tgt)
    no_data = {"public.nodata", "public.mv_nodata", "public.parted_1", "public.parted_2"}
    assert target["public.nodata"] == (0, "0")
    assert target["public.parted_1"] == (0, "0")
    assert target["public.parted_2"] == (0, "0")
    assert target["public.mv_nodata"] == (-1, "unpopulated")
    kept = {k: v for k, v in source.items() if k not in no_data}
    assert {k: target[k] for k in kept} == kept
    assert target.keys() == source.keys()


# -- [exclude-index] ----------------------------------------------------------------------
EXCLUDE_INDEX_SQL = """
CREATE TABLE public.t (
    id int PRIMARY KEY,
    code text CONSTRAINT t_code_key UNIQUE,
    other text CONSTRAINT t_other_key UNIQUE,
    v text,
    w text
);
CREATE INDEX t_v_idx ON public.t (v);
CREATE INDEX t_w_idx ON public.t (w);
COMMENT ON INDEX public.t_v_idx IS 'comment on t_v_idx';
CREATE TABLE public.r (
    id int PRIMARY KEY,
    code text CONSTRAINT r_code_fk REFERENCES public.t (code),
    other text CONSTRAINT r_other_fk REFERENCES public.t (other)
);
-- Indexes that pg_restore builds: on a partitioned table (with its partitions' indexes)
-- and on a materialized view.
CREATE TABLE public.parted (
    id int, part int, v text, w text,
    PRIMARY KEY (id, part),
    CONSTRAINT parted_v_key UNIQUE (v, part)
) PARTITION BY LIST (part);
CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES IN (1);
CREATE TABLE public.parted_2 PARTITION OF public.parted FOR VALUES IN (2);
CREATE INDEX parted_w_idx ON public.parted (w);
CREATE MATERIALIZED VIEW public.mv AS SELECT id, v FROM public.t;
CREATE UNIQUE INDEX mv_id_idx ON public.mv (id);
CREATE INDEX mv_v_idx ON public.mv (v);
INSERT INTO public.t SELECT g, 'c' || g, 'o' || g, 'v' || g, 'w' || g
  FROM generate_series(1, 80) g;
INSERT INTO public.r SELECT g, 'c' || g, 'o' || g FROM generate_series(1, 10) g;
INSERT INTO public.parted SELECT g, 1 + g % 2, 'v' || g, 'w' || g FROM generate_series(1, 40) g;
REFRESH MATERIALIZED VIEW public.mv;
"""


def test_exclude_index_on_plain_index_and_unique_constraint(dbpair: DbPair) -> None:
    p = dbpair
    setup_source(p, EXCLUDE_INDEX_SQL)
    result = clone(
        p,
        "[exclude-index]\n"
        "public.t_v_idx\n"
        "public.t_code_key\n"
        "public.parted_w_idx\n"
        "public.parted_v_key\n"
        "public.mv_v_idx\n",
    )

    with p.tgt_conn() as tgt:
        assert indexes(tgt) == {
            "public.t_pkey",
            "public.t_other_key",
            "public.t_w_idx",
            "public.r_pkey",
            "public.parted_pkey",
            "public.parted_1_pkey",
            "public.parted_2_pkey",
            "public.mv_id_idx",
        }
        # The foreign key that needs the excluded unique constraint cannot exist without it.
        assert constraints(tgt) == {
            "public.t.t_pkey (p)",
            "public.t.t_other_key (u)",
            "public.r.r_pkey (p)",
            "public.r.r_other_fk (f)",
            "public.parted.parted_pkey (p)",
            "public.parted_1.parted_1_pkey (p)",
            "public.parted_2.parted_2_pkey (p)",
        }
        invalid = names(tgt, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")
        assert invalid == set()
        assert user_comments(tgt) == set()
    assert_kept_data_identical(p)
    warnings = "\n".join(warning_lines(result))
    assert "foreign key r_code_fk on public.r" in warnings
    assert "r_other_fk" not in warnings
    assert "matches no index" not in warnings


# -- [include-only-extension] / [exclude-extension] ---------------------------------------
EXTENSIONS_SQL = """
CREATE SCHEMA ext;
CREATE EXTENSION hstore SCHEMA ext;
CREATE EXTENSION citext;
CREATE EXTENSION pg_trgm;
COMMENT ON EXTENSION hstore IS 'hstore comment';
CREATE TABLE public.users (id int PRIMARY KEY, email citext UNIQUE, name text);
CREATE INDEX users_name_trgm ON public.users USING gin (name gin_trgm_ops);
CREATE TABLE public.plain (id int PRIMARY KEY);
INSERT INTO public.users SELECT g, 'U' || g || '@x.org', 'name ' || g FROM generate_series(1, 30) g;
INSERT INTO public.plain SELECT generate_series(1, 7);
"""


def extensions(conn: psycopg.Connection) -> set[str]:
    return names(conn, "SELECT extname FROM pg_extension")


def test_include_only_extension(dbpair: DbPair) -> None:
    p = dbpair
    setup_source(p, EXTENSIONS_SQL)
    with p.src_conn() as src:
        src.execute("DROP INDEX public.users_name_trgm")  # needs pg_trgm, not included
    clone(p, "[include-only-extension]\ncitext\n")

    with p.tgt_conn() as tgt:
        assert extensions(tgt) == {"plpgsql", "citext"}
        assert relations(tgt) == {
            "public.users": "r",
            "public.users_pkey": "i",
            "public.users_email_key": "i",
            "public.plain": "r",
            "public.plain_pkey": "i",
        }
        # The user's schema that held an excluded extension is still created.
        assert "ext" in names(tgt, "SELECT nspname FROM pg_namespace")
        assert names(tgt, "SELECT typname FROM pg_type WHERE typname = 'hstore'") == set()
        hit = tgt.execute("SELECT id FROM public.users WHERE email = 'u7@X.ORG'").fetchone()
        assert hit is not None and hit[0] == 7  # citext semantics on the target
    assert_kept_data_identical(p)


def test_excluded_extension_still_used_is_refused_before_writing(dbpair: DbPair) -> None:
    """A kept index needs pg_trgm, which the filters leave out and the target lacks."""
    p = dbpair
    setup_source(p, EXTENSIONS_SQL)
    result = clone(p, "[include-only-extension]\ncitext\n", check=False)
    assert result.returncode == ExitCode.BAD_INPUT
    assert "pg_trgm" in result.stderr and "CREATE EXTENSION" in result.stderr
    with p.tgt_conn() as tgt:
        assert user_objects(tgt) == []
    # Once the target has it, the same clone goes through.
    with p.tgt_conn() as tgt:
        tgt.execute("CREATE EXTENSION pg_trgm")
    clone(p, "[include-only-extension]\ncitext\n", "--resume")
    with p.tgt_conn() as tgt:
        assert "public.users_name_trgm" in relations(tgt)
    assert_kept_data_identical(p)


def test_exclude_extension(dbpair: DbPair) -> None:
    p = dbpair
    setup_source(p, EXTENSIONS_SQL)
    clone(p, "[exclude-extension]\nhstore\n")

    with p.tgt_conn() as tgt:
        assert extensions(tgt) == {"plpgsql", "citext", "pg_trgm"}
        assert indexes(tgt) == {
            "public.users_pkey",
            "public.users_email_key",
            "public.users_name_trgm",
            "public.plain_pkey",
        }
        assert names(tgt, "SELECT typname FROM pg_type WHERE typname = 'hstore'") == set()
        comments: dict[str, str] = dict(
            tgt.execute(
                "SELECT e.extname, d.description FROM pg_description d "
                "JOIN pg_extension e ON e.oid = d.objoid "
                "WHERE d.classoid = 'pg_extension'::regclass"
            ).fetchall()
        )
        assert "hstore" not in comments
        assert "hstore comment" not in comments.values()
    assert_kept_data_identical(p)


# -- [exclude-event-trigger] --------------------------------------------------------------
EVENT_TRIGGERS_SQL = """
CREATE FUNCTION public.evt_gone_fn() RETURNS event_trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE NOTICE 'gone'; END $$;
CREATE FUNCTION public.evt_keep_fn() RETURNS event_trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE NOTICE 'keep'; END $$;
CREATE EVENT TRIGGER evt_gone ON ddl_command_end EXECUTE FUNCTION public.evt_gone_fn();
CREATE EVENT TRIGGER evt_keep ON ddl_command_start EXECUTE FUNCTION public.evt_keep_fn();
COMMENT ON EVENT TRIGGER evt_gone IS 'comment on evt_gone';
CREATE TABLE public.t (id int PRIMARY KEY);
INSERT INTO public.t SELECT generate_series(1, 5);
"""


def test_exclude_event_trigger(dbpair: DbPair) -> None:
    p = dbpair
    setup_source(p, EVENT_TRIGGERS_SQL)
    clone(p, "[exclude-event-trigger]\nevt_gone\n")

    with p.tgt_conn() as tgt:
        assert names(tgt, "SELECT evtname FROM pg_event_trigger") == {"evt_keep"}
        assert user_comments(tgt) == set()
        # The function only the excluded event trigger used goes with it.
        assert names(
            tgt, "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        ) == {"evt_keep_fn"}
        assert relations(tgt) == {"public.t": "r", "public.t_pkey": "i"}
    assert_kept_data_identical(p)


# -- names that match nothing, malformed files --------------------------------------------
def test_filter_name_matching_nothing_is_a_warning(dbpair: DbPair) -> None:
    p = dbpair
    setup_source(
        p,
        "CREATE TABLE public.t (id int PRIMARY KEY, v text);"
        "INSERT INTO public.t SELECT g, 'v' || g FROM generate_series(1, 20) g;",
    )
    result = clone(
        p,
        "[exclude-table]\npublic.no_such_table\n"
        "[exclude-index]\npublic.no_such_index\n"
        "[exclude-schema]\nno_such_schema\n",
    )
    assert result.returncode == 0
    path = p.workdir.parent / "filters.ini"
    warnings = warning_lines(result)
    for line, missing in (
        (2, "public.no_such_table"),
        (4, "public.no_such_index"),
        (6, "no_such_schema"),
    ):
        assert any(f"{path}:{line}: " in w and missing in w for w in warnings), result.stderr
    assert_same_database(p.source_uri, p.target_uri)


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("[exclude-table]\npublic.t\n\n[exclude-tables]\npublic.u\n", 4, "unknown section"),
        ("# tables\n[exclude-table]\nt\n", 3, "schema-qualified"),
        ('[exclude-table]\npublic.t\npublic."unterminated\n', 3, "quote"),
        ("[include-only-table]\npublic.t\n[exclude-table]\npublic.t\n", 3, "cannot be combined"),
    ],
    ids=["unknown-section", "unqualified-table", "unterminated-quote", "conflicting-sections"],
)
def test_malformed_filter_file_is_rejected_before_anything_changes(
    dbpair: DbPair, content: str, line: int, reason: str
) -> None:
    p = dbpair
    setup_source(p, "CREATE TABLE public.t (id int PRIMARY KEY); INSERT INTO public.t VALUES (1);")
    result = clone(p, content, check=False)
    path = p.workdir.parent / "filters.ini"

    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    printed = [text for text in result.stderr.splitlines() if text.strip()]
    assert len(printed) == 1, result.stderr
    assert f"{path}:{line}: " in printed[0]
    assert reason in printed[0].lower()
    with p.tgt_conn() as tgt:
        assert user_objects(tgt) == []
    assert not p.workdir.exists()


def test_warning_names_are_quoted_like_postgres(dbpair: DbPair) -> None:
    """A mixed-case name that does not exist is reported as it would have to be written."""
    p = dbpair
    setup_source(p, 'CREATE TABLE public."Mixed" (id int); INSERT INTO public."Mixed" VALUES (1);')
    result = clone(p, '[exclude-table]\npublic."Mixed"\npublic."Missing"\n')
    assert re.search(r'public\."Missing"', result.stderr), result.stderr
    with p.tgt_conn() as tgt:
        assert relations(tgt) == {}
