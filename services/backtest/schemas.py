"""The REST shapes of the backtest service: what a client sends and what it gets back."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from shared.domain.codes import InvalidTsCode, parse_ts_code

MAX_SYMBOLS = 50
DEFAULT_INITIAL_CASH = Decimal("1000000")


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: str = Field(default="buy_and_hold", max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    ts_codes: list[str] = Field(min_length=1, max_length=MAX_SYMBOLS)
    start: date
    end: date
    initial_cash: Decimal = Field(default=DEFAULT_INITIAL_CASH, gt=0, max_digits=18, decimal_places=2)

    @field_validator("ts_codes")
    @classmethod
    def _known_codes(cls, codes: list[str]) -> list[str]:
        normalized: list[str] = []
        for code in codes:
            try:
                ts_code = parse_ts_code(code).ts_code
            except InvalidTsCode as exc:
                raise ValueError(str(exc)) from exc
            if ts_code in normalized:
                raise ValueError(f"{ts_code} is listed twice")
            normalized.append(ts_code)
        return normalized

    @field_validator("end")
    @classmethod
    def _end_not_before_start(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if start is not None and end < start:
            raise ValueError(f"end {end} is before start {start}")
        return end


class BacktestAccepted(BaseModel):
    backtest_id: str
    status: str


class EquityPoint(BaseModel):
    trade_date: date
    equity: Decimal


class BacktestBrief(BaseModel):
    backtest_id: str
    status: str
    owner: str
    strategy: str
    params: dict[str, Any]
    ts_codes: list[str]
    start: date
    end: date
    initial_cash: Decimal
    summary: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BacktestDetail(BacktestBrief):
    equity_curve: list[EquityPoint]
