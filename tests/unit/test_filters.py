"""The filter file parser: sections, PostgreSQL identifier rules, errors, fingerprints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pgferry.catalog.filters import (
    SECTIONS,
    FilterEntry,
    FilterError,
    Filters,
    QualifiedName,
    load_filters,
    no_filters,
    parse_filters,
    quote_ident,
)
from pgferry.errors import ExitCode, InputError

Q = QualifiedName


def parse(text: str) -> Filters:
    return parse_filters(text, "filters.ini")


def parse_error(text: str) -> FilterError:
    with pytest.raises(FilterError) as info:
        parse(text)
    return info.value


def only_table(name: str) -> QualifiedName:
    """The one table a one-line [exclude-table] section with ``name`` selects."""
    (table,) = parse(f"[exclude-table]\n{name}\n").exclude_table
    return table


def only_schema(name: str) -> str:
    """The one schema a one-line [exclude-schema] section with ``name`` selects."""
    (schema,) = parse(f"[exclude-schema]\n{name}\n").exclude_schema
    return schema


# ---------------------------------------------------------------------------------------
# Sections


def test_sections_are_pgcopydbs_nine() -> None:
    assert SECTIONS == (
        "include-only-schema",
        "exclude-schema",
        "include-only-table",
        "exclude-table",
        "exclude-index",
        "exclude-table-data",
        "include-only-extension",
        "exclude-extension",
        "exclude-event-trigger",
    )


def test_every_exclude_section_is_parsed() -> None:
    filters = parse(
        """
[exclude-schema]
audit
[exclude-table]
public.t1
public.t2
[exclude-index]
public.t3_idx
[exclude-table-data]
app.big_log
[exclude-extension]
postgis
[exclude-event-trigger]
ddl_guard
"""
    )
    assert filters.exclude_schema == {"audit"}
    assert filters.exclude_table == {Q("public", "t1"), Q("public", "t2")}
    assert filters.exclude_index == {Q("public", "t3_idx")}
    assert filters.exclude_table_data == {Q("app", "big_log")}
    assert filters.exclude_extension == {"postgis"}
    assert filters.exclude_event_trigger == {"ddl_guard"}
    assert filters.include_only_schema == frozenset()
    assert filters.include_only_table == frozenset()
    assert filters.include_only_extension == frozenset()
    assert filters.warnings == ()
    assert filters.path == "filters.ini"
    assert not filters.is_empty()


def test_every_include_only_section_is_parsed() -> None:
    filters = parse(
        """
[include-only-schema]
app
[include-only-table]
app.orders
[include-only-extension]
pgcrypto
"""
    )
    assert filters.include_only_schema == {"app"}
    assert filters.include_only_table == {Q("app", "orders")}
    assert filters.include_only_extension == {"pgcrypto"}
    assert filters.exclude_schema == frozenset()
    assert filters.exclude_table == frozenset()


def test_entries_keep_section_line_and_file_order() -> None:
    filters = parse("[exclude-table]\npublic.b\n\npublic.a\n[exclude-schema]\nlogs\n")
    assert filters.entries == (
        FilterEntry(section="exclude-table", line=2, schema="public", name="b"),
        FilterEntry(section="exclude-table", line=4, schema="public", name="a"),
        FilterEntry(section="exclude-schema", line=6, schema=None, name="logs"),
    )


def test_duplicate_section_headers_are_merged() -> None:
    filters = parse("[exclude-table]\npublic.a\n[exclude-schema]\nx\n[exclude-table]\npublic.b\n")
    assert filters.exclude_table == {Q("public", "a"), Q("public", "b")}
    assert filters.exclude_schema == {"x"}


def test_duplicate_entry_is_kept_once_with_a_warning() -> None:
    filters = parse("[exclude-table]\npublic.a\nPUBLIC.a\n")
    assert filters.exclude_table == {Q("public", "a")}
    assert any(
        w.startswith("filters.ini:3: duplicate entry public.a in [exclude-table] (first on line 2)")
        for w in filters.warnings
    )


def test_empty_section_is_accepted() -> None:
    filters = parse("[exclude-table]\n\n# nothing yet\n")
    assert filters.is_empty()
    assert filters.exclude_table == frozenset()


def test_section_header_may_have_inner_and_outer_spaces() -> None:
    assert parse("  [ exclude-schema ]  \nx\n").exclude_schema == {"x"}


# ---------------------------------------------------------------------------------------
# Comments, blank lines, whitespace, line endings


def test_comments_are_ignored_anywhere_including_inside_sections() -> None:
    filters = parse(
        """# leading comment
; another style
[exclude-table]
# a comment inside a section is not a table name (pgcopydb would read it as one)
public.t1
   ; indented comment
\t# tab-indented comment
public.t2
"""
    )
    assert filters.exclude_table == {Q("public", "t1"), Q("public", "t2")}
    assert [e.line for e in filters.entries] == [5, 8]


def test_whitespace_is_trimmed_and_crlf_accepted() -> None:
    filters = parse("[exclude-table]\r\n   public.t1 \t\r\n\r\n  public.t2\r\n")
    assert filters.exclude_table == {Q("public", "t1"), Q("public", "t2")}
    assert [e.line for e in filters.entries] == [2, 4]


def test_only_comments_is_empty() -> None:
    filters = parse("# nothing\n; nothing\n\n")
    assert filters.is_empty()
    assert filters.fingerprint() == no_filters().fingerprint()


# ---------------------------------------------------------------------------------------
# Identifiers: folding and quoting


def test_unquoted_names_are_folded_to_lower_case_with_a_warning() -> None:
    filters = parse("[exclude-table]\nPublic.MyTable\n")
    assert filters.exclude_table == {Q("public", "mytable")}
    assert filters.warnings == (
        "filters.ini:2: unquoted name Public.MyTable is folded to lower case "
        '(public.mytable) as PostgreSQL does; write "Public"."MyTable" to match a '
        "mixed-case name",
    )


def test_folding_applies_to_single_name_sections() -> None:
    filters = parse("[exclude-schema]\nAudit\n")
    assert filters.exclude_schema == {"audit"}
    assert len(filters.warnings) == 1
    assert 'write "Audit"' in filters.warnings[0]


def test_lower_case_unquoted_names_give_no_warning() -> None:
    assert parse("[exclude-table]\npublic.my_table$2\n").warnings == ()


def test_folding_only_touches_ascii_letters() -> None:
    # Like PostgreSQL in a UTF-8 database: multibyte letters keep their case.
    assert only_table("Été.Ÿ") == Q("Été", "Ÿ")
    assert only_table("ÉTÉ.X") == Q("ÉtÉ", "x")


def test_quoted_names_keep_case() -> None:
    assert only_table('"Public"."MyTable"') == Q("Public", "MyTable")
    assert only_table('public."MyTable"') == Q("public", "MyTable")
    assert parse('[exclude-table]\n"Public"."MyTable"\n').warnings == ()


def test_quoted_names_may_contain_dots_spaces_and_equal_signs() -> None:
    assert only_table('"my.schema"."t.1"') == Q("my.schema", "t.1")
    assert only_table('"My Schema"."My Table"') == Q("My Schema", "My Table")
    assert only_table('public."a=b: c"') == Q("public", "a=b: c")
    assert only_schema('"a.b"') == "a.b"


def test_doubled_quotes_stand_for_one_quote() -> None:
    assert only_table('"My ""Schema"""."T.1"') == Q('My "Schema"', "T.1")
    assert only_schema('""""') == '"'


def test_quoted_hash_and_semicolon_are_part_of_the_name() -> None:
    assert only_table('public."#t;1"') == Q("public", "#t;1")


def test_unicode_names() -> None:
    assert only_table("données.café") == Q("données", "café")
    assert only_table('"Ω"."表"') == Q("Ω", "表")


def test_identifier_of_exactly_63_bytes_is_accepted() -> None:
    name = "a" * 63
    assert only_table(f"public.{name}") == Q("public", name)


def test_identifier_of_64_bytes_is_rejected() -> None:
    error = parse_error(f"[exclude-table]\npublic.{'a' * 64}\n")
    assert error.message.startswith("filters.ini:2: identifier longer than 63 bytes: ")
    assert "(64 bytes in UTF-8)" in error.message


def test_length_limit_counts_utf8_bytes_not_characters() -> None:
    accepted = "é" * 31 + "a"  # 63 bytes, 32 characters
    assert only_schema(f'"{accepted}"') == accepted
    rejected = "é" * 32  # 64 bytes, 32 characters
    error = parse_error(f'[exclude-schema]\n"{rejected}"\n')
    assert error.message.startswith("filters.ini:2: identifier longer than 63 bytes")
    assert "(64 bytes in UTF-8)" in error.message


def test_length_limit_applies_to_the_schema_part_too() -> None:
    error = parse_error(f'[exclude-table]\n"{"S" * 64}".t\n')
    assert error.message.startswith("filters.ini:2: identifier longer than 63 bytes")


# ---------------------------------------------------------------------------------------
# quote_ident and display


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("public", "public"),
        ("_t1", "_t1"),
        ("t$1", "t$1"),
        ("MyTable", '"MyTable"'),
        ("1abc", '"1abc"'),
        ("my table", '"my table"'),
        ("a.b", '"a.b"'),
        ('say "hi"', '"say ""hi"""'),
        ("café", '"café"'),
        ("", '""'),
    ],
)
def test_quote_ident(name: str, shown: str) -> None:
    assert quote_ident(name) == shown


def test_entry_str_is_the_display_form() -> None:
    filters = parse('[exclude-table]\npublic."T"\n[exclude-schema]\n"A b"\n')
    assert [str(entry) for entry in filters.entries] == ['public."T"', '"A b"']


def test_qualified_name_str_quotes_only_when_needed() -> None:
    assert str(Q("public", "MyTable")) == 'public."MyTable"'
    assert str(Q('My "S"', "t.1")) == '"My ""S"""."t.1"'
    assert str(Q("public", "t")) == "public.t"


def test_display_form_parses_back_to_the_same_name() -> None:
    for name in [Q("public", "MyTable"), Q('My "S"', "t.1"), Q("x y", "Ω")]:
        assert only_table(str(name)) == name


# ---------------------------------------------------------------------------------------
# Errors: file and line in every message


def test_error_is_an_input_error_with_its_exit_code() -> None:
    error = parse_error("[exclude-tables]\n")
    assert isinstance(error, InputError)
    assert error.exit_code is ExitCode.BAD_INPUT
    assert error.path == "filters.ini"
    assert error.line == 1


def test_unknown_section() -> None:
    error = parse_error("[exclude-table]\npublic.a\n\n# x\n\n\n[exclude-tables]\npublic.b\n")
    assert error.message == (
        "filters.ini:7: unknown section [exclude-tables] (expected one of: "
        "include-only-schema, exclude-schema, include-only-table, exclude-table, "
        "exclude-index, exclude-table-data, include-only-extension, exclude-extension, "
        "exclude-event-trigger)"
    )
    assert error.fix == "did you mean [exclude-table]?"


def test_unknown_section_without_close_match_has_no_suggestion() -> None:
    error = parse_error("[zzz]\n")
    assert error.message.startswith("filters.ini:1: unknown section [zzz] (expected one of:")
    assert error.fix is None


def test_section_names_are_case_sensitive() -> None:
    assert parse_error("[Exclude-Table]\n").message.startswith(
        "filters.ini:1: unknown section [Exclude-Table]"
    )


def test_malformed_section_header() -> None:
    error = parse_error("# c\n[exclude-table\n")
    assert error.message == 'filters.ini:2: malformed section header "[exclude-table" (missing "]")'


def test_text_after_section_header() -> None:
    error = parse_error("[exclude-table] # tables\n")
    assert error.message == 'filters.ini:1: unexpected text after section header: "# tables"'


def test_table_name_must_be_schema_qualified() -> None:
    error = parse_error("# c\n[exclude-table]\nfoo\n")
    assert (
        error.message == 'filters.ini:3: table name "foo" must be schema-qualified (schema.table)'
    )
    assert error.fix is not None and "public.foo" in error.fix


@pytest.mark.parametrize("section", ["include-only-table", "exclude-table-data"])
def test_every_table_section_requires_a_schema(section: str) -> None:
    error = parse_error(f"[{section}]\nfoo\n")
    assert (
        error.message == 'filters.ini:2: table name "foo" must be schema-qualified (schema.table)'
    )


def test_index_name_must_be_schema_qualified() -> None:
    error = parse_error("[exclude-index]\nfoo_idx\n")
    assert error.message == (
        'filters.ini:2: index name "foo_idx" must be schema-qualified (schema.index)'
    )


def test_name_outside_of_any_section() -> None:
    error = parse_error("# header\n\n\npublic.t\n[exclude-table]\n")
    assert error.message == "filters.ini:4: name outside of any section"


@pytest.mark.parametrize("name", ['"public.t', 'public."t', '"My ""Schema.t', 'public."t""'])
def test_unterminated_quoted_identifier(name: str) -> None:
    error = parse_error(f"[exclude-table]\npublic.a\n{name}\n")
    assert error.message == "filters.ini:3: unterminated quoted identifier"


@pytest.mark.parametrize("name", [".t", "public.", "public..t", '"".t', 'public.""'])
def test_empty_identifier(name: str) -> None:
    error = parse_error(f"[exclude-table]\n{name}\n")
    assert error.message.startswith("filters.ini:2: empty identifier")


def test_empty_identifier_in_a_schema_section() -> None:
    assert parse_error('[exclude-schema]\n""\n').message.startswith(
        "filters.ini:2: empty identifier"
    )


def test_too_many_dots_in_a_table_name() -> None:
    error = parse_error("[exclude-table]\ndb.public.t\n")
    assert error.message == 'filters.ini:2: too many dots in "db.public.t": expected schema.table'


def test_too_many_dots_in_a_single_name() -> None:
    error = parse_error("[exclude-schema]\na.b\n")
    assert error.message == (
        'filters.ini:2: too many dots in "a.b": [exclude-schema] takes a single name'
    )


@pytest.mark.parametrize("line", ["public.t = 1", "public.t=", "public.t: yes", "key: value"])
def test_key_value_lines_are_rejected(line: str) -> None:
    error = parse_error(f"[exclude-table]\n{line}\n")
    assert error.message.startswith("filters.ini:2: unexpected ")
    assert "outside quotes" in error.message
    assert "not key = value settings" in error.message


def test_trailing_comment_on_a_name_line_is_rejected() -> None:
    for line in ["public.t # old table", "public.t#old", "public.t   ; old"]:
        error = parse_error(f"[exclude-table]\n{line}\n")
        assert error.message.startswith("filters.ini:2: unexpected ")
        assert error.message.endswith(f'in "{line}": comments must be on their own line')


def test_unquoted_space_dash_and_patterns_are_rejected() -> None:
    assert parse_error("[exclude-table]\npublic.my table\n").message == (
        'filters.ini:2: unexpected space in "public.my table"'
    )
    assert parse_error("[exclude-table]\npublic.my-table\n").message == (
        'filters.ini:2: invalid character "-" in unquoted name "public.my-table"'
    )
    assert parse_error("[exclude-table]\npublic.*\n").message == (
        'filters.ini:2: patterns are not supported: "public.*"'
    )
    assert parse_error("[exclude-table]\n~/^tmp_/\n").message == (
        'filters.ini:2: regular expressions are not supported: "~/^tmp_/"'
    )


def test_unquoted_name_cannot_start_with_a_digit() -> None:
    error = parse_error("[exclude-table]\npublic.1t\n")
    assert error.message == 'filters.ini:2: unquoted name "1t" cannot start with "1"'
    assert only_table('public."1t"') == Q("public", "1t")


def test_text_after_a_quoted_identifier_is_rejected() -> None:
    error = parse_error('[exclude-table]\n"a"b.t\n')
    assert error.message == 'filters.ini:2: unexpected text after quoted identifier in ""a"b.t"'


def test_quote_in_the_middle_of_an_unquoted_name_is_rejected() -> None:
    error = parse_error('[exclude-table]\npublic.a"b"\n')
    assert error.message == 'filters.ini:2: unexpected quote in the middle of "public.a"b""'


def test_first_error_wins_and_names_its_line() -> None:
    error = parse_error("[exclude-table]\npublic.ok\nbad\n[nope]\n")
    assert error.message.startswith("filters.ini:3: ")


# ---------------------------------------------------------------------------------------
# Combination rules


@pytest.mark.parametrize(
    ("include", "exclude", "name"),
    [
        ("include-only-schema", "exclude-schema", "s"),
        ("include-only-table", "exclude-table", "s.t"),
        ("include-only-extension", "exclude-extension", "e"),
    ],
)
def test_include_only_and_exclude_of_the_same_kind_conflict(
    include: str, exclude: str, name: str
) -> None:
    error = parse_error(f"# c\n[{include}]\n{name}\n\n[{exclude}]\n{name}2\n")
    assert error.message == (
        f"filters.ini:5: [{include}] (line 2) cannot be combined with [{exclude}] (line 5)"
    )


def test_conflict_names_the_later_header_whatever_the_order() -> None:
    error = parse_error("[exclude-schema]\na\n[include-only-schema]\nb\n")
    assert error.message == (
        "filters.ini:3: [include-only-schema] (line 3) cannot be combined with "
        "[exclude-schema] (line 1)"
    )


def test_empty_section_does_not_conflict() -> None:
    filters = parse("[include-only-schema]\napp\n[exclude-schema]\n# none\n")
    assert filters.include_only_schema == {"app"}


def test_include_only_table_with_exclude_schema_is_a_warning() -> None:
    filters = parse("[include-only-table]\napp.orders\n[exclude-schema]\naudit\n")
    assert filters.include_only_table == {Q("app", "orders")}
    assert filters.exclude_schema == {"audit"}
    assert filters.warnings == (
        "filters.ini:3: [include-only-table] (line 1) is combined with [exclude-schema] "
        "(line 3): make sure not to exclude the schema of a table you want to include",
    )


def test_warning_names_included_tables_in_excluded_schemas() -> None:
    filters = parse("[include-only-table]\naudit.log\napp.t\n[exclude-schema]\naudit\n")
    (warning,) = filters.warnings
    assert warning.endswith("these included tables are in an excluded schema: audit.log")


@pytest.mark.parametrize(
    "text",
    [
        "[include-only-schema]\napp\n[include-only-table]\napp.t\n",
        "[include-only-schema]\napp\n[exclude-table]\napp.t\n",
        "[include-only-table]\napp.t\n[exclude-table-data]\napp.t\n[exclude-index]\napp.i\n",
        "[exclude-schema]\na\n[exclude-table]\nb.t\n[exclude-extension]\nx\n",
    ],
)
def test_other_combinations_are_allowed_silently(text: str) -> None:
    filters = parse(text)
    assert not filters.is_empty()
    assert filters.warnings == ()


# ---------------------------------------------------------------------------------------
# Fingerprint


SAMPLE = """
[exclude-table]
public.t1
public."T2"
[exclude-schema]
audit
"""


def test_fingerprint_is_a_sha256_hex_digest() -> None:
    fingerprint = parse(SAMPLE).fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)
    assert fingerprint == parse(SAMPLE).fingerprint()


def test_fingerprint_ignores_order_comments_whitespace_quoting_and_path() -> None:
    reordered = """# same content, written differently
[exclude-schema]
  ; a comment
  "audit"

[exclude-table]
"public"."T2"
PUBLIC.T1
public.t1
"""
    assert parse_filters(reordered, "other.ini").fingerprint() == parse(SAMPLE).fingerprint()


def test_fingerprint_changes_with_content() -> None:
    base = parse(SAMPLE).fingerprint()
    assert parse(SAMPLE + "[exclude-table]\npublic.t3\n").fingerprint() != base
    # Same name, other section.
    moved = SAMPLE.replace("[exclude-table]", "[exclude-table-data]")
    assert parse(moved).fingerprint() != base
    # Case matters once quoted.
    assert parse(SAMPLE.replace('"T2"', '"t2"')).fingerprint() != base
    # A dot inside a quoted name is not a schema separator.
    one = parse('[exclude-table]\n"a.b".c\n').fingerprint()
    other = parse('[exclude-table]\na."b.c"\n').fingerprint()
    assert one != other


def test_empty_filters_fingerprint_is_stable_and_distinct() -> None:
    assert no_filters().fingerprint() == no_filters().fingerprint()
    assert no_filters().fingerprint() != parse(SAMPLE).fingerprint()


# ---------------------------------------------------------------------------------------
# JSON round trip


def test_json_round_trip() -> None:
    filters = parse(
        '[include-only-table]\nPublic."My ""T"""\n[exclude-schema]\naudit\n'
        "[exclude-event-trigger]\nguard\n"
    )
    data = filters.to_json()
    restored = Filters.from_json(json.loads(json.dumps(data)))
    assert restored == filters
    assert restored.fingerprint() == filters.fingerprint()
    assert restored.warnings == filters.warnings
    assert len(restored.warnings) == 2  # folding of Public, and the combination warning


def test_json_round_trip_of_no_filters() -> None:
    restored = Filters.from_json(no_filters().to_json())
    assert restored == no_filters()
    assert restored.path is None
    assert restored.is_empty()


def test_to_json_shape() -> None:
    data = parse("[exclude-table]\npublic.t\n").to_json()
    assert data == {
        "format": 1,
        "path": "filters.ini",
        "entries": [{"section": "exclude-table", "line": 2, "schema": "public", "name": "t"}],
        "warnings": [],
    }


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"format": 2, "path": None, "entries": [], "warnings": []},
        {"format": 1, "path": 3, "entries": [], "warnings": []},
        {"format": 1, "path": None, "entries": {}, "warnings": []},
        {"format": 1, "path": None, "entries": [], "warnings": [1]},
        {"format": 1, "path": None, "entries": ["x"], "warnings": []},
        {
            "format": 1,
            "path": None,
            "entries": [{"section": "nope", "line": 1, "schema": None, "name": "x"}],
        },
        {
            "format": 1,
            "path": None,
            "entries": [{"section": "exclude-table", "line": 1, "schema": None, "name": "x"}],
        },
        {
            "format": 1,
            "path": None,
            "entries": [{"section": "exclude-schema", "line": 1, "schema": "s", "name": "x"}],
        },
        {
            "format": 1,
            "path": None,
            "entries": [{"section": "exclude-schema", "line": 0, "schema": None, "name": "x"}],
        },
        {
            "format": 1,
            "path": None,
            "entries": [{"section": "exclude-schema", "line": 1, "schema": None, "name": ""}],
        },
    ],
)
def test_from_json_rejects_malformed_data(data: dict[str, object]) -> None:
    with pytest.raises(FilterError) as info:
        Filters.from_json(data)
    assert info.value.message.startswith("invalid stored filters: ")


# ---------------------------------------------------------------------------------------
# describe_difference


def test_describe_difference_lists_added_and_removed_names_by_section() -> None:
    stored = parse("[exclude-table]\npublic.t1\npublic.t3\n[exclude-schema]\naudit\n")
    given = parse('[exclude-table]\npublic.t1\npublic.t2\npublic."T4"\n[exclude-schema]\naudit\n')
    assert stored.describe_difference(given) == [
        'exclude-table: added public."T4"',
        "exclude-table: added public.t2",
        "exclude-table: removed public.t3",
    ]
    assert given.describe_difference(stored) == [
        "exclude-table: added public.t3",
        'exclude-table: removed public."T4"',
        "exclude-table: removed public.t2",
    ]


def test_describe_difference_follows_section_order_and_single_names() -> None:
    stored = parse("[exclude-extension]\npostgis\n")
    given = parse('[exclude-event-trigger]\nGuard\n[exclude-schema]\n"Logs"\n')
    assert stored.describe_difference(given) == [
        'exclude-schema: added "Logs"',
        "exclude-extension: removed postgis",
        "exclude-event-trigger: added guard",
    ]


def test_no_difference_between_equivalent_filters() -> None:
    assert parse(SAMPLE).describe_difference(parse(SAMPLE.replace("t1", "T1"))) == []
    assert no_filters().describe_difference(no_filters()) == []


def test_difference_from_no_filters() -> None:
    assert no_filters().describe_difference(parse("[exclude-index]\npublic.i\n")) == [
        "exclude-index: added public.i"
    ]


# ---------------------------------------------------------------------------------------
# load_filters


def test_load_filters_reads_the_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "filters.ini"
    path.write_text("[exclude-table]\npublic.café\n", encoding="utf-8")
    filters = load_filters(path)
    assert filters.exclude_table == {Q("public", "café")}
    assert filters.path == str(path)


def test_load_filters_errors_name_the_given_path(tmp_path: Path) -> None:
    path = tmp_path / "filters.ini"
    path.write_text("[exclude-table]\n\nfoo\n", encoding="utf-8")
    with pytest.raises(FilterError) as info:
        load_filters(path)
    assert info.value.message == (
        f'{path}:3: table name "foo" must be schema-qualified (schema.table)'
    )


def test_load_filters_skips_a_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "filters.ini"
    path.write_bytes(b"\xef\xbb\xbf[exclude-schema]\naudit\n")
    assert load_filters(path).exclude_schema == {"audit"}


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.ini"
    with pytest.raises(FilterError) as info:
        load_filters(path)
    assert info.value.message == f"cannot read filter file {path}: No such file or directory"
    assert info.value.exit_code is ExitCode.BAD_INPUT


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(FilterError) as info:
        load_filters(tmp_path)
    assert info.value.message.startswith(f"cannot read filter file {tmp_path}: ")


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.ini"
    path.write_bytes("[exclude-table]\n# ok\npublic.caf\u00e9\n".encode("latin-1"))
    with pytest.raises(FilterError) as info:
        load_filters(path)
    assert info.value.message == f"{path}:3: invalid UTF-8 (byte 0xe9 at column 11)"
    assert info.value.line == 3


# ---------------------------------------------------------------------------------------
# no_filters


def test_no_filters_is_empty() -> None:
    filters = no_filters()
    assert filters.is_empty()
    assert filters.path is None
    assert filters.entries == ()
    assert filters.warnings == ()
    assert filters.exclude_table == frozenset()
    assert filters.include_only_schema == frozenset()
