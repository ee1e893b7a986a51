"""Loading markets into the store: the demo market at start-up, and the row conversions the small loads use.

The unit conversions themselves (CNY -> fen, lots -> shares, thousand CNY -> fen, exactly) live in
services/data/units.py and are re-exported here; bulk frames go through `DataStore.upsert_daily_bars` etc.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from services.data.demo import DemoMarket, DemoSecurity, generate_demo_market
from services.data.providers.demo import DemoProvider
from services.data.store import CALENDAR_EXCHANGE, DataStore, LoadCounts
from services.data.units import (
    ConversionError,
    adj_factor_decimal,
    daily_bar_columns,
    exact_scaled,
    lots_to_shares,
    price_to_fen,
    thousand_cny_to_fen,
    tushare_date,
)
from shared.core.market.calendar import FIRST_YEAR, LAST_YEAR, is_trading_day
from shared.platform.settings import Settings

__all__ = [
    "ConversionError",
    "adj_factor_decimal",
    "calendar_rows",
    "daily_bar_rows",
    "exact_scaled",
    "load_demo_market",
    "load_market",
    "lots_to_shares",
    "price_to_fen",
    "security_rows",
    "thousand_cny_to_fen",
    "tushare_date",
]

log = logging.getLogger(__name__)


def daily_bar_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a Tushare `daily` frame with an `adj_factor` column (1 where missing), in storage units.

    Float columns take the vectorised `exact_scaled` path; whatever it cannot prove exact goes through the Decimal
    conversions (which round amounts half-up and refuse off-tick prices and fractional shares).
    """
    columns = daily_bar_columns(frame)
    micro = columns["adj_factor"]
    factors = {m: Decimal(m).scaleb(-6) for m in set(micro.tolist())}
    names = ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount")
    lists = [columns[name].tolist() for name in names]
    return [
        {**dict(zip(names, values, strict=True)), "adj_factor": factors[m]}
        for *values, m in zip(*lists, micro.tolist(), strict=True)
    ]


def security_rows(items: Iterable[DemoSecurity]) -> list[dict[str, Any]]:
    return [
        {
            "ts_code": s.ts_code,
            "symbol": s.symbol,
            "name": s.name,
            "exchange": s.exchange.value,
            "board": s.board.value,
            "is_st": s.is_st,
            "list_date": s.list_date,
            "delist_date": s.delist_date,
            "industry": s.industry,
            "area": None,
            "market": None,
            "list_status": "L",
        }
        for s in items
    ]


def calendar_rows(first: date, last: date) -> list[dict[str, Any]]:
    """Every calendar day in [first, last] with is_open from the built-in SSE calendar (Tushare trade_cal shape)."""
    rows = []
    day = first
    while day <= last:
        rows.append({"exchange": CALENDAR_EXCHANGE, "cal_date": day, "is_open": is_trading_day(day)})
        day += timedelta(days=1)
    return rows


def demo_calendar_span(trade_days: Sequence[date]) -> tuple[date, date]:
    """Whole years around the demo window, and the next year where the built-in calendar has it, so the day after
    the last bar (the next session of a quote) is in the stored calendar."""
    first_year = max(FIRST_YEAR, trade_days[0].year)
    last_year = min(LAST_YEAR, trade_days[-1].year + 1)
    return date(first_year, 1, 1), date(last_year, 12, 31)


async def load_market(store: DataStore, market: DemoMarket) -> LoadCounts:
    first, last = demo_calendar_span(market.trade_days)
    bars = daily_bar_rows(market.daily)
    counts = await store.load(security_rows(market.securities), calendar_rows(first, last), bars)
    await store.upsert_daily_basic(market.daily_basic)  # as a Tushare store has them (its ingest writes them)
    return counts


async def load_demo_market(store: DataStore, settings: Settings) -> LoadCounts:
    """Generate the demo market of `settings` and upsert it (safe to repeat: the same rows are written again)."""
    started = time.perf_counter()
    market = generate_demo_market(settings)
    generated = time.perf_counter()
    counts = await load_market(store, market)
    if market.trade_days:
        # The exchange limits of the demo's last session (the one `make run`'s replay clock shows), as the pre-open
        # load stores a live day's: the replayed session's quote bands come from them, as a live day's do.
        limits = await DemoProvider(settings, market=market).stk_limit(market.trade_days[-1])
        limits = limits.dropna(subset=["up_limit", "down_limit"])  # a day without limits has no row
        if not limits.empty:
            await store.upsert_stk_limits(limits)
    if not market.daily.empty:
        # every table of the demo's days is stored in full (what the paper broker waits for before matching a session)
        last = str(market.daily["trade_date"].max())
        await store.mark_complete_through(date(int(last[:4]), int(last[4:6]), int(last[6:])))
    log.info(
        "demo market loaded",
        extra={
            "securities": counts.securities,
            "bars": counts.bars,
            "calendar_days": counts.calendar_days,
            "generate_s": round(generated - started, 3),
            "load_s": round(time.perf_counter() - generated, 3),
        },
    )
    return counts
