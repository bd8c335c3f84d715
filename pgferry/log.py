"""Logging: timestamped lines to stderr and to DIR/pgferry.log, secrets scrubbed."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pgferry.pg.conninfo import scrub

_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
_secrets: list[str] = []


class _ScrubFilter(logging.Filter):
    """Last line of defence: no password reaches a log line, whatever formatted it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message, tuple(_secrets))
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def scrubbed(text: str) -> str:
    """`text` as a log line would show it: passwords and other known secrets masked."""
    return scrub(text, tuple(_secrets))


def add_secret(secret: str | None) -> None:
    if secret and secret not in _secrets:
        _secrets.append(secret)


def setup(level: int = logging.INFO, *, stream: bool = True) -> None:
    """Configure the root logger for stderr; call `log_to_file` once DIR is known."""
    root = logging.getLogger()
    root.setLevel(min(level, logging.INFO))
    for h in list(root.handlers):
        root.removeHandler(h)
    if stream:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(level)
        datefmt = "%H:%M:%S" if sys.stderr.isatty() else "%Y-%m-%d %H:%M:%S"
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt=datefmt))
        handler.addFilter(_ScrubFilter())
        handler.set_name("stderr")
        root.addHandler(handler)
    logging.getLogger("psycopg").setLevel(logging.WARNING)


def log_to_file(path: Path, level: int = logging.INFO) -> None:
    """Append every line of the run to path (mode 0600)."""
    root = logging.getLogger()
    for h in root.handlers:
        if h.get_name() == "file":
            return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(min(level, logging.INFO))
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_ScrubFilter())
    handler.set_name("file")
    root.addHandler(handler)
    root.setLevel(min(root.level, handler.level))


def stderr_handler() -> logging.Handler | None:
    for h in logging.getLogger().handlers:
        if h.get_name() == "stderr":
            return h
    return None
