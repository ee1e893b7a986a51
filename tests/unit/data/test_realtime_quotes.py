"""The real-time provider's pieces, worked by hand: snapshots read into exact units (lots -> shares, fen), bad ones
refused with their reason, minute bars from cumulative totals (boundaries, the timer, a late snapshot), and the
provider's latest quotes, limits and events."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.data.realtime.bars import Bar, MinuteBars, bar_minute
from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes
from services.data.realtime.snapshots import Refused, Tick, read_snapshot
from services.data.realtime.store import MemoryLiveStore
from services.data.store import SecurityRecord
from shared.platform.bus import MemoryBus
from shared.platform.clock import EXCHANGE_TZ
from shared.platform.events.envelope import Envelope
from shared.platform.events.schemas import BarsMinute, LiveQuote, QuotesSnapshot

DAY = date(2024, 12, 31)


def at(hms: str, day: date = DAY) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=EXCHANGE_TZ)


def raw(
    code: str = "600000.SH",
    t: str = "09:30:03",
    last: str = "10.05",
    lots: int = 150,
    amount: str = "150450.00",
    **kw: Any,
) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "ts_code": code,
        "time": at(t).isoformat(),
        "last": last,
        "open": "10.02",
        "high": "10.05",
        "low": "9.98",
        "pre_close": "10.00",
        "amount": amount,
        "volume_lots": lots,
        "bid": [["10.04", 12], ["10.03", 5], ["0", 0], ["0", 0], ["0", 0]],
        "ask": [["10.05", 7], ["10.06", 30], ["10.07", 1], ["0", 0], ["0", 0]],
    }
    snapshot.update(kw)
    return snapshot


# --- reading a snapshot ---------------------------------------------------------------------------------------


def test_a_snapshot_is_read_in_fen_and_shares() -> None:
    tick = read_snapshot(raw(lots=123, amount="123456.78"))
    assert tick.ts_code == "600000.SH"
    assert tick.time == at("09:30:03")
    assert (tick.last, tick.open, tick.high, tick.low, tick.pre_close) == (1005, 1002, 1005, 998, 1000)
    assert tick.volume == 12_300  # 123 lots of 100 shares
    assert tick.amount == 12_345_678  # fen
    assert tick.bid == ((1004, 1_200), (1003, 500))  # empty levels left out
    assert tick.ask == ((1005, 700), (1006, 3_000), (1007, 100))


def test_wire_prices_with_three_decimals_on_the_tick_are_read() -> None:
    assert read_snapshot(raw(last="10.050", high="10.050")).last == 1005


def test_before_the_first_trade_open_high_low_are_none() -> None:
    tick = read_snapshot(raw(open="0", high="0", low="0", last="10.00", lots=0, amount="0"))
    assert (tick.open, tick.high, tick.low, tick.volume) == (None, None, None, 0)
    # as the bridge sends what xtdata has no number for (NaN): null
    tick = read_snapshot(raw(open=None, high=None, low=None, last="10.00", bid=[[None, 0], ["9.99", 3]]))
    assert (tick.open, tick.high, tick.low, tick.bid) == (None, None, None, ((999, 300),))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"last": "-10.05"}, "negative_price"),
        ({"bid": [["-1.00", 5]]}, "negative_price"),
        ({"volume_lots": -1}, "negative_price"),
        ({"last": "0"}, "negative_price"),
        ({"last": "10.055"}, "off_tick"),
        ({"ask": [["10.061", 3]]}, "off_tick"),
        ({"amount": "1.001"}, "off_tick"),
        ({"ts_code": "510300.SH"}, "not_a_stock"),  # a fund (xtdata's whole market has them): left alone
        ({"ts_code": "000001.SH"}, "not_a_stock"),  # the SSE composite index
        ({"ts_code": "600000"}, "bad_code"),
        ({"ts_code": "60000X.SH"}, "bad_code"),
        ({"time": "2024-12-31T09:30:03"}, "malformed"),  # no offset
        ({"last": 10.05}, "malformed"),  # a float: not exact
        ({"last": "1e3"}, "malformed"),
        ({"volume_lots": "150"}, "malformed"),
        ({"volume_lots": True}, "malformed"),
        ({"bid": [["10.04"]]}, "malformed"),
        ({"high": "9.99"}, "inconsistent"),  # high below low
        ({"last": "10.06"}, "inconsistent"),  # above the high
    ],
)
def test_bad_snapshots_are_refused_with_their_reason(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(Refused) as refused:
        read_snapshot(raw(**change))
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    ("side", "levels", "reason"),
    [
        ("bid", [["10.04", 12, 1]], "malformed"),  # not a pair
        ("bid", [["10.04"]], "malformed"),
        ("bid", ["10"], "malformed"),  # a string of two characters is no pair either
        ("bid", [{"10.04": 1, "10.03": 2}], "malformed"),
        ("ask", [["10.05", "7"]], "malformed"),  # a volume as text
        ("ask", [["10.05", 7.0]], "malformed"),
        ("ask", [["10.05", True]], "malformed"),
        ("ask", [["10.05", -7]], "negative_price"),
        ("ask", [[["10.05"], 7]], "malformed"),
        ("ask", {"10.05": 7}, "malformed"),  # not a list
        ("ask", [["10.05", 1]] * 6, "malformed"),  # six levels
    ],
)
def test_bad_book_levels_are_refused_even_with_prices_read_before(side: str, levels: Any, reason: str) -> None:
    read_snapshot(raw())  # 10.04 and 10.05 read once: a level of a price known takes the short path
    with pytest.raises(Refused) as refused:
        read_snapshot(raw(**{side: levels}))
    assert refused.value.reason == reason and side in str(refused.value)


def test_book_levels_read_before_and_new_ones_read_alike() -> None:
    levels = [["10.04", 12], [None, 0], ["0.000", 0], ["10.020", 0], ["9.87", 3]]  # 9.87: never read before here
    first, again = read_snapshot(raw(bid=levels)), read_snapshot(raw(bid=levels))
    assert first.bid == again.bid == ((1004, 1_200), (987, 300))  # no price, nobody, no volume: left out


def test_a_snapshot_missing_a_field_is_malformed() -> None:
    snapshot = raw()
    del snapshot["pre_close"]
    with pytest.raises(Refused) as refused:
        read_snapshot(snapshot)
    assert refused.value.reason == "malformed" and "pre_close" in str(refused.value)


# --- minute bars -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("taken", "minute"),
    [
        ("09:14:59", None),
        ("09:15:00", "09:30:00"),  # the opening auction folds into 09:30
        ("09:25:00", "09:30:00"),
        ("09:30:00", "09:30:00"),
        ("09:30:59", "09:30:00"),
        ("11:29:59", "11:29:00"),
        ("11:30:00", "11:29:00"),  # the lunch break's snapshots: 11:29
        ("12:59:59", "11:29:00"),
        ("13:00:00", "13:00:00"),
        ("14:59:59", "14:59:00"),
        ("15:00:03", "14:59:00"),  # the closing auction: 14:59
    ],
)
def test_the_minute_a_snapshot_belongs_to(taken: str, minute: str | None) -> None:
    assert bar_minute(at(taken)) == (at(minute) if minute else None)


def tick(t: str, last: int, volume: int, amount: int, code: str = "600000.SH") -> Tick:
    return Tick(code, at(t), last, 1002, None, None, 1000, volume, amount, (), ())


def test_minute_bars_from_cumulative_totals_worked_by_hand() -> None:
    bars = MinuteBars(grace_s=5)
    # 09:25 auction, then two snapshots in 09:30: the bar of 09:30 holds the auction too.
    assert bars.add(tick("09:25:00", 1002, 10_000, 10_020_000)) is None
    assert bars.add(tick("09:30:03", 1005, 15_000, 15_045_000)) is None
    assert bars.add(tick("09:30:57", 998, 18_000, 18_039_000)) is None
    # A snapshot of 09:31 closes 09:30: O 10.02 H 10.05 L 9.98 C 9.98, 18,000 shares, 180,390.00 CNY.
    closed = bars.add(tick("09:31:02", 1000, 20_000, 20_039_000))
    assert closed == Bar("600000.SH", at("09:30:00"), 1002, 1005, 998, 998, 18_000, 18_039_000)
    assert bars.add(tick("09:31:40", 1001, 23_000, 23_042_000)) is None
    # Nothing of a later minute comes: the timer closes 09:31 at 09:32:05, not a second before.
    assert bars.expire(at("09:32:04")) == []
    [timed] = bars.expire(at("09:32:05"))
    # 23,000 - 18,000 shares; 230,420.00 - 180,390.00 CNY
    assert timed == Bar("600000.SH", at("09:31:00"), 1000, 1001, 1000, 1001, 5_000, 5_003_000)
    # A snapshot of 09:31 arrives late (after the timer closed its minute): no price of it in any bar...
    assert bars.add(tick("09:31:59", 1003, 24_000, 24_045_000)) is None
    assert bars.add(tick("09:32:10", 1004, 25_000, 25_049_000)) is None
    closed = bars.add(tick("09:33:00", 1002, 26_000, 26_051_000))
    # ...but its 1,000 shares are in the next bar's: 25,000 - 23,000.
    assert closed == Bar("600000.SH", at("09:32:00"), 1004, 1004, 1004, 1004, 2_000, 2_007_000)


def test_bars_are_kept_per_code_and_a_new_day_starts_from_zero() -> None:
    bars = MinuteBars(grace_s=5)
    bars.add(tick("09:30:10", 1000, 1_000, 1_000_000))
    bars.add(tick("09:30:20", 2000, 500, 1_000_000, code="000001.SZ"))
    first = bars.add(tick("09:31:00", 1001, 1_500, 1_500_000))
    assert first is not None and first.volume == 1_000  # the other code's totals do not mix in
    [other] = [b for b in bars.expire(at("09:31:05")) if b.ts_code == "000001.SZ"]
    assert other.volume == 500
    next_day = date(2025, 1, 2)
    bars.add(Tick("600000.SH", at("09:30:10", next_day), 1010, 1010, None, None, 1001, 300, 303_000, (), ()))
    [bar] = bars.expire(at("09:32:00", next_day))
    assert bar.minute == at("09:30:00", next_day) and bar.volume == 300


def test_a_code_first_seen_mid_session_counts_from_its_first_snapshot() -> None:
    bars = MinuteBars(grace_s=5)
    bars.add(tick("10:00:10", 1000, 500_000, 500_000_000))  # what traded before the start is no bar's
    bars.add(tick("10:00:40", 1001, 501_000, 501_001_000))
    closed = bars.add(tick("10:01:00", 1002, 502_000, 502_003_000))
    assert closed is not None and (closed.volume, closed.amount) == (1_000, 1_001_000)


# --- the provider ---------------------------------------------------------------------------------------------


class FakeStore:
    """The stored facts the provider reads: the securities, and the closes of the session before DAY (the day's band:
    600000.SH closed at 10.00, the ST 000004.SZ at 5.00)."""

    def __init__(self) -> None:
        self.securities = [
            SecurityRecord("600000.SH", "600000", "浦发银行", "SH", "main", False, date(1999, 11, 10), None),
            SecurityRecord("000004.SZ", "000004", "*ST国华", "SZ", "main", True, date(1991, 1, 14), None),
        ]
        self.closes: dict[str, int] = {"600000.SH": 1000, "000004.SZ": 500}  # fen, on the session before DAY

    async def list_securities(self) -> list[SecurityRecord]:
        return list(self.securities)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[FakeStore]:
        yield self

    async def last_bars(self, before: date | None = None) -> dict[str, tuple[date, int]]:
        assert before is not None
        return {code: (before - timedelta(days=1), close) for code, close in self.closes.items()}

    async def session_pre_closes(self, day: date) -> dict[str, int]:
        return {}  # the day's bars are stored after its close: the band is around the last close

    async def session_limits(self, day: date) -> dict[str, tuple[int | None, int, int]]:
        return {}  # no exchange limits loaded: the bands are computed from the stored closes

    async def limits_loaded(self, kind: str, day: date) -> datetime | None:
        return None

    async def count_open_days(self, start: date, end: date) -> int:  # pragma: no cover - no recent listing here
        raise AssertionError("not a recent listing")


@pytest.fixture
def provider() -> tuple[RealtimeQuotes, MemoryBus, MemoryLiveStore, QuoteMetrics]:
    bus = MemoryBus()
    live = MemoryLiveStore()
    metrics = QuoteMetrics(CollectorRegistry(), lambda: at("09:31:10"))
    realtime = RealtimeQuotes(FakeStore(), live, bus, metrics, grace_s=5)  # type: ignore[arg-type]
    return realtime, bus, live, metrics


def events(bus: MemoryBus, event_type: str) -> list[Envelope]:
    return [e for e in bus.published if e.type == event_type]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Envelope] = []

    async def __call__(self, event: Envelope) -> None:
        self.seen.append(event)


async def test_the_provider_keeps_the_latest_quote_with_the_days_limits(provider: Any) -> None:
    realtime, bus, live, metrics = provider
    recorder = Recorder()
    await bus.subscribe("t", ["quotes.snapshot", "bars.1m"], recorder)
    result = await realtime.ingest(
        [
            raw(),
            raw(
                code="000004.SZ",
                last="5.10",
                open="5.00",
                high="5.12",
                low="4.99",
                pre_close="5.00",
                lots=7,
                bid=[["5.09", 3]],
                ask=[["5.10", 2]],
            ),  # the ST's band: 4.75 .. 5.25
            raw(code="600001.SH"),  # a main-board code the store does not know
            raw(last="-1.00"),
            raw(code="510300.SH"),  # a fund: not quoted, not refused either
        ],
        "bridge",
    )
    assert result.accepted == 2 and dict(result.rejected) == {"unknown_code": 1, "negative_price": 1}
    assert result.not_stocks == 1
    quote = LiveQuote.model_validate_json(await live.quote("600000.SH"))
    assert (quote.last, quote.volume, quote.amount) == (Decimal("10.05"), 15_000, Decimal("150450.00"))
    assert (quote.limit_up, quote.limit_down) == (Decimal("11.00"), Decimal("9.00"))  # main board: pre_close +-10%
    assert [(lv.price, lv.volume) for lv in quote.bid] == [(Decimal("10.04"), 1_200), (Decimal("10.03"), 500)]
    st = LiveQuote.model_validate_json(await live.quote("000004.SZ"))
    assert (st.limit_up, st.limit_down, st.volume) == (Decimal("5.25"), Decimal("4.75"), 700)  # ST: +-5%
    assert await live.quote("600001.SH") is None
    assert metrics.rejected.labels(reason="unknown_code")._value.get() == 1
    assert metrics.received.labels(source="bridge")._value.get() == 5
    assert metrics._age() == pytest.approx(67.0)  # 09:31:10 - 09:30:03

    # One event for the round, with the two quotes that passed.
    for _ in range(20):
        if recorder.seen:
            break
        await asyncio.sleep(0.01)
    [snapshot] = recorder.seen
    payload = snapshot.parsed()
    assert isinstance(payload, QuotesSnapshot)
    assert sorted(q.ts_code for q in payload.quotes) == ["000004.SZ", "600000.SH"]
    assert snapshot.payload["quotes"][0]["last"] in ("10.05", "5.10")


async def test_stale_and_shrinking_snapshots_are_dropped(provider: Any) -> None:
    realtime, _, live, _ = provider
    await realtime.ingest([raw(t="09:30:30", lots=150)], "bridge")
    again = await realtime.ingest([raw(t="09:30:30", lots=151)], "bridge")  # the same time: a repeat, skipped
    older = await realtime.ingest([raw(t="09:30:10", lots=149)], "bridge")
    shrunk = await realtime.ingest([raw(t="09:30:40", lots=140)], "bridge")
    assert (again.unchanged, again.accepted, dict(again.rejected)) == (1, 0, {})
    assert [dict(r.rejected) for r in (older, shrunk)] == [{"stale": 1}, {"volume_decreased": 1}]
    assert LiveQuote.model_validate_json(await live.quote("600000.SH")).volume == 15_000


async def test_bars_close_publish_and_are_stored(provider: Any) -> None:
    realtime, bus, live, _ = provider
    recorder = Recorder()
    await bus.subscribe("t", ["bars.1m"], recorder)
    await realtime.ingest([raw(t="09:30:03", last="10.05", lots=150, amount="150450.00")], "bridge")
    await realtime.ingest([raw(t="09:30:50", last="9.98", lots=180, amount="180390.00")], "bridge")
    await realtime.ingest([raw(t="09:31:01", last="10.00", lots=200, amount="200390.00")], "bridge")
    assert await realtime.expire(at("09:32:04")) == []
    await realtime.expire(at("09:32:05"))
    stored = [b.decode() for b in await live.bars(DAY, "600000.SH")]
    assert len(stored) == 2
    for _ in range(20):
        if len(recorder.seen) == 2:
            break
        await asyncio.sleep(0.01)
    first, second = (e.parsed() for e in recorder.seen)
    assert isinstance(first, BarsMinute) and isinstance(second, BarsMinute)
    [bar] = first.bars
    # from the day's start: 18,000 shares, 180,390.00 CNY; O 10.05 H 10.05 L 9.98 C 9.98
    assert (bar.minute, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.amount) == (
        at("09:30:00"), Decimal("10.05"), Decimal("10.05"), Decimal("9.98"), Decimal("9.98"), 18_000,
        Decimal("180390.00"),
    )  # fmt: skip
    [bar] = second.bars
    assert (bar.minute, bar.volume, bar.amount) == (at("09:31:00"), 2_000, Decimal("20000.00"))
    assert first.closed_at == at("09:31:01") and second.closed_at == at("09:32:05")
    # what is stored is the bar's MinuteBar JSON, as the event carries it
    assert json.loads(stored[0]) == {
        "ts_code": "600000.SH", "minute": "2024-12-31T09:30:00+08:00", "open": "10.05", "high": "10.05",
        "low": "9.98", "close": "9.98", "volume": 18_000, "amount": "180390.00",
    }  # fmt: skip
    assert [json.loads(text) for text in stored] == [e.payload["bars"][0] for e in recorder.seen]


async def test_the_snapshot_age_metric_is_nan_before_any_quote(provider: Any) -> None:
    _, _, _, metrics = provider
    assert metrics._age() != metrics._age()  # NaN


# --- settings -----------------------------------------------------------------------------------------------------


def test_the_feed_defaults_to_replay_standalone_and_bridge_in_fleet() -> None:
    from shared.platform.settings import Mode, Settings

    # The feed: replay standalone, bridge in fleet, unless LH_QUOTES_FEED says
    assert Settings(mode=Mode.STANDALONE).quotes_feed_mode() == "replay"
    fleet = {"mode": Mode.FLEET, "internal_secret": "x" * 32}
    assert Settings(**fleet).quotes_feed_mode() == "bridge"  # type: ignore[arg-type]
    assert Settings(**fleet, quotes_feed="off").quotes_feed_mode() == "off"  # type: ignore[arg-type]
    assert Settings(quotes_feed="").quotes_feed_mode() == "replay"  # type: ignore[arg-type]


# --- failures -----------------------------------------------------------------------------------------------------


async def test_the_stored_quotes_and_the_event_sent_are_the_schemas_json(provider: Any) -> None:
    """What is stored and sent is written directly (not through the schema): it is what LiveQuote and QuotesSnapshot
    read, field for field, and the event as the bus sends it carries the stored quotes."""
    realtime, _, live, _ = provider
    sent: list[str] = []

    class Wire(MemoryBus):  # what a broker would get: the event's JSON
        async def publish(self, event: Envelope) -> None:
            sent.append(event.model_dump_json())

    realtime.bus = Wire()
    before_trade = raw(
        code="000004.SZ", t="09:25:00", last="5.00", open=None, high="0", low=None, pre_close="5.00", lots=0,
        amount="0", bid=[["4.99", 3]], ask=[],
    )  # fmt: skip
    await realtime.ingest([raw(), before_trade], "replay")
    stored = {code: json.loads(await live.quote(code)) for code in ("600000.SH", "000004.SZ")}
    assert stored["600000.SH"] == {
        "ts_code": "600000.SH", "time": "2024-12-31T09:30:03+08:00", "last": "10.05", "open": "10.02",
        "high": "10.05", "low": "9.98", "pre_close": "10.00", "volume": 15_000, "amount": "150450.00",
        "bid": [{"price": "10.04", "volume": 1_200}, {"price": "10.03", "volume": 500}],
        "ask": [{"price": "10.05", "volume": 700}, {"price": "10.06", "volume": 3_000}, {"price": "10.07", "volume": 100}],
        "limit_up": "11.00", "limit_down": "9.00", "source": "replay",
    }  # fmt: skip
    assert stored["000004.SZ"] == {
        "ts_code": "000004.SZ", "time": "2024-12-31T09:25:00+08:00", "last": "5.00", "open": None, "high": None,
        "low": None, "pre_close": "5.00", "volume": 0, "amount": "0.00", "bid": [{"price": "4.99", "volume": 300}],
        "ask": [], "limit_up": "5.25", "limit_down": "4.75", "source": "replay",
    }  # fmt: skip
    for quote in stored.values():  # the schema reads it and writes it back the same
        assert json.loads(LiveQuote.model_validate(quote).model_dump_json()) == quote
    [message] = [json.loads(text) for text in sent]
    assert message["type"] == "quotes.snapshot" and message["source"] == "data"
    assert message["payload"] == {"as_of": "2024-12-31T09:30:03+08:00", "source": "replay",
                                  "quotes": [stored["600000.SH"], stored["000004.SZ"]]}  # fmt: skip
    assert isinstance(Envelope.model_validate(message).parsed(), QuotesSnapshot)


async def test_garbage_collection_is_held_off_during_a_round_only(provider: Any) -> None:
    realtime, _, _, _ = provider
    during: list[bool] = []

    class Watching(MemoryLiveStore):
        async def put_quotes(self, quotes: Any, feed: str) -> None:
            during.append(gc.isenabled())

    realtime.live = Watching()
    assert gc.isenabled()
    await realtime.ingest([raw()], "bridge")
    assert during == [False] and gc.isenabled()
    failing = RealtimeQuotes(
        FlakyStore(),
        MemoryLiveStore(),
        MemoryBus(),
        QuoteMetrics(CollectorRegistry(), lambda: at("09:31:00")),  # type: ignore[arg-type]
    )
    with pytest.raises(ConnectionError):
        await failing.ingest([raw()], "bridge")  # the securities cannot be read: the round fails
    assert gc.isenabled()  # back on after it


class BrokenLiveStore(MemoryLiveStore):
    async def put_quotes(self, quotes: Any, feed: str) -> None:
        raise ConnectionError("redis is down")


async def test_a_store_that_fails_keeps_nothing_and_the_round_is_still_published() -> None:
    bus, live = MemoryBus(), BrokenLiveStore()
    recorder = Recorder()
    await bus.subscribe("t", ["quotes.snapshot"], recorder)
    realtime = RealtimeQuotes(FakeStore(), live, bus, QuoteMetrics(CollectorRegistry(), lambda: at("09:31:00")))  # type: ignore[arg-type]
    result = await realtime.ingest([raw()], "bridge")
    assert result.accepted == 1
    assert await live.quote("600000.SH") is None  # nothing kept: the reads answer 503, never a made-up quote
    for _ in range(20):
        if recorder.seen:
            break
        await asyncio.sleep(0.01)
    assert [e.type for e in recorder.seen] == ["quotes.snapshot"]


class FlakyStore(FakeStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.fail = True

    async def list_securities(self) -> list[SecurityRecord]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("the database is down")
        return await super().list_securities()


async def test_securities_that_cannot_be_read_fail_the_round_until_read_once() -> None:
    store = FlakyStore()
    clock = [0.0]
    realtime = RealtimeQuotes(
        store, MemoryLiveStore(), MemoryBus(), QuoteMetrics(CollectorRegistry(), lambda: at("09:31:00")),  # type: ignore[arg-type]
        monotonic=lambda: clock[0],
    )  # fmt: skip
    with pytest.raises(ConnectionError):
        await realtime.ingest([raw()], "bridge")  # nothing known: nothing is taken on trust
    store.fail = False
    assert (await realtime.ingest([raw(t="09:30:04")], "bridge")).accepted == 1
    # Later the database goes down again; a round naming a new code a minute on makes a re-read, which fails:
    # the securities read before are used, the unknown code dropped.
    store.fail, clock[0] = True, 61.0
    result = await realtime.ingest([raw(t="09:30:05"), raw(code="600001.SH", t="09:30:05")], "bridge")
    assert (result.accepted, dict(result.rejected), store.calls) == (1, {"unknown_code": 1}, 3)


def test_what_the_bridge_program_sends_is_read_as_meant() -> None:
    """The bridge's own normalisation of an xtdata tick (bridge/qmt/normalize.py) read by the data service."""
    from bridge.qmt import normalize

    xt_tick = {
        "time": int(at("10:15:03").timestamp() * 1000),  # xtdata: milliseconds
        "lastPrice": 10.1, "open": 10.0, "high": 10.12, "low": 9.95, "lastClose": 10.03,
        "amount": 123456789.5, "volume": 122_345,  # lots
        "bidPrice": [10.09, 10.08, 0.0, 0.0, 0.0], "bidVol": [12, 30, 0, 0, 0],
        "askPrice": [10.1, 10.11, 10.12, 10.13, 10.14], "askVol": [5, 6, 7, 8, 9],
    }  # fmt: skip
    tick = read_snapshot(normalize.snapshot("600000.SH", xt_tick))
    assert tick.time == at("10:15:03")
    assert (tick.last, tick.open, tick.high, tick.low, tick.pre_close) == (1010, 1000, 1012, 995, 1003)
    assert (tick.volume, tick.amount) == (12_234_500, 12_345_678_950)
    assert tick.bid == ((1009, 1_200), (1008, 3_000))
    assert tick.ask[0] == (1010, 500) and len(tick.ask) == 5
    # a NaN open before the first trade comes as null
    assert read_snapshot(normalize.snapshot("600000.SH", {**xt_tick, "open": float("nan")})).open is None


# --- ticks (the bridge's per-code stream) beside the whole-market rounds ------------------------------------------


async def test_a_tick_is_taken_like_a_round_and_a_late_round_never_moves_the_quote_back(provider: Any) -> None:
    realtime, bus, live, metrics = provider
    recorder = Recorder()
    await bus.subscribe("t", ["quotes.snapshot"], recorder)
    await realtime.ingest([raw(t="09:30:03", lots=150, amount="150450.00")], "bridge")
    # a tick of 09:30:06 (the ticks stream): the same path, stored and published as a round
    tick = await realtime.ingest([raw(t="09:30:06", last="10.04", lots=160, amount="160500.00")], "bridge", ticks=True)
    assert (tick.accepted, dict(tick.rejected)) == (1, {})
    # the whole-market round sent before the tick but arriving after it, its snapshot of 09:30:05: superseded,
    # neither taken nor refused (no `stale` counted: the two streams interleave normally)
    late = await realtime.ingest([raw(t="09:30:05", last="10.05", lots=155, amount="155750.00")], "bridge")
    assert (late.accepted, late.superseded, dict(late.rejected)) == (0, 1, {})
    assert metrics.rejected.labels(reason="stale")._value.get() == 0
    quote = LiveQuote.model_validate_json(await live.quote("600000.SH"))
    assert (quote.time, quote.last, quote.volume) == (at("09:30:06"), Decimal("10.04"), 16_000)  # 160 lots
    # the round's snapshot of the tick's own time: the same quote again, skipped
    same = await realtime.ingest([raw(t="09:30:06", last="10.04", lots=160, amount="160500.00")], "bridge")
    assert (same.unchanged, same.accepted) == (1, 0)
    # a newer round's snapshot is taken, and then a tick older than it is superseded in turn
    newer = await realtime.ingest([raw(t="09:30:09", last="10.03", lots=170, amount="170550.00")], "bridge")
    old_tick = await realtime.ingest([raw(t="09:30:08", lots=165, amount="165600.00")], "bridge", ticks=True)
    assert (newer.accepted, old_tick.superseded, dict(old_tick.rejected)) == (1, 1, {})
    assert LiveQuote.model_validate_json(await live.quote("600000.SH")).time == at("09:30:09")
    # within one stream an older snapshot is still a refusal (reordered): stale
    reordered = await realtime.ingest([raw(t="09:30:07", lots=162, amount="161000.00")], "bridge")
    assert dict(reordered.rejected) == {"stale": 1}
    for _ in range(20):
        if len(recorder.seen) >= 3:
            break
        await asyncio.sleep(0.01)
    # three events: the first round, the tick, the newer round; each quote the consumers saw goes forward in time
    assert [[q["time"] for q in e.payload["quotes"]] for e in recorder.seen] == [
        [at("09:30:03").isoformat()], [at("09:30:06").isoformat()], [at("09:30:09").isoformat()],
    ]  # fmt: skip


def test_the_watched_codes_put_execution_first_and_stop_at_300() -> None:
    from services.data.realtime.watch import tick_codes

    gateway = [f"{600000 + i:06d}.SH" for i in range(290)]
    execution = ["000001.SZ", "600000.SH", "300750.SZ"] + [f"{1000 + i:06d}.SZ" for i in range(20)]
    chosen, dropped = tick_codes({"gateway:a": (gateway, 0.0), "execution:b": (execution, 0.0)})
    # union: 290 + 23 - 1 shared (600000.SH) = 312; execution's 23 first, then 277 of the gateway's: 300
    assert (len(chosen), dropped) == (300, 12)
    assert set(execution) <= set(chosen)
    assert chosen == sorted(chosen)
    assert tick_codes({}) == ([], 0)


async def test_the_bridge_endpoint_sends_the_watched_codes_on_change_and_again_after_a_failed_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bridge.qmt import protocol
    from services.data.realtime import bridge as endpoint

    monkeypatch.setattr(endpoint, "WATCH_POLL_S", 0.01)
    monkeypatch.setattr(endpoint, "TICKS_RETRY_S", 3600.0)
    live = MemoryLiveStore()
    sent: list[dict[str, Any]] = []

    class Socket:
        async def send_text(self, text: str) -> None:
            sent.append(json.loads(text.split("\n", 1)[1]))

    far = 4_102_444_800.0  # 2100-01-01: a lease that does not lapse during the test
    await live.put_watch("gateway:a", ["600000.SH"], far)
    await live.put_watch("execution:b", ["000001.SZ"], far)
    channel = protocol.Channel(secret="s" * 16, session="x", outgoing=protocol.TO_BRIDGE)
    state = endpoint.TickSubscription()
    task = asyncio.create_task(endpoint.watch_ticks(Socket(), channel, live, state, "b1"))  # type: ignore[arg-type]
    try:

        async def sent_count(n: int) -> None:
            async with asyncio.timeout(10):
                while len(sent) < n:  # noqa: ASYNC110 - the task sends on its own schedule
                    await asyncio.sleep(0.01)

        await sent_count(1)
        assert sent == [{"codes": ["000001.SZ", "600000.SH"]}]
        await asyncio.sleep(0.05)
        assert len(sent) == 1  # unchanged (and not unanswered for an hour): not sent again
        await live.put_watch("gateway:a", [], far)
        await sent_count(2)
        assert sent[1] == {"codes": ["000001.SZ"]}
        assert state.pending is not None
        assert state.answered(state.pending, {"ok": True, "body": {"failed": ["000001.SZ"]}}) is not None
        state.sent_at -= 3600  # an hour on: the failed set is sent again
        await sent_count(3)
        assert sent[2] == {"codes": ["000001.SZ"]} and state.retry is False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_watch_leases_lapse_in_memory() -> None:
    live = MemoryLiveStore()
    await live.put_watch("gateway:a", ["600000.SH"], 100.0)
    await live.put_watch("execution:b", ["000001.SZ"], 200.0)
    assert await live.watches(99.0) == {"gateway:a": (["600000.SH"], 100.0), "execution:b": (["000001.SZ"], 200.0)}
    assert await live.watches(100.0) == {"execution:b": (["000001.SZ"], 200.0)}  # lapsed at its expiry


def test_a_reply_not_of_the_protocols_shape_is_a_failure_never_an_error() -> None:
    from services.data.realtime.bridge import reply_problem

    assert reply_problem({"ok": True, "body": {"failed": []}}) is None
    assert reply_problem({"ok": True}) is None  # no body: nothing failed
    assert reply_problem({"ok": True, "body": {"failed": ["600000.SH"]}}) == "1 codes failed: 600000.SH"
    assert reply_problem({"ok": False, "error": "xtdata down"}) == "refused: xtdata down"
    for bad in ({"ok": True, "body": "oops"}, {"ok": True, "body": ["x"]}, {"ok": True, "body": {"failed": 3}}):
        assert reply_problem(bad) == "a reply not of the protocol's shape", bad
    assert reply_problem(["ok"]) == "a reply body that is not an object: list"


def test_an_unanswered_or_bad_subscribe_ticks_is_sent_again_after_the_retry_time_and_ids_stay_bounded() -> None:
    from services.data.realtime import bridge as endpoint

    retry = endpoint.TICKS_RETRY_S  # 30 s
    state = endpoint.TickSubscription()
    codes = ["600000.SH"]
    assert state.due(codes, 0.0)  # never sent
    state.sending("t1", codes, 100.0)
    assert not state.due(codes, 100.0 + retry - 1)  # unanswered, but not for 30 s yet
    assert state.due(codes, 100.0 + retry)  # unanswered for 30 s: again
    assert state.due(["000001.SZ"], 101.0)  # changed: at once
    state.sending("t2", codes, 200.0)
    assert state.answered("t1", {"ok": True, "body": {"failed": ["600000.SH"]}}) is not None
    assert not state.retry and state.pending == "t2"  # an older request's failure: the newer one stands
    assert state.answered("t2", {"ok": True, "body": "not an object"}) == "a reply not of the protocol's shape"
    assert state.retry and state.pending is None and state.due(codes, 200.0 + retry)
    state.sending("t3", codes, 300.0)
    assert state.answered("t3", {"ok": True, "body": {"failed": []}}) is None
    assert not state.due(codes, 300.0 + 10 * retry)  # answered in full: not sent again until changed
    for n in range(100):  # a bridge that never answers: the ids kept stay bounded
        state.sending(f"n{n}", codes, 400.0 + n)
    assert len(state.ids) == endpoint.TICK_IDS_KEPT == 16 and state.ids[-1] == "n99"


def test_execution_priority_follows_the_authenticated_service_not_the_owner_name() -> None:
    from services.data.realtime.watch import stored_owner, tick_codes
    from shared.platform.errors import ServiceError
    from shared.platform.internal_auth import Principal
    from shared.platform.roles import SERVICE

    execution, gateway = Principal("svc:execution", SERVICE), Principal("svc:gateway", SERVICE)
    assert stored_owner(execution, "execution:h:1") == "execution:h:1"
    assert stored_owner(execution, "h:1") == "execution:h:1"
    assert stored_owner(gateway, "execution:h:1") == "gateway:execution:h:1"
    for caller in (Principal("alice", "admin"), Principal("svc:strategy", SERVICE), Principal("svc:gateway", "admin")):
        with pytest.raises(ServiceError) as refused:
            stored_owner(caller, "execution:h:1")
        assert (refused.value.status_code, refused.value.code) == (403, "forbidden"), caller
    # The gateway's 300 codes under a name of execution's: execution's own 3 codes still go first.
    gateway_codes = [f"{600000 + i:06d}.SH" for i in range(300)]
    mine = ["000001.SZ", "000002.SZ", "000003.SZ"]
    chosen, dropped = tick_codes(
        {stored_owner(gateway, "execution:a"): (gateway_codes, 0.0), stored_owner(execution, "z"): (mine, 0.0)}
    )
    # union 303, limit 300: execution's 3 in, 297 of the gateway's, 3 dropped
    assert set(mine) <= set(chosen) and (len(chosen), dropped) == (300, 3)


class Journal:
    """What a round did, in order: each store write and publication as it began and as it ended (each one slow, so
    that work which may overlap does)."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def live(self) -> MemoryLiveStore:
        journal = self

        class Slow(MemoryLiveStore):
            async def put_quotes(self, quotes: Any, feed: str) -> None:
                journal.log.append("quotes stored: begin")
                await asyncio.sleep(0.02)
                await super().put_quotes(quotes, feed)
                journal.log.append("quotes stored")

            async def add_bars(self, day: date, bars: Any) -> None:
                journal.log.append("bars stored: begin")
                await asyncio.sleep(0.02)
                await super().add_bars(day, bars)
                journal.log.append("bars stored")

        return Slow()

    def bus(self) -> MemoryBus:
        journal = self

        class Slow(MemoryBus):
            async def publish(self, event: Envelope) -> None:
                journal.log.append(f"{event.type} published: begin")
                await asyncio.sleep(0.02)
                await super().publish(event)
                journal.log.append(f"{event.type} published")

        return Slow()


async def test_a_round_stores_before_it_publishes_and_the_bars_are_stored_while_the_snapshot_is_published() -> None:
    journal = Journal()
    live, bus = journal.live(), journal.bus()
    realtime = RealtimeQuotes(FakeStore(), live, bus, QuoteMetrics(CollectorRegistry(), lambda: at("09:31:10")))  # type: ignore[arg-type]
    await realtime.ingest([raw(t="09:30:03", lots=150)], "bridge")
    assert journal.log == ["quotes stored: begin", "quotes stored", "quotes.snapshot published: begin",
                           "quotes.snapshot published"]  # fmt: skip
    journal.log.clear()
    result = await realtime.ingest([raw(t="09:31:01", lots=200, amount="200390.00")], "bridge")  # closes 09:30's bar
    assert len(result.bars) == 1
    log = journal.log
    # the quotes stored before the snapshot is published; the bar stored (while the snapshot is published) before
    # bars.1m is; bars.1m after the snapshot
    assert log[:2] == ["quotes stored: begin", "quotes stored"]
    assert set(log[2:6]) == {"quotes.snapshot published: begin", "quotes.snapshot published", "bars stored: begin",
                             "bars stored"}  # fmt: skip
    assert log.index("bars stored: begin") < log.index("quotes.snapshot published")  # at the same time
    assert log[6:] == ["bars.1m published: begin", "bars.1m published"]
    assert len(await live.bars(DAY, "600000.SH")) == 1


async def test_bars_that_cannot_be_stored_are_published_after_the_snapshot_all_the_same() -> None:
    journal = Journal()

    class NoBars(MemoryLiveStore):
        async def add_bars(self, day: date, bars: Any) -> None:
            raise ConnectionError("redis is down")

    bus = journal.bus()
    realtime = RealtimeQuotes(FakeStore(), NoBars(), bus, QuoteMetrics(CollectorRegistry(), lambda: at("09:31:10")))  # type: ignore[arg-type]
    await realtime.ingest([raw(t="09:30:03", lots=150)], "bridge")
    await realtime.ingest([raw(t="09:31:01", lots=200, amount="200390.00")], "bridge")
    assert [line for line in journal.log if not line.endswith("begin")] == [
        "quotes.snapshot published", "quotes.snapshot published", "bars.1m published"
    ]  # fmt: skip
