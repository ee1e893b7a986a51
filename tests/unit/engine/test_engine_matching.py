"""The paper broker's single-order matching (`shared.core.market.matching.match_order`) against the whole backtest
engine: one shares order placed by a strategy and filled by `run_backtest` on a random bar trades the same quantity at
the same price, or is refused for the same reason, as `match_order` says for that bar. The bar's limits for
`match_order` come from `shared.core.market.rules` (not from the engine's panel)."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal
from typing import Any

from shared.core.domain.codes import parse_ts_code
from shared.core.market.matching import REASON_CODES, Match, SessionBar, match_order
from shared.core.market.rules import limit_prices, lot_sizes, price_limit_ratio
from shared.research.engine import BacktestConfig, run_backtest
from tests.unit.engine.support import Script, bars

DAYS = ("20240603", "20240604", "20240605")


def random_bar(rng: random.Random, code: str, fill_day: int) -> tuple[dict[str, Any], SessionBar]:
    """A bar after a 10.00 CNY close, inside the board's band: (the Tushare row, the same bar as a SessionBar)."""
    day = date(2024, 6, 3 + fill_day)
    ratio = price_limit_ratio(parse_ts_code(code).board, day)
    band = limit_prices(Decimal("10.00"), ratio)
    assert band is not None
    up, down = int(band[0] * 100), int(band[1] * 100)
    # a third of the prints at a limit, where the refusals are
    open_, close = (rng.choice([down, up, rng.randint(down, up)]) for _ in range(2))
    lots = rng.randint(1, 60)
    vol = lots * 100
    amount_fen = vol * rng.randint(down, up) + rng.randint(0, vol - 1)
    if 2 * (amount_fen % vol) == vol:
        # an exact half-fen VWAP: the engine's panel holds the amount as float CNY, the last bit may round either way
        amount_fen += 1
    row = {"open": open_ / 100, "close": close / 100, "vol": float(lots), "amount": amount_fen / 100_000}
    session = SessionBar(day, open_, max(open_, close), min(open_, close), close, vol, amount_fen, up, down)
    return row, session


def frame(code: str, fill_row: dict[str, Any], fill_day: int) -> Any:
    rows: list[tuple[Any, ...]] = [(code, d, 10.0, 10.0, 10.0) for d in DAYS[: fill_day + 1]]
    f = bars(rows)
    f.loc[fill_day, ["open", "close", "vol", "amount"]] = [
        fill_row["open"], fill_row["close"], fill_row["vol"], fill_row["amount"],
    ]  # fmt: skip
    f.loc[fill_day, "high"] = max(fill_row["open"], fill_row["close"])
    f.loc[fill_day, "low"] = min(fill_row["open"], fill_row["close"])
    # the days before the fill trade plenty, so only the fill bar's volume can cap anything
    f.loc[: fill_day - 1, ["vol", "amount"]] = [100_000.0, 100_000.0]  # lots, thousand CNY: a VWAP of 10.00
    return f


def random_config(rng: random.Random) -> BacktestConfig:
    slippage = rng.choice(["none", "bps", "ticks"])
    amount = {"none": Decimal(0), "bps": Decimal(rng.randint(0, 300)) / 4, "ticks": Decimal(rng.randint(0, 30))}
    return BacktestConfig(
        initial_cash=Decimal("100000000"),
        fill_price=rng.choice(["open", "close", "vwap"]),
        slippage=slippage,
        slippage_amount=amount[slippage],
        volume_cap=rng.choice([None, Decimal("0.1"), Decimal("0.25"), Decimal("0.5"), Decimal(1)]),
        price_limits=rng.random() < 0.8,
        lots=rng.random() < 0.8,
    )


def engine_match(result: Any) -> Match:
    """The last order's outcome in the engine's own arrays, as a Match."""
    o, t = result.orders, result.trades
    last = len(o["id"]) - 1
    filled, reason = int(o["filled"][last]), REASON_CODES[int(o["reason"][last])]
    mine = [i for i in range(len(t["order_id"])) if int(t["order_id"][i]) == int(o["id"][last])]
    price = int(t["price"][mine[0]]) if mine else 0
    return Match(filled, price, reason)


def test_a_buy_placed_in_the_engine_fills_as_match_order_says() -> None:
    rng = random.Random(20240603)
    seen: set[str] = set()
    for _ in range(150):
        code = rng.choice(["600000.SH", "688001.SH"])
        config = random_config(rng)
        lot_min, lot_step = lot_sizes(code)
        qty = rng.choice([100, 200, 300, 500, 1000, 201, 250, 150, 5_000])
        row, session = random_bar(rng, code, 1)
        result = run_backtest(Script({0: lambda ctx, c=code, q=qty: ctx.buy(c, q)}), frame(code, row, 1), config)
        expected = match_order(
            config.fill_rules(), session, side="buy", qty=qty, limit_price_fen=None, lot_min=lot_min, lot_step=lot_step
        )
        assert engine_match(result) == expected, (code, qty, config, session)
        seen.add(expected.reason)
    # the random cases reach the refusals, not only clean fills
    assert {"", "limit_up", "volume_cap", "bad_lot"} <= seen


def test_a_sell_placed_in_the_engine_fills_as_match_order_says() -> None:
    rng = random.Random(20240604)
    seen: set[str] = set()
    for _ in range(150):
        code = rng.choice(["600000.SH", "688001.SH"])
        config = random_config(rng)
        lot_min, lot_step = lot_sizes(code)
        held = 1_000
        # the whole position, or a valid lot of it (an odd-lot part of a position is the caller's to refuse)
        qty = rng.choice(
            [q for q in (held, 100, 500, 900, 201, 777) if q == held or (q >= lot_min and q % lot_step == 0)]
        )
        row, session = random_bar(rng, code, 2)
        script = Script({0: lambda ctx, c=code, h=held: ctx.buy(c, h), 1: lambda ctx, c=code, q=qty: ctx.sell(c, q)})
        result = run_backtest(script, frame(code, row, 2), config)
        assert int(result.orders["filled"][0]) == held  # the position the sell sells from
        expected = match_order(
            config.fill_rules(), session, side="sell", qty=qty, limit_price_fen=None, lot_min=lot_min, lot_step=lot_step
        )
        assert engine_match(result) == expected, (code, qty, config, session)
        seen.add(expected.reason)
    assert {"", "limit_down", "volume_cap"} <= seen
