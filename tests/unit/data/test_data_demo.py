"""The demo market: deterministic, on the SSE calendar, and every bar one an exchange could have printed."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pytest

from services.data.demo import DemoMarket, ex_rights_reference_fen, generate_demo_market
from shared.platform.settings import Settings

# Limit percentage by board, written out here rather than taken from shared.core.market (main 10%, ST 5%,
# ChiNext/STAR 20%, BSE 30%; all demo stocks are seasoned, so no new-listing regimes).
BOARD_BY_PREFIX = {
    "600": "main",
    "601": "main",
    "603": "main",
    "605": "main",
    "000": "main",
    "001": "main",
    "002": "main",
    "003": "main",
    "300": "chinext",
    "301": "chinext",
    "688": "star",
    "83": "bse",
    "920": "bse",
}
LIMIT_PCT = {"main": 10, "chinext": 20, "star": 20, "bse": 30}


def board_of(ts_code: str) -> str:
    for prefix, board in BOARD_BY_PREFIX.items():
        if ts_code.startswith(prefix):
            return board
    raise AssertionError(f"{ts_code} is not on a demo board")


def fen(value: float) -> int:
    exact = Decimal(str(value)) * 100
    assert exact == exact.to_integral_value(), f"{value} is off the 0.01 tick"
    return int(exact)


def hand_limits(pre_close_fen: int, pct: int) -> tuple[int, int]:
    """pre_close x (1 ± pct%), half-up to the fen; a limit-down price is at least 0.01."""
    up = (pre_close_fen * (100 + pct) + 50) // 100
    down = max(1, (pre_close_fen * (100 - pct) + 50) // 100)
    return up, down


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings()  # default demo: seed 20240101, 60 symbols, 2023-01-03 .. 2024-12-31


@pytest.fixture(scope="module")
def market(settings: Settings) -> DemoMarket:
    return generate_demo_market(settings)


@pytest.fixture(scope="module")
def bars_by_code(market: DemoMarket) -> dict[str, list[tuple]]:
    grouped: dict[str, list[tuple]] = defaultdict(list)
    for row in market.daily.itertuples(index=False):
        grouped[row.ts_code].append(row)
    return grouped


def test_same_seed_same_market_other_seed_other_market(settings: Settings, market: DemoMarket) -> None:
    again = generate_demo_market(settings)
    pd.testing.assert_frame_equal(market.daily, again.daily, check_exact=True)
    assert market.securities == again.securities
    assert market.actions == again.actions
    assert market.suspensions == again.suspensions
    other = generate_demo_market(settings.with_overrides(demo_seed=settings.demo_seed + 1))
    assert not other.daily["close"].equals(market.daily["close"])


def test_tushare_daily_layout(market: DemoMarket) -> None:
    assert list(market.daily.columns) == [
        "ts_code",
        "trade_date",
        "open",
        "high",
        "low",
        "close",
        "pre_close",
        "change",
        "pct_chg",
        "vol",
        "amount",
        "adj_factor",
    ]
    first = market.daily.iloc[0]
    assert len(first["trade_date"]) == 8 and first["trade_date"].isdigit()
    for row in market.daily.head(200).itertuples(index=False):
        assert Decimal(str(row.change)) == Decimal(str(row.close)) - Decimal(str(row.pre_close))


def test_at_least_fifty_symbols_on_all_five_boards(market: DemoMarket) -> None:
    codes = [s.ts_code for s in market.securities]
    assert len(codes) == 60 and len(set(codes)) == 60
    assert set(market.daily["ts_code"]) == set(codes)
    by_board: dict[str, list[str]] = defaultdict(list)
    for sec in market.securities:
        assert board_of(sec.ts_code) == sec.board.value
        by_board[sec.board.value].append(sec.ts_code)
    assert set(by_board) == {"main", "chinext", "star", "bse"}
    exchanges_of_main = {code[-2:] for code in by_board["main"]}
    assert exchanges_of_main == {"SH", "SZ"}  # SH main and SZ main are both there
    assert all(code.endswith(".BJ") for code in by_board["bse"])
    assert any(code.startswith("83") for code in by_board["bse"])
    assert any(code.startswith("920") for code in by_board["bse"])
    names = [s.name for s in market.securities]
    assert len(set(names)) == len(names)
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in name) for name in names)


def test_minimum_size_is_enforced(settings: Settings) -> None:
    assert len(generate_demo_market(settings.with_overrides(demo_symbols=50)).securities) == 50
    with pytest.raises(ValueError, match="demo_symbols"):
        generate_demo_market(settings.with_overrides(demo_symbols=4))


def test_bars_only_on_sse_trading_days(market: DemoMarket) -> None:
    days = {date(int(t[:4]), int(t[4:6]), int(t[6:])) for t in market.daily["trade_date"].unique()}
    assert all(d.weekday() < 5 for d in days)
    # Closures from the SSE holiday notices for 2023 and 2024 (a sample of each holiday).
    closed = {
        date(2023, 1, 2), date(2023, 1, 23), date(2023, 1, 27), date(2023, 4, 5), date(2023, 5, 1),
        date(2023, 6, 22), date(2023, 9, 29), date(2023, 10, 2), date(2023, 10, 6), date(2024, 1, 1),
        date(2024, 2, 9), date(2024, 2, 12), date(2024, 2, 16), date(2024, 4, 4), date(2024, 5, 1),
        date(2024, 6, 10), date(2024, 9, 16), date(2024, 10, 1), date(2024, 10, 7),
    }  # fmt: skip
    assert not days & closed
    assert days == set(market.trade_days)
    assert min(days) == date(2023, 1, 3) and max(days) == date(2024, 12, 31)
    assert len(days) == 242 + 242  # SSE trading days in 2023 and in 2024


def test_every_bar_within_its_daily_limits_and_ohlc_consistent(
    market: DemoMarket, bars_by_code: dict[str, list[tuple]]
) -> None:
    st = {s.ts_code for s in market.securities if s.is_st}
    at_limit = 0
    for ts_code, rows in bars_by_code.items():
        pct = 5 if ts_code in st else LIMIT_PCT[board_of(ts_code)]
        for row in rows:
            o, h, lo, c, pre = fen(row.open), fen(row.high), fen(row.low), fen(row.close), fen(row.pre_close)
            up, down = hand_limits(pre, pct)
            assert down <= lo <= min(o, c) <= max(o, c) <= h <= up, (ts_code, row.trade_date)
            at_limit += c in (up, down)
            assert row.vol > 0 and row.amount > 0
            # The amount is traded within the day's range: vwap between low and high (amount is rounded to 1 CNY).
            shares = Decimal(str(row.vol)) * 100
            yuan = Decimal(str(row.amount)) * 1000
            assert shares * lo / 100 - 1 <= yuan <= shares * h / 100 + 1
    assert at_limit > 10  # fat tails: limit-up and limit-down closes happen


def test_share_counts_follow_the_board_lot_rules(market: DemoMarket) -> None:
    for row in market.daily.itertuples(index=False):
        shares = Decimal(str(row.vol)) * 100
        assert shares == shares.to_integral_value()
        if board_of(row.ts_code) in ("main", "chinext"):
            assert shares % 100 == 0


def test_suspensions_leave_gaps_in_the_bars(market: DemoMarket, bars_by_code: dict[str, list[tuple]]) -> None:
    trading_days = [d.strftime("%Y%m%d") for d in market.trade_days]
    gaps: dict[str, list[str]] = {}
    for ts_code, rows in bars_by_code.items():
        have = {r.trade_date for r in rows}
        missing = [d for d in trading_days if d not in have]
        if missing:
            gaps[ts_code] = missing
    assert {s.ts_code for s in market.suspensions} == set(gaps)
    mid_window = [m for m in gaps.values() if m[-1] < trading_days[-1]]
    assert any(len(m) >= 15 for m in mid_window)  # a long halt with trading on both sides
    assert any(m[-1] == trading_days[-1] for m in gaps.values())  # a stock still halted on the last day
    for ts_code, rows in bars_by_code.items():
        # Across a halt the reference is still the last close: no jump in pre_close without a corporate action.
        ex_dates = {a.ex_date.strftime("%Y%m%d") for a in market.actions if a.ts_code == ts_code}
        for prev, row in itertools.pairwise(rows):
            if row.trade_date not in ex_dates:
                assert fen(row.pre_close) == fen(prev.close)


def test_the_st_stock_moves_within_five_percent(market: DemoMarket, bars_by_code: dict[str, list[tuple]]) -> None:
    st = [s for s in market.securities if s.is_st]
    assert len(st) == 1
    stock = st[0]
    assert stock.board.value == "main" and stock.name.startswith("ST")
    rows = bars_by_code[stock.ts_code]
    hits = 0
    for row in rows:
        pre, c = fen(row.pre_close), fen(row.close)
        up, down = hand_limits(pre, 5)
        assert down <= fen(row.low) and fen(row.high) <= up
        hits += c in (up, down)
    assert hits > 0  # it does reach its 5% limits (a 10% stock with this volatility would go past them)


def test_corporate_actions_change_pre_close_and_adj_factor(
    market: DemoMarket, bars_by_code: dict[str, list[tuple]]
) -> None:
    kinds = {a.kind for a in market.actions}
    assert "dividend" in kinds and ({"bonus", "bonus_and_dividend"} & kinds)
    actions = {(a.ts_code, a.ex_date.strftime("%Y%m%d")): a for a in market.actions}
    jumps = 0
    for ts_code, rows in bars_by_code.items():
        assert rows[0].adj_factor == 1.0
        for prev, row in itertools.pairwise(rows):
            action = actions.get((ts_code, row.trade_date))
            prev_adj, adj = Decimal(str(prev.adj_factor)), Decimal(str(row.adj_factor))
            if action is None:
                assert adj == prev_adj
                continue
            jumps += 1
            prev_close, pre_close = fen(prev.close), fen(row.pre_close)
            # Ex-rights reference price, by hand: (close - cash) / (1 + bonus/10), half-up to the fen.
            expected = (Decimal(prev_close - action.cash_fen_per_share) * 10 / (10 + action.bonus_per_10)).quantize(
                Decimal(1), rounding=ROUND_HALF_UP
            )
            assert pre_close == expected != prev_close
            # adj_factor[t] / adj_factor[t-1] == prev_close / pre_close, to the stored 6 decimals.
            assert adj == (prev_adj * prev_close / pre_close).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
            assert abs(adj / prev_adj - Decimal(prev_close) / pre_close) < Decimal("0.000001")
    assert jumps == len(market.actions)


def test_ex_rights_reference_price_examples() -> None:
    assert ex_rights_reference_fen(1385, 12, 3) == 1056  # (13.85 - 0.12) / 1.3 = 10.5615... -> 10.56
    assert ex_rights_reference_fen(1000, 35, 0) == 965  # cash only: 10.00 - 0.35
    assert ex_rights_reference_fen(1001, 0, 4) == 715  # 10.01 / 1.4 = 7.15
    with pytest.raises(ValueError):
        ex_rights_reference_fen(10, 10, 0)
