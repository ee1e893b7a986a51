"""Execution's REST bodies. Prices travel as decimal strings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from services.execution.store import AdjustmentRecord, StoredOrder, TradeRecord
from shared.core.domain import InvalidTsCode, OrderSide, OrderStatus, OrderType, parse_ts_code
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
        error = price_shape_error(self.order_type, self.price)
        if error:
            raise ValueError(error)
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
        )


class OrderOut(BaseModel):
    order_id: str
    client_order_id: str
    account_id: str
    ts_code: str
    side: OrderSide
    order_type: OrderType
    qty: int
    price: Decimal | None
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

    @classmethod
    def of(cls, stored: StoredOrder, *, cancel_requested: bool = False) -> OrderOut:
        return cls.model_validate(
            {**stored.order.model_dump(), "paper_fill": stored.paper_fill, "cancel_requested": cancel_requested}
        )


class PositionOut(BaseModel):
    """A position: shares held, and how many may be sold now (T+1, less what open sell orders reserve)."""

    ts_code: str
    qty: int
    sellable_qty: int


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
    price cap, plus fees), and what is available for new buys and withdrawals."""

    account_id: str
    currency: str = "CNY"
    balance: str
    reserved: str
    available: str


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
    kind: Literal["position", "cash"]
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
