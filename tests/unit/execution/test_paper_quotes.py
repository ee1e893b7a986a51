"""The paper broker reads the data service's quote through the one quote schema (shared.platform.quotes) and fails
closed on an answer that does not fit it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, cast

import pytest

from services.execution.brokers.base import BrokerUnavailable
from services.execution.brokers.paper import PaperQuote, PaperQuotes
from shared.core.domain.codes import Board
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


class _Client:
    def __init__(self, body: Any) -> None:
        self.body = body

    async def get_json(self, path: str, headers: dict[str, str]) -> Any:
        assert path == "/v1/quotes/600000.SH"
        return self.body


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
        last_close=Decimal("10.00"), suspended=False, limit_up=Decimal("11.00")
    )
    halted_never_traded = _answer(last_close=None, last_trade_date=None, suspended=True, limit_up=None)
    assert await _quotes(halted_never_traded).latest("600000.SH") == PaperQuote(None, True, None)


async def test_a_quote_without_its_limit_up_is_refused_not_read_as_a_session_without_limits() -> None:
    body = _answer()
    del body["limit_up"]
    with pytest.raises(BrokerUnavailable, match=r"quote for 600000\.SH is malformed"):
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
