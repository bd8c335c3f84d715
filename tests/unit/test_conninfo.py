"""Connection strings: parsing, masking, and keeping passwords out of argv."""

from __future__ import annotations

import pytest

from pgferry.errors import InputError
from pgferry.pg.conninfo import ConnInfo, scrub

SECRET = "s3cr:et@/%pw"


def test_uri_password_kept_apart() -> None:
    info = ConnInfo.parse(
        "postgresql://alice:s3cr%3Aet%40%2F%25pw@db.example:6543/app?sslmode=require", "source"
    )
    assert info.password == SECRET
    assert info.dbname == "app" and info.host == "db.example" and info.port == "6543"
    assert info.params["sslmode"] == "require"
    for text in (info.masked(), info.short(), info.dsn_without_password(), repr(info)):
        assert SECRET not in text and "s3cr" not in text
    assert "password=****" in info.masked()
    assert "sslmode=require" in info.dsn_without_password()
    assert info.child_env({})["PGPASSWORD"] == SECRET


def test_key_value_string() -> None:
    info = ConnInfo.parse("host=h port=5 dbname='my db' user=u password='a b'", "target")
    assert info.password == "a b"
    assert info.dbname == "my db"
    assert "a b" not in info.dsn_without_password()


def test_no_password_no_env() -> None:
    info = ConnInfo.parse("postgresql://u@h/db", "source")
    assert info.password is None
    assert "PGPASSWORD" not in info.child_env({})


@pytest.mark.parametrize("bad", ["", "   ", "postgresql://u:pw@h:notaport/db?x=%ZZ", "host"])
def test_invalid_strings_rejected_without_echo(bad: str) -> None:
    with pytest.raises(InputError) as exc:
        ConnInfo.parse(bad, "source")
    assert "pw@" not in exc.value.one_line()


def test_scrub() -> None:
    assert "hunter2" not in scrub("x password=hunter2 y")
    assert "hunter2" not in scrub("postgresql://bob:hunter2@host/db")
    assert "hunter2" not in scrub("failed: hunter2 is wrong", ("hunter2",))
    assert scrub("nothing here") == "nothing here"


def test_tag_in_application_name() -> None:
    info = ConnInfo.parse("postgresql://u@h/db", "source").with_tag("abc123")
    assert info.application_name("copy-1") == "pgferry:abc123 copy-1"
    assert len(info.application_name("x" * 100)) == 63
