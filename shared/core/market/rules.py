"""A-share trading rules: price limits, tick, lots, fees. Each rule cites its source and the date it took effect."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from shared.core.domain.codes import Board, parse_ts_code
from shared.core.domain.money import FEN, PRICE_TICK, money

# Daily price limits (10%) on both exchanges from 1996-12-16 (SSE/SZSE notices of 1996-12-13, on the CSRC's
# instruction); before that day stocks traded without a daily limit.
PRICE_LIMITS_START = date(1996, 12, 16)
# ChiNext registration reform: 20% limits from 2020-08-24 (SZSE 创业板交易特别规定, 2020-06-12).
CHINEXT_REFORM = date(2020, 8, 24)
# Main-board registration reform: no limits in the first 5 days of new listings from 2023-04-10
# (SSE/SZSE 主板注册制交易规则, 2023-02-17).
MAIN_BOARD_REFORM = date(2023, 4, 10)
# Stamp duty halved from 0.1% to 0.05% on trades from 2023-08-28 (财政部 税务总局公告2023年第39号, 2023-08-27).
STAMP_DUTY_CUT = date(2023, 8, 28)


def on_tick(px: Decimal) -> bool:
    """A-share stock prices move in 0.01 CNY (SSE/SZSE/BSE trading rules)."""
    return px == px.quantize(PRICE_TICK)


def price_limit_ratio(
    board: Board, trade_date: date, *, is_st: bool = False, listing_day: int | None = None
) -> tuple[Decimal, Decimal] | None:
    """(up, down) daily limit as a fraction of the previous close, or None when the day has no limit.

    `listing_day` is 1 on the first trading day after listing, 2 on the second, ...; None for seasoned stocks.
    Before `PRICE_LIMITS_START` (1996-12-16) no board had a daily limit.
    """
    if trade_date < PRICE_LIMITS_START:
        return None
    if board is Board.STAR:
        # STAR (SSE 科创板交易特别规定, 2019-03-01): 20%, ST alike; no limits in the first 5 days.
        if listing_day is not None and listing_day <= 5:
            return None
        return Decimal("0.20"), Decimal("0.20")
    if board is Board.BSE:
        # BSE (北京证券交易所交易规则, 2021-10-30): 30%; no limit on the first day.
        if listing_day == 1:
            return None
        return Decimal("0.30"), Decimal("0.30")
    if board is Board.CHINEXT:
        if trade_date >= CHINEXT_REFORM:
            if listing_day is not None and listing_day <= 5:
                return None
            return Decimal("0.20"), Decimal("0.20")  # ST alike after the reform
        if listing_day == 1:
            # Before the reform ChiNext IPOs followed the main-board first-day cap: +44% / -36% of the issue price.
            return Decimal("0.44"), Decimal("0.36")
        return _main_board_ratio(is_st)
    # Main board
    if listing_day is not None:
        if trade_date >= MAIN_BOARD_REFORM:
            if listing_day <= 5:
                return None
        elif listing_day == 1:
            # Before the reform, a main-board IPO's first day was capped at +44% / -36% of the issue price.
            return Decimal("0.44"), Decimal("0.36")
    return _main_board_ratio(is_st)


def _main_board_ratio(is_st: bool) -> tuple[Decimal, Decimal]:
    # 10% for ordinary stocks, 5% for ST / *ST (SSE/SZSE trading rules, in force since 1996/1998).
    pct = Decimal("0.05") if is_st else Decimal("0.10")
    return pct, pct


def limit_prices(pre_close: Decimal, ratio: tuple[Decimal, Decimal] | None) -> tuple[Decimal, Decimal] | None:
    """(limit_up, limit_down) prices: previous close times (1 ± ratio), rounded half-up to the tick,
    as the exchanges compute them. None when the day has no limit."""
    if ratio is None:
        return None
    up, down = ratio
    limit_up = (pre_close * (1 + up)).quantize(PRICE_TICK, rounding=ROUND_HALF_UP)
    limit_down = (pre_close * (1 - down)).quantize(PRICE_TICK, rounding=ROUND_HALF_UP)
    return limit_up, max(limit_down, PRICE_TICK)


# Price cage (有效申报价格范围) of limit orders in continuous trading, and of a STAR market order's protection price:
# main board and ChiNext a buy at most the larger of 102% of the benchmark and the benchmark + 10 ticks, a sell at
# least the smaller of 98% and benchmark - 10 ticks (SZSE from 2020-08-24 for ChiNext, SSE/SZSE main board from
# 2023-04-10); STAR 102% / 98% only (SSE 科创板交易特别规定 2019; its market orders' 保护限价 are held to it as well).
CAGE_PCT = Decimal("0.02")
CAGE_TICKS = Decimal("0.10")


def price_cage(board: Board, benchmark: Decimal) -> tuple[Decimal, Decimal]:
    """(highest buy, lowest sell) a limit order (or a STAR market order's protection price) may name in continuous
    trading, against the benchmark price. Prices are in ticks: a buy may go up to the tick at or below the bound, a
    sell down to the tick at or above it."""
    up, down = benchmark * (1 + CAGE_PCT), benchmark * (1 - CAGE_PCT)
    if board is not Board.STAR:
        up, down = max(up, benchmark + CAGE_TICKS), min(down, benchmark - CAGE_TICKS)
    return up.quantize(PRICE_TICK, rounding=ROUND_FLOOR), down.quantize(PRICE_TICK, rounding=ROUND_CEILING)


def band_error(px: Decimal, limit_up: Decimal | None, limit_down: Decimal | None, what: str = "price") -> str | None:
    """Why `px` (a limit price, or a STAR market order's protection price, named by `what`) is outside the session's
    price limits, or None (inside, or no limit known on that side: a session without limits). The exchanges reject
    such an order (无效申报); one statement for risk and execution's paper broker."""
    if limit_up is not None and px > limit_up:
        return f"{what} {px} is above the limit-up price {limit_up}"
    if limit_down is not None and px < limit_down:
        return f"{what} {px} is below the limit-down price {limit_down}"
    return None


class LotError(ValueError):
    pass


def buy_qty_error(board: Board, qty: int) -> str | None:
    """Why a buy quantity is not allowed, or None.

    Main board and ChiNext: multiples of 100 shares. STAR: at least 200, then any number of shares
    (SSE 科创板交易特别规定 2019). BSE: at least 100, then any number of shares (BSE rules 2021-11-15).
    """
    if qty <= 0:
        return "quantity must be positive"
    if board is Board.STAR:
        return None if qty >= 200 else "STAR buys need at least 200 shares"
    if board is Board.BSE:
        return None if qty >= 100 else "BSE buys need at least 100 shares"
    return None if qty % 100 == 0 else "buys must be in lots of 100 shares"


def board_lots(board: Board) -> tuple[int, int]:
    """(lot_min, lot_step) of a board: the smallest buy and the step above it, as `buy_qty_error` states them.
    Main board and ChiNext 100 then 100; STAR 200 then 1; BSE 100 then 1."""
    if board is Board.STAR:
        return 200, 1
    if board is Board.BSE:
        return 100, 1
    return 100, 100


def lot_sizes(ts_code: str) -> tuple[int, int]:
    """(lot_min, lot_step) of a stock, from its board (`board_lots`); an invalid code raises InvalidTsCode."""
    return board_lots(parse_ts_code(ts_code).board)


def sell_qty_error(board: Board, qty: int, position_qty: int | None = None) -> str | None:
    """Why a sell quantity is not allowed, or None. An odd lot may only be sold as the whole remaining
    position (exchange trading rules: 余额不足一手部分应一次性申报卖出)."""
    if qty <= 0:
        return "quantity must be positive"
    if position_qty is not None and qty > position_qty:
        return "cannot sell more than the position"
    if position_qty is not None and qty == position_qty:
        return None
    if board is Board.STAR:
        return None if qty >= 200 else "STAR sells below 200 shares must close the whole position"
    if board is Board.BSE:
        return None if qty >= 100 else "BSE sells below 100 shares must close the whole position"
    return None if qty % 100 == 0 else "odd lots can only be sold as the whole position"


# Largest order the exchanges accept, in shares, by board and order type, with the day each figure took effect.
# Main board: 1,000,000 a limit or market order (SSE 交易规则 3.4.10 / SZSE 交易规则 3.3.6 of 2006, unchanged by the
# 2023 registration reform). ChiNext after its registration reform (SZSE 创业板交易特别规定 of 2020-06-12, from
# 2020-08-24): 300,000 a limit order, 150,000 a market order. STAR (SSE 科创板交易特别规定 of 2019-03-01, trading
# from 2019-07-22): 100,000 a limit order, 50,000 a market order. BSE (北京证券交易所交易规则, 2021-11-15):
# 1,000,000. Before ChiNext's reform its orders followed the main board's.
MAX_ORDER_QTY: dict[Board, tuple[tuple[date, int, int], ...]] = {
    # (from, limit order, market order), newest last
    Board.MAIN: ((date(2006, 7, 1), 1_000_000, 1_000_000),),
    Board.CHINEXT: ((date(2009, 10, 30), 1_000_000, 1_000_000), (CHINEXT_REFORM, 300_000, 150_000)),
    Board.STAR: ((date(2019, 7, 22), 100_000, 50_000),),
    Board.BSE: ((date(2021, 11, 15), 1_000_000, 1_000_000),),
}


def max_order_qty(board: Board, *, market: bool, trade_date: date) -> int | None:
    """The most shares one order may ask for on `trade_date` (a limit order, or a market order with `market`), or
    None before the first dated figure of the board (nothing is known to check)."""
    figure: int | None = None
    for since, limit_qty, market_qty in MAX_ORDER_QTY[board]:
        if trade_date >= since:
            figure = market_qty if market else limit_qty
    return figure


def stamp_duty_rate(trade_date: date) -> Decimal:
    """Sell-side stamp duty: 0.1% until 2023-08-27, 0.05% from 2023-08-28 (MOF/SAT announcement 2023 No. 39)."""
    return Decimal("0.0005") if trade_date >= STAMP_DUTY_CUT else Decimal("0.001")


@dataclass(frozen=True)
class FeeSchedule:
    """Fees per account. Commission is negotiated with the broker; the others are set by regulators.

    Transfer fee 0.001% of the amount on both sides for SH and SZ (CSDC, from 2022-04-29).
    Rounding: each component rounded half-up to the fen, separately.
    """

    commission_rate: Decimal = Decimal("0.00025")
    min_commission: Decimal = Decimal("5")
    transfer_fee_rate: Decimal = Decimal("0.00001")


@dataclass(frozen=True)
class Fees:
    commission: Decimal
    stamp_duty: Decimal
    transfer_fee: Decimal

    @property
    def total(self) -> Decimal:
        return self.commission + self.stamp_duty + self.transfer_fee


def trade_fees(amount: Decimal, *, is_sell: bool, trade_date: date, schedule: FeeSchedule | None = None) -> Fees:
    s = schedule or FeeSchedule()
    commission = max(money(amount * s.commission_rate), s.min_commission.quantize(FEN))
    stamp = money(amount * stamp_duty_rate(trade_date)) if is_sell else Decimal("0.00")
    transfer = money(amount * s.transfer_fee_rate)
    return Fees(commission=commission, stamp_duty=stamp, transfer_fee=transfer)
