"""Identifiers for generated objects: plain, hostile (quotes, spaces, mixed case, unicode,
reserved words) and 63-byte long ones, unique within their namespace."""

from __future__ import annotations

import random

MAX_BYTES = 63

_HOSTILE = (
    "Mixed Case",
    'quote"d',
    "apos'trophe",
    "sp ace",
    "ünï表",
    "semi;colon --",
    "select",
    "UPPER",
    "dot.ted",
    "back\\slash",
    "tab\tin",
    "$dollar%",
    "émoji 🚀",
    "col[integer]",
    "a:b",
)


def truncate_bytes(text: str, limit: int = MAX_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes without splitting a character."""
    out = text.encode()[:limit]
    return out.decode(errors="ignore")


class Namer:
    """Hands out identifiers that never repeat in one namespace (a schema or a table)."""

    def __init__(self, rng: random.Random, hostile: float) -> None:
        """`hostile`: the share of hostile names among those handed out."""
        self.rng, self.hostile, self.used = rng, hostile, set[str]()

    def name(self, stem: str) -> str:
        """A new name: `stem` and a number, possibly dressed up as a hostile one."""
        number = len(self.used) + 1
        r = self.rng.random()
        if r < self.hostile * 0.15:
            # Exactly 63 bytes, multibyte characters included: the longest legal name.
            base = f"{stem}{number} {self.rng.choice(_HOSTILE)} long 表"
            candidate = truncate_bytes(base + "x" * MAX_BYTES)
            while len(candidate.encode()) < MAX_BYTES:
                candidate += "x"
        elif r < self.hostile:
            candidate = truncate_bytes(f"{stem}{number} {self.rng.choice(_HOSTILE)}")
        else:
            candidate = f"{stem}{number}"
        while candidate in self.used:
            candidate = truncate_bytes(f"{number}{candidate}")
        self.used.add(candidate)
        return candidate
