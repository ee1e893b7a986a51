"""Tushare Pro behind the `MarketDataProvider` port, through the official `tushare` client (pinned 1.4.29).

The client is synchronous (requests), so each call runs in a worker thread. Around it: a per-endpoint rate limiter,
bounded retries with backoff, and a classification of every way a call can fail (see errors.py). Two traps of the
client are handled here:

* On an HTTP error status, `DataApi.query` returns `pd.DataFrame()` silently. A real answer, even an empty one, is
  built with `columns=data['fields']`, and we always ask for explicit fields, so a frame with no columns at all can
  only be the client swallowing an HTTP error: it is retried, and never passed on as "no data that day".
* A refusal (`code != 0`) is raised as a bare `Exception(msg)`: the code is lost, so the message is classified
  (rate limit 每分钟最多访问, daily quota 每天最多访问, bad token token不对, no permission 没有...权限).
"""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
from collections.abc import Mapping
from datetime import date
from typing import Any

import pandas as pd
import requests
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, retry_if_result, stop_after_attempt
from tushare.pro.client import DataApi

from services.data.providers.errors import (
    AuthenticationError,
    DataNotReady,
    PermissionDenied,
    ProviderDataError,
    ProviderError,
    ProviderRequestError,
    ProviderUnavailable,
    RateLimited,
)
from services.data.providers.port import (
    API_SCHEMAS,
    LIST_STATUSES,
    NULLABLE_DATES,
    ApiSchema,
    DateLike,
    ymd,
)
from services.data.providers.ratelimit import RateLimiter, RetryPolicy, Sleep

log = logging.getLogger(__name__)

DEFAULT_URL = "http://api.waditu.com/dataapi"  # DataApi's own default (it posts to f"{url}/{api_name}")


class TushareConfig(BaseSettings):
    """Tushare settings from the environment (LH_TUSHARE_TOKEN, LH_TUSHARE_URL, ...). The token is a SecretStr so
    it never appears in a repr, a log line or an error message."""

    model_config = SettingsConfigDict(env_prefix="LH_TUSHARE_", extra="ignore")

    token: SecretStr = SecretStr("")
    url: str = DEFAULT_URL
    timeout_s: float = Field(default=30.0, gt=0)
    # Calls per minute per endpoint. 200 is what a 2000-point account gets on the slower endpoints (index_daily);
    # raise it per endpoint for richer accounts, e.g. LH_TUSHARE_RATE_LIMITS='{"daily": 500}'. None: unlimited.
    calls_per_minute: int | None = Field(default=200, ge=1)
    rate_limits: dict[str, int | None] = Field(default_factory=dict)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    rate_limit_attempts: int = Field(default=10, ge=1)
    rate_limit_wait_s: float = Field(default=10.0, ge=0)
    rate_limit_max_wait_s: float = Field(default=60.0, ge=0)
    # Rows per page where an endpoint pages (defaults: the documented limits in port.API_SCHEMAS). Lower one if
    # Tushare lowers its limit: a page size above the server's limit would truncate answers silently.
    page_sizes: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any) -> TushareConfig:
        """Token, URL and timeout from the service's `Settings` (tushare_token, tushare_url, tushare_timeout_s: the
        same LH_TUSHARE_* variables); limits, retries and page sizes from the environment as above."""
        overrides: dict[str, Any] = {}
        for name in ("token", "url", "timeout_s"):
            value = getattr(settings, f"tushare_{name}", None)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value not in (None, ""):
                overrides[name] = value
        return cls(**overrides)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay_s=self.backoff_base_s,
            max_delay_s=self.backoff_max_s,
            rate_limit_attempts=self.rate_limit_attempts,
            rate_limit_delay_s=self.rate_limit_wait_s,
            rate_limit_max_delay_s=self.rate_limit_max_wait_s,
        )

    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(self.rate_limits, self.calls_per_minute)


# Fragments of Tushare's refusal messages (the client keeps only `msg`), e.g.
# "抱歉，您每分钟最多访问该接口200次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
_PER_MINUTE = ("每分钟最多访问", "每小时最多访问")
_PER_DAY = ("每天最多访问",)
_BAD_TOKEN = ("token不对", "token无效", "无效的token", "token错误")
_NO_PERMISSION = ("没有访问该接口的权限", "没有接口访问权限", "权限不足")


def _contains(message: str, fragments: tuple[str, ...]) -> bool:
    lowered = message.lower()
    return any(f.lower() in lowered for f in fragments)


class _Transient(Exception):
    """Internal: a failure worth retrying after a backoff."""


class _RateLimitReply(Exception):
    """Internal: Tushare's per-minute rate-limit reply."""


def _kind(state: RetryCallState) -> type[Exception]:
    """Which of the retried failures ended the attempt (`_RateLimitReply` or `_Transient`)."""
    error = state.outcome.exception() if state.outcome is not None else None
    return _RateLimitReply if isinstance(error, _RateLimitReply) else _Transient


class TushareProvider:
    """`MarketDataProvider` over Tushare Pro. Thread-safe client, so calls may run concurrently; the rate limiter
    paces them per endpoint. Build from the environment with `TushareProvider(TushareConfig())`."""

    def __init__(
        self,
        config: TushareConfig,
        *,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        token = config.token.get_secret_value()
        if not token:
            raise AuthenticationError("LH_TUSHARE_TOKEN is not set: a Tushare Pro token is required")
        self._client = DataApi(token=token, timeout=config.timeout_s)
        # The client's URL is a class attribute under name mangling; an instance attribute overrides it for this
        # client only (no global change, so two providers may point at different servers).
        self._client._DataApi__http_url = config.url.rstrip("/")
        self._url = config.url
        self._limiter = limiter or config.rate_limiter()
        self._retry = retry or config.retry_policy()
        self._sleep = sleep
        self._page_sizes = {api: config.page_sizes.get(api, s.page_size) for api, s in API_SCHEMAS.items()}
        for api, size in config.page_sizes.items():
            if api not in API_SCHEMAS or size < 1:
                raise ValueError(f"page size {size} for {api!r}: must be a known api and at least 1")

    def __repr__(self) -> str:
        return f"TushareProvider(url={self._url!r})"

    # -- the port ---------------------------------------------------------------------------------------------

    async def stock_basic(self, list_statuses: tuple[str, ...] = LIST_STATUSES) -> pd.DataFrame:
        # The endpoint answers one list_status per call (default L only), so ask for each and stack them.
        frames = [await self._fetch("stock_basic", {"list_status": status}) for status in list_statuses]
        return _concat("stock_basic", frames)

    async def trade_cal(self, start: DateLike, end: DateLike, exchange: str = "SSE") -> pd.DataFrame:
        # No documented row limit: ask year by year (≤ 366 rows a call), which any limit will fit.
        first, last = _span(start, end)
        frames = []
        for year in range(first.year, last.year + 1):
            lo, hi = max(first, date(year, 1, 1)), min(last, date(year, 12, 31))
            params = {"exchange": exchange, "start_date": ymd(lo), "end_date": ymd(hi)}
            frames.append(await self._fetch("trade_cal", params))
        return _concat("trade_cal", frames, sort_by=["cal_date"])

    async def daily(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        return await self._fetch("daily", {"trade_date": ymd(trade_date)}, expect_rows=expect_rows)

    async def adj_factor(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        return await self._fetch("adj_factor", {"trade_date": ymd(trade_date)}, expect_rows=expect_rows)

    async def daily_basic(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        return await self._fetch("daily_basic", {"trade_date": ymd(trade_date)}, expect_rows=expect_rows)

    async def stk_limit(self, trade_date: DateLike, *, expect_rows: bool = False) -> pd.DataFrame:
        return await self._fetch("stk_limit", {"trade_date": ymd(trade_date)}, expect_rows=expect_rows)

    async def suspend_d(self, trade_date: DateLike) -> pd.DataFrame:
        return await self._fetch("suspend_d", {"trade_date": ymd(trade_date)})

    async def index_daily(self, ts_code: str, start: DateLike, end: DateLike) -> pd.DataFrame:
        first, last = _span(start, end)
        params = {"ts_code": ts_code, "start_date": ymd(first), "end_date": ymd(last)}
        return _sorted(await self._fetch("index_daily", params), ["trade_date"])

    async def index_weight(self, index_code: str, start: DateLike, end: DateLike) -> pd.DataFrame:
        # Monthly snapshots; the documentation asks for one calendar month per call, which also keeps every answer
        # far below any row limit (CSI 1000: 1,000 rows a month).
        first, last = _span(start, end)
        frames = []
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            lo = max(first, date(year, month, 1))
            hi = min(last, date(year, month, calendar.monthrange(year, month)[1]))
            params = {"index_code": index_code, "start_date": ymd(lo), "end_date": ymd(hi)}
            frames.append(await self._fetch("index_weight", params))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return _concat("index_weight", frames, sort_by=["trade_date", "con_code"])

    async def namechange(
        self, ts_code: str | None = None, start: DateLike | None = None, end: DateLike | None = None
    ) -> pd.DataFrame:
        params: dict[str, Any] = {}
        if ts_code:
            params["ts_code"] = ts_code
        if start is not None:
            params["start_date"] = ymd(start)
        if end is not None:
            params["end_date"] = ymd(end)
        return await self._fetch("namechange", params)

    # -- machinery --------------------------------------------------------------------------------------------

    async def _fetch(self, api: str, params: Mapping[str, Any], *, expect_rows: bool = False) -> pd.DataFrame:
        """All pages of one request; with `expect_rows`, an empty answer is retried like a transient failure."""
        schema = API_SCHEMAS[api]

        def log_retry(state: RetryCallState) -> None:
            log.warning(
                "tushare empty answer where rows are expected; retrying",
                extra={
                    "api": api,
                    "params": dict(params),
                    "attempt": state.attempt_number,
                    "delay_s": round(state.upcoming_sleep, 3),
                },
            )

        def not_ready(state: RetryCallState) -> pd.DataFrame:
            raise DataNotReady(
                f"Tushare {api} {dict(params)} returned no rows {state.attempt_number} times although rows were"
                " expected (an open trading day): not published yet, or a provider fault; not stored as an empty day",
                api=api,
            )

        retrying = AsyncRetrying(
            retry=retry_if_result(lambda frame: expect_rows and not len(frame)),
            stop=stop_after_attempt(self._retry.max_attempts),
            wait=lambda state: self._retry.transient_delay(state.attempt_number),
            sleep=self._sleep,
            before_sleep=log_retry,
            retry_error_callback=not_ready,
        )
        frame: pd.DataFrame = await retrying(self._all_pages, schema, params)
        return frame

    async def _all_pages(self, schema: ApiSchema, params: Mapping[str, Any]) -> pd.DataFrame:
        page_size = self._page_sizes[schema.name]
        if page_size is None:
            return await self._call(schema, dict(params))
        pages: list[pd.DataFrame] = []
        offset = 0
        while True:
            page = await self._call(schema, {**params, "limit": page_size, "offset": offset})
            if pages and len(page) and len(pages[-1]) and page.iloc[0].equals(pages[-1].iloc[0]):
                raise ProviderDataError(
                    f"Tushare {schema.name} returned the same page for offset {offset}: offset is not honoured",
                    api=schema.name,
                )
            pages.append(page)
            if len(page) < page_size:
                break
            offset += page_size
        return pages[0] if len(pages) == 1 else pd.concat(pages, ignore_index=True)

    async def _call(self, schema: ApiSchema, params: dict[str, Any]) -> pd.DataFrame:
        """One request with retries: transient failures back off exponentially, rate-limit replies pause the
        endpoint for everyone (each kind counted against its own limit), anything else is raised at once."""
        api = schema.name
        seen = {_Transient: 0, _RateLimitReply: 0}

        def count(state: RetryCallState) -> None:
            seen[_kind(state)] += 1

        def give_up(state: RetryCallState) -> bool:
            if _kind(state) is _RateLimitReply:
                return seen[_RateLimitReply] >= self._retry.rate_limit_attempts
            return seen[_Transient] >= self._retry.max_attempts

        def wait(state: RetryCallState) -> float:
            # A rate-limit reply pauses the endpoint in the limiter (every caller waits there), not this caller.
            return 0.0 if _kind(state) is _RateLimitReply else self._retry.transient_delay(seen[_Transient])

        def before_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            if _kind(state) is _RateLimitReply:
                delay = self._retry.rate_limit_delay(seen[_RateLimitReply])
                log.warning(
                    "tushare rate-limit reply; pausing the endpoint",
                    extra={"api": api, "refusals": seen[_RateLimitReply], "delay_s": round(delay, 3)},
                )
                self._limiter.pause(api, delay)
            else:
                log.warning(
                    "tushare call failed; retrying",
                    extra={
                        "api": api,
                        "attempt": seen[_Transient],
                        "error": str(error),
                        "delay_s": round(state.upcoming_sleep, 3),
                    },
                )

        async def once() -> pd.DataFrame:
            await self._limiter.acquire(api)
            raw = await asyncio.to_thread(self._query, api, ",".join(schema.fields), params)
            return _normalise(schema, raw)

        retrying = AsyncRetrying(
            retry=retry_if_exception_type((_Transient, _RateLimitReply)),
            after=count,
            stop=give_up,
            wait=wait,
            sleep=self._backoff,
            before_sleep=before_retry,
            reraise=True,
        )
        try:
            frame: pd.DataFrame = await retrying(once)
            return frame
        except _RateLimitReply as reply:
            raise RateLimited(
                f"Tushare {api} kept refusing for rate after {seen[_RateLimitReply]} attempts: {reply}", api=api
            ) from None
        except _Transient as exc:
            raise ProviderUnavailable(
                f"Tushare {api} unavailable after {seen[_Transient]} attempts: {exc}", api=api
            ) from exc.__cause__

    async def _backoff(self, seconds: float) -> None:
        if seconds > 0:  # a rate-limit reply waits in the limiter instead
            await self._sleep(seconds)

    def _query(self, api: str, fields: str, params: dict[str, Any]) -> pd.DataFrame:
        """The real client call, in a worker thread, with its failures sorted into retry / raise."""
        try:
            frame = self._client.query(api, fields=fields, **params)
        except requests.Timeout as exc:
            raise _Transient(f"timed out ({type(exc).__name__})") from exc
        except requests.ConnectionError as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from exc
        except requests.RequestException as exc:
            raise _Transient(f"request failed ({type(exc).__name__})") from exc
        except json.JSONDecodeError as exc:
            raise ProviderDataError(f"Tushare {api} replied with something that is not JSON: {exc}", api=api) from exc
        except Exception as exc:
            if type(exc) is not Exception:  # KeyError, TypeError, ValueError from a reply of the wrong shape
                raise ProviderDataError(
                    f"Tushare {api} reply is malformed ({type(exc).__name__}: {exc})", api=api
                ) from exc
            raise _refusal(api, str(exc)) from None
        if not isinstance(frame, pd.DataFrame):
            raise ProviderDataError(f"Tushare {api} client returned {type(frame).__name__}", api=api)
        if len(frame.columns) == 0:
            raise _Transient("HTTP error status (the tushare client returned an empty frame without columns)")
        return frame


def _refusal(api: str, message: str) -> Exception:
    """A `code != 0` reply, classified by its message."""
    if _contains(message, _PER_MINUTE):
        return _RateLimitReply(message)
    if _contains(message, _PER_DAY):
        return RateLimited(f"Tushare {api}: daily quota used up: {message}", api=api, daily_quota=True)
    if _contains(message, _NO_PERMISSION):
        return PermissionDenied(f"Tushare {api}: the token is not entitled to this endpoint: {message}", api=api)
    if _contains(message, _BAD_TOKEN):
        return AuthenticationError(f"Tushare refused the token (check LH_TUSHARE_TOKEN): {message}", api=api)
    return ProviderRequestError(f"Tushare {api} refused the request: {message}", api=api)


def _normalise(schema: ApiSchema, raw: pd.DataFrame) -> pd.DataFrame:
    """The requested columns in the documented order, numbers as float64 (or int64), dates checked."""
    missing = [f for f in schema.fields if f not in raw.columns and f not in schema.optional]
    if missing:
        raise ProviderDataError(
            f"Tushare {schema.name} reply lacks requested columns {missing} (got {list(raw.columns)})", api=schema.name
        )
    absent = [f for f in schema.fields if f not in raw.columns]  # optional ones only (checked above): empty values
    if absent:
        raw = raw.assign(**dict.fromkeys(absent, None))
    frame = raw.loc[:, list(schema.fields)].reset_index(drop=True)
    if frame.empty:
        return frame
    for column in schema.numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            example = frame[column][bad].iloc[0]
            raise ProviderDataError(
                f"Tushare {schema.name} column {column} holds non-numbers, e.g. {example!r}", api=schema.name
            )
        if column in schema.integers:
            if values.isna().any():
                raise ProviderDataError(f"Tushare {schema.name} column {column} has empty values", api=schema.name)
            values = values.astype("int64")
        else:
            values = values.astype("float64")
        frame[column] = values
    for column in schema.dates:
        texts = frame[column]
        present = texts.notna()
        ok = texts[present].astype(str).str.fullmatch(r"\d{8}")
        if not ok.all():
            example = texts[present][~ok].iloc[0]
            raise ProviderDataError(
                f"Tushare {schema.name} column {column} holds {example!r}, not a YYYYMMDD date", api=schema.name
            )
        if column not in NULLABLE_DATES and not present.all():
            raise ProviderDataError(f"Tushare {schema.name} column {column} has empty dates", api=schema.name)
        frame[column] = texts.where(present, None)
    return frame


def _span(start: DateLike, end: DateLike) -> tuple[date, date]:
    first, last = (date(int(t[:4]), int(t[4:6]), int(t[6:])) for t in (ymd(start), ymd(end)))
    if first > last:
        raise ValueError(f"start {first} is after end {last}")
    return first, last


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values(by, kind="stable").reset_index(drop=True) if len(frame) else frame


def _concat(api: str, frames: list[pd.DataFrame], sort_by: list[str] | None = None) -> pd.DataFrame:
    non_empty = [f for f in frames if len(f)]
    if not non_empty:
        return frames[0] if frames else pd.DataFrame(columns=list(API_SCHEMAS[api].fields))
    frame = non_empty[0] if len(non_empty) == 1 else pd.concat(non_empty, ignore_index=True)
    return _sorted(frame, sort_by) if sort_by else frame


__all__ = ["DEFAULT_URL", "ProviderError", "TushareConfig", "TushareProvider"]
