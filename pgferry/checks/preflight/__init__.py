"""`pgferry preflight`: everything that would make a migration fail or lose data, checked
before anything is written.

The checks read the source, the target and this machine, and end up in one PASS/WARN/FAIL
`Report`, every WARN and FAIL with the exact fix. The rules are pure functions (`judge_*`,
`table_in_scope`, `unmatched_filter_names`) over facts the thin I/O code reads, so each
one is unit tested without a server.

`runner` drives a run, `session` holds its read-only sessions, `facts` what it learns;
every other module is one family of checks. The public names are re-exported here.
"""

from pgferry.catalog.inscope import table_in_scope
from pgferry.checks.preflight.capacity import (
    EXTRA_SOURCE_SESSIONS,
    EXTRA_TARGET_SESSIONS,
    judge_connections,
    judge_parallel_workers,
)
from pgferry.checks.preflight.compat import AvailableExtension, judge_extensions
from pgferry.checks.preflight.facts import (
    PreflightOptions,
    RoleFacts,
    ScopeTable,
    SourceFacts,
    SourceNames,
)
from pgferry.checks.preflight.local import (
    COPY_BYTES_PER_SECOND_PER_JOB,
    DISK_HEADROOM,
    check_filter_file,
    judge_disk,
    local_checks,
)
from pgferry.checks.preflight.provider import markers_names, provider_internals
from pgferry.checks.preflight.replication import (
    LONG_TRANSACTION_SECONDS,
    judge_capacity,
    judge_leftover_slot,
    judge_replication_role,
    judge_wal_level,
    judge_wal_sender_timeout,
    probe_decoding_plugin,
    probe_replication,
)
from pgferry.checks.preflight.runner import run_preflight
from pgferry.checks.preflight.scope import extensions_in_scope, unmatched_filter_names
from pgferry.checks.preflight.source import (
    MIN_SOURCE_MAJOR,
    XID_FAIL_FRACTION,
    XID_LIMIT,
    XID_WARN_FRACTION,
    judge_prepared_transactions,
    judge_source_version,
    judge_xid_age,
    source_checks,
)
from pgferry.checks.preflight.tables import replica_identity_problem
from pgferry.checks.preflight.target import (
    judge_target_empty,
    judge_target_version,
    target_checks,
)

__all__ = [
    "COPY_BYTES_PER_SECOND_PER_JOB",
    "DISK_HEADROOM",
    "EXTRA_SOURCE_SESSIONS",
    "EXTRA_TARGET_SESSIONS",
    "LONG_TRANSACTION_SECONDS",
    "MIN_SOURCE_MAJOR",
    "XID_FAIL_FRACTION",
    "XID_LIMIT",
    "XID_WARN_FRACTION",
    "AvailableExtension",
    "PreflightOptions",
    "RoleFacts",
    "ScopeTable",
    "SourceFacts",
    "SourceNames",
    "check_filter_file",
    "extensions_in_scope",
    "judge_capacity",
    "judge_connections",
    "judge_disk",
    "judge_extensions",
    "judge_leftover_slot",
    "judge_parallel_workers",
    "judge_prepared_transactions",
    "judge_replication_role",
    "judge_source_version",
    "judge_target_empty",
    "judge_target_version",
    "judge_wal_level",
    "judge_wal_sender_timeout",
    "judge_xid_age",
    "local_checks",
    "markers_names",
    "probe_decoding_plugin",
    "probe_replication",
    "provider_internals",
    "replica_identity_problem",
    "run_preflight",
    "source_checks",
    "table_in_scope",
    "target_checks",
    "unmatched_filter_names",
]
