"""How verify's report lines show lists, long definitions and sizes.

Shared by every check, so that the report reads alike from one check to the next and a
long list always ends with the same pointer to --json.
"""

from __future__ import annotations


def listing(lines: list[str], limit: int) -> str:
    """At most `limit` lines, indented, and how many more there are."""
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"... and {len(lines) - limit} more (see --json)")
    return "\n".join(f"  {line}" for line in shown)


def clip(text: str, width: int = 120) -> str:
    """The text on one line, cut to `width` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
