"""The bridge program: the journal, the MiniQMT link, the platform links (trading; quotes when on), wired together
and run until stopped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bridge.qmt import protocol
from bridge.qmt.config import BridgeConfig
from bridge.qmt.journal import Journal
from bridge.qmt.platform import PlatformLink, TradingService
from bridge.qmt.quotes import QuoteFeed
from bridge.qmt.trader import QmtLink

log = logging.getLogger("bridge.qmt")


class Bridge:
    def __init__(self, config: BridgeConfig, *, xt: Any = None, xtdata: Any = None) -> None:
        self.config = config
        self.journal = Journal(config.journal_path)
        backoff: dict[str, Any] = {
            "reconnect_initial_s": config.reconnect_initial_s,
            "reconnect_max_s": config.reconnect_max_s,
        }
        self.trading = PlatformLink(
            url=config.url(protocol.TRADING_PATH),
            channel="trading",
            bridge_id=config.bridge_id,
            account_id=config.account_id,
            secret=config.secret,
            handler=self._unready,
            **backoff,
        )
        self.qmt = QmtLink(
            userdata_path=config.userdata_path,
            session_id=config.session_id,
            account_id=config.account_id,
            journal=self.journal,
            push=self.trading.push,
            xt=xt,
            reconcile_interval_s=config.reconcile_interval_s,
            **backoff,
        )
        self.service = TradingService(self.qmt)
        self.service.platform = self.trading
        self.trading.handler = self.service.handle
        self.trading.on_welcome = self.service.on_welcome
        self.feed: QuoteFeed | None = None
        self.quotes: PlatformLink | None = None
        if config.quotes:
            self.quotes = PlatformLink(
                url=config.url(protocol.QUOTES_PATH),
                channel="quotes",
                bridge_id=config.bridge_id,
                account_id=config.account_id,
                secret=config.secret,
                handler=self._unready,
                **backoff,
            )
            self.feed = QuoteFeed(config.quote_codes, self.quotes.push, xtdata)
            self.quotes.handler = self.feed.handle
            self.quotes.on_welcome = lambda welcome: self.feed.resubscribe() if self.feed else None
            self.qmt.on_connected.append(self.feed.resubscribe)

    @staticmethod
    async def _unready(type_: str, body: dict[str, Any]) -> dict[str, Any]:
        return protocol.failed(protocol.BAD_REQUEST, "not ready")

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (or cancelled); a forged welcome (platform.ForgedWelcome) ends it with that
        error."""
        stop = stop or asyncio.Event()
        log.info(
            "bridge %s for account %s: MiniQMT at %s, platform %s, quotes %s, journal %s",
            self.config.bridge_id,
            self.config.account_id,
            self.config.userdata_path,
            self.config.platform_url,
            "on" if self.config.quotes else "off",
            self.config.journal_path,
        )
        if self.feed is not None:
            self.feed.attach(asyncio.get_running_loop())
        tasks = [
            asyncio.create_task(self.qmt.run(), name="qmt"),
            asyncio.create_task(self.trading.run(), name="trading"),
        ]
        if self.quotes is not None:
            tasks.append(asyncio.create_task(self.quotes.run(), name="quotes"))
        stopper = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in [*tasks, stopper]:
                task.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
            self.journal.close()
            log.info("bridge stopped")
