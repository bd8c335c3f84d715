"""pgferry problems the explorer found that issue 9 does not cover: by default the explorer
steers around them (and says so), so a run shows the rest; `--avoid none` shows them too."""

from __future__ import annotations

# name -> what goes wrong; each name is checked where the generator or the runner avoids it.
KNOWN: dict[str, str] = {
    "truncate-in-copy": (
        "a TRUNCATE committed on the source after the slot's snapshot but before the copy "
        "of that table starts makes the copy read an empty table (TRUNCATE is not "
        "MVCC-safe), and apply then matches no row for the changes that follow; avoided by "
        "holding every TRUNCATE until apply runs"
    ),
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
    "verify-percent-name": (
        "pgferry's verify (run at the cutover) fails on a table whose name holds '%' "
        "(psycopg reads it as a placeholder: \"only '%s', '%b', '%t' are allowed as "
        'placeholders"), so clone --follow exits 1 after a good cutover; avoided by '
        "leaving '%' out of generated names"
    ),
}


def parse_avoid(text: str) -> frozenset[str]:
    """'all' (the default), 'none', or a comma-separated list of KNOWN names."""
    if text == "all":
        return frozenset(KNOWN)
    if text == "none":
        return frozenset()
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = names - KNOWN.keys()
    if unknown:
        raise ValueError(f"unknown issue(s) {sorted(unknown)}; known: {sorted(KNOWN)}")
    return names
