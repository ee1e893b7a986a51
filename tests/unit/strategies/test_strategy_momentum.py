"""The momentum-rotation example: hand-worked rebalances (ranking, equal targets, the kept name's resize below a lot,
the dropped name sold), suspended symbols on rebalance days, parameter errors, and a run over the demo market."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.research.engine import BacktestConfig, run_backtest
from strategies.momentum import Momentum
from tests.unit.strategies.scenario import check_books, make_bars, trades

S1, S2, S3, S4 = "600000.SH", "600004.SH", "600006.SH", "600007.SH"
CONFIG = BacktestConfig(initial_cash=Decimal("100000"))


def test_rotates_into_the_top_two_every_four_days() -> None:
    # lookback 3, rebalance on days 3 and 7; each of the top 2 targets (1 - 0.04) / 2 = 48% of equity.
    # Day 3 returns C3 / C0 - 1: S1 0, S2 +10%, S3 +5%, S4 -5% -> S2, S3; 48,000 each, filled on day 4 at the opens:
    #   S2 48,000 / 11.00 -> 4,300 shares (47,300.00 + commission 11.83 + transfer 0.47)
    #   S3 48,000 / 10.50 -> 4,500 shares (47,250.00 + 11.81 + 0.47); cash left 5,425.42
    # Day 7 returns C7 / C4 - 1: S1 +10%, S2 -4.5%, S3 +4.8%, S4 0 -> S1, S3; S2 is closed.
    #   equity 5,425.42 + 4,300 x 10.50 + 4,500 x 11.00 = 100,075.42; target 48% = 48,036.20
    #   S3 at the day-8 open 10.60: 48,036.20 / 10.60 = 4,531 shares, 31 more than held: below a lot, no trade
    #   S2 sold at 10.50 (45,150.00 - 11.29 - stamp 22.58 - 0.45 -> cash 50,541.10), then
    #   S1 bought at 11.00: 48,036.20 / 11.00 = 4,366 -> 4,300 shares (47,300.00 + 11.83 + 0.47): cash 3,228.80
    closes: dict[str, list[float | None]] = {
        S1: [10, 10, 10, 10, 10, 10.5, 10.8, 11.0, 11.0, 11.0],
        S2: [10, 10.5, 11, 11, 11, 10.8, 10.6, 10.5, 10.5, 10.5],
        S3: [10, 10.2, 10.4, 10.5, 10.5, 10.7, 10.9, 11.0, 10.6, 10.6],
        S4: [10, 9.8, 9.6, 9.5, 9.5, 9.5, 9.5, 9.5, 9.5, 9.5],
    }
    params = {"lookback": 3, "top_k": 2, "rebalance_every": 4, "cash_reserve": "0.04"}
    result = run_backtest(Momentum(params), make_bars(closes, {S3: {8: 10.6}}), CONFIG)
    assert trades(result) == [
        (4, S2, "buy", 4300, "11.00"),
        (4, S3, "buy", 4500, "10.50"),
        (8, S2, "sell", 4300, "10.50"),
        (8, S1, "buy", 4300, "11.00"),
    ]
    assert result.cash_fen[-1] == 322_880
    assert dict(zip(result.codes, result.positions[-1].tolist(), strict=True)) == {S1: 4300, S2: 0, S3: 4500, S4: 0}
    check_books(result)


def test_skip_leaves_out_the_latest_days() -> None:
    # lookback 3, skip 1: the day-3 score is C2 / C0 - 1. S1 leads up to day 2 (+10%) and only then falls back;
    # S2 gains everything on day 3. With skip 0, S2 (C3/C0 = +8%) beats S1 (+5%); with skip 1, S1 (+10%) beats S2 (0).
    closes = {S1: [10, 10.5, 11, 10.5, 10.5], S2: [10, 10, 10, 10.8, 10.8]}
    params = {"lookback": 3, "top_k": 1, "rebalance_every": 10, "cash_reserve": "0.1"}
    plain = run_backtest(Momentum(params), make_bars(closes), CONFIG)
    skipping = run_backtest(Momentum({**params, "skip": 1}), make_bars(closes), CONFIG)
    # 90,000 / 10.80 = 8,333 -> 8,300 shares; 90,000 / 10.50 = 8,571 -> 8,500 shares
    assert trades(plain) == [(4, S2, "buy", 8300, "10.80")]
    assert trades(skipping) == [(4, S1, "buy", 8500, "10.50")]


def test_suspended_symbols_are_not_ranked_and_a_suspended_holding_keeps_its_slot() -> None:
    # lookback 2, top 1, rebalance on days 2, 4, 6; target 90% of equity.
    # day 2: S1 +10%, S2 +2%, S3 0 -> S1: 90,000 / 11.00 -> 8,100 shares on day 3 (89,100 + 22.28 + 0.89)
    # day 4: S1 is suspended (held: it keeps the only slot) -> no trade, although S2 (+5.9%) leads the rest
    # day 6: S3 has the best return (+9%) but no bar: not ranked; S2 (+5.6%) beats S1 (0) -> sell S1, buy S2 on day 7:
    #   equity 10,876.83 + 8,100 x 11 = 99,976.83; 90% = 89,979.14; S2 at 11.40 -> 7,892 -> 7,800 shares
    closes: dict[str, list[float | None]] = {
        S1: [10, 10.5, 11, 11, None, 11, 11, 11],
        S2: [10, 10, 10.2, 10.4, 10.8, 11.0, 11.4, 11.4],
        S3: [10, 10, 10, 10, 10, 10.9, None, 10.9],
    }
    params = {"lookback": 2, "top_k": 1, "rebalance_every": 2, "cash_reserve": "0.1"}
    result = run_backtest(Momentum(params), make_bars(closes), CONFIG)
    assert trades(result) == [
        (3, S1, "buy", 8100, "11.00"),
        (7, S1, "sell", 8100, "11.00"),
        (7, S2, "buy", 7800, "11.40"),
    ]
    check_books(result)


def test_a_symbol_listed_too_recently_is_not_ranked() -> None:
    # S2 lists on day 1: on day 2 (lookback 2) it has no close on day 0, so no 2-day return, however strong.
    closes: dict[str, list[float | None]] = {S1: [10, 10.1, 10.2, 10.2], S2: [None, 10, 11, 11]}
    params = {"lookback": 2, "top_k": 1, "rebalance_every": 5, "cash_reserve": "0.1"}
    result = run_backtest(Momentum(params), make_bars(closes), CONFIG)
    assert trades(result) == [(3, S1, "buy", 8800, "10.20")]  # 90,000 / 10.20 = 8,823 -> 8,800


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"lookback": 0}, "lookback"),
        ({"top_k": 0}, "top_k"),
        ({"rebalance_every": 0}, "rebalance_every"),
        ({"skip": -1}, "skip"),
        ({"cash_reserve": "1"}, "cash_reserve"),
        ({"top": 3}, "top"),
    ],
)
def test_param_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Momentum(raw)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_skip_must_be_inside_the_lookback() -> None:
    with pytest.raises(ValidationError, match=r"skip \(5\) must be shorter than lookback \(5\)"):
        Momentum({"lookback": 5, "skip": 5})


def test_demo_market_run_holds_at_most_top_k(demo_bars) -> None:  # type: ignore[no-untyped-def]
    params = {"lookback": 20, "top_k": 5, "rebalance_every": 10}
    result = run_backtest(Momentum(params), demo_bars, BacktestConfig(initial_cash=Decimal("2000000")))
    check_books(result)
    held = (result.positions > 0).sum(axis=1)
    assert held.max() == 5
    assert (held[25:] >= 4).all()  # invested from the first fills on (a refused buy may leave a slot empty)
    # trades happen only on the day after a rebalance day (20, 30, 40, ...) or as retried sells
    buys = result.trades["day"][result.trades["side"] > 0]
    assert set(((buys - 1 - 20) % 10).tolist()) == {0}
    assert result.metrics["sharpe"] is not None
