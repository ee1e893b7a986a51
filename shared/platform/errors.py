"""Errors with a machine-readable code and a human message; the app factory turns them into 4xx/5xx JSON."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status_code = 400

    def __init__(self, code: str, message: str, *, status_code: int | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class Forbidden(ServiceError):
    status_code = 403


class Unavailable(ServiceError):
    """A dependency could not answer: the caller fails closed."""

    status_code = 503


# --- dependencies that do not answer -------------------------------------------------------------------------------
# The app factory (shared.platform.app.install_error_handlers) answers these with 503 and the code below, in every
# service.

# MySQL/MariaDB error numbers (client and server, as pymysql and asyncmy report them) that say the database could
# not answer now: cannot connect (2002, 2003, 2005), gone away / lost (2006, 2013, 2055), too many connections
# (1040), shutting down (1053), and the transient errors `shared.platform.db` retries (1205, 1213) still failing
# after that.
MYSQL_UNAVAILABLE = frozenset({1040, 1053, 1205, 1213, 2002, 2003, 2005, 2006, 2013, 2055})


def dependency_failure(exc: BaseException) -> str | None:
    """The code for `exc` when it says a dependency (the database, Redis, RabbitMQ) could not answer: the caller
    may try again later. None for anything else (a bug, a constraint violation), which is not the client's to retry.

    Database: a connection that could not be made or was lost (`OperationalError`, `InterfaceError`, a pool
    timeout, a connection invalidated under a statement), and a transient error still failing after
    `shared.platform.db`'s retries (a deadlock, a lock wait timeout, SQLite's "database is locked"); the same from
    asyncmy
    itself, where a raw driver connection is used (the data store's bulk loads and reads): its `OperationalError`
    and `InterfaceError`, and any of its errors with a number in MYSQL_UNAVAILABLE."""
    from aiormq.exceptions import AMQPError, ChannelInvalidStateError
    from asyncmy.errors import InterfaceError as MySQLInterfaceError
    from asyncmy.errors import MySQLError
    from asyncmy.errors import OperationalError as MySQLOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return "database_unavailable"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "database_unavailable"
    if isinstance(exc, MySQLOperationalError | MySQLInterfaceError):
        return "database_unavailable"
    if isinstance(exc, MySQLError) and exc.args and exc.args[0] in MYSQL_UNAVAILABLE:
        return "database_unavailable"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return "cache_unavailable"
    if isinstance(exc, AMQPError | ChannelInvalidStateError):
        return "bus_unavailable"
    return None


DEPENDENCY_NAMES = {"database_unavailable": "database", "cache_unavailable": "cache", "bus_unavailable": "message bus"}


def unavailable_message(service: str, code: str, then: str = "try again later") -> str:
    """What a caller is told when `service`'s dependency (`code`, from `dependency_failure`) is down."""
    return f"the {service} service's {DEPENDENCY_NAMES[code]} is unavailable; {then}"
