"""The data service's dependencies, as `Annotated` aliases the routes take: the store, the read cache, the bulk
answers and the ingestor (all made by the app factory, services/data/app.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.data.bulk import BulkBars, bulk_directory
from services.data.cache import ReadCache
from services.data.ingest import Ingestor
from services.data.store import DataStore


def _store(request: Request) -> DataStore:
    store: DataStore = request.app.state.store
    return store


def _read_cache(request: Request) -> ReadCache:
    read_cache: ReadCache = request.app.state.read_cache
    return read_cache


def _ingestor(request: Request) -> Ingestor:
    ingestor: Ingestor = request.app.state.ingestor
    return ingestor


def _bulk(request: Request) -> BulkBars:
    """The app's BulkBars (made on first use when the app factory did not make one)."""
    state = request.app.state
    bulk: BulkBars | None = getattr(state, "bulk", None)
    if bulk is None:
        bulk = BulkBars(_store(request), bulk_directory(state.settings))
        state.bulk = bulk
    return bulk


Store = Annotated[DataStore, Depends(_store)]
Cache = Annotated[ReadCache, Depends(_read_cache)]
Bulk = Annotated[BulkBars, Depends(_bulk)]
IngestorDep = Annotated[Ingestor, Depends(_ingestor)]
