"""Alembic environment of the gateway's schema: migrations run through the connection Database.migrate() hands over."""

from gateway.store import metadata
from shared.db import run_migrations_env

run_migrations_env(metadata)
