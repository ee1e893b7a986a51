"""xtquant's objects in the protocol's shapes, checked against values worked out by hand."""

from __future__ import annotations

from types import SimpleNamespace

from bridge.qmt import normalize

# 1765071000 s = 2025-12-07 01:30:00 UTC = 09:30:00 in China (+08:00)
T = 1765071000


def test_decimals_are_the_floats_shortest_value_rounded() -> None:
    assert normalize.decimal_text(10.1) == "10.100"  # not 10.0999999... from the binary float
    assert normalize.decimal_text(2.0005) == "2.001"  # half up on the decimal value
    assert normalize.money(1234.565) == "1234.57"
    assert normalize.decimal_text(float("nan")) is None and normalize.decimal_text(None) is None


def test_times_are_china_time_iso() -> None:
    assert normalize.iso_time(T) == "2025-12-07T09:30:00+08:00"
    assert normalize.iso_time(T * 1000 + 500) == "2025-12-07T09:30:00.500000+08:00"  # xtdata's milliseconds
    assert normalize.iso_time(0) is None


def test_an_order() -> None:
    xt = SimpleNamespace(
        order_id=1001,
        order_sysid="S1",
        stock_code="000001.SZ",
        order_type=24,
        order_volume=300,
        price_type=11,
        price=12.34,
        order_status=55,
        status_msg="",
        traded_volume=100,
        traded_price=12.35,
        order_time=T,
        order_remark="r-1",
    )
    assert normalize.order(xt, "o-1") == {
        "order_id": "o-1",
        "remark": "r-1",
        "qmt_order_id": 1001,
        "order_sysid": "S1",
        "ts_code": "000001.SZ",
        "side": "sell",
        "qty": 300,
        "price_type": 11,
        "price": "12.340",
        "status": 55,
        "status_msg": "",
        "traded_qty": 100,
        "traded_price": "12.350",
        "order_time": "2025-12-07T09:30:00+08:00",
    }


def test_a_trade_position_and_asset() -> None:
    trade = SimpleNamespace(
        order_id=1001,
        order_sysid="",
        traded_id="T9",
        stock_code="600000.SH",
        order_type=23,
        traded_volume=200,
        traded_price=10.1,
        traded_amount=2020.0,
        traded_time=T,
        commission=5.0,
        order_remark="",
    )
    assert normalize.trade(trade, None) == {
        "order_id": None,
        "remark": "",
        "qmt_order_id": 1001,
        "order_sysid": None,
        "trade_id": "T9",
        "ts_code": "600000.SH",
        "side": "buy",
        "qty": 200,
        "price": "10.100",
        "amount": "2020.00",
        "traded_at": "2025-12-07T09:30:00+08:00",
        "commission": "5.00",
    }
    position = SimpleNamespace(
        stock_code="600000.SH",
        volume=500,
        can_use_volume=300,
        frozen_volume=0,
        on_road_volume=200,
        yesterday_volume=300,
        open_price=9.8,
        avg_price=9.9,
        market_value=5050.0,
        last_price=10.1,
    )
    assert normalize.position(position) == {
        "ts_code": "600000.SH",
        "volume": 500,
        "can_use_volume": 300,
        "frozen_volume": 0,
        "on_road_volume": 200,
        "yesterday_volume": 300,
        "open_price": "9.800",
        "avg_price": "9.900",
        "market_value": "5050.00",
        "last_price": "10.100",
    }
    asset = SimpleNamespace(cash=100.5, frozen_cash=0.0, market_value=5050.0, total_asset=5150.5)
    assert normalize.asset(asset) == {
        "cash": "100.50",
        "frozen_cash": "0.00",
        "market_value": "5050.00",
        "total_asset": "5150.50",
    }


def test_a_snapshot_keeps_lots_and_five_levels() -> None:
    tick = {
        "time": T * 1000,
        "lastPrice": 10.12,
        "open": 10.0,
        "high": 10.2,
        "low": 9.95,
        "lastClose": 10.01,
        "amount": 123456789.5,
        "volume": 120345,
        "bidPrice": [10.11, 10.1, 10.09],
        "bidVol": [12, 30, 7],
        "askPrice": [10.12, 10.13, 10.14, 10.15, 10.16],
        "askVol": [5, 6, 7, 8, 9],
    }
    assert normalize.snapshot("600000.SH", tick) == {
        "ts_code": "600000.SH",
        "time": "2025-12-07T09:30:00+08:00",
        "last": "10.120",
        "open": "10.000",
        "high": "10.200",
        "low": "9.950",
        "pre_close": "10.010",
        "amount": "123456789.50",
        "volume_lots": 120345,
        "bid": [["10.110", 12], ["10.100", 30], ["10.090", 7], ["0.000", 0], ["0.000", 0]],
        "ask": [["10.120", 5], ["10.130", 6], ["10.140", 7], ["10.150", 8], ["10.160", 9]],
    }
