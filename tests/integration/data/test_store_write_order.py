"""On MariaDB, the bulk upsert hands rows to the server in the table's key order even when they arrive day by day:
a trigger numbers the rows as InnoDB receives them."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import text

from services.data.store import DataStore


async def test_rows_arriving_day_by_day_reach_the_server_stock_by_stock(store: DataStore) -> None:
    async with store.db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE arrivals (n INT AUTO_INCREMENT PRIMARY KEY, ts_code VARCHAR(12), "
                                "trade_date DATE)"))  # fmt: skip
        await conn.execute(text("CREATE TRIGGER bars_arrival AFTER INSERT ON daily_bars FOR EACH ROW "
                                "INSERT INTO arrivals (ts_code, trade_date) VALUES (NEW.ts_code, NEW.trade_date)"))  # fmt: skip
    codes = ["600000.SH", "000001.SZ", "300750.SZ"]
    days = ["20240102", "20240103", "20240104"]
    frame = pd.DataFrame(
        [(code, day, 10.0, 10.5, 9.8, 10.2, 10.0, 0.2, 2.0, 1000.0, 1020.0) for day in days for code in codes],
        columns=["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "change", "pct_chg", "vol",
                 "amount"],
    )  # fmt: skip
    assert await store.upsert_daily_bars(frame) == 9
    async with store.db.session() as session:
        arrived = (await session.execute(text("SELECT ts_code, trade_date FROM arrivals ORDER BY n"))).all()
    assert [(code, day.strftime("%Y%m%d")) for code, day in arrived] == [
        (code, day) for code in sorted(codes) for day in days
    ]
