"""Parameter optimisation fanned out over RabbitMQ: an optimisation is a row with its points (store/optimisations.py);
its points travel in batches on the durable work queue `<ns>.jobs.optimisation-tasks`, and any worker process
running `OptimisationTaskHandler` evaluates them with `shared.research.engine.optimize` over a panel it loads once per
(data version, universe, dates, data config) and keeps in memory (LRU).

- A batch is acknowledged after its results are stored; each point moves pending -> done|failed once, so a
  redelivered batch stores nothing and counts nothing.
- Whoever stores the last pending point of a generation coordinates: a grid finishes (best point ranked by the
  library's `rank`); a GA plans its next generation with `genetic_generation`, a pure function of the seed and the
  stored results, and moves the job to it with its new points in one conditional transaction (one coordinator
  wins; a crash before it leaves the old generation, which the next coordinator or the sweep plans again).
- The sweep (on start and every SWEEP_INTERVAL_S) re-queues the pending points of optimisations that have not moved
  for STALE_S when nothing waits in the queue, and coordinates those with no pending point left.
- Walk-forward runs as one task (windows are sequential, each a grid/GA over its in-sample)."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd

from services.backtest.consumer import JobConsumer, wait_for_shutdown
from services.backtest.schemas import OptimisationRequest, WalkForwardSpec
from services.backtest.store import (
    OptimisationRecord,
    OptimisationStatus,
    OptimisationStore,
    PointRow,
    PointStatus,
    StoredPoint,
)
from shared.platform.app import Infra
from shared.platform.bus.port import EventBus
from shared.platform.db import Database
from shared.platform.market_data import MarketData, data_version, engine_frame
from shared.platform.settings import Settings
from shared.research.engine import BacktestConfig, Panel, load_bars, panel_data_key
from shared.research.engine.optimize import (
    Constraint,
    Evaluator,
    GeneticSettings,
    Objective,
    OptimisationError,
    ParameterSpace,
    PointResult,
    genetic_generation,
    iter_batches,
    point_key,
    rank,
    walk_forward,
)
from shared.research.strategy import Strategy, discover_strategies

log = logging.getLogger(__name__)

TASK_QUEUE = "optimisation-tasks"  # the work queue `<ns>.jobs.optimisation-tasks`
DEFAULT_BATCH = 10  # points per task of jobs stored before batch_size could be left to the service
MAX_AUTO_BATCH = 100  # the evaluator's pass size: points beyond it per task buy nothing
AUTO_TASKS = 8  # with batch_size left out, a generation is split into about this many tasks (up to 8 workers busy)


def batch_for(settings: Mapping[str, Any], points: int) -> int:
    """Points per task: the request's batch_size, or, left out, enough tasks for several workers with passes as large
    as the batch engine likes (it costs ~0.07 s a point at 100 per pass, ~0.13 s at 10: docs/optimisation.md)."""
    size = settings.get("batch_size", DEFAULT_BATCH)
    if size is None:
        return max(1, min(MAX_AUTO_BATCH, -(-points // AUTO_TASKS)))
    return int(size)


SWEEP_INTERVAL_S = 60.0
STALE_S = 300.0

# (ts_codes, start, end[, daily_basic fields]) -> bars; the fields are passed only when the strategy reads some
MarketLoader = Callable[..., "pd.DataFrame | Awaitable[pd.DataFrame]"]


def backtest_config(record: OptimisationRecord) -> BacktestConfig:
    return BacktestConfig.model_validate({**record.config, "start": record.start, "end": record.end})


def _space(strategy_cls: type[Strategy], space: Mapping[str, Any], fixed: Mapping[str, Any]) -> ParameterSpace:
    return ParameterSpace.from_spec(strategy_cls, space, fixed)


def result_of(row: PointRow) -> PointResult:
    return PointResult(
        row.params,
        row.key,
        row.metrics,
        row.objective,
        bool(row.feasible) and row.status is PointStatus.DONE,
        list(row.violations or []),
        row.error,
    )


async def submit_optimisation(
    store: OptimisationStore,
    bus: EventBus,
    request: OptimisationRequest,
    *,
    owner: str,
    optimisation_id: str,
    strategies: Mapping[str, type[Strategy]] | None = None,
) -> OptimisationRecord:
    """Validate, plan the first points, store the job with them, and queue their batches."""
    strategies = strategies if strategies is not None else discover_strategies()
    strategy_cls = strategies.get(request.strategy)
    if strategy_cls is None:
        raise OptimisationError(f"strategy: unknown strategy {request.strategy!r}")
    space = _space(strategy_cls, request.space, request.fixed)
    objective = Objective(request.objective, request.direction)
    constraints = [str(Constraint.parse(c)) for c in request.constraints]
    config = request.config.config_fields()
    BacktestConfig.model_validate({**config, "start": request.start, "end": request.end})
    settings: dict[str, Any] = {"batch_size": request.batch_size}
    points: list[dict[str, Any]] = []
    skipped = 0
    if request.method == "grid":
        points, refused = space.grid()
        skipped = len(refused)
        if not points:
            raise OptimisationError("space: the strategy refuses every point of the grid")
    elif request.method == "ga":
        ga = request.ga.settings()
        settings["ga"] = request.ga.model_dump()
        points, skipped = genetic_generation(space, ga, 0, [], set(), objective)
        points = points[: ga.budget]
    else:
        assert request.walk_forward is not None
        settings["walk_forward"] = request.walk_forward.model_dump()
        settings["ga"] = request.ga.model_dump()
    await store.create(
        optimisation_id=optimisation_id,
        owner=owner,
        strategy=request.strategy,
        method=request.method,
        space=request.space,
        fixed=request.fixed,
        objective={"metric": objective.metric, "direction": objective.direction},
        constraints=constraints,
        settings=settings,
        ts_codes=request.ts_codes,
        start=request.start,
        end=request.end,
        config=config,
        points=[(point_key(p), p) for p in points],
        skipped=skipped,
    )
    if request.method == "walkforward":
        await bus.enqueue(
            TASK_QUEUE, {"optimisation_id": optimisation_id, "kind": "walkforward"}, message_id=optimisation_id
        )
    else:
        await publish_batches(bus, optimisation_id, 0, [point_key(p) for p in points], batch_for(settings, len(points)))
    record = await store.get(optimisation_id)
    assert record is not None
    return record


async def publish_batches(bus: EventBus, optimisation_id: str, generation: int, keys: Sequence[str], size: int) -> None:
    from services.backtest.store import point_hash

    for i, batch in enumerate(iter_batches(list(keys), size)):
        await bus.enqueue(
            TASK_QUEUE,
            {
                "optimisation_id": optimisation_id,
                "kind": "points",
                "generation": generation,
                "points": [point_hash(k) for k in batch],
            },
            message_id=f"{optimisation_id}-{generation}-{i}",
        )


def bulk_market_loader(market_data: MarketData) -> MarketLoader:
    """Bars from the data service's bulk endpoint through the same loader and disk cache as backtests
    (shared/platform/market_data.py), in the engine's Tushare layout; the data version rides along in
    `DataFrame.attrs` so a panel is never reused across data versions."""

    async def load(ts_codes: Sequence[str], start: date, end: date, fields: Sequence[str] = ()) -> pd.DataFrame:
        table = await market_data.bars(ts_codes, start, end, fields)
        frame = await asyncio.to_thread(engine_frame, table)
        frame.attrs["data_version"] = data_version(table)
        return frame

    return load


class OptimisationTaskHandler(JobConsumer):
    """Runs optimisation tasks from the work queue in any worker process: `start()` consumes, `stop()` lets the
    batch in progress finish."""

    queue = TASK_QUEUE
    sweeper_name = "optimisation-sweeper"

    def __init__(
        self,
        settings: Settings,
        infra: Infra,
        *,
        db: Database | None = None,
        strategies: Mapping[str, type[Strategy]] | None = None,
        load_market: MarketLoader | None = None,
        panel_cache_size: int = 2,
        sweep_interval_s: float | None = None,
        stale_s: float | None = None,
    ) -> None:
        super().__init__(settings, infra, db, strategies)
        self.store = OptimisationStore(self.db)
        if load_market is None:
            raise ValueError("load_market is required: e.g. bulk_market_loader(worker.market_data())")
        self.load_market = load_market
        self.panel_cache_size = panel_cache_size
        self.sweep_interval_s = SWEEP_INTERVAL_S if sweep_interval_s is None else sweep_interval_s
        self.stale_s = STALE_S if stale_s is None else stale_s
        self._panels: OrderedDict[tuple[Any, ...], tuple[Panel, dict[tuple[Any, ...], Evaluator]]] = OrderedDict()
        self.evaluated = 0  # points evaluated by this handler (for benchmarks and logs)

    async def start(self) -> None:
        await self._open()
        await self._consume(self.sweep_interval_s)

    async def stop(self, timeout_s: float = 120.0) -> None:
        await self._drain(timeout_s)  # a batch still running then is redelivered by the broker
        await self._close()

    async def sweep(self) -> int:
        """Recover optimisations that stopped moving; returns how many were touched."""
        touched = 0
        for optimisation_id in await self.store.stale_running(idle_for_s=self.stale_s):
            record = await self.store.get(optimisation_id)
            if record is None or record.status.is_final:
                continue
            pending = await self.store.points(optimisation_id, status=PointStatus.PENDING)
            if not pending and record.method != "walkforward":
                await self.coordinate(optimisation_id)
            elif record.method == "walkforward" and record.status is OptimisationStatus.RUNNING:
                # Its one task is with a worker, unacknowledged until the analysis is stored: if that worker dies,
                # the broker redelivers it. Queueing another copy would only run the analysis twice at once.
                continue
            elif await self.infra.bus.waiting_jobs(TASK_QUEUE) == 0:
                if record.method == "walkforward":
                    await self.infra.bus.enqueue(
                        TASK_QUEUE,
                        {"optimisation_id": optimisation_id, "kind": "walkforward"},
                        message_id=optimisation_id,
                    )
                else:
                    await publish_batches(
                        self.infra.bus,
                        optimisation_id,
                        record.generation,
                        [p.key for p in pending],
                        batch_for(record.settings, len(pending)),
                    )
            touched += 1
        return touched

    async def handle(self, body: dict[str, Any]) -> None:
        optimisation_id = body.get("optimisation_id") if isinstance(body, dict) else None
        if not isinstance(optimisation_id, str) or not optimisation_id:
            raise ValueError(f"malformed optimisation task: {body!r}")
        if self._stopping:
            await wait_for_shutdown()  # left unacknowledged: the broker gives it to another worker
        async with self._busy:
            record = await self.store.get(optimisation_id)
            if record is None:
                raise LookupError(f"no optimisation {optimisation_id!r} in the store")
            if record.status.is_final:
                return
            await self.store.mark_running(optimisation_id)
            strategy_cls = self.strategies.get(record.strategy)
            if strategy_cls is None:
                await self.store.finish(
                    optimisation_id,
                    OptimisationStatus.FAILED,
                    error=f"strategy {record.strategy!r} is not installed on this worker",
                )
                return
            try:
                if body.get("kind") == "walkforward":
                    await self._walk_forward(record, strategy_cls)
                    return
                hashes = body.get("points")
                if not isinstance(hashes, list):
                    raise ValueError(f"malformed optimisation task: {body!r}")
                rows = await self.store.points(optimisation_id, hashes=hashes, status=PointStatus.PENDING)
                if rows:
                    evaluator = await self._evaluator(record, strategy_cls)
                    results = await asyncio.to_thread(evaluator, [r.params for r in rows])
                    self.evaluated += len(results)
                    await self.store.store_results(
                        optimisation_id,
                        [
                            StoredPoint(r.key, r.metrics, r.objective, r.feasible, r.violations, r.error)
                            for r in results
                        ],
                    )
            except Exception:
                await self.store.finish(optimisation_id, OptimisationStatus.FAILED, error=traceback.format_exc())
                raise
            await self.coordinate(optimisation_id)

    async def _market(self, record: OptimisationRecord, fields: tuple[str, ...]) -> pd.DataFrame:
        if fields:
            loaded = self.load_market(record.ts_codes, record.start, record.end, fields)
        else:
            loaded = self.load_market(record.ts_codes, record.start, record.end)
        if inspect.isawaitable(loaded):
            return await loaded
        return loaded

    async def _evaluator(self, record: OptimisationRecord, strategy_cls: type[Strategy]) -> Evaluator:
        config = backtest_config(record)
        fields = tuple(sorted(strategy_cls.bar_fields))
        bars = await self._market(record, fields)
        version = str(bars.attrs.get("data_version", ""))
        key = (version, tuple(record.ts_codes), record.start, record.end, fields, panel_data_key(config))
        entry = self._panels.get(key)
        if entry is None:
            panel = await asyncio.to_thread(load_bars, bars, config)
            entry = (panel, {})
            self._panels[key] = entry
            while len(self._panels) > self.panel_cache_size:
                self._panels.popitem(last=False)
        self._panels.move_to_end(key)
        panel, evaluators = entry
        objective = Objective(record.objective["metric"], record.objective["direction"])
        constraints = tuple(Constraint.parse(c) for c in record.constraints)
        eval_key = (strategy_cls, repr(config), objective, constraints)
        evaluator = evaluators.get(eval_key)
        if evaluator is None:
            evaluator = Evaluator(panel, config, strategy_cls, objective, constraints)
            # one context cache per panel and history setting, shared by every strategy run over it
            for other in evaluators.values():
                if other.config.adjust_history == config.adjust_history:
                    evaluator.cache = other.cache
                    break
            evaluators[eval_key] = evaluator
        return evaluator

    async def coordinate(self, optimisation_id: str) -> None:
        """Called after a batch is stored: if the current generation has no pending point left, finish the grid or
        plan the GA's next generation. Safe to call from several workers at once and again after a crash."""
        record = await self.store.get(optimisation_id)
        if record is None or record.status.is_final or record.method == "walkforward":
            return
        if await self.store.pending_count(optimisation_id) > 0:
            return
        objective = Objective(record.objective["metric"], record.objective["direction"])
        rows = await self.store.points(optimisation_id)
        evaluated = {r.key: result_of(r) for r in rows}
        if record.method == "ga":
            ga = GeneticSettings(**record.settings.get("ga", {}))
            g = record.generation
            population = record.populations[g] if g < len(record.populations) else []
            previous = [evaluated[k] for k in population if k in evaluated]
            new_in_g = any(r.generation == g for r in rows)
            if len(evaluated) < ga.budget and g + 1 < ga.generations and new_in_g:
                strategy_cls = self.strategies[record.strategy]
                space = _space(strategy_cls, record.space, record.fixed)
                points, refused = genetic_generation(space, ga, g + 1, previous, set(evaluated), objective)
                new = [p for p in points if point_key(p) not in evaluated][: ga.budget - len(evaluated)]
                if new:
                    keys = [point_key(p) for p in new]
                    moved = await self.store.advance_generation(
                        optimisation_id,
                        from_generation=g,
                        points=list(zip(keys, new, strict=True)),
                        population=[point_key(p) for p in points],
                        skipped=refused,
                    )
                    if moved:
                        size = batch_for(record.settings, len(keys))
                        await publish_batches(self.infra.bus, optimisation_id, g + 1, keys, size)
                    return
        ranked = rank(list(evaluated.values()), objective)
        best = ranked[0].to_json() if ranked else None
        if await self.store.finish(optimisation_id, OptimisationStatus.SUCCEEDED, best=best):
            log.info("optimisation finished", extra={"optimisation_id": optimisation_id, "points": len(ranked)})

    async def _walk_forward(self, record: OptimisationRecord, strategy_cls: type[Strategy]) -> None:
        spec = WalkForwardSpec.model_validate(record.settings["walk_forward"])
        bars = await self._market(record, tuple(sorted(strategy_cls.bar_fields)))
        space = _space(strategy_cls, record.space, record.fixed)
        result = await asyncio.to_thread(
            walk_forward,
            bars,
            backtest_config(record),
            space,
            Objective(record.objective["metric"], record.objective["direction"]),
            in_sample=spec.in_sample,
            out_of_sample=spec.out_of_sample,
            step=spec.step,
            anchored=spec.anchored,
            constraints=[Constraint.parse(c) for c in record.constraints],
            method=spec.search,
            ga=GeneticSettings(**record.settings.get("ga", {})),
        )
        report = {
            "windows": result.windows,
            "dates": result.dates,
            "equity": result.equity,
            "metrics": result.metrics,
            "unused_days": result.unused_days,
        }
        best = {"oos_metrics": result.metrics}
        await self.store.finish(record.optimisation_id, OptimisationStatus.SUCCEEDED, best=best, result=report)


def report_rows(record: OptimisationRecord, points: Sequence[PointRow]) -> list[dict[str, Any]]:
    """Rows for shared.research.report's results page: parameters and metrics; an infeasible or failed point has its
    objective cell empty (so it ranks last and leaves the heatmap) and its value under `<metric> (infeasible)`."""
    metric = record.objective["metric"]
    rows: list[dict[str, Any]] = []
    for p in points:
        if p.status is PointStatus.PENDING:
            continue
        metrics = dict(p.metrics or {})
        row: dict[str, Any] = {"params": p.params, "metrics": metrics, "status": p.status.value}
        if not p.feasible or p.status is PointStatus.FAILED:
            row[f"{metric} (infeasible)"] = metrics.get(metric)
            metrics[metric] = None
            row["why"] = p.error or "; ".join(p.violations or [])
        rows.append(row)
    return rows


def walk_forward_html(record: OptimisationRecord) -> str:
    """The walk-forward results page: the stitched out-of-sample equity, its metrics, and one row per window
    (in-sample dates, best parameters and objective; out-of-sample dates, objective, return and drawdown)."""
    from shared.research.report import format_metric, line_chart_html, render_page, section, table_html

    result = record.result or {}
    metric = record.objective["metric"]
    metrics = result.get("metrics") or {}
    windows = result.get("windows") or []
    equity = result.get("equity") or []
    first = equity[0] if equity else None
    rebased = [e / first for e in equity] if first else []
    rows = [
        (
            w["index"] + 1,
            f"{w['in_sample'][0]} .. {w['in_sample'][1]}",
            json.dumps(w["best_params"], sort_keys=True),
            format_metric(metric, w["is_objective"]),
            f"{w['out_of_sample'][0]} .. {w['out_of_sample'][1]}",
            format_metric(metric, w["oos_objective"]),
            format_metric("total_return", (w.get("oos_metrics") or {}).get("total_return")),
            format_metric("max_drawdown", (w.get("oos_metrics") or {}).get("max_drawdown")),
        )
        for w in windows
    ]
    columns = ["window", "in-sample", "best parameters", f"in-sample {metric}", "out-of-sample",
               f"out-of-sample {metric}", "OOS return", "OOS max drawdown"]  # fmt: skip
    summary = [
        (name, format_metric(name, metrics.get(name)))
        for name in ("total_return", "annual_return", "sharpe", "max_drawdown", "calmar", "trade_count")
    ]
    sections = [
        section(
            "Out-of-sample equity",
            line_chart_html(result.get("dates") or [], [{"name": "Out of sample, stitched", "data": rebased}]),
            note="Each window's best in-sample parameters run over the window that follows; the runs are chained, "
            "each starting with the equity the previous one ended with (docs/optimisation.md).",
        ),
        section("Out-of-sample metrics", table_html(["metric", "value"], summary, numeric=["value"])),
        section("Windows", table_html(columns, rows, numeric=columns[3:4] + columns[5:]), anchor="windows"),
        section(
            "Run",
            table_html(
                ["item", "value"],
                [
                    ("optimisation", record.optimisation_id),
                    ("strategy", record.strategy),
                    ("space", json.dumps(record.space, sort_keys=True)),
                    ("objective", f"{record.objective['direction']} {metric}"),
                    ("constraints", ", ".join(record.constraints) or "none"),
                    ("dates", f"{record.start} to {record.end}"),
                    ("unused days after the last window", str(result.get("unused_days", ""))),
                    ("status", record.status.value),
                ],
            ),
        ),
    ]
    return render_page(f"Walk-forward {record.optimisation_id} - {record.strategy}", sections, kind="walkforward")


def optimisation_html(record: OptimisationRecord, points: Sequence[PointRow]) -> str:
    """The results page: table of every point and a heatmap over the first two searched parameters; for a
    walk-forward analysis, its out-of-sample report."""
    from shared.research.report import render_optimisation_html

    if record.method == "walkforward":
        return walk_forward_html(record)

    names = list(record.space)
    x_param, y_param = names[0], names[1] if len(names) > 1 else names[0]
    manifest = {
        "optimisation_id": record.optimisation_id,
        "strategy": record.strategy,
        "method": record.method,
        "space": record.space,
        "fixed": record.fixed,
        "objective": f"{record.objective['direction']} {record.objective['metric']}",
        "constraints": record.constraints,
        "universe": f"{len(record.ts_codes)} symbols",
        "dates": f"{record.start} to {record.end}",
        "points": f"{record.done_points} evaluated, {record.skipped_points} refused by the strategy",
        "status": record.status.value,
    }
    return render_optimisation_html(
        report_rows(record, points),
        x_param,
        y_param,
        record.objective["metric"],
        manifest,
        maximise=record.objective["direction"] == "maximize",
        title=f"Optimisation {record.optimisation_id} - {record.strategy}",
    )


__all__ = [
    "TASK_QUEUE",
    "OptimisationTaskHandler",
    "bulk_market_loader",
    "optimisation_html",
    "publish_batches",
    "report_rows",
    "submit_optimisation",
]
