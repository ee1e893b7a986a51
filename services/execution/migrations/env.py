"""Alembic environment of the execution service: run by Database.migrate() at start-up. The schema is execution's
store's tables and the paper broker's book, on one metadata."""

import services.execution.brokers.paper_tables  # noqa: F401  (registers the paper broker's tables on the metadata)
from services.execution.store import metadata
from shared.platform.db import run_migrations_env

run_migrations_env(metadata)
