"""The end position taken from the source's insert position (cdc.protocol.record_boundary):
moved back only from right after a page header, never from a record that ends there.

A commit record that crosses into a page and ends within its first 40 bytes is a
committed transaction: the end position used to be moved back to the page start (any
offset up to 40 was taken for a long page header), so apply left that last transaction
out at cutover, about once in 500 cutovers (CI saw one: same row count, other content).
"""

from __future__ import annotations

import pytest

from pgferry.cdc.protocol import record_boundary

PAGE = 8192
SEGMENT = 16 * 1024 * 1024
PAGE_IN_SEGMENT = 5 * SEGMENT + 3 * PAGE  # a page that is not its segment's first
SEGMENT_START = 5 * SEGMENT


@pytest.mark.parametrize(
    ("lsn", "expected"),
    [
        (PAGE_IN_SEGMENT + 24, PAGE_IN_SEGMENT),  # right after a short header: idle
        (PAGE_IN_SEGMENT + 25, PAGE_IN_SEGMENT + 25),  # a record's tail ends here
        (PAGE_IN_SEGMENT + 32, PAGE_IN_SEGMENT + 32),
        (PAGE_IN_SEGMENT + 40, PAGE_IN_SEGMENT + 40),
        (PAGE_IN_SEGMENT + 4000, PAGE_IN_SEGMENT + 4000),
        (SEGMENT_START + 40, SEGMENT_START),  # right after a segment's long header
        (SEGMENT_START + 41, SEGMENT_START + 41),
        (SEGMENT_START + PAGE + 24, SEGMENT_START + PAGE),  # its second page: short header
        (SEGMENT_START + PAGE + 32, SEGMENT_START + PAGE + 32),
    ],
)
def test_only_a_page_header_moves_the_position_back(lsn: int, expected: int) -> None:
    assert record_boundary(lsn, SEGMENT) == expected


def test_the_segment_size_decides_which_pages_have_the_long_header() -> None:
    one_mb = 1024 * 1024
    assert record_boundary(3 * one_mb + 32, one_mb) == 3 * one_mb  # a 1 MB segment's start
    assert record_boundary(3 * one_mb + 32, SEGMENT) == 3 * one_mb + 32  # mid-segment page
