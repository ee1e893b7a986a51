"""The data service's request and response models (its REST answers; the quote is `shared.platform.quotes.Quote`)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from shared.core.domain.codes import Board
from shared.platform.request_model import RequestModel, TradeDate


class SecurityOut(BaseModel):
    ts_code: str
    symbol: str
    name: str
    exchange: str
    board: Board
    is_st: bool
    list_date: date
    delist_date: date | None
    industry: str | None
    area: str | None
    market: str | None
    list_status: str
    lot_min: int = Field(description="the smallest buy in shares (shared.core.market.rules.board_lots)")
    lot_step: int = Field(
        description="the step above lot_min a buy moves in (100 on the main board and ChiNext, 1 on STAR and the "
        "BSE); a sell may also be the whole position, odd lot included"
    )
    market_types: list[str] = Field(
        description="the market order types its exchange takes, the default (counterparty_best) first "
        "(shared.core.market.order_types: SH best5_cancel, best5_limit, own_best; SZ own_best, ioc, best5_cancel, "
        "fok; BJ as SH)"
    )


class SecurityMatchOut(SecurityOut):
    pinyin: str = Field(description="the name's initials in its usual reading, lower case (平安银行: payh)")


class LimitDayOut(BaseModel):
    """A day that closed at its limit price (涨停 / 跌停), limits from the bar's pre_close by the board's rules."""

    trade_date: date
    hit: str = Field(description="up: closed at limit-up; down: closed at limit-down")
    close: Decimal
    limit_up: Decimal
    limit_down: Decimal


class LimitDaysOut(BaseModel):
    ts_code: str
    days: list[LimitDayOut]


class BarOut(BaseModel):
    """Unadjusted daily bar: prices and amount in CNY (2 decimals), vol in shares."""

    trade_date: date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    pre_close: Decimal
    vol: int
    amount: Decimal
    adj_factor: Decimal


class BarsOut(BaseModel):
    ts_code: str
    bars: list[BarOut]


class CalendarOut(BaseModel):
    exchange: str
    start: date
    end: date
    trading_days: list[date]
    # the newest trading day whose bars (every table of it) are stored in full; None: never recorded
    complete_through: date | None = None


class ConstituentOut(BaseModel):
    con_code: str
    weight: float  # percent, as published


class ConstituentsOut(BaseModel):
    index_code: str
    on: date
    weights_date: date | None  # the publication the answer comes from (the newest on or before `on`)
    constituents: list[ConstituentOut]


class IndexBarOut(BaseModel):
    trade_date: date
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    pre_close: float | None
    vol: int  # shares
    amount: Decimal  # CNY, 2 decimals


class IndexBarsOut(BaseModel):
    ts_code: str
    bars: list[IndexBarOut]


class RangeIn(RequestModel):
    start: TradeDate
    end: TradeDate


class LimitsIn(RequestModel):
    """`POST /v1/ingest/limits`: the trading day whose exchange limits to load now."""

    trade_date: TradeDate


class RunStarted(BaseModel):
    run_id: str
    status: str = "running"


class RunOut(BaseModel):
    run_id: str
    kind: str
    status: str  # running, succeeded, failed, interrupted
    start_date: date | None
    end_date: date | None
    rows: int  # rows written so far, every table
    percent: float
    rows_per_s: float | None
    current: str | None  # the last day (or file) done
    error: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    quality_report_id: str | None
    # Optional endpoints the run did without (the provider token may not use them) -> why; see docs/data-ingest.md.
    skipped_endpoints: dict[str, str]
    detail: dict[str, Any]


class FeedStatusOut(BaseModel):
    mode: str  # replay, bridge or off (LH_QUOTES_FEED)
    latest_snapshot_at: datetime | None  # the newest snapshot this process received (None: none yet)
    age_s: float | None  # seconds from it to the market clock's now
    bridges: list[str]  # the quote bridges connected to this process now


class DataStatusOut(BaseModel):
    complete_through: date | None  # the newest trading day stored in full (None: nothing stored yet)
    latest_trading_day: date | None  # the calendar's newest trading day whose data is out (its update time passed)
    lag_days: int | None  # trading days after complete_through up to latest_trading_day (None: nothing stored)
    update_at: str  # the daily update's time, Asia/Shanghai
    feed: FeedStatusOut


class FindingOut(BaseModel):
    rule: str
    severity: str
    ts_code: str | None
    trade_date: date | None
    detail: str


class ReportOut(BaseModel):
    run_id: str
    created_at: datetime
    ingest_run_id: str | None
    start_date: date | None
    end_date: date | None
    rules: list[str]
    # All findings of the run. Each rule keeps at most `max_findings_per_rule` of its findings as examples:
    # `kept` of them are stored (`kept_by_rule` per rule) while `counts` has every rule's true total. Reports
    # stored before the totals were kept know only their examples: `counts` is null and `findings` == `kept`.
    findings: int
    kept: int
    counts: dict[str, int] | None = None
    kept_by_rule: dict[str, int] | None = None
    max_findings_per_rule: int | None = None
    rules_skipped: dict[str, str] | None = None
    items: list[FindingOut]
