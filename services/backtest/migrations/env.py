"""Alembic environment of the backtest schema: migrations run through the connection Database.migrate() hands over."""

from services.backtest.store.tables import metadata
from shared.platform.db import run_migrations_env

run_migrations_env(metadata)
