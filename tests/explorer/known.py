"""pgferry problems the explorer found beyond issue 9's list, and what the generator can do
to steer around each (`--avoid NAME`, or `all`). Both below are fixed in pgferry, so by
default nothing is avoided; the names stay for exploring an older checkout (--pgferry)."""

from __future__ import annotations

# name -> what goes wrong; each name is checked where the generator or the runner avoids it.
KNOWN: dict[str, str] = {
    "wal2json-quoted-type": (
        "wal2json 2.5 writes the name of a type that needs quoting unescaped "
        '("type":""Sch1"."pos int""): invalid JSON, and pgferry stops with "invalid '
        'wal2json message"; avoided under wal2json by plain type names in "public"'
    ),
    "sentinel-stale-when-idle": (
        "apply records its position in the sentinel at most twice a second and only when "
        "it applies something: the last transactions before a quiet spell stay unrecorded "
        "(replay_lsn, cdc-status) until more changes come; avoided by waiting on the "
        "target's replication origin instead of the sentinel"
    ),
}


# What a run avoids unless told otherwise: nothing (every issue above is fixed).
DEFAULT_AVOID: frozenset[str] = frozenset()


def parse_avoid(text: str) -> frozenset[str]:
    """'all', 'none' (the default), or a comma-separated list of KNOWN names."""
    if text == "all":
        return frozenset(KNOWN)
    if text == "none":
        return frozenset()
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = names - KNOWN.keys()
    if unknown:
        raise ValueError(f"unknown issue(s) {sorted(unknown)}; known: {sorted(KNOWN)}")
    return names
