"""Typed payloads, one per event type. Prices and money travel as decimal strings, never floats."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer

# A decimal in JSON as plain positional text: str() would write a zero return quantized to 8 places as "0E-8" and
# 0.00000012 as "1.2E-7", which a reader (or the desk's event line) should not have to decode.
PlainDecimal = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")]


class EventPayload(BaseModel):
    """Every payload is a fact: immutable once made."""

    model_config = ConfigDict(frozen=True)


class OrderUpdated(EventPayload):
    """An order as it stands after the change its event type names (accepted, filled, cancelled, ...)."""

    order_id: str
    client_order_id: str
    account_id: str
    ts_code: str
    side: str
    order_type: str
    qty: int
    price: PlainDecimal | None
    status: str
    filled_qty: int
    avg_fill_price: PlainDecimal | None
    reason: str | None = None
    updated_at: datetime
    # The strategy instance that placed the order; None for a person's order (and in events made before it existed).
    strategy_instance_id: str | None = None
    # A buy's price cap, which its cash is reserved at (its limit price, or the limit-up a market buy was admitted
    # at); None for a sell, and in events made before it was added.
    price_cap: PlainDecimal | None = None
    # The trading session the order is for (its fee date and T+1 session): on `order.accepted`, where execution
    # decides it; None on later events (execution does not keep it) and in events made before it was added.
    session: date | None = None


class DenialReason(EventPayload):
    code: str  # a risk ReasonCode, e.g. "lot_size", "insufficient_cash", "risk_unavailable"
    message: str


class OrderDenied(EventPayload):
    """Risk refused an order (its answer was 422 order_rejected, or 503 risk_unavailable): nothing reached execution.
    Written with the decision it reports, in the same transaction (risk's outbox)."""

    decision_id: str
    account_id: str
    client_order_id: str
    ts_code: str
    side: str
    order_type: str
    qty: int
    price: PlainDecimal | None
    reasons: tuple[DenialReason, ...]
    denied_at: datetime
    strategy_instance_id: str | None = None  # the strategy instance the order was for; None: a person's


class RiskAlert(EventPayload):
    """A rule found an order near a limit (`severity` warning: the order passed) or an account in breach (`critical`:
    e.g. the day's loss over its limit, which moves its trading state). For people: the operations issue routes these
    to them. Written to risk's outbox with the decision that found it."""

    severity: str  # warning | critical
    account_id: str
    strategy_instance_id: str | None = None
    rule: str
    code: str
    message: str
    values: dict[str, str] = {}
    decision_id: str | None = None
    at: datetime


class TradeExecuted(EventPayload):
    trade_id: str
    order_id: str
    client_order_id: str
    account_id: str
    ts_code: str
    side: str
    qty: int
    price: PlainDecimal
    amount: PlainDecimal
    traded_at: datetime
    # The trade's fees in CNY, as execution books them (amount + fees is what a buy cost, amount - fees what a sell
    # brought): a consumer keeps its cash exact without reading the trade. None in events made before they were added.
    commission: PlainDecimal | None = None
    stamp_duty: PlainDecimal | None = None
    transfer_fee: PlainDecimal | None = None
    strategy_instance_id: str | None = None  # as OrderUpdated's


class PositionAdjusted(EventPayload):
    """Execution applied a corporate action (bonus shares, a split, a dividend as the adj_factor shows it) to one
    holder's position on its ex-date: the account's own part (`strategy_instance_id` None) or one strategy instance's,
    each floored on its own (shared.core.market.corporate). `cash_in_lieu` (CNY) was credited to the account."""

    account_id: str
    strategy_instance_id: str | None = None
    ts_code: str
    ex_date: date
    qty_before: int
    qty_after: int
    adj_factor: PlainDecimal  # the ex-date's
    previous_adj_factor: PlainDecimal  # the symbol's previous bar's
    pre_close: PlainDecimal  # the ex-date's reference price the fraction was paid at
    cash_in_lieu: PlainDecimal
    adjusted_at: datetime

    @property
    def key(self) -> str:
        """The adjustment's key, unique per account (holder, code, ex-date): `adjust:<instance or ->:<ts_code>:
        <ex_date>`, as execution records it (position_adjustments.adjustment_key, and its cash-in-lieu entry's key)."""
        return f"adjust:{self.strategy_instance_id or '-'}:{self.ts_code}:{self.ex_date.isoformat()}"


class CashMoved(EventPayload):
    """A deposit or withdrawal on an account's cash ledger (execution, through its outbox, in the transaction that
    records the entry): `amount` in CNY, signed (+ in, - out); `entry_id` the ledger entry's id."""

    entry_id: str
    account_id: str
    amount: PlainDecimal
    kind: str  # deposit | withdrawal
    moved_at: datetime


class BrokerReconciliationDifference(EventPayload):
    """Execution's reconciliation with a QMT bridge's broker found positions or cash that differ from its own records
    (reported, never overwritten: docs/qmt-bridge.md, "Execution"). Each difference: `kind` (position | cash),
    `ts_code` (positions), `platform` and `broker` (shares, or cash in CNY, as strings)."""

    reconciliation_id: str
    bridge_id: str
    account_id: str
    differences: list[dict[str, str | None]]
    at: datetime


class BrokerBridgeLink(EventPayload):
    """`broker.bridge.connected` / `broker.bridge.disconnected`: a QMT bridge's authenticated trading link to execution
    opened or closed (docs/qmt-bridge.md). `why` says how a link closed: `closed` (the bridge went away or the link
    broke) or `rebound` (its account binding changed). Ephemeral: published straight on the bus when it happens (a
    link is not stored state); one lost while RabbitMQ is down is covered by Prometheus's
    LianghuaBrokerBridgeDisconnected. For people: the notify service turns a disconnect into an alert."""

    bridge_id: str
    account_id: str
    why: str | None = None
    at: datetime


class BarsUpdated(EventPayload):
    trade_date: date | None
    start_date: date
    end_date: date
    symbols: int
    rows: int
    # False: the ingest run that wrote these bars failed or was interrupted. Bars in the range changed, but its last
    # batch may be partly stored and the run's later days (its indices, its quality checks) are not; re-running it
    # completes them and announces them again, complete.
    # Added in version 1 with a default, so events without it (every run succeeded) read as complete.
    complete: bool = True
    # The optional data endpoints the run did without (its provider token may not use them, e.g. ["stk_limit"]): the
    # tables they fill did not change. Added with a default, so older events read as "none skipped".
    skipped_endpoints: list[str] = []


class BacktestFinished(EventPayload):
    backtest_id: str
    owner: str | None = None  # the username that submitted it: the gateway pushes the event to that user only
    status: str
    total_return: PlainDecimal | None = None
    error: str | None = None


class BacktestProgress(EventPayload):
    """Ephemeral: published straight on the bus while a backtest runs (not through an outbox), at most about once a
    second; a lost one is superseded by the next or by `backtest.finished`."""

    backtest_id: str
    owner: str | None = None  # as BacktestFinished: the gateway pushes the event to that user only
    percent: float  # 0-100, of the trading days simulated
    eta_s: float | None = None  # seconds left, estimated from the pace so far
    days_done: int
    days: int


class StrategyInstanceChanged(EventPayload):
    """A strategy instance changed state (or was created, reloaded, deleted): the event type names what happened,
    `state` is the state it is in afterwards (for `deleted`, the state it had). Published by the strategy service
    through its outbox, with the change; the gateway pushes it to the instance's owner (and its account's user)."""

    instance_id: str
    strategy: str
    owner: str  # the username that created the instance
    account_id: str
    mode: str  # paper | live
    state: str  # created | running | paused | stopped | failed
    error: str | None = None  # a failed instance's error (its last line; the instance keeps the whole traceback)
    at: datetime


class StrategyInstanceBar(EventPayload):
    """A running instance processed a bar: how many orders it sent for it and its equity after it."""

    instance_id: str
    owner: str
    bar_date: date
    orders_sent: int
    equity: PlainDecimal  # CNY
    at: datetime


class StrategyCodeRejected(EventPayload):
    """Hot reload refused a changed strategy file (`strategy.code.rejected`, an alert): it does not import, a strategy
    in it is malformed, or it imports but an instance's parameters no longer validate against its `Params` (or its
    `on_init` raised) — that instance (`instance_id`, `owner`) keeps running the code it had. `strategy` is the
    strategy's name, or None when the file did not import (no class was read from it)."""

    strategy: str | None = None
    file: str
    error: str  # what went wrong, e.g. the exception's last line with the line number of a syntax error
    instance_id: str | None = None  # None: the file itself was refused (every instance keeps its code)
    owner: str | None = None  # the instance's owner (the gateway pushes the alert to them; admins see all)
    at: datetime


# The lifecycle events of a strategy instance, all with a StrategyInstanceChanged payload.
STRATEGY_INSTANCE_EVENTS = (
    "strategy.instance.created",
    "strategy.instance.started",
    "strategy.instance.paused",
    "strategy.instance.resumed",
    "strategy.instance.stopped",
    "strategy.instance.failed",
    "strategy.instance.reloaded",
    "strategy.instance.deleted",
)


class TradingStateChanged(EventPayload):
    """A scope's trading state changed (risk's kill switch, docs/risk-rules.md "Trading states and the kill switch"):
    `scope` global (key ""), account (key: the account_id) or instance (key: the strategy instance id); `from_state`
    and `to_state` active | reducing | halted; who set it (`by`), why and when; `account_id`: the account of an
    instance scope (the one its orders were decided for; None if it has placed none), the key of an account scope.
    Written to risk's outbox with the state and its audit row, in one transaction."""

    scope: str
    key: str
    from_state: str
    to_state: str
    reason: str
    by: str
    at: datetime
    account_id: str | None = None


class StopTriggered(EventPayload):
    """A stop's price was crossed and its exit was answered (risk's stops, docs/risk-stops.md): `status` triggered
    (the exit, a market sell of `qty` with `client_order_id` stop-<stop_id>, was placed: `order_id`) or failed (it was
    refused: `code` and `message` say why, e.g. trading_halted). Written to risk's outbox with the stop's outcome."""

    stop_id: str
    account_id: str
    owner: str
    ts_code: str
    kind: str  # stop_loss | take_profit | trailing
    price: PlainDecimal  # the price that triggered it
    stop_level: PlainDecimal  # the level it was crossed at (a trailing stop's: from its high-water mark)
    high_water: PlainDecimal | None = None  # a trailing stop's
    qty: int  # shares the exit sells (0: nothing could be sold)
    client_order_id: str
    status: str  # triggered | failed
    order_id: str | None = None
    code: str | None = None
    message: str
    at: datetime


class ConditionalReason(EventPayload):
    code: str
    message: str


class ConditionalOrderChanged(EventPayload):
    """`conditional.<status>`: a conditional order held by execution (docs/conditional-orders.md) was created
    (`waiting` or `armed`) or moved: `triggered` (its trigger was seen: `trigger_seen` at `trigger_time`; `missed`:
    while execution was down), `placed` (risk approved its child, `client_order_id` cond-<conditional_id>, and
    execution holds it: `order_id`), `refused` (risk or execution refused the child: `reasons`), `expired` (missed,
    with on_missed expire) or `cancelled`. Written to execution's outbox with the move, in one transaction."""

    conditional_id: str
    account_id: str
    owner: str
    ts_code: str
    side: str
    qty: int
    kind: str  # stop | stop_limit | market | limit
    status: str
    oco_group: str | None = None
    after_order_id: str | None = None
    trigger_seen: PlainDecimal | None = None
    trigger_time: datetime | None = None
    missed: bool | None = None
    client_order_id: str | None = None
    order_id: str | None = None
    decision_id: str | None = None
    reasons: tuple[ConditionalReason, ...] = ()
    message: str | None = None
    at: datetime


class RuleSetChanged(EventPayload):
    """A level's risk rule set changed (docs/risk-rules.md "Managing rule sets"): `scope` global (key ""), account
    (key: the account_id) or instance (key: the strategy instance id); its new `version` (1, 2, ... per scope and key);
    `body` the level's settings (a RuleSet as JSON; None: the level was cleared); who (`by`), why and when. Written to
    risk's outbox with the version, in one transaction; every risk process reloads its rule book when it hears one."""

    scope: str
    key: str
    version: int
    body: dict[str, Any] | None
    reason: str
    by: str
    at: datetime


class QuoteLevel(EventPayload):
    """One level of a quote's order book: its price (CNY) and the shares resting there. An empty level (no order at
    it) is not listed."""

    price: PlainDecimal
    volume: int  # shares


class LiveQuote(EventPayload):
    """A security's latest real-time quote (the data service's real-time provider, docs/quotes.md): what the feed
    (the QMT bridge's xtdata snapshots, or the replay feed) last said of it, in exact units. `volume` and `amount`
    are the day's cumulative totals so far; the limits are those of the quote's trading day."""

    ts_code: str
    time: datetime  # the snapshot's exchange time, +08:00
    last: PlainDecimal
    open: PlainDecimal | None  # None: no trade yet today
    high: PlainDecimal | None
    low: PlainDecimal | None
    pre_close: PlainDecimal
    volume: int  # shares traded today so far (xtdata's lots x 100 for stocks)
    amount: PlainDecimal  # CNY traded today so far
    bid: tuple[QuoteLevel, ...]  # best first, at most five
    ask: tuple[QuoteLevel, ...]
    limit_up: PlainDecimal | None  # None: no limits that day (a new listing's first sessions)
    limit_down: PlainDecimal | None
    source: str  # bridge | replay


class QuotesSnapshot(EventPayload):
    """`quotes.snapshot`: one round of a real-time feed (a full-market snapshot of xtdata, about every 3 s, or a
    replay step), the quotes that passed validation in it. Ephemeral: published straight on the bus (not through an
    outbox); a lost one is superseded by the next round."""

    as_of: datetime  # the newest quote time in the round
    source: str  # bridge | replay
    quotes: tuple[LiveQuote, ...]


class MinuteBar(EventPayload):
    """A closed 1-minute bar built from successive snapshots: OHLC of the last prices seen in the minute, volume and
    amount the differences of the day's cumulative totals since the bar before. `minute` is the minute's start
    (09:30 is the bar of 09:30:00-09:30:59, the opening auction folded in; 14:59 takes the closing auction)."""

    ts_code: str
    minute: datetime  # +08:00
    open: PlainDecimal
    high: PlainDecimal
    low: PlainDecimal
    close: PlainDecimal
    volume: int  # shares
    amount: PlainDecimal  # CNY


class BarsMinute(EventPayload):
    """`bars.1m`: the minute bars that closed together (a later minute's snapshot arrived, or the minute's timer ran
    out). Ephemeral, like `quotes.snapshot`."""

    bars: tuple[MinuteBar, ...]
    closed_at: datetime


CONDITIONAL_EVENTS = tuple(
    f"conditional.{status}" for status in ("waiting", "armed", "triggered", "placed", "refused", "expired", "cancelled")
)

EVENT_SCHEMAS: dict[str, type[EventPayload]] = {
    "order.accepted": OrderUpdated,
    "order.submitted": OrderUpdated,
    "order.partially_filled": OrderUpdated,
    "order.filled": OrderUpdated,
    "order.rejected": OrderUpdated,
    "order.cancelled": OrderUpdated,
    "order.unknown": OrderUpdated,
    "risk.order.denied": OrderDenied,
    "risk.trading_state.changed": TradingStateChanged,
    "risk.alert": RiskAlert,
    "risk.stop.triggered": StopTriggered,
    "risk.rules.changed": RuleSetChanged,
    "trade.executed": TradeExecuted,
    "position.adjusted": PositionAdjusted,
    "cash.moved": CashMoved,
    "broker.reconciliation.difference": BrokerReconciliationDifference,
    "broker.bridge.connected": BrokerBridgeLink,
    "broker.bridge.disconnected": BrokerBridgeLink,
    "bars.updated": BarsUpdated,
    "backtest.finished": BacktestFinished,
    "backtest.progress": BacktestProgress,
    **dict.fromkeys(STRATEGY_INSTANCE_EVENTS, StrategyInstanceChanged),
    "strategy.instance.bar": StrategyInstanceBar,
    "strategy.code.rejected": StrategyCodeRejected,
    "quotes.snapshot": QuotesSnapshot,
    "bars.1m": BarsMinute,
    **dict.fromkeys(CONDITIONAL_EVENTS, ConditionalOrderChanged),
}
