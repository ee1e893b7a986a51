"""xtquant's objects as the protocol's (docs/qmt-bridge.md, "Objects"): decimals as strings (prices to 0.001, money
to 0.01), times as ISO 8601 with +08:00, `side` from order_type 23/24, codes as ts_codes. Pure functions over
duck-typed xt objects (anything with the documented attributes)."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from bridge.qmt import protocol
from bridge.qmt.journal import CST

PRICE = Decimal("0.001")
MONEY = Decimal("0.01")
SIDES = {protocol.STOCK_BUY: "buy", protocol.STOCK_SELL: "sell"}
ORDER_TYPES = {v: k for k, v in SIDES.items()}


def decimal_text(value: Any, places: Decimal = PRICE) -> str | None:
    """A float from xtquant as an exact decimal string: the float's shortest repr, rounded half up to `places`
    (10.1 -> "10.100", not the binary 10.0999999...). None and NaN stay None."""
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return None
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        return None
    return format(number.quantize(places, rounding=ROUND_HALF_UP), "f")


def money(value: Any) -> str | None:
    return decimal_text(value, MONEY)


def iso_time(value: Any) -> str | None:
    """xtquant's epoch times (seconds; milliseconds in xtdata) as ISO 8601 in China time; 0/None -> None."""
    if value in (None, 0, "", "0"):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if seconds > 1e11:  # milliseconds
        seconds /= 1000
    return datetime.fromtimestamp(seconds, CST).isoformat()


def ts_code(stock_code: Any) -> str:
    return str(stock_code or "").strip().upper()


def side(order_type: Any) -> str | None:
    return SIDES.get(order_type)


def order(xt: Any, order_id: str | None, remark: str = "") -> dict[str, Any]:
    """`remark`: the journal's, for an order MiniQMT reports without one (a restart that lost its session)."""
    traded = int(getattr(xt, "traded_volume", 0) or 0)
    return {
        "order_id": order_id,
        "remark": str(getattr(xt, "order_remark", "") or "") or remark,
        "qmt_order_id": int(xt.order_id),
        "order_sysid": str(getattr(xt, "order_sysid", "") or "") or None,
        "ts_code": ts_code(xt.stock_code),
        "side": side(xt.order_type),
        "qty": int(xt.order_volume),
        "price_type": int(xt.price_type),
        "price": decimal_text(xt.price),
        "status": int(xt.order_status),
        "status_msg": str(getattr(xt, "status_msg", "") or ""),
        "traded_qty": traded,
        "traded_price": decimal_text(xt.traded_price) if traded else None,
        "order_time": iso_time(getattr(xt, "order_time", None)),
    }


def trade(xt: Any, order_id: str | None, remark: str = "") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "remark": str(getattr(xt, "order_remark", "") or "") or remark,
        "qmt_order_id": int(xt.order_id),
        "order_sysid": str(getattr(xt, "order_sysid", "") or "") or None,
        "trade_id": str(xt.traded_id),
        "ts_code": ts_code(xt.stock_code),
        "side": side(xt.order_type),
        "qty": int(xt.traded_volume),
        "price": decimal_text(xt.traded_price),
        "amount": money(xt.traded_amount),
        "traded_at": iso_time(xt.traded_time),
        "commission": money(getattr(xt, "commission", None)),
    }


def position(xt: Any) -> dict[str, Any]:
    return {
        "ts_code": ts_code(xt.stock_code),
        "volume": int(xt.volume),
        "can_use_volume": int(xt.can_use_volume),
        "frozen_volume": int(getattr(xt, "frozen_volume", 0) or 0),
        "on_road_volume": int(getattr(xt, "on_road_volume", 0) or 0),
        "yesterday_volume": int(getattr(xt, "yesterday_volume", 0) or 0),
        "open_price": decimal_text(xt.open_price),
        "avg_price": decimal_text(xt.avg_price),
        "market_value": money(xt.market_value),
        "last_price": decimal_text(getattr(xt, "last_price", None)),
    }


def asset(xt: Any) -> dict[str, Any]:
    return {
        "cash": money(xt.cash),
        "frozen_cash": money(xt.frozen_cash),
        "market_value": money(xt.market_value),
        "total_asset": money(xt.total_asset),
    }


def _levels(prices: Any, volumes: Any) -> list[list[Any]]:
    prices = list(prices or [])[:5]
    volumes = list(volumes or [])[:5]
    prices += [0.0] * (5 - len(prices))
    volumes += [0] * (5 - len(volumes))
    return [[decimal_text(p), int(v or 0)] for p, v in zip(prices, volumes, strict=True)]


def snapshot(code: str, tick: dict[str, Any]) -> dict[str, Any]:
    """One code of an xtdata full-market snapshot. `volume_lots` and the levels' volumes are as xtdata gives them
    (lots of 100 shares for stocks): the data service converts."""
    return {
        "ts_code": ts_code(code),
        "time": iso_time(tick.get("time")),
        "last": decimal_text(tick.get("lastPrice")),
        "open": decimal_text(tick.get("open")),
        "high": decimal_text(tick.get("high")),
        "low": decimal_text(tick.get("low")),
        "pre_close": decimal_text(tick.get("lastClose")),
        "amount": money(tick.get("amount")),
        "volume_lots": int(tick.get("volume") or 0),
        "bid": _levels(tick.get("bidPrice"), tick.get("bidVol")),
        "ask": _levels(tick.get("askPrice"), tick.get("askVol")),
    }


def entry_order(entry: Any) -> dict[str, Any]:
    """An order as the journal knows it (no MiniQMT state, or the last one seen): status 255 (unknown) unless a
    status was seen; an order MiniQMT refused at once is reported as junk (57) with the refusal."""
    if entry.state == "refused":
        status = 57
    elif entry.status is not None:
        status = entry.status
    else:
        status = 255
    return {
        "order_id": entry.order_id,
        "remark": entry.remark,
        "qmt_order_id": entry.qmt_order_id,
        "order_sysid": entry.order_sysid,
        "ts_code": entry.ts_code,
        "side": entry.side,
        "qty": entry.qty,
        "price_type": entry.price_type,
        "price": entry.price,
        "status": status,
        "status_msg": entry.status_msg,
        "traded_qty": entry.traded_qty,
        "traded_price": entry.traded_price,
        "order_time": entry.order_time,
    }
