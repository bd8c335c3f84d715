"""Session profiles: the settings of every kind of session pgferry opens, one per use.

A profile is a mapping of server settings given at connection time (`ConnInfo.connect`'s
`settings`), except COMPARE_OUTPUT, which compare and verify set per transaction.
"""

from __future__ import annotations

# Catalog text as UTF-8 even from a SQL_ASCII database (psycopg would return bytes).
UTF8 = {"client_encoding": "UTF8"}

# Looking at a live server (preflight, diagnose): never writes, never hangs on a lock or
# a slow query, never holds a transaction open.
READ_ONLY = {
    **UTF8,
    "default_transaction_read_only": "on",
    "statement_timeout": "30s",
    "lock_timeout": "5s",
    "idle_in_transaction_session_timeout": "60s",
}

# The dashboards (status, cdc-status): read-only and quicker still, they refresh often.
DASHBOARD = {**READ_ONLY, "statement_timeout": "5s", "lock_timeout": "2s"}

# Preflight's probe of slot creation (a temporary slot): bounded, not read-only.
PROBE = {"statement_timeout": "10s", "lock_timeout": "5s"}

# Reading the source for the copy: the snapshot-holding transaction and the COPYs may
# run for hours; values render exactly.
SNAPSHOT_READER = {
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "extra_float_digits": "3",
}

# Copy, index and constraint workers on the target. synchronous_commit on: a unit is
# recorded done once its commit returns, and a resume skips it, so the commit must survive
# a target crash or failover (off loses the last commits of a crashed server: a table
# recorded copied, or its key, was gone). It costs one WAL flush per unit.
BULK_WRITER = {
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "synchronous_commit": "on",
    "search_path": "",
    "extra_float_digits": "3",
}

# Other target sessions whose work a resume does not redo once recorded (database
# settings, foreign keys added or validated): durable whatever the target's default.
DURABLE_WRITER = {"synchronous_commit": "on"}

# Apply on the target: triggers and rules of the replica role, values read the way the
# decoders write them. synchronous_commit off is safe: the origin's progress commits
# with the data, and the spool is trimmed only below what the target flushed.
APPLY_WRITER = {
    "session_replication_role": "replica",
    "synchronous_commit": "off",
    "search_path": "",
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
}

# Parallel apply's sessions (--apply-jobs): a lane waiting this long for a lock gives up,
# and apply goes on one transaction at a time (a wait on a later transaction's lock never
# ends by itself: that transaction commits only after this one).
PARALLEL_APPLY_WRITER = dict(APPLY_WRITER, lock_timeout="5s")

# compare and verify: the snapshot-holding session idles while its workers read.
COMPARE_HOLDER = {"idle_in_transaction_session_timeout": "0"}

# compare and verify, per transaction: values render identically on both sides whatever
# the servers' defaults; row_security off makes a read that RLS would filter fail
# instead of lying.
COMPARE_OUTPUT = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
    "xmloption": "content",
    "row_security": "off",
    "search_path": "",
    "statement_timeout": "0",
}
