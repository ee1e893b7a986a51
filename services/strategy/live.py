"""The strategy service's runner of instances: it builds each instance's run (its strategy, the market it trades
and its stored book), plays replays on a replay market clock, books the fills and order outcomes execution reports
(the `trade.executed` / `order.*` events, by strategy_instance_id), serves each instance's sleeve to risk, and fails
one instance — never the service — when its strategy raises."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from services.strategy.runner import BarReport, BookStore, InstanceFailed, InstanceRun, replay
from services.strategy.trading import PathUnavailable, ReplaySessions, TradingPath, fill_of
from shared.platform.errors import Conflict, NotFound, ServiceError, Unavailable
from shared.platform.events import Envelope
from shared.platform.events.schemas import OrderUpdated, TradeExecuted
from shared.platform.market_data import BarsUnavailable, MarketData, engine_frame, run_calendar
from shared.research.engine import BacktestConfig, load_bars
from shared.research.engine.data import Panel
from shared.research.strategy import Strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """What the runner needs of an instance."""

    instance_id: str
    strategy: str
    params: Mapping[str, Any]
    owner: str
    account_id: str
    capital_fen: int
    universe: Mapping[str, Any]
    costs: Mapping[str, Any]


class InstanceEvents(Protocol):
    async def bar(self, spec: RunSpec, report: BarReport) -> None:
        """A session of the instance ran (the strategy.instance.bar event, the metrics)."""

    async def failed(self, spec: RunSpec, trace: str) -> None:
        """The instance's strategy raised: the instance is failed (state, stored traceback, event, metric)."""

    async def finished(self, spec: RunSpec) -> None:
        """A replay played its last day: the instance stops."""


async def load_market(
    market: MarketData, spec: RunSpec, cls: type[Strategy], start: date, end: date
) -> tuple[Panel, BacktestConfig]:
    """The instance's universe and its bars from `start` to `end`, as the backtest of the same days loads them."""
    try:
        codes = await market.resolve_universe(dict(spec.universe), start)
    except BarsUnavailable as exc:
        raise Unavailable("data_unavailable", str(exc)) from exc
    if not codes:
        raise ServiceError("empty_universe", f"the universe has no stocks on {start}", status_code=422)
    try:
        table = await market.bars(codes, start, end, cls.bar_fields)
    except BarsUnavailable as exc:
        raise Unavailable("data_unavailable", str(exc)) from exc
    frame = await asyncio.to_thread(engine_frame, table)
    if frame.empty:
        raise ServiceError("no_data", f"the data service has no bars of the universe from {start} to {end}",
                           status_code=422)  # fmt: skip
    calendar = run_calendar(frame, start, end)
    config = BacktestConfig(
        initial_cash=Decimal(spec.capital_fen) / 100,
        start=start,
        end=end,
        calendar=tuple(calendar) or None,
        corporate_actions=False,  # execution does not apply them to positions (yet): neither does the book
        **dict(spec.costs),
    )
    panel = await asyncio.to_thread(load_bars, frame, config)
    return panel, config


class Runner:
    def __init__(
        self,
        *,
        strategies: Mapping[str, type[Strategy]],
        market: Callable[[], MarketData],
        path: TradingPath,
        books: BookStore,
        sessions: ReplaySessions | None,
        events: InstanceEvents,
    ) -> None:
        self.strategies = strategies
        self.market = market
        self.path = path
        self.books = books
        self.sessions = sessions  # None: the market clock is real (no replay here)
        self.events = events
        self.runs: dict[str, InstanceRun] = {}
        self.specs: dict[str, RunSpec] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.resume_gates: dict[str, asyncio.Event] = {}
        self.stopping: dict[str, asyncio.Event] = {}
        self.replay_lock = asyncio.Lock()  # one replay clock: one replay at a time

    # --- replays --------------------------------------------------------------------------------------------------
    async def replay(self, spec: RunSpec, start: date, end: date, days_per_second: float | None) -> None:
        """Start playing the instance over [start, end] in the background (answers once the market is loaded)."""
        if self.sessions is None:
            raise Conflict("not_replay", "this platform runs on the real market clock: start it with "
                           "LH_MARKET_CLOCK=replay to replay history")  # fmt: skip
        if self.replay_lock.locked():
            raise Conflict("replay_busy", "another replay is playing on this platform's market clock")
        cls = self._class(spec.strategy)
        panel, config = await load_market(self.market(), spec, cls, start, end)
        run = InstanceRun(spec.instance_id, cls(dict(spec.params)), panel, config, self.path, self.books)
        await run.begin()
        self.runs[spec.instance_id] = run
        self.specs[spec.instance_id] = spec
        gate = self.resume_gates.setdefault(spec.instance_id, asyncio.Event())
        gate.set()
        stop = self.stopping.setdefault(spec.instance_id, asyncio.Event())
        stop.clear()
        await self.replay_lock.acquire()
        self.tasks[spec.instance_id] = asyncio.create_task(
            self._play(spec, run, days_per_second, gate, stop), name=f"replay-{spec.instance_id}"
        )

    async def _play(
        self, spec: RunSpec, run: InstanceRun, days_per_second: float | None, gate: asyncio.Event, stop: asyncio.Event
    ) -> None:
        assert self.sessions is not None
        sessions = self.sessions

        async def on_bar(report: BarReport) -> None:
            await self.events.bar(spec, report)
            await gate.wait()  # paused: hold between bars

        try:
            await replay(run, sessions.open_session, days_per_second=days_per_second, on_bar=on_bar, stop=stop)
            if not stop.is_set():
                await self.events.finished(spec)
        except InstanceFailed as exc:
            log.error("strategy instance failed", extra={"instance_id": spec.instance_id})
            await self.events.failed(spec, exc.trace)
        except Exception:
            log.exception("replay stopped by an error", extra={"instance_id": spec.instance_id})
            import traceback

            await self.events.failed(spec, traceback.format_exc())
        finally:
            self.replay_lock.release()

    def _class(self, name: str) -> type[Strategy]:
        cls = self.strategies.get(name)
        if cls is None:
            raise NotFound("unknown_strategy", f"there is no strategy named {name!r}")
        return cls

    # --- the lifecycle ----------------------------------------------------------------------------------------------
    async def pause(self, instance_id: str) -> None:
        gate = self.resume_gates.get(instance_id)
        if gate is not None:
            gate.clear()

    async def resume(self, instance_id: str) -> None:
        gate = self.resume_gates.get(instance_id)
        if gate is not None:
            gate.set()

    async def stop(self, instance_id: str, *, cancel_open_orders: bool) -> None:
        stop = self.stopping.get(instance_id)
        if stop is not None:
            stop.set()
        gate = self.resume_gates.get(instance_id)
        if gate is not None:
            gate.set()
        task = self.tasks.pop(instance_id, None)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 30)
        if cancel_open_orders:
            await self.cancel_open_orders(instance_id)
        self.runs.pop(instance_id, None)

    async def cancel_open_orders(self, instance_id: str) -> int:
        """Cancel what execution holds open for the instance; returns how many were asked to cancel."""
        cancelled = 0
        for order in await self.path.orders(instance_id):
            if order.get("status") in ("accepted", "submitted", "partially_filled"):
                try:
                    await self.path.cancel(str(order["order_id"]))
                    cancelled += 1
                except PathUnavailable:
                    log.warning("could not cancel an instance's order", extra={"order_id": order["order_id"]})
        return cancelled

    async def close(self) -> None:
        for instance_id in list(self.tasks):
            stop = self.stopping.get(instance_id)
            if stop is not None:
                stop.set()
            gate = self.resume_gates.get(instance_id)
            if gate is not None:
                gate.set()
        for task in list(self.tasks.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        self.tasks.clear()

    # --- reports from execution -------------------------------------------------------------------------------------
    async def on_event(self, event: Envelope) -> None:
        """trade.executed and order.* of the instances running here (the others' are not ours)."""
        parsed = event.parsed()
        instance_id = getattr(parsed, "strategy_instance_id", None)
        run = self.runs.get(str(instance_id)) if instance_id else None
        if run is None:
            return
        if isinstance(parsed, TradeExecuted):
            await run.on_fill(fill_of(parsed.model_dump()))
        elif isinstance(parsed, OrderUpdated):
            run.on_order_final(parsed.client_order_id, parsed.status, parsed.filled_qty, parsed.reason)

    # --- the sleeve ---------------------------------------------------------------------------------------------------
    def sleeve(self, instance_id: str) -> dict[str, Any] | None:
        run = self.runs.get(instance_id)
        return None if run is None else run.sleeve()

    def progress(self, instance_id: str) -> dict[str, Any] | None:
        run = self.runs.get(instance_id)
        if run is None:
            return None
        book = run.book
        return {
            "bar_date": book.panel.dates[book.t].isoformat() if book.t >= 0 else None,
            "days_done": book.t + 1 if book.bar_done else book.t,
            "days": len(book.panel.dates),
            "orders_sent": run.orders_sent,
            "playing": instance_id in self.tasks and not self.tasks[instance_id].done(),
        }


__all__ = ["InstanceEvents", "RunSpec", "Runner", "load_market"]
