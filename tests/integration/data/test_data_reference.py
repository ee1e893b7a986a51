"""`GET /v1/reference`: every security's reference data in one answer, equal to its quote (`/v1/quotes/{code}`) for
the same session, on SQLite (standalone) and MariaDB (the fleet), with the data version as an ETag."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.data.app import create_app
from services.data.store import DataStore
from shared.platform.internal_auth import INTERNAL_HEADER, service_headers
from shared.platform.quotes import Quote, ReferenceData
from shared.platform.settings import Settings

QUOTE_FIELDS = tuple(Quote.model_fields)


def _security(ts_code: str, board: str, listed: date, delisted: date | None = None) -> dict[str, Any]:
    return {"ts_code": ts_code, "symbol": ts_code[:6], "name": "测试" + ts_code[:6], "exchange": ts_code[-2:],
            "board": board, "is_st": False, "list_date": listed, "delist_date": delisted}  # fmt: skip


def _bar(ts_code: str, day: date, close: int, vol: int, pre_close: int | None = None) -> dict[str, Any]:
    return {"ts_code": ts_code, "trade_date": day, "open": close, "high": close, "low": close, "close": close,
            "pre_close": pre_close if pre_close is not None else close, "vol": vol, "amount": close * vol,
            "adj_factor": Decimal(1)}  # fmt: skip


async def _add_edge_cases(store: DataStore) -> None:
    """Beside the demo market: new listings in their first sessions (no limits) and just past them, one listing
    tomorrow (no bars), one delisted, one suspended on the newest day, one with an ex-rights pre_close."""
    gem_days = [date(2024, 12, d) for d in (26, 27, 30, 31)]
    star_days = [date(2024, 12, d) for d in (24, 25, 26, 27, 30, 31)]
    await store.load(
        [_security("301999.SZ", "chinext", gem_days[0]), _security("688999.SH", "star", star_days[0]),
         _security("300999.SZ", "chinext", date(2025, 1, 2)),
         _security("600998.SH", "main", date(2020, 1, 2), delisted=date(2024, 12, 27)),
         _security("600997.SH", "main", date(2020, 1, 2)), _security("600996.SH", "main", date(2020, 1, 2))],
        [],
        [_bar("301999.SZ", d, 2400, 1_000_000 + i) for i, d in enumerate(gem_days)]
        + [_bar("688999.SH", d, 2400, 300 + 7 * i) for i, d in enumerate(star_days)]
        + [_bar("600998.SH", d, 512, 10_000) for d in (date(2024, 12, 25), date(2024, 12, 26))]
        # suspended on 12-31 (its last bar is 12-30)
        + [_bar("600997.SH", d, 1000 + i, 200 * (i + 1)) for i, d in enumerate(star_days[:-1])]
        # ex-rights on 12-30: that bar's pre_close (800) is not the close before it (1000)
        + [_bar("600996.SH", date(2024, 12, 27), 1000, 500), _bar("600996.SH", date(2024, 12, 30), 810, 700, 800),
           _bar("600996.SH", date(2024, 12, 31), 820, 900, 810)],
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "mariadb"])
async def data_client(request, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=40)
    else:
        backing = request.getfixturevalue("backing")
        settings = backing.settings(scope="reference" + tmp_path.name[-6:].replace("-", ""), demo_symbols=40)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://data",
            headers=service_headers(settings.internal_secret, "test"),
        ) as client,
    ):
        await _add_edge_cases(app.state.store)
        yield app, client


async def _same_as_quotes(client: httpx.AsyncClient, session: date | None) -> ReferenceData:
    params = {} if session is None else {"session": session.isoformat()}
    resp = await client.get("/v1/reference", params=params)
    assert resp.status_code == 200, resp.text
    data = ReferenceData.model_validate_json(resp.content)
    assert resp.headers["ETag"] == f'"v{data.data_version}"' and data.session == session
    securities = (await client.get("/v1/securities")).json()
    by_code = {r.ts_code: r for r in data.securities}
    assert sorted(by_code) == sorted(s["ts_code"] for s in securities)  # every security, once
    for security in securities:
        code = security["ts_code"]
        quote = (await client.get(f"/v1/quotes/{code}", params=params)).json()
        row = by_code[code].model_dump(mode="json")
        assert {f: row[f] for f in QUOTE_FIELDS} == quote, code
        assert row["industry"] == security["industry"]
    return data


async def _average_volume(client: httpx.AsyncClient, code: str, before: date) -> int | None:
    """The mean volume of the code's bars in the 20 trading days before `before`, from the calendar and the bars."""
    days = (await client.get("/v1/calendar", params={"start": "2024-01-01", "end": before.isoformat()})).json()
    window = [d for d in days["trading_days"] if d < before.isoformat()][-20:]
    bars = (await client.get("/v1/bars", params={"ts_code": code, "start": window[0], "end": window[-1]})).json()
    vols = [b["vol"] for b in bars["bars"]]
    return sum(vols) // len(vols) if vols else None


async def test_every_row_is_the_quote_of_its_code(data_client) -> None:  # type: ignore[no-untyped-def]
    _, client = data_client
    latest = await _same_as_quotes(client, None)
    assert latest.next_trade_date == date(2025, 1, 2)
    rows = {r.ts_code: r for r in latest.securities}
    # The edge cases, by hand: a ChiNext listing in its 5th session has no limits; a STAR one in its 7th has 20%.
    assert rows["301999.SZ"].limit_up is None and rows["301999.SZ"].suspended is False
    assert (rows["688999.SH"].limit_up, rows["688999.SH"].limit_down) == (Decimal("28.80"), Decimal("19.20"))
    assert rows["300999.SZ"].suspended is True and rows["300999.SZ"].last_close is None
    assert rows["600998.SH"].limit_up is None  # delisted
    assert rows["600997.SH"].suspended is True and rows["600997.SH"].last_close == Decimal("10.04")
    # 20-day average volume: the GEM listing's 4 bars 1,000,000..1,000,003 -> 1,000,001 (rounded down from .5);
    # the STAR one's 6 bars 300, 307, ..., 335 -> 1905 / 6 = 317.5 -> 317.
    assert rows["301999.SZ"].avg_vol_20d == 1_000_001 and rows["688999.SH"].avg_vol_20d == 317
    assert rows["300999.SZ"].avg_vol_20d is None
    demo = [r for r in latest.securities if r.ts_code not in {"301999.SZ", "688999.SH", "300999.SZ"}][:5]
    for row in [*demo, rows["600997.SH"], rows["600998.SH"]]:
        assert row.avg_vol_20d == await _average_volume(client, row.ts_code, date(2025, 1, 2)), row.ts_code

    # A replayed session: as the data stood before 2024-12-30 opened (the ex-rights bar's pre_close gives the limits).
    replayed = await _same_as_quotes(client, date(2024, 12, 30))
    rows = {r.ts_code: r for r in replayed.securities}
    ex = rows["600996.SH"]
    assert (ex.last_close, ex.limit_up, ex.limit_down) == (Decimal("10.00"), Decimal("8.80"), Decimal("7.20"))
    assert ex.avg_vol_20d == 500 and rows["600998.SH"].suspended is True
    for row in list(replayed.securities)[:5]:
        assert row.avg_vol_20d == await _average_volume(client, row.ts_code, date(2024, 12, 30)), row.ts_code
    # Earlier in the year, where the new listings are not yet listed (no bars: suspended, no limits).
    await _same_as_quotes(client, date(2024, 6, 3))


async def test_the_version_tag_and_refusals(data_client) -> None:  # type: ignore[no-untyped-def]
    app, client = data_client
    first = await client.get("/v1/reference")
    tag = first.headers["ETag"]
    again = await client.get("/v1/reference", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert (await client.get("/v1/reference")).content == first.content  # (served from the read cache)
    # A new session's bars: the tag no longer matches, and the answer moves on.
    code = "600996.SH"
    await app.state.store.load([], [], [_bar(code, date(2025, 1, 2), 850, 1_000, 820)])
    moved = await client.get("/v1/reference", headers={"If-None-Match": tag})
    assert moved.status_code == 200 and moved.headers["ETag"] != tag
    data = ReferenceData.model_validate_json(moved.content)
    row = next(r for r in data.securities if r.ts_code == code)
    # 8.50 x 1.1 = 9.35, x 0.9 = 7.65; the next session after 2025-01-02 is 2025-01-03
    assert (data.next_trade_date, row.last_close, row.limit_up, row.limit_down) == (
        date(2025, 1, 3), Decimal("8.50"), Decimal("9.35"), Decimal("7.65"))  # fmt: skip

    weekend = await client.get("/v1/reference", params={"session": "2024-12-28"})
    assert weekend.status_code == 422 and weekend.json()["code"] == "not_a_trading_day"
    bad = await client.get("/v1/reference", params={"session": "tomorrow"})
    assert bad.status_code == 422
    anonymous = await client.get("/v1/reference", headers={INTERNAL_HEADER: ""})
    assert anonymous.status_code == 401
