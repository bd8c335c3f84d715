"""Everything `pgferry clone` was asked to do, resolved from flags and environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgferry.catalog.filters import Filters, no_filters
from pgferry.catalog.plan import PlanOptions
from pgferry.catalog.scope import ScopeOptions
from pgferry.cdc.engine import CdcOptions
from pgferry.pg.conninfo import ConnInfo

PHASES = (
    "catalog",
    "dump",
    "pre-data",
    "copy",
    "large-objects",
    "indexes",
    "constraints",
    "vacuum",
    "sequences",
    "post-data",
)
ALL_STEPS = frozenset(PHASES)
# The phases of the data phase's worker pools (a unit kind each, see clone/scheduler.py).
DATA_STEPS = frozenset(("copy", "large-objects", "indexes", "constraints", "vacuum", "sequences"))
# pgcopydb's granular commands: the phases of the clone each one runs (catalog and dump
# first, unless DIR holds them already). One engine: each is `clone` told to stop short.
SECTIONS: dict[str, frozenset[str]] = {
    "dump": frozenset(("catalog", "dump")),
    "pre-data": frozenset(("catalog", "dump", "pre-data")),
    "post-data": frozenset(("catalog", "dump", "post-data")),
    "schema": frozenset(("catalog", "dump", "pre-data", "post-data")),
    "data": frozenset(("catalog", "dump")) | DATA_STEPS,
    "table-data": frozenset(("catalog", "dump", "copy")),
    "indexes": frozenset(("catalog", "dump", "indexes")),
    "constraints": frozenset(("catalog", "dump", "indexes", "constraints")),
}


@dataclass(frozen=True)
class CloneOptions:
    source: ConnInfo
    target: ConnInfo
    dir: Path
    table_jobs: int = 4
    index_jobs: int = 4
    restore_jobs: int = 0  # 0: same as index_jobs
    large_objects_jobs: int = 4
    split_tables_larger_than: int = 0
    split_max_parts: int = 0
    estimate_table_sizes: bool = False
    filters: Filters = field(default_factory=no_filters)
    no_owner: bool = False
    no_acl: bool = False
    no_comments: bool = False
    no_tablespaces: bool = False
    skip_db_properties: bool = False
    skip_extensions: bool = False
    skip_large_objects: bool = False
    skip_vacuum: bool = False
    drop_if_exists: bool = False
    resume: bool = False
    restart: bool = False
    not_consistent: bool = False
    snapshot: str | None = None
    use_copy_binary: bool = False
    ignore_restore_errors: int = 0
    maintenance_work_mem: str = "1GB"
    progress: bool = True
    follow: bool = False
    cdc: CdcOptions = field(default_factory=CdcOptions)
    skip_preflight: bool = False
    allow_downgrade: bool = False
    roles: bool = False  # create the source cluster's roles the target lacks, first
    # The phases this run may do (pgcopydb's granular commands run a few; see SECTIONS).
    steps: frozenset[str] = ALL_STEPS
    role_passwords: bool = True  # --roles: with the password hashes (--no-role-passwords)
    skip_ext_comments: bool = False
    skip_collations: bool = False
    skip_publications: bool = False
    skip_split_by_ctid: bool = False  # pgferry splits by CTID ranges only: no split at all
    fail_fast: bool = False  # cancel the running units at the first failure
    # dump schema without a target: `target` is a stand-in (the source) and is never
    # connected to; the dump tools are the source's major's.
    no_target: bool = False

    @property
    def partial(self) -> bool:
        return self.steps != ALL_STEPS

    def scope_options(self) -> ScopeOptions:
        return ScopeOptions(
            skip_extensions=self.skip_extensions,
            skip_large_objects=self.skip_large_objects,
            skip_ext_comments=self.skip_ext_comments,
            skip_collations=self.skip_collations,
            skip_publications=self.skip_publications,
        )

    def plan_options(self) -> PlanOptions:
        return PlanOptions(
            split_tables_larger_than=0
            if self.skip_split_by_ctid
            else self.split_tables_larger_than,
            split_max_parts=self.split_max_parts,
            skip_vacuum=self.skip_vacuum,
            table_jobs=self.table_jobs,
        )

    @property
    def effective_restore_jobs(self) -> int:
        return self.restore_jobs or self.index_jobs

    def plan_fingerprint(self) -> dict[str, Any]:
        """Options that shape the plan: a resume with other values is refused."""
        return {
            "source": self.source.short(),
            "target": None if self.no_target else self.target.short(),
            "filters": self.filters.fingerprint(),
            "split_tables_larger_than": self.split_tables_larger_than,
            "split_max_parts": self.split_max_parts,
            "skip_extensions": self.skip_extensions,
            "skip_large_objects": self.skip_large_objects,
            "skip_vacuum": self.skip_vacuum,
            "skip_ext_comments": self.skip_ext_comments,
            "skip_collations": self.skip_collations,
            "skip_publications": self.skip_publications,
            "skip_split_by_ctid": self.skip_split_by_ctid,
            "use_copy_binary": self.use_copy_binary,
            "no_owner": self.no_owner,
            "no_acl": self.no_acl,
            "no_comments": self.no_comments,
            "follow": self.follow,
            "plugin": self.cdc.plugin if self.follow else None,
            "slot_name": self.cdc.slot if self.follow else None,
        }
