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
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as PromCounter

from services.data.quotes import SessionBand, listing_day_of, next_session_limits, session_bands
from services.data.realtime.bars import Bar, MinuteBars
from services.data.realtime.columns import _PRICES, Round, band_refusals, json_price, read_round
from services.data.realtime.gc_pause import collection_paused
from services.data.realtime.snapshots import (
    _TEXT,
    FUTURE,
    NOT_A_STOCK,
    OTHER_DAY,
    REASONS,
    STALE,
    UNKNOWN_CODE,
    VOLUME_DECREASED,
    fen_text,
)
from services.data.realtime.store import LiveStore
from services.data.store import LIMITS_RUN, DataStore, SecurityRecord
from shared.core.domain.codes import Board
from shared.platform.bus import EventBus
from shared.platform.clock import EXCHANGE_TZ
from shared.platform.events.envelope import make_raw_json_event

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SOURCE = "data"
QUOTES_SNAPSHOT = "quotes.snapshot"
BARS_1M = "bars.1m"
SECURITIES_RELOAD_S = 60.0  # an unknown code makes the provider re-read the securities at most this often
RECENT_LISTING_DAYS = 31  # as services/data/quotes.py: only a listing this recent can be in its first sessions
REFUSED_LOG_EVERY_S = 60.0  # the warning naming refused snapshots: at most once a minute (the counter counts all)
# How often a round asks the store whether the day's exchange limits were loaded (or loaded again) since its bands
# were read: limits loaded by another data process (or by hand) after the day's first round are used from then on.
LIMITS_CHECK_EVERY_S = 60.0


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
        self.bridges: Counter[str] = Counter()  # the quote bridges connected now (GET /v1/data/status)
        self.now = now
        self.age = Gauge(
            "lh_quotes_snapshot_age_seconds",
            "Seconds since the time of the newest snapshot this process received (NaN: none yet): feed freshness",
            registry=registry,
        )
        self.age.set_function(self._age)

    def _age(self) -> float:
        if self.latest is None:
            return math.nan
        return max((self.now() - self.latest).total_seconds(), 0.0)


@dataclass
class RoundResult:
    """What one round did: how many quotes were stored, how many dropped by reason, which bars closed."""

    accepted: int = 0
    unchanged: int = 0  # snapshots repeating a code's latest (its time unchanged): skipped, not refused
    # snapshots older than a code's latest that came by the other stream (a whole-market round's quote older than a
    # tick already taken, or a tick older than a round's): skipped, not refused (never moves a quote back in time)
    superseded: int = 0
    not_stocks: int = 0  # an index's, a fund's, a bond's (xtdata's whole market has them): not quoted, not refused
    rejected: Counter[str] = field(default_factory=Counter)
    bars: list[Bar] = field(default_factory=list)
    seconds: float = 0.0  # from the round handed over to published (wall time)
    cpu_seconds: float = 0.0  # this thread's CPU time over the same


_encode = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps(..., separators) makes one a call


def _quote_texts(
    round_: Round, taken: list[int], limits: list[tuple[int | None, int | None]], local_texts: list[str], source: str
) -> list[str]:
    """The quotes taken (`taken`: their places in the round) as `LiveQuote`'s JSON, written directly column by column
    (every value was checked reading the round: the code is a checked ts_code, the prices and volumes integers, the
    book's JSON written reading it); `limits` and `local_texts` (the time at +08:00) are the taken quotes' own, and
    `source` is the source as a JSON string. The store keeps each one and the event carries them."""
    whole = len(taken) == len(round_.codes)

    def pick(column: list[_T]) -> list[_T]:
        return column if whole else [column[i] for i in taken]

    prices, price, texts, text = _PRICES, json_price, _TEXT, fen_text
    return [
        f'{{"ts_code":"{code}","time":"{local}","last":{prices.get(last) or price(last)},'
        f'"open":{prices.get(open_ or None) or price(open_)},"high":{prices.get(high or None) or price(high)},'
        f'"low":{prices.get(low or None) or price(low)},"pre_close":{prices.get(pre) or price(pre)},'
        f'"volume":{volume},"amount":"{texts.get(amount) or text(amount)}","bid":[{bid}],"ask":[{ask}],'
        f'"limit_up":{prices.get(up) or price(up)},"limit_down":{prices.get(down) or price(down)},"source":{source}}}'
        for code, local, last, open_, high, low, pre, volume, amount, bid, ask, (up, down) in zip(
            pick(round_.codes), local_texts, pick(round_.last), pick(round_.open), pick(round_.high),
            pick(round_.low), pick(round_.pre_close), pick(round_.volume), pick(round_.amount),
            pick(round_.bid_json), pick(round_.ask_json), limits, strict=True,
        )
    ]  # fmt: skip


class RealtimeQuotes:
    def __init__(
        self,
        store: DataStore,
        live: LiveStore,
        bus: EventBus,
        metrics: QuoteMetrics,
        *,
        grace_s: float = 5.0,
        max_skew_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.live = live
        self.bus = bus
        self.metrics = metrics
        self.bars = MinuteBars(grace_s)
        self.max_skew = timedelta(seconds=max_skew_s)
        self.monotonic = monotonic
        self.now = metrics.now  # the market clock: what "in the future" and "today" are measured by
        self._securities: dict[str, SecurityRecord] = {}
        self._loaded_at: float | None = None
        # Each code's latest snapshot as the checks of the next one need it: its time, trading day, cumulative volume
        # and amount. One flat tuple a code: what a round leaves alive is few objects for the garbage collector.
        self._latest: dict[str, tuple[datetime, date, int, int]] = {}
        self._seen_times: dict[str, str] = {}  # each code's latest snapshot's time, as the feed wrote it
        self._not_stocks: set[str] = set()  # the feed's codes that are no A-share stock: skipped unread
        self._limits: dict[tuple[str, date, int], tuple[int | None, int | None]] = {}
        self._listing_days: dict[tuple[str, date], int | None] = {}
        self._refused_times: dict[str, str] = {}  # each code's latest refused snapshot's time (a repeat: not recounted)
        # Each code's latest quote's time when that quote came from a `ticks` frame (the bridge's per-code ticks): a
        # whole-market round's snapshot older than it is superseded (skipped), not refused as `stale`.
        self._ticked: dict[str, datetime] = {}
        # The day's band of every security (services/data/quotes.py `session_bands`): read once a trading day, at its
        # first round; every snapshot of the day is checked against it by a dict lookup.
        self._bands: tuple[date, dict[str, SessionBand]] | None = None
        self._limits_at: datetime | None = None  # when the day's limits load the bands were read with finished
        self._limits_checked_at = 0.0  # monotonic time of the last such check
        self._logged_refusal_at: float | None = None
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

    async def bands(self, day: date) -> dict[str, SessionBand]:
        """The band of every security on trading day `day`, from the store (read once a day: a failed read raises,
        and the round fails: nothing is taken unchecked; the next round reads again). Read again when the day's
        exchange limits were loaded since (`reload_bands` in this process; another process's load or a load by
        hand is seen within LIMITS_CHECK_EVERY_S)."""
        moment = self.monotonic()
        due = moment - self._limits_checked_at >= LIMITS_CHECK_EVERY_S
        if self._bands is not None and self._bands[0] == day and due:
            self._limits_checked_at = moment
            try:
                loaded = await self.store.limits_loaded(LIMITS_RUN, day)
            except Exception:
                # The bands in hand stay valid: the check is tried again in a minute.
                log.warning("could not check whether the day's limits were loaded", exc_info=True)
                loaded = self._limits_at
            if loaded != self._limits_at:
                self._bands = None
        if self._bands is None or self._bands[0] != day:
            async with self.store.snapshot():
                limits_at = await self.store.limits_loaded(LIMITS_RUN, day)
                found = await session_bands(self.store, day, list(self._securities.values()))
            self._bands, self._limits_at, self._limits_checked_at = (day, found), limits_at, moment
            log.info(
                "quote bands of the day read",
                extra={"day": day.isoformat(), "codes": len(found), "exchange_limits": limits_at is not None},
            )
        return self._bands[1]

    def reload_bands(self) -> None:
        """Exchange limits were just stored (the pre-open load, or one by hand): the next round reads the day's
        bands again."""
        self._bands = None

    async def _listing_day(self, security: SecurityRecord, day: date) -> int | None:
        if (day - security.list_date).days > RECENT_LISTING_DAYS or day < security.list_date:
            return None
        key = (security.ts_code, day)
        if key not in self._listing_days:
            self._listing_days[key] = listing_day_of(await self.store.count_open_days(security.list_date, day))
        return self._listing_days[key]

    # --- a round -------------------------------------------------------------------------------------------------

    async def ingest(
        self, raws: Sequence[Any], source: str, *, now: datetime | None = None, ticks: bool = False
    ) -> RoundResult:
        """Take one round of snapshots from a feed: validate, store the good ones as the latest quotes, build bars,
        publish `quotes.snapshot` (and `bars.1m` for bars it closed). `now`: the feed's time (the replay feed's
        replayed moment); default the market clock's now. A snapshot after it (beyond the skew allowed) or of another
        day is refused. `ticks`: the round is a bridge's `ticks` frame (the subscribed codes' ticks): the same path,
        the same checks and the same event; a code's quote never goes back in time between the two streams (an older
        snapshot of the other stream is superseded: skipped, not refused)."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        result = RoundResult()
        self.metrics.received.labels(source=source).inc(len(raws))
        async with self._lock:
            with collection_paused():
                await self._take(raws, source, result, self.now() if now is None else now, ticks)
        result.seconds, result.cpu_seconds = time.perf_counter() - started, time.thread_time() - cpu_started
        return result

    async def _take(
        self, raws: Sequence[Any], source: str, result: RoundResult, now: datetime, ticks_round: bool = False
    ) -> None:
        """`ingest`'s work, under its lock and with cyclic garbage collection held off (gc_pause.py): the round read
        into columns (columns.py), the checks against the stored band made over the whole round at once, the checks
        against each code's latest snapshot (and the minute bars) code by code in the round's order."""
        fresh: list[Any] = []
        seen, refused = self._seen_times, self._refused_times
        not_stocks = self._not_stocks
        for raw in raws:
            # A full-market snapshot repeats the codes that did not trade since the last one, with their time
            # unchanged: the same quote again, skipped before it is read (a refused one too: counted once).
            if type(raw) is dict:
                code = raw.get("ts_code")
                if (code in seen and seen[code] == raw.get("time")) or (
                    code in refused and refused[code] == raw.get("time")
                ):
                    result.unchanged += 1
                    continue
                if code in not_stocks:
                    result.not_stocks += 1
                    continue
            fresh.append(raw)
        read, unread = read_round(fresh)
        for raw, exc in unread:
            if exc.reason == NOT_A_STOCK:
                result.not_stocks += 1
                if len(not_stocks) < 100_000:
                    not_stocks.add(raw["ts_code"])
            else:
                result.rejected[exc.reason] += 1
        codes = read.codes
        await self._known(set(codes))
        today = now.astimezone(EXCHANGE_TZ).date()
        latest_allowed = now + self.max_skew
        bands = await self.bands(today) if codes else {}
        code_bands = [bands.get(code) for code in codes]
        band_reasons = band_refusals(read, code_bands)
        # The round's times (mostly one): each one's trading day and its text at +08:00, and whether it is ahead of
        # the clock or of another day.
        days: dict[str, tuple[date, str, str | None]] = {}
        for text, moment in zip(read.time_texts, read.times, strict=True):
            if text not in days:
                local = moment.astimezone(EXCHANGE_TZ)
                day = local.date()
                why = FUTURE if moment > latest_allowed else OTHER_DAY if day != today else None
                days[text] = (day, local.isoformat(), why)
        taken: list[int] = []  # the places in the round of the quotes taken
        limits_taken: list[tuple[int | None, int | None]] = []
        local_texts: list[str] = []
        securities, latest_quotes, limits_known, ticked = self._securities, self._latest, self._limits, self._ticked
        examples: dict[str, str] = {}  # a refused code by reason, for the log line
        add_bar, bars_closed = self.bars.add_quote, result.bars
        for i, (code, moment, text, volume, amount, band) in enumerate(
            zip(codes, read.times, read.time_texts, read.volume, read.amount, code_bands, strict=True)
        ):
            if code not in securities:
                result.rejected[UNKNOWN_CODE] += 1
                continue
            day, local_text, reason = days[text]
            if reason is None:
                latest = latest_quotes.get(code)
                if latest is not None:  # not newer than the code's latest, or its day's totals going down: refused
                    before, before_day, volume_before, amount_before = latest
                    if moment <= before:
                        # An older snapshot of the other stream (a round's behind a tick taken, a tick behind a
                        # round's): superseded, not a refusal; the code's quote stays the newer one.
                        if (ticked.get(code) == before) != ticks_round:
                            result.superseded += 1
                            continue
                        reason = STALE
                    elif day == before_day and (volume < volume_before or amount < amount_before):
                        reason = VOLUME_DECREASED
            checked = band is not None and band.reference is not None
            if reason is None and checked:
                reason = band_reasons[i]
            if reason is not None:
                result.rejected[reason] += 1
                refused[code] = text
                examples.setdefault(reason, code)
                continue
            if checked:
                limits = (band.limit_up, band.limit_down)  # the stored band's
            else:  # no stored close (a listing's first day): its limits around the feed's pre_close, as before
                pre_close = read.pre_close[i]
                found = limits_known.get((code, day, pre_close))
                limits = found if found is not None else await self.limits(securities[code], day, pre_close)
            latest_quotes[code] = (moment, day, volume, amount)
            if ticks_round:
                ticked[code] = moment
            seen[code] = text
            taken.append(i)
            limits_taken.append(limits)
            local_texts.append(local_text)
            bar = add_bar(code, moment, read.last[i], volume, amount)
            if bar is not None:
                bars_closed.append(bar)
        quoted_source = _encode(source)
        newest = max([read.times[i] for i in taken], default=None)
        quotes = _quote_texts(read, taken, limits_taken, local_texts, quoted_source)
        texts = list(zip([codes[i] for i in taken], quotes, strict=True))
        for reason, count in result.rejected.items():
            self.metrics.rejected.labels(reason=reason).inc(count)
        if result.rejected:
            clock = self.monotonic()
            if self._logged_refusal_at is None or clock - self._logged_refusal_at >= REFUSED_LOG_EVERY_S:
                # Rate-limited (a bad feed refuses every round): the counter has every one, by reason.
                self._logged_refusal_at = clock
                log.warning(
                    "snapshots dropped",
                    extra={"source": source, "reasons": dict(result.rejected), "codes": examples},
                )
        result.accepted = len(texts)
        if texts and newest is not None:
            as_of = newest.astimezone(EXCHANGE_TZ)
            if self.metrics.latest is None or as_of > self.metrics.latest:
                self.metrics.latest = as_of
            await self._store_quotes(texts, source, as_of)
            # The bars that closed are stored while the snapshot is published (Redis and the broker answer at once),
            # and published once both are done: every bar stored before `bars.1m` says so, as before.
            by_day, bar_texts = _bar_rows(result.bars)
            storing = asyncio.ensure_future(self._store_bars(by_day)) if bar_texts else None
            try:
                # QuotesSnapshot's JSON, written once from the quotes' own: the bus sends it as it is.
                # (3 MB: one join, not concatenations that copy it again: some 2 ms of fresh memory a round)
                head = f'{{"as_of":"{as_of.isoformat()}","source":{quoted_source},"quotes":['
                payload = "".join((head, ",".join(quotes), "]}"))
                await self._publish_json(QUOTES_SNAPSHOT, payload)
            finally:
                if storing is not None:
                    await storing
            await self._publish_bar_texts(bar_texts, as_of)

    async def _store_quotes(self, quotes: list[tuple[str, str]], source: str, as_of: datetime) -> None:
        feed = json.dumps({"source": source, "as_of": as_of.isoformat()})
        try:
            await self.live.put_quotes(quotes, feed)
        except Exception:
            # Published all the same (the event is true); the reads answer 503 while the store is down.
            log.error("could not store the latest quotes", exc_info=True, extra={"quotes": len(quotes)})

    async def expire(self, now: datetime) -> list[Bar]:
        """The timer: close the bars whose minute ended the grace period before `now`, store and publish them."""
        async with self._lock:
            bars = self.bars.expire(now)
            await self._publish_bars(bars, now)
        return bars

    async def _publish_json(self, event_type: str, payload_json: str) -> None:
        try:
            await self.bus.publish(make_raw_json_event(event_type, payload_json, source=SOURCE))
        except Exception:
            # Ephemeral events: the next round supersedes this one; the stored quotes and bars stand.
            log.error("could not publish %s", event_type, exc_info=True)

    async def _publish_bars(self, bars: list[Bar], closed_at: datetime) -> None:
        """Store and publish bars that closed: each written once as `MinuteBar`'s JSON (as the quotes are), the
        store keeping the texts and the `bars.1m` event carrying them (a minute's end closes every code's bar)."""
        by_day, texts = _bar_rows(bars)
        await self._store_bars(by_day)
        await self._publish_bar_texts(texts, closed_at)

    async def _store_bars(self, by_day: dict[date, list[tuple[str, str]]]) -> None:
        try:
            for day, day_rows in by_day.items():
                await self.live.add_bars(day, day_rows)
        except Exception:
            log.error("could not store minute bars", exc_info=True, extra={"bars": sum(map(len, by_day.values()))})

    async def _publish_bar_texts(self, texts: list[str], closed_at: datetime) -> None:
        if not texts:
            return
        closed = closed_at.astimezone(EXCHANGE_TZ).isoformat()
        await self._publish_json(BARS_1M, f'{{"bars":[{",".join(texts)}],"closed_at":"{closed}"}}')  # BarsMinute


def _bar_rows(bars: list[Bar]) -> tuple[dict[date, list[tuple[str, str]]], list[str]]:
    """Bars that closed as `MinuteBar`'s JSON: (ts_code, text) by trading day for the store, and the texts in order
    for the event."""
    by_day: dict[date, list[tuple[str, str]]] = {}
    texts: list[str] = []
    minute: datetime | None = None
    minute_text, rows = "", []  # rows: the bars of `minute`'s day
    prices, price, amounts, amount_text = _PRICES, json_price, _TEXT, fen_text  # a text written before: one lookup
    for code, at, open_, high, low, close, volume, amount in bars:
        if at != minute:  # the bars of one close mostly share their minute
            minute, minute_text = at, at.isoformat()
            rows = by_day.setdefault(at.date(), [])
        text = (
            f'{{"ts_code":"{code}","minute":"{minute_text}","open":{prices.get(open_) or price(open_)},'
            f'"high":{prices.get(high) or price(high)},"low":{prices.get(low) or price(low)},'
            f'"close":{prices.get(close) or price(close)},"volume":{volume},'
            f'"amount":"{amounts.get(amount) or amount_text(amount)}"}}'
        )
        rows.append((code, text))
        texts.append(text)
    return by_day, texts
