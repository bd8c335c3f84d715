"""Output plugin messages into changes (cdc/decode.py): exact values, odd names, both paths."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest

from pgferry.cdc.decode import (
    DecodeError,
    _fast_test_decoding,
    _TestDecodingParser,
    decode_test_decoding,
    decode_wal2json,
)

PADDED = "'" + " " * 84 + "'"

# Messages the fast path must read exactly as the careful parser does.
SAME_BOTH_WAYS = [
    "table public.t: INSERT: id[integer]:1 note[text]:'hello'",
    "table public.t: INSERT: id[integer]:1 note[text]:null",
    "table public.pgbench_accounts: UPDATE: aid[integer]:7 abalance[integer]:-3"
    f" filler[character]:{PADDED}",
    "table public.t: INSERT: note[text]:'it''s' other[text]:''''",
    "table public.t: INSERT: note[text]:'a b\nc'",
    "table public.t: INSERT: note[text]:'x'' new-tuple: y[int]:2 '",
    "table public.t: INSERT: tags[text[]]:'{a,\"b c\"}' n[numeric]:12345678901234567890123456.5",
    "table public.t: INSERT: f[double precision]:NaN g[double precision]:-Infinity",
    "table public.t: INSERT: b[bit(4)]:B'0101' v[bit varying]:B''",
    "table public.t: INSERT: ts[timestamp with time zone]:'2024-01-01 00:00:00+00'",
    "table public.t: UPDATE: id[integer]:1 big[text]:unchanged-toast-datum small[text]:'s'",
    "table public.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 note[text]:'n'",
    "table public.t: DELETE: id[integer]:1",
    "table public.t: DELETE: (no-tuple-data)",
    "table s_1.t$2: INSERT: c_1[integer]:1",
]


@pytest.mark.parametrize("message", SAME_BOTH_WAYS)
def test_fast_path_reads_like_the_careful_parser(message: str) -> None:
    fast = _fast_test_decoding(message.encode(), 5)
    assert fast is not None, "the fast path should take this message"
    assert fast == _TestDecodingParser(message, 5).parse()


@pytest.mark.parametrize("message", SAME_BOTH_WAYS)
def test_a_remembered_layout_reads_the_same(message: str) -> None:
    """The second message of a layout is matched whole: same result as column by column."""
    first = decode_test_decoding(message.encode(), 1)
    again = decode_test_decoding(message.encode(), 2)
    assert first is not None and again is not None
    expected = _TestDecodingParser(message, 2).parse()
    assert again == expected


@pytest.mark.parametrize(
    "second",
    [
        "table public.lay: UPDATE: id[integer]:2 big[text]:unchanged-toast-datum n[text]:'b'",
        "table public.lay: UPDATE: id[integer]:2 big[bit(2)]:B'01' n[text]:'b'",
        "table public.lay: UPDATE: id[integer]:2 big[text]:null n[text]:'it''s'",
        "table public.lay: UPDATE: id[integer]:2 big[text]:'null' n[text]:''",
        "table public.lay: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 big[text]:'x'"
        " n[text]:'b'",
        "table public.lay: UPDATE: id[integer]:2 big[varchar]:'x' n[text]:'b'",
        "table public.lay: UPDATE: id[integer]:2 big[text]:'x'",
        "table public.lay: UPDATE: id[integer]:2 big[text]:'x' n[text]:'unterminated",
    ],
)
def test_a_message_unlike_the_remembered_layout(second: str) -> None:
    decode_test_decoding(b"table public.lay: UPDATE: id[integer]:1 big[text]:'a' n[text]:'a'")
    try:
        expected = _TestDecodingParser(second, 0).parse()
    except DecodeError:
        with pytest.raises(DecodeError):
            decode_test_decoding(second.encode())
        return
    assert decode_test_decoding(second.encode()) == expected


def test_changes_of_one_layout_do_not_share_values() -> None:
    one = decode_test_decoding(b"table public.sh: DELETE: id[integer]:1")
    two = decode_test_decoding(b"table public.sh: DELETE: id[integer]:2")
    assert one is not None and two is not None
    assert (one.key_values, two.key_values) == ([b"1"], [b"2"])
    assert one.values == two.values == []


def test_values_are_the_exact_text() -> None:
    change = decode_test_decoding(
        b"table public.t: INSERT: a[text]:'it''s' b[numeric]:0.100000000000000000000000000001"
        b" c[text]:null d[bit(3)]:B'101'"
    )
    assert change is not None
    assert change.columns == ["a", "b", "c", "d"]
    assert change.values == [b"it's", b"0.100000000000000000000000000001", None, b"101"]


def test_update_with_old_key_and_unchanged_toast() -> None:
    change = decode_test_decoding(
        b"table public.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2"
        b" big[text]:unchanged-toast-datum"
    )
    assert change is not None
    assert (change.kind, change.key_columns, change.key_values) == ("U", ["id"], [b"1"])
    assert (change.columns, change.values, change.unchanged) == (["id"], [b"2"], {"big"})


def test_delete_fills_the_key() -> None:
    change = decode_test_decoding(b"table public.t: DELETE: id[integer]:9")
    assert change is not None
    assert (change.kind, change.key_columns, change.key_values, change.columns) == (
        "D",
        ["id"],
        [b"9"],
        [],
    )


@pytest.mark.parametrize(
    "message",
    [
        'table "My Schema"."Odd.Table": INSERT: "Col A"[integer]:1',
        'table public."Order": UPDATE: "x""y"[text]:\'v\'',
        "table public.t: INSERT: c[public.\"My Type\"]:'v'",
        "table public.t: TRUNCATE: (no-flags)",
    ],
)
def test_quoted_names_and_truncate_go_to_the_careful_parser(message: str) -> None:
    assert _fast_test_decoding(message.encode(), 0) is None
    assert decode_test_decoding(message.encode()) == _TestDecodingParser(message, 0).parse()


def test_utf8_values_stay_bytes_and_describe_shows_text() -> None:
    change = decode_test_decoding("table public.t: INSERT: n[text]:'naïve ☃'".encode())
    assert change is not None
    assert change.values == ["naïve ☃".encode()]
    assert "n='naïve ☃'" in change.describe()


def test_quoted_names_are_unquoted() -> None:
    change = decode_test_decoding(b'table "My Schema"."Odd.Table": INSERT: "Col ""A"""[integer]:1')
    assert change is not None
    assert (change.schema, change.table, change.columns) == ("My Schema", "Odd.Table", ['Col "A"'])


def test_truncate_lists_every_relation_and_its_flags() -> None:
    change = decode_test_decoding(
        b"table public.a, public.b: TRUNCATE: restart_seqs cascade", lsn=3
    )
    assert change is not None
    assert change.kind == "T" and change.relations == [("public", "a"), ("public", "b")]
    assert change.restart_seqs and change.cascade


def test_non_row_messages_are_ignored() -> None:
    assert decode_test_decoding(b"BEGIN 123") is None
    assert decode_test_decoding(b"message: transactional: 1 prefix: p, sz: 1 content:x") is None


def test_malformed_message_is_an_error() -> None:
    with pytest.raises(DecodeError):
        decode_test_decoding(b"table public.t: INSERT: note[text]:'unterminated")


def test_wal2json_keeps_numbers_as_text() -> None:
    change = decode_wal2json(
        b'{"action":"U","schema":"s","table":"t",'
        b'"columns":[{"name":"n","type":"numeric","value":1.10000000000000000000001},'
        b'{"name":"b","type":"bytea","value":"00ff"},{"name":"ok","type":"boolean","value":true}],'
        b'"identity":[{"name":"id","type":"integer","value":12345678901234567890}]}'
    )
    assert change is not None
    assert change.values == [b"1.10000000000000000000001", b"\\x00ff", b"t"]
    assert change.key_values == [b"12345678901234567890"]


def test_wal2json_skips_transaction_markers() -> None:
    assert decode_wal2json(b'{"action":"B","xid":1}') is None
    with pytest.raises(DecodeError):
        decode_wal2json(b'{"action":')


# wal2json v2 messages as the plugin prints them (xid and timestamp in every row message).
W2J_HEAD = b'{"action":"%s","xid":%d,"timestamp":"2026-11-24 10:54:22.244062+00",'
W2J_ROWS = [
    b'"schema":"public","table":"Wt","columns":[{"name":"id","type":"integer","value":6},'
    b'{"name":"Odd \\"name","type":"text","value":"it\'s \\"q\\" \\\\ back \xc3\xbc\\n/"},'
    b'{"name":"n","type":"numeric","value":1.50},{"name":"b","type":"boolean","value":true},'
    b'{"name":"j","type":"jsonb","value":"{\\"x\\": [1, 2.0]}"},'
    b'{"name":"a","type":"integer[]","value":"{1,2}"},'
    b'{"name":"f","type":"double precision","value":1e+300},'
    b'{"name":"ba","type":"bytea","value":"00ff"},'
    b'{"name":"ts","type":"timestamp with time zone","value":"2026-11-24 10:54:22.243791+00"},'
    b'{"name":"p","type":"point","value":"(1,2)"}]}',
    b'"schema":"public","table":"Wt","columns":[{"name":"id","type":"integer","value":8},'
    b'{"name":"Odd \\"name","type":"text","value":null},'
    b'{"name":"n","type":"numeric","value":null},{"name":"b","type":"boolean","value":false},'
    b'{"name":"j","type":"jsonb","value":null},{"name":"a","type":"integer[]","value":null},'
    b'{"name":"f","type":"double precision","value":null},'
    b'{"name":"ba","type":"bytea","value":""},'
    b'{"name":"ts","type":"timestamp with time zone","value":null},'
    b'{"name":"p","type":"point","value":"(,)}]{"}]}',
]
W2J_UPDATE = (
    b'"schema":"s p","table":"t","columns":[{"name":"id","type":"integer","value":7},'
    b'{"name":"v","type":"text","value":"\\u00e9\\t"}],'
    b'"identity":[{"name":"id","type":"integer","value":%d}]}'
)
W2J_ID = b'{"name":"id","type":"integer","value":%d}'
W2J_DELETE = b'"schema":"public","table":"Wt","identity":[' + W2J_ID + b"]}"


def _w2j(action: bytes, xid: int, body: bytes) -> bytes:
    return W2J_HEAD % (action, xid) + body


def _slow_w2j(message: bytes) -> object:
    from pgferry.cdc.decode import _wal2json_parsed

    return _wal2json_parsed(message, 9)


@pytest.mark.parametrize(
    "messages",
    [
        [_w2j(b"I", 1, W2J_ROWS[0]), _w2j(b"I", 2, W2J_ROWS[1]), _w2j(b"I", 3, W2J_ROWS[0])],
        [_w2j(b"U", 10, W2J_UPDATE % 6), _w2j(b"U", 11, W2J_UPDATE % 12345678901234567890)],
        [_w2j(b"D", 20, W2J_DELETE % 7), _w2j(b"D", 21, W2J_DELETE % 8)],
    ],
)
def test_wal2json_layout_path_reads_like_json(messages: list[bytes]) -> None:
    """The first message of a table teaches its layout; the next ones (another xid and
    timestamp) are matched by it and must decode exactly as json.loads does."""
    from pgferry.cdc import decode

    decode._W2J_SHAPES.clear()
    for message in messages:
        assert decode_wal2json(message, 9) == _slow_w2j(message)
        assert decode._W2J_SHAPES, "the layout was not learnt"
    first = decode_wal2json(messages[0], 9)
    assert first is not None and first == _slow_w2j(messages[0])


def test_wal2json_layout_values() -> None:
    from pgferry.cdc import decode

    decode._W2J_SHAPES.clear()
    decode_wal2json(_w2j(b"I", 1, W2J_ROWS[1]), 0)
    change = decode_wal2json(_w2j(b"I", 2, W2J_ROWS[0]), 0)
    assert change is not None
    assert change.columns[1] == 'Odd "name'
    assert change.values == [
        b"6",
        'it\'s "q" \\ back \u00fc\n/'.encode(),
        b"1.50",
        b"t",
        b'{"x": [1, 2.0]}',
        b"{1,2}",
        b"1e+300",
        b"\\x00ff",
        b"2026-11-24 10:54:22.243791+00",
        b"(1,2)",
    ]
    update = decode_wal2json(_w2j(b"U", 3, W2J_UPDATE % 6), 0)
    update = decode_wal2json(_w2j(b"U", 4, W2J_UPDATE % 6), 0)
    assert update is not None
    assert update.values == [b"7", "\u00e9\t".encode()] and update.key_values == [b"6"]
    assert update.key_columns == ["id"] and update.schema == "s p"


def test_wal2json_other_layout_of_a_known_table() -> None:
    """A table whose columns changed (or an UPDATE without identity) does not match the
    learnt pattern and is read by json.loads."""
    from pgferry.cdc import decode

    decode._W2J_SHAPES.clear()
    decode_wal2json(_w2j(b"I", 1, W2J_ROWS[0]), 0)
    narrower = _w2j(
        b"I",
        2,
        b'"schema":"public","table":"Wt","columns":[' + W2J_ID % 1 + b"]}",
    )
    assert decode_wal2json(narrower, 9) == _slow_w2j(narrower)
    no_identity = _w2j(
        b"U",
        3,
        b'"schema":"public","table":"Wt","columns":[' + W2J_ID % 1 + b"]}",
    )
    assert decode_wal2json(no_identity, 9) == _slow_w2j(no_identity)
    assert decode_wal2json(no_identity, 9) == _slow_w2j(no_identity)


# -- adversarial input: the decoders stay linear (SPEC §4) ------------------------------
# Each case teaches the decoder a layout, then sends a message that does not fit it. A
# backtracking pattern took exponential time here (a 30-character value: minutes), so the
# guard turns a regression into a failure instead of a hung suite; the speed itself is
# measured by bench/decode_bench.py.


@pytest.fixture
def hang_guard() -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError("the decoder did not finish: it is not linear in its input")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


ADVERSARIAL_TD = [
    ("a" * 40, "a" * 40),
    ("a" * 200_000, "a" * 200_000),
    ("''" * 50_000, "'" * 50_000),
    ("x[int]: " * 10_000, "x[int]: " * 10_000),
    ("old-key: id[integer]:3 new-tuple: " * 3_000, "old-key: id[integer]:3 new-tuple: " * 3_000),
    ("it''s " * 20_000, "it's " * 20_000),
]


@pytest.mark.parametrize(("printed", "text"), ADVERSARIAL_TD, ids=lambda v: f"{len(v)}")
def test_a_long_value_next_to_unchanged_toast_decodes(
    hang_guard: None, printed: str, text: str
) -> None:
    """The seen hang: an UPDATE whose long value sits next to an unchanged TOASTed column
    after the table's layout was learned from an ordinary message."""
    decode_test_decoding(b"table public.adv: UPDATE: id[integer]:1 note[text]:'x' big[text]:'y'")
    message = f"table public.adv: UPDATE: id[integer]:1 note[text]:'{printed}' "
    message += "big[text]:unchanged-toast-datum"
    change = decode_test_decoding(message.encode())
    assert change is not None
    assert change.columns == ["id", "note"]
    assert change.values == [b"1", text.encode()]
    assert change.unchanged == {"big"}


@pytest.mark.parametrize("size", [40, 100_000])
def test_an_unterminated_value_is_an_error_not_a_hang(hang_guard: None, size: int) -> None:
    decode_test_decoding(b"table public.adv2: INSERT: id[integer]:1 note[text]:'x'")
    with pytest.raises(DecodeError):
        decode_test_decoding(
            f"table public.adv2: INSERT: id[integer]:1 note[text]:'{'a' * size}".encode()
        )


@pytest.mark.parametrize(
    "value",
    ['a"\\' * 30_000, '{"name":"x","type":"t","value":' * 5_000, "\\u00e9" * 10_000],
    ids=["escapes", "json-keys", "unicode-escapes"],
)
def test_wal2json_adversarial_strings(hang_guard: None, value: str) -> None:
    head = '{"action":"I","xid":7,"schema":"public","table":"adv","columns":['
    plain = head + '{"name":"id","type":"integer","value":1},{"name":"note","type":"text",'
    decode_wal2json((plain + '"value":"x"}]}').encode())
    change = decode_wal2json((plain + '"value":' + json.dumps(value) + "}]}").encode())
    assert change is not None
    assert change.values == [b"1", value.encode()]


def test_wal2json_type_name_with_a_double_quote() -> None:
    """wal2json prints type names unescaped: a type named with a double quote breaks the
    JSON; the decoder reads the message anyway, values exact."""
    value = '(1,"a ""b""")'
    message = (
        '{"action":"I","xid":7,"schema":"public","table":"qt","columns":['
        '{"name":"id","type":"integer","value":1},'
        '{"name":"p","type":"public."pair ""t"""","value":' + json.dumps(value) + "},"
        '{"name":"note","type":"text","value":' + json.dumps('x","value":') + "}]}"
    ).encode()
    for _ in range(2):  # the second time, no remembered layout gets in the way
        change = decode_wal2json(message)
        assert change is not None
        assert change.columns == ["id", "p", "note"]
        assert change.values == [b"1", value.encode(), b'x","value":']
