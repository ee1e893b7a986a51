"""What a backtest reads from the data service, over REST only (never its tables): the bars of the universe from the
bulk Arrow endpoint (`GET /v1/bars/bulk`), cached on local disk per (data version, query); index constituents and
the securities list (to resolve an index or a filter universe); and the benchmark's index bars. The bars carry the
daily_basic fields the strategy declares it reads (`Strategy.bar_fields`, e.g. pe_ttm): only those, as a whole
market of daily_basic (5,000 symbols x 10 years, 15 fields) would take 1.5 GB.

The bulk answer is streamed: its `X-LH-Data-Version` header comes first, so a worker that has that version's answer
on disk stops reading there, and a data update (a new version) is never served stale. The cache is shared by the
worker processes of one machine (files written under a temporary name, then renamed) and trimmed to a size cap,
least recently used first.

A data-service outage is transient, but the job queue can only acknowledge or dead-letter a job, and a
dead-lettered job would never run again. So the outage is ridden out here: a failing request is retried with
exponential backoff a few times; if the service is still unavailable, the backtest fails with an error that says
so (the user resubmits), rather than blocking the queue for longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.core.domain.codes import InvalidTsCode, parse_ts_code
from shared.core.market.calendar import FIRST_YEAR, LAST_YEAR, sse_trading_days
from shared.platform.errors import ServiceError, Unavailable
from shared.platform.http import ServiceClient

log = logging.getLogger(__name__)

T = TypeVar("T")

# Up to this many codes go in the bulk query; more (a board, the whole market) fetch the whole market for the range,
# which one cache entry then serves for every such universe (and keeps the URL short).
MAX_CODES_IN_QUERY = 400
BULK_TIMEOUT_S = 300.0
PARTIAL_MAX_AGE_S = 3600.0  # a partial download older than this was cut short (see _prune)
DEFAULT_CACHE_MAX_BYTES = 2 << 30
VERSION_HEADER = "X-LH-Data-Version"


DATA_VERSION_KEY = b"lh_data_version"  # schema metadata of the tables `MarketData.bars` returns


def data_version(table: pa.Table) -> str:
    """The data service's data version the bars were served at ("" when unknown)."""
    return (table.schema.metadata or {}).get(DATA_VERSION_KEY, b"").decode()


class BarsUnavailable(Exception):
    """The data service could not give what the backtest needs: still down after the retries, or it refused."""


class MarketData:
    def __init__(
        self,
        client: ServiceClient,
        headers: Callable[[], dict[str, str]],
        cache_dir: Path,
        *,
        cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
        attempts: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        """Waits backoff_s, 2*backoff_s, ... between attempts (0.5 + 1 + 2 s by default)."""
        self.client = client
        self.headers = headers
        self.cache_dir = cache_dir
        self.cache_max_bytes = cache_max_bytes
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.downloads = 0  # bulk answers read from the data service (not from the cache)

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "data service unavailable; retrying",
                extra={
                    "what": what,
                    "attempt": state.attempt_number,
                    "retry_in_s": state.upcoming_sleep,
                    "error": getattr(exc, "message", str(exc)),
                },
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Unavailable),  # no answer, or a 5xx
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s),  # backoff_s, 2 * backoff_s, ...
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await call()
        except Unavailable as exc:
            raise BarsUnavailable(
                f"data_unavailable: the data service did not give {what} after {self.attempts} attempts "
                f"({exc.code}: {exc.message})"
            ) from exc
        except ServiceError as exc:  # a 4xx: asking again will not help
            raise BarsUnavailable(f"data_refused: the data service refused {what} ({exc.code}: {exc.message})") from exc
        raise AssertionError("unreachable: the loop returns or raises")

    async def _get_json(self, path: str, params: dict[str, str]) -> Any:
        return await self.client.get_json(path, params=params, headers=self.headers())

    # --- bars -----------------------------------------------------------------------------------------------------
    async def bars(self, ts_codes: Sequence[str], start: date, end: date, fields: Sequence[str] = ()) -> pa.Table:
        """The unadjusted daily bars of `ts_codes` in [start, end] as the bulk endpoint serves them (prices and
        amount in int64 fen, vol in shares, trade_date date32), with the daily_basic `fields` asked for (ratios
        float64, share counts int64 shares, market values int64 fen; null where there is none)."""
        codes = sorted(set(ts_codes))
        params = {"format": "arrow", "start": start.isoformat(), "end": end.isoformat()}
        if fields:
            params["fields"] = ",".join(sorted(set(fields)))
        if len(codes) <= MAX_CODES_IN_QUERY:
            params["ts_codes"] = ",".join(codes)
        what = f"the bars of {len(codes)} symbol(s) from {start} to {end}"
        path = await self._retry(what, lambda: self._bulk(params))
        table = await asyncio.to_thread(_read_stream, path)
        if "ts_codes" not in params:
            table = table.filter(pc.is_in(pc.cast(table["ts_code"], pa.string()), value_set=pa.array(codes)))
        # The cache file is named after the data version it holds: carried along for callers that key on it.
        version = path.name.removeprefix("bars-v").split("-", 1)[0]
        return table.replace_schema_metadata({**(table.schema.metadata or {}), DATA_VERSION_KEY: version.encode()})

    async def _bulk(self, params: dict[str, str]) -> Path:
        response = await self.client.open_stream(
            "GET", "/v1/bars/bulk", params=params, headers=self.headers(), timeout=BULK_TIMEOUT_S
        )
        try:
            if response.status_code >= 400:
                await response.aread()
                _raise_for_status(response)
            version = response.headers.get(VERSION_HEADER)
            if not version:
                raise ValueError(f"the data service's bulk answer has no {VERSION_HEADER} header")
            key = hashlib.sha256(json.dumps([version, sorted(params.items())]).encode()).hexdigest()[:32]
            path = self.cache_dir / f"bars-v{version}-{key}.arrow"
            if path.exists():
                os.utime(path)  # recently used: pruned last
                return path  # the `finally` closes the stream unread
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            # Unique per download: one process runs backtests and optimisation tasks, which may fetch the same
            # answer at once; each writes its own file and the last rename wins (the contents are the same).
            partial = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex}.part")
            try:
                with partial.open("wb") as out:
                    async for chunk in response.aiter_bytes(1 << 20):
                        out.write(chunk)
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
        except httpx.TransportError as exc:  # the connection broke while the body was read
            raise Unavailable("data_unavailable", f"the data service did not answer: {type(exc).__name__}") from exc
        finally:
            await response.aclose()
        self.downloads += 1
        self._prune(keep=path)
        return path

    def _prune(self, keep: Path) -> None:
        # Downloads cut short by a killed process leave their partial file: gone after an hour (no download is
        # that slow), so they never pile up outside the cap.
        stale = time.time() - PARTIAL_MAX_AGE_S
        for partial in self.cache_dir.glob("bars-v*.part"):
            with contextlib.suppress(FileNotFoundError):
                if partial.stat().st_mtime < stale:
                    partial.unlink()
        files = []
        for path in self.cache_dir.glob("bars-v*.arrow"):
            with contextlib.suppress(FileNotFoundError):  # another worker pruned it meanwhile
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.cache_max_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size

    # --- universes and the benchmark --------------------------------------------------------------------------------
    async def index_constituents(self, index: str, on: date) -> list[str]:
        """The index's constituents from the newest weights published on or before `on`."""
        body = await self._retry(
            f"the constituents of {index}",
            lambda: self._get_json(f"/v1/indexes/{index}/constituents", {"trade_date": on.isoformat()}),
        )
        if body.get("weights_date") is None:
            raise BarsUnavailable(f"no_constituents: the data service has no weights of {index} on or before {on}")
        return _stock_codes(row["con_code"] for row in body["constituents"])

    async def filtered_securities(
        self,
        *,
        on: date,
        board: str | None,
        industry: str | None,
        exclude_st: bool,
        listed_before: date | None,
    ) -> list[str]:
        """The stocks listed on or before `listed_before` (default `on`) and not delisted by then, of the board and
        industry when given, without those under an ST name on `on` when `exclude_st`."""
        params = {"listed_on": (listed_before or on).isoformat()}
        if board is not None:
            params["board"] = board
        if industry is not None:
            params["industry"] = industry
        rows = await self._retry("the securities list", lambda: self._get_json("/v1/securities", params))
        codes = _stock_codes(row["ts_code"] for row in rows)
        if exclude_st and codes:
            st_rows = await self._retry(
                "the ST list", lambda: self._get_json("/v1/securities", {"st_on": on.isoformat()})
            )
            st = {row["ts_code"] for row in st_rows}
            codes = [c for c in codes if c not in st]
        return codes

    async def trading_days(self, start: date, end: date) -> list[date]:
        """The exchange's trading days in [start, end] from the data service's stored calendar."""
        body = await self._retry(
            "the trade calendar",
            lambda: self._get_json("/v1/calendar", {"start": start.isoformat(), "end": end.isoformat()}),
        )
        return [date.fromisoformat(str(d)) for d in body["trading_days"]]

    async def resolve_universe(self, universe: dict[str, Any], on: date) -> list[str]:
        """The codes of a universe (shared.platform.universe.Universe as JSON) on `on`: the list as given, the
        index's constituents, or the stocks the filter passes. May be empty (the caller says what that means)."""
        if universe.get("index"):
            return await self.index_constituents(universe["index"], on)
        spec = universe.get("filter")
        if spec is not None:
            listed_before = spec.get("listed_before")
            return await self.filtered_securities(
                on=on,
                board=spec.get("board"),
                industry=spec.get("industry"),
                exclude_st=bool(spec.get("exclude_st", False)),
                listed_before=date.fromisoformat(listed_before) if listed_before else None,
            )
        return list(universe.get("ts_codes") or [])

    async def index_bars(self, index: str, start: date, end: date) -> pd.DataFrame | None:
        """trade_date (date), close, pre_close of the index; None when the data service does not know the index."""
        try:
            body = await self._retry(
                f"the bars of index {index}",
                lambda: self._get_json(
                    f"/v1/indexes/{index}/bars", {"start": start.isoformat(), "end": end.isoformat()}
                ),
            )
        except BarsUnavailable as exc:
            if isinstance(exc.__cause__, ServiceError) and exc.__cause__.code == "unknown_index":
                return None
            raise
        rows = [r for r in body["bars"] if r.get("close") is not None]
        return pd.DataFrame(
            {
                "trade_date": [date.fromisoformat(r["trade_date"]) for r in rows],
                "close": np.array([float(r["close"]) for r in rows], dtype=np.float64),
                "pre_close": np.array(
                    [float(r["pre_close"]) if r.get("pre_close") is not None else np.nan for r in rows],
                    dtype=np.float64,
                ),
            }
        )


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code >= 500:
        raise Unavailable("data_error", f"the data service failed with HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        body = {}
    raise ServiceError(
        str(body.get("code", "data_rejected")),
        str(body.get("message", response.text[:200])),
        status_code=response.status_code,
    )


def _stock_codes(codes: Any) -> list[str]:
    """A-share stock codes only (an index may list other instruments), normalised, sorted, once each."""
    out: set[str] = set()
    for code in codes:
        try:
            out.add(parse_ts_code(str(code)).ts_code)
        except InvalidTsCode:
            log.warning("not a stock code; left out of the universe", extra={"ts_code": code})
    return sorted(out)


def _read_stream(path: Path) -> pa.Table:
    with path.open("rb") as source:
        return ipc.open_stream(source).read_all()


# The bulk answer's daily_basic columns stored in other units than Tushare's: the divisor back to Tushare's
# (share counts in shares -> 万股, market values in fen -> 万元). The ratios are served as Tushare gives them.
DAILY_BASIC_DIVISORS = {
    "total_share": 10_000.0, "float_share": 10_000.0, "free_share": 10_000.0,
    "total_mv": 1_000_000.0, "circ_mv": 1_000_000.0,
}  # fmt: skip
BAR_COLUMNS = frozenset(("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount"))


def run_calendar(frame: pd.DataFrame, start: date, end: date) -> list[date]:
    """The trading days of a run over `frame`'s bars: the built-in SSE calendar where it covers [start, end],
    clipped to the span the bars cover (so a day on which every symbol was suspended still counts as a day, and a
    day before the first bar does not); empty where the built-in calendar does not reach (the engine then goes by
    the bars alone)."""
    if not (start.year >= FIRST_YEAR and end.year <= LAST_YEAR) or frame.empty:
        return []
    days = pd.to_datetime(frame["trade_date"]).dt.date
    days = days[(days >= start) & (days <= end)]
    if days.empty:
        return []
    first, last = days.min(), days.max()
    return sse_trading_days(first, last)


def engine_frame(table: pa.Table) -> pd.DataFrame:
    """The bulk answer in the engine's Tushare layout: prices in CNY (fen / 100, which the engine rounds back to the
    same fen exactly), vol in lots of 100 (an odd-lot volume becomes a fractional lot, which the volume cap handles
    as shares again), amount in thousand CNY; daily_basic columns in Tushare's units under its names (float64, NaN
    where there is none), which the engine passes to the strategy as extra columns."""
    fen = 100.0
    frame = pd.DataFrame(
        {
            "ts_code": pc.cast(table["ts_code"], pa.string()).to_numpy(zero_copy_only=False),
            "trade_date": table["trade_date"].to_pandas(date_as_object=False),
        }
    )
    for name in ("open", "high", "low", "close", "pre_close"):
        frame[name] = table[name].to_numpy().astype(np.float64) / fen
    frame["vol"] = table["vol"].to_numpy().astype(np.float64) / 100.0
    frame["amount"] = table["amount"].to_numpy().astype(np.float64) / (fen * 1000.0)
    if "adj_factor" in table.column_names:
        factors = pd.Series(table["adj_factor"].to_numpy(zero_copy_only=False).astype(np.float64))
        if factors.isna().any():
            # A day without a factor keeps the symbol's last known one (1 before any is known): a 1 among factors of
            # about 5 would scale the position down and back up on the next ex-date and destroy equity.
            order = np.lexsort((frame["trade_date"].to_numpy(), frame["ts_code"].to_numpy()))
            ordered = factors.iloc[order].groupby(frame["ts_code"].to_numpy()[order]).ffill().fillna(1.0)
            factors = ordered.sort_index()
        frame["adj_factor"] = factors.to_numpy()
    for name in table.column_names:
        if name in BAR_COLUMNS or name == "adj_factor":
            continue
        values = table[name].to_numpy(zero_copy_only=False).astype(np.float64)  # null -> NaN
        frame[name] = values / DAILY_BASIC_DIVISORS[name] if name in DAILY_BASIC_DIVISORS else values
    return frame
