"""An account's order activity as the rules read it, kept beside its book: orders and cancels in the current second
and today (the order-rate rule), the last seconds' orders (the duplicate rule), and the equity marks of the losses
rule (the day's opening equity and the all-time high-water mark). Redis in fleet mode (shared by every risk process),
memory in standalone mode; the same answers for the same calls (tests/integration/risk/test_activity_stores.py).

Counted are the orders risk approves (an order risk refuses never reaches the exchange) and the cancels execution
reports (`order.cancelled`). A duplicate is claimed atomically (`claim`): of two identical orders sent at once, one
passes. The day's opening equity is the equity the account had when risk first saw it that day (risk does not see
the market's open itself); the high-water mark is the highest equity risk has seen."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.risk.rules.base import Counters, RecentOrder
from services.risk.state.ports import BookUnavailable
from shared.core.domain import OrderSide

RECENT_S = 60  # recent orders are kept this long (the duplicate rule's window is at most this)


@dataclass(frozen=True)
class Activity:
    counters: Counters
    recent: tuple[RecentOrder, ...]
    opening_equity: Decimal | None  # the day's (None: not marked, see `read`)
    high_water: Decimal | None  # all time


class ActivityLog(Protocol):
    async def read(
        self, account_id: str, *, now: datetime, day: date, equity: Decimal | None, recent: bool = True
    ) -> Activity:
        """The account's activity before this order (the recent orders only with `recent`: the duplicate rule's),
        marking `equity` (the day's opening if first seen today; the high-water mark if higher). `equity` None (a
        holding without a price: the equity is not known): the marks are neither read nor moved (None). Raises
        BookUnavailable."""

    async def claim(self, account_id: str, fingerprint: str, window_s: int, client_order_id: str) -> bool:
        """Atomically: False if another order (another client_order_id) with this fingerprint was claimed in the
        last `window_s` seconds, else claim it for `client_order_id` (True)."""

    async def unclaim(self, account_id: str, fingerprint: str) -> None:
        """Give a claim back (the order was refused after all)."""

    async def note_order(self, account_id: str, order: RecentOrder, *, day: date) -> None:
        """Count an order execution took and keep it among the recent ones."""

    async def note_cancel(self, account_id: str, *, at: datetime, day: date, key: str) -> None:
        """Count a cancel, once per `key` (the cancelled order's client_order_id: its event may be delivered twice)."""


def fingerprint(order: RecentOrder) -> str:
    price = order.price if order.price is not None else "market"
    return f"{order.session}|{order.ts_code}|{order.side.value}|{price}|{order.qty}"


def _second(at: datetime) -> int:
    return int(at.timestamp())


class MemoryActivity:
    def __init__(self) -> None:
        self._per_second: dict[tuple[str, str, int], int] = {}
        self._per_day: dict[tuple[str, str, date], int] = {}
        # by account, then by the session the orders are for (None: no session), each oldest first (as noted)
        self._recent: dict[str, dict[date | None, deque[RecentOrder]]] = {}
        self._claims: dict[tuple[str, str], tuple[float, str]] = {}
        self._marks: dict[str, tuple[date, Decimal, Decimal]] = {}
        self._cancelled: set[tuple[str, str]] = set()

    async def read(
        self, account_id: str, *, now: datetime, day: date, equity: Decimal | None, recent: bool = True
    ) -> Activity:
        second = _second(now)
        counters = Counters(
            orders_last_second=self._per_second.get((account_id, "o", second), 0),
            cancels_last_second=self._per_second.get((account_id, "c", second), 0),
            orders_today=self._per_day.get((account_id, "o", day), 0),
            cancels_today=self._per_day.get((account_id, "c", day), 0),
        )
        # Only this session's recent orders (and those of none) can be its duplicates: the others are not read (a
        # replayed market goes through many sessions a minute). The expired ones are dropped as they come first.
        by_session = self._recent.get(account_id, {})
        horizon = now - timedelta(seconds=RECENT_S)
        for session, orders in list(by_session.items()):
            while orders and orders[0].at < horizon:
                orders.popleft()
            if not orders:
                del by_session[session]
        found = (*by_session.get(day, ()), *by_session.get(None, ())) if recent else ()
        if equity is None:
            return Activity(counters, found, None, None)
        marked = self._marks.get(account_id)
        if marked is None:
            opening, high = equity, equity
        else:
            opening = marked[1] if marked[0] == day else equity
            high = max(marked[2], equity)
        self._marks[account_id] = (day, opening, high)
        return Activity(counters, found, opening, high)

    async def claim(self, account_id: str, fingerprint: str, window_s: int, client_order_id: str) -> bool:
        now = time.monotonic()
        held = self._claims.get((account_id, fingerprint))
        if held is not None and held[0] > now and held[1] != client_order_id:
            return False
        self._claims[(account_id, fingerprint)] = (now + window_s, client_order_id)
        if len(self._claims) > 10_000:
            self._claims = {k: v for k, v in self._claims.items() if v[0] > now}
        return True

    async def unclaim(self, account_id: str, fingerprint: str) -> None:
        self._claims.pop((account_id, fingerprint), None)

    async def note_order(self, account_id: str, order: RecentOrder, *, day: date) -> None:
        self._count(account_id, "o", order.at, day)
        self._recent.setdefault(account_id, {}).setdefault(order.session, deque()).append(order)

    async def note_cancel(self, account_id: str, *, at: datetime, day: date, key: str) -> None:
        if (account_id, key) in self._cancelled:
            return
        self._cancelled.add((account_id, key))
        if len(self._cancelled) > 100_000:
            self._cancelled.clear()  # (a redelivery that late counts once more: the counters only err on risk's side)
        self._count(account_id, "c", at, day)

    def _count(self, account_id: str, kind: str, at: datetime, day: date) -> None:
        second = _second(at)
        key = (account_id, kind, second)
        self._per_second[key] = self._per_second.get(key, 0) + 1
        self._per_day[(account_id, kind, day)] = self._per_day.get((account_id, kind, day), 0) + 1
        if len(self._per_second) > 10_000:
            self._per_second = {k: v for k, v in self._per_second.items() if k[2] >= second - 2}


class RedisActivity:
    """Keys under the account's hash tag: `{prefix}:act:{account}:` + `s:o:<second>`, `s:c:<second>` (expire in 2 s),
    `d:o:<day>`, `d:c:<day>` (2 days), `recent` (a sorted set by time), `dup:<fingerprint>` (the window), `marks` (a
    hash: day, opening, high), each changed atomically."""

    # KEYS: marks. ARGV: day, equity (a decimal string). Returns {opening, high} as strings.
    _MARK = """
local day = redis.call('HGET', KEYS[1], 'day')
local opening = redis.call('HGET', KEYS[1], 'opening')
local high = redis.call('HGET', KEYS[1], 'high')
if day ~= ARGV[1] or not opening then
  opening = ARGV[2]
  redis.call('HSET', KEYS[1], 'day', ARGV[1], 'opening', opening)
end
if not high or tonumber(ARGV[2]) > tonumber(high) then
  high = ARGV[2]
  redis.call('HSET', KEYS[1], 'high', high)
end
return {opening, high}
"""

    def __init__(self, client: aioredis.Redis, prefix: str = "lh:risk") -> None:
        self.client = client
        self.prefix = prefix
        self._mark = client.register_script(self._MARK)

    def _key(self, account_id: str, rest: str) -> str:
        return f"{self.prefix}:act:{{{account_id}}}:{rest}"

    async def read(
        self, account_id: str, *, now: datetime, day: date, equity: Decimal | None, recent: bool = True
    ) -> Activity:
        second = _second(now)
        opening: Decimal | None = None
        high: Decimal | None = None
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.get(self._key(account_id, f"s:o:{second}"))
                pipe.get(self._key(account_id, f"s:c:{second}"))
                pipe.get(self._key(account_id, f"d:o:{day.isoformat()}"))
                pipe.get(self._key(account_id, f"d:c:{day.isoformat()}"))
                pipe.zremrangebyscore(self._key(account_id, "recent"), "-inf", now.timestamp() - RECENT_S)
                if recent:
                    pipe.zrange(self._key(account_id, "recent"), 0, -1)
                so, sc, do, dc, _, *listed = await pipe.execute()
            if equity is not None:
                # equity marks: Lua on the hash alone (its own call: a script in a pipeline is sent as EVALSHA blindly)
                marked = await self._mark(keys=[self._key(account_id, "marks")], args=[day.isoformat(), str(equity)])
                opening, high = Decimal(_text(marked[0])), Decimal(_text(marked[1]))
        except (RedisError, OSError) as exc:
            raise BookUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc
        counters = Counters(
            orders_last_second=int(so or 0),
            cancels_last_second=int(sc or 0),
            orders_today=int(do or 0),
            cancels_today=int(dc or 0),
        )
        return Activity(counters, tuple(_recent(r) for r in (listed[0] if listed else ())), opening, high)

    async def claim(self, account_id: str, fingerprint: str, window_s: int, client_order_id: str) -> bool:
        key = self._key(account_id, f"dup:{fingerprint}")
        try:
            if await self.client.set(key, client_order_id, nx=True, ex=window_s):
                return True
            holder = await self.client.get(key)
        except (RedisError, OSError) as exc:
            raise BookUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc
        if isinstance(holder, bytes):
            holder = holder.decode()
        return holder == client_order_id

    async def unclaim(self, account_id: str, fingerprint: str) -> None:
        try:
            await self.client.delete(self._key(account_id, f"dup:{fingerprint}"))
        except (RedisError, OSError) as exc:
            raise BookUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc

    async def note_order(self, account_id: str, order: RecentOrder, *, day: date) -> None:
        member = json.dumps(
            {
                "c": order.ts_code,
                "s": order.side.value,
                "p": None if order.price is None else str(order.price),
                "q": order.qty,
                "t": order.at.isoformat(),
                "o": order.client_order_id,
                "d": None if order.session is None else order.session.isoformat(),
            },
            separators=(",", ":"),
        )
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                self._count(pipe, account_id, "o", order.at, day)
                pipe.zadd(self._key(account_id, "recent"), {member: order.at.timestamp()})
                pipe.expire(self._key(account_id, "recent"), RECENT_S * 2)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BookUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc

    async def note_cancel(self, account_id: str, *, at: datetime, day: date, key: str) -> None:
        try:
            if not await self.client.set(self._key(account_id, f"cx:{key}"), "1", nx=True, ex=2 * 86_400):
                return  # counted already (a redelivered event)
            async with self.client.pipeline(transaction=True) as pipe:
                self._count(pipe, account_id, "c", at, day)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BookUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc

    def _count(self, pipe: aioredis.client.Pipeline, account_id: str, kind: str, at: datetime, day: date) -> None:
        per_second = self._key(account_id, f"s:{kind}:{_second(at)}")
        per_day = self._key(account_id, f"d:{kind}:{day.isoformat()}")
        pipe.incr(per_second)
        pipe.expire(per_second, 2)
        pipe.incr(per_day)
        pipe.expire(per_day, 2 * 86_400)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _recent(raw: bytes) -> RecentOrder:
    d = json.loads(raw)
    return RecentOrder(
        ts_code=d["c"],
        side=OrderSide(d["s"]),
        price=None if d["p"] is None else Decimal(d["p"]),
        qty=int(d["q"]),
        at=datetime.fromisoformat(d["t"]),
        client_order_id=d.get("o"),
        session=date.fromisoformat(d["d"]) if d.get("d") else None,
    )
