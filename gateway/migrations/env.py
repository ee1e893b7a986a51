"""Alembic environment of the gateway's schema: migrations run through the connection Database.migrate() hands over."""

from gateway.store import metadata
from shared.platform.db import run_migrations_env

run_migrations_env(metadata)
