"""Execution's transaction cost analysis (docs/tca.md): each order's arrival price (recorded at its creation), its
fills' VWAP and fees, and its slippage against the arrival price and against the market's VWAP over the order's life
(the data service's 1-minute bars). The arithmetic is shared with the backtest's analysis
(`shared.core.market.tca`); this module picks the benchmarks."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

from shared.core.domain import to_fen
from shared.core.market.tca import Bar, OrderCost, interval_vwap_fen
from shared.platform.clock import EXCHANGE_TZ

if TYPE_CHECKING:
    from services.execution.store import TcaRow

log = logging.getLogger(__name__)

ARRIVAL_LIVE = "live"  # the latest real-time quote execution held (quotes.snapshot)
ARRIVAL_LAST_CLOSE = "last_close"  # no live quote of the day: the last close in the data service's store
LAST_CLOSE_TIME = time(15, 0)


@dataclass(frozen=True)
class Arrival:
    """The price an order arrived at: `price` (CNY), `source` (live | last_close), `at` the quote's time (a last
    close's: 15:00 of its day, Asia/Shanghai)."""

    price: Decimal
    source: str
    at: datetime


def last_close_arrival(price: Decimal, day: date) -> Arrival:
    return Arrival(price, ARRIVAL_LAST_CLOSE, datetime.combine(day, LAST_CLOSE_TIME, EXCHANGE_TZ))


@dataclass(frozen=True)
class MinuteBarIn:
    """A closed 1-minute bar as the data service gives it: its minute's start (aware), volume (shares), amount CNY."""

    minute: datetime
    volume: int
    amount: Decimal


@dataclass(frozen=True)
class Interval:
    """The part of a day the market's VWAP is taken over: from the order's creation (or the day's start, for an order
    created on an earlier day) to its last fill (or, unfilled, its last change), by the bars' minutes."""

    day: date
    start: datetime
    end: datetime


def interval_of(created_at: datetime, end: datetime) -> Interval:
    """The interval of an order created at `created_at` whose life in the market ended at `end` (both aware)."""
    day = end.astimezone(EXCHANGE_TZ).date()
    start_day = created_at.astimezone(EXCHANGE_TZ).date()
    start = created_at if start_day == day else datetime.combine(day, time.min, EXCHANGE_TZ)
    return Interval(day, start, end)


def _floor_minute(at: datetime) -> datetime:
    return at.astimezone(EXCHANGE_TZ).replace(second=0, microsecond=0)


def bars_within(bars: Iterable[MinuteBarIn], interval: Interval) -> list[MinuteBarIn]:
    """The bars whose minute lies in the interval, both ends' minutes included (an order created at 10:00:30 takes
    the 10:00 bar; one created before 09:30 takes the 09:30 bar, which holds the opening auction; one ending after
    15:00 takes 14:59's, which holds the closing auction)."""
    first, last = _floor_minute(interval.start), _floor_minute(interval.end)
    return [b for b in bars if first <= b.minute.astimezone(EXCHANGE_TZ) <= last]


def market_vwap_fen(bars: Iterable[MinuteBarIn]) -> Fraction | None:
    return interval_vwap_fen(Bar(b.volume, Fraction(b.amount) * 100) for b in bars)


def order_cost(
    *,
    is_buy: bool,
    filled_qty: int,
    filled_amount: Decimal,
    fees: Decimal,
    arrival: Decimal | None,
    interval_vwap: Fraction | None,
) -> OrderCost:
    return OrderCost(
        is_buy=is_buy,
        filled_qty=filled_qty,
        filled_amount_fen=to_fen(filled_amount),
        fees_fen=to_fen(fees),
        arrival_fen=None if arrival is None else Fraction(to_fen(arrival)),
        interval_vwap_fen=interval_vwap,
    )


# The minute bars one analysis reads at most (one request per code and day): beyond, the rest of the orders have no
# interval VWAP (`interval_note` says so). The data service keeps a day's bars three days.
MAX_BAR_READS = 200

NO_FILLS = "no fills"
NO_BARS = "no minute bars of the market in the order's interval"
BARS_UNAVAILABLE = "the minute bars could not be read"
BARS_NOT_READ = f"not read: over {MAX_BAR_READS} codes and days in one analysis"
NO_ARRIVAL = "no arrival price was recorded"


class MinuteBars(Protocol):
    async def minute_bars(self, ts_code: str, day: date) -> list[MinuteBarIn]: ...


@dataclass(frozen=True)
class OrderTca:
    row: TcaRow
    cost: OrderCost
    interval: Interval | None
    interval_note: str | None

    @property
    def day(self) -> date:
        """The day the order is counted in: the exchange date of its creation."""
        return self.row.created_at.astimezone(EXCHANGE_TZ).date()


async def analyse(rows: Iterable[TcaRow], bars_source: MinuteBars | None) -> list[OrderTca]:
    """Each order's cost: its fills against its arrival price and against the market's VWAP over its interval (the
    bars of each code and day read once)."""
    bars: dict[tuple[str, date], list[MinuteBarIn] | None] = {}
    out: list[OrderTca] = []
    for row in rows:
        interval: Interval | None = None
        vwap: Fraction | None = None
        note: str | None = None
        if row.filled_qty <= 0 or row.last_fill_at is None:
            note = NO_FILLS
        elif bars_source is None:
            note = BARS_UNAVAILABLE
        else:
            interval = interval_of(row.created_at, row.last_fill_at)
            key = (row.ts_code, interval.day)
            if key not in bars:
                if len(bars) >= MAX_BAR_READS:
                    note = BARS_NOT_READ
                else:
                    try:
                        bars[key] = await bars_source.minute_bars(row.ts_code, interval.day)
                    except Exception as exc:  # the data service down, the feed off: the rest of the analysis stands
                        log.warning("no minute bars for cost analysis", extra={"ts_code": row.ts_code,
                                                                               "error": str(exc)})  # fmt: skip
                        bars[key] = None
            if note is None:
                day_bars = bars[key]
                if day_bars is None:
                    note = BARS_UNAVAILABLE
                else:
                    vwap = market_vwap_fen(bars_within(day_bars, interval))
                    note = NO_BARS if vwap is None else None
        cost = order_cost(
            is_buy=row.side.value == "buy",
            filled_qty=row.filled_qty,
            filled_amount=row.filled_amount,
            fees=row.fees,
            arrival=row.arrival_price,
            interval_vwap=vwap,
        )
        out.append(OrderTca(row, cost, interval, note))
    return out
