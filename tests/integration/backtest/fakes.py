"""A stand-in for the data service (bulk Arrow bars, index constituents and bars, securities, per docs/data.md) and
test strategies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from shared.platform.errors import ServiceError
from shared.platform.internal_auth import INTERNAL_HEADER, verify_internal_token
from shared.research.strategy import Strategy
from strategies.buy_and_hold import BuyAndHold
from tests.integration.backtest.strategies_for_tests.misbehaving import Explode, Slow

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


# Index 000300.SH: constituents published on 2024-03-01 (a code that is not a stock is left out by the worker).
CONSTITUENTS = {"000300.SH": {"weights_date": "2024-03-01", "codes": ["600519.SH", "000001.SZ", "000300.SH"]}}
INDEX_BARS = {
    "000300.SH": [
        {"trade_date": d.isoformat(), "close": c, "pre_close": p}
        for d, c, p in ((D1, 3500.0, 3490.0), (D2, 3535.0, 3500.0), (D3, 3510.0, 3535.0), (D4, 3600.0, 3510.0))
    ]
}
SECURITIES = [
    {"ts_code": "000001.SZ", "board": "main", "industry": "银行", "list_date": "1991-04-03", "st_on": False},
    {"ts_code": "300750.SZ", "board": "chinext", "industry": "电池", "list_date": "2018-06-11", "st_on": False},
    {"ts_code": "600519.SH", "board": "main", "industry": "白酒", "list_date": "2001-08-27", "st_on": False},
    {"ts_code": "600036.SH", "board": "main", "industry": "银行", "list_date": "2002-04-09", "st_on": True},
]


def _fen(value: str) -> int:
    return int(Decimal(value) * 100)


def bulk_table(bars: Mapping[str, list[dict[str, Any]]], codes: list[str] | None, start: date, end: date) -> pa.Table:
    """The bulk endpoint's columns: prices and amount in int64 fen, vol in shares, trade_date date32."""
    rows = [
        (code, date.fromisoformat(b["trade_date"]), b)
        for code in sorted(bars)
        if codes is None or code in codes
        for b in bars[code]
        if start <= date.fromisoformat(b["trade_date"]) <= end
    ]
    columns: dict[str, Any] = {
        "ts_code": pa.array([r[0] for r in rows], pa.string()).dictionary_encode(),
        "trade_date": pa.array([r[1] for r in rows], pa.date32()),
    }
    for name in ("open", "high", "low", "close", "pre_close"):
        columns[name] = pa.array([_fen(r[2][name]) for r in rows], pa.int64())
    columns["vol"] = pa.array([int(r[2]["vol"]) for r in rows], pa.int64())
    columns["amount"] = pa.array([_fen(r[2]["amount"]) for r in rows], pa.int64())
    columns["adj_factor"] = pa.array([float(r[2]["adj_factor"]) for r in rows], pa.float64())
    return pa.table(columns)


@dataclass
class FakeData:
    internal_secret: str
    bars: Mapping[str, list[dict[str, Any]]] = field(default_factory=lambda: BARS)
    calls: Counter[str] = field(default_factory=Counter)  # by route: bulk, bulk_body, constituents, ...
    fail_next: int = 0  # how many requests answer 503
    callers: list[str] = field(default_factory=list)
    version: int = 1  # the data version: a write bumps it
    bulk_queries: list[dict[str, str]] = field(default_factory=list)

    def bulk_calls_for(self, ts_codes: str) -> int:
        """Bulk requests whose ts_codes were exactly `ts_codes` (comma-separated, sorted)."""
        return sum(1 for q in self.bulk_queries if q.get("ts_codes") == ts_codes)

    has_benchmark: bool = True

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.exception_handler(ServiceError)
        async def _error(_: Request, exc: ServiceError) -> JSONResponse:
            return JSONResponse(exc.body(), status_code=exc.status_code)

        def check(request: Request, route: str) -> JSONResponse | None:
            token = request.headers.get(INTERNAL_HEADER)
            if not token:
                raise ServiceError("unauthenticated", "missing token", status_code=401)
            self.callers.append(verify_internal_token(self.internal_secret, token).subject)
            self.calls[route] += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"code": "internal", "message": "the data service is having a bad day"}, 503)
            return None

        @app.get("/v1/bars/bulk")
        async def bulk(
            request: Request, start: date, end: date, format: str = "arrow", ts_codes: str | None = None
        ) -> Any:
            if (failed := check(request, "bulk")) is not None:
                return failed
            self.bulk_queries.append(dict(request.query_params))
            codes = ts_codes.split(",") if ts_codes else None  # an unknown code has no rows, as in the data service
            sink = pa.BufferOutputStream()
            table = bulk_table(self.bars, codes, start, end)
            with ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            return Response(
                sink.getvalue().to_pybytes(),
                media_type="application/vnd.apache.arrow.stream",
                headers={"X-LH-Data-Version": str(self.version)},
            )

        @app.get("/v1/indexes/{code}/constituents")
        async def constituents(request: Request, code: str, trade_date: date) -> Any:
            if (failed := check(request, "constituents")) is not None:
                return failed
            if code not in CONSTITUENTS:
                raise ServiceError("unknown_index", f"no index {code} in the store", status_code=404)
            published = CONSTITUENTS[code]
            on = date.fromisoformat(published["weights_date"]) <= trade_date
            return {
                "index_code": code,
                "on": trade_date.isoformat(),
                "weights_date": published["weights_date"] if on else None,
                "constituents": [{"con_code": c, "weight": 1.0} for c in published["codes"]] if on else [],
            }

        @app.get("/v1/indexes/{code}/bars")
        async def index_bars(request: Request, code: str, start: date, end: date) -> Any:
            if (failed := check(request, "index_bars")) is not None:
                return failed
            if code not in INDEX_BARS or not self.has_benchmark:
                raise ServiceError("unknown_index", f"no index {code} in the store", status_code=404)
            rows = [b for b in INDEX_BARS[code] if start <= date.fromisoformat(b["trade_date"]) <= end]
            return {"ts_code": code, "bars": rows}

        @app.get("/v1/securities")
        async def securities(
            request: Request,
            board: str | None = None,
            industry: str | None = None,
            listed_on: date | None = None,
            st_on: date | None = None,
        ) -> Any:
            if (failed := check(request, "securities")) is not None:
                return failed
            rows = [
                s
                for s in SECURITIES
                if (board is None or s["board"] == board)
                and (industry is None or s["industry"] == industry)
                and (listed_on is None or date.fromisoformat(s["list_date"]) <= listed_on)
                and (st_on is None or s["st_on"])
            ]
            return [{"ts_code": s["ts_code"], "board": s["board"], "industry": s["industry"]} for s in rows]

        return app


def steady_bars(days: list[date], price: str = "10.00") -> list[dict[str, Any]]:
    """A bar on each day at one price (for long runs where only the day count matters)."""
    return [contract_bar(d, price, price, price) for d in days]


STRATEGIES: dict[str, type[Strategy]] = {"buy_and_hold": BuyAndHold, "explode": Explode, "slow": Slow}
