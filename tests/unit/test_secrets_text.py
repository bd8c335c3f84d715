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


def test_the_command_line_is_rewritten_in_place() -> None:
    import subprocess
    import sys

    from tests.helpers.cli import REPO_ROOT

    script = (
        "import sys\n"
        "from pgferry.pg.secrets import hide_own_argv, own_argv_is_clean\n"
        "print(hide_own_argv(), own_argv_is_clean(), sys.argv[1:] == ARGS)\n"
        "sys.stdout.write(open('/proc/self/cmdline', 'rb').read().decode())\n"
    )
    args = [
        f"--source=postgresql://u:{PW}@h/db",
        "--target",
        f"host=h password={PW}",
        f"postgresql://v:{PW}@h2/db2",
    ]
    done = subprocess.run(
        [sys.executable, "-c", script.replace("ARGS", repr(args)), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
    )
    first, shown = done.stdout.split("\n", 1)
    assert first == "True True True"  # ps shows no password; Python still has it
    assert PW not in shown
    # Each argument masked on its own: the NULs between them (the layout) stay.
    assert shown.split("\0")[-5:] == [
        "--source=postgresql://u:*********@h/db",
        "--target",
        "host=h password=*********",
        "postgresql://v:*********@h2/db2",
        "",
    ]


def test_masking_is_linear_on_long_log_lines() -> None:
    import time

    hostile = [
        "=a:" * 300_000 + "@",  # a regex over user:password@ backtracks on each ':'
        '{"k":"v",' * 200_000 + "x:y@z",
        "password=" * 200_000,
        "?password=&" * 200_000,
    ]
    started = time.monotonic()
    for text in hostile:
        assert len(mask_bytes(text.encode())) == len(text)
        mask_text(text)
    assert time.monotonic() - started < 5
    assert mask_text("=a:b=c:secret@h") == "=a:****@h"
