"""The filter file (``--filters``): pgcopydb's INI format, parsed strictly.

Each section lists object names, one a line, with no values. Names follow PostgreSQL
identifier syntax: unquoted parts are folded to lower case, double-quoted parts keep their
case and may contain dots, spaces and doubled quotes. Differences from pgcopydb, all on the
side of telling the user early and precisely (file, line, reason):

- comment lines (``#`` or ``;``) are accepted anywhere, including inside sections;
- unknown sections, ``key = value`` lines and malformed names are errors;
- unquoted names are case-folded like PostgreSQL does (pgcopydb compares them verbatim),
  with a warning when folding changed a name;
- names longer than 63 bytes are rejected instead of being truncated.

Parsing is pure: matching names against the source catalog happens elsewhere.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgferry.errors import InputError

SECTIONS: tuple[str, ...] = (
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

# Sections whose entries are schema-qualified (schema.name); the others take one identifier.
TABLE_SECTIONS: frozenset[str] = frozenset(
    {"include-only-table", "exclude-table", "exclude-index", "exclude-table-data"}
)

# PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes; we refuse instead.
MAX_IDENTIFIER_BYTES = 63

# Pairs of sections that cannot both have entries (pgcopydb rejects them too).
_CONFLICTS: tuple[tuple[str, str], ...] = (
    ("include-only-schema", "exclude-schema"),
    ("include-only-table", "exclude-table"),
    ("include-only-extension", "exclude-extension"),
)

_JSON_FORMAT = 1
_FINGERPRINT_FORMAT = "pgferry-filters-v1"
_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class FilterError(InputError):
    """A filter file that cannot be used; the message names the file and the line."""

    def __init__(
        self,
        reason: str,
        fix: str | None = None,
        *,
        path: str | None = None,
        line: int | None = None,
    ) -> None:
        message = f"{path}:{line}: {reason}" if path is not None and line is not None else reason
        super().__init__(message, fix)
        self.reason = reason
        self.path = path
        self.line = line


class _Problem(Exception):
    """A problem on the current line; parse_filters adds the file name and line number."""

    def __init__(self, reason: str, fix: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


def quote_ident(name: str) -> str:
    """Quote an identifier the way PostgreSQL would need it, for display.

    Plain lower-case names are shown as they are; anything else is double-quoted with
    inner double quotes doubled, so the result can be pasted back into a filter file.
    """
    if _PLAIN_IDENT.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, order=True)
class QualifiedName:
    """A schema-qualified object name, both parts as stored in the catalog."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


@dataclass(frozen=True)
class FilterEntry:
    """One name listed in one section of the filter file."""

    section: str
    line: int
    schema: str | None  # set for TABLE_SECTIONS, None for the single-identifier sections
    name: str

    def key(self) -> str | QualifiedName:
        """The value this entry contributes to its section's set."""
        if self.schema is None:
            return self.name
        return QualifiedName(self.schema, self.name)

    def __str__(self) -> str:
        return str(self.key()) if self.schema is not None else quote_ident(self.name)


@dataclass(frozen=True)
class Filters:
    """The parsed filter file: its entries in file order and the warnings it raised."""

    path: str | None
    entries: tuple[FilterEntry, ...]
    warnings: tuple[str, ...] = ()

    def _entries(self, section: str) -> Iterator[FilterEntry]:
        return (entry for entry in self.entries if entry.section == section)

    def _names(self, section: str) -> frozenset[str]:
        return frozenset(entry.name for entry in self._entries(section))

    def _qualified(self, section: str) -> frozenset[QualifiedName]:
        return frozenset(
            QualifiedName(entry.schema, entry.name)
            for entry in self._entries(section)
            if entry.schema is not None
        )

    def _keys(self, section: str) -> list[str | QualifiedName]:
        """The distinct values of one section, sorted."""
        if section in TABLE_SECTIONS:
            return sorted(self._qualified(section))
        return sorted(self._names(section))

    @property
    def include_only_schema(self) -> frozenset[str]:
        """Schemas to keep; everything outside them is skipped."""
        return self._names("include-only-schema")

    @property
    def exclude_schema(self) -> frozenset[str]:
        """Schemas whose objects are all skipped."""
        return self._names("exclude-schema")

    @property
    def include_only_table(self) -> frozenset[QualifiedName]:
        """The only tables (and materialized views) to migrate."""
        return self._qualified("include-only-table")

    @property
    def exclude_table(self) -> frozenset[QualifiedName]:
        """Tables skipped entirely, with their indexes and dependents."""
        return self._qualified("exclude-table")

    @property
    def exclude_table_data(self) -> frozenset[QualifiedName]:
        """Tables created on the target but with no rows copied."""
        return self._qualified("exclude-table-data")

    @property
    def exclude_index(self) -> frozenset[QualifiedName]:
        """Indexes (schema.index) not built on the target."""
        return self._qualified("exclude-index")

    @property
    def include_only_extension(self) -> frozenset[str]:
        """The only extensions to migrate."""
        return self._names("include-only-extension")

    @property
    def exclude_extension(self) -> frozenset[str]:
        """Extensions skipped, with every object depending on them."""
        return self._names("exclude-extension")

    def keeps_extension(self, name: str) -> bool:
        """Whether the extension is migrated (include-only-extension, exclude-extension)."""
        if name in self.exclude_extension:
            return False
        return not self.include_only_extension or name in self.include_only_extension

    @property
    def exclude_event_trigger(self) -> frozenset[str]:
        """Event triggers skipped."""
        return self._names("exclude-event-trigger")

    def is_empty(self) -> bool:
        """True when the filters select everything (no entries at all)."""
        return not self.entries

    def fingerprint(self) -> str:
        """A stable sha256 of the content, to tell whether --resume got the same filters.

        Only sections and distinct names count: order, comments, whitespace, duplicates,
        line numbers, the file's path and quoting that does not change a name do not.
        """
        content = {
            section: [_key_json(key) for key in self._keys(section)]
            for section in SECTIONS
            if any(True for _ in self._entries(section))
        }
        canonical = json.dumps(
            [_FINGERPRINT_FORMAT, content],
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict, for the state store; from_json reads it back."""
        return {
            "format": _JSON_FORMAT,
            "path": self.path,
            "entries": [
                {
                    "section": entry.section,
                    "line": entry.line,
                    "schema": entry.schema,
                    "name": entry.name,
                }
                for entry in self.entries
            ],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Filters:
        """Rebuild filters saved with to_json; raise FilterError if the data is not that."""
        if not isinstance(data, Mapping) or data.get("format") != _JSON_FORMAT:
            raise FilterError(f"invalid stored filters: expected format {_JSON_FORMAT}")
        path = data.get("path")
        raw_entries = data.get("entries")
        raw_warnings = data.get("warnings", [])
        if path is not None and not isinstance(path, str):
            raise FilterError("invalid stored filters: path is not a string")
        if not isinstance(raw_entries, list):
            raise FilterError("invalid stored filters: entries is not a list")
        if not isinstance(raw_warnings, list) or not all(isinstance(w, str) for w in raw_warnings):
            raise FilterError("invalid stored filters: warnings is not a list of strings")
        entries = tuple(_entry_from_json(raw) for raw in raw_entries)
        return cls(path=path, entries=entries, warnings=tuple(raw_warnings))

    def describe_difference(self, other: Filters) -> list[str]:
        """What changes from these filters to ``other``, one line per name.

        "added" means listed in ``other`` only, "removed" listed here only; an empty list
        means both select the same objects (same fingerprint).
        """
        lines: list[str] = []
        for section in SECTIONS:
            mine = set(self._keys(section))
            theirs = set(other._keys(section))
            lines.extend(f"{section}: added {_display(key)}" for key in sorted(theirs - mine))
            lines.extend(f"{section}: removed {_display(key)}" for key in sorted(mine - theirs))
        return lines


def no_filters() -> Filters:
    """Filters that select everything (no --filters given)."""
    return Filters(path=None, entries=(), warnings=())


def load_filters(path: str | os.PathLike[str]) -> Filters:
    """Read and parse a filter file (UTF-8); any problem is a FilterError naming the file."""
    display = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FilterError(
            f"cannot read filter file {display}: {exc.strerror or exc}", path=display
        ) from exc
    if data.startswith(b"\xef\xbb\xbf"):  # a BOM, as some Windows editors write
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise FilterError(
            f"invalid UTF-8 (byte 0x{data[exc.start]:02x} at column {column})",
            "save the filter file as UTF-8",
            path=display,
            line=line,
        ) from exc
    return parse_filters(text, display)


def parse_filters(text: str, path: str = "<filters>") -> Filters:
    """Parse the content of a filter file; ``path`` is only used in messages and kept."""
    entries: list[FilterEntry] = []
    warnings: list[str] = []
    section: str | None = None
    header_line = 0
    first_header: dict[str, int] = {}  # section -> header line above its first entry
    seen: dict[tuple[str, str | QualifiedName], int] = {}

    for number, raw in enumerate(_LINE_BREAK.split(text), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        try:
            if line.startswith("["):
                section = _parse_header(line)
                header_line = number
                continue
            if section is None:
                raise _Problem(
                    "name outside of any section",
                    f"put it under a section header such as [{SECTIONS[3]}]",
                )
            entry, folded_from = _parse_entry(section, number, line)
        except _Problem as problem:
            raise FilterError(problem.reason, problem.fix, path=path, line=number) from None

        if folded_from is not None:
            warnings.append(
                f"{path}:{number}: unquoted name {line} is folded to lower case ({entry}) as "
                f"PostgreSQL does; write {folded_from} to match a mixed-case name"
            )
        key = (section, entry.key())
        if key in seen:
            warnings.append(
                f"{path}:{number}: duplicate entry {entry} in [{section}] "
                f"(first on line {seen[key]})"
            )
        else:
            seen[key] = number
        first_header.setdefault(section, header_line)
        entries.append(entry)

    _check_conflicts(first_header, path)
    filters = Filters(path=path, entries=tuple(entries))
    warnings.extend(_combination_warnings(filters, first_header, path))
    return Filters(path=path, entries=filters.entries, warnings=tuple(warnings))


def _parse_header(line: str) -> str:
    """The section named by a ``[section]`` line (already stripped)."""
    close = line.find("]")
    if close < 0:
        raise _Problem(f'malformed section header "{line}" (missing "]")')
    if close != len(line) - 1:
        raise _Problem(
            f'unexpected text after section header: "{line[close + 1 :].strip()}"',
            "comments must be on their own line",
        )
    name = line[1:close].strip()
    if name not in SECTIONS:
        close_matches = difflib.get_close_matches(name, SECTIONS, n=1)
        fix = f"did you mean [{close_matches[0]}]?" if close_matches else None
        raise _Problem(f"unknown section [{name}] (expected one of: {', '.join(SECTIONS)})", fix)
    return name


@dataclass(frozen=True)
class _Part:
    """One identifier of a name: its value, as typed, and whether case folding changed it."""

    value: str
    typed: str
    folded: bool


def _parse_entry(section: str, number: int, line: str) -> tuple[FilterEntry, str | None]:
    """One entry, and the name to write instead when unquoted upper case was folded."""
    parts = _split_identifiers(line)
    if section in TABLE_SECTIONS:
        kind = "index" if section == "exclude-index" else "table"
        if len(parts) == 1:
            raise _Problem(
                f'{kind} name "{line}" must be schema-qualified (schema.{kind})',
                f"write it as public.{quote_ident(parts[0].value)} (or its real schema)",
            )
        if len(parts) > 2:
            raise _Problem(
                f'too many dots in "{line}": expected schema.{kind}',
                'quote a name that contains dots, e.g. public."my.table"',
            )
        schema, name = parts[0].value, parts[1].value
        entry = FilterEntry(section=section, line=number, schema=schema, name=name)
    else:
        if len(parts) > 1:
            raise _Problem(
                f'too many dots in "{line}": [{section}] takes a single name',
                'quote a name that contains dots, e.g. "my.schema"',
            )
        entry = FilterEntry(section=section, line=number, schema=None, name=parts[0].value)

    if not any(part.folded for part in parts):
        return entry, None
    typed = ".".join(quote_ident(part.typed if part.folded else part.value) for part in parts)
    return entry, typed


def _split_identifiers(text: str) -> list[_Part]:
    """Split ``a."B.c"`` into its identifiers.

    Follows PostgreSQL: unquoted identifiers are folded to lower case (ASCII letters only,
    as in a UTF-8 database) and may contain letters, digits, ``_``, ``$`` and non-ASCII
    characters; quoted ones keep everything, with ``""`` standing for one quote.
    """
    parts: list[_Part] = []
    pos = 0
    end = len(text)
    while True:
        if pos < end and text[pos] == '"':
            value, pos = _read_quoted(text, pos)
            part = _Part(value, value, folded=False)
        else:
            start = pos
            while pos < end and _is_ident_char(text[pos]):
                pos += 1
            value = text[start:pos]
            if not value:
                if pos < end and text[pos] != ".":
                    raise _bad_character(text, pos)
                raise _Problem(f'empty identifier in "{text}"')
            if value[0] in "0123456789$":
                raise _Problem(
                    f'unquoted name "{value}" cannot start with "{value[0]}"',
                    f"quote it: {quote_ident(value)}",
                )
            lowered = value.translate(_ASCII_LOWER)
            part = _Part(lowered, value, folded=lowered != value)
        _check_length(part.value)
        parts.append(part)
        if pos == end:
            return parts
        if text[pos] != ".":
            if text[pos - 1] == '"':
                raise _Problem(
                    f'unexpected text after quoted identifier in "{text}"',
                    'use a dot between schema and name, e.g. "My Schema"."My Table"',
                )
            raise _bad_character(text, pos)
        pos += 1
        if pos == end:
            raise _Problem(f'empty identifier in "{text}"')


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """Read the quoted identifier at ``text[pos]``; return its value and where it ends."""
    chunks: list[str] = []
    pos += 1
    while True:
        close = text.find('"', pos)
        if close < 0:
            raise _Problem(
                "unterminated quoted identifier", 'close it with ", and write "" for a quote'
            )
        chunks.append(text[pos:close])
        if text.startswith('"', close + 1):
            chunks.append('"')
            pos = close + 2
            continue
        value = "".join(chunks)
        if not value:
            raise _Problem(f'empty identifier in "{text}" (zero-length quoted name)')
        if "\x00" in value:
            raise _Problem("identifier contains a NUL character")
        return value, close + 1


def _is_ident_char(char: str) -> bool:
    """Whether ``char`` may appear in an unquoted identifier (after its first character)."""
    if char.isascii():
        return char.isalnum() or char in "_$"
    return not char.isspace() and char.isprintable()


def _check_length(value: str) -> None:
    """Refuse what PostgreSQL would silently truncate to NAMEDATALEN - 1 bytes."""
    size = len(value.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise _Problem(
            f"identifier longer than {MAX_IDENTIFIER_BYTES} bytes: {quote_ident(value)} "
            f"({size} bytes in UTF-8); PostgreSQL would truncate it",
            "use the name exactly as the source catalog has it",
        )


def _bad_character(text: str, pos: int) -> _Problem:
    """Explain a character that cannot appear in an unquoted name."""
    char = text[pos]
    if char.isspace():
        # "name = value" or "name # comment": explain the "=" or "#", not the space.
        following = text[pos:].lstrip()[:1]
        if following and following in "=:#;":
            char = following
    if char in "=:":
        return _Problem(
            f'unexpected "{char}" outside quotes in "{text}": filter entries are names, '
            "not key = value settings",
            f'write one name per line; quote a name that contains "{char}"',
        )
    if char in "#;":
        return _Problem(
            f'unexpected "{char}" in "{text}": comments must be on their own line',
            "move the comment to a line of its own",
        )
    if char == "~" and pos == 0:
        return _Problem(
            f'regular expressions are not supported: "{text}"', "list each name on its own line"
        )
    if char in "*?":
        return _Problem(
            f'patterns are not supported: "{text}"',
            "list each name on its own line (or quote a name that contains the character)",
        )
    if char == '"':
        return _Problem(
            f'unexpected quote in the middle of "{text}"',
            'quote a whole name part, e.g. public."MyTable"',
        )
    if char.isspace():
        return _Problem(
            f'unexpected space in "{text}"', 'quote a name that contains spaces: "my table"'
        )
    return _Problem(
        f'invalid character "{char}" in unquoted name "{text}"',
        'quote a name that contains it, e.g. public."my-table"',
    )


def _check_conflicts(first_header: dict[str, int], path: str) -> None:
    """Reject sections that contradict each other; lines are their headers'."""
    for first, second in _CONFLICTS:
        if first in first_header and second in first_header:
            lines = sorted((first_header[first], first_header[second]))
            raise FilterError(
                f"[{first}] (line {first_header[first]}) cannot be combined with "
                f"[{second}] (line {first_header[second]})",
                "use either the include-only list or the exclude list",
                path=path,
                line=lines[1],
            )


def _combination_warnings(filters: Filters, first_header: dict[str, int], path: str) -> list[str]:
    """Combinations pgcopydb allows but that easily select nothing."""
    if "include-only-table" not in first_header or "exclude-schema" not in first_header:
        return []
    include_line = first_header["include-only-table"]
    exclude_line = first_header["exclude-schema"]
    warning = (
        f"{path}:{max(include_line, exclude_line)}: [include-only-table] (line {include_line}) "
        f"is combined with [exclude-schema] (line {exclude_line}): make sure not to exclude "
        "the schema of a table you want to include"
    )
    excluded = filters.exclude_schema
    clashing = sorted(t for t in filters.include_only_table if t.schema in excluded)
    if clashing:
        warning += "; these included tables are in an excluded schema: " + ", ".join(
            str(t) for t in clashing
        )
    return [warning]


def _key_json(key: str | QualifiedName) -> str | list[str]:
    return [key.schema, key.name] if isinstance(key, QualifiedName) else key


def _display(key: str | QualifiedName) -> str:
    return str(key) if isinstance(key, QualifiedName) else quote_ident(key)


def _entry_from_json(raw: object) -> FilterEntry:
    if not isinstance(raw, Mapping):
        raise FilterError("invalid stored filters: an entry is not an object")
    section, line, schema, name = (raw.get(k) for k in ("section", "line", "schema", "name"))
    if section not in SECTIONS:
        raise FilterError(f"invalid stored filters: unknown section {section!r}")
    if not isinstance(line, int) or isinstance(line, bool) or line < 1:
        raise FilterError(f"invalid stored filters: bad line number {line!r}")
    if not isinstance(name, str) or not name:
        raise FilterError(f"invalid stored filters: bad name {name!r}")
    if section in TABLE_SECTIONS:
        schema_ok = isinstance(schema, str) and bool(schema)
    else:
        schema_ok = schema is None
    if not schema_ok:
        raise FilterError(f"invalid stored filters: bad schema {schema!r} in [{section}]")
    return FilterEntry(section=section, line=line, schema=schema, name=name)
