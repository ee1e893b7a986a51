"""Fixtures of the data service's integration tests."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.data.store import MIGRATIONS_DIR, DataStore
from shared.platform.db import Database


@pytest.fixture
async def store(backing: Any) -> AsyncIterator[DataStore]:
    """A data store on a fresh MariaDB database of its own, migrated."""
    settings = backing.settings(scope="ds" + secrets.token_hex(3))
    db = Database(settings.database_url_for("data"))
    await db.connect()
    await db.migrate(MIGRATIONS_DIR)
    try:
        yield DataStore(db)
    finally:
        await db.dispose()
