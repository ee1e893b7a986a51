"""Risk approvals that execution can verify: an HMAC-SHA256, with the secret risk and execution share, over
the decision id, its time and every order field that matters. No approval, no order (design invariant 2)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from shared.core.market.matching import FillRules
from shared.core.market.order_types import DEFAULT_MARKET_TYPE
from shared.platform.request_model import JsonDecimal, RequestModel


class PaperFill(RequestModel):
    """A strategy instance's own fill rules, which the paper broker matches its orders with instead of the
    platform's (LH_PAPER_*): the instance's cost model's fill fields, every one given (the strategy service fills in
    the engine's defaults, so the broker never guesses). Fees are not among them: the account's broker charges its
    own. Only an order of a strategy instance carries it (risk refuses it from anyone else)."""

    fill_price: Literal["open", "close", "vwap"] = Field(description="the price of the session's bar it fills at")
    slippage: Literal["none", "bps", "ticks"] = Field(description="slippage against the order, by slippage_amount")
    slippage_amount: JsonDecimal = Field(
        ge=0, max_digits=20, decimal_places=10, allow_inf_nan=False, description="basis points or ticks (0.01 CNY)"
    )
    volume_cap: JsonDecimal | None = Field(
        gt=0, le=1, max_digits=12, decimal_places=10, allow_inf_nan=False,
        description="the most of the bar's volume one order may take, in (0, 1]; null: no cap",
    )  # fmt: skip
    suspended_orders: Literal["wait", "cancel"] = Field(
        description="an order whose symbol has no bar on its session: waits for the next session it trades, or is "
        "cancelled"
    )

    @model_validator(mode="after")
    def _amount_matches_slippage(self) -> PaperFill:
        # BacktestConfig's own rules, so an instance's paper fills take exactly the values its backtest takes
        if self.slippage == "ticks" and self.slippage_amount != int(self.slippage_amount):
            raise ValueError("slippage_amount must be a whole number of ticks")
        if self.slippage == "none" and self.slippage_amount != 0:
            raise ValueError("slippage_amount is set but slippage is 'none'")
        return self

    def rules(self, base: FillRules) -> FillRules:
        """`base` (the platform's rules: which A-share rules apply) with this order's fill price, slippage, volume
        cap and suspended orders."""
        return replace(
            base,
            fill_price=self.fill_price,
            slippage=self.slippage,
            slippage_amount=self.slippage_amount,
            volume_cap=self.volume_cap,
            suspended_orders=self.suspended_orders,
        )

    def signed_text(self) -> str:
        """One canonical text of the rules (decimals normalised), as the approval signs them."""
        cap = "" if self.volume_cap is None else format(self.volume_cap.normalize(), "f")
        return ";".join(
            [
                f"fill_price={self.fill_price}",
                f"slippage={self.slippage}",
                f"slippage_amount={format(self.slippage_amount.normalize(), 'f')}",
                f"volume_cap={cap}",
                f"suspended_orders={self.suspended_orders}",
            ]
        )


class OrderTerms(BaseModel):
    """The fields an approval covers: change any of them and the signature no longer matches."""

    client_order_id: str
    account_id: str
    ts_code: str
    side: str
    order_type: str
    qty: int
    price: Decimal | None = None
    # The strategy instance the order is for (None: a person's order). Covered like the rest: an approval for a
    # person's order cannot be replayed as an instance's, nor one instance's as another's.
    strategy_instance_id: str | None = None
    # The instance's own fill rules for the paper broker (None: the platform's). Covered too: an approval cannot be
    # replayed with other fill rules.
    paper_fill: PaperFill | None = None
    # A market order's type (shared.core.market.order_types; None: a limit order) and the time in force: covered,
    # so an approval of a best-five-then-cancel order cannot place one that rests, nor the reverse.
    market_type: str | None = None
    time_in_force: str = "day"

    @model_validator(mode="after")
    def _market_type_named(self) -> OrderTerms:
        # A market order naming no type is counterparty best (what market orders were placed as before types): the
        # same terms, signed and compared alike, whether the type is named or not.
        if self.order_type == "market" and self.market_type is None:
            self.market_type = DEFAULT_MARKET_TYPE
        return self


class Approval(BaseModel):
    decision_id: str
    issued_at: datetime
    signature: str


def _message(terms: OrderTerms, decision_id: str, issued_at: datetime) -> bytes:
    price = "" if terms.price is None else format(terms.price.normalize(), "f")
    # v2 added strategy_instance_id, v3 paper_fill, v4 market_type and time_in_force (approvals signed by an earlier
    # version no longer verify: they live seconds).
    parts = [
        "v4",
        decision_id,
        issued_at.astimezone(UTC).isoformat(timespec="microseconds"),
        terms.client_order_id,
        terms.account_id,
        terms.ts_code,
        terms.side,
        terms.order_type,
        str(terms.qty),
        price,
        terms.strategy_instance_id or "",
        "" if terms.paper_fill is None else terms.paper_fill.signed_text(),
        terms.market_type or "",
        terms.time_in_force,
    ]
    if any("\x1f" in part for part in parts):
        # The request models' patterns keep control characters out of every field; this is the last word.
        raise ValueError("an order term contains the unit separator")
    return "\x1f".join(parts).encode()  # unit separator: no field can forge a boundary


def sign_approval(secret: str, terms: OrderTerms, decision_id: str, issued_at: datetime | None = None) -> Approval:
    issued = issued_at or datetime.now(UTC)
    digest = hmac.new(secret.encode(), _message(terms, decision_id, issued), hashlib.sha256).hexdigest()
    return Approval(decision_id=decision_id, issued_at=issued, signature=digest)


def approval_error(
    secret: str, terms: OrderTerms, approval: Approval | None, *, max_age_s: int, now: datetime | None = None
) -> str | None:
    """Why an approval does not authorise these terms, or None when it does."""
    if approval is None:
        return "no risk approval attached"
    try:
        message = _message(terms, approval.decision_id, approval.issued_at)
    except ValueError as exc:
        return f"the order cannot be approved: {exc}"
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, approval.signature):
        return "approval signature does not match the order"
    age = ((now or datetime.now(UTC)) - approval.issued_at.astimezone(UTC)).total_seconds()
    if age > max_age_s or age < -5:
        return f"approval is {age:.0f}s old (allowed: {max_age_s}s)"
    return None
