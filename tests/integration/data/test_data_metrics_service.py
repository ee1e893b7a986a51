"""The data service's /metrics after a backfill through its API (MariaDB, the fake Tushare server): runs by status,
rows by table as the tables hold them, the newest day stored in full; and the update lag the scheduler reports."""

from __future__ import annotations

import secrets
from datetime import date, datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from services.data.app import TradingDays, create_app
from services.data.metrics import DataMetrics, StoredThrough, day_start_timestamp
from services.data.scheduler import SHANGHAI
from services.data.store import adj_factors, daily_bars, daily_basic, stk_limits
from shared.platform.internal_auth import service_headers
from tests.integration.data.test_ingest_tushare import market, provider_for
from tests.support.fake_tushare import FakeTushare


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_after_a_backfill_and_the_lag_behind_the_market(backing: Any) -> None:
    settings = backing.settings(scope="ingmet" + secrets.token_hex(3), load_demo_data=False)
    with FakeTushare(market(), token="t0ken") as server:
        app = create_app(settings, provider=provider_for(server))
        headers = service_headers(settings.internal_secret, "test")
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://data", headers=headers) as c,
        ):
            before = samples((await c.get("/metrics")).text)
            assert before[("lh_data_ingest_runs_total", (("kind", "backfill"), ("status", "succeeded")))] == 0
            assert before[("lh_data_complete_through_timestamp_seconds", ())] == 0  # nothing stored yet

            started = await c.post("/v1/ingest/backfill", json={"start": "2024-01-02", "end": "2024-01-15"})
            assert started.status_code == 202
            result = await app.state.ingestor.wait()
            assert result.status == "succeeded"
            await app.state.stored_through.refresh()  # what the run's end schedules, awaited here
            after = samples((await c.get("/metrics")).text)

            store = app.state.store
            async with store.db.session() as session:
                held = {t.name: int(await session.scalar(select(func.count()).select_from(t)) or 0)
                        for t in (daily_bars, adj_factors, stk_limits, daily_basic)}  # fmt: skip
            assert held["daily_bars"] == 29  # 3 stocks x 10 days less one suspension
            for table, rows in held.items():
                assert after[("lh_data_ingest_rows_total", (("table", table),))] == rows
            assert after[("lh_data_ingest_runs_total", (("kind", "backfill"), ("status", "succeeded")))] == 1
            assert after[("lh_data_ingest_runs_total", (("kind", "backfill"), ("status", "failed")))] == 0
            assert after[("lh_data_complete_through_timestamp_seconds", ())] == day_start_timestamp(date(2024, 1, 15))
            assert after[("lh_data_quality_findings", (("severity", "error"),))] == 0

            # With the update scheduled at 17:30: on Thursday 18 January at 18:00 the 16th, 17th and 18th are out
            # and missing (the fake calendar opens every weekday after the 15th); at 17:00 the 18th is not out yet.
            metrics = DataMetrics(registry := CollectorRegistry())
            days = TradingDays(store)
            await days.refresh()
            through = StoredThrough(metrics, app.state.ingestor, days, "17:30")
            await through.refresh(now=datetime(2024, 1, 18, 18, 0, tzinfo=SHANGHAI))
            assert registry.get_sample_value("lh_data_update_lag_days") == 3
            await through.refresh(now=datetime(2024, 1, 18, 17, 0, tzinfo=SHANGHAI))
            assert registry.get_sample_value("lh_data_update_lag_days") == 2
            await through.refresh(now=datetime(2024, 1, 15, 23, 0, tzinfo=SHANGHAI))
            assert registry.get_sample_value("lh_data_update_lag_days") == 0
