"""Standalone mode: every service mounted in one process behind the gateway, SQLite files under ./var/, one
in-memory bus and cache, demo data, the paper broker and an in-process backtest worker. `make run` starts it."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import date, timedelta

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.bridges import BRIDGE_ROUTES
from shared.core.market.calendar import is_trading_day
from shared.platform.app import Infra, market_clock, warn_if_shifted
from shared.platform.bus import MemoryBus
from shared.platform.cache import MemoryCache
from shared.platform.clock import MarketClock
from shared.platform.http import SERVICES, ServiceDirectory
from shared.platform.observability import configure_logging
from shared.platform.settings import Mode, Settings

log = logging.getLogger("lianghua.standalone")

# Data first: the others read from it (risk's quotes, the worker's bars).
START_ORDER = ("data", "strategy", "backtest", "execution", "risk")


def build_app(settings: Settings, *, clock: MarketClock | None = None) -> Starlette:
    """The whole platform as one ASGI app: the gateway at `/`, the services reachable only through it. `clock`: the
    market clock every service follows (default: the one LH_MARKET_CLOCK names); tests set their own."""
    if settings.mode is not Mode.STANDALONE:
        raise ValueError("standalone mode needs LH_MODE=standalone")
    transports: dict[str, httpx.AsyncBaseTransport] = {}
    infra = Infra(
        settings=settings,
        bus=MemoryBus(),
        cache=MemoryCache(),
        services=ServiceDirectory(settings, transports),
        shared=True,
        clock=clock or market_clock(settings),  # one object: every service follows the same (replay) clock
    )
    services: dict[str, FastAPI] = {}
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.app")
        services[name] = module.create_app(settings, infra)
        transports[name] = httpx.ASGITransport(app=services[name])
    gateway = importlib.import_module("gateway.app").create_app(settings, infra)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        from services.backtest.optimize import OptimisationTaskHandler, bulk_market_loader
        from services.backtest.worker import BacktestWorker

        async with AsyncExitStack() as stack:
            await infra.bus.start()
            stack.push_async_callback(infra.bus.close)
            stack.push_async_callback(infra.services.aclose)
            for name in START_ORDER:
                app = services[name]
                await stack.enter_async_context(app.router.lifespan_context(app))
            worker = BacktestWorker(settings, infra)
            await worker.start()
            stack.push_async_callback(worker.stop)
            optimiser = OptimisationTaskHandler(settings, infra, load_market=bulk_market_loader(worker.market_data()))
            await optimiser.start()
            stack.push_async_callback(optimiser.stop)
            await stack.enter_async_context(gateway.router.lifespan_context(gateway))
            log.info("LiangHua standalone is up", extra={"services": list(START_ORDER)})
            warn_if_shifted(infra.clock)
            yield

    host = Starlette(lifespan=lifespan)
    # A broker bridge's WebSockets reach their services directly here (in the fleet the gateway relays them).
    for public, (service, path) in BRIDGE_ROUTES.items():
        host.router.routes.append(WebSocketRoute(public, AtPath(services[service], path)))
    # Every request to the gateway, whatever its path (a Mount's pattern does not match a path with a newline in it,
    # which the host would then answer itself in plain text instead of the gateway's JSON 404).
    host.router.default = gateway
    host.state.gateway = gateway
    host.state.services = services
    host.state.infra = infra
    return host


class AtPath:
    """`app` answering a connection as if it had come to `path` (a bridge's public path -> the service's own). A class:
    Starlette takes a plain function as a WebSocket handler, not as an ASGI app."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app, self.path = app, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app({**scope, "path": self.path, "raw_path": self.path.encode(), "root_path": ""}, receive, send)


def demo_clock(settings: Settings, env: Mapping[str, str]) -> Settings:
    """`make run` on the demo market: the demo is history (it ends on `demo_end`), so unless LH_MARKET_CLOCK says
    otherwise the market clock replays it, parked at its last session: an order placed at the desk is matched on that
    session's bar, and strategy instances replay the demo's days (docs/order-path.md). On the wall clock there would be
    no session ahead to match an order on. Unless LH_PAPER_FILLS says otherwise, the paper broker matches the desk's
    orders against the replay feed's quotes (`quotes`), so a resting limit order fills when the replayed market
    reaches it; a strategy instance's orders are matched on bars as before."""
    if settings.data_provider != "demo" or "LH_MARKET_CLOCK" in env:
        return settings
    day = date.fromisoformat(settings.demo_end)
    while not is_trading_day(day):
        day -= timedelta(days=1)
    changes: dict[str, object] = {"market_clock": "replay", "replay_session": day}
    if "LH_PAPER_FILLS" not in env and settings.quotes_feed_mode() == "replay":
        changes["paper_fills"] = "quotes"
    return Settings.model_validate({**settings.model_dump(), **changes})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("LH_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("LH_PORT", "8000")))
    args = parser.parse_args()
    settings = demo_clock(Settings(), os.environ)
    configure_logging("standalone", settings.log_level, settings.log_json)
    import uvicorn

    print(f"LiangHua standalone: http://{args.host}:{args.port}  (data in ./var/)", flush=True)
    if settings.replay_session is not None:
        print(f"Market clock: a replay, at the session of {settings.replay_session.isoformat()} "
              "(LH_MARKET_CLOCK=real follows the wall clock)", flush=True)  # fmt: skip
    uvicorn.run(build_app(settings), host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
