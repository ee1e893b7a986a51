"""Real-time quotes: xtdata.subscribe_whole_quote(codes or markets, callback) -> `quotes` frames on the quotes
channel (snapshot shape in docs/qmt-bridge.md); and the ticks of the codes the platform names (`subscribe_ticks`):
xtdata.subscribe_quote(code, period="tick", callback) per code -> `ticks` frames, each holding the ticks that arrived
within TICK_WINDOW_S (the newest per code). The subscriptions are made again after every reconnect (to MiniQMT or to
the platform) and when the platform subscribes other codes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import re
from collections.abc import Callable
from typing import Any

from bridge.qmt import normalize, protocol

log = logging.getLogger("bridge.qmt.quotes")

WHOLE_MARKET = ("SH", "SZ", "BJ")
CHUNK = 500  # snapshots per frame
TICK_WINDOW_S = 0.1  # ticks arriving within this window go out in one `ticks` frame
_CODE = re.compile(r"^(\d{6}\.(SH|SZ|BJ)|SH|SZ|BJ)$")
_TS_CODE = re.compile(r"^\d{6}\.(SH|SZ|BJ)$")


class QuoteFeed:
    def __init__(self, codes: tuple[str, ...], push: Callable[[str, dict[str, Any]], None], xtdata: Any = None):
        self.codes = list(codes)
        self.push = push
        self._xtdata = xtdata
        self._sub: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.forwarded = 0
        self.tick_codes: set[str] = set()  # the codes the platform wants ticks of (subscribe_ticks)
        self._tick_subs: dict[str, int] = {}  # code -> xtdata's subscription seq, for the codes subscribed now
        self._pending_ticks: dict[str, dict[str, Any]] = {}  # the window's ticks, the newest per code
        self._flush: asyncio.TimerHandle | None = None
        self.ticks_forwarded = 0
        self._xt_lock = asyncio.Lock()  # one change of xtdata's subscriptions at a time (each on a worker thread)
        self._tasks: set[asyncio.Task[None]] = set()  # resubscriptions scheduled by resubscribe()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self._xtdata is None:
            self._xtdata = importlib.import_module("xtquant.xtdata")

    def resubscribe(self) -> None:
        """After a reconnect (to MiniQMT or to the platform): the whole-quote subscription and every tick one made
        again. xtdata's calls block (up to ~600 on a reconnect with 300 tick codes): they run on a worker thread,
        serialised with every other change of the subscriptions, so the loop (and the trading channel it serves)
        goes on meanwhile. This schedules that work and returns; `settled()` waits for it."""
        if self._xtdata is None or self._loop is None:
            return
        task = self._loop.create_task(self._resubscribe())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Every resubscription scheduled so far has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _resubscribe(self) -> None:
        async with self._xt_lock:
            try:
                await asyncio.to_thread(self._resubscribe_whole)
            except Exception:
                log.exception("resubscribing whole quotes failed")
            # every tick subscription made again (MiniQMT forgets them when it restarts): the old ones dropped and
            # the current set (`tick_codes`, whatever the platform asked last) subscribed, on the worker thread
            old = dict(self._tick_subs)
            self._tick_subs.clear()
            try:
                await self._apply_ticks_locked(list(old.items()))
            except Exception:
                log.exception("resubscribing ticks failed")

    def _resubscribe_whole(self) -> None:
        """On the worker thread, under `_xt_lock`."""
        if self._sub is not None:
            try:
                self._xtdata.unsubscribe_quote(self._sub)
            except Exception:
                log.exception("unsubscribing the old quote subscription failed")
            self._sub = None
        wanted = list(WHOLE_MARKET) if self.codes == ["*"] else list(self.codes)
        try:
            sub = self._xtdata.subscribe_whole_quote(wanted, self._on_data)
        except Exception:  # xtdata cannot reach MiniQMT's data service now
            log.exception("subscribe_whole_quote(%s) raised: no quotes until the next reconnect", wanted)
            return
        if sub is None or int(sub) < 0:
            log.warning("subscribe_whole_quote(%s) failed (%s): no quotes until the next reconnect", wanted, sub)
            return
        self._sub = int(sub)
        log.info("subscribed whole quotes for %s", wanted)

    # --- ticks of the subscribed codes ---------------------------------------------------------------------------

    async def apply_ticks(self) -> dict[str, list[str]]:
        """Bring xtdata's tick subscriptions to `tick_codes`: unsubscribe_quote the codes no longer wanted,
        subscribe_quote(code, period='tick') the new ones, on a worker thread, one change at a time. A code xtdata
        refuses (or with no link to MiniQMT yet) is in `failed` and tried again at the next subscribe_ticks or
        reconnect."""
        async with self._xt_lock:
            return await self._apply_ticks_locked([])

    async def _apply_ticks_locked(self, stale: list[tuple[str, int]]) -> dict[str, list[str]]:
        """Under `_xt_lock`. `stale`: (code, seq) subscriptions to drop beside the unwanted ones (a reconnect's old
        ones). The diff is taken and recorded here, on the loop (so `_buffer_ticks` sees one consistent map); only
        xtdata's calls run on the thread. A removed code's ticks stop at once; a new code's ticks are forwarded from
        when its subscribe_quote has returned."""
        removed = sorted(set(self._tick_subs) - self.tick_codes)
        drop = [seq for _, seq in stale]
        for code in removed:
            drop.append(self._tick_subs.pop(code))
            self._pending_ticks.pop(code, None)
        if self._xtdata is None or self._loop is None:
            return {"added": [], "removed": removed, "failed": sorted(self.tick_codes - set(self._tick_subs))}
        wanted = sorted(self.tick_codes - set(self._tick_subs))
        if not drop and not wanted:
            return {"added": [], "removed": removed, "failed": []}
        subscribed = await asyncio.to_thread(self._xt_ticks, drop, wanted)
        self._tick_subs.update(subscribed)
        added = sorted(subscribed)
        failed = sorted(set(wanted) - set(subscribed))
        if added or removed or failed:
            log.info("tick subscriptions: %d codes (+%d -%d, %d failed)", len(self._tick_subs), len(added),
                     len(removed), len(failed))  # fmt: skip
        return {"added": added, "removed": removed, "failed": failed}

    def _xt_ticks(self, drop: list[int], wanted: list[str]) -> dict[str, int]:
        """On the worker thread: unsubscribe `drop`, subscribe `wanted`; code -> seq of those xtdata took."""
        for seq in drop:
            try:
                self._xtdata.unsubscribe_quote(seq)
            except Exception:
                log.exception("unsubscribing tick subscription %s failed", seq)
        subscribed: dict[str, int] = {}
        for code in wanted:
            sub: Any = None
            try:
                sub = self._xtdata.subscribe_quote(code, period="tick", count=0, callback=self._on_tick)
            except Exception:  # xtdata cannot reach MiniQMT's data service now
                log.exception("subscribe_quote(%s, tick) raised", code)
            if sub is None or int(sub) < 0:
                continue
            subscribed[code] = int(sub)
        return subscribed

    def _on_tick(self, data: dict[str, Any]) -> None:
        """On xtdata's thread: `{code: [tick, ...]}` (subscribe_quote's callback) handed to the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._buffer_ticks, data)

    def _buffer_ticks(self, data: dict[str, Any]) -> None:
        for code, records in data.items():
            code = normalize.ts_code(code)
            if code not in self._tick_subs:
                continue  # unsubscribed meanwhile: its ticks stop here
            tick = records[-1] if isinstance(records, list) and records else records
            if not isinstance(tick, dict):
                log.warning("a malformed tick for %s is skipped", code)
                continue
            try:
                self._pending_ticks[code] = normalize.snapshot(code, tick)  # the newest of the window wins
            except (TypeError, ValueError, AttributeError):
                log.warning("a malformed tick for %s is skipped", code)
        if self._pending_ticks and self._flush is None and self._loop is not None:
            self._flush = self._loop.call_later(TICK_WINDOW_S, self.flush_ticks)

    def flush_ticks(self) -> None:
        """Send the window's ticks as one `ticks` frame."""
        self._flush = None
        ticks = list(self._pending_ticks.values())
        self._pending_ticks.clear()
        for start in range(0, len(ticks), CHUNK):
            self.push(protocol.TICKS, {"ticks": ticks[start : start + CHUNK]})
        self.ticks_forwarded += len(ticks)

    def _on_data(self, data: dict[str, Any]) -> None:
        """On xtdata's thread: hand the snapshot to the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._forward, data)

    def _forward(self, data: dict[str, Any]) -> None:
        snapshots = []
        for code, tick in data.items():
            try:
                snapshots.append(normalize.snapshot(code, tick))
            except (TypeError, ValueError, AttributeError):
                log.warning("a malformed snapshot for %s is skipped", code)
        for start in range(0, len(snapshots), CHUNK):
            self.push(protocol.QUOTES, {"quotes": snapshots[start : start + CHUNK]})
        self.forwarded += len(snapshots)

    async def subscribe_ticks(self, body: dict[str, Any]) -> dict[str, Any]:
        codes = body.get("codes")
        if set(body) != {"codes"} or not isinstance(codes, list):
            return protocol.failed(protocol.BAD_REQUEST, "codes: must be a list of ts_codes ([] for none)")
        if not all(isinstance(c, str) and _TS_CODE.match(c) for c in codes):
            return protocol.failed(protocol.BAD_REQUEST, "codes: each must be a ts_code like 600000.SH")
        wanted = set(codes)
        if len(wanted) > protocol.MAX_TICK_CODES:
            return protocol.failed(
                protocol.TOO_MANY_CODES,
                f"codes: {len(wanted)} codes, at most {protocol.MAX_TICK_CODES} may have ticks; nothing changed",
            )
        self.tick_codes = wanted
        changes = await self.apply_ticks()
        return protocol.ok({"codes": sorted(self._tick_subs), **changes})

    async def handle(self, type_: str, body: dict[str, Any]) -> dict[str, Any]:
        if type_ == protocol.SUBSCRIBE_TICKS:
            return await self.subscribe_ticks(body)
        if type_ != protocol.SUBSCRIBE:
            return protocol.failed(protocol.BAD_REQUEST, f"type: {type_!r} is not a request of the quotes channel")
        codes = body.get("codes")
        if set(body) != {"codes"} or not isinstance(codes, list) or not codes:
            return protocol.failed(protocol.BAD_REQUEST, "codes: must be a non-empty list of ts_codes, or ['*']")
        if codes != ["*"] and not all(isinstance(c, str) and _CODE.match(c) for c in codes):
            return protocol.failed(protocol.BAD_REQUEST, "codes: each must be a ts_code like 600000.SH or a market")
        self.codes = list(codes)
        if self._xtdata is not None and self._loop is not None:
            async with self._xt_lock:
                await asyncio.to_thread(self._resubscribe_whole)
        return protocol.ok({"codes": self.codes})
