"""Quote sanity at ingest (docs/quotes.md, "How quotes are kept and checked"), worked by hand: the day's band from
the STORED close (never the tick's own pre_close) by board and ST, a new listing's days without limits, a time
ahead of the market clock or of another day, the refused quote dropped for its code only, counted by reason,
logged at most once a minute, and the previous good quote kept live."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.data.quotes import SessionBand, session_bands
from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes
from services.data.realtime.snapshots import Refused, read_snapshot
from services.data.realtime.store import MemoryLiveStore
from services.data.store import SecurityRecord
from shared.platform.bus import MemoryBus
from shared.platform.clock import EXCHANGE_TZ
from shared.platform.events.schemas import LiveQuote
from shared.platform.settings import Settings

DAY = date(2025, 3, 4)  # a Tuesday; the session before it: 2025-03-03
BEFORE = date(2025, 3, 3)


def at(hms: str, day: date = DAY) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=EXCHANGE_TZ)


def security(code: str, board: str, *, st: bool = False, listed: date = date(2010, 1, 4)) -> SecurityRecord:
    return SecurityRecord(code, code[:6], code, code[-2:], board, st, listed, None)


MAIN, STAR, CHINEXT, ST = "600000.SH", "688001.SH", "300001.SZ", "000004.SZ"
NEW_STAR = "688999.SH"  # listed on 2025-02-28: DAY is its third session (no limits on STAR's first five)
IPO = "603999.SH"  # listed on DAY: no close stored at all
DELISTED = "600999.SH"


class Store:
    """The stored facts: every code closed at 10.00 on BEFORE (the new STAR listing at 30.00); the calendar of the
    days around the STAR listing."""

    def __init__(self) -> None:
        self.securities = [
            security(MAIN, "main"), security(STAR, "star"), security(CHINEXT, "chinext"), security(ST, "main", st=True),
            security(NEW_STAR, "star", listed=date(2025, 2, 28)), security(IPO, "main", listed=DAY),
            SecurityRecord(DELISTED, "600999", "x", "SH", "main", False, date(2001, 1, 1), date(2025, 3, 1)),
        ]  # fmt: skip
        self.closes = {MAIN: 1000, STAR: 1000, CHINEXT: 1000, ST: 1000, NEW_STAR: 3000, DELISTED: 1000}
        self.reads: list[date] = []
        self.fail = False
        # The exchange's limits of DAY as the pre-open load stores them: (pre_close or None, down, up) in fen.
        self.limits: dict[str, tuple[int | None, int, int]] = {}
        self.limits_at: datetime | None = None  # when the day's limits load finished (None: not loaded)
        self.limits_checks = 0
        self.check_fails = False

    async def list_securities(self) -> list[SecurityRecord]:
        return list(self.securities)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Store]:
        yield self

    async def last_bars(self, before: date | None = None) -> dict[str, tuple[date, int]]:
        assert before is not None
        self.reads.append(before)
        if self.fail:
            raise ConnectionError("the database is down")
        return {code: (before - timedelta(days=1), close) for code, close in self.closes.items()}

    async def session_pre_closes(self, day: date) -> dict[str, int]:
        return {}  # the session's bars are stored after its close

    async def session_limits(self, day: date) -> dict[str, tuple[int | None, int, int]]:
        return dict(self.limits) if day == DAY else {}

    async def limits_loaded(self, kind: str, day: date) -> datetime | None:
        assert kind == "limits"
        self.limits_checks += 1
        if self.check_fails:
            raise ConnectionError("the database is down")
        return self.limits_at if day == DAY else None

    async def calendar_span(self) -> tuple[date, date]:
        return date(2024, 1, 2), date(2025, 12, 31)

    async def open_days(self, start: date, end: date) -> list[date]:
        days = [date(2025, 2, 28), date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 5)]
        return [d for d in days if start <= d <= end]

    async def count_open_days(self, start: date, end: date) -> int:
        return len(await self.open_days(start, end))


# --- the day's band ----------------------------------------------------------------------------------------------


async def test_the_bands_are_worked_from_the_stored_close_by_board() -> None:
    bands = await session_bands(Store(), DAY)  # type: ignore[arg-type]
    # main board 10%: 10.00 x 0.9 = 9.00, x 1.1 = 11.00
    assert bands[MAIN] == SessionBand(1000, 900, 1100)
    # STAR and ChiNext 20%: 8.00 .. 12.00
    assert bands[STAR] == SessionBand(1000, 800, 1200)
    assert bands[CHINEXT] == SessionBand(1000, 800, 1200)
    # ST on the main board 5%: 9.50 .. 10.50
    assert bands[ST] == SessionBand(1000, 950, 1050)
    # STAR's third session (2025-02-28, 03-03, 03-04): no limits, the reference still the stored close
    assert bands[NEW_STAR] == SessionBand(3000, None, None)
    # no close stored (listed today), or delisted: nothing to go by
    assert bands[IPO] == SessionBand(None, None, None)
    assert bands[DELISTED] == SessionBand(None, None, None)


async def test_a_band_is_rounded_half_up_to_the_fen() -> None:
    store = Store()
    store.closes[MAIN] = 1005  # 10.05 x 1.1 = 11.055 -> 11.06; x 0.9 = 9.045 -> 9.05
    assert (await session_bands(store, DAY))[MAIN] == SessionBand(1005, 905, 1106)  # type: ignore[arg-type]


# --- the provider's checks -----------------------------------------------------------------------------------------


def raw(code: str = MAIN, t: str = "09:30:03", last: str = "10.05", lots: int = 150, **kw: Any) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "ts_code": code, "time": at(t).isoformat(), "last": last, "open": "10.02", "high": "10.05", "low": "9.98",
        "pre_close": "10.00", "amount": f"{lots * 1000}.00", "volume_lots": lots,
        "bid": [["10.04", 12], ["10.03", 5], ["0", 0], ["0", 0], ["0", 0]],
        "ask": [["10.05", 7], ["10.06", 30], ["0", 0], ["0", 0], ["0", 0]],
    }  # fmt: skip
    snapshot.update(kw)
    return snapshot


def make(store: Store | None = None, now: str = "09:31:10", **kw: Any) -> tuple[RealtimeQuotes, MemoryLiveStore]:
    live = MemoryLiveStore()
    metrics = QuoteMetrics(CollectorRegistry(), lambda: at(now))
    return RealtimeQuotes(store or Store(), live, MemoryBus(), metrics, **kw), live  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # main board, stored close 10.00: the band is 9.00 .. 11.00
        ({"last": "11.01", "high": "11.01"}, "outside_limits"),
        ({"last": "8.99", "low": "8.99"}, "outside_limits"),
        ({"high": "11.01"}, "outside_limits"),  # the day's high above the limit-up
        ({"open": "8.99", "low": "8.99"}, "outside_limits"),
        ({"bid": [["10.04", 1], ["8.99", 1]]}, "outside_limits"),  # a book level below the limit-down
        ({"ask": [["10.05", 1], ["11.01", 1]]}, "outside_limits"),
        # the tick's own pre_close is not trusted: 12.00 would make 11.50 within ITS band (10.80 .. 13.20)
        ({"pre_close": "12.00", "last": "11.50", "high": "11.50", "bid": [], "ask": []}, "pre_close_mismatch"),
        ({"pre_close": "10.01"}, "pre_close_mismatch"),
        # the clock stands at 09:31:10, 5 s of skew allowed: 09:31:16 is ahead of it
        ({"time": at("09:31:16").isoformat()}, "future"),
        ({"time": at("14:59:00", BEFORE).isoformat()}, "other_day"),  # yesterday's
        ({"time": at("09:30:00", date(2025, 3, 5)).isoformat()}, "future"),  # tomorrow's: ahead of the clock first
        ({"last": None}, "malformed"),  # what the bridge sends for xtdata's NaN
        ({"last": "NaN"}, "malformed"),
        ({"last": "0"}, "negative_price"),
    ],
)
async def test_a_bad_quote_is_refused_by_reason_and_not_stored(change: dict[str, Any], reason: str) -> None:
    provider, live = make()
    result = await provider.ingest([raw(**change), raw(code=CHINEXT, last="10.00", high="10.05")], "bridge")
    assert dict(result.rejected) == {reason: 1}
    assert result.accepted == 1  # the rest of the round proceeds
    assert await live.quote(MAIN) is None
    assert await live.quote(CHINEXT) is not None
    assert provider.metrics.rejected.labels(reason=reason)._value.get() == 1


@pytest.mark.parametrize(
    ("change"),
    [
        {"last": "11.00", "high": "11.00", "ask": [["11.00", 5]]},  # at the limit-up exactly
        {"last": "9.00", "low": "9.00", "open": "9.00", "high": "9.00", "bid": []},  # at the limit-down
        {"time": at("09:31:15").isoformat()},  # 5 s ahead: within the skew
    ],
    ids=["at-limit-up", "at-limit-down", "within-skew"],
)
async def test_a_quote_at_the_edges_is_taken(change: dict[str, Any]) -> None:
    provider, live = make()
    result = await provider.ingest([raw(**change)], "bridge")
    assert (result.accepted, dict(result.rejected)) == (1, {})
    quote = LiveQuote.model_validate_json(await live.quote(MAIN) or b"")
    assert (quote.limit_up, quote.limit_down) == (Decimal("11.00"), Decimal("9.00"))


@pytest.mark.parametrize(
    ("code", "good", "bad"),
    [
        (STAR, "12.00", "12.01"),  # 20%: 10.00 x 1.2 = 12.00
        (CHINEXT, "8.00", "7.99"),  # 20%: 10.00 x 0.8 = 8.00
        (ST, "10.50", "10.51"),  # ST 5%: 10.00 x 1.05 = 10.50
    ],
)
async def test_star_chinext_and_st_bands(code: str, good: str, bad: str) -> None:
    provider, live = make()
    book = {"open": good, "high": good, "low": good, "bid": [], "ask": []}
    taken = await provider.ingest([raw(code=code, last=good, **book)], "bridge")
    book = {"open": good, "high": max(good, bad), "low": min(good, bad), "bid": [], "ask": []}
    refused = await provider.ingest([raw(code=code, t="09:30:06", last=bad, lots=151, **book)], "bridge")
    assert (taken.accepted, dict(refused.rejected)) == (1, {"outside_limits": 1})
    assert LiveQuote.model_validate_json(await live.quote(code) or b"").last == Decimal(good)  # the good one stays


async def test_codes_without_a_band_are_checked_for_positivity_only() -> None:
    provider, live = make()
    # STAR's third session has no limits: 45.00 is 50% above its stored close of 30.00, and taken
    new_listing = raw(code=NEW_STAR, last="45.00", open="31.00", high="45.00", low="30.50", pre_close="30.00",
                      bid=[["44.99", 1]], ask=[["45.00", 1]])  # fmt: skip
    # listed today, no close stored: nothing to check its pre_close against; its limits around it, as before
    ipo = raw(code=IPO, last="14.00", open="12.00", high="14.00", low="12.00", pre_close="10.00", bid=[], ask=[])
    result = await provider.ingest([new_listing, ipo, raw(code=IPO, last="0", t="09:30:04")], "bridge")
    assert (result.accepted, dict(result.rejected)) == (2, {"negative_price": 1})
    quote = LiveQuote.model_validate_json(await live.quote(NEW_STAR) or b"")
    assert (quote.last, quote.limit_up, quote.limit_down) == (Decimal("45.00"), None, None)
    # the main board's first five sessions after the 2023 reform have no limits either
    assert LiveQuote.model_validate_json(await live.quote(IPO) or b"").limit_up is None
    # a new listing's pre_close still has to be the stored close
    wrong = await provider.ingest([{**new_listing, "time": at("09:30:06").isoformat(), "pre_close": "31.00"}], "bridge")
    assert dict(wrong.rejected) == {"pre_close_mismatch": 1}


async def test_a_bad_tick_keeps_the_previous_quote_and_a_good_one_after_it_is_taken() -> None:
    provider, live = make()
    await provider.ingest([raw(t="09:30:03", last="10.05", lots=150)], "bridge")
    bad = await provider.ingest([raw(t="09:30:06", last="11.50", high="11.50", lots=160)], "bridge")
    assert (bad.accepted, dict(bad.rejected)) == (0, {"outside_limits": 1})
    assert LiveQuote.model_validate_json(await live.quote(MAIN) or b"").last == Decimal("10.05")
    # the bad tick's volume (16,000 shares) is not what the next one is held to: 155 lots after 150 are fine
    good = await provider.ingest([raw(t="09:30:09", last="10.04", lots=155)], "bridge")
    assert good.accepted == 1
    quote = LiveQuote.model_validate_json(await live.quote(MAIN) or b"")
    assert (quote.last, quote.volume) == (Decimal("10.04"), 15_500)


async def test_the_same_refused_snapshot_again_is_not_counted_again() -> None:
    provider, _ = make()
    bad = raw(last="11.50", high="11.50")
    first = await provider.ingest([bad], "bridge")
    again = await provider.ingest([bad], "bridge")  # a full-market round repeats a code that did not trade
    assert (dict(first.rejected), dict(again.rejected), again.unchanged) == ({"outside_limits": 1}, {}, 1)
    assert provider.metrics.rejected.labels(reason="outside_limits")._value.get() == 1


async def test_the_bands_are_read_once_a_trading_day() -> None:
    store = Store()
    clock = [at("09:31:10")]
    live = MemoryLiveStore()
    metrics = QuoteMetrics(CollectorRegistry(), lambda: clock[0])
    provider = RealtimeQuotes(store, live, MemoryBus(), metrics)  # type: ignore[arg-type]
    for i, t in enumerate(("09:30:03", "09:30:06", "09:30:09")):
        await provider.ingest([raw(t=t, lots=150 + i)], "bridge")
    assert store.reads == [DAY]
    next_day = date(2025, 3, 5)
    clock[0] = at("09:31:10", next_day)
    result = await provider.ingest(
        [raw(t="09:30:03", lots=10, **{"time": at("09:30:03", next_day).isoformat()})], "bridge"
    )
    assert store.reads == [DAY, next_day] and result.accepted == 1


async def test_bands_that_cannot_be_read_fail_the_round_and_are_read_again_next_round() -> None:
    store = Store()
    store.fail = True
    provider, live = make(store)
    with pytest.raises(ConnectionError):
        await provider.ingest([raw(t="09:30:03")], "bridge")  # nothing is taken unchecked
    assert await live.quote(MAIN) is None
    store.fail = False
    assert (await provider.ingest([raw(t="09:30:06")], "bridge")).accepted == 1
    assert store.reads == [DAY, DAY]


async def test_the_replay_feeds_own_moment_is_the_now_checked_against() -> None:
    provider, live = make(now="09:00:00")  # the market clock far behind the replayed moment (a replay at speed)
    result = await provider.ingest([raw(t="10:00:00")], "replay", now=at("10:00:00"))
    assert result.accepted == 1 and await live.quote(MAIN) is not None


async def test_the_skew_is_a_setting() -> None:
    provider, _ = make(max_skew_s=60.0)
    assert (await provider.ingest([raw(t="09:32:10")], "bridge")).accepted == 1  # 60 s ahead of 09:31:10
    assert dict((await provider.ingest([raw(t="09:32:11", lots=151)], "bridge")).rejected) == {"future": 1}
    assert Settings().quotes_max_skew_s == 5.0


async def test_refusals_are_logged_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    wall = [0.0]
    live = MemoryLiveStore()
    metrics = QuoteMetrics(CollectorRegistry(), lambda: at("09:31:10"))
    provider = RealtimeQuotes(Store(), live, MemoryBus(), metrics, monotonic=lambda: wall[0])  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="services.data.realtime.provider"):
        await provider.ingest([raw(t="09:30:01", last="11.50", high="11.50")], "bridge")
        wall[0] = 59.0
        await provider.ingest([raw(t="09:30:02", last="11.60", high="11.60")], "bridge")
        wall[0] = 60.0
        await provider.ingest([raw(t="09:30:03", pre_close="10.01")], "bridge")
    lines = [r for r in caplog.records if r.getMessage() == "snapshots dropped"]
    assert [r.reasons for r in lines] == [{"outside_limits": 1}, {"pre_close_mismatch": 1}]  # type: ignore[attr-defined]
    assert lines[0].codes == {"outside_limits": MAIN}  # type: ignore[attr-defined]
    assert metrics.rejected.labels(reason="outside_limits")._value.get() == 2  # the counter has every one


def test_nan_is_no_price() -> None:
    for value in ("nan", "inf", "-0.00"):
        with pytest.raises(Refused):
            read_snapshot(raw(last=value))


# --- settings -------------------------------------------------------------------------------------------------------


def test_the_quotes_bridges_allowed_are_explicit_and_none_by_default() -> None:
    assert Settings().quotes_bridge_ids() == frozenset()
    allowed = Settings(quotes_bridges=" qmt-a , qmt-b,,")  # type: ignore[call-arg]
    assert allowed.quotes_bridge_ids() == frozenset({"qmt-a", "qmt-b"})


# --- the exchange's own limits, loaded before the open (docs/data-ingest.md, "The pre-open limits") ----------------


async def test_the_days_stored_exchange_limits_are_the_band_where_a_code_has_them() -> None:
    store = Store()
    store.limits = {
        # going ex-dividend: the exchange's reference 9.50 (stored close 10.00); 9.50 x 0.9 = 8.55, x 1.1 = 10.45
        MAIN: (950, 855, 1045),
        # a listing of today with limits (no close stored): around its issue price 10.00, main board 44% / -36%
        IPO: (1000, 640, 1440),
        # a row without pre_close (stored before it was kept): the stored close 10.00 is the reference, the limits
        # are the row's
        CHINEXT: (None, 800, 1200),
        # a delisted code has no band, whatever a row says
        DELISTED: (1000, 900, 1100),
    }
    bands = await session_bands(store, DAY)  # type: ignore[arg-type]
    assert bands[MAIN] == SessionBand(950, 855, 1045)
    assert bands[IPO] == SessionBand(1000, 640, 1440)
    assert bands[CHINEXT] == SessionBand(1000, 800, 1200)
    assert bands[DELISTED] == SessionBand(None, None, None)
    # the codes without a row: computed from the stored close as before (ST main board 5%: 9.50 .. 10.50)
    assert bands[ST] == SessionBand(1000, 950, 1050)


def ex_dividend_tick(t: str, lots: int) -> dict[str, Any]:
    """A tick of MAIN on its ex-dividend day: the exchange's reference 9.50, trading at 9.60."""
    return raw(t=t, last="9.60", lots=lots, open="9.55", high="9.62", low="9.52", pre_close="9.50",
               bid=[["9.59", 10]], ask=[["9.60", 4]])  # fmt: skip


async def test_limits_loaded_after_the_first_round_are_used_from_the_next_check() -> None:
    store = Store()
    moment = [0.0]
    provider, live = make(store, monotonic=lambda: moment[0])
    # Without the day's limits the band is around the stored close 10.00: the tick's pre_close 9.50 is refused.
    first = await provider.ingest([ex_dividend_tick("09:30:03", 10)], "bridge")
    assert dict(first.rejected) == {"pre_close_mismatch": 1}
    # Another process loads them: seen at the first round a minute (LIMITS_CHECK_EVERY_S) after the bands were read.
    store.limits, store.limits_at = {MAIN: (950, 855, 1045)}, at("09:30:05")
    moment[0] = 59.0
    assert dict((await provider.ingest([ex_dividend_tick("09:30:06", 11)], "bridge")).rejected) == {
        "pre_close_mismatch": 1
    }
    moment[0] = 60.0
    taken = await provider.ingest([ex_dividend_tick("09:30:09", 12)], "bridge")
    assert (taken.accepted, dict(taken.rejected)) == (1, {})
    assert store.reads == [DAY, DAY]
    quote = LiveQuote.model_validate_json(await live.quote(MAIN) or b"")
    assert (quote.last, quote.limit_down, quote.limit_up) == (Decimal("9.60"), Decimal("8.55"), Decimal("10.45"))


async def test_a_load_in_this_process_rereads_the_bands_at_the_next_round() -> None:
    store = Store()
    provider, _ = make(store, monotonic=lambda: 0.0)
    assert dict((await provider.ingest([ex_dividend_tick("09:30:03", 10)], "bridge")).rejected) == {
        "pre_close_mismatch": 1
    }
    store.limits = {MAIN: (950, 855, 1045)}
    provider.reload_bands()  # what the data service does when a limits run succeeds
    assert (await provider.ingest([ex_dividend_tick("09:30:06", 11)], "bridge")).accepted == 1
    assert store.reads == [DAY, DAY]


async def test_a_failed_check_for_new_limits_keeps_the_bands_in_hand() -> None:
    store = Store()
    moment = [0.0]
    provider, _ = make(store, monotonic=lambda: moment[0])
    assert (await provider.ingest([raw(t="09:30:03")], "bridge")).accepted == 1
    store.check_fails, moment[0] = True, 61.0
    assert (await provider.ingest([raw(t="09:30:06", lots=151)], "bridge")).accepted == 1  # the round goes on
    assert store.reads == [DAY] and store.limits_checks == 2  # the read with the bands, then the failed check
