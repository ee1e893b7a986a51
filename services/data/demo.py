"""A deterministic demo A-share market (fictional companies, real exchange rules) for offline use: the data service
loads it at start-up when its store is empty, so backtests and the UI have something true-to-life to work on.

The daily frame uses Tushare's `daily` layout and units (prices in CNY, `vol` in lots of 100 shares, `amount` in
thousand CNY), plus Tushare's backward `adj_factor`, so the loader that stores it is the one real data goes through.
Underneath, every price is generated in integer fen and every limit comes from `shared.market`, so the frame holds
exactly what an exchange could have printed: closes, highs and lows within the day's limits, on the 0.01 tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd

from shared.domain.codes import Board, Exchange, parse_ts_code
from shared.market import is_trading_day, limit_prices, price_limit_ratio, sse_trading_days
from shared.market.calendar import FIRST_YEAR, LAST_YEAR
from shared.settings import Settings

TUSHARE_DAILY_COLUMNS = (
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
)
ADJ_FACTOR_PLACES = Decimal("0.000001")  # Tushare publishes adj_factor with up to 6 decimals; stored as DECIMAL(20,6)

# Share of each listing venue in the demo universe (roughly the A-share mix by count).
_VENUE_WEIGHTS: tuple[tuple[Exchange, Board, tuple[str, ...], float], ...] = (
    (Exchange.SH, Board.MAIN, ("600", "601", "603", "605"), 0.30),
    (Exchange.SZ, Board.MAIN, ("000", "001", "002", "003"), 0.28),
    (Exchange.SZ, Board.CHINEXT, ("300", "301"), 0.17),
    (Exchange.SH, Board.STAR, ("688",), 0.15),
    (Exchange.BJ, Board.BSE, ("83", "920"), 0.10),
)

# Fictional company names: a two-character brand (place / virtue words) and an industry word fitting the board.
_BRAND_FIRST = "澜岚沐溪曜珩翎骁舜昊晟璟岱湘滇黔闽赣皖陇"
_BRAND_SECOND = "川泽峰源辰禾宇衡拓岳屿原隆达信合"
_INDUSTRY: dict[Board, tuple[str, ...]] = {
    Board.MAIN: ("股份", "实业", "电气", "化工", "食品", "物流", "建材", "重工", "纺织", "酒业", "港务", "置业"),
    Board.CHINEXT: ("科技", "医疗", "软件", "新能", "环保", "传媒", "精密"),
    Board.STAR: ("微电子", "半导体", "生物", "光电", "智能", "芯材"),
    Board.BSE: ("精工", "新材", "机电", "技术", "装备"),
}

# First listing day each board could have had (an older list_date on that board would be anachronistic).
_BOARD_OPENED: dict[tuple[Board, str], date] = {
    (Board.STAR, "688"): date(2019, 7, 22),
    (Board.CHINEXT, "300"): date(2009, 10, 30),
    (Board.CHINEXT, "301"): date(2020, 8, 24),
    (Board.BSE, "83"): date(2021, 11, 15),
    (Board.BSE, "920"): date(2021, 11, 15),
}
_SEASONED_MARGIN = timedelta(days=30)  # every demo stock is listed well before the window: no IPO no-limit days
# Enough stocks for one per venue plus the ST stock, the corporate actions and the halts on distinct stocks;
# at most as many as there are distinct fictional names.
MIN_SYMBOLS = 10
MAX_SYMBOLS = len(_BRAND_FIRST) * len(_BRAND_SECOND)
MIN_TRADING_DAYS = 120  # room for a long halt with trading on both sides, and ex-dates away from the edges


@dataclass(frozen=True)
class DemoSecurity:
    ts_code: str
    symbol: str
    name: str
    exchange: Exchange
    board: Board
    is_st: bool
    list_date: date
    delist_date: date | None = None


@dataclass(frozen=True)
class CorporateAction:
    """A distribution going ex on `ex_date`: cash per share (fen) and bonus/transfer shares per 10 held (送转)."""

    ts_code: str
    ex_date: date
    cash_fen_per_share: int
    bonus_per_10: int

    @property
    def kind(self) -> str:
        if self.bonus_per_10 and self.cash_fen_per_share:
            return "bonus_and_dividend"
        return "bonus" if self.bonus_per_10 else "dividend"


@dataclass(frozen=True)
class Suspension:
    """Trading halted from `first_day` to `last_day` inclusive (no bars on those trading days)."""

    ts_code: str
    first_day: date
    last_day: date


@dataclass(frozen=True)
class DemoMarket:
    securities: list[DemoSecurity]
    daily: pd.DataFrame  # Tushare daily layout + adj_factor, sorted by ts_code then trade_date
    trade_days: list[date]  # the SSE trading days of the window
    actions: list[CorporateAction]
    suspensions: list[Suspension]


def ex_rights_reference_fen(prev_close_fen: int, cash_fen_per_share: int, bonus_per_10: int) -> int:
    """The exchange's ex-rights/ex-dividend reference price (除权除息参考价), which becomes the ex-date's pre_close:
    (previous close - cash per share) / (1 + bonus shares per share), rounded half-up to the fen
    (SSE 交易规则 3.4.2 / SZSE 交易规则 3.4.2)."""
    value = Decimal(prev_close_fen - cash_fen_per_share) * 10 / (10 + bonus_per_10)
    fen = int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if fen < 1:
        raise ValueError("a distribution cannot take the reference price below one fen")
    return fen


def _limits_fen(pre_close_fen: int, ratio: tuple[Decimal, Decimal] | None) -> tuple[int, int] | None:
    limits = limit_prices(Decimal(pre_close_fen).scaleb(-2), ratio)
    if limits is None:
        return None
    up, down = limits
    return int(up.scaleb(2)), int(down.scaleb(2))


def _venue_counts(n: int) -> list[int]:
    """Symbols per venue: proportional to the weights (largest remainder), at least one each."""
    raw = [w * n for *_, w in _VENUE_WEIGHTS]
    counts = [max(1, math.floor(x)) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - math.floor(raw[i]), reverse=True)
    i = 0
    while sum(counts) < n:
        counts[order[i % len(order)]] += 1
        i += 1
    while sum(counts) > n:
        biggest = max(range(len(counts)), key=lambda j: counts[j])
        counts[biggest] -= 1
    return counts


def _random_listing_day(rng: np.random.Generator, first: date, last: date) -> date:
    """A day the exchange was open: by the built-in calendar where it reaches, else any weekday."""
    day = first + timedelta(days=int(rng.integers(0, max(1, (last - first).days))))
    while not (is_trading_day(day) if FIRST_YEAR <= day.year <= LAST_YEAR else day.weekday() < 5):
        day += timedelta(days=1)
    return day


def _make_securities(rng: np.random.Generator, n: int, window_start: date) -> list[DemoSecurity]:
    latest_listing = window_start - _SEASONED_MARGIN
    names_pool = [a + b for a in _BRAND_FIRST for b in _BRAND_SECOND]
    brand_order = rng.permutation(len(names_pool))
    brands = iter(names_pool[i] for i in brand_order)
    securities: list[DemoSecurity] = []
    used_symbols: set[str] = set()
    for (exchange, board, prefixes, _), count in zip(_VENUE_WEIGHTS, _venue_counts(n), strict=True):
        for k in range(count):
            prefix = prefixes[k % len(prefixes)]
            while True:
                digits = 6 - len(prefix)
                symbol = prefix + str(int(rng.integers(1, 10**digits))).zfill(digits)
                if symbol not in used_symbols:
                    break
            used_symbols.add(symbol)
            code = parse_ts_code(f"{symbol}.{exchange.value}")
            assert code.board is board, f"{symbol} should be on {board}"
            opened = _BOARD_OPENED.get((board, prefix), date(2001, 1, 1))
            industry = _INDUSTRY[board][int(rng.integers(0, len(_INDUSTRY[board])))]
            securities.append(
                DemoSecurity(
                    ts_code=code.ts_code,
                    symbol=symbol,
                    name=next(brands) + industry,
                    exchange=exchange,
                    board=board,
                    is_st=False,
                    list_date=_random_listing_day(rng, opened, latest_listing),
                )
            )
    # One main-board stock under special treatment: ST names carry the prefix, and its limits are 5%.
    main = [i for i, s in enumerate(securities) if s.board is Board.MAIN]
    st = main[int(rng.integers(0, len(main)))]
    s = securities[st]
    securities[st] = DemoSecurity(s.ts_code, s.symbol, "ST" + s.name, s.exchange, s.board, True, s.list_date)
    return sorted(securities, key=lambda sec: sec.ts_code)


def _plan_events(
    rng: np.random.Generator, securities: list[DemoSecurity], days: list[date]
) -> tuple[list[CorporateAction], list[Suspension]]:
    """Corporate actions and suspensions, on distinct stocks so each effect is easy to see in the data."""
    n_days = len(days)
    if n_days < MIN_TRADING_DAYS:
        raise ValueError(f"the demo window needs at least {MIN_TRADING_DAYS} trading days")
    order = [int(i) for i in rng.permutation(len(securities))]
    candidates = [i for i in order if not securities[i].is_st]
    by_board = {b: [i for i in candidates if securities[i].board is b] for b in Board}

    def take(index: int) -> int:
        candidates.remove(index)
        for members in by_board.values():
            if index in members:
                members.remove(index)
        return index

    def ex_day() -> int:
        return int(rng.integers(20, n_days - 20))

    actions: list[CorporateAction] = []
    # Bonus shares: a ChiNext 10转4 and a STAR 10送3 with 1.20 CNY cash per 10 shares (0.12 per share).
    bonus_specs = ((Board.CHINEXT, 0, 4), (Board.STAR, 12, 3))
    for board, cash, bonus in bonus_specs:
        pool = by_board[board] or candidates
        actions.append(CorporateAction(securities[take(pool[0])].ts_code, days[ex_day()], cash, bonus))
    # Cash dividends: a handful of main-board payers, one ex-date a year, 0.05-0.60 CNY per share.
    payers = [take(i) for i in list(by_board[Board.MAIN])[: max(1, len(by_board[Board.MAIN]) // 3)]]
    years = sorted({d.year for d in days})
    for i in payers:
        for year in years:
            in_season = [k for k, d in enumerate(days) if d.year == year and 6 <= d.month <= 7 and 0 < k < n_days - 1]
            if not in_season:
                continue
            k = in_season[int(rng.integers(0, len(in_season)))]
            actions.append(CorporateAction(securities[i].ts_code, days[k], int(rng.integers(5, 61)), 0))
    if not any(a.bonus_per_10 == 0 for a in actions):  # a window without a June or July still gets a dividend
        actions.append(CorporateAction(securities[payers[0]].ts_code, days[ex_day()], int(rng.integers(5, 61)), 0))

    suspensions: list[Suspension] = []
    # A long halt mid-window (asset restructuring), a short one, and one still halted at the end of the data.
    long_start = int(rng.integers(n_days // 4, n_days // 2))
    long_len = int(rng.integers(15, 41))
    short_start = int(rng.integers(n_days // 2, n_days - 30))
    short_len = int(rng.integers(1, 4))
    end_len = int(rng.integers(3, 9))
    spans = ((long_start, long_len), (short_start, short_len), (n_days - end_len, end_len))
    for first, length in spans:
        i = take(candidates[0])
        suspensions.append(Suspension(securities[i].ts_code, days[first], days[first + length - 1]))
    return actions, suspensions


def generate_demo_market(settings: Settings) -> DemoMarket:
    """The demo market of `settings` (demo_seed, demo_symbols, demo_start..demo_end); same settings, same market."""
    start, end = date.fromisoformat(settings.demo_start), date.fromisoformat(settings.demo_end)
    if start > end:
        raise ValueError(f"demo_start {start} is after demo_end {end}")
    if not MIN_SYMBOLS <= settings.demo_symbols <= MAX_SYMBOLS:
        raise ValueError(f"demo_symbols must be between {MIN_SYMBOLS} and {MAX_SYMBOLS}")
    days = sse_trading_days(start, end)
    rng = np.random.default_rng(settings.demo_seed)
    securities = _make_securities(rng, settings.demo_symbols, start)
    actions, suspensions = _plan_events(rng, securities, days)
    actions_by_code: dict[str, dict[date, CorporateAction]] = {}
    for action in actions:
        actions_by_code.setdefault(action.ts_code, {})[action.ex_date] = action
    halted: dict[str, set[date]] = {}
    for halt in suspensions:
        halted.setdefault(halt.ts_code, set()).update(d for d in days if halt.first_day <= d <= halt.last_day)

    columns: dict[str, list[object]] = {c: [] for c in (*TUSHARE_DAILY_COLUMNS, "adj_factor")}
    fen_rows: dict[str, list[int]] = {c: [] for c in ("open", "high", "low", "close", "pre_close", "shares", "yuan")}
    trade_date_text = [d.strftime("%Y%m%d") for d in days]
    realized: list[CorporateAction] = []
    for sec in securities:
        _generate_bars(
            rng,
            sec,
            days,
            trade_date_text,
            actions_by_code.get(sec.ts_code, {}),
            halted.get(sec.ts_code, set()),
            columns,
            fen_rows,
            realized,
        )
    frame = _tushare_frame(columns, fen_rows)
    return DemoMarket(securities, frame, days, realized, suspensions)


def _generate_bars(
    rng: np.random.Generator,
    sec: DemoSecurity,
    days: list[date],
    trade_date_text: list[str],
    actions: dict[date, CorporateAction],
    halted: set[date],
    columns: dict[str, list[object]],
    fen_rows: dict[str, list[int]],
    realized: list[CorporateAction],
) -> None:
    n = len(days)
    fast_board = sec.board in (Board.STAR, Board.CHINEXT, Board.BSE)
    sigma = float(rng.uniform(0.022, 0.040) if fast_board else rng.uniform(0.012, 0.028))
    if sec.is_st:
        sigma = 0.025
    # Student-t(4) scaled to unit variance: fat tails, so limit-up and limit-down days happen.
    # (Python lists: element access in the loop below is several times cheaper than on numpy arrays.)
    returns = (sigma * rng.standard_t(4, n) / math.sqrt(2.0)).tolist()
    gaps = (sigma * 0.35 * rng.standard_normal(n)).tolist()
    upper_wicks = (np.abs(rng.standard_normal(n)) * sigma * 0.6).tolist()
    lower_wicks = (np.abs(rng.standard_normal(n)) * sigma * 0.6).tolist()
    turnover = rng.lognormal(0.0, 0.45, n).tolist()
    vwap_pos = rng.uniform(0.25, 0.75, n).tolist()
    start_price = float(np.exp(rng.uniform(math.log(4.0), math.log(120.0 if fast_board else 60.0))))
    base_shares = float(np.exp(rng.uniform(math.log(8e5), math.log(4e7))))
    round_lot = sec.board in (Board.MAIN, Board.CHINEXT)  # STAR/BSE trade in single shares above the minimum

    ts_codes, trade_dates, adj_factors = columns["ts_code"], columns["trade_date"], columns["adj_factor"]
    opens, highs, lows, closes = fen_rows["open"], fen_rows["high"], fen_rows["low"], fen_rows["close"]
    pre_closes, share_counts, yuans = fen_rows["pre_close"], fen_rows["shares"], fen_rows["yuan"]
    prev_close = max(100, round(start_price * 100))
    adj = Decimal(1).quantize(ADJ_FACTOR_PLACES)
    for i, day in enumerate(days):
        if day in halted:
            continue
        pre = prev_close
        action = actions.get(day)
        if action is not None:
            # A payout stays below 5% of the price, as real ones do (the walk can leave a stock cheap).
            cash = min(action.cash_fen_per_share, prev_close // 20)
            if cash or action.bonus_per_10:
                action = CorporateAction(action.ts_code, day, cash, action.bonus_per_10)
                realized.append(action)
                pre = ex_rights_reference_fen(prev_close, cash, action.bonus_per_10)
                # Backward factor: multiply by prev_close / reference, so adjusted prices join without a jump.
                adj = (adj * prev_close / pre).quantize(ADJ_FACTOR_PLACES, rounding=ROUND_HALF_UP)
        limits = _limits_fen(pre, price_limit_ratio(sec.board, day, is_st=sec.is_st))
        if limits is None:
            raise AssertionError(f"{sec.ts_code} is seasoned and must have limits on {day}")
        up, down = limits
        close = min(up, max(down, round(pre * (1.0 + returns[i]))))
        open_ = min(up, max(down, round(pre * (1.0 + gaps[i]))))
        top, bottom = max(open_, close), min(open_, close)
        high = min(up, max(top, round(top * (1.0 + upper_wicks[i]))))
        low = max(down, min(bottom, round(bottom * (1.0 - lower_wicks[i]))))
        shares = int(base_shares * turnover[i] * (1.0 + 8.0 * abs(close - pre) / pre))
        shares = max(100, shares - shares % 100) if round_lot else max(200, shares)
        vwap = low + int((high - low) * vwap_pos[i])
        yuan = (shares * vwap + 50) // 100  # Tushare's amount has 1-CNY resolution: half-up from fen

        ts_codes.append(sec.ts_code)
        trade_dates.append(trade_date_text[i])
        adj_factors.append(float(adj))
        opens.append(open_)
        highs.append(high)
        lows.append(low)
        closes.append(close)
        pre_closes.append(pre)
        share_counts.append(shares)
        yuans.append(yuan)
        prev_close = close


def _tushare_frame(columns: dict[str, list[object]], fen_rows: dict[str, list[int]]) -> pd.DataFrame:
    """Integer fen/shares/yuan to Tushare's float columns. Integer / power-of-ten is correctly rounded in IEEE
    arithmetic, so each float is the one nearest the exact decimal and prints back as exactly that decimal."""
    fen = {k: np.asarray(v, dtype=np.int64) for k, v in fen_rows.items()}
    change_fen = fen["close"] - fen["pre_close"]
    data: dict[str, object] = {
        "ts_code": columns["ts_code"],
        "trade_date": columns["trade_date"],
        "open": fen["open"] / 100,
        "high": fen["high"] / 100,
        "low": fen["low"] / 100,
        "close": fen["close"] / 100,
        "pre_close": fen["pre_close"] / 100,
        "change": change_fen / 100,
        "pct_chg": np.round(change_fen / fen["pre_close"] * 100, 4),  # informational, as Tushare: not stored
        "vol": fen["shares"] / 100,
        "amount": fen["yuan"] / 1000,
        "adj_factor": np.asarray(columns["adj_factor"], dtype=np.float64),
    }
    return pd.DataFrame(data)
