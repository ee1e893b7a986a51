"""Risk's REST bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from services.risk.rules import RuleSet
from shared.core.domain import OrderSide, OrderType
from shared.core.market.order_types import MarketType, TimeInForce
from shared.core.market.orders import price_shape_error
from shared.platform.approval import PaperFill
from shared.platform.request_model import (
    AccountId,
    ClientOrderId,
    JsonDecimal,
    RequestModel,
    StrategyInstanceId,
    StrictBool,
    StrictInt,
    TradeDate,
)


class CarriedPosition(RequestModel):
    """The instance's position in the order's security, as its sleeve holds it."""

    ts_code: str = Field(min_length=1, max_length=32, description="the order's ts_code")
    qty: StrictInt = Field(ge=0, le=10**12, description="shares the instance holds")
    sellable_qty: StrictInt = Field(
        ge=0,
        le=10**12,
        description="of those, the shares it may sell in `session` (T+1), less what its own resting sells already sell",
    )

    @model_validator(mode="after")
    def _sellable_within_held(self) -> CarriedPosition:
        if self.sellable_qty > self.qty:
            raise ValueError(f"sellable_qty {self.sellable_qty} is more than qty {self.qty}")
        return self


class CarriedSleeve(RequestModel):
    """A strategy instance's sleeve as the strategy service's runner computed it from its book the moment it sent the
    order (docs/order-path.md "Orders of a strategy instance"): what risk checks the order against for the instance
    (its state, its cash, its shares) besides the account. Only the strategy service sends one, with every order of
    an instance; anyone else's is refused (403 `sleeve_not_allowed`)."""

    instance_id: StrategyInstanceId = Field(description="the order's strategy_instance_id")
    account_id: AccountId = Field(description="the instance's account: the account the order is decided for")
    state: Literal["created", "running", "paused", "stopped", "failed"] = Field(
        description="the instance's state as the runner holds it: only a running instance's orders pass"
    )
    cash_available: JsonDecimal = Field(
        max_digits=20,
        decimal_places=2,
        allow_inf_nan=False,
        description="CNY: the sleeve's cash less what its open buys, and the buys sent before this one in its round, "
        "may still spend (this order's own not counted); may be negative",
    )
    position: CarriedPosition | None = Field(
        default=None, description="the instance's position in the order's security; null: it holds none"
    )
    session: TradeDate | None = Field(
        default=None, description="the trading session the runner sends the order for (its sellable shares' T+1)"
    )


class OrderRequest(RequestModel):
    """An order as a trader (or a strategy instance) asks for it; the account comes from the caller's identity (a
    strategy instance's: from its sleeve).

    Shape errors (an unknown field, `"qty": "100"`, a client_order_id with a space) are 422 invalid_request;
    trading-rule violations (lots, tick, limits, ...) are risk's reasons."""

    client_order_id: ClientOrderId
    ts_code: str = Field(min_length=1, max_length=32)
    side: OrderSide
    order_type: OrderType
    qty: StrictInt = Field(gt=0, le=10**12)
    # Up to 8 decimals so that an off-tick price gets the `price_tick` reason rather than a shape error.
    price: JsonDecimal | None = Field(
        default=None, gt=0, max_digits=20, decimal_places=8, allow_inf_nan=False,
        description="a limit order's price; a STAR market order's protection price (required there: 422 "
        "protection_price_required); no other market order takes one",
    )  # fmt: skip
    market_type: MarketType | None = Field(
        default=None,
        description="a market order's type on its exchange (default counterparty_best): SH best5_cancel, "
        "best5_limit, counterparty_best, own_best; SZ counterparty_best, own_best, ioc, best5_cancel, fok; BJ "
        "best5_cancel, best5_limit, counterparty_best, own_best. Another, or any on a limit order: 422 "
        "market_type_invalid (docs/order-path.md 'Market order types and time in force')",
    )
    time_in_force: TimeInForce = Field(
        default="day",
        description='"day", the only time in force A-share orders have; "ioc" / "fok": 422 '
        "time_in_force_unsupported (on SZ they are market types)",
    )
    strategy_instance_id: StrategyInstanceId | None = Field(
        default=None,
        description="the strategy instance the order is for: only the strategy service names one (a person's order "
        "naming one is 403 forbidden); its sleeve's account is the order's account",
    )
    paper_fill: PaperFill | None = Field(
        default=None,
        description="the strategy instance's own fill rules, which the paper broker matches this order with instead "
        "of the platform's: only with strategy_instance_id, from the strategy service (anyone else: 403 forbidden); "
        "signed into the approval. Fees stay the account's",
    )
    sleeve: CarriedSleeve | None = Field(
        default=None,
        description="the strategy instance's sleeve the order is checked against: required with "
        "strategy_instance_id (422 sleeve_required), from the strategy service only (anyone else: 403 "
        "sleeve_not_allowed)",
    )

    @model_validator(mode="after")
    def _price_matches_type(self) -> OrderRequest:
        error = price_shape_error(self.order_type, self.price, self.ts_code)
        if error:
            raise ValueError(error)
        return self


class ConditionalChild(RequestModel):
    """Execution asks risk to decide the child of a conditional order that triggered (docs/conditional-orders.md):
    the order as its owner would place it, decided as them (`owner`, `owner_role`, `account_id`, recorded when the
    conditional order was created), carrying the conditional order's id. Only execution (`svc:execution`) sends it."""

    conditional_order_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    account_id: str = Field(min_length=1, max_length=64)
    owner: str = Field(min_length=1, max_length=128)
    owner_role: str = Field(min_length=1, max_length=16)
    order: OrderRequest


FINAL_ORIGINAL = ("cancelled", "filled", "rejected", "expired")


class ReplacedOriginal(RequestModel):
    """The amended order as it ended (execution's record): risk's book counts it final before the replacement is
    decided, so the replacement is not checked against the original's reservation too. With `check_only` the
    original as it is now, still open (its unfilled shares count as the account's for a sell's check)."""

    client_order_id: ClientOrderId
    ts_code: str = Field(min_length=1, max_length=32)
    side: OrderSide
    qty: StrictInt = Field(gt=0)
    status: Literal[
        "cancelled", "filled", "rejected", "expired", "accepted", "submitted", "partially_filled", "unknown"
    ]  # fmt: skip
    filled_qty: StrictInt = Field(ge=0)


class ReplacementOrder(RequestModel):
    """Execution asks risk to decide the replacement of an amended order (docs/order-path.md "Amending an order"),
    once the original's cancel is confirmed: the order as its owner would place it, decided as them (`owner`,
    `owner_role`, `account_id`: who asked for the amend), carrying the original's id. Only execution sends it."""

    replaces_order_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    account_id: str = Field(min_length=1, max_length=64)
    owner: str = Field(min_length=1, max_length=128)
    owner_role: str = Field(min_length=1, max_length=16)
    original: ReplacedOriginal
    order: OrderRequest
    check_only: StrictBool = Field(
        default=False,
        description="check the new terms before the original is cancelled: the checks that need no reservation "
        "(tick, lots, value, price limits, the exchange's maximum and price cage, a sell's sellable shares counting "
        "the original's unfilled ones); nothing recorded, reserved or placed",
    )

    @model_validator(mode="after")
    def _original_final(self) -> ReplacementOrder:
        if not self.check_only and self.original.status not in FINAL_ORIGINAL:
            raise ValueError("original.status: a replacement is decided once the original is final")
        return self


class OrderBatchRequest(RequestModel):
    """`POST /v1/order-batches`: up to LH_BATCH_MAX_ORDERS orders (default 100; more is 422 `batch_too_large`,
    nothing placed), each decided by risk as a single order and placed in the order given. Idempotent by `batch_id`
    per account: the same batch again is answered the same (its items not yet placed are placed then); other orders
    under the same id are 409 `batch_id_reused` (docs/order-management.md)."""

    batch_id: ClientOrderId = Field(description="the client's id of the batch: the client_order_id alphabet, 1-64")
    orders: list[OrderRequest] = Field(min_length=1, description="the orders, placed one after the other")


class ReasonOut(BaseModel):
    code: str
    message: str


class DecisionSummary(BaseModel):
    decision_id: str
    approved: bool
    reasons: list[ReasonOut]


class PlacedOrder(BaseModel):
    """201 (or 200 for a repeated client_order_id): the decision and execution's order."""

    decision: DecisionSummary
    order: dict[str, object]


class BatchItemOut(BaseModel):
    """One order of a batch: `placed` (its order), `refused` (risk's reasons, or execution's refusal: the code and
    message; a final answer) or `failed` (a dependency could not answer: the code, e.g. execution_unavailable, and
    http_status; send the batch again)."""

    index: int = Field(description="its position in `orders`, from 0")
    client_order_id: str
    status: Literal["placed", "refused", "failed"]
    order: dict[str, object] | None = Field(default=None, description="placed: execution's order")
    decision_id: str | None = Field(default=None, description="risk's decision, when one was made")
    reasons: list[ReasonOut] | None = Field(default=None, description="refused by risk: its reasons")
    code: str | None = Field(default=None, description="refused or failed: the code the single order would have had")
    message: str | None = None
    http_status: int | None = Field(default=None, description="refused or failed: the single order's status")
    details: dict[str, object] | None = Field(default=None, description="execution's details of a refusal")


class OrderBatchOut(BaseModel):
    """200: every item's answer, in order, and the counts; `complete` false while some item failed (send the same
    batch again: only those are placed then)."""

    batch_id: str
    items: list[BatchItemOut]
    placed: int
    refused: int
    failed: int
    complete: bool


class OrderRefused(BaseModel):
    """422 order_rejected, 503 risk_unavailable / execution_unavailable, 409, 502: why, and the decision."""

    code: str
    message: str
    decision: DecisionSummary | None = Field(
        default=None, description="the decision; absent when none was made (invalid_request, risk_unavailable)"
    )


class DecisionOut(BaseModel):
    """One recorded decision, as `GET /v1/decisions` lists them (newest first)."""

    decision_id: str
    client_order_id: str
    account_id: str
    ts_code: str
    side: str
    order_type: str
    qty: int
    price: str | None = Field(
        description="a decimal string; a STAR market order's protection price; null for other market orders"
    )
    market_type: str | None = Field(default=None, description="a market order's type; null: a limit order")
    time_in_force: str = Field(default="day", description="day")
    approved: bool
    reasons: list[ReasonOut]
    created_at: str = Field(description="ISO 8601 with its UTC offset")
    correlation_id: str | None
    strategy_instance_id: str | None = Field(description="the strategy instance the order was for; null: a person's")
    paper_fill: PaperFill | None = Field(
        default=None, description="the instance's own fill rules the order carried; null: the platform's"
    )
    rule_check: dict[str, Any] | None = Field(
        default=None,
        description="the rule-set versions that decided it ({global, account, instance}) and every rule finding "
        "(rule, code, level deny|warn, message, the values it read), when the rules ran; for a strategy instance's "
        "order also `sleeve`, the sleeve it carried and was checked against; for a conditional order's child "
        "`parent_id`, the conditional order's id (docs/conditional-orders.md); for an amend's replacement "
        "`replaces_order_id`, the amended order's id (docs/order-path.md); null when none of these",
    )


class HaltRequest(RequestModel):
    """The kill switch (`POST /v1/risk/halt`, admins only): set a scope's trading state. `scope` global names no id,
    account names `account_id`, instance names `instance_id` (the other id is refused). `state` halted (nothing new
    passes), reducing (only sells within the position) or active (resume). Cancels always pass."""

    scope: Literal["global", "account", "instance"]
    account_id: AccountId | None = Field(default=None, validate_default=True, description="with scope account")
    instance_id: StrategyInstanceId | None = Field(
        default=None, validate_default=True, description="with scope instance"
    )
    state: Literal["halted", "reducing", "active"]
    reason: str = Field(min_length=1, max_length=500, description="why: required, recorded with the change")
    cancel_open_orders: StrictBool = Field(
        default=False, description="also cancel every open order in the scope through execution (repeatable)"
    )

    @field_validator("account_id", "instance_id")
    @classmethod
    def _id_matches_scope(cls, value: str | None, info: ValidationInfo) -> str | None:
        scope = info.data.get("scope")
        if scope is None:
            return value  # the scope's own error says what is wrong
        wanted = {"account": "account_id", "instance": "instance_id"}.get(scope)
        if info.field_name == wanted and value is None:
            raise ValueError(f"{wanted} is required with scope {scope}")
        if info.field_name != wanted and value is not None:
            raise ValueError(f"{info.field_name} does not go with scope {scope}")
        return value

    @field_validator("reason")
    @classmethod
    def _reason_said(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reason must say why (not only blanks)")
        return value.strip()

    @property
    def key(self) -> str:
        return self.account_id or self.instance_id or ""


class TradingStateOut(BaseModel):
    scope: str
    key: str = Field(description="the account_id or instance_id; empty for global")
    state: str
    reason: str
    set_by: str
    set_at: str = Field(description="ISO 8601 with its UTC offset")
    from_state: str | None = Field(default=None, description="in a history: the state before the change")


class LimitShare(BaseModel):
    rule: str = Field(description="the rule, e.g. order_limits")
    code: str = Field(description="the limit's finding code, e.g. max_order_value")
    pct: str = Field(description="used as a percentage of the limit, 2 decimals (over 100: the order was refused)")
    measured_at: str = Field(description="when the account's order it was measured on was checked (ISO 8601, UTC)")


class AccountUtilisation(BaseModel):
    account_id: str
    limits: list[LimitShare]


class Utilisation(BaseModel):
    window_s: int = Field(description="how long a measure counts after the order it was measured on")
    accounts: list[AccountUtilisation]


class CancelReport(BaseModel):
    cancelled: int
    failed: int
    failures: list[dict[str, str]] = Field(description="order_id, code and message of each cancel that failed")


class HaltAnswer(BaseModel):
    """The scope's state after the call; `changed` false when it had that state already (nothing recorded)."""

    scope: str
    key: str
    from_state: str
    state: str
    changed: bool
    cancels: CancelReport | None = Field(default=None, description="with cancel_open_orders")


class TradingStates(BaseModel):
    states: list[TradingStateOut] = Field(description="the scopes not active (no row: active)")
    history: list[TradingStateOut] | None = Field(default=None, description="with scope: its changes, newest first")


# --- rule sets (docs/risk-rules.md "Managing rule sets") --------------------------------------------------------------


def _reason_said(value: str) -> str:
    if not value.strip():
        raise ValueError("reason must say why (not only blanks)")
    return value.strip()


RULE_SET_KEY = Field(
    default="",
    max_length=64,
    description="global: empty (or left out); account: the account_id; instance: the strategy instance id (32 hex)",
)
RULE_SET_REASON = Field(min_length=1, max_length=500, description="why: required, recorded with the version")


class RuleSetChange(RequestModel):
    """`PUT /v1/risk/rules/{scope}` (admins only): the level's whole new rule set. Unknown rules and settings, a
    negative limit and a percentage over 100 are 422 `invalid_request` naming the field (e.g.
    `rules.position_limit.max_pct_of_equity`); nothing is stored."""

    key: str = RULE_SET_KEY
    rules: RuleSet = Field(description="the level's settings, rule by rule; a rule not named takes its defaults")
    reason: str = RULE_SET_REASON

    _reason = field_validator("reason")(_reason_said)


class RuleSetClear(RequestModel):
    """`DELETE /v1/risk/rules/{scope}` (admins only): clear the level (a new version with a null body)."""

    key: str = RULE_SET_KEY
    reason: str = RULE_SET_REASON

    _reason = field_validator("reason")(_reason_said)


class RuleSetOut(BaseModel):
    scope: str = Field(description="global | account | instance")
    key: str = Field(description="the account_id or instance_id; empty for global")
    version: int = Field(description="1, 2, ... per scope and key; the latest is the level's current rule set")
    body: dict[str, Any] | None = Field(description="the level's RuleSet as set; null: the level was cleared")
    reason: str
    set_by: str
    set_at: str = Field(description="ISO 8601 with its UTC offset")


class RuleSetAnswer(RuleSetOut):
    """The level's current version after the call; `changed` false when the body was the current one already
    (no version recorded, no event)."""

    changed: bool


class EffectiveRulesOut(BaseModel):
    account_id: str | None
    instance_id: str | None
    rules: dict[str, dict[str, Any]] = Field(description="every rule's settings as the strictest of the levels")
    versions: dict[str, int | None] = Field(
        description="the version of each level the settings came from (global, account, instance); null: none set"
    )


class RuleSets(BaseModel):
    rule_sets: list[RuleSetOut] = Field(description="the current version of every level the caller may see")
    effective: EffectiveRulesOut
