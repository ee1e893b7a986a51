"""A Redis hot book whose server is down (a loopback port nobody listens on: no shared server is touched) says so
with BookUnavailable from every call, so that risk refuses new orders (503 risk_unavailable) instead of deciding
blind."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.risk.state.ports import BookSnapshot, BookUnavailable, CashEvent, OrderEvent, TradeEvent
from services.risk.state.redis_book import RedisHotBook
from shared.core.domain import OrderSide

AT = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on leaving: nothing listens there


@pytest.fixture
async def down() -> AsyncIterator[RedisHotBook]:
    # no retries with back-off: the test is about what the book raises, not the client's patience
    client = Redis(host="127.0.0.1", port=closed_port(), retry=Retry(NoBackoff(), 0), socket_connect_timeout=2)
    yield RedisHotBook(client, "lhtest-down")
    await client.aclose()


async def test_every_call_on_a_book_whose_redis_is_down_raises_book_unavailable(down: RedisHotBook) -> None:
    with pytest.raises(BookUnavailable):
        await down.view("acct", date(2026, 12, 7))
    with pytest.raises(BookUnavailable):
        await down.reserve("acct", "c1", ts_code="600000.SH", side=OrderSide.BUY, qty=100, cap_fen=1000,
                           need_fen=100_503, session=date(2026, 12, 7), decided_at=AT)  # fmt: skip
    for event in (
        CashEvent("acct", "dep-1", 100),
        OrderEvent("acct", "c1", "600000.SH", OrderSide.BUY, 100, "accepted", 0),
        TradeEvent("acct", "t1", "c1", "600000.SH", OrderSide.BUY, 100, -100_503, date(2026, 12, 7)),
    ):
        with pytest.raises(BookUnavailable):
            await down.apply(event)
    with pytest.raises(BookUnavailable):
        await down.seed(BookSnapshot("acct", AT, 0, (), (), frozenset(), frozenset()), keep_decided_since=AT)
    with pytest.raises(BookUnavailable):
        await down.seeded("acct")
    with pytest.raises(BookUnavailable):
        await down.release("acct", "c1")
    with pytest.raises(BookUnavailable):
        await down.expire_decided(AT)
    with pytest.raises(BookUnavailable):
        await down.drop("acct")
