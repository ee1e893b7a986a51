"""The runner: strategy instances trading through the platform's order path, with the class, parameters and hooks
they are backtested with.

One `InstanceRun` per running instance: the strategy object, its `SleeveBook` and the `BacktestContext` over it.
A session of the instance (`session(t)`) is the engine's day in the engine's order — the orders due are sized with
the engine's matching at the day's prices and sent through risk to execution (sells first, then the buys the cash
pays, round by round), their fills booked from execution's reports, the day marked at the close, then the
strategy's `on_bar` — so a paper replay and a backtest of the same days make the same orders and fills.

Restart safety: an order's client_order_id is derived from (instance, bar, sequence within the bar), so a bar run
again after a crash finds execution's existing orders (risk answers 200 with them) and never makes new ones; the
book (and the strategy's declared `persist` variables) is stored after every round of fills and every bar, and
fills are booked once by trade id whichever way they arrive (the trade.executed event or execution's listing). A
day's record (cash, value, P&L, fees, turnover, positions at its close) is stored with the book that marked it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

import numpy as np

from services.strategy.book import (
    DayClose,
    Intent,
    Plan,
    SessionRow,
    Settlement,
    SleeveBook,
    TradeFill,
    client_order_id,
)
from services.strategy.trading import PathUnavailable, Placed, Refused, TradingPath, fill_of, paper_fill_of
from shared.core.market.fees import FenFees
from shared.core.market.matching import KIND_SHARES, STATUS_NAMES, STATUS_REJECTED
from shared.research.engine.config import BacktestConfig
from shared.research.engine.context import BacktestContext, RunHistory
from shared.research.engine.core import cross_section
from shared.research.engine.data import Panel
from shared.research.strategy import Strategy
from shared.research.strategy.context import OrderEvent, TradeEvent

log = logging.getLogger(__name__)

FINAL = frozenset({"filled", "cancelled", "rejected"})
OPEN = frozenset({"accepted", "submitted", "partially_filled", "unknown"})
AWAITING = "awaiting: "  # the paper broker's reason for an order resting until its session's bar is in
FILL_WAIT_S = 2.0  # how long a round waits for its fills' events before reading execution's listing instead
ORDERS_IN_FLIGHT = 1  # a round's orders at risk and execution at once (LH_STRATEGY_ORDERS_IN_FLIGHT)
BATCH_ORDERS = 100  # a round's orders sent in one request, at most (LH_BATCH_MAX_ORDERS, risk's limit as well)
SLEEVE_REFUSALS = frozenset({"insufficient_strategy_cash", "insufficient_strategy_position"})


class InstanceFailed(Exception):
    """The strategy raised: the instance stops trading (the others carry on)."""

    def __init__(self, instance_id: str, trace: str) -> None:
        super().__init__(f"strategy instance {instance_id} failed")
        self.instance_id = instance_id
        self.trace = trace


class BookStore(Protocol):
    async def load_book(self, instance_id: str) -> dict[str, Any] | None: ...

    async def save_book(
        self, instance_id: str, bar_date: date | None, book: dict[str, Any], day: DayClose | None = None
    ) -> None:
        """Store the book; with `day`, that day's record too (the same transaction; a day written again replaces
        its record)."""


@dataclass(frozen=True)
class BarReport:
    """What one session did, for the strategy.instance.bar event and the metrics."""

    instance_id: str
    bar_date: date
    orders_sent: int
    equity_fen: int
    seconds: float
    fills: int = 0  # fills booked since the instance began
    realised_pnl_fen: int = 0  # since the instance began
    unrealised_pnl_fen: int = 0  # at the bar's close


def persisted_state(strategy: Strategy) -> dict[str, Any]:
    """The strategy's declared `persist` attributes as JSON (numpy arrays with their dtype)."""
    out: dict[str, Any] = {}
    for name in type(strategy).persist:
        owner, attr = _owner(strategy, name)
        if owner is None or not hasattr(owner, attr):
            continue
        value = getattr(owner, attr)
        if isinstance(value, np.ndarray):
            out[name] = {"ndarray": value.tolist(), "dtype": str(value.dtype)}
        else:
            out[name] = {"value": value}
    return out


def restore_state(strategy: Strategy, saved: Mapping[str, Any]) -> None:
    for name, cell in saved.items():
        if name not in type(strategy).persist:
            continue
        value = np.array(cell["ndarray"], dtype=cell["dtype"]) if "ndarray" in cell else cell["value"]
        owner, attr = _owner(strategy, name)
        if owner is not None:
            setattr(owner, attr, value)


def _owner(strategy: Strategy, path: str) -> tuple[Any, str]:
    """The object holding the last attribute of a dotted `path` (None when a step is missing), and that attribute."""
    *steps, attr = path.split(".")
    owner: Any = strategy
    for step in steps:
        owner = getattr(owner, step, None)
        if owner is None:
            return None, attr
    return owner, attr


class InstanceRun:
    """One instance trading: its strategy, book and context over `panel` (days x its universe)."""

    def __init__(
        self,
        instance_id: str,
        strategy: Strategy,
        panel: Panel,
        config: BacktestConfig,
        path: TradingPath,
        books: BookStore,
        *,
        account_id: str,
        state: str = "running",
        fill_wait_s: float = FILL_WAIT_S,
        order_window_s: float = 60.0,
        orders_in_flight: int = ORDERS_IN_FLIGHT,
        batch_orders: int = BATCH_ORDERS,
    ) -> None:
        self.instance_id = instance_id
        self.account_id = account_id  # the instance's account: its orders carry it in their sleeve
        # The instance's state as the runner holds it (the service's Runner moves it with pause, resume, stop and a
        # failure): every order carries it in its sleeve, and risk passes only a running instance's orders.
        self.state = state
        self.strategy = strategy
        self.book = SleeveBook(panel, config, instance_id)
        self.ctx = BacktestContext(self.book, RunHistory(panel, config))
        self.path = path
        self.books = books
        self.fill_wait_s = fill_wait_s
        self.order_window_s = order_window_s
        self.orders_in_flight = max(1, orders_in_flight)
        self.batch_orders = max(1, batch_orders)
        # orders a batch left with their outcome unknown: sent alone as retries (a refusal checked at execution)
        self.retrying: set[str] = set()
        cls = type(strategy)
        self.listens_orders = cls.on_order is not Strategy.on_order
        self.listens_trades = cls.on_trade is not Strategy.on_trade
        self.fills = asyncio.Condition()
        self.sent: dict[str, Plan] = {}  # client_order_id -> the plan, for orders not yet settled
        self.in_flight: dict[str, Plan] = {}  # orders of the round being sent, not answered yet (reserved too)
        # a buy's cash held back (amount and fees) by its amount in fen, for the fees it was worked out with
        self._reservations: tuple[FenFees | None, dict[int, int]] = (None, {})
        self.settlements: list[Settlement] = []  # every settlement, in order (what on_order heard)
        self.orders_sent = 0
        self.window_ends = 0.0
        self.failed: InstanceFailed | None = None
        # after a restart: the orders execution already holds for the instance, by client_order_id
        self.known_orders: dict[str, dict[str, Any]] = {}

    def rebind(self, panel: Panel, config: BacktestConfig) -> None:
        """The same instance over a newer panel (real clock: a new bar arrived): the book carries over by code and
        day, the strategy object (its state) stays; the context is rebuilt over the new history."""
        saved = self.book.to_json()
        book = SleeveBook(panel, config, self.instance_id)
        book.restore(saved)
        self.book = book
        self.ctx = BacktestContext(book, RunHistory(panel, config))

    def take_strategy(self, strategy: Strategy) -> None:
        """Hot reload, between bars: `strategy` (an object of the reloaded class) carries on from here. Its on_init
        runs with the context, as on a restart, but the orders it places are dropped (the instance's orders are
        those its book already holds); then it gets the old object's `persist` variables, as a restart would give
        them. The book (positions, cash, pending and open orders) stays as it is. When on_init raises, nothing has
        changed and the exception is the caller's."""
        book = self.book
        fresh, next_intent, seq_by_bar = len(book.fresh), book.next_intent, dict(book.seq_by_bar)
        try:
            strategy.on_init(self.ctx)
        finally:
            # the order ids and per-bar sequences too, so the next bar's client_order_ids are those of a run that
            # never reloaded (and those of a restart that runs the bar again)
            del book.fresh[fresh:]
            book.next_intent, book.seq_by_bar = next_intent, seq_by_bar
        restore_state(strategy, persisted_state(self.strategy))
        self.strategy = strategy
        cls = type(strategy)
        self.listens_orders = cls.on_order is not Strategy.on_order
        self.listens_trades = cls.on_trade is not Strategy.on_trade

    # --- start ----------------------------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """on_init, then the stored book (a restart) or the orders on_init placed (a first start)."""
        self._hook(self.strategy.on_init, self.ctx)
        saved = await self.books.load_book(self.instance_id)
        if saved is None:
            self.book.take_new()
            await self.save()
            return
        self.book.fresh = []  # on_init's orders were placed the first time; they are in the stored book
        self.book.restore(saved["book"])
        restore_state(self.strategy, saved.get("strategy", {}))
        self.known_orders = {str(o["client_order_id"]): o for o in await self.path.orders(self.instance_id)}
        self._reopen()
        await self.catch_up()

    def _reopen(self) -> None:
        """After a restart: the instance's orders still open at execution (sent before, their intents no longer
        pending) are followed again, so the sleeve reserves what they may spend and their end reaches on_order."""
        pending = {client_order_id(self.instance_id, i.bar, i.seq) for i in self.book.pending}
        for cid, o in list(self.known_orders.items()):
            if cid in pending or str(o["status"]) not in OPEN or str(o["ts_code"]) not in self.book.columns:
                continue
            _, bar, seq = cid.rsplit("-", 2)
            price_fen = round(Decimal(str(o["price"])) * 100) if o.get("price") is not None else 0
            intent = Intent(-1, self.book.columns[str(o["ts_code"])], KIND_SHARES, int(o["qty"]), bar, int(seq))
            self.sent[cid] = Plan(intent, cid, str(o["ts_code"]), str(o["side"]), int(o["qty"]), int(price_fen), 0)
            del self.known_orders[cid]

    async def reconcile(self) -> None:
        """The open orders this run follows, against execution's record: the fills it lists are booked, and an order
        that has ended is settled (its `order.*` event was lost or is late)."""
        if not self.sent:
            return
        orders = {str(o["client_order_id"]): o for o in await self.path.orders(self.instance_id)}
        await self.catch_up()
        for cid in list(self.sent):
            o = orders.get(cid)
            if o is not None and str(o["status"]) in FINAL:
                self.on_order_final(cid, str(o["status"]), int(o["filled_qty"]), o.get("reason"))
        await self.save()

    async def unmatched(self) -> int:
        """The orders this run follows as open that the paper broker has not matched yet: they rest until the bar of
        their session is in (reason `awaiting: `, docs/order-path.md). Their fills belong before the next on_bar, as
        the backtest engine's fills of a session come before that session's bar."""
        if not self.sent:
            return 0
        reasons = {str(o["client_order_id"]): (str(o["status"]), str(o.get("reason") or ""))
                   for o in await self.path.orders(self.instance_id)}  # fmt: skip
        return sum(
            1
            for cid in self.sent
            if (got := reasons.get(cid)) is not None and got[0] in OPEN and got[1].startswith(AWAITING)
        )

    async def catch_up(self) -> None:
        """Book every fill execution holds for the instance that the book has not (missed while down)."""
        for fill in await self.path.trades(self.instance_id):
            await self.on_fill(fill)

    # --- a session ------------------------------------------------------------------------------------------------
    async def session(self, t: int) -> BarReport:
        """Day t of a replay: its orders due are sent and filled at its prices, the day is marked, then on_bar."""
        started = time.perf_counter()
        sent_before = self.orders_sent
        self.book.begin_day(t)
        # close_bar stores the book at once: the store after the last round is that one (a crash in between runs
        # the day again, as one after the last round's store does: its orders are found by id)
        await self.trade(self.book.panel_row(t), store_after=False)
        return await self.close_bar(t, sent_before, started)

    async def trade(self, row: SessionRow, *, store_after: bool = True) -> None:
        """The session's orders due, sized at `row`'s prices and sent round by round: the sells, then the buys the
        cash pays once the sells filled (the engine's order of a day's fills). The book is stored after each round
        and, unless `store_after` is False (the caller stores it next), once the session is sent."""
        book = self.book
        book.open_session(row.day)
        self.window_ends = time.monotonic() + self.order_window_s  # one window for the session's orders
        due, cancelled = book.due(row)
        self._settle(cancelled)
        for round_ in book.rounds(due):
            round_ = await self._known(round_)
            sells, buys, settled = book.size(round_, row)
            self._settle(settled)
            await self._send(sells)
            kept, dropped = book.afford(buys)
            self._settle(dropped)
            await self._send(kept)
            await self.save()
        book.sent_session = row.day
        if store_after:
            await self.save()

    async def close_bar(self, t: int, sent_before: int | None = None, started: float | None = None) -> BarReport:
        """Day t's bar is in: its corporate actions (on the real clock they become known with the bar, after the
        session's fills; a replay applied them when the session began), the day is marked at its close, then the
        strategy's on_bar, whose orders wait for the next session."""
        started = time.perf_counter() if started is None else started
        book = self.book
        book.t = t
        book.open_session(book.panel.dates[t])
        book.corporate_actions(t)
        book.close_day()
        close = book.day_close()
        self._hook(self.strategy.on_bar, self.ctx, cross_section(book.panel, t))
        book.take_new()
        book.bar_done = True
        await self.save(day=close)  # the day's record with the book that has marked it
        sent = self.orders_sent - (self.orders_sent if sent_before is None else sent_before)
        return BarReport(
            self.instance_id, book.panel.dates[t], sent, close.equity_fen, time.perf_counter() - started,
            len(book.applied_trades), close.realised_pnl_fen, close.unrealised_pnl_fen,
        )  # fmt: skip

    async def finish(self) -> None:
        """The end of a replay: on_stop, and what is still pending (on_stop's orders too) is cancelled (end of data),
        on_order told, as the engine does; what on_order places then has no session left."""
        self._hook(self.strategy.on_stop, self.ctx)
        self.book.take_new()
        self._settle(self.book.end_of_data())
        self.book.fresh, self.book.pending = [], []
        await self.save()

    async def _known(self, intents: list[Any]) -> list[Any]:
        """A bar run again after a restart: the orders that reached execution before it are not sized again (the
        book has moved on since) but settled as execution holds them; the rest are sized as usual."""
        if not self.known_orders:
            return intents
        fresh = []
        for intent in intents:
            cid = client_order_id(self.instance_id, intent.bar, intent.seq)
            order = self.known_orders.pop(cid, None)
            if order is None:
                fresh.append(intent)
                continue
            side = str(order["side"])
            price_fen = round(Decimal(str(order["price"])) * 100) if order.get("price") is not None else 0
            plan = Plan(intent, cid, str(order["ts_code"]), side, int(order["qty"]), int(price_fen), 0)
            self.book.done(intent)
            self.sent[cid] = plan
            placed = Placed(str(order["order_id"]), str(order["status"]), int(order["filled_qty"]), order.get("reason"))
            await self._await_fills(plan, placed)
        return fresh

    def _hook(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception as exc:
            self.failed = InstanceFailed(self.instance_id, traceback.format_exc())
            raise self.failed from exc

    def _heard(self, hook: Callable[..., None], *args: Any) -> None:
        """on_trade / on_order. The orders they place go out when the engine would fill them: placed while a session
        is open (its fills coming in), they join that day's on_bar orders (close_bar takes them), for the next
        session; placed once the day's bar is processed (an event that came later), they are due at once, in the next
        order window. Until then they are stored with the book (`fresh`)."""
        self._hook(hook, *args)
        if self.book.bar_done:
            self.book.take_new()

    async def _send(self, plans: list[Plan]) -> None:
        """Send a round's orders (one per symbol: `SleeveBook.rounds`) and wait for their fills. Up to
        `orders_in_flight` are at risk and execution at once; each is reserved in the sleeve from before the round
        is sent (`in_flight`) until it is refused or followed as sent, and each carries to risk the sleeve its
        predecessors in the round leave (`carried_sleeve`), as if they had been sent one after another; execution's
        admission under the account's lock stays the last word. The
        answers are then taken in the round's order, so the book, the settlements and on_order come out as they
        would one at a time. An order the path cannot take now is sent again with the same client_order_id until
        the order window closes; then it is dropped and reported (it was never accepted). When one order fails
        (anything but the path being unavailable), no new one is sent; the answers already in are taken, then the
        error is raised (the orders not taken are sent again with their client_order_ids, which finds those
        execution holds)."""
        if not plans:
            return
        for plan in plans:
            self.in_flight[plan.client_order_id] = plan
        answers: list[Placed | Refused | BaseException | None] = [None] * len(plans)
        failed = asyncio.Event()
        queue = iter(range(len(plans)))

        async def worker() -> None:
            for k in queue:
                if failed.is_set():
                    return
                try:
                    answer = await self._place(plans[k])
                except Exception as exc:
                    answers[k] = exc
                    failed.set()
                    return
                answers[k] = answer
                if isinstance(answer, Refused):
                    self.in_flight.pop(plans[k].client_order_id, None)  # no order: it reserves nothing

        try:  # (the batches too: whatever ends the round, its orders no longer reserve anything in the sleeve)
            if self.batch_orders > 1 and len(plans) > 1 and hasattr(self.path, "place_batch"):
                await self._send_batches(plans, answers, failed)
                queue = iter([k for k in range(len(plans)) if answers[k] is None])
            await asyncio.gather(*(worker() for _ in range(min(self.orders_in_flight, len(plans)))))
            error: BaseException | None = None
            for plan, answer in zip(plans, answers, strict=True):
                if answer is None or isinstance(answer, BaseException):
                    error = error or answer
                    continue
                self.in_flight.pop(plan.client_order_id, None)
                if isinstance(answer, Refused):
                    self._settle([Settlement(plan.intent, STATUS_REJECTED, 0, f"{answer.code}: {answer.reason}")])
                    continue
                self.book.done(plan.intent)
                self.orders_sent += 1
                self.sent[plan.client_order_id] = plan
                await self._await_fills(plan, answer)
            if error is not None:
                raise error
        finally:
            for plan in plans:
                self.in_flight.pop(plan.client_order_id, None)
                self.retrying.discard(plan.client_order_id)

    async def _send_batches(
        self, plans: list[Plan], answers: list[Placed | Refused | BaseException | None], failed: asyncio.Event
    ) -> None:
        """A round's orders sent `batch_orders` at a time in one request each (risk's batches: each order decided
        as a single one, in order; the approved sent to execution together), each carrying the sleeve its
        predecessors in the round leave, as when sent one after another. What a batch leaves unanswered is sent
        alone after it (`_place`, with its retries): an order the path could not take now, every order of a batch
        not taken as a whole, and an order refused for its sleeve's cash or shares after an order before it in the
        round was refused or left to be sent alone (its sleeve counted that one's: alone, it is checked after it,
        without it when it is refused, as one at a time)."""
        for start in range(0, len(plans), self.batch_orders):
            if failed.is_set():
                return
            # an order before it was refused in this batch, or may yet be: one of an earlier batch left to be sent
            # alone is reserved in this batch's sleeves (it is still in flight) though it may end refused
            refused_before = any(answers[k] is None for k in range(start))
            chunk = list(range(start, min(start + self.batch_orders, len(plans))))
            batch = [plans[k] for k in chunk]
            cids = "|".join(p.client_order_id for p in batch)
            batch_id = f"{batch[0].client_order_id}+{len(batch)}.{hashlib.sha256(cids.encode()).hexdigest()[:10]}"
            sleeves = [self.carried_sleeve(p) for p in batch]
            try:
                got = await self.path.place_batch(
                    batch_id, batch, self.instance_id, paper_fill_of(self.book.config), sleeves
                )
            except PathUnavailable as exc:
                log.warning("a batch of orders was not taken: its orders are sent alone",
                            extra={"batch_id": batch_id, "error": str(exc)})  # fmt: skip
                # risk or execution may have taken some (the answer lost): sent alone as retries, so a refusal is
                # checked against what execution holds
                self.retrying.update(p.client_order_id for p in batch)
                continue
            except Exception as exc:
                answers[chunk[0]] = exc
                failed.set()
                return
            for k, answer in zip(chunk, got, strict=True):
                if isinstance(answer, PathUnavailable):
                    self.retrying.add(plans[k].client_order_id)  # it may be at execution (its outcome unknown)
                    refused_before = True  # (it stays reserved in the sleeves after it, though it may end refused)
                    continue  # sent alone, again with its client_order_id
                if isinstance(answer, Refused):
                    if answer.rate_only:
                        refused_before = True
                        continue  # the account's orders this second are used up: sent alone, in a later second
                    if refused_before and set(answer.codes) & SLEEVE_REFUSALS:
                        continue  # checked again alone, without the refused order's reservation
                    refused_before = True
                    self.in_flight.pop(plans[k].client_order_id, None)  # no order: it reserves nothing
                answers[k] = answer

    async def _place(self, plan: Plan) -> Placed | Refused:
        """One order through the path, sent again while the path is unavailable and the order window open. An order
        a batch left with its outcome unknown (`retrying`) is a retry from its first attempt here."""
        deadline = self.window_ends
        delay = 0.05
        tried = plan.client_order_id in self.retrying
        while True:
            try:
                # the sleeve risk checks it against, as the book stands the moment it is sent (each attempt)
                answer = await self.path.place(
                    plan, self.instance_id, paper_fill=paper_fill_of(self.book.config), sleeve=self.carried_sleeve(plan)
                )
                if isinstance(answer, Refused) and answer.rate_only:
                    # the account's order rate this second is used up (risk's order_activity rule): not "no", "not
                    # now" — sent again, paced by the rule, within the order window
                    raise PathUnavailable(f"{answer.code}: {answer.reason}")
                break
            except PathUnavailable as exc:
                tried = True
                if time.monotonic() + delay > deadline:
                    log.error(
                        "order dropped: the order path stayed unavailable for the order window",
                        extra={"client_order_id": plan.client_order_id, "error": str(exc)},
                    )
                    answer = Refused("order_window_closed", f"not accepted within the order window: {exc}")
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        if isinstance(answer, Refused) and tried:
            # refused on a retry: the first attempt may have reached execution after all (its answer lost, and
            # risk decided afresh once the approval expired). Execution's own record decides.
            answer = await self._held(plan) or answer
        self.retrying.discard(plan.client_order_id)
        return answer

    async def _held(self, plan: Plan) -> Placed | None:
        try:
            orders = await self.path.orders(self.instance_id)
        except PathUnavailable:
            return None
        for o in orders:
            if o["client_order_id"] == plan.client_order_id:
                return Placed(str(o["order_id"]), str(o["status"]), int(o["filled_qty"]), o.get("reason"))
        return None

    async def _await_fills(self, plan: Plan, placed: Placed) -> None:
        cid = plan.client_order_id

        def booked() -> bool:
            return self.book.filled_by_order.get(cid, 0) >= placed.filled_qty

        if placed.filled_qty and not booked():
            async with self.fills:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.fills.wait_for(booked), self.fill_wait_s)
            if not booked():
                await self.catch_up()  # the events are late (or the bus is down): execution's listing has them
            if not booked():
                raise PathUnavailable(f"execution reports {placed.filled_qty} filled of {cid} but lists fewer")
        if placed.status in FINAL:
            self.sent.pop(cid, None)
            self._settle([self.book.settle_sent(plan, placed.filled_qty, placed.status, placed.reason)])

    # --- reports from execution -----------------------------------------------------------------------------------
    async def on_fill(self, fill: TradeFill) -> None:
        if not self.book.apply(fill):
            return
        if self.listens_trades:
            self._heard(
                self.strategy.on_trade,
                self.ctx,
                TradeEvent(
                    order_id=plan.intent.intent_id
                    if (plan := self.sent.get(fill.client_order_id) or self.in_flight.get(fill.client_order_id))
                    else -1,
                    ts_code=fill.ts_code,
                    trade_date=fill.trade_date,
                    side=fill.side,  # type: ignore[arg-type]
                    qty=fill.qty,
                    price=fill.price_fen / 100,
                    amount=fill.qty * fill.price_fen / 100,
                    fees=fill.fees_fen / 100,
                ),
            )
        async with self.fills:
            self.fills.notify_all()

    def on_order_final(self, client_order_id: str, status: str, filled_qty: int, reason: str | None) -> None:
        """An order that rested (not final when placed) ended. An `order.*` event of a status that is not final
        (`order.submitted`, `order.partially_filled`) changes nothing: the order is still followed as open."""
        if status not in FINAL:
            return
        plan = self.sent.pop(client_order_id, None)
        if plan is not None:
            self._settle([self.book.settle_sent(plan, filled_qty, status, reason)])

    def _settle(self, settlements: list[Settlement]) -> None:
        for s in settlements:
            self.book.done(s.intent)
            self.settlements.append(s)
            if self.listens_orders:
                self._heard(
                    self.strategy.on_order,
                    self.ctx,
                    OrderEvent(
                        order_id=s.intent.intent_id,
                        ts_code=self.book.panel.codes[s.intent.sym],
                        trade_date=self.book.session_day or self.book.panel.dates[max(self.book.t, 0)],
                        status=STATUS_NAMES[s.status],  # type: ignore[arg-type]
                        filled_qty=s.filled_qty,
                        reason=s.reason,
                    ),
                )

    async def save(self, day: DayClose | None = None) -> None:
        bar_date = self.book.panel.dates[self.book.t] if self.book.t >= 0 else None
        book = {"book": self.book.to_json(), "strategy": persisted_state(self.strategy)}
        if day is None:
            await self.books.save_book(self.instance_id, bar_date, book)
        else:
            await self.books.save_book(self.instance_id, bar_date, book, day)

    # --- the sleeve, as risk checks an order against it -------------------------------------------------------------
    def sleeve(
        self, *, client_order_id: str | None = None, ts_code: str | None = None, session: date | None = None
    ) -> dict[str, Any]:
        """Cash available to new orders (`cash_available_fen`: the book's cash less what its open buys and the buys
        being sent may still spend, see `available_fen`), positions (`ts_code`: only that symbol's; sellable in
        `session`, default the book's session, less what its resting sells already sell) and the book's figures."""
        book = self.book
        return {
            "cash_fen": book.cash_fen,
            "cash_available_fen": self.available_fen(client_order_id),
            "market_value_fen": book.market_value_fen(),
            "realised_fen": book.realised_fen,
            "unrealised_fen": book.unrealised_fen(),
            "fees_fen": book.fees_paid_fen,
            "bar_date": book.panel.dates[book.t].isoformat() if book.t >= 0 else None,
            "positions": self.positions(ts_code, session, client_order_id),
        }

    def carried_sleeve(self, plan: Plan) -> dict[str, Any]:
        """The sleeve the order `plan` carries to risk (`OrderRequest.sleeve`), computed as it is sent: the instance,
        its account and state, the cash available to this order (`available_fen`) and its position in the order's
        symbol, sellable in the session being sent for. Risk checks the order against exactly this."""
        book = self.book
        held = self.positions(plan.ts_code, None, plan.client_order_id)  # that symbol's, if held: one at most
        position = held[0] if held else None
        return {
            "instance_id": self.instance_id,
            "account_id": self.account_id,
            "state": self.state,
            "cash_available": cny(self.available_fen(plan.client_order_id)),
            "position": None
            if position is None
            else {"ts_code": position["ts_code"], "qty": position["qty"], "sellable_qty": position["sellable_qty"]},
            "session": None if book.session_day is None else book.session_day.isoformat(),
        }

    def available_fen(self, client_order_id: str | None = None) -> int:
        """The book's cash less what its open buys and the buys being sent may still spend. For one order
        (`client_order_id`): for an order of the round being sent, the orders before it in the round are reserved
        (answered or not; a refused one no longer), itself and those after it are not — as if they were sent one
        after another: each sees what its predecessors may spend, so no two can spend the same cash (the one later in
        the round saw the earlier one). Without it (or for an order not of the round), every order being sent is
        reserved."""
        book = self.book
        if self._reservations[0] is not book.fees or len(self._reservations[1]) > 10_000:
            self._reservations = (book.fees, {})
        fees, memo = book.fees, self._reservations[1]
        reserved = 0
        for cid, plan in self._reserving(client_order_id):
            if plan.side == "sell":
                continue
            left = plan.qty - book.filled_by_order.get(cid, 0)
            if left <= 0:
                continue  # filled: its cash is spent (no minimum commission on nothing left)
            amount_fen = left * plan.price_fen
            # each order of a round of n is counted for every order after it: its fees worked out once
            held = memo.get(amount_fen)
            if held is None:
                amount = np.array([amount_fen], dtype=np.int64)
                held = memo[amount_fen] = int(amount[0] + fees.commission(amount)[0] + fees.transfer(amount)[0])
            reserved += held
        return book.cash_fen - reserved

    def positions(
        self, ts_code: str | None = None, session: date | None = None, client_order_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Every position held, or only `ts_code`'s: its shares, and those sellable in `session` (on the real clock an
        order placed after the close is for the next session, in which the shares bought in the book's session may be
        sold; default the book's session) less what the sleeve's open sells still sell, and of the round being sent
        the sells before `client_order_id` (as `available_fen` counts the buys)."""
        book = self.book
        selling: dict[str, int] = {}  # shares its open sells may still sell, by code
        for cid, plan in self._reserving(client_order_id):
            if plan.side != "sell":
                continue
            left = plan.qty - book.filled_by_order.get(cid, 0)
            if left > 0:
                selling[plan.ts_code] = selling.get(plan.ts_code, 0) + left
        positions = book.holdings(ts_code, session)
        for p in positions:
            # shares a resting sell of the sleeve already sells are not offered to another sell
            p["sellable_qty"] = max(int(p["sellable_qty"]) - selling.get(str(p["ts_code"]), 0), 0)
        return positions

    def _reserving(self, client_order_id: str | None) -> list[tuple[str, Plan]]:
        """The orders whose cash or shares the sleeve holds back from `client_order_id`: every open one, and of the
        round being sent those before it (all of them when it is not of the round); never itself."""
        ahead: list[tuple[str, Plan]] = []  # the orders of the round being sent that come before this one
        for cid, plan in self.in_flight.items():
            if cid == client_order_id:
                break
            ahead.append((cid, plan))
        else:
            ahead = list(self.in_flight.items())  # not an order of the round: every one is counted
        return [(cid, plan) for cid, plan in (*self.sent.items(), *ahead) if cid != client_order_id]


def cny(fen: int) -> str:
    return format(Decimal(fen) / 100, ".2f")


async def replay(
    run: InstanceRun,
    open_session: Callable[..., Awaitable[None]],
    *,
    days_per_second: float | None = None,
    on_bar: Callable[[BarReport], Awaitable[None]] | None = None,
    stop: asyncio.Event | None = None,
    lock: asyncio.Lock | None = None,
) -> None:
    """Play the run's panel day by day through the whole order path: each day the market clock moves to it
    (`open_session`), then the instance's session runs. As fast as possible, or `days_per_second`. `lock` is held
    while a session (and the end) runs: what takes it (a hot reload's swap of the strategy) gets in between bars."""
    held: contextlib.AbstractAsyncContextManager[Any] = lock if lock is not None else contextlib.nullcontext()
    panel = run.book.panel
    # a day whose session was cut short (a crash between its orders) runs again: its sent orders are found by id
    start_t = run.book.t + 1 if run.book.bar_done else run.book.t
    for t in range(start_t, len(panel.dates)):
        if stop is not None and stop.is_set():
            return
        began = time.monotonic()
        async with held:  # a pause, a stop or a hot reload waits for the day in hand
            if t == start_t:
                await open_session(panel.dates[t], rewind=True)  # a new replay (or a resumed one) may go back
            else:
                await open_session(panel.dates[t])
            report = await run.session(t)
        if on_bar is not None:
            await on_bar(report)
        if days_per_second:
            wait = max(0.0, 1.0 / days_per_second - (time.monotonic() - began))
            if stop is None:
                await asyncio.sleep(wait)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)  # a stop does not wait out the pace
    async with held:
        await run.finish()


__all__ = [
    "BarReport",
    "BookStore",
    "InstanceFailed",
    "InstanceRun",
    "cny",
    "fill_of",
    "persisted_state",
    "replay",
    "restore_state",
]
