"""What the server's sessions are doing: the one home of the SQL over pg_stat_activity,
pg_locks, the progress views and the WAL and replication statistics, read by `status`,
`diagnose`, preflight and the commands that end pgferry's own sessions."""

from __future__ import annotations

OLD_XMIN_SQL = """
SELECT pid, usename, application_name, state, age(backend_xmin),
       extract(epoch FROM clock_timestamp() - xact_start)::float8,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 80)
  FROM pg_stat_activity
 WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
 ORDER BY age(backend_xmin) DESC
 LIMIT 10
"""

ACTIVE_SESSIONS_SQL = """
SELECT a.pid, a.application_name, a.state, a.backend_type,
       extract(epoch FROM clock_timestamp() - a.query_start)::float8,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8,
       a.wait_event_type, a.wait_event, left(a.query, 4000),
       pg_blocking_pids(a.pid)
  FROM pg_stat_activity a
 WHERE a.pid <> pg_backend_pid()
   AND (a.application_name LIKE ANY(%(patterns)s)
        OR (a.application_name = ANY(%(tools)s) AND a.datname = current_database()))
 ORDER BY a.query_start NULLS LAST, a.pid
"""

# Connections in use: on the server, by this role, in this database
CONNECTION_COUNTS_SQL = (
    "SELECT count(*) FILTER (WHERE backend_type = 'client backend'), "
    "count(*) FILTER (WHERE usename = current_user), "
    "count(*) FILTER (WHERE datname = current_database()), "
    "(SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user), "
    "(SELECT datconnlimit FROM pg_database WHERE datname = current_database()) "
    "FROM pg_stat_activity"
)

# Transactions holding a transaction ID (they delay a slot's consistent point)
OPEN_WRITE_TRANSACTIONS_SQL = (
    "SELECT pid, datname, usename, extract(epoch FROM now() - xact_start)::int8 "
    "FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() "
    "AND xact_start < now() - make_interval(secs => %s) ORDER BY xact_start LIMIT %s"
)

# WAL written since the statistics were reset, and over how long
WAL_RATE_SQL = (
    "SELECT wal_bytes::float8, extract(epoch FROM now() - stats_reset)::float8 "
    "FROM pg_stat_wal WHERE stats_reset IS NOT NULL"
)

# Other sessions in this database, and whether each is pgferry's (application_name LIKE %s)
DATABASE_SESSIONS_SQL = """
        SELECT pid, application_name, application_name LIKE %s
          FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND backend_type = 'client backend'
         ORDER BY pid
        """

# pgferry's apply sessions on the target
APPLY_SESSIONS_SQL = (
    "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgferry:% apply'"
)

THROUGHPUT_SQL = """
SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
            ELSE pg_current_wal_lsn() END::text,
       pg_database_size(current_database())
"""

VACUUM_PROGRESS_SQL = """
SELECT p.pid, p.relid, p.relid::regclass::text, p.phase,
       CASE WHEN p.heap_blks_total > 0
            THEN round(100.0 * p.heap_blks_scanned / p.heap_blks_total, 1)::float8 END,
       a.backend_type,
       CASE WHEN a.wait_event_type IS NOT NULL
            THEN a.wait_event_type || ':' || a.wait_event END,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8
  FROM pg_stat_progress_vacuum p LEFT JOIN pg_stat_activity a ON a.pid = p.pid
 WHERE p.datname = current_database()
 ORDER BY p.pid
"""

IDLE_IN_TRANSACTION_SQL = """
SELECT pid, usename, application_name,
       extract(epoch FROM clock_timestamp() - state_change)::float8,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 80)
  FROM pg_stat_activity
 WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')
   AND pid <> pg_backend_pid() AND datname = current_database()
 ORDER BY state_change
"""

WAITS_SQL = """
SELECT coalesce(backend_type, '?'), coalesce(state, ''),
       coalesce(wait_event_type, '(running)'), coalesce(wait_event, ''), count(*)
  FROM pg_stat_activity
 WHERE pid <> pg_backend_pid()
 GROUP BY 1, 2, 3, 4
 ORDER BY 5 DESC, 1, 2, 3, 4
"""

UNGRANTED_LOCKS_SQL = """
SELECT l.pid, l.locktype, l.mode, l.relation::regclass::text,
       pg_blocking_pids(l.pid),
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80)
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE NOT l.granted
   AND a.datname = current_database()
 ORDER BY l.pid
"""

BLOCKED_SQL = """
SELECT a.pid, a.application_name, a.wait_event_type || ':' || a.wait_event,
       pg_blocking_pids(a.pid),
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80)
  FROM pg_stat_activity a
 WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()
   AND cardinality(pg_blocking_pids(a.pid)) > 0
 ORDER BY a.pid
"""

BLOCKERS_SQL = """
SELECT a.pid, a.usename, a.application_name, a.state,
       CASE WHEN a.wait_event_type IS NOT NULL
            THEN a.wait_event_type || ':' || a.wait_event END,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120),
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8,
       extract(epoch FROM clock_timestamp() - a.state_change)::float8
  FROM pg_stat_activity a WHERE a.pid = ANY(%s)
"""

PGFERRY_SESSIONS_SQL = """
SELECT a.pid, a.application_name,
       coalesce(c.command, CASE WHEN i.pid IS NOT NULL THEN 'CREATE INDEX' END,
                upper(substring(ltrim(a.query)
                                FROM '(?i)^(create\\s+(unique\\s+)?index|alter\\s+table|\\w+)')),
                '?'),
       nullif(coalesce(c.relid, i.relid, w.relation, 0), 0)::oid,
       CASE WHEN coalesce(c.relid, i.relid, w.relation, 0) <> 0
            THEN coalesce(c.relid, i.relid, w.relation)::regclass::text END,
       a.state, a.wait_event_type, a.wait_event,
       extract(epoch FROM a.query_start)::float8,
       extract(epoch FROM clock_timestamp() - a.query_start)::float8,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 160),
       c.bytes_processed, c.tuples_processed,
       i.phase, i.blocks_done, i.blocks_total,
       pg_blocking_pids(a.pid),
       (SELECT string_agg(l.mode || ' on ' ||
                          coalesce(l.relation::regclass::text, l.locktype), ', ')
          FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)
  FROM pg_stat_activity a
  LEFT JOIN pg_stat_progress_copy c ON c.pid = a.pid
  LEFT JOIN pg_stat_progress_create_index i ON i.pid = a.pid
  LEFT JOIN LATERAL (SELECT l.relation FROM pg_locks l  -- a statement still waiting to open it
                      WHERE l.pid = a.pid AND NOT l.granted AND l.relation IS NOT NULL
                      LIMIT 1) w ON true
 WHERE a.application_name LIKE %(pattern)s
   AND a.datname = current_database()
   AND a.pid <> pg_backend_pid()
   AND a.state = 'active'
 ORDER BY a.query_start, a.pid
"""

# PostgreSQL 13 has no pg_stat_progress_copy.
PGFERRY_SESSIONS_SQL_13 = PGFERRY_SESSIONS_SQL.replace(
    "LEFT JOIN pg_stat_progress_copy c ON c.pid = a.pid",
    "LEFT JOIN (SELECT NULL::int AS pid, NULL::text AS command, NULL::oid AS relid, "
    "NULL::bigint AS bytes_processed, NULL::bigint AS tuples_processed) c ON false",
)

# One query per progress view: each exists from some version on, and one failing must
# not hide the others.
PROGRESS_SQL = {
    "copy": (
        140000,
        "SELECT pid, relid::regclass::text, command, type, bytes_processed, bytes_total, "
        "tuples_processed, tuples_excluded FROM pg_stat_progress_copy",
        (
            "table",
            "command",
            "type",
            "bytes_processed",
            "bytes_total",
            "tuples_processed",
            "tuples_excluded",
        ),
    ),
    "create_index": (
        120000,
        "SELECT pid, relid::regclass::text, CASE WHEN index_relid = 0 THEN NULL "
        "ELSE index_relid::regclass::text END, command, phase, blocks_total, blocks_done, "
        "tuples_total, tuples_done, partitions_total, partitions_done "
        "FROM pg_stat_progress_create_index",
        (
            "table",
            "index",
            "command",
            "phase",
            "blocks_total",
            "blocks_done",
            "tuples_total",
            "tuples_done",
            "partitions_total",
            "partitions_done",
        ),
    ),
    "vacuum": (
        100000,
        "SELECT pid, relid::regclass::text, phase, heap_blks_total, heap_blks_scanned, "
        "heap_blks_vacuumed, index_vacuum_count FROM pg_stat_progress_vacuum",
        (
            "table",
            "phase",
            "heap_blks_total",
            "heap_blks_scanned",
            "heap_blks_vacuumed",
            "index_vacuum_count",
        ),
    ),
    "analyze": (
        130000,
        "SELECT pid, relid::regclass::text, phase, sample_blks_total, sample_blks_scanned "
        "FROM pg_stat_progress_analyze",
        ("table", "phase", "sample_blks_total", "sample_blks_scanned"),
    ),
}

# Walsenders now connected
WALSENDER_COUNT_SQL = "SELECT count(*) FROM pg_stat_replication"

# Client sessions in this database of the given roles that are not pgferry's.
APP_SESSIONS_SQL = """
SELECT pid, usename, coalesce(application_name, ''), state
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
   AND backend_type = 'client backend'
   AND usename = ANY(%s) AND coalesce(application_name, '') NOT LIKE 'pgferry%%'
 ORDER BY pid
"""

# Other sessions of this database holding a transaction ID: writing, or about to commit.
WRITERS_SQL = """
SELECT pid, usename, coalesce(application_name, '')
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
   AND backend_type = 'client backend' AND backend_xid IS NOT NULL
 ORDER BY pid
"""
