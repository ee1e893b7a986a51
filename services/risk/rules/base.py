"""What every risk rule reads and returns: the order as risk sees it, the account's (or instance's) state, the
security's reference data, and findings with a level. A rule is a pure function `(order, state, config) -> findings`
in its own module; all of them run and every finding is kept (docs/risk-rules.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import ConfigDict, Field

from shared.core.domain import OrderSide, OrderType
from shared.core.domain.codes import Board
from shared.core.domain.money import money
from shared.platform.request_model import JsonDecimal, RequestModel, StrictBool, StrictInt


class Level(StrEnum):
    DENY = "deny"  # the order is refused
    WARN = "warn"  # the order passes; an alert says how close it came


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"  # only orders that reduce a position
    HALTED = "halted"  # nothing new; cancels always pass


@dataclass(frozen=True)
class Finding:
    rule: str
    code: str
    level: Level
    message: str
    values: Mapping[str, str] = field(default_factory=dict)  # the values the rule read, for the decision's record


@dataclass(frozen=True)
class Reference:
    """A security's reference data of the session: loaded per trading day, not read per order."""

    last_price: Decimal | None  # the last close (or trade): None for a security that never traded
    is_st: bool = False
    suspended: bool = False
    industry: str | None = None
    avg_volume_20d: int | None = None  # shares a day over the last 20 sessions; None: not known


@dataclass(frozen=True)
class RuleOrder:
    """A new order as the rules see it. `value` is what it commits: qty x the limit price, or for a market order
    qty x the price risk values it at (a buy: the session's limit-up; a sell: the last price)."""

    ts_code: str
    board: Board
    side: OrderSide
    order_type: OrderType
    qty: int
    price: Decimal | None
    value: Decimal
    at: datetime  # aware; its Asia/Shanghai time decides the exchange's windows
    session: date  # the trading day it is for
    reference: Reference
    protection_price: Decimal | None = None


@dataclass(frozen=True)
class HeldPosition:
    qty: int
    market_value: Decimal  # at the latest price
    industry: str | None = None


@dataclass(frozen=True)
class OpenOrder:
    """An order not final yet: its unfilled part commits `value` (buys) or shares (sells)."""

    ts_code: str
    side: OrderSide
    price: Decimal | None  # None: a market order
    remaining_qty: int
    value: Decimal
    industry: str | None = None


@dataclass(frozen=True)
class RecentOrder:
    ts_code: str
    side: OrderSide
    price: Decimal | None
    qty: int
    at: datetime
    client_order_id: str | None = None  # a retry of the same order is not a duplicate of itself
    session: date | None = None  # the session it was for (an order for another session is not a duplicate)


@dataclass(frozen=True)
class Counters:
    orders_last_second: int = 0
    cancels_last_second: int = 0
    orders_today: int = 0
    cancels_today: int = 0


@dataclass(frozen=True)
class RiskState:
    """An account's (or a strategy instance's sleeve's) state as risk keeps it hot."""

    equity: Decimal  # cash + market value
    positions: Mapping[str, HeldPosition] = field(default_factory=dict)
    open_orders: tuple[OpenOrder, ...] = ()
    recent_orders: tuple[RecentOrder, ...] = ()  # the last few seconds' new orders, for the duplicate rule
    counters: Counters = Counters()
    trading_state: TradingState = TradingState.ACTIVE
    pnl_today: Decimal = Decimal(0)  # realised + unrealised since the day's open
    equity_high_water: Decimal | None = None  # of all time


# -- configuration ----------------------------------------------------------------------------------------------------

# Read strictly, as every request body is (shared/platform/request_model.py): a decimal as "10.50" or a number (never
# true), a count and a switch only as a JSON integer and boolean ("100" and 1 are refused). A rule set is a request body
# of `PUT /v1/risk/rules/{scope}`.
Percent = Annotated[JsonDecimal, Field(ge=0, le=100, allow_inf_nan=False)]
NonNegative = Annotated[JsonDecimal, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[StrictInt, Field(ge=0)]


class RuleConfig(RequestModel):
    """A rule's settings: unknown fields refused; limits non-negative, percentages 0-100. `warn_at_pct`: a finding
    at this share of a limit warns (None: never). A field left None has no limit at that level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = True
    warn_at_pct: Percent | None = Decimal(80)

    # numbers where the larger value is the stricter (a longer window, say); for every other number the smaller is
    stricter_larger: ClassVar[frozenset[str]] = frozenset()
    # sets combined by intersection (a whitelist: only what every level allows); other sets by union (a blacklist)
    intersect: ClassVar[frozenset[str]] = frozenset()
    # choices ranked from the loosest to the strictest (the losses rule's `on_breach`: reducing, then halted)
    ranked: ClassVar[Mapping[str, tuple[str, ...]]] = {}


def stricter_value(config: type[RuleConfig], name: str, x: Any, y: Any) -> Any:
    """The stricter of two levels' values of one setting: enabled if either is; for each limit the tighter one (the
    smaller, or the larger for the rule's `stricter_larger` fields; of ranked choices the stricter); a limit set at
    one level only (the other None) applies; a switch that refuses something is on if either turns it on; blacklists
    add up and whitelists intersect."""
    if name == "enabled":
        return x or y
    if x is None or y is None:
        return y if x is None else x
    if isinstance(x, bool):
        return x or y
    if isinstance(x, frozenset):
        return (x & y) if name in config.intersect else (x | y)
    if isinstance(x, int | Decimal):
        return max(x, y) if name in config.stricter_larger else min(x, y)
    if name in config.ranked:
        return max(x, y, key=config.ranked[name].index)
    return y


def against_limit(
    rule: str,
    code: str,
    used: Decimal,
    limit: Decimal,
    warn_at_pct: Decimal | None,
    describe: Callable[[], str],
    values: Mapping[str, str],
) -> list[Finding]:
    """DENY when `used` is over `limit`; WARN when it reaches `warn_at_pct` percent of it; else nothing. Inside
    `measuring_utilisation()`, `used / limit` is also noted for the metrics (the rule's result is the same)."""
    shares = _utilisation.get()
    if shares is not None and limit > 0:
        share = used / limit
        shares[(rule, code)] = max(share, shares.get((rule, code), share))
    if used > limit:
        return [Finding(rule, code, Level.DENY, describe(), values)]
    if warn_at_pct is not None and limit > 0 and used * 100 >= limit * warn_at_pct:
        share = (used * 100 / limit).quantize(Decimal("0.1"))
        return [Finding(rule, code, Level.WARN, f"{describe()} ({share}% of the limit)", values)]
    return []


_utilisation: ContextVar[dict[tuple[str, str], Decimal] | None] = ContextVar("risk_limit_utilisation", default=None)


@contextmanager
def measuring_utilisation() -> Iterator[dict[tuple[str, str], Decimal]]:
    """Collects, for the rules run inside the block, each limit's `used / limit` by (rule, code): what risk's
    lh_risk_limit_utilisation_ratio shows. A limit of 0 has no share (anything is over it)."""
    shares: dict[tuple[str, str], Decimal] = {}
    token = _utilisation.set(shares)
    try:
        yield shares
    finally:
        _utilisation.reset(token)


def cny(value: Decimal) -> str:
    return f"{money(value)} CNY"


def pct(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}%"
