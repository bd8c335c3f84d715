"""No password survives in a message, a command line or argparse's complaints, whether the
connection string that held it parsed or not."""

from __future__ import annotations

import pytest

from pgferry.cli.main import build_parser
from pgferry.errors import InputError
from pgferry.pg.conninfo import ConnInfo, scrub
from pgferry.pg.secrets import mask_bytes, mask_text

PW = "Pw-s3cr3t"

MALFORMED = [
    f"postgresql//user:{PW}@host/db",
    f"postgresql:/user:{PW}@host/db",
    f"postgresql://user:{PW}%zz@host/db",
    f"postgresql://user:{PW}%@host/db",
    f"postgresql://user@host/db?password={PW}%g",
    f"host=h password={PW} port",
    f"host=h password='{PW}",
    f"{PW}",
    f"user {PW}",
    f"host=h {PW}=1",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_connection_string_is_never_echoed(text: str) -> None:
    with pytest.raises(InputError) as caught:
        ConnInfo.parse(text, "source")
    shown = caught.value.one_line()
    assert PW not in shown
    assert shown.startswith("invalid source connection string")


def test_the_missing_scheme_slashes_are_named() -> None:
    with pytest.raises(InputError) as caught:
        ConnInfo.parse(f"postgresql//user:{PW}@host/db", "source")
    assert "postgresql://" in caught.value.message
    assert 'missing "="' in caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://user:{PW}@host/db",
        f"postgres://user:{PW}@host:5432/db?sslmode=require",
        f"postgresql//user:{PW}@host/db",
        f"x host=h password={PW} y",
        f"host=h password = '{PW} with space' port=1",
        f"postgresql://user@host/db?sslmode=require&password={PW}",
        f'failed: "postgresql://u:{PW}@h/d"',
    ],
)
def test_every_spelling_of_a_password_is_masked(text: str) -> None:
    assert PW not in scrub(text)
    assert PW.encode() not in mask_bytes(text.encode())
    assert len(mask_bytes(text.encode())) == len(text.encode())


def test_masking_keeps_what_is_not_a_password() -> None:
    assert scrub(f"postgresql://alice:{PW}@db1:5432/app") == "postgresql://alice:****@db1:5432/app"
    kept = "copied 3 tables at 09:15:02 to alice@db1:5432/app (fix: see --help)"
    assert mask_text(kept) == kept


@pytest.mark.parametrize(
    "flag", ["--sourc", "--sou", "--targ", "--target-", "--drop-if", "--table-job"]
)
def test_flags_are_never_abbreviated(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["clone", flag, f"postgresql://u:{PW}@h/db"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err
    assert PW not in err
