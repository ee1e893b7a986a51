"""The fast `/v1/bars` body against the pydantic model it replaces, on every bar of the demo market."""

import json
from decimal import Decimal

import pytest

from services.data.bars_json import bars_body, cny
from services.data.demo import generate_demo_market
from services.data.loader import daily_bar_rows
from services.data.schemas import BarOut, BarsOut
from services.data.store import BarRecord
from shared.core.domain.money import from_fen
from shared.platform.settings import Settings


@pytest.mark.parametrize(("fen", "text"), [(0, "0.00"), (5, "0.05"), (1234, "12.34"), (100, "1.00"), (-7, "-0.07")])
def test_cny(fen: int, text: str) -> None:
    assert cny(fen) == text


def test_same_json_as_the_pydantic_model_on_the_whole_demo_market() -> None:
    market = generate_demo_market(Settings(demo_symbols=50))
    records = [BarRecord(**row) for row in daily_bar_rows(market.daily)]
    by_code: dict[str, list[BarRecord]] = {}
    for record in records:
        by_code.setdefault(record.ts_code, []).append(record)
    for ts_code, bars in by_code.items():
        model = BarsOut(
            ts_code=ts_code,
            bars=[
                BarOut(
                    trade_date=b.trade_date, open=from_fen(b.open), high=from_fen(b.high), low=from_fen(b.low),
                    close=from_fen(b.close), pre_close=from_fen(b.pre_close), vol=b.vol, amount=from_fen(b.amount),
                    adj_factor=b.adj_factor,
                )
                for b in bars
            ],
        )  # fmt: skip
        assert json.loads(bars_body(ts_code, bars)) == json.loads(model.model_dump_json()), ts_code
    assert any(b.adj_factor != Decimal(1) for b in records)  # the comparison covered real adj factors
