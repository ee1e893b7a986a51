"""The hot state of fleet mode: every account's book in Redis, shared by all risk processes (docs/risk-rules.md,
"Hot state stores").

An account's keys share one hash tag, `{<prefix>:book:<account>}` (one cluster slot, so that a script or transaction
may touch them all): the tag itself is a hash of the balance, the running reservation total, the fee session and a
version; `:orders` (client_order_id -> the order as JSON), `:lots` (code -> base, sold, bought by session as JSON),
`:selling` (code -> shares open sells commit: a running total), `:early` (client_order_id -> traded qty of an order
not seen yet), `:trades` and `:entries` (ids already counted). `<prefix>:book:accounts` lists the seeded accounts
(for `expire_decided`).

`reserve` is one Lua script: it re-checks the binding limit on the current totals and records the decided order in
the same step. Everything else (events, release, expiry, seed) runs book.py's own arithmetic in Python on the part of
the book it touches, and writes it back only if the account's main key is as it was read, retried when another writer
got there first: every writer (the script included) moves the main key's `ver`, so no update is ever lost or
half-made. An update (`_update`) reads with one script (READ, which returns `ver` with the main key) and writes with
another (WRITE: compare `ver`, then every change; two round trips); a seed runs a WATCH/MULTI transaction on the main
key and the recent events. `ver` never comes back to a value once left: an update adds one, a seed over a book one
more than the book's, a seed of an account without a book starts it at the clock's nanoseconds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from services.risk.state.book import AccountBook, Lots, OrderState
from services.risk.state.ports import (
    RECENT_EVENTS_MAX,
    RECENT_EVENTS_S,
    AdjustmentEvent,
    BookEvent,
    BookSnapshot,
    BookUnavailable,
    BookView,
    CashEvent,
    OrderEvent,
    Reservation,
    TradeEvent,
    Verdict,
    decode_event,
    encode_event,
)
from shared.core.domain import OrderSide

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_ATTEMPTS = 1000  # optimistic retries of one update before the store is declared unavailable (a livelock guard)

# KEYS: main, orders, lots, selling, early, done
# ARGV: client_order_id, ts_code, side, qty, cap_fen, need_fen, session (ISO), decided_at (epoch microseconds)
RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_seeded', '0'} end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {'already', '0'} end
if redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 1 then return {'already', '0'} end
local code, side, qty, need, session = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[6]), ARGV[7]
local traded = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
local available
if side == 'buy' then
  local m = redis.call('HMGET', KEYS[1], 'balance', 'reserved')
  available = tonumber(m[1]) - tonumber(m[2])
  if available < need then return {'insufficient_cash', string.format('%d', available)} end
  redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[6])
else
  local held, free = 0, 0
  local raw = redis.call('HGET', KEYS[3], code)
  if raw then
    local lots = cjson.decode(raw)
    held = lots.b - lots.s
    free = lots.b - lots.s
    for day, q in pairs(lots.d) do
      held = held + q
      if day < session then free = free + q end
    end
  end
  free = free - tonumber(redis.call('HGET', KEYS[4], code) or '0')
  if free > held then free = held end
  if free < 0 then free = 0 end
  available = free
  if available < qty then return {'insufficient_position', string.format('%d', available)} end
  if qty - traded > 0 then redis.call('HINCRBY', KEYS[4], code, qty - traded) end
  need = 0
end
redis.call('HDEL', KEYS[5], ARGV[1])
local cap = 0
if side == 'buy' then cap = tonumber(ARGV[5]) end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({c = code, s = side, q = qty, cap = cap, f = 0, fin = 0,
  t = traded, r = need, d = 1, at = ARGV[8], ses = session}))
redis.call('HSET', KEYS[1], 'fee_session', session)
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return {'reserved', string.format('%d', available)}
"""

# The part of a book an update reads, in one round trip, with the main key's `ver` (the WRITE script writes only if
# `ver` is still that).
# KEYS: main, orders, early, lots, selling, done, trades, entries
# ARGV: n (-1: every order), n client_order_ids, m (-1: every code), m codes, trade id ('' none), entry key ('' none)
# Returns {} for a book not seeded, else {main, orders, early, lots, selling, done, trade seen, entry seen}: the hashes
# as flat field/value lists, `done` the given ids that are over.
READ = """
local main = redis.call('HGETALL', KEYS[1])
if #main == 0 then return {} end
local i = 1
local n = tonumber(ARGV[i]); i = i + 1
local orders, early, done = {}, {}, {}
if n < 0 then
  orders = redis.call('HGETALL', KEYS[2])
  early = redis.call('HGETALL', KEYS[3])
elseif n > 0 then
  local ids = {}
  for k = 1, n do ids[k] = ARGV[i]; i = i + 1 end
  local o = redis.call('HMGET', KEYS[2], unpack(ids))
  local e = redis.call('HMGET', KEYS[3], unpack(ids))
  for k = 1, n do
    if o[k] then orders[#orders + 1] = ids[k]; orders[#orders + 1] = o[k] end
    if e[k] then early[#early + 1] = ids[k]; early[#early + 1] = e[k] end
    if redis.call('SISMEMBER', KEYS[6], ids[k]) == 1 then done[#done + 1] = ids[k] end
  end
end
local m = tonumber(ARGV[i]); i = i + 1
local lots = {}
if m < 0 then
  lots = redis.call('HGETALL', KEYS[4])
elseif m > 0 then
  local codes = {}
  for k = 1, m do codes[k] = ARGV[i]; i = i + 1 end
  local l = redis.call('HMGET', KEYS[4], unpack(codes))
  for k = 1, m do if l[k] then lots[#lots + 1] = codes[k]; lots[#lots + 1] = l[k] end end
end
local selling = redis.call('HGETALL', KEYS[5])
local trade, entry = 0, 0
if ARGV[i] ~= '' then trade = redis.call('SISMEMBER', KEYS[7], ARGV[i]) end
if ARGV[i + 1] ~= '' then entry = redis.call('SISMEMBER', KEYS[8], ARGV[i + 1]) end
return {main, orders, early, lots, selling, done, trade, entry}
"""


# The write of an update, if the book is as it was read (its main key's `ver` unchanged; a dropped book is not).
# KEYS: main, orders, lots, selling, early, trades, entries, done, recent
# ARGV: ver as read, '1' to move ver on ('0': only the event kept), then operations, each: op, key index, n, n items.
#   op H: HSET of the n items (field, value, ...); D: HDEL; S: SADD; P: the event (n = 1) pushed onto the recent events
#   (RPUSH, LTRIM to the newest `RECENT_EVENTS_MAX`, EXPIRE `RECENT_EVENTS_S`).
# Returns 1 when written, 0 when the book changed since it was read (nothing written).
WRITE = f"""
local v = redis.call('HGET', KEYS[1], 'ver')
if not v or v ~= ARGV[1] then return 0 end
local i = 3
while i <= #ARGV do
  local op, key, n = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  i = i + 3
  if op == 'P' then
    redis.call('RPUSH', key, ARGV[i])
    redis.call('LTRIM', key, -{RECENT_EVENTS_MAX}, -1)
    redis.call('EXPIRE', key, {RECENT_EVENTS_S})
  else
    local cmd = 'SADD'
    if op == 'H' then cmd = 'HSET' elseif op == 'D' then cmd = 'HDEL' end
    local j = 0
    while j < n do
      local m = math.min(n - j, 400)
      redis.call(cmd, key, unpack(ARGV, i + j, i + j + m - 1))
      j = j + m
    end
  end
  i = i + n
end
if ARGV[2] == '1' then redis.call('HINCRBY', KEYS[1], 'ver', 1) end
return 1
"""
# the key indexes of WRITE's KEYS
_W_MAIN, _W_TRADES, _W_ENTRIES, _W_DONE, _W_RECENT = 1, 6, 7, 8, 9
_W_HASHES = {"orders": 2, "lots": 3, "selling": 4, "early": 5}


def _pairs(flat: Any) -> dict[str, str]:
    """A hash as Lua returns it (a flat field/value list), or as HGETALL does (a dict)."""
    if isinstance(flat, dict):
        return {_s(k): _s(v) for k, v in flat.items()}
    items = [_s(x) for x in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


@dataclass(frozen=True)
class _Keys:
    main: str
    orders: str
    lots: str
    selling: str
    early: str
    trades: str
    entries: str
    done: str

    @property
    def hashes(self) -> dict[str, str]:
        return {"orders": self.orders, "lots": self.lots, "selling": self.selling, "early": self.early}

    @property
    def all(self) -> tuple[str, ...]:
        return (self.main, self.orders, self.lots, self.selling, self.early, self.trades, self.entries, self.done)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def _unavailable() -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:  # connection refused or lost, timeouts, a read-only replica, ...
        raise BookUnavailable(f"the hot book's Redis failed: {exc!r}") from exc


# -- the book's pieces as Redis stores them -------------------------------------------------------------------------


def _micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def encode_order(o: OrderState) -> str:
    return json.dumps(
        {
            "c": o.ts_code, "s": o.side.value, "q": o.qty, "cap": o.cap_fen, "f": o.filled_qty, "fin": int(o.final),
            "t": o.traded_qty, "r": o.reserved_fen, "d": int(o.decided),
            "at": "" if o.decided_at is None else str(_micros(o.decided_at)),
            "ses": "" if o.session is None else o.session.isoformat(),
        },
        separators=(",", ":"),
        sort_keys=True,
    )  # fmt: skip


def decode_order(raw: str) -> OrderState:
    d = json.loads(raw)
    return OrderState(
        ts_code=d["c"],
        side=OrderSide(d["s"]),
        qty=int(d["q"]),
        cap_fen=int(d["cap"]),
        filled_qty=int(d["f"]),
        final=bool(int(d["fin"])),
        traded_qty=int(d["t"]),
        reserved_fen=int(d["r"]),
        decided=bool(int(d["d"])),
        decided_at=EPOCH + timedelta(microseconds=int(d["at"])) if d["at"] else None,
        session=date.fromisoformat(d["ses"]) if d["ses"] else None,
    )


def encode_lots(lots: Lots) -> str:
    days = {d.isoformat(): q for d, q in sorted(lots.bought_by_session.items())}
    return json.dumps({"b": lots.base, "s": lots.sold, "d": days}, separators=(",", ":"), sort_keys=True)


def decode_lots(raw: str) -> Lots:
    d = json.loads(raw)
    days = d["d"] if isinstance(d["d"], dict) else {}  # (an empty object may come back from Lua as an empty array)
    return Lots(int(d["b"]), {date.fromisoformat(k): int(q) for k, q in days.items()}, int(d["s"]))


def _main(book: AccountBook) -> dict[Any, Any]:
    session = "" if book.fee_session is None else book.fee_session.isoformat()
    return {"balance": str(book.balance_fen), "reserved": str(book.reserved_fen), "fee_session": session}


def _hashes(book: AccountBook) -> dict[str, dict[Any, Any]]:
    return {
        "orders": {cid: encode_order(o) for cid, o in book.orders.items()},
        "lots": {code: encode_lots(lots) for code, lots in book.lots.items()},
        "selling": {code: str(q) for code, q in book.selling.items()},
        "early": {cid: str(q) for cid, q in book.early.items()},
    }


def _book_of(account_id: str, read: list[Any], *, trade_id: str | None, entry_key: str | None) -> AccountBook:
    """The part of a book READ returned ({main, orders, early, lots, selling, done, trade seen, entry seen}; the hashes
    as flat lists, or as HGETALL's dicts where a caller read them itself)."""
    main, orders, early, lots, selling, done, trade_seen, entry_seen = read
    m = _pairs(main)
    book = AccountBook(
        account_id,
        balance_fen=int(m["balance"]),
        reserved_fen=int(m["reserved"]),
        fee_session=date.fromisoformat(m["fee_session"]) if m.get("fee_session") else None,
    )
    book.orders = {cid: decode_order(raw) for cid, raw in _pairs(orders).items()}
    book.early = {cid: int(q) for cid, q in _pairs(early).items()}
    book.lots = {code: decode_lots(raw) for code, raw in _pairs(lots).items()}
    book.selling = {code: int(q) for code, q in _pairs(selling).items()}
    book.done = {_s(d) for d in done}
    if trade_id is not None and int(trade_seen):
        book.seen_trades.add(trade_id)
    if entry_key is not None and int(entry_seen):
        book.seen_entries.add(entry_key)
    return book


class RedisHotBook:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._reserve = redis.register_script(RESERVE)
        self._read = redis.register_script(READ)
        self._write = redis.register_script(WRITE)
        self.conflicts = 0  # updates started over because another writer changed the account first

    def _recent(self, account_id: str) -> str:
        """The account's recent events (JSON, oldest first; not part of the book: a seed keeps them)."""
        return "{" + f"{self._prefix}:book:{account_id}" + "}:recent"

    def _keys(self, account_id: str) -> _Keys:
        tag = "{" + f"{self._prefix}:book:{account_id}" + "}"
        return _Keys(tag, f"{tag}:orders", f"{tag}:lots", f"{tag}:selling", f"{tag}:early", f"{tag}:trades",
                     f"{tag}:entries", f"{tag}:done")  # fmt: skip

    @property
    def _index(self) -> str:
        return f"{self._prefix}:book:accounts"

    # -- reading a book ----------------------------------------------------------------------------------------------

    async def load(self, account_id: str) -> AccountBook | None:
        """The whole book as stored (tests, diagnostics), or None if not seeded; read in one transaction."""
        keys = self._keys(account_id)
        with _unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                for key in (keys.main, keys.orders, keys.lots, keys.selling, keys.early):
                    pipe.hgetall(key)
                pipe.smembers(keys.trades)
                pipe.smembers(keys.entries)
                pipe.smembers(keys.done)
                main, orders, lots, selling, early, trades, entries, done = await pipe.execute()
        if not main:
            return None
        book = _book_of(account_id, [main, orders, early, lots, selling, done, 0, 0], trade_id=None, entry_key=None)
        book.seen_trades = {_s(t) for t in trades}
        book.seen_entries = {_s(e) for e in entries}
        return book

    # -- updating a book ---------------------------------------------------------------------------------------------

    async def _update(
        self,
        account_id: str,
        change: Callable[[AccountBook], T],
        missing: T,
        *,
        cids: list[str] | None,
        codes: list[str] | None,
        trade_id: str | None = None,
        entry_key: str | None = None,
        event: str | None = None,
    ) -> T:
        """Read the part of the book `change` needs, run it (book.py's arithmetic), and write back what it changed if
        the account's main key is still as it was read (its `ver`); if any other writer touched the account meanwhile,
        start over. `missing`: the answer for an account not seeded (nothing written). `event`: an encoded event
        appended to the account's recent events in the same write as the change (`apply`)."""
        keys = self._keys(account_id)
        recent = self._recent(account_id)
        args: list[Any] = [-1] if cids is None else [len(cids), *cids]
        args += [-1] if codes is None else [len(codes), *codes]
        args += [trade_id or "", entry_key or ""]
        read_keys = [keys.main, keys.orders, keys.early, keys.lots, keys.selling, keys.done, keys.trades, keys.entries]
        write_keys = [keys.main, keys.orders, keys.lots, keys.selling, keys.early, keys.trades, keys.entries,
                      keys.done, recent]  # fmt: skip
        with _unavailable():
            for _ in range(MAX_ATTEMPTS):
                read = await self._read(keys=read_keys, args=args)
                if not read:
                    return missing
                ver = _pairs(read[0]).get("ver", "")
                book = _book_of(account_id, read, trade_id=trade_id, entry_key=entry_key)
                before_main, before = _main(book), _hashes(book)
                seen_before = (set(book.seen_trades), set(book.seen_entries), set(book.done))
                result = change(book)
                after_main, after = _main(book), _hashes(book)
                ops: list[Any] = []
                if event is not None:
                    ops += ["P", _W_RECENT, 1, event]
                changed = False
                if after_main != before_main:
                    ops += _op("H", _W_MAIN, [x for kv in after_main.items() for x in kv])
                    changed = True
                for name, index in _W_HASHES.items():
                    old, new = before[name], after[name]
                    put = [x for f, v in new.items() if old.get(f) != v for x in (f, v)]
                    gone = [f for f in old if f not in new]
                    if put:
                        ops += _op("H", index, put)
                    if gone:
                        ops += _op("D", index, gone)
                    changed = changed or bool(put) or bool(gone)
                for index, now, then in (
                    (_W_TRADES, book.seen_trades, seen_before[0]),
                    (_W_ENTRIES, book.seen_entries, seen_before[1]),
                    (_W_DONE, book.done, seen_before[2]),
                ):
                    if now - then:
                        ops += _op("S", index, sorted(now - then))
                        changed = True
                if not ops:
                    return result  # nothing to write, nothing to keep
                if await self._write(keys=write_keys, args=[ver, "1" if changed else "0", *ops]):
                    return result
                self.conflicts += 1
            raise BookUnavailable(f"the hot book of {account_id} changed under {MAX_ATTEMPTS} attempts in a row")

    # -- the port ----------------------------------------------------------------------------------------------------

    async def seeded(self, account_id: str) -> bool:
        with _unavailable():
            return bool(await self._redis.exists(self._keys(account_id).main))

    async def seed(self, snapshot: BookSnapshot, *, keep_decided_since: datetime, forget_events: bool = False) -> None:
        account_id = snapshot.account_id
        keys = self._keys(account_id)
        with _unavailable():
            for _ in range(MAX_ATTEMPTS):
                async with self._redis.pipeline(transaction=True) as pipe:
                    try:
                        await pipe.watch(keys.main, self._recent(account_id))  # an event arriving meanwhile: again
                        main = await pipe.hgetall(keys.main)
                        previous = None
                        if main:  # (its orders: the decided ones a seed keeps)
                            orders = await pipe.hgetall(keys.orders)
                            previous = _book_of(account_id, [main, orders, {}, {}, {}, [], 0, 0], trade_id=None,
                                                entry_key=None)  # fmt: skip
                        book = AccountBook.from_snapshot(
                            snapshot, previous=previous, keep_decided_since=keep_decided_since
                        )
                        if not forget_events:
                            for raw in await pipe.lrange(self._recent(account_id), 0, -1):
                                book.apply(decode_event(raw))
                        pipe.multi()
                        pipe.delete(*keys.all)
                        if forget_events:
                            pipe.delete(self._recent(account_id))
                        # `ver` moves on from the book's (WRITE compares it), or starts afresh where there was none
                        old_ver = _pairs(main).get("ver") if main else None
                        ver = int(old_ver) + 1 if old_ver else time.time_ns()
                        pipe.hset(keys.main, mapping={**_main(book), "ver": str(ver)})
                        for name, key in keys.hashes.items():
                            if fields := _hashes(book)[name]:
                                pipe.hset(key, mapping=fields)
                        if book.seen_trades:
                            pipe.sadd(keys.trades, *sorted(book.seen_trades))
                        if book.seen_entries:
                            pipe.sadd(keys.entries, *sorted(book.seen_entries))
                        if book.done:
                            pipe.sadd(keys.done, *sorted(book.done))
                        await pipe.execute()
                        # (the index is another slot: after the book exists, so a concurrent drop, which leaves the
                        # index first, can never leave a book outside it)
                        await self._redis.sadd(self._index, account_id)
                        return
                    except WatchError:
                        self.conflicts += 1
                        continue
            raise BookUnavailable(f"the hot book of {account_id} changed under {MAX_ATTEMPTS} attempts in a row")

    async def apply(self, event: BookEvent) -> bool:
        """The event applied to a seeded book and kept among the account's recent events (which a seed applies to
        the snapshot it starts from) by one WRITE script call, only if the book's `ver` is still the one read with it
        (else read again; a WRITE sent again by the client's retry after a lost reply finds `ver` moved or keeps the
        event twice among the recent events: harmless, events apply by their ids); for an account not seeded, kept
        first and then applied if a seed made the book meanwhile (so that an event is always either in the recent
        events a seed reads, or applied to the book the seed made: the seed WATCHes the recent events too)."""
        raw = encode_event(event)
        if isinstance(event, OrderEvent):
            scope: dict[str, Any] = {"cids": [event.client_order_id], "codes": []}
        elif isinstance(event, TradeEvent):
            scope = {"cids": [event.client_order_id], "codes": [event.ts_code], "trade_id": event.trade_id}
        elif isinstance(event, AdjustmentEvent):
            scope = {"cids": [], "codes": [event.ts_code], "entry_key": event.key}
        elif isinstance(event, CashEvent):
            scope = {"cids": [], "codes": [], "entry_key": event.entry_id}
        applied = await self._update(event.account_id, lambda book: book.apply(event), None, event=raw, **scope)
        if applied is not None:
            return applied
        recent = self._recent(event.account_id)
        with _unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                _push_recent(pipe, recent, raw)
                await pipe.execute()
        return await self._update(event.account_id, lambda book: book.apply(event), False, **scope)

    async def view(self, account_id: str, session: date) -> BookView | None:
        keys = self._keys(account_id)
        with _unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                for key in (keys.main, keys.orders, keys.lots, keys.selling):
                    pipe.hgetall(key)
                main, orders, lots, selling = await pipe.execute()
        if not main:
            return None
        return _book_of(account_id, [main, orders, {}, lots, selling, [], 0, 0], trade_id=None, entry_key=None).view(
            session
        )

    async def reserve(
        self,
        account_id: str,
        client_order_id: str,
        *,
        ts_code: str,
        side: OrderSide,
        qty: int,
        cap_fen: int,
        need_fen: int,
        session: date,
        decided_at: datetime,
    ) -> Reservation:
        keys = self._keys(account_id)
        args = [client_order_id, ts_code, side.value, qty, cap_fen, need_fen, session.isoformat(), _micros(decided_at)]
        with _unavailable():
            verdict, available = await self._reserve(
                keys=[keys.main, keys.orders, keys.lots, keys.selling, keys.early, keys.done], args=args
            )
        return Reservation(Verdict(_s(verdict)), int(_s(available)))

    async def release(self, account_id: str, client_order_id: str) -> None:
        await self._update(account_id, lambda book: book.release(client_order_id), False, cids=[client_order_id],
                           codes=[])  # fmt: skip

    async def expire_decided(self, before: datetime) -> int:
        with _unavailable():
            accounts = sorted(_s(a) for a in await self._redis.smembers(self._index))
        dropped = 0
        for account_id in accounts:
            dropped += await self._update(account_id, lambda book: book.expire_decided(before), 0, cids=None,
                                          codes=[])  # fmt: skip
        return dropped

    async def drop(self, account_id: str, *, forget_events: bool = False) -> None:
        keys = [*self._keys(account_id).all, *([self._recent(account_id)] if forget_events else [])]
        with _unavailable():
            await self._redis.srem(self._index, account_id)  # first: see seed
            await self._redis.delete(*keys)

    async def accounts(self) -> list[str]:
        with _unavailable():
            return sorted(_s(a) for a in await self._redis.smembers(self._index))


def _op(op: str, index: int, items: list[str]) -> list[Any]:
    """One operation of WRITE's arguments."""
    return [op, index, len(items), *items]


def _push_recent(pipe: Any, recent: str, raw: str) -> None:
    """Queue an encoded event onto the account's recent events (the newest RECENT_EVENTS_MAX, for RECENT_EVENTS_S)."""
    pipe.rpush(recent, raw)
    pipe.ltrim(recent, -RECENT_EVENTS_MAX, -1)
    pipe.expire(recent, RECENT_EVENTS_S)
