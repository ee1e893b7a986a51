"""The engine as a whole: no look-ahead, equivalence with an independent plain loop, exact fees and limits against
the rules module, determinism and the input hash, bad input, and the strategy API's hooks."""

from __future__ import annotations

import functools
import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from shared.core.domain.codes import Board
from shared.core.domain.money import to_fen
from shared.core.market.rules import FeeSchedule, limit_prices, price_limit_ratio, trade_fees
from shared.platform.provenance import code_version
from shared.research.engine import BacktestConfig, BarsError, StrategyError, benchmark_returns, read_bars, run_backtest
from shared.research.engine.data import limit_prices_fen
from shared.research.engine.fees import FenFees
from shared.research.strategy import CrossSection, OrderEvent, Strategy, StrategyContext, TradeEvent
from strategies.buy_and_hold import BuyAndHold
from strategies.dual_ma import DualMA
from tests.unit.engine.support import Script, bars, check_identity, orders, run, trades

A = "600000.SH"


def weekdays(n: int, start: date = date(2024, 1, 2)) -> list[str]:
    out: list[str] = []
    d = start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d.strftime("%Y%m%d"))
        d += timedelta(days=1)
    return out


def random_frame(n_symbols: int, n_days: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Random-walk bars; returns the frame and the open and close prices in fen (days x symbols)."""
    rng = np.random.default_rng(seed)
    close = np.maximum(1000 + np.cumsum(rng.integers(-40, 41, (n_days, n_symbols)), axis=0), 100)
    open_ = np.maximum(close + rng.integers(-20, 21, (n_days, n_symbols)), 100)
    codes = [f"{600000 + j:06d}.SH" for j in range(n_symbols)]
    days = weekdays(n_days)
    rows = []
    for j, code in enumerate(codes):
        for t, day in enumerate(days):
            rows.append((code, day, open_[t, j] / 100, close[t, j] / 100))
    return bars(rows), open_, close


# --- look-ahead -----------------------------------------------------------------------------------------------


def test_history_ends_at_the_current_bar_and_reading_the_next_bar_fails() -> None:
    frame = bars([(A, d, 10.0 + i, 10.0 + i) for i, d in enumerate(weekdays(5))])

    class Peek(Strategy):
        name = "peek"
        title = "Peek"
        description = "tries to read tomorrow"

        def __init__(self, peek_on: int | None) -> None:
            super().__init__()
            self.peek_on = peek_on
            self.rows: list[int] = []
            self.last: list[float] = []

        def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
            closes = ctx.history("close")
            self.rows.append(closes.shape[0])
            self.last.append(float(closes[-1, 0]))
            with pytest.raises(ValueError, match="read-only"):
                closes[-1, 0] = 0.0
            if bar.index == self.peek_on:
                closes[bar.index + 1, 0]  # tomorrow's close: not in the view

    with pytest.raises(IndexError):
        run_backtest(Peek(peek_on=2), frame)
    # each day sees exactly the bars up to and including itself
    honest = Peek(peek_on=None)
    run_backtest(honest, frame)
    assert honest.rows == [1, 2, 3, 4, 5]
    assert honest.last == [10.0, 11.0, 12.0, 13.0, 14.0]


def test_indicators_are_served_up_to_today_and_match_a_hand_computation() -> None:
    frame = bars([(A, d, c, c) for d, c in zip(weekdays(5), [10.0, 11.0, 12.0, 13.0, 17.0], strict=True)])
    seen: dict[int, Any] = {}

    def look(ctx: StrategyContext, t: int) -> None:
        sma = ctx.indicator("SMA", timeperiod=3)
        sums = ctx.rolling_sum_fen(3)
        seen[t] = (sma.shape[0], float(sma[-1, 0]), int(sums[-1, 0]))

    run(Script({t: functools.partial(look, t=t) for t in range(5)}), frame)
    assert seen[0][0] == 1 and np.isnan(seen[0][1]) and seen[0][2] == 0  # window incomplete
    assert seen[2] == (3, 11.0, 3300)  # (10 + 11 + 12) / 3
    assert seen[3] == (4, 12.0, 3600)
    assert seen[4] == (5, 14.0, 4200)  # (12 + 13 + 17) / 3


def test_history_is_back_adjusted_by_default() -> None:
    frame = bars(
        [(A, "20240102", 20.0, 20.0), (A, "20240103", 10.0, 10.0, 10.0)], adj_factor=[1.0, 2.0]
    )  # a 2-for-1 split
    seen: dict[str, Any] = {}
    run(
        Script(
            {
                1: lambda c: seen.update(
                    adj=c.history("close")[:, 0].tolist(), raw=c.history("close", adjusted=False)[:, 0].tolist()
                )
            }
        ),
        frame,
    )
    assert seen == {"adj": [20.0, 20.0], "raw": [20.0, 10.0]}


# --- equivalence ----------------------------------------------------------------------------------------------


def plain_loop(open_: np.ndarray, close: np.ndarray, targets: np.ndarray, cash: int) -> list[int]:
    """An independent simulation: target-value orders decided on day t fill at day t+1's open, sells before buys,
    buys in symbol order shrunk to the cash; no fees, lots of 1 share, no limits. Returns equity per day in fen."""
    days, n = open_.shape
    pos = [0] * n
    equity = []
    pending: list[tuple[int, int]] = []
    for t in range(days):
        moves = []
        for j, target_fen in pending:
            px = int(open_[t, j])
            moves.append((j, target_fen // px - pos[j], px))
        for j, delta, px in moves:
            if delta < 0:
                pos[j] += delta
                cash += -delta * px
        for j, delta, px in moves:
            if delta > 0:
                q = min(delta, cash // px)
                pos[j] += q
                cash -= q * px
        equity.append(cash + sum(pos[j] * int(close[t, j]) for j in range(n)))
        pending = [(j, int(targets[t, j]) * 100) for j in range(n) if not np.isnan(targets[t, j])]
    return equity


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equivalence_with_a_plain_loop_on_random_data(seed: int) -> None:
    frame, open_, close = random_frame(6, 80, seed)
    rng = np.random.default_rng(seed + 100)
    targets = np.where(rng.random((80, 6)) < 0.3, rng.integers(0, 40_000, (80, 6)).astype(float), np.nan)

    class Targets(Strategy):
        name = "targets"
        title = "Targets"
        description = "orders the pre-drawn targets"

        def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
            row = targets[bar.index]
            cols = np.flatnonzero(~np.isnan(row))
            if len(cols):
                ctx.order_target_value(cols, row[cols])

    config = BacktestConfig(
        initial_cash=Decimal("100000"), lots=False, price_limits=False, stamp_duty=False,
        commission_rate=Decimal(0), min_commission=Decimal(0), transfer_fee_rate=Decimal(0),
    )  # fmt: skip
    result = run_backtest(Targets(), frame, config)
    check_identity(result)
    expected = plain_loop(open_, close, targets, 100_000_00)
    assert result.equity_fen.tolist() == expected
    assert len(result.trades["qty"]) > 50  # the scenario does trade, and the cash does run short at times
    assert "cash: not enough cash for the quantity, fees included" in set(result.orders_frame()["reason"])


# --- exact fees and limits against shared.core.market.rules ----------------------------------------------------------


@pytest.mark.parametrize(
    "schedule", [FeeSchedule(), FeeSchedule(commission_rate=Decimal("0.0003"), min_commission=Decimal("0.1"))]
)
def test_integer_fees_agree_with_trade_fees(schedule: FeeSchedule) -> None:
    rng = np.random.default_rng(5)
    amounts = np.concatenate([rng.integers(1, 10**10, 3000), rng.integers(1, 10**6, 3000), [1, 50, 200, 2000_00]])
    amounts = amounts.astype(np.int64)
    fees = FenFees.from_schedule(schedule)
    for day in (date(2023, 8, 25), date(2023, 8, 28)):
        commission, transfer, stamp = fees.commission(amounts), fees.transfer(amounts), fees.stamp(amounts, day)
        for i, a in enumerate(amounts.tolist()):
            expected = trade_fees(Decimal(a) / 100, is_sell=True, trade_date=day, schedule=schedule)
            got = (int(commission[i]), int(stamp[i]), int(transfer[i]))
            assert got == (to_fen(expected.commission), to_fen(expected.stamp_duty), to_fen(expected.transfer_fee))


def test_integer_limit_prices_agree_with_the_rules_module() -> None:
    rng = np.random.default_rng(6)
    pre = rng.integers(1, 300_000, 4000).astype(np.int64)
    for board in Board:
        for st in (False, True):
            ratio = price_limit_ratio(board, date(2024, 6, 3), is_st=st)
            assert ratio is not None
            up_bp = np.full(len(pre), int(ratio[0] * 10_000), dtype=np.int64)
            down_bp = np.full(len(pre), int(ratio[1] * 10_000), dtype=np.int64)
            up, down = limit_prices_fen(pre, up_bp, down_bp)
            for i, p in enumerate(pre.tolist()):
                expected = limit_prices(Decimal(p) / 100, ratio)
                assert expected is not None
                assert (int(up[i]), int(down[i])) == (to_fen(expected[0]), to_fen(expected[1]))


# --- determinism and the input hash -----------------------------------------------------------------------------


def test_same_inputs_give_byte_identical_json_and_the_hash_tracks_params_config_and_data() -> None:
    frame, _, _ = random_frame(8, 60, 9)
    strategy = {"fast": 3, "slow": 8}
    first = run(DualMA(strategy), frame)
    second = run(DualMA(strategy), frame.copy())
    assert first.to_json() == second.to_json()
    assert len(first.trades["qty"]) > 0
    assert json.loads(first.to_json())["input_sha256"] == first.input_sha256
    assert run(DualMA({"fast": 3, "slow": 9}), frame).input_sha256 != first.input_sha256
    assert run(DualMA(strategy), frame, initial_cash=Decimal("999999")).input_sha256 != first.input_sha256
    changed = frame.copy()
    changed.loc[5, "close"] += 0.01
    changed.loc[5, "high"] += 0.01
    assert run(DualMA(strategy), changed).input_sha256 != first.input_sha256
    # rows in another order: sorted, reported, and the same run
    shuffled = run(DualMA(strategy), frame.sample(frac=1.0, random_state=3))
    assert shuffled.input_sha256 == first.input_sha256
    assert shuffled.data_report["input_sorted"] is False and first.data_report["input_sorted"] is True
    assert shuffled.equity_fen.tolist() == first.equity_fen.tolist()
    assert first.code_version == {}  # the engine looks nothing up: the caller gives the version
    version = run_backtest(DualMA(strategy), frame, code_version=code_version()).code_version
    assert version["package"]
    assert version == code_version()


def test_result_writes_tables(tmp_path: Any) -> None:
    frame, _, _ = random_frame(3, 30, 4)
    result = run(DualMA({"fast": 2, "slow": 5}), frame)
    paths = result.write(tmp_path, "csv")
    assert sorted(p.name for p in paths) == ["equity.csv", "orders.csv", "positions.csv", "result.json", "trades.csv"]
    equity = pd.read_csv(tmp_path / "equity.csv", dtype=str)
    assert equity["equity"].iloc[-1] == result.final_equity


# --- bad input --------------------------------------------------------------------------------------------------


def good() -> pd.DataFrame:
    return bars([(A, d, 10.0, 10.0) for d in weekdays(3)] + [("600004.SH", d, 10.0, 10.0) for d in weekdays(3)])


def _drop(col: str) -> pd.DataFrame:
    return good().drop(columns=[col])


def _set(row: int, col: str, value: Any) -> pd.DataFrame:
    frame = good()
    frame[col] = frame[col].astype(object) if isinstance(value, str) else frame[col]
    frame.loc[row, col] = value
    return frame


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_drop("pre_close"), r"missing column\(s\) pre_close"),
        (pd.concat([good(), good().iloc[[1]]]), r"1 duplicate \(ts_code, trade_date\) row\(s\): 600000.SH 2024-01-03"),
        (_set(2, "close", float("nan")), "missing or non-positive close"),
        (_set(4, "open", -1.0), "missing or non-positive open"),
        (_set(1, "vol", -5.0), "missing or negative vol"),
        (_set(0, "trade_date", "2024-13-01"), "trade_date must be 'YYYYMMDD'"),
        (_set(0, "ts_code", "000300.SH"), "not an A-share stock code"),
        (_set(0, "high", 9.0), "high below the open/close"),
        (good().assign(adj_factor=[1.0, 0.0, 1.0, 1.0, 1.0, 1.0]), "non-positive adj_factor"),
    ],
)
def test_bad_bars_are_refused_naming_the_problem(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(BarsError, match=message):
        run_backtest(Script(), frame)


def test_a_bar_on_a_day_outside_the_calendar_is_refused_and_a_day_without_bars_counts() -> None:
    calendar = tuple(date(2024, 1, d) for d in (2, 3, 4))
    with pytest.raises(BarsError, match="not trading days of the calendar: 2024-01-04"):
        run_backtest(Script(), good(), BacktestConfig(calendar=calendar[:2]))
    # a calendar day on which nothing traded is still a day of the run (marked at the last close)
    only_two = good()[good()["trade_date"] != "20240103"]
    result = run(Script(), only_two, calendar=calendar)
    assert result.dates == ["2024-01-02", "2024-01-03", "2024-01-04"]


def test_invalid_strategy_params_name_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        DualMA({"fast": "quick"})
    assert caught.value.errors()[0]["loc"] == ("fast",)
    with pytest.raises(ValidationError, match="fast"):
        DualMA({"fast": 30, "slow": 20})
    with pytest.raises(ValidationError) as caught:
        DualMA({"slow_period": 20})
    assert caught.value.errors()[0]["loc"] == ("slow_period",)


def test_a_strategy_misusing_the_context_gets_a_clear_error() -> None:
    with pytest.raises(KeyError, match="not in the universe"):
        run_backtest(Script({0: lambda c: c.buy("600999.SH", 100)}), good())
    with pytest.raises(StrategyError, match="positive"):
        run_backtest(Script({0: lambda c: c.buy(A, 0)}), good())
    with pytest.raises(StrategyError, match="finite"):
        run_backtest(Script({0: lambda c: c.order_target_value(np.array([0, 1]), np.array([1.0, np.nan]))}), good())


# --- hooks and example strategies -------------------------------------------------------------------------------


def test_on_order_and_on_trade_are_called() -> None:
    events: list[Any] = []

    class Listener(Script):
        def on_order(self, ctx: StrategyContext, event: OrderEvent) -> None:
            events.append(event)

        def on_trade(self, ctx: StrategyContext, event: TradeEvent) -> None:
            events.append(event)

    run(Listener({-1: lambda c: (c.buy(A, 100), c.buy(A, 150))}), good())
    trade = next(e for e in events if isinstance(e, TradeEvent))
    assert (trade.ts_code, trade.side, trade.qty, trade.price, trade.amount, trade.fees) == (
        A,
        "buy",
        100,
        10.0,
        1000.0,
        5.01,
    )
    statuses = sorted((e.order_id, e.status) for e in events if isinstance(e, OrderEvent))
    assert statuses == [(0, "filled"), (1, "rejected")]


def test_buy_and_hold_splits_the_cash_and_holds() -> None:
    frame = good()
    result = run(BuyAndHold({"cash_reserve": "0.5"}), frame, initial_cash=Decimal("100000"))
    # 50,000 invested: 25,000 per symbol at 10.00 -> 2,500 shares each; commission 25,000 x 0.025% = 6.25,
    # transfer 0.25: fees 6.50 each; the price never moves, so equity = 100,000 - 13.00
    assert [(t["ts_code"], t["qty"], t["fees"]) for t in trades(result)] == [
        (A, 2500, "6.50"),
        ("600004.SH", 2500, "6.50"),
    ]
    assert result.final_equity == "99987.00"


def test_dual_ma_crossover_worked_by_hand() -> None:
    closes = [10.00, 10.00, 10.00, 9.90, 10.80, 10.80, 9.80, 9.90]
    opens = [10.00, 10.00, 10.00, 10.00, 10.00, 10.80, 10.50, 9.90]
    frame = bars([(A, d, o, c) for d, o, c in zip(weekdays(8), opens, closes, strict=True)])
    result = run(DualMA({"fast": 2, "slow": 3}), frame, initial_cash=Decimal("100000"))
    # SMA2 / SMA3 by day: d2 10.00 / 10.00 (equal); d3 9.95 / 9.967 (below, was equal: a cross down, no position);
    # d4 10.35 / 10.233 (above, was below: cross up -> order the 100,000 sleeve); d5 10.80 / 10.50 (above);
    # d6 10.30 / 10.467 (below, was above: cross down -> close)
    # d5 open 10.80: 100,000 / 10.80 = 9,259.3 -> 9,200 shares = 99,360.00; commission 24.84, transfer 0.99
    # d7 open 9.90: 9,200 x 9.90 = 91,080.00; commission 22.77, transfer 0.91, stamp 0.05% 45.54
    t = trades(result)
    assert [(x["trade_date"], x["side"], x["qty"], x["price"], x["fees"]) for x in t] == [
        ("2024-01-09", "buy", 9200, "10.80", "25.83"),
        ("2024-01-11", "sell", 9200, "9.90", "69.22"),
    ]
    # realised: 91,080.00 - 69.22 - (99,360.00 + 25.83) = -8,375.05
    assert t[1]["realised_pnl"] == "-8375.05"
    assert result.final_equity == "91624.95"  # 100,000 - 99,385.83 + 91,010.78
    assert result.metrics["trade_count"] == 1 and result.metrics["win_rate"] == 0.0
    assert [o["status"] for o in orders(result)] == ["filled", "filled"]


# --- benchmark and files ----------------------------------------------------------------------------------------


def test_benchmark_returns_and_relative_metrics() -> None:
    days = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)]
    index = pd.DataFrame(
        {
            "trade_date": ["20240102", "20240103", "20240104"],
            "close": [100.0, 101.0, 99.99],
            "pre_close": [100.0, 100.0, 101.0],
        }
    )
    # day 0 against its pre_close (no earlier close given): 0; then 101 / 100 - 1 = 1%; 99.99 / 101 - 1 = -1%
    assert np.allclose(benchmark_returns(index, days), [0.0, 0.01, -0.01])
    earlier = pd.concat([pd.DataFrame({"trade_date": ["20231229"], "close": [80.0], "pre_close": [80.0]}), index])
    assert np.allclose(benchmark_returns(earlier, days), [0.25, 0.01, -0.01])
    with pytest.raises(BarsError, match="no close on 1 trading day"):
        benchmark_returns(index.iloc[:2], days)
    frame = bars([(A, d, c, c) for d, c in zip(weekdays(3), [10.0, 10.5, 10.2], strict=True)])
    plain = run(Script({-1: lambda c: c.buy(A, 1000)}), frame)
    result = run_backtest(Script({-1: lambda c: c.buy(A, 1000)}), frame, benchmark=index)
    check_identity(result)
    assert plain.metrics["beta"] is None and result.metrics["beta"] is not None
    assert result.metrics["benchmark_total_return"] == pytest.approx(99.99 / 100 - 1)
    assert result.input_sha256 != plain.input_sha256


def test_read_bars_from_csv_and_parquet(tmp_path: Any) -> None:
    frame = good()
    frame.to_csv(tmp_path / "bars.csv", index=False)
    frame.to_parquet(tmp_path / "bars.parquet", index=False)
    from_csv = run(Script(), read_bars(tmp_path / "bars.csv"))
    from_parquet = run(Script(), read_bars(tmp_path / "bars.parquet"))
    assert from_csv.input_sha256 == from_parquet.input_sha256 == run(Script(), frame).input_sha256
    with pytest.raises(BarsError, match=r"\.csv or \.parquet"):
        read_bars(tmp_path / "bars.txt")


def test_other_numeric_columns_ride_along_for_strategies() -> None:
    frame = bars([(A, d, 10.0, 10.0) for d in weekdays(3)] + [("600004.SH", d, 10.0, 10.0) for d in weekdays(3)[::2]])
    frame["pe_ttm"] = [12.5, 13.0, np.nan, 8.0, 8.5]
    frame["name"] = "x"
    seen: dict[str, Any] = {}
    result = run(Script({2: lambda c: seen.update(pe=c.history("pe_ttm", adjusted=False).tolist())}), frame)
    # 600004.SH has no bar on the 2nd day: NaN there, as where the value itself is missing
    assert np.array_equal(np.array(seen["pe"]), [[12.5, 8.0], [13.0, np.nan], [np.nan, 8.5]], equal_nan=True)
    assert result.data_report["extra_columns"] == ["pe_ttm"] and result.data_report["ignored_columns"] == ["name"]
    changed = frame.assign(pe_ttm=[12.5, 13.0, np.nan, 8.0, 9.0])
    assert run(Script(), changed).input_sha256 != result.input_sha256
