"""Factors imported after their bars (`import-adj-factors`) reach the stored bars on MariaDB too."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pandas as pd

from services.data.store import DataStore


async def test_factors_imported_after_the_bars_reach_them(store: DataStore) -> None:
    bars = pd.DataFrame({
        "ts_code": ["600000.SH", "600000.SH", "000001.SZ"], "trade_date": ["20240102", "20240103", "20240103"],
        "open": 10.0, "high": 10.0, "low": 10.0, "close": 10.0, "pre_close": 10.0, "vol": 10.0, "amount": 10.0,
    })  # fmt: skip
    await store.upsert_daily_bars(bars)  # no factor known: 1
    before = await store.data_version()
    factors = pd.DataFrame({"ts_code": ["600000.SH", "600000.SH", "000001.SZ"],
                            "trade_date": ["20240102", "20240103", "20240104"],  # 000001.SZ: a day without a bar
                            "adj_factor": [1.0, 1.111111, 2.5]})  # fmt: skip
    await store.upsert_adj_factors(factors)
    assert await store.refactor_bars(factors) == 1  # 600000.SH 01-02 already had 1; 000001.SZ has no bar that day
    got = {(b.ts_code, b.trade_date): b.adj_factor for b in await store.bars("600000.SH", date(2024, 1, 2),
                                                                            date(2024, 1, 3))}  # fmt: skip
    assert got == {("600000.SH", date(2024, 1, 2)): Decimal("1"), ("600000.SH", date(2024, 1, 3)): Decimal("1.111111")}
    assert [b.adj_factor for b in await store.bars("000001.SZ", date(2024, 1, 3), date(2024, 1, 3))] == [Decimal("1")]
    assert await store.data_version() != before
    assert await store.refactor_bars(factors) == 0  # again: nothing to change
