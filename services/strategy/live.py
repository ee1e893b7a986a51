"""The strategy service's runner of instances: it builds each instance's run (its strategy, the market it trades
and its stored book), plays replays on a replay market clock, books the fills and order outcomes execution reports
(the `trade.executed` / `order.*` events, by strategy_instance_id), sends each order with its instance's sleeve,
and fails one instance — never the service — when its strategy raises."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pydantic import ValidationError

from services.strategy.book import DayClose, SessionRow, SleeveBook
from services.strategy.runner import (
    BATCH_ORDERS,
    ORDERS_IN_FLIGHT,
    BarReport,
    BookStore,
    InstanceFailed,
    InstanceRun,
    cny,
    replay,
)
from services.strategy.schemas import ReplaySpec
from services.strategy.store import InstanceRecord
from services.strategy.trading import PathUnavailable, ReplaySessions, TradingPath, fill_of
from shared.core.market.calendar import FIRST_YEAR, LAST_YEAR, sse_trading_days
from shared.core.market.matching import NO_LIMIT_UP
from shared.core.market.rules import limit_prices, price_limit_ratio
from shared.platform.clock import EXCHANGE_TZ, market_today, utcnow
from shared.platform.errors import Conflict, NotFound, ServiceError, Unavailable
from shared.platform.events import Envelope
from shared.platform.events.schemas import BarsUpdated, OrderUpdated, TradeExecuted
from shared.platform.market_data import BarsUnavailable, MarketData, engine_frame, run_calendar
from shared.research.engine import BacktestConfig, load_bars
from shared.research.engine.data import Panel
from shared.research.engine.metrics import compute_metrics
from shared.research.strategy import Strategy

log = logging.getLogger(__name__)
LIVE_HISTORY_DAYS = 250  # trading days of history a real-clock instance keeps (more when its warm-up asks)
LIVE_LOOKBACK_DAYS = 1100  # calendar days searched back for that history
RECONCILE_S = 30.0  # how often an instance's open orders are checked against execution's record


def next_session(day: date) -> date | None:
    """The trading day after `day` (the built-in SSE calendar; None beyond it)."""
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        return None
    ahead = day + timedelta(days=14)
    if ahead.year > LAST_YEAR:
        return None
    later = [d for d in sse_trading_days(day + timedelta(days=1), ahead)]
    return later[0] if later else None


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
    reload: str = "manual"  # auto: hot reload swaps in a changed class of its strategy between bars


def run_spec(instance: InstanceRecord) -> RunSpec:
    return RunSpec(
        instance_id=instance.instance_id,
        strategy=instance.strategy,
        params=instance.params,
        owner=instance.owner,
        account_id=instance.account_id,
        capital_fen=instance.capital_fen,
        universe=instance.universe,
        costs=instance.costs,
        reload=instance.reload,
    )


class InstanceEvents(Protocol):
    async def bar(self, spec: RunSpec, report: BarReport) -> None:
        """A session of the instance ran (the strategy.instance.bar event, the metrics)."""

    async def failed(self, spec: RunSpec, trace: str) -> None:
        """The instance's strategy raised: the instance is failed (state, stored traceback, event, metric)."""

    async def finished(self, spec: RunSpec) -> None:
        """A replay played its last day: the instance stops."""

    def forget(self, instance_id: str) -> None:
        """The instance stopped: what is shown of it while it runs (its metrics) goes."""


async def load_market(
    market: MarketData,
    spec: RunSpec,
    cls: type[Strategy],
    start: date,
    end: date,
    *,
    keep_last: int | None = None,
    warmup: int = 0,
) -> tuple[Panel, BacktestConfig]:
    """The instance's universe and its bars from `start` to `end`, as the backtest of the same days loads them
    (`keep_last`: only the last so many trading days of them). Refuses, naming the days, a history shorter than the
    strategy's warm-up."""
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
    days = sorted(set(pd.to_datetime(frame["trade_date"]).dt.date)) if not frame.empty else []
    if keep_last is not None and len(days) > keep_last:
        first = days[-keep_last]
        frame = frame[pd.to_datetime(frame["trade_date"]).dt.date >= first]
        days, start = days[-keep_last:], first
    if len(days) < max(warmup, 1):
        have = f"{len(days)} ({days[0]} to {days[-1]})" if days else "none"
        raise ServiceError(
            "warmup_incomplete",
            f"{spec.strategy} reads {warmup} trading days of history before its first bar; the data service has "
            f"{have} between {start} and {end}: {max(warmup, 1) - len(days)} day(s) missing"
            + (f" before {days[0]}" if days else ""),
            status_code=422,
            needed=warmup,
            available=len(days),
        )
    calendar = run_calendar(frame, start, end)
    config = BacktestConfig(
        initial_cash=Decimal(spec.capital_fen) / 100,
        start=start,
        end=end,
        calendar=tuple(calendar) or None,
        # corporate actions always: execution applies them to the account's and every instance's positions (an
        # instance stored before they were applied may say false)
        **{**dict(spec.costs), "corporate_actions": True},
    )
    panel = await asyncio.to_thread(load_bars, frame, config)
    return panel, config


def window(timing: str, day: date) -> tuple[datetime, datetime]:
    """When a session's orders go out: the opening call auction (09:15-09:25) or the continuous session from the
    open (09:30-14:57, before the closing auction), exchange time, as aware datetimes."""
    at = {"open_auction": (time(9, 15), time(9, 25)), "open": (time(9, 30), time(14, 57))}[timing]
    return datetime.combine(day, at[0], EXCHANGE_TZ), datetime.combine(day, at[1], EXCHANGE_TZ)


def reference_row(book: SleeveBook, day: date) -> SessionRow:
    """The prices a real session's orders are sized at before its bar exists: each symbol's last close (the
    reference price until a real-time quote feed exists), and the session's limits computed from it; a symbol
    that did not trade on the last bar is taken as still suspended."""
    p, t = book.panel, book.t
    close = p.close[t]
    up = np.empty_like(close)
    down = np.empty_like(close)
    for j, board in enumerate(p.boards):
        ratio = price_limit_ratio(board, day, is_st=p.codes[j] in book.config.st_codes)
        limits = limit_prices(Decimal(int(close[j])) / 100, ratio) if close[j] > 0 else None
        if limits is None:
            up[j], down[j] = NO_LIMIT_UP, 0
        else:
            up[j], down[j] = int(limits[0] * 100), int(limits[1] * 100)
    return SessionRow(day, close.copy(), up, down, p.vol[t].copy(), p.has_bar[t] & (close > 0))


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
        now: Callable[[], datetime] = utcnow,
        orders_in_flight: int = ORDERS_IN_FLIGHT,
        batch_orders: int = BATCH_ORDERS,
    ) -> None:
        self.strategies = strategies
        self.orders_in_flight = orders_in_flight  # a round's orders at risk and execution at once, per instance
        self.batch_orders = batch_orders  # a round's orders sent in one request, at most (1: one at a time)
        self.market = market
        self.path = path
        self.books = books
        self.sessions = sessions  # None: the market clock is real (no replay here)
        self.events = events
        self.now = now
        self.runs: dict[str, InstanceRun] = {}
        self.specs: dict[str, RunSpec] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.resume_gates: dict[str, asyncio.Event] = {}
        self.stopping: dict[str, asyncio.Event] = {}
        self.recorded: dict[str, asyncio.Event] = {}
        self.live: dict[str, str] = {}  # instances on the real clock: their order timing
        self.unrecovered: dict[str, InstanceRecord] = {}  # running instances a peer's outage kept from resuming
        self.latest_bar: date | None = None  # the newest complete bar announced
        self.sent_orders: dict[str, int] = {}
        self.stopped_runs: dict[str, InstanceRun] = {}  # stopped keeping open orders: their late fills still book
        self.reconciled: dict[str, float] = {}  # when each instance's open orders were last checked (loop time)
        self.locks: dict[str, asyncio.Lock] = {}
        self.replay_lock = asyncio.Lock()  # one replay clock: one replay at a time

    # --- the InstanceRunner port ----------------------------------------------------------------------------------
    async def start(self, instance: InstanceRecord, replay: ReplaySpec | None = None) -> None:
        if replay is None:
            await self.go_live(instance)
        else:
            await self.replay(run_spec(instance), replay.start, replay.end, replay.days_per_second)

    async def resume(self, instance: InstanceRecord) -> None:
        """Carry on; with the instance's newest parameters when they changed while it was paused (a new strategy
        object takes over between bars, keeping the book and the `persist` variables, as a hot reload does)."""
        instance_id = instance.instance_id
        run = self.runs.get(instance_id)
        if run is not None and run.strategy.params.model_dump(mode="json") != instance.params:
            cls = type(run.strategy)
            async with self.locks.setdefault(instance_id, asyncio.Lock()):
                run.take_strategy(cls(dict(instance.params)))
            spec = self.specs.get(instance_id)
            if spec is not None:
                self.specs[instance_id] = replace(spec, params=instance.params)
        if run is not None:
            run.state = "running"
        gate = self.resume_gates.get(instance_id)
        if gate is not None:
            gate.set()

    async def started(self, instance_id: str) -> None:
        run = self.runs.get(instance_id)
        if run is not None and run.state == "created":
            run.state = "running"  # the start is recorded: its orders carry it in their sleeve
        recorded = self.recorded.get(instance_id)
        if recorded is not None:
            recorded.set()

    async def recover(self, instance: InstanceRecord) -> None:
        """After a restart of the service: carry on with an instance that was running (or paused) when it stopped,
        from its stored book; a replay resumes where it was. An outage of a peer (data, risk, execution) does not fail
        the instance: `tick` tries again until it can."""
        try:
            await self._recover(instance)
        except (Unavailable, PathUnavailable, BarsUnavailable) as exc:
            log.warning("an instance cannot resume yet: a peer is unavailable",
                        extra={"instance_id": instance.instance_id, "error": str(exc)})  # fmt: skip
            self.unrecovered[instance.instance_id] = instance
            return
        self.unrecovered.pop(instance.instance_id, None)

    async def _recover(self, instance: InstanceRecord) -> None:
        saved = await self.books.load_book(instance.instance_id)
        meta = (saved or {}).get("replay")
        if meta is None:
            await self.go_live(instance, recovered=True)
            return
        if self.sessions is None:
            log.warning(
                "a replaying instance cannot carry on: this platform now runs the real market clock",
                extra={"instance_id": instance.instance_id},
            )
            return
        await self.replay(
            run_spec(instance),
            date.fromisoformat(meta["start"]),
            date.fromisoformat(meta["end"]),
            meta.get("days_per_second"),
            paused=instance.state.value == "paused",
            recovered=True,
        )

    # --- the real market clock -------------------------------------------------------------------------------------
    async def go_live(self, instance: InstanceRecord, *, recovered: bool = False) -> None:
        """Trade the instance on the real market clock: its history (at least its warm-up) loaded now; then each
        complete `bars.updated` gives it that day's bar (on_bar), and its orders go out in the next session's window
        (its order timing). The universe is resolved once, at the first start, and kept (the book's columns and the
        strategy's per-symbol state must keep meaning the same stocks)."""
        if self.sessions is not None:
            raise Conflict("replay_clock", "this platform runs a replay market clock: start the instance with "
                           '{"replay": {"start": ..., "end": ...}}')  # fmt: skip
        spec = run_spec(instance)
        cls = self._class(spec.strategy)
        strategy = cls(dict(spec.params))
        saved = await self.books.load_book(spec.instance_id)
        meta = (saved or {}).get("live")
        end = market_today(self.now(), None)
        if meta is None:
            panel, config = await load_market(
                self.market(), spec, cls, end - timedelta(days=LIVE_LOOKBACK_DAYS), end,
                keep_last=max(LIVE_HISTORY_DAYS, strategy.warmup_bars()), warmup=strategy.warmup_bars(),
            )  # fmt: skip
            meta = {"codes": list(panel.codes), "first_day": panel.dates[0].isoformat()}
        else:
            panel, config = await load_market(
                self.market(), replace(spec, universe={"ts_codes": meta["codes"]}), cls,
                date.fromisoformat(meta["first_day"]), end,
            )  # fmt: skip
            _same_universe(meta["codes"], panel.codes)
        spec = replace(spec, universe={"ts_codes": meta["codes"]})
        run = InstanceRun(
            spec.instance_id, strategy, panel, config, self.path, _WithMeta(self.books, "live", meta),
            account_id=spec.account_id, state=instance.state.value, orders_in_flight=self.orders_in_flight,
            batch_orders=self.batch_orders,
        )  # fmt: skip
        await run.prepare()
        if run.book.t < 0:
            # a first start: the history is the warm-up; the first bar the strategy trades on is the next one
            run.book.t = len(panel.dates) - 1
            run.book.open_session(panel.dates[-1])
            run.book.bar_done = True
            await run.save()
        self.runs[spec.instance_id] = run
        await run.catch_up()  # fills reported between its restore and now reached no run: execution's listing has them
        self.specs[spec.instance_id] = spec
        self.live[spec.instance_id] = instance.order_timing
        self.locks.setdefault(spec.instance_id, asyncio.Lock())
        gate = self.resume_gates.setdefault(spec.instance_id, asyncio.Event())
        if instance.state.value == "paused":
            gate.clear()
        else:
            gate.set()

    async def on_bars(self, trade_date: date) -> None:
        """A complete `bars.updated` for `trade_date`: every instance trading the real clock gets its new bars. An
        instance that cannot take them now (the data service down) is given them again by the next `tick`."""
        self.latest_bar = max(self.latest_bar or trade_date, trade_date)
        for instance_id in list(self.live):
            await self._guarded(instance_id, self._advance(instance_id, trade_date), "give an instance its bar")

    async def _guarded(self, instance_id: str, step: Awaitable[None], what: str) -> None:
        """One instance's step: its strategy raising fails it (only it); anything else is logged and retried by the
        next tick; the other instances go on either way."""
        try:
            await step
        except InstanceFailed as exc:
            await self._fail(instance_id, exc.trace)
        except Exception:
            log.exception(f"could not {what}; retrying at the next tick", extra={"instance_id": instance_id})

    async def _advance(self, instance_id: str, trade_date: date) -> None:
        run, spec = self.runs.get(instance_id), self.specs.get(instance_id)
        gate = self.resume_gates.get(instance_id)
        if run is None or spec is None or (gate is not None and not gate.is_set()):
            return  # stopped, or paused: a paused instance takes no bars (resume picks up the next)
        async with self.locks[instance_id]:
            book = run.book
            last = book.panel.dates[book.t]
            if trade_date <= last:
                return  # a bar it has (a redelivered event)
            if run.sent:
                # the fills of its sessions before this bar come first: once the paper broker has matched every order
                # it follows, execution's record books their fills (the events may be late) before the bar is marked
                waiting = await run.unmatched()
                if waiting:
                    log.info("a bar waits for the paper broker to match the instance's orders of its session",
                             extra={"instance_id": instance_id, "orders": waiting, "bar": str(trade_date)})  # fmt: skip
                    return  # the next tick tries again (the bar is still ahead of the instance)
                await run.reconcile()
            cls = type(run.strategy)
            # from the same first day on: the panel grows by a row a day, so day indices keep counting
            panel, config = await load_market(self.market(), spec, cls, book.panel.dates[0], trade_date)
            _same_universe(list(book.panel.codes), panel.codes)
            run.rebind(panel, config)
            for t in range(panel.dates.index(last) + 1, len(panel.dates)):
                report = await run.close_bar(t)
                # the orders of this bar's session went out before the bar arrived
                report = replace(report, orders_sent=self.sent_orders.pop(instance_id, 0))
                await self.events.bar(spec, report)

    async def tick(self) -> None:
        """Every few seconds: instances whose recovery failed on an outage try again; instances behind the latest
        announced bar take it; each real-clock instance whose next session's order window is open sends its orders."""
        for instance in list(self.unrecovered.values()):
            try:
                await self.recover(instance)
            except Exception:
                log.warning(
                    "an instance still cannot resume; trying again",
                    extra={"instance_id": instance.instance_id},
                    exc_info=True,
                )
        if self.latest_bar is not None:
            for instance_id in list(self.live):
                run = self.runs.get(instance_id)
                if run is not None and run.book.panel.dates[run.book.t] < self.latest_bar:
                    await self._guarded(instance_id, self._advance(instance_id, self.latest_bar), "catch up a bar")
        await self.send_due()
        await self.reconcile_open_orders()

    async def reconcile_open_orders(self) -> None:
        """Orders an instance follows as open (they rested) whose end it has not heard of (a lost `order.*` event):
        execution's own record settles them — their fills booked, on_order told — at most every RECONCILE_S per
        instance, so the sleeve does not keep reserving cash for an order that has ended."""
        now = asyncio.get_running_loop().time()
        for instance_id, run in list(self.runs.items()):
            lock = self.locks.get(instance_id)
            if not run.sent or (lock is not None and lock.locked()):
                continue
            if now - self.reconciled.get(instance_id, 0.0) < RECONCILE_S:
                continue
            self.reconciled[instance_id] = now
            await self._guarded(instance_id, run.reconcile(), "reconcile open orders")

    async def send_due(self) -> None:
        """Each real-clock instance whose next session's order window is open sends the orders due (once)."""
        now = self.now()
        for instance_id, timing in list(self.live.items()):
            run, gate = self.runs.get(instance_id), self.resume_gates.get(instance_id)
            if run is None or gate is None or not gate.is_set() or not run.book.pending:
                continue
            last = run.book.panel.dates[run.book.t]
            session = await self.next_session(last)
            if session is None or run.book.sent_session == session:
                continue
            opens, closes = window(timing, session)
            if not opens <= now < closes:
                continue
            await self._guarded(instance_id, self._send_session(instance_id, run, session, closes), "send orders")

    async def _send_session(self, instance_id: str, run: InstanceRun, session: date, closes: datetime) -> None:
        async with self.locks[instance_id]:
            run.order_window_s = (closes - self.now()).total_seconds()
            sent_before = run.orders_sent
            try:
                await run.trade(reference_row(run.book, session))
            finally:
                # also when the session stopped part-way (a peer went down: the next tick sends the rest): the
                # orders execution took before it count in the bar's report
                self.sent_orders[instance_id] = self.sent_orders.get(instance_id, 0) + run.orders_sent - sent_before

    async def next_session(self, day: date) -> date | None:
        """The trading day after `day`: the data service's calendar, or the built-in one when it cannot answer."""
        try:
            days = await self.market().trading_days(day + timedelta(days=1), day + timedelta(days=20))
        except BarsUnavailable:
            days = None
        if days:
            return days[0]
        builtin = next_session(day)
        if builtin is None:
            log.error("no trade calendar for the session after the instance's last bar", extra={"day": str(day)})
        return builtin

    async def _fail(self, instance_id: str, trace: str) -> None:
        spec = self.specs.get(instance_id)
        self.live.pop(instance_id, None)
        run = self.runs.pop(instance_id, None)
        if run is not None:
            run.state = "failed"
        stop = self.stopping.get(instance_id)
        if stop is not None:
            stop.set()  # a replay stops before its next day
        if spec is None:
            return
        try:
            await self.events.failed(spec, trace)
        except Exception:
            log.exception("could not record an instance's failure", extra={"instance_id": instance_id})

    # --- replays --------------------------------------------------------------------------------------------------
    async def replay(
        self,
        spec: RunSpec,
        start: date,
        end: date,
        days_per_second: float | None,
        *,
        paused: bool = False,
        recovered: bool = False,
    ) -> None:
        """Start playing the instance over [start, end] in the background (answers once the market is loaded)."""
        if self.sessions is None:
            raise Conflict("not_replay", "this platform runs on the real market clock: start it with "
                           "LH_MARKET_CLOCK=replay to replay history")  # fmt: skip
        if self.replay_lock.locked():
            raise Conflict("replay_busy", "another replay is playing on this platform's market clock")
        cls = self._class(spec.strategy)
        panel, config = await load_market(self.market(), spec, cls, start, end)
        meta = {"start": start.isoformat(), "end": end.isoformat(), "days_per_second": days_per_second}
        # its state until the start is recorded (`started`): created; a recovered one is as it was recorded
        state = ("paused" if paused else "running") if recovered else "created"
        run = InstanceRun(
            spec.instance_id, cls(dict(spec.params)), panel, config, self.path, _WithMeta(self.books, "replay", meta),
            account_id=spec.account_id, state=state, orders_in_flight=self.orders_in_flight,
            batch_orders=self.batch_orders,
        )  # fmt: skip
        await run.prepare()
        self.runs[spec.instance_id] = run
        await run.catch_up()  # fills reported between its restore and now reached no run: execution's listing has them
        self.specs[spec.instance_id] = spec
        self.locks.setdefault(spec.instance_id, asyncio.Lock())
        gate = self.resume_gates.setdefault(spec.instance_id, asyncio.Event())
        if paused:
            gate.clear()
        else:
            gate.set()
        stop = self.stopping.setdefault(spec.instance_id, asyncio.Event())
        stop.clear()
        recorded = self.recorded.setdefault(spec.instance_id, asyncio.Event())
        if recovered:
            recorded.set()
        else:
            recorded.clear()
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

        await self.recorded[spec.instance_id].wait()  # the start is recorded: the instance is running
        await gate.wait()  # recovered paused: hold before the first bar

        try:
            await replay(
                run, sessions.open_session, days_per_second=days_per_second, on_bar=on_bar, stop=stop,
                lock=self.locks.setdefault(spec.instance_id, asyncio.Lock()),
            )  # fmt: skip
            if not stop.is_set():
                await self.events.finished(spec)
        except InstanceFailed as exc:
            log.error("strategy instance failed", extra={"instance_id": spec.instance_id})
            await self.events.failed(spec, exc.trace)
        except Exception:
            log.exception("replay stopped by an error", extra={"instance_id": spec.instance_id})
            await self.events.failed(spec, traceback.format_exc())
        finally:
            self.replay_lock.release()

    # --- hot reload -------------------------------------------------------------------------------------------------
    async def swap_strategy(self, name: str, cls: type[Strategy]) -> dict[str, str | None]:
        """Hot reload: each instance of strategy `name` running here (or paused) that opted in (`reload: auto`) takes
        the changed class `cls` at its next safe point — under its lock, which a bar (its on_bar, its session's
        orders) holds — keeping its book and its `persist` variables. Its parameters (those it runs with) must
        validate against `cls.Params` and the new object's on_init must not raise; otherwise it keeps the old code.
        Returns instance id -> None (it runs `cls` now) or why it kept its code."""
        outcome: dict[str, str | None] = {}
        for instance_id, spec in list(self.specs.items()):
            run = self.runs.get(instance_id)
            if run is None or spec.strategy != name or spec.reload != "auto":
                continue
            task = self.tasks.get(instance_id)
            if run.failed is not None or (task is not None and task.done()):
                continue  # failed, or a replay that has played its last day
            async with self.locks.setdefault(instance_id, asyncio.Lock()):
                if self.runs.get(instance_id) is not run or run.failed is not None:
                    continue  # stopped or failed while the bar ran
                try:
                    params = cls.parse_params(run.strategy.params.model_dump(mode="json"))
                    run.take_strategy(cls(params))
                except ValidationError as exc:
                    outcome[instance_id] = "; ".join(
                        f"params.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
                    )
                    continue
                except Exception as exc:
                    outcome[instance_id] = f"{type(exc).__name__} starting the new class: {exc}"
                    continue
                outcome[instance_id] = None
                try:
                    await run.save()  # the stored variables as the new class declares them (the next bar would too)
                except Exception:
                    log.warning("could not store a reloaded instance's book", extra={"instance_id": instance_id})
        return outcome

    def _class(self, name: str) -> type[Strategy]:
        cls = self.strategies.get(name)
        if cls is None:
            raise NotFound("unknown_strategy", f"there is no strategy named {name!r}")
        return cls

    # --- the lifecycle ----------------------------------------------------------------------------------------------
    async def pause(self, instance_id: str) -> None:
        """Between sessions: a session whose orders are being sent finishes first (risk refuses the orders of an
        instance recorded as paused, which would cut a session in two)."""
        gate = self.resume_gates.get(instance_id)
        if gate is None:
            return
        async with self.locks.setdefault(instance_id, asyncio.Lock()):
            gate.clear()
            run = self.runs.get(instance_id)
            if run is not None:
                run.state = "paused"

    async def stop(self, instance_id: str, *, cancel_open_orders: bool) -> None:
        stop = self.stopping.get(instance_id)
        if stop is not None:
            stop.set()
        recorded = self.recorded.get(instance_id)
        if recorded is not None:
            recorded.set()
        gate = self.resume_gates.get(instance_id)
        if gate is not None:
            gate.set()
        task = self.tasks.pop(instance_id, None)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 30)
        self.events.forget(instance_id)
        # the session in hand (if any) ends first: nothing is sent after the cancels below
        async with self.locks.setdefault(instance_id, asyncio.Lock()):
            self.live.pop(instance_id, None)
            run = self.runs.pop(instance_id, None)
            if run is not None:
                run.state = "stopped"
            if run is not None and not cancel_open_orders:
                self.stopped_runs[instance_id] = run  # its open orders may still fill: their fills are booked
            if cancel_open_orders:
                await self.cancel_open_orders(instance_id)

    async def cancel_open_orders(self, instance_id: str) -> int:
        """Cancel what execution holds open for the instance; returns how many were asked to cancel."""
        cancelled = 0
        for order in await self.path.orders(instance_id):
            if order.get("status") in ("accepted", "submitted", "partially_filled", "unknown"):
                try:
                    await self.path.cancel(str(order["order_id"]))
                    cancelled += 1
                except PathUnavailable:
                    log.warning("could not cancel an instance's order", extra={"order_id": order["order_id"]})
        return cancelled

    async def close(self) -> None:
        for instance_id in list(self.tasks):
            for event in (self.stopping.get(instance_id), self.recorded.get(instance_id)):
                if event is not None:
                    event.set()
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
        if isinstance(parsed, BarsUpdated):
            if parsed.complete and self.sessions is None:
                await self.on_bars(parsed.trade_date or parsed.end_date)
            return
        instance_id = getattr(parsed, "strategy_instance_id", None)
        run = (self.runs.get(str(instance_id)) or self.stopped_runs.get(str(instance_id))) if instance_id else None
        if run is None:
            return
        try:
            if isinstance(parsed, TradeExecuted):
                await run.on_fill(fill_of(parsed.model_dump()))
                lock = self.locks.get(run.instance_id)
                if lock is None or not lock.locked():
                    await run.save()  # a fill outside a session (a resting order, a stopped run's): stored now
            elif isinstance(parsed, OrderUpdated):
                run.on_order_final(parsed.client_order_id, parsed.status, parsed.filled_qty, parsed.reason)
        except InstanceFailed as exc:  # its on_trade / on_order raised: the fill is booked, the instance fails
            await self._fail(run.instance_id, exc.trace)

    # --- the sleeve and the performance ----------------------------------------------------------------------------
    async def sleeve(
        self,
        instance: InstanceRecord,
        *,
        client_order_id: str | None = None,
        ts_code: str | None = None,
        session: date | None = None,
    ) -> dict[str, Any]:
        """The running instance's sleeve from its book in memory; another's from its stored book (nothing open).
        As risk checks one order (`client_order_id`: not counted against itself; `ts_code`: only that position;
        `session`: the session it is for, whose sellable shares are answered)."""
        run = self.runs.get(instance.instance_id)
        if run is not None:
            return run.sleeve(client_order_id=client_order_id, ts_code=ts_code, session=session)
        saved = await self.books.load_book(instance.instance_id)
        book = (saved or {}).get("book")
        if book is None:
            return {
                "cash_fen": instance.capital_fen, "cash_available_fen": instance.capital_fen, "market_value_fen": 0,
                "realised_fen": 0, "unrealised_fen": 0, "fees_fen": 0, "bar_date": None, "positions": [],
            }  # fmt: skip
        history = book["history"]
        mv = int(history[-1][2]) if history else 0
        cost = sum(int(c) for _, c in book["positions"].values())
        return {
            "cash_fen": int(book["cash_fen"]),
            "cash_available_fen": int(book["cash_fen"]),
            "market_value_fen": mv,
            "realised_fen": int(book["realised_fen"]),
            "unrealised_fen": mv - cost,
            "fees_fen": int(book["fees_paid_fen"]),
            "bar_date": book.get("day"),
            "positions": [
                {"ts_code": code, "qty": int(qty), "sellable_qty": 0, "cost_fen": int(c), "close_fen": 0}
                for code, (qty, c) in book["positions"].items()
                if qty and (ts_code is None or code == ts_code)
            ],
        }

    async def performance(self, instance: InstanceRecord) -> dict[str, Any]:
        """The daily equity curve so far and the backtest report's metrics over it."""
        run = self.runs.get(instance.instance_id)
        if run is not None:
            book = run.book.to_json()
        else:
            saved = await self.books.load_book(instance.instance_id)
            book = (saved or {}).get("book") or {
                "history": [],
                "sell_pnl": [],
                "initial_cash_fen": instance.capital_fen,
            }
        days = book["history"]
        curve = [
            {"date": d, "cash": cny(c), "market_value": cny(mv), "equity": cny(c + mv), "turnover": cny(tr),
             "fees": cny(fe), "realised_pnl": cny(re)}
            for d, c, mv, tr, fe, re in days
        ]  # fmt: skip
        metrics: dict[str, Any] | None = None
        if days:
            equity = np.array([(c + mv) / 100.0 for _, c, mv, *_ in days])
            metrics = compute_metrics(
                equity,
                int(book["initial_cash_fen"]) / 100.0,
                trade_pnl=np.array(book["sell_pnl"], dtype=np.float64) / 100.0,
                traded_value=np.array([tr / 100.0 for _, _, _, tr, _, _ in days]),
            ).as_dict()
        return {
            "instance_id": instance.instance_id,
            "state": instance.state.value,
            "capital": cny(instance.capital_fen),
            "days": len(days),
            "equity_curve": curve,
            "metrics": metrics,
            "progress": self.progress(instance.instance_id),
        }

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


def _same_universe(before: list[str], now: tuple[str, ...]) -> None:
    """The instance's stocks must stay its columns: a stock without a bar in the whole window (delisted) changes
    them, and the book and the strategy's per-symbol state would then mean other stocks. Fail closed, naming them."""
    if list(now) != list(before):
        gone, new = sorted(set(before) - set(now)), sorted(set(now) - set(before))
        raise ServiceError(
            "universe_changed",
            f"the instance's stocks changed (no bars now: {', '.join(gone) or 'none'}; new: {', '.join(new) or 'none'})"
            ": stop it and start a new instance",
            status_code=409,
        )


class _WithMeta:
    """The book store, with a run's own facts kept beside the book (`key`: its value), e.g. a real-clock instance's
    resolved universe."""

    def __init__(self, books: BookStore, key: str, meta: dict[str, Any]) -> None:
        self.books = books
        self.key = key
        self.meta = meta

    async def load_book(self, instance_id: str) -> dict[str, Any] | None:
        return await self.books.load_book(instance_id)

    async def save_book(
        self, instance_id: str, bar_date: date | None, book: dict[str, Any], day: DayClose | None = None
    ) -> None:
        await self.books.save_book(instance_id, bar_date, {**book, self.key: self.meta}, day)


__all__ = ["InstanceEvents", "RunSpec", "Runner", "load_market", "run_spec"]
