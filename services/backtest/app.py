"""The backtest service's app factory: its database, the outbox relay and the routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import date

from fastapi import FastAPI

from services.backtest.api import router
from services.backtest.optimize_api import router as optimisation_router
from services.backtest.service import BacktestService, DataRange, StoredDays
from services.backtest.store import BacktestStore, outbox
from shared.platform.app import Infra, create_service_app
from shared.platform.db import Database
from shared.platform.errors import Unavailable
from shared.platform.internal_auth import service_headers
from shared.platform.outbox import OutboxRelay
from shared.platform.settings import Settings
from shared.research.strategy import Strategy, discover_strategies

SERVICE = "backtest"
log = logging.getLogger(__name__)


def _data_range(infra: Infra, settings: Settings) -> DataRange:
    """The data service's calendar for a range (its trading days and last complete day); None when it cannot say."""

    async def ask(start: date, end: date) -> StoredDays | None:
        try:
            response = await infra.services.client("data").request(
                "GET",
                "/v1/calendar",
                params={"start": start.isoformat(), "end": end.isoformat()},
                headers=service_headers(settings.internal_secret, SERVICE),
            )
        except Unavailable:
            log.warning("the data service did not answer: a backtest's range is not checked")
            return None
        if response.status_code != 200:
            log.warning("the data service's calendar answered HTTP %s", response.status_code)
            return None
        body = response.json()
        complete = body.get("complete_through")
        return StoredDays(
            trading_days=[date.fromisoformat(d) for d in body.get("trading_days", [])],
            complete_through=date.fromisoformat(complete) if complete else None,
        )

    return ask


def create_app(
    settings: Settings,
    infra: Infra | None = None,
    *,
    strategies: Mapping[str, type[Strategy]] | None = None,
) -> FastAPI:
    """`strategies` defaults to those discovered in the `strategies` package (tests add their own)."""
    infra = infra or Infra.from_settings(settings, SERVICE)
    db = Database(settings.database_url_for(SERVICE), lock_wait_s=settings.db_lock_wait_s)
    store = BacktestStore(db)
    # Publishes the events of backtests failed here (queue down); the worker runs its own relay for the rest.
    relay = OutboxRelay(db, outbox, infra.bus)
    found = strategies if strategies is not None else discover_strategies()
    service = BacktestService(store, infra.bus, dict(found), relay, data_range=_data_range(infra, settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.connect()
        try:
            await store.migrate()
            relay.start()
            try:
                yield
            finally:
                await relay.stop()
        finally:
            await db.dispose()

    app = create_service_app(
        SERVICE, infra, routers=[router, optimisation_router], lifespan=lifespan, readiness={"database": db.ping}
    )
    app.state.backtests = service
    app.state.db = db
    db.register_metrics(app.state.metrics_registry)
    return app
