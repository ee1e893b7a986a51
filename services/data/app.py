"""The data service app: its database, migrations and (when the store is empty) the demo market at start-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.data.api import router
from services.data.cache import ReadCache
from services.data.loader import load_demo_market
from services.data.store import MIGRATIONS_DIR, DataStore
from shared.app import Infra, create_service_app
from shared.db import Database
from shared.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, infra: Infra | None = None) -> FastAPI:
    infra = infra or Infra.from_settings(settings, "data")
    db = Database(settings.database_url_for("data"))
    read_cache = ReadCache(infra.cache, settings.bus_namespace)
    store = DataStore(db, on_change=read_cache.invalidate)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.connect()
        try:
            await db.migrate(MIGRATIONS_DIR)
            if settings.load_demo_data and await store.count_securities() == 0:
                await load_demo_market(store, settings)
            yield
        finally:
            await db.dispose()

    app = create_service_app(
        "data",
        infra,
        routers=[router],
        lifespan=lifespan,
        readiness={"db": db.ping},
    )
    app.state.db = db
    app.state.store = store
    app.state.read_cache = read_cache
    return app
