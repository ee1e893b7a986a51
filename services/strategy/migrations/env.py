"""Alembic environment of the strategy service: run by Database.migrate() at start-up."""

from services.strategy.store import metadata
from shared.platform.db import run_migrations_env

run_migrations_env(metadata)
