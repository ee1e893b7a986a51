"""Alembic environment of the data schema: migrations run through the connection Database.migrate() hands over."""

from services.data.store import metadata
from shared.platform.db import run_migrations_env

run_migrations_env(metadata)
