"""The demo market (60 symbols, 2023-2024, Tushare layout), generated once for the strategy smoke runs."""

from __future__ import annotations

import pandas as pd
import pytest

from services.data.demo import generate_demo_market
from shared.settings import Settings


@pytest.fixture(scope="session")
def demo_bars() -> pd.DataFrame:
    return generate_demo_market(Settings()).daily
