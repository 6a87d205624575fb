"""`tfjob-bench`: the options of one benchmark run, and its presets."""

from __future__ import annotations

import argparse
from pathlib import Path

from .rounds import names
from .runner import CONTESTANTS, Bench, BenchConfig, summary_line

SCALE = {"jobs": 5000, "pods_per_job": 5, "nodes": 500, "wave": 100}
# Room on 200 nodes for the pods the history keeps (two thirds of 10,000 x 2) and a round's.
HISTORY = {"history": 10000, "nodes": 200}
SMOKE = {"jobs": 3, "pods_per_job": 2, "nodes": 2, "fail_every": 3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=None, help="jobs per contestant (200)")
    parser.add_argument("--pods-per-job", type=int, default=None, help="workers per job (4)")
    parser.add_argument(
        "--contestants",
        default=None,
        help=f"comma-separated, in run order (default: {','.join(CONTESTANTS)}; "
        "--scale: limit,ours)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds, every contestant once a round in turn; medians and spread (%(default)s)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="%(default)s")
    parser.add_argument("--concurrency", type=int, default=128, help="driver and limit (128)")
    parser.add_argument("--wave", type=int, default=None, help="jobs per wave (0: all at once)")
    parser.add_argument(
        "--fail-every", type=int, default=None, help="every n-th job's worker 0 exits 1 (10)"
    )
    parser.add_argument("--nodes", type=int, default=None, help="kwok GPU nodes (10)")
    parser.add_argument("--max-pods", type=int, default=110, help="pods per node (110)")
    parser.add_argument(
        "--limit-client",
        choices=["aiohttp", "kubernetes-aio"],
        default="aiohttp",
        help="the limit's client: aiohttp directly or kubernetes.aio raw JSON (%(default)s)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="P3: 5,000 jobs x 5 pods over 500 nodes in waves of 100, limit and ours only, "
        "long node leases",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=None,
        help="keep this many finished jobs, made live, then measure again, and restart the "
        "operator among them (make bench-history: 10,000 over 200 nodes; limit and ours only)",
    )
    parser.add_argument("--history-pods", type=int, default=2, help="workers per history job (2)")
    parser.add_argument(
        "--history-wave", type=int, default=1000, help="history jobs made at a time (1000)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="3 jobs x 2 pods (the third fails): a quick check"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="the control plane's files (OUT/cluster)"
    )


def config_from(args: argparse.Namespace) -> BenchConfig:
    preset: dict[str, int] = {}
    if args.scale:
        preset = dict(SCALE)
    elif args.history is not None:
        preset = dict(HISTORY)
    elif args.smoke:
        preset = dict(SMOKE)
    few = args.scale or args.history is not None
    default_contestants = "limit,ours" if few else ",".join(CONTESTANTS)
    contestants = tuple(
        c.strip() for c in (args.contestants or default_contestants).split(",") if c.strip()
    )
    unknown = sorted(set(contestants) - set(CONTESTANTS))
    if unknown:
        raise SystemExit(f"unknown contestant(s) {unknown}; choose from {list(CONTESTANTS)}")

    def pick(name: str, default: int) -> int:
        value = getattr(args, name)
        return int(value) if value is not None else preset.get(name, default)

    return BenchConfig(
        jobs=pick("jobs", 200),
        pods_per_job=pick("pods_per_job", 4),
        contestants=contestants,
        out=args.out,
        concurrency=args.concurrency,
        wave=pick("wave", 0),
        fail_every=pick("fail_every", 10),
        nodes=pick("nodes", 10),
        max_pods=args.max_pods,
        scale=args.scale or pick("nodes", 10) > 100,
        limit_client=args.limit_client,
        state_dir=args.state_dir,
        rounds=max(1, args.rounds),
        history=pick("history", 0),
        history_pods=args.history_pods,
        history_wave=args.history_wave,
    )


def run_history(config: BenchConfig) -> int:
    from . import report
    from .history import HistoryBench

    bench = HistoryBench(config)
    bench.run()
    markdown, png = report.write_history(config, bench.run_data, bench.environment)
    print()
    print("\n".join(report.history_tables(config, bench.run_data)))
    print(f"\nresults: {markdown}\nplot: {png}")
    failed = [r.tag for t in bench.rounds for r in t.values() if r.error or not r.jobs_ok]
    return 1 if failed or bench.run_data.history.error else 0


def run(config: BenchConfig) -> int:
    from . import report

    if config.history:
        return run_history(config)
    bench = Bench(config)
    rounds = bench.run()
    markdown, png = report.write(config, rounds, bench.environment)
    print()
    print("\n".join(report.main_table(config, rounds)))
    print()
    for name in names(rounds):
        for this_round in rounds:
            if name in this_round:
                result = this_round[name]
                print(f"{result.tag}: {summary_line(result)}")
    print(f"\nresults: {markdown}\nplot: {png}")
    failed = [r.tag for t in rounds for r in t.values() if r.error or not r.jobs_ok]
    return 1 if failed else 0


def main(args: argparse.Namespace) -> int:
    return run(config_from(args))
