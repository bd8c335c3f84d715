"""pgcopydb's granular commands: the clone's phases one at a time, in one DIR, ending in
the same copy as a clone (`dump schema`, `restore pre-data|post-data|schema`, `copy
schema|data|table-data|indexes|constraints|extensions`, `dump roles`, `restore roles`,
`restore parse-list`)."""

from __future__ import annotations

import json
import secrets
import stat
from typing import TYPE_CHECKING, Any

from psycopg import sql

from tests.helpers.cli import run_pgferry
from tests.helpers.compare import assert_same_database, schema_dump

if TYPE_CHECKING:
    from tests.conftest import DbPair

# Every kind of object the steps divide between them: a primary key, a unique and an
# exclusion constraint, a plain and an expression index, a foreign key, a trigger, a
# view, sequences, large objects, a mixed-case name.
SCHEMA = """
CREATE EXTENSION btree_gist;
CREATE TABLE parent (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, code text UNIQUE);
CREATE TABLE "Child" (
    id serial PRIMARY KEY,
    parent_id bigint REFERENCES parent,
    span int4range,
    note text,
    EXCLUDE USING gist (parent_id WITH =, span WITH &&)
);
CREATE INDEX child_note ON "Child" (lower(note));
CREATE INDEX child_parent ON "Child" (parent_id);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN NEW.note := coalesce(NEW.note, 'n'); RETURN NEW; END$$;
CREATE TRIGGER child_touch BEFORE INSERT ON "Child" FOR EACH ROW EXECUTE FUNCTION touch();
CREATE VIEW child_view AS SELECT c.id, p.code FROM "Child" c JOIN parent p ON p.id = c.parent_id;
CREATE SEQUENCE lone START 40 INCREMENT 3;
SELECT nextval('lone'), nextval('lone');
INSERT INTO parent (code) SELECT 'c' || g FROM generate_series(1, 300) g;
INSERT INTO "Child" (parent_id, span, note)
  SELECT 1 + g % 300, int4range(g, g + 1), CASE WHEN g % 3 = 0 THEN 'x' || g END
    FROM generate_series(1, 2000) g;
SELECT lo_from_bytea(72001, 'one'), lo_from_bytea(72002, decode(repeat('cd', 3000), 'hex'));
"""


def _both(p: DbPair, *, dir_: bool = True) -> list[str]:
    args = ["--source", p.source_uri, "--target", p.target_uri, "--no-progress"]
    return [*args, "--dir", str(p.workdir)] if dir_ else args


def test_pgcopydb_steps_one_by_one_make_the_same_copy(dbpair: DbPair) -> None:
    """dump schema (no target) -> restore pre-data -> copy table-data -> copy indexes ->
    copy constraints -> copy sequences, copy blobs -> restore post-data: the copy a
    clone makes, the indexes built once (post-data skips those built already)."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
    done = run_pgferry("dump", "schema", "--source", p.source_uri, "--dir", str(p.workdir))
    assert (p.workdir / "schema" / "schema.dump").exists()
    assert "target none" in done.stderr
    with p.tgt_conn() as conn:  # nothing written to the target
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname = 'parent'"
        ).fetchone() == (0,)
    listed = run_pgferry("restore", "parse-list", "--dir", str(p.workdir)).stdout
    assert any(
        " TABLE public Child" in line and not line.startswith(";") for line in listed.splitlines()
    )
    run_pgferry("restore", "pre-data", *_both(p))
    with p.tgt_conn() as conn:
        assert conn.execute('SELECT count(*) FROM "Child"').fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "WHERE c.relname IN ('Child', 'parent')"
        ).fetchone() == (0,)
    run_pgferry("copy", "table-data", *_both(p))
    with p.tgt_conn() as conn:
        assert conn.execute('SELECT count(*) FROM "Child"').fetchone() == (2000,)
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname = 'child_note'"
        ).fetchone() == (0,)
    run_pgferry("copy", "indexes", *_both(p))
    with p.tgt_conn() as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname IN ('child_note', 'child_parent')"
        ).fetchone() == (2,)
        assert conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype IN ('p', 'u', 'x') "
            "AND connamespace = 'public'::regnamespace"
        ).fetchone() == (0,)
    run_pgferry("copy", "constraints", *_both(p))
    with p.tgt_conn() as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype IN ('p', 'u', 'x') "
            "AND connamespace = 'public'::regnamespace"
        ).fetchone() == (4,)
    run_pgferry("copy", "sequences", *_both(p, dir_=False)[:4])
    run_pgferry("copy", "blobs", *_both(p, dir_=False)[:4])
    run_pgferry("restore", "post-data", *_both(p))
    assert_same_database(p.source_uri, p.target_uri)
    # Again: each step goes on from what is there, nothing twice.
    again = run_pgferry("copy", "indexes", *_both(p))
    assert "going on with the clone" in again.stderr


def test_copy_schema_then_copy_data(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
    run_pgferry("copy", "schema", *_both(p))
    with p.tgt_conn() as conn:
        assert conn.execute("SELECT count(*) FROM parent").fetchone() == (0,)
    assert schema_dump(p.source_uri) == schema_dump(p.target_uri)
    run_pgferry("copy", "data", *_both(p))
    assert_same_database(p.source_uri, p.target_uri)


def test_copy_data_without_the_schema_is_refused_untouched(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
    with p.tgt_conn() as conn:
        conn.execute("CREATE TABLE parent (id bigint, code text)")
    refused = run_pgferry("copy", "data", *_both(p), check=False)
    assert refused.returncode == 3, refused.stderr
    assert 'the target lacks 1 of the tables to copy (public."Child")' in refused.stderr or (
        "the target lacks 1 of the tables to copy" in refused.stderr
    )
    assert "copy schema" in refused.stderr and "Traceback" not in refused.stderr
    with p.tgt_conn() as conn:
        assert conn.execute("SELECT count(*) FROM parent").fetchone() == (0,)


def test_copy_extensions(dbpair: DbPair) -> None:
    """The privileged step: the source's extensions created on the target at the same
    version; then clone --skip-extensions makes the same copy."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute("CREATE EXTENSION hstore; CREATE EXTENSION citext")
        conn.execute("CREATE TABLE h (id int PRIMARY KEY, v hstore, c citext)")
        conn.execute("INSERT INTO h VALUES (1, 'a=>1', 'X')")
    conns = ("--source", p.source_uri, "--target", p.target_uri)
    done = run_pgferry("copy", "extensions", *conns)
    assert "created 2 extension(s)" in done.stdout
    with p.src_conn() as s, p.tgt_conn() as t:
        query = "SELECT extname, extversion FROM pg_extension ORDER BY 1"
        assert s.execute(query).fetchall() == t.execute(query).fetchall()
    again = run_pgferry("copy", "extensions", *conns)
    assert "created 0 extension(s); 2 already on the target" in again.stdout
    pinned = p.workdir.parent / "requirements.json"
    pinned.write_text(json.dumps([{"name": "hstore", "version": "9.9"}]))
    with p.tgt_conn() as conn:
        conn.execute("DROP EXTENSION hstore")
    refused = run_pgferry("copy", "extensions", *conns, "--requirements", str(pinned), check=False)
    assert refused.returncode != 0 and "hstore 9.9" in refused.stderr
    assert "Traceback" not in refused.stderr
    run_pgferry("copy", "extensions", *conns)
    run_pgferry("clone", *_both(p), "--skip-extensions")
    assert_same_database(p.source_uri, p.target_uri)


def test_dump_roles_and_restore_roles(dbpair: DbPair) -> None:
    p = dbpair
    tag = secrets.token_hex(3)
    login, group = f"dr_login_{tag}", f"dr_group_{tag}"
    with p.source.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {g}; CREATE ROLE {l} LOGIN PASSWORD 'pw-{t}' IN ROLE {g}").format(
                g=sql.Identifier(group), l=sql.Identifier(login), t=sql.SQL(tag)
            )
        )
    try:
        done = run_pgferry("dump", "roles", "--source", p.source_uri, "--dir", str(p.workdir))
        path = p.workdir / "schema" / "roles.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert f"pw-{tag}" not in path.read_text() + done.stdout + done.stderr  # a hash only
        names = {r["name"] for r in json.loads(path.read_text())["roles"]}
        assert {login, group} <= names
        restored = run_pgferry(
            "restore", "roles", "--target", p.target_uri, "--dir", str(p.workdir)
        )
        assert login in restored.stdout and "1 membership(s) granted" in restored.stdout
        with p.target.connect() as conn:
            assert conn.execute(
                "SELECT pg_has_role(%s, %s, 'MEMBER')", (login, group)
            ).fetchone() == (True,)
        with p.source.connect() as s, p.target.connect() as t:
            query = "SELECT rolpassword FROM pg_authid WHERE rolname = %s"
            assert s.execute(query, (login,)).fetchone() == t.execute(query, (login,)).fetchone()
        again = run_pgferry("restore", "roles", "--target", p.target_uri, "--dir", str(p.workdir))
        assert "created 0 role(s)" in again.stdout
        missing = run_pgferry(
            "restore", "roles", "--target", p.target_uri, "--dir", str(p.workdir / "none"),
            check=False,
        )  # fmt: skip
        assert missing.returncode == 3 and "pgferry dump roles" in missing.stderr
    finally:
        for cluster in (p.source, p.target):
            with cluster.connect() as conn:
                for r in (login, group):
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(r)))


def test_clone_skips_publications_collations_and_extension_comments(dbpair: DbPair) -> None:
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(
            "CREATE EXTENSION citext; COMMENT ON EXTENSION citext IS 'ours';"
            "CREATE COLLATION \"Names\" (provider = libc, locale = 'C');"
            "CREATE TABLE t (id int PRIMARY KEY, name text);"
            "CREATE PUBLICATION app_pub FOR TABLE t; INSERT INTO t VALUES (1, 'a')"
        )
    with p.tgt_conn() as conn:  # made by hand, as --skip-collations expects
        conn.execute("CREATE COLLATION \"Names\" (provider = libc, locale = 'C')")
    listed = run_pgferry(
        "list", "depends", "--source", p.source_uri, "--json"
    )  # nothing left out without filters
    assert json.loads(listed.stdout)["depends"] == []
    run_pgferry(
        "clone", *_both(p), "--skip-publications", "--skip-collations", "--skip-ext-comments"
    )
    with p.tgt_conn() as conn:
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
        assert conn.execute(
            "SELECT obj_description(oid, 'pg_extension') FROM pg_extension WHERE extname = 'citext'"
        ).fetchone() != ("ours",)  # the extension's own comment, not the source's
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_the_other_granular_commands(dbpair: DbPair) -> None:
    """copy db, dump pre-data, restore schema, list schema|collations|databases, and the
    stream sentinel's setup|set startpos|drop, each doing what pgcopydb's does."""
    p = dbpair
    with p.src_conn() as conn:
        conn.execute(SCHEMA)
        conn.execute("CREATE COLLATION \"Names\" (provider = libc, locale = 'C')")
        conn.execute('CREATE TABLE named (n text COLLATE "Names")')
    src = ("--source", p.source_uri)
    schema = json.loads(run_pgferry("list", "schema", *src).stdout)
    assert "public.Child" in {f"{t['schema']}.{t['name']}" for t in schema["catalog"]["tables"]}
    assert schema["scope"]["copied"] == ["public.Child", "public.named", "public.parent"]
    collations = run_pgferry("list", "collations", *src).stdout
    assert "collation=public.Names" in collations
    databases = json.loads(run_pgferry("list", "databases", *src, "--json").stdout)
    assert p.src_db in {d["database"] for d in databases["databases"]}
    # dump pre-data then restore schema in the same DIR: the whole schema, no rows.
    run_pgferry("dump", "pre-data", *src, "--dir", str(p.workdir))
    run_pgferry("restore", "schema", *_both(p))
    assert schema_dump(p.source_uri) == schema_dump(p.target_uri)
    with p.tgt_conn() as conn:
        assert conn.execute("SELECT count(*) FROM parent").fetchone() == (0,)
    # copy db: a clone, into a fresh DIR and an emptied target.
    run_pgferry("target-clean", "--target", p.target_uri, "--yes")
    run_pgferry("copy", "db", *_both(p, dir_=False), "--dir", str(p.workdir.parent / "db"))
    assert_same_database(p.source_uri, p.target_uri)


def test_stream_sentinel_setup_startpos_and_drop(dbpair: DbPair) -> None:
    p = dbpair
    stream_dir = str(p.workdir.parent / "stream")
    both = ("--source", p.source_uri, "--target", p.target_uri, "--dir", stream_dir)

    def sentinel(*args: str, check: bool = True) -> Any:
        return run_pgferry("stream", "sentinel", *args, "--dir", stream_dir, check=check)

    run_pgferry("stream", "setup", *both)
    try:
        get = json.loads(
            run_pgferry("stream", "sentinel", "get", "--json", "--dir", stream_dir).stdout
        )
        start = get["startpos"]
        hi, lo = start.split("/")
        later = f"{hi}/{int(lo, 16) + 16:X}"
        run_pgferry("stream", "sentinel", "set", "startpos", later, "--dir", stream_dir)
        run_pgferry("stream", "sentinel", "create", "--endpos", "FF/0", "--dir", stream_dir)
        got = json.loads(
            run_pgferry("stream", "sentinel", "get", "--json", "--dir", stream_dir).stdout
        )
        assert got["startpos"] == later and got["endpos"] == "FF/0"
        run_pgferry("stream", "sentinel", "drop", "--dir", stream_dir)
        got = json.loads(
            run_pgferry("stream", "sentinel", "get", "--json", "--dir", stream_dir).stdout
        )
        assert got["endpos"] is None
        bad = run_pgferry(
            "stream", "sentinel", "set", "startpos", "nope", "--dir", stream_dir, check=False
        )
        assert bad.returncode == 3 and "Traceback" not in bad.stderr
    finally:
        run_pgferry("stream", "drop", *both)
