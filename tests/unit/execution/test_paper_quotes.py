"""The paper broker reads the data service's reference data (every security's quote for a session, held in memory)
through the one quote schema (shared.platform.quotes) and fails closed on an answer that does not fit it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest

from services.execution.brokers.base import BrokerUnavailable
from services.execution.brokers.paper import PaperQuote, PaperQuotes, PaperSession
from shared.core.domain.codes import Board
from shared.core.market.matching import SessionBar
from shared.platform.errors import ServiceError
from shared.platform.http import ServiceDirectory
from shared.platform.quotes import Quote

QUOTE = Quote(
    ts_code="600000.SH",
    name="浦发银行",
    board=Board.MAIN,
    is_st=False,
    last_trade_date=date(2024, 12, 31),
    last_close=Decimal("10.00"),
    next_trade_date=date(2025, 1, 2),
    suspended=False,
    limit_up=Decimal("11.00"),
    limit_down=Decimal("9.00"),
)


def _reference(quote: Any, session: str | None = None) -> httpx.Response:
    """The data service's `/v1/reference` answer holding `quote` (a quote's JSON, or None: no such security)."""
    rows = [] if quote is None else [{**quote, "industry": "银行", "avg_vol_20d": 1_000_000}]
    body = {"data_version": 7, "session": session, "next_trade_date": "2025-01-02", "securities": rows}
    return httpx.Response(200, json=body)


class _Client:
    def __init__(self, body: Any) -> None:
        self.body = body

    async def request(self, method: str, path: str, headers: dict[str, str], params: dict[str, str]) -> Any:
        assert (method, path, params) == ("GET", "/v1/reference", {})
        return _reference(self.body)


class _Directory:
    def __init__(self, body: Any) -> None:
        self.body = body

    def client(self, name: str) -> _Client:
        assert name == "data"
        return _Client(self.body)


def _quotes(body: Any) -> PaperQuotes:
    return PaperQuotes(cast(ServiceDirectory, _Directory(body)), "unit-secret-0123456789abcdef0123")


def _answer(**changes: Any) -> dict[str, Any]:
    body = QUOTE.model_dump(mode="json")  # what the data service sends: the schema as JSON
    body.update(changes)
    return body


async def test_the_data_services_answer_is_read_through_the_schema() -> None:
    assert await _quotes(_answer()).latest("600000.SH") == PaperQuote(
        last_close=Decimal("10.00"),
        suspended=False,
        limit_up=Decimal("11.00"),
        limits_for=date(2025, 1, 2),
        last_trade_date=date(2024, 12, 31),
        limit_down=Decimal("9.00"),
    )
    halted_never_traded = _answer(last_close=None, last_trade_date=None, suspended=True, limit_up=None, limit_down=None)
    assert await _quotes(halted_never_traded).latest("600000.SH") == PaperQuote(None, True, None, date(2025, 1, 2))


async def test_a_quote_without_its_limit_up_is_refused_not_read_as_a_session_without_limits() -> None:
    body = _answer()
    del body["limit_up"]
    with pytest.raises(BrokerUnavailable, match=r"no market data for 600000\.SH: .*reference data is malformed"):
        await _quotes(body).latest("600000.SH")


@pytest.mark.parametrize(
    "changes",
    [
        {"suspended": "no"},  # not a boolean
        {"last_close": "10.005"},  # off the 0.01 tick
        {"last_close": "ten"},
        {"board": "moon"},
    ],
)
async def test_a_malformed_quote_fails_closed(changes: dict[str, Any]) -> None:
    with pytest.raises(BrokerUnavailable, match="malformed"):
        await _quotes(_answer(**changes)).latest("600000.SH")


async def test_a_traded_security_without_a_last_close_fails_closed() -> None:
    with pytest.raises(BrokerUnavailable, match="no usable last close"):
        await _quotes(_answer(last_close=None)).latest("600000.SH")


# --- a replayed session's bar (the paper broker on a replay clock) ---------------------------------------------------

SESSION = date(2024, 3, 4)
BAR = {"ts_code": "600000.SH", "open": "10.20", "high": "10.60", "low": "10.05", "close": "10.50",
       "pre_close": "9.80", "vol": 2000000, "amount": "20800000.00", "adj_factor": "1.000000"}  # fmt: skip


class _SessionClient:
    """The data service's reference data of a session and its cross-section (every bar of the day), recording
    what was asked."""

    def __init__(self, quote: Any, bars: Any) -> None:
        self.quote, self.bars = quote, bars
        self.asked: list[tuple[str, dict[str, str]]] = []

    async def request(self, method: str, path: str, headers: dict[str, str], params: dict[str, str]) -> Any:
        self.asked.append((path, params))
        return _reference(self.quote, params.get("session"))

    async def get_json(self, path: str, headers: dict[str, str], params: dict[str, str]) -> Any:
        self.asked.append((path, params))
        if isinstance(self.bars, ServiceError) and path == "/v1/cross-section":
            raise self.bars
        return self.bars


class _SessionDirectory:
    def __init__(self, client: _SessionClient) -> None:
        self.http = client

    def client(self, name: str) -> _SessionClient:
        assert name == "data"
        return self.http


def _session_quotes(quote: Any, bars: Any) -> tuple[PaperQuotes, _SessionClient]:
    client = _SessionClient(quote, bars)
    return PaperQuotes(cast(ServiceDirectory, _SessionDirectory(client)), "unit-secret-0123456789abcdef0123"), client


async def test_a_sessions_bar_is_read_in_fen_with_that_sessions_limits() -> None:
    quote = _answer(last_trade_date="2024-03-01", last_close="9.80", next_trade_date="2024-03-04",
                    limit_up="10.78", limit_down="8.82")  # fmt: skip
    quotes, client = _session_quotes(quote, {"trade_date": "2024-03-04", "bars": [BAR]})
    session = await quotes.session("600000.SH", SESSION)
    assert session == PaperSession(
        board=Board.MAIN,
        bar=SessionBar(
            trade_date=SESSION,
            open=1020,
            high=1060,
            low=1005,
            close=1050,
            vol=2_000_000,
            amount_fen=2_080_000_000,
            up_limit=1078,
            down_limit=882,
        ),
    )
    assert client.asked == [
        ("/v1/reference", {"session": "2024-03-04"}),
        ("/v1/cross-section", {"trade_date": "2024-03-04"}),
    ]
    # The day's bars are held with the reference data: the next order of that session asks for nothing.
    assert await quotes.session("600000.SH", SESSION) == session
    assert len(client.asked) == 2
    # A session without limits (a new listing's first days) has none on the bar.
    quotes, _ = _session_quotes({**quote, "limit_up": None, "limit_down": None}, {"bars": [BAR]})
    unlimited = await quotes.session("600000.SH", SESSION)
    assert unlimited is not None and unlimited.bar is not None
    assert (unlimited.bar.up_limit, unlimited.bar.down_limit) == (None, None)


async def test_a_suspended_session_has_no_bar_and_an_unknown_security_no_session() -> None:
    quotes, client = _session_quotes(_answer(suspended=True), {"bars": [BAR]})
    assert await quotes.session("600000.SH", SESSION) == PaperSession(Board.MAIN, None)
    assert [path for path, _ in client.asked] == ["/v1/reference"]  # no bar asked for
    quotes, _ = _session_quotes(_answer(), {"bars": []})  # the quote and the bars disagree: no bar, no fill
    assert await quotes.session("600000.SH", SESSION) == PaperSession(Board.MAIN, None)
    quotes, _ = _session_quotes(None, None)  # not in the reference data: a security the data service does not know
    assert await quotes.session("600000.SH", SESSION) is None


@pytest.mark.parametrize(
    "bars",
    [
        {"bars": [{**BAR, "open": "10.205"}]},  # off the tick
        {"bars": [{**BAR, "vol": None}]},
        {"bars": [{k: v for k, v in BAR.items() if k != "close"}]},
        {"rows": []},
        ServiceError("data_unavailable", "down", status_code=503),
    ],
)
async def test_a_malformed_or_missing_bar_fails_closed(bars: Any) -> None:
    quotes, _ = _session_quotes(_answer(), bars)
    with pytest.raises(BrokerUnavailable, match="2024-03-04"):
        await quotes.session("600000.SH", SESSION)


LIVE = {
    "ts_code": "600000.SH",
    "time": "2024-12-31T10:00:03+08:00",
    "last": "10.00",
    "open": "9.90",
    "high": "10.05",
    "low": "9.88",
    "pre_close": "9.95",
    "volume": 120000,
    "amount": "1200000.00",
    "bid": [{"price": "9.99", "volume": 300}],
    "ask": [{"price": "10.01", "volume": 500}, {"price": "10.02", "volume": 800}],
    "limit_up": "10.95",
    "limit_down": "8.96",
    "source": "replay",
    "as_of": "2024-12-31T10:00:03+08:00",
    "age_s": 1.5,
}


class _LiveClient:
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body

    async def request(self, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
        assert (method, path) == ("GET", "/v1/quotes/600000.SH/live")
        return httpx.Response(self.status, json=self.body)


class _LiveDirectory:
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body

    def client(self, name: str) -> _LiveClient:
        assert name == "data"
        return _LiveClient(self.status, self.body)


def _live(status: int, body: Any) -> PaperQuotes:
    return PaperQuotes(cast(ServiceDirectory, _LiveDirectory(status, body)), "unit-secret-0123456789abcdef0123")


async def test_the_live_quote_read_on_a_miss_is_the_data_services_and_fails_closed() -> None:
    quote = await _live(200, LIVE).live("600000.SH")
    assert quote is not None
    assert [(lv.price, lv.volume) for lv in quote.ask] == [(Decimal("10.01"), 500), (Decimal("10.02"), 800)]
    assert quote.limit_up == Decimal("10.95")
    # no feed has quoted it, or the feed is off: no quote (the order rests, a market order is cancelled)
    for status, code in ((404, "no_live_quote"), (503, "quotes_feed_off")):
        assert await _live(status, {"code": code, "message": "m"}).live("600000.SH") is None
    # the quotes store down, or a data service failing: unavailable, never a made-up quote
    for status, code in ((503, "quotes_unavailable"), (500, "internal_error")):
        with pytest.raises(BrokerUnavailable):
            await _live(status, {"code": code, "message": "m"}).live("600000.SH")
    with pytest.raises(BrokerUnavailable):
        await _live(200, {**LIVE, "ask": "not levels"}).live("600000.SH")


def test_the_latest_live_quote_held_is_the_newest_of_its_day_and_a_replay_may_go_back_a_day() -> None:
    from services.execution.brokers.paper import LiveQuotes
    from shared.platform.events import LiveQuote

    def at(moment: str) -> LiveQuote:
        fields = {k: v for k, v in LIVE.items() if k not in ("as_of", "age_s")}
        return LiveQuote.model_validate({**fields, "time": moment})

    held = LiveQuotes()
    assert held.put(at("2024-12-31T10:00:03+08:00"))
    assert not held.put(at("2024-12-31T10:00:00+08:00"))  # an older round of the day (reordered): not kept
    assert not held.put(at("2024-12-31T10:00:03+08:00"))  # the same again
    assert held.put(at("2024-12-31T10:00:06+08:00"))
    assert held.put(at("2024-12-30T09:31:00+08:00"))  # a replay moved back to an earlier session
    got = held.get("600000.SH")
    assert got is not None and got.time.isoformat() == "2024-12-30T09:31:00+08:00"


def test_what_traded_between_rounds_is_the_increase_of_the_days_volume_and_nothing_without_a_round_before() -> None:
    from services.execution.brokers.paper import LiveQuotes
    from shared.platform.events import LiveQuote

    def at(moment: str, volume: int) -> LiveQuote:
        fields = {k: v for k, v in LIVE.items() if k not in ("as_of", "age_s")}
        return LiveQuote.model_validate({**fields, "time": moment, "volume": volume})

    held = LiveQuotes()
    first = at("2024-12-31T10:00:00+08:00", 100_000)
    held.put(first)
    assert held.traded(first) == 0  # no round before it was heard
    second = at("2024-12-31T10:00:03+08:00", 100_700)
    held.put(second)
    assert held.traded(second) == 700
    held.put(second)  # redelivered: still what it traded
    assert held.traded(second) == 700
    third = at("2024-12-31T10:00:06+08:00", 100_700)
    held.put(third)
    assert held.traded(third) == 0  # the same depth shown again, nothing traded
    # the next day's first round: all the day's volume so far traded since the last round of the day before
    morning = at("2025-01-02T09:31:00+08:00", 2_500)
    held.put(morning)
    assert held.traded(morning) == 2_500
