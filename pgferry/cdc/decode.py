"""Output plugins' messages, normalised into one change format.

Values stay as PostgreSQL's text representation, exactly as the source printed them:
a numeric with 40 digits, NaN, a timestamp with its zone, an array literal. They are kept
as the UTF-8 bytes apply sends as text parameters, so nothing is ever converted through a
float or a Python type, and the common test_decoding message is never decoded to str.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

# Marker test_decoding prints for a TOASTed column an UPDATE did not change.
UNCHANGED_TOAST = "unchanged-toast-datum"


class DecodeError(ValueError):
    """A message the decoder does not understand."""


def values_picker(
    positions: Sequence[int],
) -> Callable[[list[bytes | None]], Sequence[bytes | None]]:
    """A change's values -> the values at `positions`, in that order, as a tuple (a C loop
    where it can be: it runs per row)."""
    if not positions:
        return lambda values: ()
    if len(positions) == 1:
        only = positions[0]
        return lambda values: (values[only],)
    return itemgetter(*positions)


@dataclass(slots=True)
class Change:
    """One row change (or a TRUNCATE) of a committed transaction."""

    kind: str  # I insert, U update, D delete, T truncate
    schema: str
    table: str
    columns: list[str] = field(default_factory=list)  # new tuple (I, U)
    values: list[bytes | None] = field(default_factory=list)  # text representation
    key_columns: list[str] = field(default_factory=list)  # old key / identity (U, D)
    key_values: list[bytes | None] = field(default_factory=list)
    unchanged: set[str] = field(default_factory=set)  # TOASTed columns not sent (U)
    relations: list[tuple[str, str]] = field(default_factory=list)  # T
    restart_seqs: bool = False
    cascade: bool = False
    lsn: int = 0

    def describe(self, limit: int = 200) -> str:
        """For error messages: the operation, the table and the key."""
        op = {"I": "INSERT", "U": "UPDATE", "D": "DELETE", "T": "TRUNCATE"}[self.kind]
        if self.kind == "T":
            return f"{op} " + ", ".join(f"{s}.{t}" for s, t in self.relations)
        cols, vals = (
            (self.key_columns, self.key_values) if self.key_columns else (self.columns, self.values)
        )
        pairs = ", ".join(
            f"{c}={None if v is None else v.decode(errors='replace')!r}"
            for c, v in zip(cols, vals, strict=False)
        )
        text = f"{op} on {self.schema}.{self.table} ({pairs})"
        return text if len(text) <= limit else text[: limit - 3] + "..."


# -- wal2json (format-version 2) ---------------------------------------------------------
WAL2JSON_OPTIONS = {
    "format-version": "2",
    "include-xids": "1",
    "include-timestamp": "1",
    "include-schemas": "1",
    "include-types": "1",
    "include-transaction": "1",
}


def wal2json_action(payload: bytes | memoryview) -> int:
    """The action letter of a wal2json v2 message, without parsing it: {"action":"X"."""
    return payload[11] if len(payload) > 11 else 0


def _json_text(value: object, type_name: str) -> bytes | None:
    if value is None:
        return None
    if value is True:
        return b"t"
    if value is False:
        return b"f"
    text = str(value)
    if type_name == "bytea" and not text.startswith("\\x"):
        text = "\\x" + text  # wal2json strips bytea's \x prefix
    return text.encode()


def decode_wal2json(payload: bytes | memoryview, lsn: int = 0) -> Change | None:
    """A wal2json v2 change (I/U/D/T); None for messages that carry no row change."""
    data = bytes(payload)
    head = _W2J_HEAD.match(data)
    if head is not None:
        key = head.group(1, 2, 3)
        shape = _W2J_SHAPES.get(key)
        if shape is not None:
            m = shape.pattern.fullmatch(data, head.end())
            if m is not None:
                vals: list[bytes | None] = [
                    (v[1:-1] if b"\\" not in v else _w2j_escaped(v))
                    if v[0] == 34
                    else _W2J_BARE.get(v, v)
                    for v in m.groups()
                ]
                for i in shape.bytea:
                    v = vals[i]
                    if v is not None and not v.startswith(b"\\x"):
                        vals[i] = b"\\x" + v
                new = shape.new
                return Change(
                    shape.kind,
                    shape.schema,
                    shape.table,
                    shape.columns,
                    vals[:new],
                    shape.key_columns,
                    vals[new:],
                    set(),
                    [],
                    False,
                    False,
                    lsn,
                )
    change = _wal2json_parsed(data, lsn)
    if head is not None and change is not None and change.kind != "T":
        _w2j_learn(data, head, change)
    return change


# wal2json (2.5 at least) prints a column's type name without JSON escaping: a type whose
# name holds a double quote (`CREATE TYPE "pair ""t"""`) makes the message invalid JSON.
# The field always sits between `"type":"` and `","value":`; the non-greedy run stops at
# the first such end, so the repair is linear in the message.
_W2J_TYPE_FIELD = re.compile(rb'"type":"(.*?)","value":', re.DOTALL)


def _w2j_escape_types(data: bytes) -> bytes:
    return _W2J_TYPE_FIELD.sub(
        lambda m: b'"type":' + json.dumps(m.group(1).decode()).encode() + b',"value":', data
    )


def _wal2json_parsed(data: bytes, lsn: int) -> Change | None:
    try:
        msg = json.loads(data, parse_float=str, parse_int=str, parse_constant=str)
    except ValueError as exc:
        try:
            msg = json.loads(
                _w2j_escape_types(data), parse_float=str, parse_int=str, parse_constant=str
            )
        except ValueError:
            raise DecodeError(f"invalid wal2json message: {exc}") from None
    action = msg.get("action")
    if action not in ("I", "U", "D", "T"):
        return None
    change = Change(kind=action, schema=msg["schema"], table=msg["table"], lsn=lsn)
    if action == "T":
        change.relations = [(change.schema, change.table)]
        return change
    for col in msg.get("columns") or ():
        change.columns.append(col["name"])
        change.values.append(_json_text(col.get("value"), col.get("type", "")))
    for col in msg.get("identity") or ():
        change.key_columns.append(col["name"])
        change.key_values.append(_json_text(col.get("value"), col.get("type", "")))
    return change


# Like test_decoding's layouts below: after one message of a table and action is parsed
# with json.loads, the next ones are matched whole by a pattern made from its exact bytes
# (names and types included), one group per value. The message head carries the xid and
# timestamp, which change with every transaction, so the layout is keyed by action,
# schema and table and matched from the first array on.
_W2J_STR = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_W2J_HEAD = re.compile(
    rb'\{"action":"([IUD])"(?:,"xid":\d+)?(?:,"timestamp":"[^"\\]*")?'
    rb',"schema":(' + _W2J_STR + rb'),"table":(' + _W2J_STR + rb"),"
)
_W2J_ARRAY = re.compile(rb'"(columns|identity)":\[')
_W2J_VALUE = rb"(" + _W2J_STR + rb'|[^"{}\[\],]+)'  # a string, or a bare token
_W2J_COLUMN = re.compile(
    rb'\{"name":' + _W2J_STR + rb',"type":(' + _W2J_STR + rb'),"value":' + _W2J_VALUE + rb"\}"
)
# Bare value tokens that are not printed as they are: the rest are numbers.
_W2J_BARE: dict[bytes, bytes | None] = {b"null": None, b"true": b"t", b"false": b"f"}


def _w2j_escaped(raw: bytes) -> bytes:
    """A JSON string token with escapes, as the text it stands for."""
    return str(json.loads(raw)).encode()


@dataclass(frozen=True, slots=True)
class _W2JShape:
    pattern: re.Pattern[bytes]
    kind: str
    schema: str
    table: str
    columns: list[str]  # shared by every Change read with this shape: never mutated
    key_columns: list[str]
    new: int  # how many values, first in the message, are new-tuple values
    bytea: tuple[int, ...]  # positions of bytea values (wal2json drops their \\x)


_W2J_SHAPES: dict[tuple[bytes, ...], _W2JShape] = {}


def _w2j_learn(data: bytes, head: re.Match[bytes], change: Change) -> None:
    """Make the layout pattern of this message, if it reads as the plain layout."""
    pieces: list[bytes] = []
    bytea: list[int] = []
    pos = head.end()
    values = 0
    arrays: list[bytes] = []
    while True:
        arr = _W2J_ARRAY.match(data, pos)
        if arr is None:
            break
        arrays.append(arr.group(1))
        pieces.append(re.escape(arr.group(0)))
        pos = arr.end()
        first = True
        while True:
            if not first:
                if not data.startswith(b",", pos):
                    break
                pos += 1
                pieces.append(b",")
            m = _W2J_COLUMN.match(data, pos)
            if m is None:
                if first:
                    break
                return
            first = False
            if m.group(1) == b'"bytea"':
                bytea.append(values)
            pieces += (re.escape(data[m.start() : m.start(2)]), _W2J_VALUE, rb"\}")
            values += 1
            pos = m.end()
        if not data.startswith(b"]", pos):
            return
        pieces.append(rb"\]")
        pos += 1
        if data.startswith(b",", pos):
            pieces.append(b",")
            pos += 1
    if data[pos:] != b"}" or values != len(change.values) + len(change.key_values):
        return
    expected = [b"identity"] if change.kind == "D" else [b"columns"]
    if change.key_columns and change.kind == "U":
        expected.append(b"identity")
    if arrays != expected:
        return
    pieces.append(rb"\}")
    if len(_W2J_SHAPES) >= _SHAPE_LIMIT:
        _W2J_SHAPES.clear()
    _W2J_SHAPES[head.group(1, 2, 3)] = _W2JShape(
        re.compile(b"".join(pieces)),
        change.kind,
        change.schema,
        change.table,
        list(change.columns),
        list(change.key_columns),
        len(change.values),
        tuple(bytea),
    )


# -- test_decoding ------------------------------------------------------------------------
TEST_DECODING_OPTIONS = {"include-xids": "1", "include-timestamp": "1"}


def test_decoding_kind(payload: bytes | memoryview) -> int:
    """B for BEGIN, C for COMMIT, M for a message, R for a row change."""
    head = bytes(payload[:7])
    if head.startswith(b"BEGIN"):
        return ord("B")
    if head.startswith(b"COMMIT"):
        return ord("C")
    if head.startswith(b"table "):
        return ord("R")
    return ord("M")


def decode_test_decoding(payload: bytes | memoryview, lsn: int = 0) -> Change | None:
    data = bytes(payload)
    if not data.startswith(b"table "):
        return None
    change = _fast_test_decoding(data, lsn)
    if change is None:
        change = _TestDecodingParser(data.decode("utf-8"), lsn).parse()
    return change


# The common case, read on the bytes: unquoted schema, table and column names (plain
# ASCII: PostgreSQL quotes any other name). Anything else (quoted names, TRUNCATE, odd
# spacing) goes to the careful parser below.
_FAST_HEAD = re.compile(
    rb"table ([a-z_][a-z0-9_$]*)\.([a-z_][a-z0-9_$]*): (INSERT|UPDATE|DELETE): "
)
_KINDS = {b"INSERT": "I", b"UPDATE": "U", b"DELETE": "D"}
_NAMES: dict[bytes, str] = {}  # names seen, as str (a few per table)


def _name(raw: bytes) -> str:
    name = _NAMES.get(raw)
    if name is None:
        if len(_NAMES) > 100_000:
            _NAMES.clear()
        name = _NAMES[raw] = raw.decode("ascii")
    return name


# One column of a tuple: an optional section marker, `name[type]:value` and its separator.
# A value is a quoted literal ('' inside stands for ') or a bare word (a number, null,
# the unchanged-TOAST marker, a B'0101' bit string). Quoted type names and anything
# unterminated do not match, and go to the careful parser.
_FAST_COLUMN = re.compile(
    rb"(?:(old-key|new-tuple): )?"
    rb'([a-z_][a-z0-9_$]*)\[[^\]"]*(?:\](?!:)[^\]"]*)*\]:'
    rb"(?:'([^']*(?:''[^']*)*)'|(?!')(\S*))(?: |\Z)"
)
_UNCHANGED_BYTES = UNCHANGED_TOAST.encode()

# A table's changes of one kind nearly always list the same columns with the same types,
# so after one message is read column by column, the next ones are matched whole by a
# pattern made for that layout: one group per value, either a quoted literal (quotes
# included) or a bare word. Bit strings, unchanged-TOAST markers and anything else
# unusual do not match it and take the column-by-column path.
_SHAPE_VALUE = rb"('[^']*(?:''[^']*)*'|(?!B'|unchanged-toast-datum(?: |\Z))[^'\s]\S*)"
_SHAPE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class _Shape:
    pattern: re.Pattern[bytes]
    columns: list[str]  # shared by every Change read with this shape: never mutated
    key_columns: list[str]
    keys: int  # how many values, first in the message, are old-key values


_SHAPES: dict[bytes, _Shape] = {}  # per message head: "table s.t: UPDATE: "


def _fast_test_decoding(data: bytes, lsn: int) -> Change | None:
    head = _FAST_HEAD.match(data)
    if head is None:
        return None
    kind = _KINDS[head.group(3)]
    pos = head.end()
    shape = _SHAPES.get(head.group(0))
    if shape is not None:
        m = shape.pattern.fullmatch(data, pos)
        if m is not None:
            vals: list[bytes | None] = [
                v[1:-1].replace(b"''", b"'") if v[0] == 39 else (None if v == b"null" else v)
                for v in m.groups()
            ]
            k = shape.keys
            return Change(
                kind,
                _name(head.group(1)),
                _name(head.group(2)),
                shape.columns,
                vals[k:] if k else vals,
                shape.key_columns,
                vals[:k] if k else [],
                set(),
                [],
                False,
                False,
                lsn,
            )
    return _fast_by_column(data, head, kind, lsn)


def _fast_by_column(data: bytes, head: re.Match[bytes], kind: str, lsn: int) -> Change | None:
    """Column by column; remembers the layout for the next message of the same head."""
    columns: list[str] = []
    values: list[bytes | None] = []
    key_columns: list[str] = []
    key_values: list[bytes | None] = []
    unchanged: set[str] = set()
    pos = head.end()
    layout: list[bytes] | None = []  # the pattern's pieces; None: not a plain layout
    if not data.startswith(b"(no-tuple-data)", pos):
        names, vals = (key_columns, key_values) if kind == "D" else (columns, values)
        value: bytes | None
        match = _FAST_COLUMN.match
        while pos < len(data):
            # match, never search: a search would retry from every later byte of a value
            # the pattern does not cover (quadratic in the message).
            m = match(data, pos)
            if m is None:
                return None  # something the pattern does not cover: the careful parser
            pos = m.end()
            marker, name, quoted, raw = m.group(1, 2, 3, 4)
            if marker:
                names, vals = (
                    (key_columns, key_values) if marker == b"old-key" else (columns, values)
                )
            if quoted is not None:
                value = quoted.replace(b"''", b"'") if b"''" in quoted else quoted
            elif raw == b"null":
                value = None
            elif raw == _UNCHANGED_BYTES:
                unchanged.add(_name(name))
                layout = None
                continue
            elif raw.startswith(b"B'"):
                value = raw[2:-1]
                layout = None
            else:
                value = raw
                if not raw:
                    layout = None  # the layout pattern wants a non-empty bare word
            names.append(_name(name))
            vals.append(value)
            if layout is not None:
                value_at = m.start(3) - 1 if quoted is not None else m.start(4)
                if layout:
                    layout.append(b" ")
                layout += (re.escape(data[m.start() : value_at]), _SHAPE_VALUE)
        if pos != len(data):
            return None
    else:
        layout = None
    if layout:
        if len(_SHAPES) >= _SHAPE_LIMIT:
            _SHAPES.clear()
        _SHAPES[head.group(0)] = _Shape(
            re.compile(b"".join(layout)),
            columns,
            key_columns,
            len(key_values),
        )
        columns, key_columns = list(columns), list(key_columns)
    return Change(
        kind,
        _name(head.group(1)),
        _name(head.group(2)),
        columns,
        values,
        key_columns,
        key_values,
        unchanged,
        [],
        False,
        False,
        lsn,
    )


class _TestDecodingParser:
    """`table s.t: UPDATE: old-key: c[type]:v ... new-tuple: c[type]:v ...`"""

    def __init__(self, text: str, lsn: int) -> None:
        self.s = text
        self.i = len("table ")
        self.lsn = lsn

    def fail(self, why: str) -> DecodeError:
        return DecodeError(f"cannot parse test_decoding output ({why}): {self.s[:200]!r}")

    def ident(self) -> str:
        s, i = self.s, self.i
        if i < len(s) and s[i] == '"':
            out = []
            i += 1
            while True:
                j = s.find('"', i)
                if j < 0:
                    raise self.fail("unterminated quoted identifier")
                out.append(s[i:j])
                if j + 1 < len(s) and s[j + 1] == '"':
                    out.append('"')
                    i = j + 2
                    continue
                self.i = j + 1
                return "".join(out)
        j = i
        while j < len(s) and s[j] not in ".:[, ":
            j += 1
        if j == i:
            raise self.fail("empty identifier")
        self.i = j
        return s[i:j]

    def expect(self, text: str) -> None:
        if not self.s.startswith(text, self.i):
            raise self.fail(f"expected {text!r} at {self.i}")
        self.i += len(text)

    def qualified(self) -> tuple[str, str]:
        schema = self.ident()
        self.expect(".")
        return schema, self.ident()

    def parse(self) -> Change:
        relations = [self.qualified()]
        while self.s.startswith(", ", self.i):
            self.i += 2
            relations.append(self.qualified())
        self.expect(": ")
        end = self.s.find(":", self.i)
        if end < 0:
            raise self.fail("no action")
        action = self.s[self.i : end]
        self.i = end + 1
        schema, table = relations[0]
        kinds = {"INSERT": "I", "UPDATE": "U", "DELETE": "D", "TRUNCATE": "T"}
        if action not in kinds:
            raise self.fail(f"unknown action {action}")
        change = Change(kind=kinds[action], schema=schema, table=table, lsn=self.lsn)
        rest = self.s[self.i :].strip()
        if change.kind == "T":
            change.relations = relations
            change.restart_seqs = "restart_seqs" in rest
            change.cascade = "cascade" in rest
            return change
        if rest == "(no-tuple-data)":
            return change
        target = (
            (change.key_columns, change.key_values)
            if change.kind == "D"
            else (change.columns, change.values)
        )
        while self.i < len(self.s):
            if self.s[self.i] == " ":
                self.i += 1
                continue
            if self.s.startswith("old-key:", self.i):
                self.i += len("old-key:")
                target = (change.key_columns, change.key_values)
                continue
            if self.s.startswith("new-tuple:", self.i):
                self.i += len("new-tuple:")
                target = (change.columns, change.values)
                continue
            name = self.ident()
            self.expect("[")
            self._skip_type()
            value = self.value()
            if value is _UNCHANGED:
                change.unchanged.add(name)
                continue
            target[0].append(name)
            target[1].append(None if value is None else str(value).encode())
        return change

    def _skip_type(self) -> None:
        s, i, quoted = self.s, self.i, False
        while i < len(s):
            c = s[i]
            if c == '"':
                quoted = not quoted
            elif not quoted and c == "]" and s.startswith("]:", i):
                self.i = i + 2
                return
            i += 1
        raise self.fail("unterminated type")

    def value(self) -> str | None | object:
        s, i = self.s, self.i
        if s.startswith("'", i) or s.startswith("B'", i):
            i += 1 if s[i] == "'" else 2
            out = []
            while True:
                j = s.find("'", i)
                if j < 0:
                    raise self.fail("unterminated literal")
                out.append(s[i:j])
                if j + 1 < len(s) and s[j + 1] == "'":
                    out.append("'")
                    i = j + 2
                    continue
                self.i = j + 1
                return "".join(out)
        j = s.find(" ", i)
        j = len(s) if j < 0 else j
        token = s[i:j]
        self.i = j
        if token == "null":
            return None
        if token == UNCHANGED_TOAST:
            return _UNCHANGED
        return token


_UNCHANGED = object()
