"""The demo market (60 symbols, 2023-2024, Tushare layout), generated once for the strategy smoke runs."""

from __future__ import annotations

import pandas as pd
import pytest

from services.data.demo import DemoMarket, generate_demo_market
from shared.platform.settings import Settings


@pytest.fixture(scope="session")
def demo_market() -> DemoMarket:
    return generate_demo_market(Settings())


@pytest.fixture(scope="session")
def demo_bars(demo_market: DemoMarket) -> pd.DataFrame:
    return demo_market.daily
