"""The strategy service's app factory. It owns no tables: the catalogue is the strategy classes found in the
`strategies` package when the service starts."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI

from services.strategy.api import router
from shared.platform.app import Infra, create_service_app
from shared.platform.settings import Settings
from shared.research.strategy import Strategy, describe, discover_strategies

SERVICE = "strategy"


def create_app(
    settings: Settings,
    infra: Infra | None = None,
    *,
    strategies: Mapping[str, type[Strategy]] | None = None,
) -> FastAPI:
    """`strategies` defaults to those discovered in the `strategies` package."""
    infra = infra or Infra.from_settings(settings, SERVICE)
    found = strategies if strategies is not None else discover_strategies()
    app = create_service_app(SERVICE, infra, routers=[router])
    # Described once: the parameter schemas do not change while the process runs.
    app.state.strategies = {name: describe(cls) for name, cls in sorted(found.items())}
    return app
