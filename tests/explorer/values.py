"""Column kinds: a SQL type and a generator of its values, as text literals.

Every value is sent as text and cast on the server (`%s::type`), so one code path covers
built-in, array, domain, enum and composite types alike.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from psycopg import sql

# wal2json 2.5 decodes NaN and Infinity in float and numeric columns as NULL, and pgferry
# documents it as unsupported (README, preflight warns): the explorer leaves them out there.
NON_FINITE = ("NaN", "Infinity", "-Infinity")


@dataclass(frozen=True)
class ValueContext:
    """What a value generator may depend on besides its random stream."""

    plugin: str

    @property
    def finite_only(self) -> bool:
        return self.plugin == "wal2json"


Gen = Callable[[random.Random, ValueContext], str | None]


@dataclass(frozen=True)
class Kind:
    """A column type: its SQL spelling, a value generator, and facts the workload needs."""

    label: str
    sqltype: sql.Composable
    gen: Gen
    has_equality: bool = True
    toast: bool = False


def _nullable(gen: Gen, p_null: float = 0.08) -> Gen:
    def wrapped(rng: random.Random, ctx: ValueContext) -> str | None:
        return None if rng.random() < p_null else gen(rng, ctx)

    return wrapped


_AWKWARD_TEXT = (
    "",
    "NULL",
    "null",
    "it's",
    'say "hi"',
    "back\\slash",
    "tab\there",
    "new\nline",
    "ünïcödé 表 🚀",
    "a,b{c}",
    "  padded  ",
    "\\x41",
    "-- not a comment",
    "'';DROP TABLE x;--",
    "col[integer]:1",
    '{"key": "value"}',
    "'" * 40,
    "''" * 25 + "x",
)


def short_text(rng: random.Random, ctx: ValueContext) -> str | None:
    if rng.random() < 0.4:
        return rng.choice(_AWKWARD_TEXT)
    alphabet = "abcXYZ 019'\"\\,{}()[]:\t表é🚀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))


def toast_text(rng: random.Random, ctx: ValueContext) -> str | None:
    """Incompressible text over the TOAST threshold (> 2 kB), sometimes ~100 kB."""
    r = rng.random()
    if r < 0.1:
        return None
    if r < 0.2:
        return short_text(rng, ctx)
    size = rng.randrange(100_000, 130_000) if r > 0.93 else rng.randrange(2_500, 20_000)
    raw = rng.getrandbits(size * 6).to_bytes(size * 6 // 8 + 1, "little")
    text = base64.b64encode(raw).decode()[:size]
    if rng.random() < 0.3:  # quotes in a TOASTed value: test_decoding doubles them
        cut = rng.randrange(len(text))
        text = text[:cut] + "''it''s'" + text[cut:]
    return text


def toast_bytea(rng: random.Random, ctx: ValueContext) -> str | None:
    if rng.random() < 0.15:
        return None
    size = rng.randrange(3_000, 12_000)
    return "\\x" + rng.getrandbits(size * 8).to_bytes(size, "little").hex()


def _int4(rng: random.Random, ctx: ValueContext) -> str | None:
    return str(rng.choice([0, -1, 2**31 - 1, -(2**31), rng.randrange(-(10**6), 10**6)]))


def _int8(rng: random.Random, ctx: ValueContext) -> str | None:
    return str(rng.choice([0, 2**63 - 1, -(2**63), rng.randrange(-(10**15), 10**15)]))


def _numeric(rng: random.Random, ctx: ValueContext) -> str | None:
    r = rng.random()
    if r < 0.15:
        special = rng.choice(NON_FINITE)
        return "0" if ctx.finite_only else special
    if r < 0.3:
        return rng.choice(["0", "-0.000000000000000000000000000001", "1e100", "1.50"])
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 40)))
    scale = rng.randrange(0, len(digits) + 1)
    value = digits[: len(digits) - scale] or "0"
    if scale:
        value += "." + digits[len(digits) - scale :]
    return ("-" if rng.random() < 0.3 else "") + value


def _float8(rng: random.Random, ctx: ValueContext) -> str | None:
    r = rng.random()
    if r < 0.15:
        special = rng.choice(NON_FINITE)
        return "1" if ctx.finite_only else special
    if r < 0.3:
        return rng.choice(["1e308", "-1e-300", "0.1", "1.0000000000000002", "5e-324"])
    return repr(rng.uniform(-1e9, 1e9))


def _float4(rng: random.Random, ctx: ValueContext) -> str | None:
    r = rng.random()
    if r < 0.15:
        special = rng.choice(NON_FINITE)
        return "1" if ctx.finite_only else special
    return rng.choice(["3.4e38", "1e-45", "0.1", repr(rng.uniform(-1e5, 1e5))])


def _bool(rng: random.Random, ctx: ValueContext) -> str | None:
    return rng.choice(["true", "false"])


def _bytea(rng: random.Random, ctx: ValueContext) -> str | None:
    return "\\x" + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))).hex()


def _timestamptz(rng: random.Random, ctx: ValueContext) -> str | None:
    if rng.random() < 0.1:
        return rng.choice(["infinity", "-infinity", "1999-12-31 23:59:59.999999+14"])
    zone = rng.choice(["+00", "-03:30", "+05:45", " Europe/Paris", " America/New_York"])
    return (
        f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d} "
        f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
        f".{rng.randrange(10**6):06d}{zone}"
    )


def _date(rng: random.Random, ctx: ValueContext) -> str | None:
    return f"{rng.randrange(1, 9999):04d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"


def _interval(rng: random.Random, ctx: ValueContext) -> str | None:
    return (
        f"{rng.randrange(-5, 5)} years {rng.randrange(13)} mons {rng.randrange(-40, 40)} days "
        f"{rng.randrange(24)}:{rng.randrange(60)}:{rng.randrange(60)}.{rng.randrange(10**6)}"
    )


def _uuid(rng: random.Random, ctx: ValueContext) -> str | None:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def _inet(rng: random.Random, ctx: ValueContext) -> str | None:
    if rng.random() < 0.3:
        return f"2001:db8::{rng.randrange(65536):x}/{rng.randrange(64, 129)}"
    return ".".join(str(rng.randrange(256)) for _ in range(4)) + f"/{rng.randrange(8, 33)}"


def _int_array(rng: random.Random, ctx: ValueContext) -> str | None:
    if rng.random() < 0.2:
        return "{{1,2},{3,NULL}}"
    items = [
        "NULL" if rng.random() < 0.2 else str(rng.randrange(-99, 99))
        for _ in range(rng.randrange(0, 6))
    ]
    return "{" + ",".join(items) + "}"


def _text_array(rng: random.Random, ctx: ValueContext) -> str | None:
    items = []
    for _ in range(rng.randrange(0, 5)):
        if rng.random() < 0.2:
            items.append("NULL")
            continue
        value = rng.choice(["a,b", 'q"uote', "back\\slash", "{brace}", "NULL", "", "é 表", "x y"])
        items.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def _jsonb(rng: random.Random, ctx: ValueContext) -> str | None:
    return rng.choice(
        [
            '{"a": 1, "b": [1, 2.50, null], "c": "it\'s"}',
            '{"nested": {"x": "y\\"z"}, "u": "\\u00e9"}',
            "[]",
            '"just a string"',
            "12345678901234567890.5",
            f'{{"n": {rng.randrange(1000)}}}',
        ]
    )


def _json(rng: random.Random, ctx: ValueContext) -> str | None:
    # json keeps its text as written: spaces, key order, duplicate keys.
    return rng.choice(
        [
            '{"a":1,  "a": 2}',
            '[1, 2.50, "x"]',
            '{ "k" : "v\\n" }',
            f'{{"n": {rng.randrange(1000)}}}',
            "null",
        ]
    )


def _point(rng: random.Random, ctx: ValueContext) -> str | None:
    return f"({rng.uniform(-180, 180)!r},{rng.uniform(-90, 90)!r})"


def _xml(rng: random.Random, ctx: ValueContext) -> str | None:
    return rng.choice(
        [
            '<a x="1">t</a>',
            "<doc><it>it's</it><q>&quot;</q></doc>",
            f"<n>{rng.randrange(1000)}</n>",
            "text only",
            "<e/>",
        ]
    )


def _int4range(rng: random.Random, ctx: ValueContext) -> str | None:
    if rng.random() < 0.15:
        return rng.choice(["empty", "(,)", "[5,)"])
    lo = rng.randrange(-100, 100)
    return f"[{lo},{lo + rng.randrange(1, 50)})"


def _tstzrange(rng: random.Random, ctx: ValueContext) -> str | None:
    if rng.random() < 0.15:
        return "empty"
    y = rng.randrange(2000, 2030)
    return f'["{y}-01-01 00:00:00+00","{y + 1}-06-30 12:00:00+02")'


def _varbit(rng: random.Random, ctx: ValueContext) -> str | None:
    return "".join(rng.choice("01") for _ in range(rng.randrange(0, 20)))


def _char5(rng: random.Random, ctx: ValueContext) -> str | None:
    return rng.choice(["ab", "abcde", "", "é 表"])


def _timetz(rng: random.Random, ctx: ValueContext) -> str | None:
    return f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:00.5+05:30"


def builtin_kinds() -> list[Kind]:
    """Kinds of built-in types; `user_kinds` adds the enum, domain and composite."""
    t = sql.SQL
    return [
        Kind("int4", t("integer"), _nullable(_int4)),
        Kind("int8", t("bigint"), _nullable(_int8)),
        Kind("text", t("text"), _nullable(short_text)),
        Kind("numeric", t("numeric"), _nullable(_numeric)),
        Kind(
            "numeric(12,3)",
            t("numeric(12,3)"),
            _nullable(lambda r, c: f"{r.uniform(-1e8, 1e8):.3f}"),
        ),
        Kind("float8", t("double precision"), _nullable(_float8)),
        Kind("float4", t("real"), _nullable(_float4)),
        Kind("bool", t("boolean"), _nullable(_bool)),
        Kind("bytea", t("bytea"), _nullable(_bytea)),
        Kind("timestamptz", t("timestamptz"), _nullable(_timestamptz)),
        Kind("date", t("date"), _nullable(_date)),
        Kind("interval", t("interval"), _nullable(_interval)),
        Kind("timetz", t("timetz"), _nullable(_timetz)),
        Kind("uuid", t("uuid"), _nullable(_uuid)),
        Kind("inet", t("inet"), _nullable(_inet)),
        Kind("int[]", t("integer[]"), _nullable(_int_array)),
        Kind("text[]", t("text[]"), _nullable(_text_array)),
        Kind("jsonb", t("jsonb"), _nullable(_jsonb)),
        Kind("json", t("json"), _nullable(_json), has_equality=False),
        Kind("point", t("point"), _nullable(_point), has_equality=False),
        Kind("xml", t("xml"), _nullable(_xml), has_equality=False),
        Kind("int4range", t("int4range"), _nullable(_int4range)),
        Kind("tstzrange", t("tstzrange"), _nullable(_tstzrange)),
        Kind("varbit", t("bit varying"), _nullable(_varbit)),
        Kind("char(5)", t("character(5)"), _nullable(_char5)),
        Kind("toast text", t("text"), toast_text, toast=True),
        Kind("toast bytea", t("bytea"), toast_bytea, toast=True),
    ]


def user_kinds(schema: str, *, plain: bool) -> tuple[list[sql.Composed], list[Kind]]:
    """DDL for an enum, a domain and a composite type in `schema`, and their kinds;
    `plain`: in "public" under names that need no quoting."""
    if plain:
        mood, posint, pair = (sql.Identifier("public", n) for n in ("mood", "posint", "pair"))
    else:
        mood = sql.Identifier(schema, "Mood ënum")
        posint = sql.Identifier(schema, "pos int")
        pair = sql.Identifier(schema, 'pair "t"')
    ddl = [
        sql.SQL("CREATE TYPE {} AS ENUM ('sad', 'o''k', 'happy 表')").format(mood),
        sql.SQL("CREATE DOMAIN {} AS integer CHECK (VALUE > 0)").format(posint),
        sql.SQL('CREATE TYPE {} AS (n integer, "T x" text)').format(pair),
    ]

    def mood_value(rng: random.Random, ctx: ValueContext) -> str | None:
        return rng.choice(["sad", "o'k", "happy 表"])

    def pos_value(rng: random.Random, ctx: ValueContext) -> str | None:
        return str(rng.randrange(1, 10**6))

    def pair_value(rng: random.Random, ctx: ValueContext) -> str | None:
        return rng.choice(['(1,"a b")', "(,)", '(-5,"it\'s ""q""")', f"({rng.randrange(99)},x)"])

    kinds = [
        Kind("enum", mood, _nullable(mood_value)),
        Kind("domain", posint, _nullable(pos_value)),
        Kind("composite", pair, _nullable(pair_value)),
    ]
    return ddl, kinds
