"""The seeded differential explorer (tests/explorer) on a few seeds per plugin: a random
schema, workload and faults, `clone --follow` to the end position, source == target.

The long run is by hand: `python -m tests.explorer --seeds 1-300 --plugin all`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgferry.demo.clusters import LocalCluster
from tests.explorer.runner import Clusters, Limits, Status, plan_seed, run_seed

# Seeds picked for their coverage at a small cost (5-10 s each here), each of which failed
# or hung on the code before issue 9's fixes (python -m tests.explorer --pgferry OLD):
#   5: every identity (INCLUDE keys, USING INDEX with INCLUDE, FULL with and without a
#      key), inheritance, list/range/two-level partitions; an apply session terminated
#   9: the workload starts before the slot; the walsender terminated twice
#  15: a two-level partitioned table, a walsender terminated, the source restarted
#  10: kill -9 and --resume, a walsender terminated, the target restarted (immediate)
#  12: INCLUDE keys, inheritance; a walsender terminated while the workload streams
#  24: kill -9 and --resume, the source restarted
# pgoutput: 7 (kill -9 and --resume), 9 (the walsender terminated twice: Relation
# messages sent again on each new connection), 10 (kill -9, walsender, target restart),
# 604 (transactions streamed past 64kB: a committed streamed transaction's Relation
# messages count as sent for the connection's later transactions)
QUICK = {"test_decoding": (5, 9, 15), "wal2json": (10, 12, 24), "pgoutput": (7, 9, 10, 604)}
EXTRA = range(20, 40)

# CI bounds: a stuck run fails in minutes, as a HANG with its seed, not at the job's limit.
CI_LIMITS = Limits(seed=240.0, apply_start=90.0, cutover=120.0)


# --apply-jobs 4 (parallel apply), seeds whose faults land while it applies: 1 (killed
# right after a commit), 10 (kill -9, the walsender terminated, the target restarted), 16
# (killed after a commit, then the target restarted).
PARALLEL = [("pgoutput", 1), ("test_decoding", 10), ("wal2json", 16)]


def _explore(
    source: LocalCluster,
    target: LocalCluster,
    tmp_path: Path,
    seed: int,
    plugin: str,
    apply_jobs: int = 1,
) -> None:
    result = run_seed(
        Clusters(source, target, tmp_path),
        seed,
        plugin,
        limits=CI_LIMITS,
        apply_jobs=apply_jobs,
    )
    assert result.status == Status.PASS, (
        f"{result.line()}\n{result.detail}\nreplay: {result.replay}"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("plugin", "seed"), [(plugin, seed) for plugin, seeds in QUICK.items() for seed in seeds]
)
def test_explorer_seed(
    source_cluster: LocalCluster,
    target_cluster: LocalCluster,
    tmp_path: Path,
    plugin: str,
    seed: int,
) -> None:
    _explore(source_cluster, target_cluster, tmp_path, seed, plugin)


@pytest.mark.slow
@pytest.mark.parametrize(("plugin", "seed"), PARALLEL)
def test_explorer_seed_parallel_apply(
    source_cluster: LocalCluster,
    target_cluster: LocalCluster,
    tmp_path: Path,
    plugin: str,
    seed: int,
) -> None:
    _explore(source_cluster, target_cluster, tmp_path, seed, plugin, apply_jobs=4)


def test_explorer_full_identity_null_columns(
    source_cluster: LocalCluster, target_cluster: LocalCluster, tmp_path: Path
) -> None:
    """Seed 43: two equal rows of a FULL-identity table without a key, NULLs in them
    (test_decoding leaves NULL columns out of an old row: apply changed another row)."""
    _explore(source_cluster, target_cluster, tmp_path, 43, "test_decoding")


@pytest.mark.extra
@pytest.mark.parametrize("plugin", ["test_decoding", "wal2json"])
@pytest.mark.parametrize("seed", EXTRA)
def test_explorer_more_seeds(
    source_cluster: LocalCluster,
    target_cluster: LocalCluster,
    tmp_path: Path,
    plugin: str,
    seed: int,
) -> None:
    _explore(source_cluster, target_cluster, tmp_path, seed, plugin)


def test_a_seed_is_a_plan() -> None:
    """The same seed draws the same schema, workload and faults; the replay command
    names everything that differs from the defaults."""
    one, two = plan_seed(41, "wal2json"), plan_seed(41, "wal2json")
    assert [t.describe() for t in one.schema.tables] == [t.describe() for t in two.schema.tables]
    assert one.workload.label_counts() == two.workload.label_counts()
    assert one.faults == two.faults
    assert one.replay() == "python -m tests.explorer --seed 41 --plugin wal2json"
    old = frozenset({"wal2json-quoted-type"})
    quiet = plan_seed(41, "wal2json", faults=False, txns=10, avoid=old)
    assert quiet.faults == [] and len(quiet.workload.txns) == 10
    assert quiet.replay().endswith("--no-faults --txns 10 --avoid wal2json-quoted-type")
