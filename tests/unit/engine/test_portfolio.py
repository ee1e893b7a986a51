"""Several strategies side by side on one market, and their combined portfolio (shared.research.engine.portfolio)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from shared.research.engine import BacktestConfig, load_bars, run_backtest
from shared.research.engine.metrics import compute_metrics
from shared.research.engine.portfolio import PortfolioError, Sleeve, run_portfolio, split_capital
from strategies.buy_and_hold import BuyAndHold
from strategies.dual_ma import DualMA
from tests.unit.engine.support import bars, check_identity
from tests.unit.engine.test_engine_reuse import random_market


def test_two_buy_and_hold_sleeves_match_the_hand_computation() -> None:
    frame = bars([("600000.SH", "20240102", 10.00, 10.00), ("600000.SH", "20240103", 10.50, 11.00)])
    result = run_portfolio(
        [Sleeve(BuyAndHold(), weight="0.25", label="small"), Sleeve(BuyAndHold(), weight="0.75", label="large")],
        frame,
        BacktestConfig(initial_cash=100_000),
    )
    # small: 25,000.00 buys floor(25,000 / 10.00) = 2,500 shares, but 25,000 + fees 6.25 + 0.25 > the cash, so
    #   the buy shrinks to 2,400: 24,000 + commission 6.00 + transfer 0.24 = 24,006.24; cash 993.76
    # large: 75,000.00 -> 7,500 shares cost 75,019.50 > 75,000 -> 7,400: 74,000 + 18.50 + 0.74 = 74,019.24;
    #   cash 980.76
    small, large = result.sleeves
    assert (small.result.initial_cash_fen, large.result.initial_cash_fen) == (2_500_000, 7_500_000)
    assert small.result.cash_fen.tolist() == [99_376, 99_376]
    assert large.result.cash_fen.tolist() == [98_076, 98_076]
    # combined cash 1,974.52; 9,800 shares at 10.00 then 11.00
    assert result.cash_fen.tolist() == [197_452, 197_452]
    assert result.market_value_fen.tolist() == [9_800_000, 10_780_000]
    assert result.equity_fen.tolist() == [9_997_452, 10_977_452]
    assert result.final_equity == "109774.52"
    assert result.metrics["total_return"] == pytest.approx(9_774.52 / 100_000, rel=1e-12)
    # the one-day max drawdown: from the 100,000 start to 99,974.52
    assert result.metrics["max_drawdown"] == pytest.approx(25.48 / 100_000, rel=1e-9)
    summary = result.summary()
    assert summary["initial_cash"] == "100000.00" and summary["final_equity"] == "109774.52"
    assert summary["fees_paid"] == "25.48"  # 6.24 + 19.24
    assert summary["trades"] == 2 and summary["strategy"] == "portfolio"
    assert [(s["label"], s["weight"], s["initial_cash"], s["final_equity"]) for s in summary["sleeves"]] == [
        ("small", 0.25, "25000.00", "27393.76"),  # 993.76 + 2,400 x 11
        ("large", 0.75, "75000.00", "82380.76"),  # 980.76 + 7,400 x 11
    ]


def test_the_combined_account_is_the_sum_of_the_sleeves_run_alone_every_day() -> None:
    frame = random_market(symbols=5, days=150, seed=11)
    config = BacktestConfig(initial_cash=Decimal("1000000.03"))
    sleeves = [
        Sleeve(DualMA({"fast": 3, "slow": 10}), weight=Fraction(1, 3)),
        Sleeve(DualMA({"fast": 5, "slow": 30}), weight=Fraction(1, 3)),
        Sleeve(BuyAndHold(), weight=Fraction(1, 3)),
    ]
    result = run_portfolio(sleeves, frame, config)
    # 100,000,003 fen / 3 = 33,333,334.33: each gets 33,333,334 fen, the one fen left over goes to the first
    capitals = [33_333_335, 33_333_334, 33_333_334]
    assert [s.result.initial_cash_fen for s in result.sleeves] == capitals
    alone = [
        run_backtest(strategy, frame, BacktestConfig(initial_cash=Decimal(fen) / 100))
        for strategy, fen in zip(
            [DualMA({"fast": 3, "slow": 10}), DualMA({"fast": 5, "slow": 30}), BuyAndHold()], capitals, strict=True
        )
    ]
    for single in alone:
        check_identity(single)
    assert len(alone[0].trades["qty"]) > 4 and len(alone[1].trades["qty"]) > 4  # the sleeves really trade
    assert result.cash_fen.tolist() == [sum(v) for v in zip(*(a.cash_fen.tolist() for a in alone), strict=True)]
    assert result.market_value_fen.tolist() == [
        sum(v) for v in zip(*(a.market_value_fen.tolist() for a in alone), strict=True)
    ]
    assert result.equity_fen.tolist() == [sum(v) for v in zip(*(a.equity_fen.tolist() for a in alone), strict=True)]
    for run, single in zip(result.sleeves, alone, strict=True):
        assert run.result.equity_fen.tolist() == single.equity_fen.tolist()
        assert run.result.metrics == single.metrics
    # The combined metrics: the metrics module over the summed equity, the trades of all sleeves pooled
    equity = np.sum([a.equity_fen for a in alone], axis=0) / 100
    pnl = np.concatenate([a.trades["pnl"][a.trades["side"] < 0] for a in alone]) / 100
    traded = np.zeros(len(equity))
    for a in alone:
        np.add.at(traded, a.trades["day"], a.trades["amount"] / 100)
    expected = compute_metrics(equity, 1_000_000.03, trade_pnl=pnl, traded_value=traded).as_dict()
    assert result.metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert result.metrics[key] == (None if value is None else pytest.approx(value, rel=1e-12)), key
    assert result.metrics["trade_count"] == sum(int(a.metrics["trade_count"] or 0) for a in alone)
    assert result.positions.tolist() == (sum(a.positions for a in alone)).tolist()


def test_one_strategy_with_two_parameter_sets_side_by_side() -> None:
    frame = random_market(symbols=4, days=120, seed=3)
    panel_config = BacktestConfig(initial_cash=500_000)
    panel = load_bars(frame, panel_config)
    result = run_portfolio(
        [Sleeve(DualMA({"fast": 3, "slow": 10})), Sleeve(DualMA({"fast": 10, "slow": 40}))], panel, panel_config
    )
    assert result.labels == ["dual_ma #1", "dual_ma #2"]
    first, second = result.sleeves
    assert (first.weight, second.weight) == (Fraction(1, 2), Fraction(1, 2))
    assert first.result.params["fast"] == 3 and second.result.params["fast"] == 10
    # the same market, so the same days, yet different decisions
    assert first.result.dates == second.result.dates == result.dates
    assert first.result.equity_fen.tolist() != second.result.equity_fen.tolist()
    # side by side with each alone on half the capital
    for run, (fast, slow) in zip(result.sleeves, [(3, 10), (10, 40)], strict=True):
        alone = run_backtest(DualMA({"fast": fast, "slow": slow}), frame, BacktestConfig(initial_cash=250_000))
        assert run.result.equity_fen.tolist() == alone.equity_fen.tolist()
        assert run.result.input_sha256 == alone.input_sha256  # the same inputs: 250000.00 CNY, these params
    trades = result.trades_frame()
    assert len(trades) == len(first.result.trades["qty"]) + len(second.result.trades["qty"])
    assert set(trades["sleeve"]) == {"dual_ma #1", "dual_ma #2"}
    assert trades["trade_date"].tolist() == sorted(trades["trade_date"])
    frame_out = result.equity_frame()
    assert list(frame_out.columns) == ["trade_date", "cash", "market_value", "equity", "dual_ma #1", "dual_ma #2"]
    assert [Decimal(a) + Decimal(b) for a, b in zip(frame_out["dual_ma #1"], frame_out["dual_ma #2"], strict=True)] == [
        Decimal(e) for e in frame_out["equity"]
    ]


def test_the_result_is_deterministic_and_its_hash_covers_every_sleeve_and_weight() -> None:
    frame = random_market(symbols=3, days=60, seed=5)

    def sleeves(weights: tuple[str, str] = ("0.5", "0.5"), slow: int = 10, label: str = "b") -> list[Sleeve]:
        return [
            Sleeve(DualMA({"fast": 3, "slow": slow}), weight=weights[0], label="a"),
            Sleeve(BuyAndHold(), weight=weights[1], label=label),
        ]

    base = run_portfolio(sleeves(), frame)
    again = run_portfolio(sleeves(), frame)
    assert again.input_sha256 == base.input_sha256 and again.summary() == base.summary()
    assert again.equity_fen.tolist() == base.equity_fen.tolist()
    others = {
        run_portfolio(sleeves(weights=("0.4", "0.6")), frame).input_sha256,
        run_portfolio(sleeves(slow=12), frame).input_sha256,
        run_portfolio(sleeves(label="c"), frame).input_sha256,
        run_portfolio(sleeves(), frame, BacktestConfig(initial_cash=2_000_000)).input_sha256,
    }
    assert base.input_sha256 not in others and len(others) == 4


def test_a_benchmark_gives_the_combined_account_its_excess_return() -> None:
    frame = random_market(symbols=3, days=40, seed=9)
    days = sorted(frame["trade_date"].unique())
    closes = pd.Series(np.linspace(3000.0, 3300.0, len(days)), index=pd.to_datetime(days).date)
    result = run_portfolio([Sleeve(BuyAndHold()), Sleeve(DualMA({"fast": 2, "slow": 5}))], frame, benchmark=closes)
    # the first day's return is against its own close (no earlier one), so the index made 3300 / 3000 - 1
    assert result.metrics["benchmark_total_return"] == pytest.approx(0.1, rel=1e-12)
    assert result.metrics["excess_total_return"] == pytest.approx(result.metrics["total_return"] - 0.1, rel=1e-12)
    assert result.sleeves[0].result.metrics["benchmark_total_return"] == pytest.approx(0.1, rel=1e-12)


def test_progress_counts_the_days_of_every_sleeve() -> None:
    frame = random_market(symbols=2, days=120, seed=1)
    seen: list[tuple[int, int]] = []
    run_portfolio([Sleeve(BuyAndHold()), Sleeve(BuyAndHold())], frame, progress=lambda d, n: seen.append((d, n)))
    assert seen[0] == (50, 240) and seen[-1] == (240, 240)
    assert (120, 240) in seen and [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize(
    ("weights", "field", "reason"),
    [
        ((None, "0.5"), "sleeves[0].weight", "give a weight for every sleeve or for none"),
        (("0.5", None), "sleeves[1].weight", "give a weight for every sleeve or for none"),
        (("1.2", "-0.2"), "sleeves[1].weight", "must be > 0"),
        (("0", "1"), "sleeves[0].weight", "must be > 0"),
        (("0.5", "0.4"), "sleeves", "the weights add up to 0.9, not 1"),
        ((0.5, float("nan")), "sleeves[1].weight", "not a finite number"),
        (("0.5", True), "sleeves[1].weight", "must be a number"),
        (("1/2", "half"), "sleeves[1].weight", "not a finite number"),
    ],
)
def test_bad_weights_are_refused_naming_the_field(weights: tuple[object, object], field: str, reason: str) -> None:
    frame = random_market(symbols=2, days=10)
    sleeves = [Sleeve(BuyAndHold(), weight=w) for w in weights]  # type: ignore[arg-type]
    with pytest.raises(PortfolioError) as caught:
        run_portfolio(sleeves, frame)
    assert caught.value.field == field and reason in caught.value.reason
    assert str(caught.value).startswith(f"{field}: ")


def test_other_bad_sleeves_are_refused_naming_the_field() -> None:
    frame = random_market(symbols=2, days=10)
    strategy = BuyAndHold()
    cases: list[tuple[object, str, str]] = [
        ([], "sleeves", "at least one"),
        ([Sleeve(strategy), Sleeve(strategy)], "sleeves[1].strategy", "same instance as sleeves[0]"),
        ([Sleeve(BuyAndHold(), label="x"), Sleeve(BuyAndHold(), label="x")], "sleeves[1].label", "'x' is the label"),
        ([Sleeve(BuyAndHold(), label=" ")], "sleeves[0].label", "non-blank"),
        ([Sleeve("buy_and_hold")], "sleeves[0].strategy", "must be a Strategy instance"),  # type: ignore[arg-type]
        ([BuyAndHold()], "sleeves[0]", "must be a Sleeve"),
    ]
    for sleeves, field, reason in cases:
        with pytest.raises(PortfolioError) as caught:
            run_portfolio(sleeves, frame)  # type: ignore[arg-type]
        assert caught.value.field == field and reason in caught.value.reason, (field, str(caught.value))
    # a weight too small to give its sleeve a whole fen of 0.05 CNY
    with pytest.raises(PortfolioError, match=r"sleeves\[1\]\.weight: gives no whole fen"):
        run_portfolio(
            [Sleeve(BuyAndHold(), weight="0.9"), Sleeve(BuyAndHold(), weight="0.1")],
            frame,
            BacktestConfig(initial_cash=Decimal("0.05")),
        )


def test_decimal_weights_close_to_one_are_normalised_and_fractions_are_exact() -> None:
    # three decimals of 1/3 add up to 0.9999999999: within 1e-9 of 1, so taken as thirds
    assert split_capital(100_000_000, [Fraction(1, 3)] * 3) == [33_333_334, 33_333_333, 33_333_333]
    frame = random_market(symbols=2, days=10)
    result = run_portfolio([Sleeve(BuyAndHold(), weight="0.3333333333") for _ in range(3)], frame)
    assert [s.weight for s in result.sleeves] == [Fraction(1, 3)] * 3
    assert [s.result.initial_cash_fen for s in result.sleeves] == [33_333_334, 33_333_333, 33_333_333]
    assert [s["weight_fraction"] for s in result.summary()["sleeves"]] == ["1/3"] * 3
    assert sum(s.result.initial_cash_fen for s in result.sleeves) == result.initial_cash_fen == 100_000_000
