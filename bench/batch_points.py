"""Per-point time of the batch engine (shared.research.engine.batch) against one point at a time, in process, on the
synthetic
market of bench/engine.py: dual_ma over a grid of (fast, slow).

    python -m bench.batch_points [--symbols 500 --days 2500 --batches 10,25,50,100 --check 3]"""

from __future__ import annotations

import argparse
import itertools
import time
from decimal import Decimal

from bench.engine import synthetic_bars
from shared.research.engine import BacktestConfig, load_bars
from shared.research.engine.batch import BatchEngine
from shared.research.engine.optimize import SharedCache, _run_metrics
from strategies.dual_ma import DualMA


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--batches", default="10,25,50,100")
    parser.add_argument("--scalar", type=int, default=3, help="points run one at a time for the comparison")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    config = BacktestConfig(initial_cash=Decimal(1_000_000))
    panel = load_bars(synthetic_bars(args.symbols, args.days, args.seed), config)
    points = [(f, s) for f, s in itertools.product(range(2, 42), range(10, 260, 5)) if f < s]
    cache = SharedCache()
    scalar_metrics = {}
    start = time.perf_counter()
    for f, s in points[: args.scalar]:
        scalar_metrics[(f, s)] = _run_metrics(DualMA({"fast": f, "slow": s}), panel, config, cache).metrics
    if args.scalar:
        per = (time.perf_counter() - start) / args.scalar
        print(f"one at a time: {per:.3f} s per point ({args.scalar} points)")
    for size in (int(x) for x in args.batches.split(",")):
        chunk = points[:size]
        strategies = [DualMA({"fast": f, "slow": s}) for f, s in chunk]
        start, cpu = time.perf_counter(), time.process_time()
        engine = BatchEngine(strategies, panel, config, cache=cache)
        engine.run()
        metrics = [engine.metrics(p) for p in range(size)]
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        same = all(metrics[i] == scalar_metrics[pt] for i, pt in enumerate(chunk) if pt in scalar_metrics)
        print(
            f"batch {size:>4}: {elapsed:.2f} s, {elapsed / size:.4f} s per point, CPU {cpu / size:.4f} s per point "
            f"(equal to one at a time: {same})"
        )


if __name__ == "__main__":
    main()
