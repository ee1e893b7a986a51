"""The deterministic demo market (services/data/demo.py) behind the `MarketDataProvider` port, for standalone mode
and benchmarks: the same Tushare layouts as the real provider, so ingestion cannot tell them apart.

The demo models stocks, bars, adjustment factors, suspensions, one ST stock and Tushare's daily_basic fields of every
bar (generated from per-company fundamentals, services/data/demo.py); it has no indices, so index_daily and
index_weight answer with no rows (documented, not faked).
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd

from services.data.demo import DemoMarket, generate_demo_market
from services.data.providers.port import API_SCHEMAS, LIST_STATUSES, DateLike, empty_frame, ymd
from shared.core.domain.codes import Board, Exchange
from shared.core.market import is_trading_day, limit_prices, price_limit_ratio
from shared.platform.settings import Settings

# Tushare's names for the listing venue (stock_basic.market / .exchange).
TUSHARE_MARKET = {Board.MAIN: "主板", Board.CHINEXT: "创业板", Board.STAR: "科创板", Board.BSE: "北交所"}
TUSHARE_EXCHANGE = {Exchange.SH: "SSE", Exchange.SZ: "SZSE", Exchange.BJ: "BSE"}


def _day(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


class DemoProvider:
    """`MarketDataProvider` over `generate_demo_market(settings)`; the market is generated once, on first use, in a
    worker thread (full-market scale takes seconds)."""

    def __init__(self, settings: Settings | None = None, *, market: DemoMarket | None = None) -> None:
        self._settings = settings or Settings()
        self._market = market
        self._by_day: dict[str, np.ndarray] | None = None
        self._lock = asyncio.Lock()

    async def market(self) -> DemoMarket:
        async with self._lock:
            if self._market is None:
                self._market = await asyncio.to_thread(generate_demo_market, self._settings)
            if self._by_day is None:
                groups = self._market.daily.groupby("trade_date", sort=False).indices
                self._by_day = {str(k): v for k, v in groups.items()}
            return self._market

    def data_ends(self) -> date:
        """The demo market is a fixed window: nothing is ever published after its last day (`demo_end`)."""
        if self._market is not None:
            return self._market.trade_days[-1]
        return date.fromisoformat(self._settings.demo_end)

    async def _day_rows(self, trade_date: DateLike, *, basic: bool = False) -> pd.DataFrame:
        """The day's rows of the daily frame, or of the daily_basic frame (row for row in the daily frame's order)."""
        market = await self.market()
        assert self._by_day is not None
        frame = market.daily_basic if basic else market.daily
        positions = self._by_day.get(ymd(trade_date))
        if positions is None:
            return frame.iloc[0:0]
        return frame.iloc[positions].reset_index(drop=True)

    async def stock_basic(self, list_statuses: tuple[str, ...] = LIST_STATUSES) -> pd.DataFrame:
        market = await self.market()
        rows = []
        for sec in market.securities:
            status = "D" if sec.delist_date is not None else "L"
            if status not in list_statuses:
                continue
            rows.append(
                {
                    "ts_code": sec.ts_code,
                    "symbol": sec.symbol,
                    "name": sec.name,
                    "area": None,
                    "industry": None,
                    "market": TUSHARE_MARKET[sec.board],
                    "exchange": TUSHARE_EXCHANGE[sec.exchange],
                    "list_status": status,
                    "list_date": ymd(sec.list_date),
                    "delist_date": ymd(sec.delist_date) if sec.delist_date else None,
                }
            )
        return pd.DataFrame(rows, columns=list(API_SCHEMAS["stock_basic"].fields))

    async def trade_cal(self, start: DateLike, end: DateLike, exchange: str = "SSE") -> pd.DataFrame:
        first, last = _day(ymd(start)), _day(ymd(end))
        if first > last:
            raise ValueError(f"start {first} is after end {last}")
        previous: date | None = None
        probe = first - timedelta(days=1)
        for _ in range(30):  # the open day before `first` (holidays never last a month)
            try:
                if is_trading_day(probe):
                    previous = probe
                    break
            except ValueError:  # before the built-in calendar: no previous day known
                break
            probe -= timedelta(days=1)
        rows = []
        day = first
        while day <= last:
            is_open = is_trading_day(day)
            rows.append((exchange, ymd(day), int(is_open), ymd(previous) if previous else None))
            if is_open:
                previous = day
            day += timedelta(days=1)
        frame = pd.DataFrame(rows, columns=list(API_SCHEMAS["trade_cal"].fields))
        frame["is_open"] = frame["is_open"].astype("int64")
        return frame

    async def daily(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        return (await self._day_rows(trade_date)).loc[:, list(API_SCHEMAS["daily"].fields)]

    async def adj_factor(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        return (await self._day_rows(trade_date)).loc[:, ["ts_code", "trade_date", "adj_factor"]]

    async def daily_basic(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        """The generated daily_basic of the day's bars, in Tushare's layout and units (as the real endpoint)."""
        return (await self._day_rows(trade_date, basic=True)).loc[:, list(API_SCHEMAS["daily_basic"].fields)]

    async def stk_limit(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        """Limit prices from shared.core.market's rules on each traded stock's pre_close (every demo stock is seasoned,
        so no IPO no-limit days), and that pre_close: the day's reference price, as Tushare gives it."""
        market = await self.market()
        rows = await self._day_rows(trade_date)
        day = _day(ymd(trade_date))
        securities = {s.ts_code: s for s in market.securities}
        ups: list[float] = []
        downs: list[float] = []
        for code, pre_close in zip(rows["ts_code"].tolist(), rows["pre_close"].tolist(), strict=True):
            sec = securities[code]
            limits = limit_prices(Decimal(str(pre_close)), price_limit_ratio(sec.board, day, is_st=sec.is_st))
            ups.append(float(limits[0]) if limits else float("nan"))
            downs.append(float(limits[1]) if limits else float("nan"))
        return pd.DataFrame(
            {
                "trade_date": rows["trade_date"], "ts_code": rows["ts_code"], "up_limit": ups, "down_limit": downs,
                "pre_close": rows["pre_close"],
            }
        )  # fmt: skip

    async def suspend_d(self, trade_date: DateLike) -> pd.DataFrame:
        market = await self.market()
        day = _day(ymd(trade_date))
        rows = [
            (halt.ts_code, ymd(day), None, "S") for halt in market.suspensions if halt.first_day <= day <= halt.last_day
        ]
        return pd.DataFrame(rows, columns=list(API_SCHEMAS["suspend_d"].fields))

    async def index_daily(self, ts_code: str, start: DateLike, end: DateLike) -> pd.DataFrame:
        return empty_frame("index_daily")

    async def index_weight(self, index_code: str, start: DateLike, end: DateLike) -> pd.DataFrame:
        return empty_frame("index_weight")

    async def namechange(
        self, ts_code: str | None = None, start: DateLike | None = None, end: DateLike | None = None
    ) -> pd.DataFrame:
        """One name per stock since listing; the ST stock's name carries the ST prefix from its listing day."""
        market = await self.market()
        rows = [
            (s.ts_code, s.name, ymd(s.list_date), None, ymd(s.list_date), "ST" if s.is_st else "其他")
            for s in market.securities
            if (ts_code is None or s.ts_code == ts_code)
            and (start is None or ymd(s.list_date) >= ymd(start))
            and (end is None or ymd(s.list_date) <= ymd(end))
        ]
        return pd.DataFrame(rows, columns=list(API_SCHEMAS["namechange"].fields))
