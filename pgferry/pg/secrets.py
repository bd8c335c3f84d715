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

# Each pattern's group 1 is the secret.
_KEYWORD = rb"password\s*=\s*('(?:[^'\\]|\\.)*'?|(?:[^\s'\\]|\\.)+)"
_QUERY = rb"[?&]password=([^&\s]*)"
_USERINFO = rb"(?:^|(?<=[\s/\"'=]))[^\s:/@\"'=]*:(?!//)([^\s]*)@"
_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in (_KEYWORD, _QUERY, _USERINFO))
_TEXT_PATTERNS = tuple(re.compile(p.decode(), re.IGNORECASE) for p in (_KEYWORD, _QUERY, _USERINFO))
MASK = "****"


def secret_spans(data: bytes) -> list[tuple[int, int]]:
    """The [start, end) byte ranges of `data` that may be a password."""
    spans = []
    for pattern in _PATTERNS:
        for match in pattern.finditer(data):
            if match.end(1) > match.start(1):
                spans.append((match.start(1), match.end(1)))
    return spans


def mask_bytes(data: bytes) -> bytes:
    """`data` with every possible password overwritten by '*': the same length."""
    out = bytearray(data)
    for start, end in secret_spans(data):
        out[start:end] = b"*" * (end - start)
    return bytes(out)


def mask_cmdline(cmdline: bytes) -> bytes:
    """/proc/PID/cmdline with every argument masked on its own: no span ever crosses the
    NUL between two arguments (the kernel reads the layout from them)."""
    return b"\0".join(mask_bytes(arg) for arg in cmdline.split(b"\0"))


def mask_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every possible password, and every known secret, replaced by ****."""
    for pattern in _TEXT_PATTERNS:
        text = pattern.sub(_masked_group, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def _masked_group(match: re.Match[str]) -> str:
    whole, offset = match.group(0), match.start(0)
    start, end = match.start(1) - offset, match.end(1) - offset
    if start == end:
        return whole
    return whole[:start] + MASK + whole[end:]


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
