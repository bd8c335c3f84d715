"""LSN math and size/duration formatting."""

from __future__ import annotations

import pytest

from pgferry.pg.lsn import format_lsn, parse_lsn
from pgferry.text import human_bytes, human_duration, parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("0/16B3748", 0x16B3748),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", (1 << 64) - 1),
    ],
)
def test_lsn_round_trip(text: str, value: int) -> None:
    assert parse_lsn(text) == value
    assert format_lsn(value) == text


@pytest.mark.parametrize("bad", ["", "0", "1/2/3", "G/0", "123456789/0", "0/-1", " / "])
def test_lsn_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_lsn(bad)


def test_lsn_ordering_is_numeric() -> None:
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")
    with pytest.raises(ValueError):
        format_lsn(-1)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1048576", 1048576),
        ("200kB", 200 * 1024),
        ("50MB", 50 * 1024**2),
        ("2GB", 2 * 1024**3),
        ("1.5 GB", int(1.5 * 1024**3)),
        ("10k", 10 * 1024),
        ("3tb", 3 * 1024**4),
        ("12 B", 12),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["", "MB", "-1MB", "10 XB", "1e3"])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_human_units() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1536) == "1.5 kB"
    assert human_bytes(3 * 1024**3) == "3.0 GB"
    assert human_duration(0.25) == "250ms"
    assert human_duration(42) == "42.0s"
    assert human_duration(3725) == "1h02m"
    assert human_duration(90000) == "1d01h"
