"""The data service's real-time provider (docs/quotes.md): takes the rounds of snapshots a feed delivers (the QMT
bridge's, or the replay feed's), drops and counts the bad ones, keeps the latest quote per code with the day's limit
prices, builds 1-minute bars, and publishes `quotes.snapshot` (one event per round) and `bars.1m` on the bus.

One provider per data process; the feed connects to one of them. What it stores is in the `LiveStore` (Redis in
fleet mode), so every data process answers `GET /v1/quotes/{ts_code}/live` alike."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as PromCounter

from services.data.quotes import listing_day_of, next_session_limits
from services.data.realtime.bars import Bar, MinuteBars
from services.data.realtime.snapshots import (
    NOT_A_STOCK,
    REASONS,
    STALE,
    UNKNOWN_CODE,
    VOLUME_DECREASED,
    Refused,
    Tick,
    fen_text,
    read_snapshot,
)
from services.data.realtime.store import LiveStore
from services.data.store import DataStore, SecurityRecord
from shared.core.domain.codes import Board
from shared.platform.bus import EventBus
from shared.platform.clock import EXCHANGE_TZ
from shared.platform.events.envelope import make_json_event

log = logging.getLogger(__name__)

SOURCE = "data"
QUOTES_SNAPSHOT = "quotes.snapshot"
BARS_1M = "bars.1m"
SECURITIES_RELOAD_S = 60.0  # an unknown code makes the provider re-read the securities at most this often
RECENT_LISTING_DAYS = 31  # as services/data/quotes.py: only a listing this recent can be in its first sessions


class QuoteMetrics:
    def __init__(self, registry: CollectorRegistry, now: Callable[[], datetime]) -> None:
        self.received = PromCounter(
            "lh_quotes_received_total", "Snapshots (one per code) a real-time feed delivered, by source", ["source"],
            registry=registry,
        )  # fmt: skip
        self.rejected = PromCounter(
            "lh_quotes_rejected_total", "Snapshots dropped (never stored), by reason", ["reason"], registry=registry
        )
        for reason in REASONS:
            self.rejected.labels(reason=reason)
        self.refused_bridges = PromCounter(
            "lh_quotes_bridge_refused_total", "Bridge connections refused on the quotes channel, by code", ["code"],
            registry=registry,
        )  # fmt: skip
        self.latest: datetime | None = None
        self._now = now
        self.age = Gauge(
            "lh_quotes_snapshot_age_seconds",
            "Seconds since the time of the newest snapshot this process received (NaN: none yet): feed freshness",
            registry=registry,
        )
        self.age.set_function(self._age)

    def _age(self) -> float:
        if self.latest is None:
            return math.nan
        return max((self._now() - self.latest).total_seconds(), 0.0)


@dataclass
class RoundResult:
    """What one round did: how many quotes were stored, how many dropped by reason, which bars closed."""

    accepted: int = 0
    unchanged: int = 0  # snapshots repeating a code's latest (its time unchanged): skipped, not refused
    not_stocks: int = 0  # an index's, a fund's, a bond's (xtdata's whole market has them): not quoted, not refused
    rejected: Counter[str] = field(default_factory=Counter)
    bars: list[Bar] = field(default_factory=list)
    seconds: float = 0.0  # from arrival to published


_encode = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps(..., separators) makes one a call


def _text(fen: int | None) -> str | None:
    return fen_text(fen) if fen is not None else None


class RealtimeQuotes:
    def __init__(
        self,
        store: DataStore,
        live: LiveStore,
        bus: EventBus,
        metrics: QuoteMetrics,
        *,
        grace_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.live = live
        self.bus = bus
        self.metrics = metrics
        self.bars = MinuteBars(grace_s)
        self.monotonic = monotonic
        self._securities: dict[str, SecurityRecord] = {}
        self._loaded_at: float | None = None
        self._latest: dict[str, Tick] = {}
        self._seen_times: dict[str, str] = {}  # each code's latest snapshot's time, as the feed wrote it
        self._not_stocks: set[str] = set()  # the feed's codes that are no A-share stock: skipped unread
        self._limits: dict[tuple[str, date, int], tuple[int | None, int | None]] = {}
        self._listing_days: dict[tuple[str, date], int | None] = {}
        self._lock = asyncio.Lock()  # one round at a time: bars and "newer than the latest" need the order

    # --- the securities the feed may quote ----------------------------------------------------------------------

    async def _known(self, codes: set[str]) -> None:
        """Load the securities at the first round, and again (at most every SECURITIES_RELOAD_S) when a round names
        a code not among them (a listing stored since)."""
        now = self.monotonic()
        stale = self._loaded_at is None or now - self._loaded_at >= SECURITIES_RELOAD_S
        if self._loaded_at is None or (stale and not codes <= self._securities.keys()):
            try:
                self._securities = {s.ts_code: s for s in await self.store.list_securities()}
            except Exception:
                if self._loaded_at is None:
                    raise  # nothing known yet: the round cannot be checked
                log.warning("could not re-read the securities; the ones read before are used", exc_info=True)
            self._loaded_at = now

    async def load_securities(self) -> None:
        await self._known(set())

    def security(self, ts_code: str) -> SecurityRecord | None:
        return self._securities.get(ts_code)

    async def limits(self, security: SecurityRecord, day: date, pre_close: int) -> tuple[int | None, int | None]:
        """Limit-up and limit-down (fen) of trading day `day` around its reference price `pre_close` (fen), by the
        rules the data service's quotes use (services/data/quotes.py), or (None, None) on a day without limits."""
        key = (security.ts_code, day, pre_close)
        found = self._limits.get(key)
        if found is not None:
            return found
        listing_day = await self._listing_day(security, day)
        limits = next_session_limits(
            Board(security.board), is_st=security.is_st, reference_fen=pre_close, session=day, listing_day=listing_day
        )
        found = (None, None) if limits is None else (int(limits.limit_up * 100), int(limits.limit_down * 100))
        if len(self._limits) > 50_000:
            self._limits.clear()  # a day's worth is a few thousand: older days go
        self._limits[key] = found
        return found

    async def _listing_day(self, security: SecurityRecord, day: date) -> int | None:
        if (day - security.list_date).days > RECENT_LISTING_DAYS or day < security.list_date:
            return None
        key = (security.ts_code, day)
        if key not in self._listing_days:
            self._listing_days[key] = listing_day_of(await self.store.count_open_days(security.list_date, day))
        return self._listing_days[key]

    # --- a round -------------------------------------------------------------------------------------------------

    async def ingest(self, raws: Sequence[Any], source: str) -> RoundResult:
        """Take one round of snapshots from a feed: validate, store the good ones as the latest quotes, build bars,
        publish `quotes.snapshot` (and `bars.1m` for bars it closed)."""
        started = time.perf_counter()
        result = RoundResult()
        self.metrics.received.labels(source=source).inc(len(raws))
        async with self._lock:
            ticks: list[Tick] = []
            seen = self._seen_times
            for raw in raws:
                # A full-market snapshot repeats the codes that did not trade since the last one, with their time
                # unchanged: the same quote again, skipped before it is read.
                if type(raw) is dict:
                    code = raw.get("ts_code")
                    if code in seen and seen[code] == raw.get("time"):
                        result.unchanged += 1
                        continue
                    if code in self._not_stocks:
                        result.not_stocks += 1
                        continue
                try:
                    ticks.append(read_snapshot(raw))
                except Refused as exc:
                    if exc.reason == NOT_A_STOCK:
                        result.not_stocks += 1
                        if len(self._not_stocks) < 100_000:
                            self._not_stocks.add(raw["ts_code"])
                    else:
                        result.rejected[exc.reason] += 1
            await self._known({t.ts_code for t in ticks})
            quotes: list[dict[str, Any]] = []
            newest: datetime | None = None
            time_text, day, local_text = "", date.min, ""  # a round's snapshots mostly share their time
            for tick in ticks:
                reason = self._check(tick)
                if reason is not None:
                    result.rejected[reason] += 1
                    continue
                if tick.time_text != time_text or not time_text:
                    local = tick.time.astimezone(EXCHANGE_TZ)
                    time_text, day, local_text = tick.time_text, local.date(), local.isoformat()
                limits = self._limits.get((tick.ts_code, day, tick.pre_close))
                if limits is None:
                    limits = await self.limits(self._securities[tick.ts_code], day, tick.pre_close)
                self._latest[tick.ts_code] = tick
                self._seen_times[tick.ts_code] = tick.time_text
                quotes.append(self._quote(tick, limits[0], limits[1], source, local_text))
                if newest is None or tick.time > newest:
                    newest = tick.time
                bar = self.bars.add(tick)
                if bar is not None:
                    result.bars.append(bar)
            for reason, count in result.rejected.items():
                self.metrics.rejected.labels(reason=reason).inc(count)
            if result.rejected:
                log.warning("snapshots dropped", extra={"source": source, "reasons": dict(result.rejected)})
            result.accepted = len(quotes)
            if quotes and newest is not None:
                as_of = newest.astimezone(EXCHANGE_TZ)
                if self.metrics.latest is None or as_of > self.metrics.latest:
                    self.metrics.latest = as_of
                await self._store_quotes(quotes, source, as_of)
                payload = {"as_of": as_of.isoformat(), "source": source, "quotes": quotes}  # QuotesSnapshot
                await self._publish(QUOTES_SNAPSHOT, payload)
                await self._publish_bars(result.bars, as_of)
        result.seconds = time.perf_counter() - started
        return result

    def _check(self, tick: Tick) -> str | None:
        if tick.ts_code not in self._securities:
            return UNKNOWN_CODE
        latest = self._latest.get(tick.ts_code)
        if latest is not None:
            if tick.time <= latest.time:
                return STALE
            same_day = tick.time.astimezone(EXCHANGE_TZ).date() == latest.time.astimezone(EXCHANGE_TZ).date()
            if same_day and (tick.volume < latest.volume or tick.amount < latest.amount):
                return VOLUME_DECREASED
        return None

    @staticmethod
    def _quote(tick: Tick, up: int | None, down: int | None, source: str, local_time: str) -> dict[str, Any]:
        """The quote as `LiveQuote`'s JSON, built directly (every value was checked reading the snapshot);
        `local_time`: its time at +08:00, ISO 8601."""
        return {
            "ts_code": tick.ts_code,
            "time": local_time,
            "last": fen_text(tick.last),
            "open": _text(tick.open),
            "high": _text(tick.high),
            "low": _text(tick.low),
            "pre_close": fen_text(tick.pre_close),
            "volume": tick.volume,
            "amount": fen_text(tick.amount),
            "bid": [{"price": fen_text(p), "volume": v} for p, v in tick.bid],
            "ask": [{"price": fen_text(p), "volume": v} for p, v in tick.ask],
            "limit_up": _text(up),
            "limit_down": _text(down),
            "source": source,
        }

    async def _store_quotes(self, quotes: list[dict[str, Any]], source: str, as_of: datetime) -> None:
        feed = json.dumps({"source": source, "as_of": as_of.isoformat()})
        try:
            await self.live.put_quotes([(q["ts_code"], _encode(q)) for q in quotes], feed)
        except Exception:
            # Published all the same (the event is true); the reads answer 503 while the store is down.
            log.error("could not store the latest quotes", exc_info=True, extra={"quotes": len(quotes)})

    async def expire(self, now: datetime) -> list[Bar]:
        """The timer: close the bars whose minute ended the grace period before `now`, store and publish them."""
        async with self._lock:
            bars = self.bars.expire(now)
            await self._publish_bars(bars, now)
        return bars

    async def _publish(self, event_type: str, payload: dict[str, Any]) -> None:
        try:
            await self.bus.publish(make_json_event(event_type, payload, source=SOURCE))
        except Exception:
            # Ephemeral events: the next round supersedes this one; the stored quotes and bars stand.
            log.error("could not publish %s", event_type, exc_info=True)

    async def _publish_bars(self, bars: list[Bar], closed_at: datetime) -> None:
        if not bars:
            return
        minute_bars = [
            {
                "ts_code": b.ts_code,
                "minute": b.minute.isoformat(),
                "open": fen_text(b.open),
                "high": fen_text(b.high),
                "low": fen_text(b.low),
                "close": fen_text(b.close),
                "volume": b.volume,
                "amount": fen_text(b.amount),
            }
            for b in bars
        ]  # MinuteBar's JSON
        by_day: dict[date, list[tuple[str, str]]] = {}
        for bar, row in zip(bars, minute_bars, strict=True):
            by_day.setdefault(bar.minute.date(), []).append((bar.ts_code, _encode(row)))
        try:
            for day, rows in by_day.items():
                await self.live.add_bars(day, rows)
        except Exception:
            log.error("could not store minute bars", exc_info=True, extra={"bars": len(bars)})
        payload = {"bars": minute_bars, "closed_at": closed_at.astimezone(EXCHANGE_TZ).isoformat()}  # BarsMinute
        await self._publish(BARS_1M, payload)
