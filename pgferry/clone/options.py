"""Everything `pgferry clone` was asked to do, resolved from flags and environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgferry.catalog.filters import Filters, no_filters
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

    @property
    def effective_restore_jobs(self) -> int:
        return self.restore_jobs or self.index_jobs

    def plan_fingerprint(self) -> dict[str, Any]:
        """Options that shape the plan: a resume with other values is refused."""
        return {
            "source": self.source.short(),
            "target": self.target.short(),
            "filters": self.filters.fingerprint(),
            "split_tables_larger_than": self.split_tables_larger_than,
            "split_max_parts": self.split_max_parts,
            "skip_extensions": self.skip_extensions,
            "skip_large_objects": self.skip_large_objects,
            "skip_vacuum": self.skip_vacuum,
            "use_copy_binary": self.use_copy_binary,
            "no_owner": self.no_owner,
            "no_acl": self.no_acl,
            "no_comments": self.no_comments,
            "follow": self.follow,
            "plugin": self.cdc.plugin if self.follow else None,
            "slot_name": self.cdc.slot if self.follow else None,
        }
