"""Real-time quotes: xtdata.subscribe_whole_quote(codes or markets, callback) -> `quotes` frames on the quotes
channel (snapshot shape in docs/qmt-bridge.md). The subscription is made again after every reconnect (to MiniQMT or
to the platform) and when the platform subscribes other codes."""

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
_CODE = re.compile(r"^(\d{6}\.(SH|SZ|BJ)|SH|SZ|BJ)$")


class QuoteFeed:
    def __init__(self, codes: tuple[str, ...], push: Callable[[str, dict[str, Any]], None], xtdata: Any = None):
        self.codes = list(codes)
        self.push = push
        self._xtdata = xtdata
        self._sub: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.forwarded = 0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self._xtdata is None:
            self._xtdata = importlib.import_module("xtquant.xtdata")

    def resubscribe(self) -> None:
        if self._xtdata is None or self._loop is None:
            return
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

    async def handle(self, type_: str, body: dict[str, Any]) -> dict[str, Any]:
        if type_ != protocol.SUBSCRIBE:
            return protocol.failed(protocol.BAD_REQUEST, f"type: {type_!r} is not a request of the quotes channel")
        codes = body.get("codes")
        if set(body) != {"codes"} or not isinstance(codes, list) or not codes:
            return protocol.failed(protocol.BAD_REQUEST, "codes: must be a non-empty list of ts_codes, or ['*']")
        if codes != ["*"] and not all(isinstance(c, str) and _CODE.match(c) for c in codes):
            return protocol.failed(protocol.BAD_REQUEST, "codes: each must be a ts_code like 600000.SH or a market")
        self.codes = list(codes)
        self.resubscribe()
        return protocol.ok({"codes": self.codes})
