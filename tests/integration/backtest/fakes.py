"""A stand-in for the data service (`GET /v1/bars` per docs/architecture.md) and test strategies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared.domain.models import Bar
from shared.errors import ServiceError
from shared.internal_auth import INTERNAL_HEADER, verify_internal_token
from shared.strategy import Strategy, StrategyContext
from strategies.buy_and_hold import BuyAndHold

D1, D2, D3, D4 = date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6), date(2024, 3, 7)  # Mon-Thu, all trading days


def contract_bar(day: date, open_: str, close: str, pre_close: str) -> dict[str, Any]:
    """A bar as the data service answers it: prices as decimal strings, vol in shares, amount in CNY."""
    return {
        "trade_date": day.isoformat(),
        "open": open_,
        "high": max(open_, close, key=Decimal),
        "low": min(open_, close, key=Decimal),
        "close": close,
        "pre_close": pre_close,
        "vol": 1_234_500,
        "amount": "12345678.90",
        "adj_factor": "1.000000",
    }


# 000001.SZ trades every day; 300750.SZ (ChiNext) is suspended on D3; 600519.SH and 600036.SH trade every day.
BARS: dict[str, list[dict[str, Any]]] = {
    "000001.SZ": [
        contract_bar(D1, "10.50", "10.60", "10.45"),
        contract_bar(D2, "10.60", "10.40", "10.60"),
        contract_bar(D3, "10.40", "10.20", "10.40"),
        contract_bar(D4, "10.25", "10.80", "10.20"),
    ],
    "300750.SZ": [
        contract_bar(D1, "180.00", "182.00", "179.00"),
        contract_bar(D2, "183.00", "185.50", "182.00"),
        contract_bar(D4, "186.00", "179.90", "185.50"),
    ],
    "600519.SH": [contract_bar(d, "1700.00", "1710.00", "1700.00") for d in (D1, D2, D3, D4)],
    "600036.SH": [contract_bar(d, "30.00", "30.30", "30.00") for d in (D1, D2, D3, D4)],
}


@dataclass
class FakeData:
    jwt_secret: str
    bars: Mapping[str, list[dict[str, Any]]] = field(default_factory=lambda: BARS)
    calls: Counter[str] = field(default_factory=Counter)
    fail_next: dict[str, int] = field(default_factory=dict)  # ts_code -> how many requests answer 503
    callers: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.exception_handler(ServiceError)
        async def _error(_: Request, exc: ServiceError) -> JSONResponse:
            return JSONResponse(exc.body(), status_code=exc.status_code)

        @app.get("/v1/bars")
        async def bars(request: Request, ts_code: str, start: date, end: date) -> Any:
            token = request.headers.get(INTERNAL_HEADER)
            if not token:
                raise ServiceError("unauthenticated", "missing token", status_code=401)
            self.callers.append(verify_internal_token(self.jwt_secret, token).subject)
            self.calls[ts_code] += 1
            if self.fail_next.get(ts_code, 0) > 0:
                self.fail_next[ts_code] -= 1
                return JSONResponse({"code": "internal", "message": "the data service is having a bad day"}, 503)
            if ts_code not in self.bars:
                raise ServiceError("unknown_security", f"{ts_code} is not a known security", status_code=404)
            rows = [b for b in self.bars[ts_code] if start <= date.fromisoformat(b["trade_date"]) <= end]
            return {"ts_code": ts_code, "bars": rows}

        return app


class Explode(Strategy):
    """A strategy with a bug: it raises on its first bar."""

    name = "explode"
    title = "Explodes"
    description = "Raises on the first bar, to test how the worker treats a failing strategy."

    def on_bar(self, ctx: StrategyContext, bars: Mapping[str, Bar]) -> None:
        raise RuntimeError("boom on purpose")


STRATEGIES: dict[str, type[Strategy]] = {"buy_and_hold": BuyAndHold, "explode": Explode}
