"""Where the real-time provider keeps the latest quote per code, today's closed minute bars and the feed's state:
Redis in fleet mode (every data process reads what the one holding the feed wrote), this process's memory in
standalone mode. Values are JSON (the event schemas' `LiveQuote` and `MinuteBar`). A Redis that does not answer
raises (redis' errors): the API answers 503 and never makes a quote up.

It also keeps the **watch leases** (`PUT /v1/quotes/watch`): each owner's codes (a service process's open orders
and armed stops, a gateway's browser subscriptions) and when they expire (epoch seconds); the process holding the
bridge reads their union to choose the codes whose ticks the bridge forwards."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import date
from itertools import chain
from typing import Protocol

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

BARS_KEPT_S = 3 * 24 * 3600  # a day's minute bars stay readable this long


def _pack(*args: str | int) -> bytes:
    """A command in Redis' protocol, packed by hiredis (C)."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # its stub says a 1-tuple: it takes any
    return packed


class LiveStore(Protocol):
    async def put_quotes(self, quotes: Sequence[tuple[str, str]], feed: str) -> None:
        """Store each (ts_code, LiveQuote JSON) as the code's latest, and the feed's state (JSON)."""

    async def quote(self, ts_code: str) -> bytes | None: ...

    async def quotes(self, ts_codes: Sequence[str]) -> list[bytes | None]:
        """The latest quote of each code, in order (None: none yet), in one read."""

    async def feed(self) -> bytes | None: ...

    async def add_bars(self, day: date, bars: Sequence[tuple[str, str]]) -> None:
        """Append each (ts_code, MinuteBar JSON) to the code's bars of `day`."""

    async def bars(self, day: date, ts_code: str) -> list[bytes]: ...

    async def put_watch(self, owner: str, codes: Sequence[str], expires: float) -> None:
        """Replace `owner`'s watched codes, held until `expires` (epoch seconds)."""

    async def watches(self, now: float) -> dict[str, tuple[list[str], float]]:
        """Every owner's (codes, expires) not expired at `now` (the expired ones are dropped)."""


class MemoryLiveStore:
    def __init__(self) -> None:
        self._quotes: dict[str, bytes] = {}
        self._feed: bytes | None = None
        self._bars: dict[date, dict[str, list[bytes]]] = {}
        self._watch: dict[str, tuple[list[str], float]] = {}

    async def put_quotes(self, quotes: Sequence[tuple[str, str]], feed: str) -> None:
        for code, text in quotes:
            self._quotes[code] = text.encode()
        self._feed = feed.encode()

    async def quote(self, ts_code: str) -> bytes | None:
        return self._quotes.get(ts_code)

    async def quotes(self, ts_codes: Sequence[str]) -> list[bytes | None]:
        return [self._quotes.get(code) for code in ts_codes]

    async def feed(self) -> bytes | None:
        return self._feed

    async def add_bars(self, day: date, bars: Sequence[tuple[str, str]]) -> None:
        for old in [d for d in self._bars if d < day]:
            del self._bars[old]  # one process's memory: yesterday's bars go when today's start
        today = self._bars.setdefault(day, {})
        for code, text in bars:
            today.setdefault(code, []).append(text.encode())

    async def bars(self, day: date, ts_code: str) -> list[bytes]:
        return list(self._bars.get(day, {}).get(ts_code, ()))

    async def put_watch(self, owner: str, codes: Sequence[str], expires: float) -> None:
        self._watch[owner] = (list(codes), expires)

    async def watches(self, now: float) -> dict[str, tuple[list[str], float]]:
        for owner in [o for o, (_, expires) in self._watch.items() if expires <= now]:
            del self._watch[owner]
        return dict(self._watch)


class RedisLiveStore:
    """Keys under `{namespace}:quotes:`: `latest` (a hash by ts_code), `feed`, `bars:{day}:{ts_code}` (a list),
    `watch` (a hash by owner: `{"codes", "expires"}`)."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.client = client
        self.prefix = f"{namespace}:quotes:"
        # The bar lists of the newest day this process has given their expiry: a minute's end appends to every
        # code's list, and one EXPIRE a list (at its first append here) keeps it three days as well as one an append.
        self._expiring: tuple[date, set[str]] = (date.min, set())
        # The bars' script by its name for EVALSHA (sent by EVAL, which caches it, when Redis does not hold it).
        self._add_bars_sha = hashlib.sha1(self._ADD_BARS.encode(), usedforsecurity=False).hexdigest()

    async def _send(self, packed: bytes, replies: int) -> None:
        """Send commands packed by hiredis (C) on a connection of the client's pool, as its pipeline sends them (one
        write, one round trip), and read their `replies`: an error reply raises (as the pipeline's would, after its
        reply is read). redis-py's asyncio connection packs in Python: for a whole market's 10,000 arguments (the
        latest quotes) or 15,000 (a minute's bars) that was 7-10 ms of CPU a call, hiredis' under 2. A connection
        error is retried as the client's commands are (its `retry`: a timeout raises at once); what is sent again
        is harmless twice (the HSET and SET write the same values; the bars' script skips a bar its list ends with);
        on a failure the connection is dropped, never put back with a reply unread."""
        pool = self.client.connection_pool
        connection = await pool.get_connection()

        async def send() -> None:
            await connection.send_packed_command(packed)
            for _ in range(replies):
                await connection.read_response()

        async def failed(error: Exception) -> None:
            await connection.disconnect()

        try:
            await connection.retry.call_with_retry(send, failed)
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)

    async def put_quotes(self, quotes: Sequence[tuple[str, str]], feed: str) -> None:
        """One HSET of every quote and the feed's SET, sent together (`_send`)."""
        packed = _pack("SET", self.prefix + "feed", feed)
        if quotes:
            packed = _pack("HSET", self.prefix + "latest", *chain.from_iterable(quotes)) + packed
        await self._send(packed, 2 if quotes else 1)

    async def quote(self, ts_code: str) -> bytes | None:
        value = await self.client.hget(self.prefix + "latest", ts_code)
        return value.encode() if isinstance(value, str) else value

    async def quotes(self, ts_codes: Sequence[str]) -> list[bytes | None]:
        if not ts_codes:
            return []
        values = await self.client.hmget(self.prefix + "latest", list(ts_codes))
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def feed(self) -> bytes | None:
        value = await self.client.get(self.prefix + "feed")
        return value.encode() if isinstance(value, str) else value

    def _bars_key(self, day: date, ts_code: str) -> str:
        return f"{self.prefix}bars:{day.isoformat()}:{ts_code}"

    # A minute's end appends a bar to every code's list (5,000 at once): one script call, not 5,000 pipelined
    # commands and their replies (what the slowest round of a whole market spent its time on). KEYS: the lists;
    # ARGV[1]: the expiry (seconds); then each list's bar and "1" when the list is to be given its expiry. A bar its
    # list already ends with is not appended again (the call sent again after a connection lost before its reply).
    _ADD_BARS = """
local seconds = ARGV[1]
for i, key in ipairs(KEYS) do
  local bar = ARGV[2 * i]
  if redis.call('LINDEX', key, -1) ~= bar then
    redis.call('RPUSH', key, bar)
  end
  if ARGV[2 * i + 1] == '1' then
    redis.call('EXPIRE', key, seconds)
  end
end
return #KEYS
"""

    async def add_bars(self, day: date, bars: Sequence[tuple[str, str]]) -> None:
        if not bars:
            return
        if self._expiring[0] != day:
            self._expiring = (day, set())
        expiring = self._expiring[1]
        base = self._bars_key(day, "")
        keys = [base + code for code, _ in bars]
        new = [key for key in keys if key not in expiring]
        fresh = set(new)
        args: list[str | int] = [BARS_KEPT_S]
        for key, (_, text) in zip(keys, bars, strict=True):
            args += (text, "1" if key in fresh else "0")
        call = (len(keys), *keys, *args)
        try:
            await self._send(_pack("EVALSHA", self._add_bars_sha, *call), 1)
        except NoScriptError:  # not cached in this Redis (a restart, SCRIPT FLUSH): EVAL caches it again
            await self._send(_pack("EVAL", self._ADD_BARS, *call), 1)
        expiring.update(new)  # only once Redis has them: a failed call sets them again next time

    async def bars(self, day: date, ts_code: str) -> list[bytes]:
        values = await self.client.lrange(self._bars_key(day, ts_code), 0, -1)
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def put_watch(self, owner: str, codes: Sequence[str], expires: float) -> None:
        await self.client.hset(self.prefix + "watch", owner, json.dumps({"codes": list(codes), "expires": expires}))

    async def watches(self, now: float) -> dict[str, tuple[list[str], float]]:
        found: dict[str, tuple[list[str], float]] = {}
        expired: list[str] = []
        for raw_owner, raw in (await self.client.hgetall(self.prefix + "watch")).items():
            owner = raw_owner.decode() if isinstance(raw_owner, bytes) else str(raw_owner)
            try:
                lease = json.loads(raw)
                codes, expires = [str(c) for c in lease["codes"]], float(lease["expires"])
            except (ValueError, KeyError, TypeError):
                expired.append(owner)  # not one this code wrote: dropped
                continue
            if expires <= now:
                expired.append(owner)
            else:
                found[owner] = (codes, expires)
        if expired:
            await self.client.hdel(self.prefix + "watch", *expired)
        return found
