"""The `MarketDataProvider` port: what the data service asks of any source of A-share market data (Tushare Pro, the
demo market, ...), and the Tushare layouts every implementation returns.

Every method returns a pandas DataFrame in Tushare's own layout and units, whatever the source: the columns of
`API_SCHEMAS[api].fields` in that order, dates as 'YYYYMMDD' strings, prices in CNY, `vol` in lots of 100 shares,
`amount` in thousand CNY. Conversion to storage units happens once, in the storage layer (services/data/loader.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

import pandas as pd

DateLike = date | str  # a date, or Tushare's 'YYYYMMDD' text

_YMD = re.compile(r"^\d{8}$")


def ymd(day: DateLike) -> str:
    """A date as Tushare's 'YYYYMMDD'; 'YYYYMMDD' and 'YYYY-MM-DD' text is validated and normalised."""
    if isinstance(day, date):
        return day.strftime("%Y%m%d")
    text = str(day).strip().replace("-", "")
    if _YMD.match(text):
        try:
            date(int(text[:4]), int(text[4:6]), int(text[6:]))
            return text
        except ValueError:
            pass
    raise ValueError(f"{day!r} is not a date (expected YYYYMMDD)")


@dataclass(frozen=True)
class ApiSchema:
    """One Tushare endpoint: the columns asked for (explicit `fields`), which of them are text, which are
    'YYYYMMDD' dates (nullable ones may be None), and the largest page the endpoint documents (None: one call)."""

    name: str
    fields: tuple[str, ...]
    text: frozenset[str]
    dates: frozenset[str]
    integers: frozenset[str] = frozenset()
    page_size: int | None = None
    # Fields Tushare lists as not shown by default (默认显示 N): asked for explicitly, but a reply (or a source) that
    # lacks them gets them as empty values instead of failing.
    optional: frozenset[str] = frozenset()

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f not in self.text and f not in self.dates)


def _schema(
    name: str,
    fields: str,
    *,
    text: str = "",
    dates: str = "",
    integers: str = "",
    page_size: int | None = None,
    optional: str = "",
) -> ApiSchema:
    return ApiSchema(
        name,
        tuple(fields.split()),
        frozenset(text.split()),
        frozenset(dates.split()),
        frozenset(integers.split()),
        page_size,
        frozenset(optional.split()),
    )


# Field lists from the Tushare Pro documentation (tushare.pro/document/2); page sizes are the documented per-call
# row limits ("单次最大..."). A page size above the server's real limit would truncate silently, so only documented
# limits are used; endpoints without one are asked in pieces small enough to fit (see TushareProvider).
API_SCHEMAS: dict[str, ApiSchema] = {
    s.name: s
    for s in (
        _schema(
            "stock_basic",
            "ts_code symbol name area industry market exchange list_status list_date delist_date",
            text="ts_code symbol name area industry market exchange list_status",
            dates="list_date delist_date",
        ),
        _schema(
            "trade_cal",
            "exchange cal_date is_open pretrade_date",
            text="exchange",
            dates="cal_date pretrade_date",
            integers="is_open",
        ),
        _schema(
            "daily",
            "ts_code trade_date open high low close pre_close change pct_chg vol amount",
            text="ts_code",
            dates="trade_date",
            page_size=6000,
        ),
        _schema("adj_factor", "ts_code trade_date adj_factor", text="ts_code", dates="trade_date", page_size=6000),
        _schema(
            "daily_basic",
            "ts_code trade_date close turnover_rate turnover_rate_f volume_ratio pe pe_ttm pb ps ps_ttm dv_ratio "
            "dv_ttm total_share float_share free_share total_mv circ_mv",
            text="ts_code",
            dates="trade_date",
            page_size=6000,
        ),
        _schema(
            # pre_close: the exchange's reference price of the day (the last close, ex-rights adjusted on an ex-date),
            # published with the limits before the open (~08:40); not shown by default, empty for funds.
            "stk_limit",
            "trade_date ts_code up_limit down_limit pre_close",
            text="ts_code",
            dates="trade_date",
            page_size=5800,
            optional="pre_close",
        ),
        _schema(
            "suspend_d",
            "ts_code trade_date suspend_timing suspend_type",
            text="ts_code suspend_timing suspend_type",
            dates="trade_date",
        ),
        _schema(
            "index_daily",
            "ts_code trade_date close open high low pre_close change pct_chg vol amount",
            text="ts_code",
            dates="trade_date",
            page_size=8000,
        ),
        _schema(
            "index_weight", "index_code con_code trade_date weight", text="index_code con_code", dates="trade_date"
        ),
        _schema(
            "namechange",
            "ts_code name start_date end_date ann_date change_reason",
            text="ts_code name change_reason",
            dates="start_date end_date ann_date",
            page_size=10000,
        ),
    )
}

# Date columns that are legitimately empty (still listed, name still in use, first trading day of the calendar).
NULLABLE_DATES = frozenset({"delist_date", "end_date", "ann_date", "pretrade_date"})
LIST_STATUSES = ("L", "D", "P")  # listed, delisted, listing suspended (上市 / 退市 / 暂停上市)


def data_ends(provider: object) -> date | None:
    """The last day a provider has any data for when it is a fixed data set (the demo market ends on its
    `demo_end`), read from its optional `data_ends()`; None for a live source such as Tushare, which publishes on."""
    ends = getattr(provider, "data_ends", None)
    return ends() if callable(ends) else None


def empty_frame(api: str) -> pd.DataFrame:
    """A frame with the endpoint's columns and no rows: a true "nothing on that day" answer."""
    return pd.DataFrame({f: pd.Series(dtype=object) for f in API_SCHEMAS[api].fields})


@runtime_checkable
class MarketDataProvider(Protocol):
    """A source of A-share market data. Whole-market history goes by trade_date: one call, one day, every stock.

    `expect_rows=True` on a per-day method says "the trade calendar has this day open, so rows must exist": an
    empty answer is then retried and, if it stays empty, raised as `DataNotReady` instead of returned.
    """

    async def stock_basic(self, list_statuses: tuple[str, ...] = LIST_STATUSES) -> pd.DataFrame:
        """Every security in the given list statuses (default listed, delisted and suspended)."""
        ...

    async def trade_cal(self, start: DateLike, end: DateLike, exchange: str = "SSE") -> pd.DataFrame:
        """Every calendar day in [start, end] with is_open 1/0 and the previous trading day."""
        ...

    async def daily(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        """Unadjusted daily bars of every stock that traded on `trade_date`."""
        ...

    async def adj_factor(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        """Tushare's backward adjustment factor of every stock on `trade_date`."""
        ...

    async def daily_basic(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        """Turnover, valuation and share counts of every stock on `trade_date`."""
        ...

    async def stk_limit(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        """Limit-up and limit-down prices of every security on `trade_date`, and the day's reference price
        (`pre_close`, empty where the source has none); published before that day's open."""
        ...

    async def suspend_d(self, trade_date: DateLike) -> pd.DataFrame:
        """Suspensions (S) and resumptions (R) on `trade_date`; often legitimately empty."""
        ...

    async def index_daily(self, ts_code: str, start: DateLike, end: DateLike) -> pd.DataFrame:
        """Daily bars of one index (e.g. 000300.SH) over [start, end]."""
        ...

    async def index_weight(self, index_code: str, start: DateLike, end: DateLike) -> pd.DataFrame:
        """Constituents and weights of one index published in [start, end] (monthly snapshots)."""
        ...

    async def namechange(
        self, ts_code: str | None = None, start: DateLike | None = None, end: DateLike | None = None
    ) -> pd.DataFrame:
        """Name history (ST / *ST periods included), announced in [start, end]; every stock when ts_code is None."""
        ...
