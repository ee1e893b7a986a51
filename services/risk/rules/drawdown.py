"""Losses: the day's loss and the drawdown from the all-time equity high-water mark. A breach moves the account (or
instance) to `reducing` or `halted` (`breach_state`); orders are then checked against its trading state
(`check`): `reducing` passes only orders that reduce a position, `halted` none. Cancels are never checked here."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import ClassVar, Literal

from services.risk.rules.base import (
    Finding,
    Level,
    NonNegative,
    Percent,
    RiskState,
    RuleConfig,
    RuleOrder,
    TradingState,
    cny,
    pct,
)
from shared.core.domain import OrderSide

RULE = "losses"


class LossConfig(RuleConfig):
    max_daily_loss: NonNegative | None = None  # CNY
    max_daily_loss_pct: Percent | None = None  # of the day's opening equity
    max_drawdown_pct: Percent | None = None  # from the all-time high-water mark
    on_breach: Literal["reducing", "halted"] = "reducing"

    # halted is the stricter, whichever level says it
    ranked: ClassVar[Mapping[str, tuple[str, ...]]] = {"on_breach": ("reducing", "halted")}


def breach_state(state: RiskState, config: LossConfig) -> tuple[TradingState, list[Finding]]:
    """The trading state the losses call for (never looser than the current one) and the findings: a breach is a
    DENY finding (the state moves), nearing a limit a WARN."""
    findings: list[Finding] = []
    loss = -state.pnl_today if state.pnl_today < 0 else Decimal(0)
    opening = state.equity - state.pnl_today

    def judge(code: str, used: Decimal, limit: Decimal, text: str) -> None:
        values = {"used": str(used), "limit": str(limit)}
        if used > limit:
            findings.append(Finding(RULE, code, Level.DENY, text, values))
        elif config.warn_at_pct is not None and limit > 0 and used * 100 >= limit * config.warn_at_pct:
            findings.append(Finding(RULE, code, Level.WARN, f"nearing: {text}", values))

    if config.max_daily_loss is not None:
        most = config.max_daily_loss
        judge("daily_loss", loss, most, f"today's loss {cny(loss)} (limit {cny(most)})")
    if config.max_daily_loss_pct is not None and opening > 0:
        share, bound = loss * 100 / opening, config.max_daily_loss_pct
        judge(
            "daily_loss_pct", share, bound, f"today's loss is {pct(share)} of the opening equity (limit {pct(bound)})"
        )
    hwm = state.equity_high_water
    if config.max_drawdown_pct is not None and hwm is not None and hwm > 0:
        down, bound = max(hwm - state.equity, Decimal(0)) * 100 / hwm, config.max_drawdown_pct
        judge(
            "drawdown", down, bound, f"equity is {pct(down)} below its high-water mark {cny(hwm)} (limit {pct(bound)})"
        )
    order_of = [TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED]
    wanted = state.trading_state
    if any(f.level is Level.DENY for f in findings):
        target = TradingState(config.on_breach)
        wanted = max(wanted, target, key=order_of.index)
    return wanted, findings


def reduces(order: RuleOrder, state: RiskState) -> bool:
    """A sell of no more than the position held reduces it; any buy adds."""
    held = state.positions.get(order.ts_code)
    return order.side is OrderSide.SELL and held is not None and order.qty <= held.qty


def check(order: RuleOrder, state: RiskState, config: LossConfig) -> list[Finding]:
    if state.trading_state is TradingState.HALTED:
        return [Finding(RULE, "halted", Level.DENY, "trading is halted: only cancels pass")]
    if state.trading_state is TradingState.REDUCING and not reduces(order, state):
        return [Finding(RULE, "reducing", Level.DENY, "trading is reducing: only orders that reduce a position pass")]
    return []
