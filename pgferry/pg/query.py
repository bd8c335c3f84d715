"""Composed SQL that also takes parameters.

psycopg looks for placeholders (`%s`, `%b`, `%t`) in the whole text of a query run with
parameters, quoted names included: a table named `a%b` becomes a binary placeholder, and
`a%c` an error. `with_params` doubles the `%` of every name and literal in a composed
query (psycopg turns `%%` back into `%`), leaving the placeholders of its SQL parts.
"""

from __future__ import annotations

from psycopg import sql


def with_params(query: sql.SQL | sql.Composed) -> sql.SQL | sql.Composed:
    """`query`, safe to run with parameters whatever the names in it."""
    if isinstance(query, sql.SQL):
        return query
    return sql.Composed([_part(part) for part in query])


def _part(part: sql.Composable) -> sql.Composable:
    if isinstance(part, sql.Composed):
        return with_params(part)
    if isinstance(part, (sql.Identifier, sql.Literal)):
        text = part.as_string(None)
        return sql.SQL(text.replace("%", "%%")) if "%" in text else part  # type: ignore[arg-type]
    return part
