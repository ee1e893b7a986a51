"""Typed failures of market-data providers, so callers can tell "try again later" from "fix your setup" from
"the data itself is bad" without parsing messages."""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every provider failure. `api` names the endpoint (e.g. 'daily') when there is one."""

    def __init__(self, message: str, *, api: str | None = None) -> None:
        super().__init__(message)
        self.api = api


class ProviderUnavailable(ProviderError):
    """The provider could not answer (HTTP error status, timeout, connection refused) and every retry failed.
    Trying again later may succeed; nothing about the request itself is wrong."""


class RateLimited(ProviderUnavailable):
    """The provider kept answering with its rate-limit reply until the retries ran out, or a daily quota is used up
    (`daily_quota` True: waiting minutes will not help)."""

    def __init__(self, message: str, *, api: str | None = None, daily_quota: bool = False) -> None:
        super().__init__(message, api=api)
        self.daily_quota = daily_quota


class DataNotReady(ProviderUnavailable):
    """A call that must return rows (a whole-market request for an open trading day, `expect_rows=True`) kept
    returning none: the provider has not published that day yet, or is faulty. Never to be stored as "no data"."""


class AuthenticationError(ProviderError):
    """The token is missing or refused. Not retried: a bad token does not become good by waiting."""


class PermissionDenied(AuthenticationError):
    """The token is valid but not entitled to this endpoint (not enough Tushare points). Not retried."""


class ProviderDataError(ProviderError):
    """The reply is malformed: not JSON, missing requested columns, text where a number belongs, ..."""


class ProviderRequestError(ProviderError):
    """The provider refused the request for a reason other than authentication or rate (e.g. a bad parameter).
    Not retried: the same request would be refused again."""
