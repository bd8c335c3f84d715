"""Where passwords hide in text, and hiding them from `ps` the moment pgferry starts.

Standard library only: `hide_own_argv` runs before anything else is imported, because
every millisecond before it is a millisecond in which other users of the machine can
read the password from /proc/PID/cmdline.

The patterns recognise a password in a connection string whether it parsed or not
(`postgresql//user:PW@host` is malformed, and still holds a password). They
over-mask rather than under-mask, and have no nested quantifiers: linear in the input.
"""

from __future__ import annotations

import os
import re
import sys

# Each pattern's group 1 is the secret; both start at the literal word `password`.
_KEYWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'?|(?:[^\s'\\]|\\.)+)", re.I)
_QUERY = re.compile(r"[?&]password=([^&\s]*)", re.I)
_RUN = re.compile(r"\S+")
_USER_START = frozenset("/\"'=")  # a user name in `user:password@` starts after one of these
MASK = "****"


def _userinfo_span(run: str) -> tuple[int, int] | None:
    """The password in `user:password@` within one whitespace-free run: from the first
    ':' that ends a user name (started at the run's start or after / " ' =, holding no
    ':' or '@', and not a scheme's `://`) to the run's last '@'. One pass, no regex: a
    pattern for this backtracks quadratically on long runs of log text."""
    at = run.rfind("@")
    if at <= 0:
        return None
    user_from: int | None = 0
    for i in range(at):
        ch = run[i]
        if ch in _USER_START:
            user_from = i + 1
        elif ch == "@":
            user_from = None
        elif ch == ":":
            if user_from is not None and not run.startswith("//", i + 1):
                return (i + 1, at) if i + 1 < at else None
            user_from = None
    return None


def secret_spans(text: str) -> list[tuple[int, int]]:
    """The [start, end) ranges of `text` that may be a password, in order, not overlapping."""
    spans = [
        (m.start(1), m.end(1))
        for pattern in (_KEYWORD, _QUERY)
        for m in pattern.finditer(text)
        if m.end(1) > m.start(1)
    ]
    if "@" in text:
        for m in _RUN.finditer(text):
            span = _userinfo_span(m.group())
            if span is not None:
                spans.append((m.start() + span[0], m.start() + span[1]))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def mask_bytes(data: bytes) -> bytes:
    """`data` with every possible password overwritten by '*': the same length."""
    out = bytearray(data)
    for start, end in secret_spans(data.decode("latin-1")):  # one char per byte
        out[start:end] = b"*" * (end - start)
    return bytes(out)


def mask_cmdline(cmdline: bytes) -> bytes:
    """/proc/PID/cmdline with every argument masked on its own: no span ever crosses the
    NUL between two arguments (the kernel reads the layout from them)."""
    return b"\0".join(mask_bytes(arg) for arg in cmdline.split(b"\0"))


def mask_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every possible password, and every known secret, replaced by ****."""
    for start, end in reversed(secret_spans(text)):
        text = text[:start] + MASK + text[end:]
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def hide_own_argv() -> bool:
    """Overwrite the passwords in this process's command line, in place.

    /proc/PID/cmdline (what `ps` shows) reads the argv strings the kernel laid out at
    exec; Python keeps its own copy (sys.argv), so they can be rewritten through
    /proc/self/mem, byte for byte, without re-executing. Returns whether the command
    line now holds no password (True when it never held one); False where the kernel
    does not let us (no /proc, a hardened kernel), and the caller falls back.
    """
    try:
        with open("/proc/self/cmdline", "rb") as f:
            shown = f.read()
        masked = mask_cmdline(shown)
        if masked == shown:
            return True
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # Fields after the command name (which may hold spaces): 48 is arg_start.
        fields = stat[stat.rindex(b")") + 2 :].split()
        arg_start, arg_end = int(fields[45]), int(fields[46])
        if arg_end - arg_start < len(shown):
            return False
        fd = os.open("/proc/self/mem", os.O_RDWR)
        try:
            if os.pread(fd, len(shown), arg_start) != shown:
                return False
            os.pwrite(fd, masked, arg_start)
        finally:
            os.close(fd)
        with open("/proc/self/cmdline", "rb") as f:
            return f.read() == masked
    except (OSError, ValueError, IndexError):
        return False


def own_argv_is_clean() -> bool:
    """Does this process's command line, as `ps` shows it, hold no password?"""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            shown = f.read()
    except OSError:
        return sys.platform != "linux"
    return mask_cmdline(shown) == shown
