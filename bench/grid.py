"""Optimisation grid speed: a dual-SMA grid over synthetic bars, fanned out over the real RabbitMQ work queue to
1 or 2 worker processes (each an `OptimisationTaskHandler`), results stored in MariaDB. Prints total time, points/s
and, with --workers 1,2, the 2-vs-1 speed-up.

    python -m bench.grid [--points 1000 --symbols 500 --days 2500 --workers 1,2 --batch 100]

Each worker builds the same synthetic market (bench.engine.synthetic_bars, seeded) before it starts consuming, so
the timed part is: queueing, loading the panel once per worker, evaluating every point, storing, coordinating."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def grid_spec(points: int) -> dict[str, Any]:
    """`points` dual-MA points, all valid: fast 1..20 (fewer for small grids) x slow 30, 32, ..."""
    fast = min(20, points)
    slow = math.ceil(points / fast)
    return {"fast": {"min": 1, "max": fast, "step": 1}, "slow": {"min": 30, "max": 30 + 2 * (slow - 1), "step": 2}}


def _env(run: str) -> dict[str, str]:
    from bench.common import _test_env

    env = _test_env()
    return {
        "LH_MODE": "fleet",
        "LH_DATABASE_URL": env["LH_TEST_MYSQL_URL"].rstrip("/") + f"/lhbench_{run}_{{service}}",
        "LH_REDIS_URL": env["LH_TEST_REDIS_URL"].rstrip("/") + "/15",
        "LH_AMQP_URL": env["LH_TEST_AMQP_URL"],
        "LH_BUS_NAMESPACE": f"lhbench.{run}",
        "LH_JWT_SECRET": secrets.token_urlsafe(32),
        "LH_INTERNAL_SECRET": secrets.token_urlsafe(32),
        "LH_APPROVAL_SECRET": secrets.token_urlsafe(32),
        "LH_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "LH_LOG_LEVEL": "WARNING",
    }


async def _worker(symbols: int, days: int, seed: int) -> None:
    from bench.engine import synthetic_bars
    from services.backtest.optimize import OptimisationTaskHandler
    from shared.platform.app import Infra
    from shared.platform.settings import Settings

    bars = synthetic_bars(symbols, days, seed)
    settings = Settings()
    infra = Infra.from_settings(settings, "bench-grid-worker")
    handler = OptimisationTaskHandler(settings, infra, load_market=lambda codes, start, end: bars)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await infra.start()
    await handler.start()
    print("ready", flush=True)
    await stop.wait()
    await handler.stop(timeout_s=5)
    await infra.close()


async def _run_grid(points: int, symbols: int, days: int, seed: int, batch: int) -> tuple[float, int]:
    from bench.engine import synthetic_bars
    from services.backtest.optimize import submit_optimisation
    from services.backtest.schemas import OptimisationRequest
    from services.backtest.store import BacktestStore, OptimisationStore
    from shared.platform.bus import create_bus
    from shared.platform.db import Database
    from shared.platform.settings import Settings

    settings = Settings()
    sample = synthetic_bars(symbols, 2, seed)  # codes and first day only
    codes = sorted(set(sample["ts_code"]))
    db = Database(settings.database_url_for("backtest"))
    await db.connect()
    await BacktestStore(db).migrate()
    store = OptimisationStore(db)
    bus = create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="bench-grid")
    await bus.start()
    request = OptimisationRequest.model_validate(
        {
            "strategy": "dual_ma",
            "space": grid_spec(points),
            "objective": "sharpe",
            "constraints": ["max_drawdown <= 0.5"],
            "ts_codes": codes,
            "start": date(2000, 1, 1),
            "end": date(2100, 1, 1),
            "config": {"initial_cash": "10000000"},
            "batch_size": batch,
        }
    )
    oid = secrets.token_hex(8)
    started = time.perf_counter()
    await submit_optimisation(store, bus, request, owner="bench", optimisation_id=oid)
    while True:
        record = await store.get(oid)
        assert record is not None
        if record.status.is_final:
            break
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    if record.status.value != "succeeded":
        raise SystemExit(f"optimisation {record.status.value}: {record.error}")
    await bus.close()
    await db.dispose()
    return elapsed, record.done_points


def _measure(workers: int, args: argparse.Namespace) -> tuple[float, int]:
    run = secrets.token_hex(3)
    env = {**os.environ, **_env(run), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "bench.grid", "--worker", "--symbols", str(args.symbols), "--days", str(args.days)]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(workers)]
    try:
        # the coordinator migrates the schema first; workers wait for "ready" after their own migrate
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise SystemExit(f"worker {proc.pid} did not start")
        saved = dict(os.environ)
        os.environ.update(_env_only(env))
        try:
            return asyncio.run(_run_grid(args.points, args.symbols, args.days, args.seed, args.batch))
        finally:
            os.environ.clear()
            os.environ.update(saved)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        asyncio.run(_drop(env["LH_DATABASE_URL"].split("/lhbench_")[0], run))


def _env_only(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("LH_")}


async def _drop(mysql: str, run: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(mysql + "/")
    async with engine.begin() as conn:
        for (name,) in (await conn.execute(text("SHOW DATABASES LIKE :p"), {"p": f"lhbench\\_{run}\\_%"})).all():
            await conn.execute(text(f"DROP DATABASE `{name}`"))
    await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, e.g. 2 or 1,2")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(_worker(args.symbols, args.days, args.seed))
        return
    counts = [int(x) for x in args.workers.split(",")]
    print(
        f"grid benchmark: dual_ma, {args.points} points, {args.symbols} symbols x {args.days} days, batch {args.batch}"
    )
    times: dict[int, float] = {}
    for workers in counts:
        elapsed, done = _measure(workers, args)
        times[workers] = elapsed
        print(
            f"  {workers} worker(s): {elapsed:7.1f} s  {done / elapsed:6.2f} points/s  "
            f"{elapsed / done * workers:5.2f} s per point per worker",
            flush=True,
        )
    if 1 in times and 2 in times:
        print(f"  speed-up 2 vs 1 worker: {times[1] / times[2]:.2f}x")


if __name__ == "__main__":
    main()
