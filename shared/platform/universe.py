"""What a run trades and what its fills cost, as a client asks for them: the universe (a list of codes, an index's
constituents or a filter) and the cost model. One shape for backtests and strategy instances alike."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from shared.core.domain.codes import Board, InvalidTsCode, parse_ts_code
from shared.platform.request_model import JsonDecimal, RequestModel, StrictBool, TradeDate

MAX_SYMBOLS = 5000  # a whole market; bars come from the data service's bulk endpoint
INDEX_CODE = r"^\d{6}\.(SH|SZ|BJ|CSI|SI)$"


def normalized_codes(codes: list[str]) -> list[str]:
    normalized: list[str] = []
    seen: set[str] = set()
    for code in codes:
        try:
            ts_code = parse_ts_code(code).ts_code
        except InvalidTsCode as exc:
            raise ValueError(str(exc)) from exc
        if ts_code in seen:
            raise ValueError(f"{ts_code} is listed twice")
        seen.add(ts_code)
        normalized.append(ts_code)
    return normalized


class UniverseFilter(RequestModel):
    """Every stock the data service lists that passes all the given conditions, on the backtest's start date."""

    board: Board | None = None
    industry: str | None = Field(default=None, min_length=1, max_length=32)
    exclude_st: StrictBool = Field(default=False, description="leave out stocks under an ST name on the start date")
    listed_before: TradeDate | None = Field(
        default=None, description="listed on or before this day (default: the start date) and not delisted by it"
    )


class Universe(RequestModel):
    """Exactly one of: a list of codes, an index (its constituents on the start date), or a filter."""

    ts_codes: list[str] | None = Field(default=None, min_length=1, max_length=MAX_SYMBOLS)
    index: str | None = Field(default=None, pattern=INDEX_CODE, description="e.g. 000300.SH")
    filter: UniverseFilter | None = None

    @field_validator("ts_codes")
    @classmethod
    def _known_codes(cls, codes: list[str] | None) -> list[str] | None:
        return None if codes is None else normalized_codes(codes)

    @field_validator("index", mode="before")
    @classmethod
    def _upper(cls, code: object) -> object:
        return code.strip().upper() if isinstance(code, str) else code

    @model_validator(mode="after")
    def _exactly_one(self) -> Universe:
        given = [k for k in ("ts_codes", "index", "filter") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of ts_codes, index or filter (got {', '.join(given) or 'none'})")
        return self

    def label(self) -> str:
        """A short description for lists and search."""
        if self.index is not None:
            return f"index {self.index}"
        if self.filter is not None:
            parts = [f"{k}={v}" for k, v in self.filter.model_dump(mode="json", exclude_defaults=True).items()]
            return "filter " + (" ".join(parts) or "all")
        codes = self.ts_codes or []
        return ",".join(codes[:5]) + (f" +{len(codes) - 5}" if len(codes) > 5 else "")


class CostModel(RequestModel):
    """Fees and fills; each field left out takes the engine's default (shared.research.engine.BacktestConfig)."""

    commission_rate: JsonDecimal | None = Field(default=None, description="e.g. 0.00025")
    min_commission: JsonDecimal | None = Field(default=None, description="CNY, default 5")
    transfer_fee_rate: JsonDecimal | None = None
    stamp_duty: StrictBool | None = Field(default=None, description="sell-side stamp duty by date (default on)")
    slippage: Literal["none", "bps", "ticks"] | None = None
    slippage_amount: JsonDecimal | None = None
    fill_price: Literal["open", "close", "vwap"] | None = None
    volume_cap: JsonDecimal | None = Field(default=None, description="a fraction of the bar's volume, (0, 1]")
    suspended_orders: Literal["wait", "cancel"] | None = None
    corporate_actions: StrictBool | None = Field(
        default=None, description="held positions follow bonus shares and dividends on ex-dates (default on)"
    )

    def config_fields(self) -> dict[str, Any]:
        """The given fields as BacktestConfig keyword arguments (JSON-safe: decimals as strings)."""
        return self.model_dump(mode="json", exclude_none=True)
