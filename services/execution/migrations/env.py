"""Alembic environment of the execution service: run by Database.migrate() at start-up."""

from services.execution.store import metadata
from shared.platform.db import run_migrations_env

run_migrations_env(metadata)
