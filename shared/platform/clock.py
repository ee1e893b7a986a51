"""The one clock and the one timestamp column type. `utcnow()` is aware UTC; `UtcDateTime` stores a timestamp as
naive UTC (MySQL/MariaDB DATETIME(6) and SQLite keep no zone) and reads it back as aware UTC, so code never meets a
naive time from a table. An aware value of any zone is converted to UTC on the way in; a naive one is taken as UTC
already (what every table held before this type). The column type in the database is unchanged (`PreciseDateTime`),
so migrations are unaffected."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.types import TypeDecorator

from shared.platform.db import PreciseDateTime


def utcnow() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` as aware UTC: an aware time converted, a naive one taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_naive_utc(value: datetime) -> datetime:
    """`value` as the naive UTC a DATETIME column holds (a naive value is taken as UTC already)."""
    return as_utc(value).replace(tzinfo=None)


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC timestamp column: binds naive UTC (microseconds kept on MySQL too), reads aware UTC."""

    impl = PreciseDateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else to_naive_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)
