"""`python -m tests.explorer`: run seeds one after another on throwaway clusters.

python -m tests.explorer --seeds 1-300 --plugin all
python -m tests.explorer --seed 1234 --plugin test_decoding      # replay one seed
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

from pgferry.demo.clusters import LocalCluster
from tests.explorer.known import DEFAULT_AVOID, KNOWN, parse_avoid
from tests.explorer.runner import PLUGINS, Clusters, Limits, SeedResult, Status, run_seed
from tests.helpers.cli import REPO_ROOT


def parse_seeds(text: str) -> list[int]:
    """'1-300', '7', '1,5,9-12' -> the seeds, in order."""
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part.strip()[1:]:
            lo, hi = part.split("-", 1)
            seeds += range(int(lo), int(hi) + 1)
        else:
            seeds.append(int(part))
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.explorer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seeds", type=parse_seeds, help="seeds: 1-300, or 1,5,9-12")
    which.add_argument("--seed", type=int, help="one seed (replay)")
    parser.add_argument("--plugin", choices=[*PLUGINS, "all"], default="all")
    parser.add_argument("--faults", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--txns", type=int, help="workload transactions (default: the seed's)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep a failing seed's databases and work dir, and the clusters running",
    )
    parser.add_argument(
        "--avoid",
        type=parse_avoid,
        default=DEFAULT_AVOID,
        help="fixed issues to steer around (for an older --pgferry): all, none (default), "
        "or names: " + ", ".join(KNOWN),
    )
    parser.add_argument(
        "--pgferry",
        type=Path,
        default=REPO_ROOT,
        metavar="DIR",
        help="run the pgferry package found in DIR (e.g. an older commit's, from git "
        "archive) instead of this checkout's",
    )
    parser.add_argument(
        "--apply-jobs", type=int, default=1, metavar="N", help="pgferry's --apply-jobs"
    )
    parser.add_argument("--seed-timeout", type=float, default=Limits.seed, help="seconds")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every detail")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else args.seeds
    plugins = list(PLUGINS) if args.plugin == "all" else [args.plugin]
    limits = Limits(seed=args.seed_timeout)

    for name in sorted(args.avoid):
        print(f"avoiding known issue {name}: {KNOWN[name]}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="pgferry-explorer-"))
    source = LocalCluster.create("source", scratch, logical=True)
    target = LocalCluster.create("target", scratch, logical=False)
    clusters = Clusters(source, target, scratch / "runs")
    results: list[SeedResult] = []
    try:
        for seed in seeds:
            for plugin in plugins:
                result = run_seed(
                    clusters,
                    seed,
                    plugin,
                    faults=args.faults,
                    txns=args.txns,
                    limits=limits,
                    keep=args.keep,
                    avoid=args.avoid,
                    pgferry_root=args.pgferry,
                    apply_jobs=args.apply_jobs,
                )
                results.append(result)
                print(result.line(), flush=True)
                if result.status != Status.PASS:
                    print(_indent(result.detail, args.verbose), flush=True)
                    print(f"    replay: {result.replay}", flush=True)
                    if result.kept:
                        print(f"    {result.kept}", flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        failed = any(r.status != Status.PASS for r in results)
        if args.keep and failed:
            print(
                f"clusters left running: source {source.uri()}, target {target.uri()}\n"
                f"stop them: pg_ctl -D {source.datadir} stop; pg_ctl -D {target.datadir} stop",
                flush=True,
            )
        else:
            source.destroy()
            target.destroy()
            shutil.rmtree(scratch, ignore_errors=True)
    _summary(results)
    return 0 if results and all(r.status == Status.PASS for r in results) else 1


def _indent(text: str, verbose: bool) -> str:
    lines = text.splitlines()
    if not verbose and len(lines) > 12:
        lines = lines[:12] + [f"... ({len(lines) - 12} more lines; -v shows them)"]
    return "\n".join("    " + line for line in lines)


def _summary(results: list[SeedResult]) -> None:
    if not results:
        return
    counts = Counter(r.status for r in results)
    walls = [r.wall for r in results]
    print(
        f"\n{len(results)} runs: "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in Status)
        + f"; wall per seed: mean {statistics.mean(walls):.1f}s, "
        f"median {statistics.median(walls):.1f}s, min {min(walls):.1f}s, max {max(walls):.1f}s, "
        f"total {sum(walls):.0f}s"
    )
    for r in results:
        if r.status != Status.PASS:
            first = r.detail.splitlines()[0] if r.detail else ""
            print(f"  {r.status} {r.replay}  # {first[:150]}")


if __name__ == "__main__":
    sys.exit(main())
