"""Alembic environment of the backtest schema: migrations run through the connection Database.migrate() hands over."""

from services.backtest.store import metadata
from shared.db import run_migrations_env

run_migrations_env(metadata)
