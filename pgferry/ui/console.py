"""The one way pgferry makes a rich console."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console


def make_console(
    out: TextIO | None = None, *, soft_wrap: bool = False, piped_width: int = 140
) -> Console:
    """A console on `out` (stdout by default): colour and the terminal's width on a
    terminal; plain text `piped_width` columns wide when piped or redirected. Never
    highlights on its own (object names could look like numbers or paths)."""
    out = out or sys.stdout
    return Console(
        file=out,
        highlight=False,
        soft_wrap=soft_wrap,
        width=None if out.isatty() else piped_width,
    )
