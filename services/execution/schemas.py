"""Execution's REST bodies. Prices travel as decimal strings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from services.execution.store import AdjustmentRecord, StoredOrder, TradeRecord
from services.execution.tca import OrderTca
from services.execution.valuation import PositionValue
from shared.core.domain import InvalidTsCode, OrderSide, OrderStatus, OrderType, from_fen, parse_ts_code
from shared.core.market import tca
from shared.core.market.order_types import MarketType, TimeInForce, order_type_error
from shared.core.market.orders import price_shape_error
from shared.core.market.rules import on_tick
from shared.platform.approval import OrderTerms, PaperFill
from shared.platform.request_model import (
    AccountId,
    ClientOrderId,
    IdempotencyKey,
    JsonDecimal,
    RequestModel,
    StrategyInstanceId,
    StrictBool,
    StrictInt,
    TradeDate,
)

# Approvals join fields with a control character (shared/platform/approval.py): none may occur inside a field, which the
# printable-ASCII patterns of ClientOrderId, AccountId and IdempotencyKey guarantee.


class OrderSubmission(RequestModel):
    """Risk-approved order terms. `approval` is kept loose here so that a malformed one is refused (403, recorded)
    like a forged one, instead of vanishing as a 422."""

    client_order_id: ClientOrderId
    account_id: AccountId
    ts_code: str = Field(max_length=16)
    side: OrderSide
    order_type: OrderType
    qty: StrictInt = Field(gt=0, le=10**12)
    price: JsonDecimal | None = Field(default=None, gt=0, max_digits=16, allow_inf_nan=False)
    # Only in orders risk forwards for a strategy instance (covered by the approval); a person's order has none.
    strategy_instance_id: StrategyInstanceId | None = None
    # Only with strategy_instance_id (covered by the approval): the instance's own fill rules for the paper broker.
    paper_fill: PaperFill | None = None
    # A market order's type (risk checked it against the exchange; covered by the approval); None: a limit order, or
    # a market order placed as counterparty_best. Time in force: "day" only (order_types.time_in_force_error).
    market_type: MarketType | None = None
    time_in_force: TimeInForce = "day"
    approval: dict[str, Any] | None = None

    @field_validator("ts_code")
    @classmethod
    def _stock_code(cls, value: str) -> str:
        try:
            canonical = parse_ts_code(value).ts_code
        except InvalidTsCode as exc:
            raise ValueError(str(exc)) from exc
        if canonical != value:
            raise ValueError(f"write the code as {canonical}")  # the approval signs the exact text
        return value

    @model_validator(mode="after")
    def _price_matches_type(self) -> OrderSubmission:
        error = price_shape_error(self.order_type, self.price, self.ts_code)
        if error:
            raise ValueError(error)
        typed = order_type_error(self.ts_code, self.order_type, self.price, self.market_type, self.time_in_force)
        if typed is not None:
            raise ValueError(typed.message)
        if self.price is not None and not on_tick(self.price):
            raise ValueError(f"price {self.price} is not on the 0.01 tick")
        return self

    def terms(self) -> OrderTerms:
        return OrderTerms(
            client_order_id=self.client_order_id,
            account_id=self.account_id,
            ts_code=self.ts_code,
            side=self.side.value,
            order_type=self.order_type.value,
            qty=self.qty,
            price=self.price,
            strategy_instance_id=self.strategy_instance_id,
            paper_fill=self.paper_fill,
            market_type=self.market_type,
            time_in_force=self.time_in_force,
        )


class OrderOut(BaseModel):
    order_id: str
    client_order_id: str
    account_id: str
    ts_code: str
    side: OrderSide
    order_type: OrderType
    qty: int
    price: Decimal | None = Field(
        description="the limit price; on a STAR market order its protection price; null for other market orders"
    )
    market_type: str | None = Field(
        default=None,
        description="a market order's type (docs/order-path.md 'Market order types and time in force'); null: a "
        "limit order",
    )
    time_in_force: str = Field(default="day", description="day: the only time in force the exchanges take")
    status: OrderStatus
    filled_qty: int
    avg_fill_price: Decimal | None
    reason: str | None
    strategy_instance_id: str | None = Field(description="the strategy instance that placed it; null: a person's")
    paper_fill: PaperFill | None = Field(
        default=None,
        description="a strategy instance's own fill rules, which the paper broker matched it with; null: the "
        "platform's (LH_PAPER_FILL_PRICE, ...)",
    )
    created_at: datetime
    updated_at: datetime
    cancel_requested: bool = Field(
        default=False,
        description="a cancel was asked of a broker that cancels asynchronously (QMT) and its outcome is not in yet",
    )
    replaced_by: str | None = Field(
        default=None, description="an amended order: the order that replaced it (docs/order-path.md, amending)"
    )
    replaces_order_id: str | None = Field(default=None, description="a replacement: the amended order it replaces")

    @classmethod
    def of(
        cls,
        stored: StoredOrder,
        *,
        cancel_requested: bool = False,
        replaced_by: str | None = None,
        replaces_order_id: str | None = None,
    ) -> OrderOut:
        return cls.model_validate(
            {
                **stored.order.model_dump(),
                "paper_fill": stored.paper_fill,
                "cancel_requested": cancel_requested,
                "replaced_by": replaced_by,
                "replaces_order_id": replaces_order_id,
            }
        )


class CancelAllIn(RequestModel):
    """`POST /v1/orders/cancel-all`: cancel every open order of an account matching the filters given (none: all of
    them), and its armed and waiting conditional orders matching (`include_conditional`)."""

    account_id: AccountId | None = Field(
        default=None, description="another account's (admins; a service names one): a trader cancels only their own"
    )
    strategy_instance_id: StrategyInstanceId | None = Field(
        default=None, description="only this strategy instance's orders (conditional orders belong to no instance)"
    )
    ts_code: str | None = Field(default=None, min_length=1, max_length=32, description="only this code's orders")
    include_conditional: StrictBool = Field(
        default=True, description="also cancel the account's waiting and armed conditional orders that match"
    )

    @field_validator("ts_code")
    @classmethod
    def _a_share(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return parse_ts_code(value).ts_code
        except InvalidTsCode as exc:
            raise ValueError(f"{value!r} is not an A-share code like 600000.SH: {exc}") from exc


class CancelFailureOut(BaseModel):
    order_id: str | None = Field(default=None, description="an order whose cancel failed")
    conditional_id: str | None = Field(default=None, description="a conditional order whose cancel failed")
    code: str = Field(description="what the single cancel answered, e.g. order_not_cancellable, broker_unavailable")
    message: str


class CancelAllOut(BaseModel):
    """What cancel-all found and did: `requested` open orders and conditional orders matched; each is in
    `cancelled` (orders), `cancel_requested` (QMT: asked of the broker, still open until it reports),
    `conditional_cancelled` or `failed`."""

    account_id: str
    requested: int
    cancelled: list[str]
    cancel_requested: list[str]
    conditional_cancelled: list[str]
    failed: list[CancelFailureOut]


class PositionOut(BaseModel):
    """A position: shares held, and how many may be sold now (T+1, less what open sell orders reserve); its cost, its
    value at the latest price and its P&L (docs/order-path.md, "Positions and the account"). Money in CNY; a value
    that needs a price is null when no price could be had (`price_source` null)."""

    ts_code: str
    qty: int
    sellable_qty: int
    frozen_qty: int = Field(description="shares open sell orders have reserved (promised to the broker)")
    today_buy_qty: int = Field(description="shares bought today (not sellable before the next session: T+1)")
    today_sell_qty: int = Field(description="shares sold today")
    cost_basis: Decimal = Field(description="the held shares' average cost, fees in: what they cost in all")
    avg_cost: Decimal | None = Field(description="cost_basis / qty, a share, 4 places half-up")
    last_price: Decimal | None = Field(description="the price the position is valued at")
    price_source: Literal["live", "last_close"] | None = Field(
        description="`live`: the data service's latest real-time quote; `last_close`: the last close in its store "
        "(no live quote, or an older one); null: neither could be had"
    )
    price_as_of: datetime | None = Field(description="the quote's time (a last close: 15:00 of its day)")
    market_value: Decimal | None = Field(description="qty x last_price, to the fen half-up")
    unrealised_pnl: Decimal | None = Field(description="market_value - cost_basis")
    realised_pnl: Decimal = Field(description="what the sells realised (less their fees and the cost they took out)")
    pnl_today: Decimal | None = Field(
        description="market_value - the shares held at the session's start x the reference price (the live quote's "
        "pre_close; else last_price) + the cash of today's trades"
    )

    @classmethod
    def of(cls, p: PositionValue) -> PositionOut:
        price = p.price
        return cls(
            ts_code=p.ts_code, qty=p.qty, sellable_qty=p.sellable_qty, frozen_qty=p.frozen_qty,
            today_buy_qty=p.today_buy_qty, today_sell_qty=p.today_sell_qty, cost_basis=from_fen(p.cost_fen),
            avg_cost=p.avg_cost, last_price=None if price is None else price.price,
            price_source=None if price is None else price.source,  # type: ignore[arg-type]
            price_as_of=None if price is None else price.as_of, market_value=_cny(p.market_value_fen),
            unrealised_pnl=_cny(p.unrealised_fen), realised_pnl=from_fen(p.realised_fen),
            pnl_today=_cny(p.pnl_today_fen),
        )  # fmt: skip


def _cny(fen: int | None) -> Decimal | None:
    return None if fen is None else from_fen(fen)


class AdjustmentOut(BaseModel):
    """A corporate action applied to one holder's position on its ex-date (docs/order-path.md, "Corporate actions"):
    the account's own part (`strategy_instance_id` null) or a strategy instance's, floored apart. Prices and cash in
    CNY."""

    account_id: str
    strategy_instance_id: str | None
    ts_code: str
    ex_date: date
    qty_before: int
    qty_after: int
    adj_factor: Decimal = Field(description="the ex-date's adj_factor")
    previous_adj_factor: Decimal = Field(description="the symbol's previous bar's adj_factor")
    pre_close: Decimal = Field(description="the ex-date's reference price the fraction of a share was paid at")
    cash_in_lieu: Decimal = Field(description="credited to the account's cash")
    created_at: datetime

    @classmethod
    def of(cls, a: AdjustmentRecord) -> AdjustmentOut:
        return cls(
            account_id=a.account_id, strategy_instance_id=a.strategy_instance_id, ts_code=a.ts_code,
            ex_date=a.ex_date, qty_before=a.qty_before, qty_after=a.qty_after, adj_factor=a.adj_factor,
            previous_adj_factor=a.previous_adj_factor, pre_close=a.pre_close, cash_in_lieu=a.cash_in_lieu,
            created_at=a.created_at,
        )  # fmt: skip


class TradeOut(BaseModel):
    trade_id: str
    order_id: str
    client_order_id: str
    account_id: str
    ts_code: str
    side: OrderSide
    qty: int
    price: Decimal
    amount: Decimal
    commission: Decimal
    stamp_duty: Decimal
    transfer_fee: Decimal
    fees: Decimal
    traded_at: datetime
    strategy_instance_id: str | None = Field(description="its order's strategy instance; null: a person's trade")

    @classmethod
    def of(cls, trade: TradeRecord) -> TradeOut:
        return cls(
            trade_id=trade.trade_id,
            order_id=trade.order_id,
            client_order_id=trade.client_order_id,
            account_id=trade.account_id,
            ts_code=trade.ts_code,
            side=OrderSide(trade.side),
            qty=trade.qty,
            price=trade.price,
            amount=trade.amount,
            commission=trade.commission,
            stamp_duty=trade.stamp_duty,
            transfer_fee=trade.transfer_fee,
            fees=trade.fees,
            traded_at=trade.traded_at,
            strategy_instance_id=trade.strategy_instance_id,
        )


class AccountOut(BaseModel):
    """An account's cash in CNY (decimal strings): the ledger's balance, what open buys reserve (unfilled qty x
    price cap, plus fees), and what is available for new buys and withdrawals; and its summary: the market value of
    its positions (each at its latest price, as `GET /v1/positions` values them), total assets and P&L. The
    figures that need prices are null when a position has none (`unpriced` names the codes)."""

    account_id: str
    currency: str = "CNY"
    balance: str
    reserved: str
    available: str
    market_value: str | None = Field(default=None, description="the positions' value at their latest prices")
    total_assets: str | None = Field(default=None, description="balance + market_value")
    realised_pnl: str | None = Field(default=None, description="over every code, closed positions included")
    unrealised_pnl: str | None = Field(default=None, description="market_value - the positions' cost basis")
    pnl_total: str | None = Field(default=None, description="realised_pnl + unrealised_pnl")
    pnl_today: str | None = Field(default=None, description="the sum of the positions' pnl_today (sold-out codes too)")
    unpriced: list[str] = Field(default_factory=list, description="codes held that no price could be had for")


class FeesOut(BaseModel):
    """An order's fees in CNY (decimal strings), each part rounded half-up to the fen (`rules.trade_fees`)."""

    commission: str
    transfer_fee: str
    stamp_duty: str
    total: str


class EstimateOut(BaseModel):
    """What an order placed now would come to, in CNY (decimal strings): the ticket's figures, from the same fee
    rule that prices the trades. `amount` and `fees` are null without a quantity, or for a sell without a price."""

    account_id: str
    ts_code: str
    side: OrderSide
    trade_date: date = Field(description="the session an order placed now is for: the fees are that day's")
    price: str | None = Field(description="the price reckoned at (null: a sell without a price)")
    price_basis: Literal["price", "limit_up"] | None = Field(
        description="`price`: the price given; `limit_up`: a buy without one (a market buy), at the limit-up "
        "price its cash would be reserved at"
    )
    qty: int | None
    amount: str | None = Field(description="price x qty")
    fees: FeesOut | None
    max_qty: int = Field(
        description="a buy: the most shares the available cash pays for at `price`, fees included, on the code's "
        "lot and within the exchange's largest order (0: not even the smallest lot); a sell: the sellable shares"
    )
    available: str = Field(description="the account's cash available for buys")


class SnapshotOrderOut(BaseModel):
    """An order in risk's snapshot: every open order, and every order that became final within the window."""

    client_order_id: str
    ts_code: str
    side: OrderSide
    qty: int
    cap_fen: int = Field(description="a buy's price cap in fen (its cash is reserved at it); 0 for a sell")
    status: OrderStatus
    filled_qty: int
    traded_qty: int = Field(description="the sum of its trades' qty (counted in the snapshot's balance and lots)")


class SnapshotLotsOut(BaseModel):
    """One security's shares: `bought_by_session` the window's buys by the session they count in for T+1 (sellable
    from the next one), `base` every other share (older buys + corporate adjustments - sells), sellable at once."""

    ts_code: str
    base: int
    bought_by_session: dict[date, int]


class RiskSnapshotOut(BaseModel):
    """An account as of `as_of`, read in one transaction, for risk's hot book (docs/risk-rules.md, "Hot state")."""

    account_id: str
    as_of: datetime
    since: datetime = Field(description="the window's start (as_of - 7 days): what was recorded since is listed")
    balance_fen: int = Field(description="the cash ledger's sum, in fen")
    orders: list[SnapshotOrderOut]
    lots: list[SnapshotLotsOut]
    trade_ids: list[str] = Field(description="the trades recorded or traded within the window")
    entry_keys: list[str] = Field(
        description="the keys of the corporate adjustments and the ledger entry ids of the deposits and withdrawals "
        "recorded within the window"
    )


class CashMovementIn(RequestModel):
    """A deposit or withdrawal (admins and services). `idempotency_key` makes a retry safe."""

    account_id: AccountId
    kind: Literal["deposit", "withdrawal"]
    amount: JsonDecimal = Field(gt=0, max_digits=18, allow_inf_nan=False)
    idempotency_key: IdempotencyKey

    @field_validator("amount")
    @classmethod
    def _whole_fen(cls, value: Decimal) -> Decimal:
        if value != value.quantize(Decimal("0.01")):
            raise ValueError(f"amount {value} has fractions of a fen")
        return value


class LedgerEntryOut(BaseModel):
    entry_id: int
    account_id: str
    kind: str
    amount: str  # signed: + money in, - money out
    idempotency_key: str
    trade_id: str | None
    created_by: str
    created_at: datetime


class CashMovementOut(BaseModel):
    entry: LedgerEntryOut
    account: AccountOut


class PaperSessionIn(RequestModel):
    """The trading day a replay clock moves to (`POST /v1/paper/session`)."""

    session: TradeDate
    rewind: StrictBool = Field(
        default=False,
        description="a new replay starts: the clock may go back to an earlier day (the earlier replay's orders and "
        "fills stay as they were; replay on an account of its own)",
    )


class PaperSettingsIn(RequestModel):
    """A paper account's settings (admins and services): how it treats an order placed while the market is closed
    (outside 09:15-15:00 of a trading day), on the real market clock: `rest` until the next session (the default) or
    `refuse` it (the order is rejected with `market_closed`)."""

    account_id: AccountId
    closed_market: Literal["rest", "refuse"]


class PaperSettingsOut(BaseModel):
    account_id: str
    closed_market: Literal["rest", "refuse"]


class PaperSessionOut(BaseModel):
    session: date  # the replayed session now
    now: datetime  # the market clock's time (the session's 09:30 Asia/Shanghai and on), UTC


BRIDGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class AccountBrokerIn(RequestModel):
    """Which broker an account trades through (admins): `paper`, or `qmt` through the QMT bridge `bridge_id` (one of
    LH_QMT_BRIDGE_SECRETS; a bridge serves one account). Refused (409 `account_has_open_orders`) while the account has
    orders not final."""

    broker: Literal["paper", "qmt"]
    bridge_id: Annotated[str, Field(pattern=BRIDGE_ID_PATTERN)] | None = None


class AccountBrokerOut(BaseModel):
    account_id: str
    broker: Literal["paper", "qmt"]
    bridge_id: str | None
    updated_by: str | None = Field(description="who set it (null: never set, the default paper broker)")
    updated_at: datetime | None
    bridge_connected: bool | None = Field(
        default=None,
        description="a qmt account: its bridge is connected for this account and its link to MiniQMT not reported "
        "down (null: a paper account)",
    )
    trading_enabled: bool | None = Field(
        default=None, description="a qmt account: its bridge's trading switch is on and not read-only (null: paper)"
    )
    orders_refused: Literal["broker_unavailable", "trading_disabled"] | None = Field(
        default=None,
        description="what a new order of the account gets now: `broker_unavailable` (503, nothing stored: the bridge "
        "is away), `trading_disabled` (rejected at the bridge: its trading switch is off), null: nothing known "
        "against it",
    )


class TradingSwitchIn(RequestModel):
    """A QMT bridge's trading switches (admins): `enabled` false refuses every order at the bridge; `read_only`
    serves queries only. Audited with `reason`."""

    enabled: StrictBool
    read_only: StrictBool
    reason: Annotated[str, Field(min_length=1, max_length=255)]


class TradingSwitchOut(BaseModel):
    bridge_id: str
    enabled: bool
    read_only: bool
    updated_by: str | None
    updated_at: datetime | None
    sent: bool = Field(description="the bridge is connected and took the switches now (else: at its next hello)")


class DifferenceOut(BaseModel):
    kind: Literal["position", "cash", "order"] = Field(
        description="position, cash, or order: a broker report (a fill, a final state) for an order already final "
        "with another outcome (`ts_code`; `platform`: the order id and its status here; `broker`: what the broker said)"
    )
    ts_code: str | None
    platform: str = Field(description="execution's shares (positions) or cash balance in CNY")
    broker: str = Field(description="the broker's")


class ReconciliationOut(BaseModel):
    reconciliation_id: int | None = Field(description="null: the last run, not stored (nothing changed)")
    bridge_id: str
    account_id: str
    at: datetime
    orders_checked: int
    orders_updated: int
    differences: list[DifferenceOut]


class BridgeOut(BaseModel):
    bridge_id: str
    account_id: str | None = Field(description="the account an admin bound it to (null: none)")
    connected: bool
    connected_at: datetime | None
    last_seen: datetime | None = Field(description="when it last connected or disconnected")
    qmt: str | None = Field(description="the bridge's link to MiniQMT: connected | disconnected (null: not said)")
    account_status: int | None = Field(description="MiniQMT's account status code (0 ok, 6 closed, ...)")
    trading: TradingSwitchOut
    last_reconciliation: ReconciliationOut | None


class OrderTcaOut(BaseModel):
    """One order's cost analysis (docs/tca.md). Prices and amounts in CNY; VWAPs to 4 places and bps to 2, half-up;
    slippage is a cost: positive when the fills were worse than the benchmark (a buy paid more, a sell got less)."""

    order_id: str
    client_order_id: str
    account_id: str
    strategy_instance_id: str | None
    ts_code: str
    side: OrderSide
    order_type: str
    qty: int
    status: str
    created_at: datetime
    day: date = Field(description="the exchange date of its creation: the day it counts in")
    arrival_price: Decimal | None
    arrival_source: Literal["live", "last_close"] | None = Field(
        description="`live`: the latest real-time quote execution held at creation; `last_close`: the last close "
        "(no live quote of the day); null: none recorded"
    )
    arrival_at: datetime | None = Field(description="the arrival quote's time (a last close: 15:00 of its day)")
    filled_qty: int
    filled_amount: Decimal
    fill_vwap: Decimal | None
    fees: Decimal
    fees_bps: Decimal | None = Field(description="fees / filled_amount x 10,000")
    slippage_vs_arrival: Decimal | None = Field(description="CNY, to the fen: (fill VWAP - arrival) x qty, signed")
    slippage_vs_arrival_bps: Decimal | None
    interval_start: datetime | None
    interval_end: datetime | None = Field(description="its last fill")
    interval_vwap: Decimal | None = Field(description="the market's VWAP over the interval's 1-minute bars")
    slippage_vs_interval: Decimal | None
    slippage_vs_interval_bps: Decimal | None
    interval_note: str | None = Field(description="why there is no interval VWAP (null: there is one)")

    @classmethod
    def of(cls, t: OrderTca) -> OrderTcaOut:
        r, c = t.row, t.cost
        arrival, interval = c.arrival, c.interval
        vwap = c.fill_vwap_fen
        return cls(
            order_id=r.order_id, client_order_id=r.client_order_id, account_id=r.account_id,
            strategy_instance_id=r.strategy_instance_id, ts_code=r.ts_code, side=r.side, order_type=r.order_type,
            qty=r.qty, status=r.status, created_at=r.created_at, day=t.day, arrival_price=r.arrival_price,
            arrival_source=r.arrival_source,  # type: ignore[arg-type]
            arrival_at=r.arrival_at, filled_qty=r.filled_qty, filled_amount=r.filled_amount,
            fill_vwap=None if vwap is None else tca.cny_of_fen(vwap), fees=r.fees, fees_bps=c.fees_bps,
            slippage_vs_arrival=None if arrival is None else tca.cny_of_fen(arrival[0], 2),
            slippage_vs_arrival_bps=c.arrival_bps,
            interval_start=None if t.interval is None else t.interval.start,
            interval_end=None if t.interval is None else t.interval.end,
            interval_vwap=None if c.interval_vwap_fen is None else tca.cny_of_fen(c.interval_vwap_fen),
            slippage_vs_interval=None if interval is None else tca.cny_of_fen(interval[0], 2),
            slippage_vs_interval_bps=c.interval_bps, interval_note=t.interval_note,
        )  # fmt: skip


class TcaGroupOut(BaseModel):
    """Orders' costs added up in fen and divided once: bps are notional-weighted over the orders that have the
    benchmark (`arrival_orders`, `interval_orders`), never a mean of rounded figures."""

    key: str | None = Field(description="the day (YYYY-MM-DD) or the strategy instance (null: people's orders)")
    orders: int
    filled_orders: int
    filled_amount: Decimal
    fees: Decimal
    fees_bps: Decimal | None
    arrival_orders: int
    slippage_vs_arrival: Decimal
    slippage_vs_arrival_bps: Decimal | None
    interval_orders: int
    slippage_vs_interval: Decimal
    slippage_vs_interval_bps: Decimal | None

    @classmethod
    def of(cls, key: str | None, g: tca.CostSummary) -> TcaGroupOut:
        return cls(
            key=key, orders=g.orders, filled_orders=g.filled_orders, filled_amount=from_fen(g.filled_amount_fen),
            fees=from_fen(g.fees_fen), fees_bps=g.fees_bps, arrival_orders=g.arrival_orders,
            slippage_vs_arrival=tca.cny_of_fen(g.arrival_cost_fen, 2), slippage_vs_arrival_bps=g.arrival_bps,
            interval_orders=g.interval_orders, slippage_vs_interval=tca.cny_of_fen(g.interval_cost_fen, 2),
            slippage_vs_interval_bps=g.interval_bps,
        )  # fmt: skip


class TcaSummaryOut(BaseModel):
    by: Literal["day", "instance"]
    start: date | None
    end: date | None
    truncated: bool = Field(description="more filled orders matched than one summary reads (5,000): narrow the days")
    groups: list[TcaGroupOut]
    total: TcaGroupOut


class OrderSubmissionBatch(RequestModel):
    """`POST /v1/order-submissions`: risk's approved orders of one batch (a strategy instance's round, a batch of
    `POST /v1/order-batches`), each submitted as by `POST /v1/orders` in the order given, in one request."""

    orders: list[OrderSubmission] = Field(min_length=1, max_length=1000)


class SubmissionItemOut(BaseModel):
    """One submission's answer, as `POST /v1/orders` would have given it: `status_code` 201 (created) or 200 (it
    existed: a repeated client_order_id) with `order`; otherwise `code`, `message` and `details` of the error. The
    submissions after one answered 5xx are not tried: 503 `not_sent`."""

    index: int
    status_code: int
    order: OrderOut | None = None
    code: str | None = None
    message: str | None = None
    details: dict[str, Any] | None = None


class SubmissionBatchOut(BaseModel):
    items: list[SubmissionItemOut]
