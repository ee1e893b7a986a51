"""Alembic environment of the risk service: run by Database.migrate() at start-up."""

from services.risk.store import metadata
from shared.platform.db import run_migrations_env

run_migrations_env(metadata)
