"""The sleeve book's corporate actions (SleeveBook.corporate_actions): the engine's rule on the shares held at the
start of the ex-date's session, once, whether the session's fills come after (a replay) or before (the real clock,
where the bar and its adj_factor arrive after the session). The case is execution's test of the same ex-date
(tests/integration/execution/test_paper_sessions.py): worked by hand there and here."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from services.strategy.book import SleeveBook, TradeFill
from shared.research.engine import BacktestConfig, load_bars
from tests.unit.engine.support import bars

CODE = "600030.SH"
DAYS = [date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)]


def _book() -> SleeveBook:
    # 10 bonus shares per 10 held and 0.50 CNY a share go ex on 2024-03-05: reference price (10.00 - 0.50) / 2 = 4.75,
    # Tushare's backward factor 1 -> 10.00 / 4.75 = 2.105263
    frame = bars(
        [(CODE, "20240304", 10.00, 10.00, 10.00), (CODE, "20240305", 4.80, 4.85, 4.75), (CODE, "20240306", 4.85, 4.90)],
        adj_factor=[1.0, 2.105263, 2.105263],
    )
    config = BacktestConfig(initial_cash=Decimal("100000"), calendar=tuple(DAYS))
    return SleeveBook(load_bars(frame, config), config, "0" * 32)


def _fill(trade_id: str, side: str, qty: int, price_fen: int, day: date) -> TradeFill:
    return TradeFill(trade_id, f"c-{trade_id}", CODE, side, qty, price_fen, 500, 0, 0, day)


def _bought_400(book: SleeveBook) -> None:
    book.begin_day(0)
    book.apply(_fill("t1", "buy", 400, 1000, DAYS[0]))  # 4,000.00 + 5.00 fees
    book.close_day()


def test_a_replayed_ex_date_adjusts_the_shares_before_the_sessions_orders() -> None:
    book = _book()
    _bought_400(book)
    assert (book.cash_fen, int(book.cost_fen[0])) == (10_000_000 - 400_500, 400_500)
    book.begin_day(1)
    # 400 x 2.105263 = 842.1052 -> 842 shares; 0.1052 x 4.75 = 0.4997 -> 0.50 CNY, which lowers the cost
    assert (int(book.positions[0]), int(book.sellable()[0])) == (842, 842)
    assert (book.cash_fen, int(book.cost_fen[0])) == (10_000_000 - 400_500 + 50, 400_450)
    assert book.actions == [
        {"trade_date": "2024-03-05", "ts_code": CODE, "ratio": 2.105263, "qty_before": 400, "qty_after": 842,
         "cash_in_lieu": "0.50"}
    ]  # fmt: skip
    # the same day again (a session run again after a restart, close_bar after it): nothing more
    assert book.corporate_actions(1) == []
    book.begin_day(1)
    assert (int(book.positions[0]), len(book.actions)) == (842, 1)


def test_on_the_real_clock_the_adjustment_comes_with_the_bar_after_the_sessions_fills() -> None:
    book = _book()
    _bought_400(book)
    # the session of 2024-03-05 opens before its bar exists: a sell of the 400 shares known then fills at 4.80
    book.open_session(DAYS[1])
    book.apply(_fill("t2", "sell", 400, 480, DAYS[1]))
    assert int(book.positions[0]) == 0
    # the bar arrives: the shares held at the session's start (400) go ex as in execution, leaving 842 - 400 = 442
    book.t = 1
    [action] = book.corporate_actions(1)
    assert (action["qty_before"], action["qty_after"], action["cash_in_lieu"]) == (400, 842, "0.50")
    assert int(book.positions[0]) == 442
    # 10,000,000 - 400,500 (buy) + 192,000 - 500 (sell) + 50 (cash in lieu)
    assert book.cash_fen == 9_791_050


def test_a_restored_book_does_not_apply_a_day_twice() -> None:
    book = _book()
    _bought_400(book)
    book.begin_day(1)
    again = _book()
    again.restore(book.to_json())
    again.begin_day(1)
    assert (int(again.positions[0]), again.cash_fen, again.actions) == (842, book.cash_fen, book.actions)
    again.begin_day(2)  # no ex-date on 2024-03-06 (the factor stays)
    assert (int(again.positions[0]), len(again.actions)) == (842, 1)
