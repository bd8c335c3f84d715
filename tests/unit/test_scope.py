"""Applying the filters to a hand-built catalog and dump TOC (catalog/scope.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgferry.catalog.filters import parse_filters
from pgferry.catalog.model import Catalog, Extension, Index, Named, Table
from pgferry.catalog.scope import (
    PG_CLASS,
    PG_CONSTRAINT,
    PG_EVENT_TRIGGER,
    PG_EXTENSION,
    PG_NAMESPACE,
    Scope,
    ScopeOptions,
    resolve_scope,
)
from pgferry.catalog.toc import TocEntry

PG_PROC = 1255


@dataclass
class Source:
    """A small source database: catalog records and the dump entries describing them."""

    tables: list[Table] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    extensions: list[Extension] = field(default_factory=list)
    event_triggers: list[Named] = field(default_factory=list)
    toc: list[TocEntry] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)  # label -> dump id
    _next_oid: int = 16384

    def entry(
        self,
        label: str,
        desc: str,
        tag: str,
        *,
        namespace: str | None = "public",
        catalog_oid: int = 0,
        oid: int | None = None,
        deps: tuple[str, ...] = (),
    ) -> int:
        """Add a TOC entry; `deps` are labels of entries added before. Returns its oid."""
        if oid is None:
            oid = self._next_oid if catalog_oid else 0
            self._next_oid += 1
        dump_id = len(self.toc) + 1
        self.toc.append(
            TocEntry(
                dump_id=dump_id,
                catalog_oid=catalog_oid,
                oid=oid,
                desc=desc,
                namespace=namespace,
                tag=tag,
                owner="postgres",
                deps=tuple(self.ids[d] for d in deps),
            )
        )
        self.ids[label] = dump_id
        return oid

    def table(
        self,
        name: str,
        *,
        schema: str = "public",
        relkind: str = "r",
        parent: str | None = None,
        partition: bool = True,
        deps: tuple[str, ...] = (),
    ) -> int:
        desc = {"r": "TABLE", "p": "TABLE", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE"}
        parent_deps = (parent,) if parent else ()
        oid = self.entry(
            name,
            desc[relkind],
            name,
            namespace=schema,
            catalog_oid=PG_CLASS,
            deps=parent_deps + deps,
        )
        parents = (self.oid(parent),) if parent else ()
        self.tables.append(
            Table(
                oid=oid,
                schema=schema,
                name=name,
                relkind=relkind,
                persistence="p",
                access_method="heap" if relkind in "rm" else None,
                is_partition=bool(parent) and partition,
                parent_oids=parents,
                pages=1,
                bytes=8192,
                reltuples=10.0,
                columns=("id",),
                rls_enabled=False,
                rls_forced=False,
            )
        )
        return oid

    def index(
        self,
        name: str,
        table: str,
        *,
        constraint: bool = False,
        in_catalog: bool = True,
        deps: tuple[str, ...] = (),
    ) -> None:
        """An index, or (constraint=True) a unique constraint and its index."""
        table_oid = self.oid(table)
        if constraint:
            con_oid = self.entry(
                name,
                "CONSTRAINT",
                f"{table} {name}",
                catalog_oid=PG_CONSTRAINT,
                deps=(table, *deps),
            )
            idx_oid = self._next_oid
            self._next_oid += 1
        else:
            idx_oid = self.entry(name, "INDEX", name, catalog_oid=PG_CLASS, deps=(table, *deps))
            con_oid = None
        if in_catalog:
            self.indexes.append(
                Index(
                    oid=idx_oid,
                    table_oid=table_oid,
                    schema="public",
                    name=name,
                    definition=f"CREATE INDEX {name} ON public.{table} (id)",
                    is_unique=constraint,
                    is_primary=False,
                    is_replident=False,
                    is_clustered=False,
                    tablespace=None,
                    stat_targets=(),
                    constraint_oid=con_oid,
                    constraint_name=name if constraint else None,
                    constraint_type="u" if constraint else None,
                )
            )

    def extension(self, name: str, schema: str = "public") -> None:
        oid = self.entry(name, "EXTENSION", name, namespace=None, catalog_oid=PG_EXTENSION, deps=())
        self.extensions.append(Extension(oid=oid, name=name, version="1.0", schema=schema))

    def event_trigger(self, name: str, function: str) -> None:
        oid = self.entry(
            name,
            "EVENT TRIGGER",
            name,
            namespace=None,
            catalog_oid=PG_EVENT_TRIGGER,
            deps=(function,),
        )
        self.event_triggers.append(Named(oid=oid, name=name))

    def oid(self, label: str) -> int:
        return self.toc[self.ids[label] - 1].oid

    def catalog(self) -> Catalog:
        schemas = sorted({t.schema for t in self.tables} | {"public"})
        return Catalog(
            server_version_num=150000,
            dbname="src",
            encoding="UTF8",
            block_size=8192,
            tables=tuple(self.tables),
            indexes=tuple(self.indexes),
            sequences=(),
            extensions=tuple(self.extensions),
            schemas=tuple(Named(oid=i + 1, name=s) for i, s in enumerate(schemas)),
            event_triggers=tuple(self.event_triggers),
            settings=(),
            large_objects=0,
        )

    def scope(self, filters: str, **options: bool) -> Scope:
        parsed = parse_filters(filters, "f.ini")
        return resolve_scope(self.catalog(), parsed, self.toc, ScopeOptions(**options))

    def kept(self, scope: Scope) -> set[str]:
        """Labels of the restored entries."""
        return {label for label, dump_id in self.ids.items() if dump_id in scope.restore_ids}


def warnings_about(scope: Scope, text: str) -> list[str]:
    return [w for w in scope.warnings if text in w]


# -- [exclude-table] ----------------------------------------------------------------------
def exclude_table_source() -> Source:
    s = Source()
    s.table("keep")
    s.table("gone")
    s.table("child")
    s.index("gone_pkey", "gone", constraint=True)
    s.index("keep_pkey", "keep", constraint=True)
    s.index("gone_v_idx", "gone")
    # pg_dump makes a sequence owned by a table depend on it.
    s.entry("gone_seq", "SEQUENCE", "gone_id_seq", catalog_oid=PG_CLASS, deps=("gone",))
    s.entry("gone_seq_owned", "SEQUENCE OWNED BY", "gone_id_seq", deps=("gone_seq", "gone"))
    s.entry("gone_view", "VIEW", "gone_view", catalog_oid=PG_CLASS, deps=("gone",))
    s.entry("gone_view_2", "VIEW", "gone_view_2", catalog_oid=PG_CLASS, deps=("gone_view",))
    s.entry("keep_view", "VIEW", "keep_view", catalog_oid=PG_CLASS, deps=("keep",))
    s.entry("gone_comment", "COMMENT", "TABLE gone", deps=("gone",))
    s.entry("gone_acl", "ACL", "TABLE gone", deps=("gone",))
    s.entry("keep_acl", "ACL", "TABLE keep", deps=("keep",))
    s.entry(
        "child_gone_fk",
        "FK CONSTRAINT",
        "child child_gone_fk",
        catalog_oid=PG_CONSTRAINT,
        deps=("child", "gone", "gone_pkey"),
    )
    s.entry(
        "child_keep_fk",
        "FK CONSTRAINT",
        "child child_keep_fk",
        catalog_oid=PG_CONSTRAINT,
        deps=("child", "keep", "keep_pkey"),
    )
    s.entry(
        "gone_keep_fk",
        "FK CONSTRAINT",
        "gone gone_keep_fk",
        catalog_oid=PG_CONSTRAINT,
        deps=("gone", "keep", "keep_pkey"),
    )
    return s


def test_exclude_table_takes_its_dependents_and_reports_them() -> None:
    s = exclude_table_source()
    scope = s.scope("[exclude-table]\npublic.gone\n")
    assert s.kept(scope) == {
        "keep",
        "child",
        "keep_pkey",
        "keep_view",
        "keep_acl",
        "child_keep_fk",
    }
    assert scope.tables == {s.oid("keep"), s.oid("child")}
    assert scope.copy_tables == scope.tables
    assert {i.name for i in s.indexes if i.oid in scope.indexes} == {"keep_pkey"}
    assert warnings_about(scope, "view public.gone_view ")
    assert warnings_about(scope, "view public.gone_view_2 ")
    assert warnings_about(scope, "sequence public.gone_id_seq ")
    (fk,) = warnings_about(scope, "foreign key")
    assert fk.startswith("foreign key child_gone_fk on public.child is excluded too")
    assert "TABLE public.gone" in fk
    assert not warnings_about(scope, "gone_keep_fk")  # it goes with its own table


# -- [exclude-index] ----------------------------------------------------------------------
def exclude_index_source() -> Source:
    s = Source()
    s.table("t")
    s.index("t_v_idx", "t")
    s.index("t_code_key", "t", constraint=True)
    s.table("r")
    s.entry(
        "r_code_fk",
        "FK CONSTRAINT",
        "r r_code_fk",
        catalog_oid=PG_CONSTRAINT,
        deps=("r", "t", "t_code_key"),
    )
    # A partitioned table: its indexes are built by pg_restore, not in catalog.indexes.
    s.table("parted", relkind="p")
    s.table("parted_1", parent="parted")
    s.index("parted_w_idx", "parted", in_catalog=False)
    s.index("parted_1_w_idx", "parted_1", deps=("parted_w_idx",))
    s.entry("attach_w", "INDEX ATTACH", "parted_1_w_idx", deps=("parted_1_w_idx", "parted_w_idx"))
    s.index("parted_v_key", "parted", constraint=True, in_catalog=False)
    s.index("parted_1_v_key", "parted_1", constraint=True, deps=("parted_v_key",))
    s.table("mv", relkind="m", deps=("t",))
    s.index("mv_v_idx", "mv", in_catalog=False)
    s.index("mv_id_idx", "mv", in_catalog=False)
    return s


def test_exclude_index_plain_and_constraint() -> None:
    s = exclude_index_source()
    scope = s.scope("[exclude-index]\npublic.t_v_idx\npublic.t_code_key\n")
    assert not {"t_v_idx", "t_code_key", "r_code_fk"} & s.kept(scope)
    assert {"t", "r"} <= s.kept(scope)
    assert {i.name for i in s.indexes if i.oid in scope.indexes} == {
        "parted_1_w_idx",
        "parted_1_v_key",
    }
    (fk,) = warnings_about(scope, "foreign key")
    assert "r_code_fk on public.r" in fk and "CONSTRAINT public.t t_code_key" in fk


def test_exclude_index_built_by_pg_restore() -> None:
    """Indexes on partitioned tables and materialized views are found in the dump."""
    s = exclude_index_source()
    scope = s.scope("[exclude-index]\npublic.parted_w_idx\npublic.parted_v_key\npublic.mv_v_idx\n")
    assert not scope.warnings
    gone = {"parted_w_idx", "parted_1_w_idx", "attach_w", "parted_v_key", "parted_1_v_key"}
    assert not gone & s.kept(scope)
    assert "mv_v_idx" not in s.kept(scope)
    assert {"mv_id_idx", "t_v_idx", "t_code_key", "mv", "parted", "parted_1"} <= s.kept(scope)
    # The partitions' indexes are not built by pgferry either.
    assert {i.name for i in s.indexes if i.oid in scope.indexes} == {"t_v_idx", "t_code_key"}


def test_exclude_index_matching_nothing_is_a_warning_with_its_line() -> None:
    s = exclude_index_source()
    scope = s.scope("[exclude-index]\npublic.t_v_idx\npublic.nope\n")
    assert scope.warnings == (
        "f.ini:3: [exclude-index] public.nope matches no index on the source",
    )


# -- names that match nothing -------------------------------------------------------------
def test_names_matching_nothing_name_file_and_line() -> None:
    s = exclude_table_source()
    scope = s.scope(
        "# comment\n"
        '[exclude-table]\npublic.gone\npublic."Missing"\n'
        "[exclude-table-data]\npublic.nodata\n"
        "[exclude-schema]\nnope\n"
        "[exclude-extension]\nhstore\n"
        "[exclude-event-trigger]\nevt\n"
    )
    assert [w for w in scope.warnings if "on the source" in w] == [
        "f.ini:8: [exclude-schema] schema nope does not exist on the source",
        "f.ini:10: [exclude-extension] hstore matches nothing on the source",
        "f.ini:12: [exclude-event-trigger] evt matches nothing on the source",
        'f.ini:4: [exclude-table] public."Missing" matches no table on the source',
        "f.ini:6: [exclude-table-data] public.nodata matches no table on the source",
    ]


# -- [include-only-table], [exclude-table-data] -------------------------------------------
def partitioned_source() -> Source:
    s = Source()
    s.table("events", relkind="p")
    s.table("events_2023", parent="events")
    s.table("events_2024", relkind="p", parent="events")
    s.table("events_2024_a", parent="events_2024")
    s.table("base")
    s.table("base_child", parent="base", partition=False)  # inheritance
    s.table("other")
    return s


def test_include_only_table_takes_the_partitions_of_a_listed_parent() -> None:
    s = partitioned_source()
    scope = s.scope("[include-only-table]\npublic.events\n")
    names = {t.name for t in s.tables if t.oid in scope.tables}
    assert names == {"events", "events_2023", "events_2024", "events_2024_a"}
    assert {t.name for t in s.tables if t.oid in scope.copy_tables} == {
        "events_2023",
        "events_2024_a",
    }


def test_include_only_table_listing_a_partition_keeps_its_ancestors() -> None:
    s = partitioned_source()
    scope = s.scope("[include-only-table]\npublic.events_2024_a\n")
    names = {t.name for t in s.tables if t.oid in scope.tables}
    assert names == {"events", "events_2024", "events_2024_a"}


def test_exclude_table_data_of_a_partitioned_table_covers_its_partitions() -> None:
    s = partitioned_source()
    scope = s.scope("[exclude-table-data]\npublic.events\npublic.base\n")
    assert {t.name for t in s.tables if t.oid in scope.copy_tables} == {"base_child", "other"}
    assert len(scope.tables) == len(s.tables)


def test_exclude_table_data_of_a_matview_skips_only_its_refresh() -> None:
    s = Source()
    s.table("t")
    s.table("mv", relkind="m", deps=("t",))
    s.entry("mv_data", "MATERIALIZED VIEW DATA", "mv", catalog_oid=PG_CLASS, oid=s.oid("mv"))
    s.table("mv2", relkind="m", deps=("mv",))
    s.entry(
        "mv2_data",
        "MATERIALIZED VIEW DATA",
        "mv2",
        catalog_oid=PG_CLASS,
        oid=s.oid("mv2"),
        deps=("mv2", "mv_data"),
    )
    s.index("mv_idx", "mv", in_catalog=False)
    scope = s.scope("[exclude-table-data]\npublic.mv\n")
    # A matview over an unpopulated one cannot be refreshed either.
    assert s.kept(scope) == {"t", "mv", "mv2", "mv_idx"}
    assert scope.copy_tables == {s.oid("t")}


# -- schemas ------------------------------------------------------------------------------
def test_exclude_schema_keeps_a_schema_holding_a_kept_extension() -> None:
    s = Source()
    s.entry("ext_schema", "SCHEMA", "ext", namespace=None, catalog_oid=PG_NAMESPACE)
    s.extension("hstore", schema="ext")
    s.table("t", schema="ext")
    s.table("u")
    scope = s.scope("[exclude-schema]\next\n")
    assert s.kept(scope) == {"ext_schema", "hstore", "u"}


# -- extensions ---------------------------------------------------------------------------
def extension_source() -> Source:
    s = Source()
    s.extension("hstore")
    s.extension("citext")
    s.entry("hstore_comment", "COMMENT", "EXTENSION hstore", namespace=None, deps=("hstore",))
    s.table("uses_citext", deps=("citext",))
    s.table("uses_hstore", deps=("hstore",))
    return s


def test_exclude_extension_keeps_its_users_and_warns() -> None:
    s = extension_source()
    scope = s.scope("[exclude-extension]\nhstore\n")
    assert s.kept(scope) == {"citext", "uses_citext", "uses_hstore"}
    (warning,) = warnings_about(scope, "extension hstore is excluded")
    assert "TABLE public.uses_hstore" in warning
    assert "target already has the extension" in warning


def test_include_only_extension() -> None:
    s = extension_source()
    scope = s.scope("[include-only-extension]\nhstore\n")
    assert "citext" not in s.kept(scope)
    assert {"hstore", "hstore_comment", "uses_citext"} <= s.kept(scope)
    assert warnings_about(scope, "extension citext is excluded")


def test_skip_extensions_does_not_warn_about_users() -> None:
    s = extension_source()
    scope = s.scope("", skip_extensions=True)
    assert s.kept(scope) == {"uses_citext", "uses_hstore"}
    assert scope.warnings == ()


# -- [exclude-event-trigger] --------------------------------------------------------------
def event_trigger_source() -> Source:
    s = Source()
    for fn in ("gone_fn", "keep_fn", "shared_fn"):
        s.entry(fn, "FUNCTION", f"{fn}()", catalog_oid=PG_PROC)
    s.entry("gone_fn_comment", "COMMENT", "FUNCTION gone_fn()", deps=("gone_fn",))
    s.entry("gone_fn_acl", "ACL", "FUNCTION gone_fn()", deps=("gone_fn",))
    s.event_trigger("evt_gone", "gone_fn")
    s.event_trigger("evt_keep", "keep_fn")
    s.event_trigger("evt_shared_gone", "shared_fn")
    s.event_trigger("evt_shared_keep", "shared_fn")
    s.entry("evt_gone_comment", "COMMENT", "EVENT TRIGGER evt_gone", deps=("evt_gone",))
    return s


def test_exclude_event_trigger_takes_its_function_when_unused() -> None:
    s = event_trigger_source()
    scope = s.scope("[exclude-event-trigger]\nevt_gone\nevt_shared_gone\n")
    assert s.kept(scope) == {"keep_fn", "shared_fn", "evt_keep", "evt_shared_keep"}
    assert scope.warnings == ()


def test_exclude_event_trigger_matching_nothing() -> None:
    s = event_trigger_source()
    scope = s.scope("[exclude-event-trigger]\nnope\n")
    assert len(s.kept(scope)) == len(s.toc)
    assert scope.warnings == (
        "f.ini:2: [exclude-event-trigger] nope matches nothing on the source",
    )
