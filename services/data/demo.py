"""A deterministic demo A-share market (fictional companies, real exchange rules) for offline use: the data service
loads it at start-up when its store is empty, so backtests and the UI have something true-to-life to work on.

The daily frame uses Tushare's `daily` layout and units (prices in CNY, `vol` in lots of 100 shares, `amount` in
thousand CNY), plus Tushare's backward `adj_factor`, so the loader that stores it is the one real data goes through.
Underneath, every price is generated in integer fen and every limit comes from `shared.core.market`, so the frame holds
exactly what an exchange could have printed: closes, highs and lows within the day's limits, on the 0.01 tick.
`daily_basic` adds Tushare's daily_basic fields for every bar (valuations, turnover, share capital) from fundamentals
drawn per company, for strategies that rank on them (the factor example).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd

from shared.core.domain.codes import Board, Exchange, parse_ts_code
from shared.core.market import is_trading_day, limit_prices, price_limit_ratio, sse_trading_days
from shared.core.market.calendar import FIRST_YEAR, LAST_YEAR
from shared.platform.settings import Settings

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
    industry: str | None = None  # the industry word of the fictional name (e.g. 化工), as a filterable field


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
    daily_basic: pd.DataFrame  # Tushare daily_basic layout and units, one row per bar, in `daily`'s order

    def bars_with_daily_basic(self) -> pd.DataFrame:
        """The daily bars with the daily_basic fields merged in as extra numeric columns under Tushare's names, as the
        backtest engine takes them (docs/engine.md): what the factor example reads (pe_ttm, pb, turnover_rate)."""
        extra = self.daily_basic.drop(columns=["ts_code", "trade_date", "close"])
        return pd.concat([self.daily, extra.set_index(self.daily.index)], axis=1)


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
                    industry=industry,
                )
            )
    # One main-board stock under special treatment: ST names carry the prefix, and its limits are 5%.
    main = [i for i, s in enumerate(securities) if s.board is Board.MAIN]
    st = main[int(rng.integers(0, len(main)))]
    s = securities[st]
    securities[st] = DemoSecurity(
        s.ts_code, s.symbol, "ST" + s.name, s.exchange, s.board, True, s.list_date, industry=s.industry
    )
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
    basic = _daily_basic(np.random.default_rng([settings.demo_seed, 1]), frame, fen_rows, realized)
    return DemoMarket(securities, frame, days, realized, suspensions, basic)


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


DAILY_BASIC_COLUMNS = (
    "ts_code", "trade_date", "close", "turnover_rate", "turnover_rate_f", "volume_ratio", "pe", "pe_ttm", "pb", "ps",
    "ps_ttm", "dv_ratio", "dv_ttm", "total_share", "float_share", "free_share", "total_mv", "circ_mv",
)  # fmt: skip
# Report days: the annual report and Q1 by 30 April, H1 by 31 August, Q3 by 31 October (CSRC disclosure deadlines);
# the TTM figures move on the first trading day from each, the annual ones (pe, ps, book value) on 30 April only.
_REPORT_DEADLINES = ((4, 30), (8, 31), (10, 31))
_LOSS_MAKERS = 0.2  # share of companies with negative TTM earnings: no pe / pe_ttm, as Tushare leaves them empty


def _day_number(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def _daily_basic(
    rng: np.random.Generator, daily: pd.DataFrame, fen_rows: dict[str, list[int]], actions: list[CorporateAction]
) -> pd.DataFrame:
    """Tushare daily_basic for every demo bar, from fundamentals drawn per company (its own random stream, so the
    bars do not depend on it): share capital sized so the median day turns over 0.5-2.5% of the float, scaled by
    bonus shares on their ex-date; TTM earnings and sales per share that move on report days (a fifth of the
    companies loss-making throughout), book value growing yearly. Valuations are on the back-adjusted close
    (close x adj_factor against back-adjusted per-share figures), so ex-dates do not move them; dividend yields are
    the trailing year's cash per share over the close. Units as Tushare: ratios plain or in percent, shares in 万股,
    values in 万元."""
    codes = daily["ts_code"].to_numpy()
    day_text = daily["trade_date"].to_numpy()
    stamps = pd.to_datetime(daily["trade_date"], format="%Y%m%d")
    days = stamps.to_numpy().astype("datetime64[D]").astype(np.int64)  # days since 1970-01-01
    years_of = stamps.dt.year.to_numpy()
    close_fen = np.asarray(fen_rows["close"], dtype=np.int64)
    shares = np.asarray(fen_rows["shares"], dtype=np.int64)
    hfq = close_fen / 100 * daily["adj_factor"].to_numpy()
    n = len(daily)
    out = {name: np.full(n, np.nan) for name in DAILY_BASIC_COLUMNS[3:]}
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], n]
    bonus: dict[str, list[tuple[int, float]]] = {}
    cash: dict[str, list[tuple[int, float]]] = {}
    for action in actions:
        ex_day = _day_number(action.ex_date)
        if action.bonus_per_10:
            bonus.setdefault(action.ts_code, []).append((ex_day, 1 + action.bonus_per_10 / 10))
        if action.cash_fen_per_share:
            cash.setdefault(action.ts_code, []).append((ex_day, action.cash_fen_per_share / 100))
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        code, when = str(codes[a]), days[a:b]
        # share capital (whole shares), the float and the free float, times the bonus shares gone ex so far
        scale = np.ones(b - a)
        for ex, ratio in bonus.get(code, []):
            scale[when >= ex] *= ratio
        float_shares = np.median(shares[a:b]) / rng.uniform(0.005, 0.025)
        total = np.floor(float_shares / rng.uniform(0.55, 1.0) * scale)
        floating = np.floor(float_shares * scale)
        free = np.floor(floating * rng.uniform(0.45, 0.85))
        # report days: the first bar on or after each deadline
        report = np.zeros(b - a, dtype=np.int64)  # 1 TTM update, 2 TTM and annual update
        for year in sorted(set(years_of[a:b].tolist())):
            for month, day in _REPORT_DEADLINES:
                deadline = _day_number(date(year, month, day))
                hit = np.flatnonzero(when >= deadline)
                if len(hit) and (hit[0] > 0 or when[0] == deadline):
                    report[hit[0]] = 2 if month == 4 else 1
        ttm_step = np.where(report > 0, np.maximum(rng.normal(1.05, 0.15, b - a), 0.3), 1.0)
        sales_step = np.where(report > 0, np.maximum(rng.normal(1.06, 0.08, b - a), 0.5), 1.0)
        book_step = np.where(report == 2, rng.uniform(1.0, 1.12, b - a), 1.0)
        sign = -1.0 if rng.random() < _LOSS_MAKERS else 1.0
        eps_ttm = sign * hfq[a] / float(np.clip(rng.lognormal(np.log(25), 0.6), 6, 150)) * np.cumprod(ttm_step)
        sps_ttm = hfq[a] / float(np.clip(rng.lognormal(np.log(2.5), 0.7), 0.3, 30)) * np.cumprod(sales_step)
        bps = hfq[a] / float(np.clip(rng.lognormal(np.log(2.2), 0.5), 0.5, 15)) * np.cumprod(book_step)
        # annual figures: as of the last annual report (before the first one in the window: a year behind the TTM)
        annual = np.maximum.accumulate(np.where(report == 2, np.arange(b - a), 0))
        before_first = np.arange(b - a) < (np.flatnonzero(report == 2)[0] if (report == 2).any() else b - a)
        lag = rng.uniform(0.85, 1.0)
        eps = np.where(before_first, eps_ttm[0] * lag, eps_ttm[annual])
        sps = np.where(before_first, sps_ttm[0] * lag, sps_ttm[annual])
        price = hfq[a:b]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["pe_ttm"][a:b] = np.where(eps_ttm > 0, price / eps_ttm, np.nan)
            out["pe"][a:b] = np.where(eps > 0, price / eps, np.nan)
        out["pb"][a:b] = price / bps
        out["ps_ttm"][a:b] = price / sps_ttm
        out["ps"][a:b] = price / sps
        # dividend yield: cash per share gone ex in the trailing 365 days over today's close, in percent
        paid = np.zeros(b - a)
        for ex, per_share in cash.get(code, []):
            paid += np.where((when >= ex) & (when < ex + 365), per_share, 0.0)
        out["dv_ttm"][a:b] = np.where(paid > 0, paid / (close_fen[a:b] / 100) * 100, np.nan)
        out["dv_ratio"][a:b] = out["dv_ttm"][a:b]
        vol = shares[a:b].astype(np.float64)
        out["turnover_rate"][a:b] = vol / floating * 100
        out["turnover_rate_f"][a:b] = vol / free * 100
        previous5 = pd.Series(vol).rolling(5).mean().shift(1).to_numpy()
        out["volume_ratio"][a:b] = vol / previous5
        out["total_share"][a:b] = total / 10_000
        out["float_share"][a:b] = floating / 10_000
        out["free_share"][a:b] = free / 10_000
        out["total_mv"][a:b] = close_fen[a:b] * total / 1_000_000  # fen x shares -> 万元, exact to the fen
        out["circ_mv"][a:b] = close_fen[a:b] * floating / 1_000_000
    places = {"volume_ratio": 2, "total_share": 4, "float_share": 4, "free_share": 4, "total_mv": 6, "circ_mv": 6}
    frame = pd.DataFrame({"ts_code": codes, "trade_date": day_text, "close": daily["close"].to_numpy()})
    for name in DAILY_BASIC_COLUMNS[3:]:
        frame[name] = np.round(out[name], places.get(name, 4))
    return frame


# --- full-market scale, for benchmarks ---------------------------------------------------------------------------

# Daily limit in percent by board for the benchmark market (today's rules: main 10, ChiNext/STAR 20, BSE 30, ST 5).
_BULK_LIMIT_PCT = {Board.MAIN: 10, Board.CHINEXT: 20, Board.STAR: 20, Board.BSE: 30}


@dataclass(frozen=True)
class BulkMarket:
    securities: pd.DataFrame  # Tushare stock_basic layout
    daily: pd.DataFrame  # Tushare daily layout + adj_factor, sorted by ts_code then trade_date
    trade_days: list[date]


def weekday_calendar(start: date, n_days: int) -> list[date]:
    """`n_days` weekdays from `start`: a stand-in calendar for benchmark data beyond the built-in SSE calendar
    (2022-2025). Benchmarks measure volume, not holidays; never use it for anything a trader sees."""
    days: list[date] = []
    day = start
    while len(days) < n_days:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def _bulk_codes(rng: np.random.Generator, n: int) -> tuple[list[str], list[Board], list[Exchange]]:
    codes: list[str] = []
    boards: list[Board] = []
    exchanges: list[Exchange] = []
    for (exchange, board, prefixes, _), count in zip(_VENUE_WEIGHTS, _venue_counts(n), strict=True):
        pool = [p + str(k).zfill(6 - len(p)) for p in prefixes for k in range(1, 10 ** (6 - len(p)))]
        if count > len(pool):
            raise ValueError(f"{count} symbols do not fit the {board.value} prefixes")
        for i in sorted(rng.choice(len(pool), size=count, replace=False).tolist()):
            codes.append(f"{pool[i]}.{exchange.value}")
            boards.append(board)
            exchanges.append(exchange)
    return codes, boards, exchanges


def generate_bulk_market(
    n_symbols: int = 5_000, n_days: int = 2_500, *, seed: int = 20240101, start: date = date(2015, 1, 5)
) -> BulkMarket:
    """A synthetic market of `n_symbols` x `n_days` in Tushare's layout and units, vectorised across symbols (the
    small demo's per-bar loop would take minutes at this size). Same exchange arithmetic as the demo: prices in
    integer fen within each day's limits (half-up, on the tick), ex-dividend reference prices and a backward
    adj_factor, a few suspensions (no rows); the calendar is `weekday_calendar` (see there)."""
    if n_symbols < 5 or n_days < 2:
        raise ValueError("a bulk market needs at least 5 symbols and 2 days")
    rng = np.random.default_rng(seed)
    days = weekday_calendar(start, n_days)
    codes, boards, exchanges = _bulk_codes(rng, n_symbols)
    order = np.argsort(np.asarray(codes))
    codes = [codes[i] for i in order]
    boards = [boards[i] for i in order]
    exchanges = [exchanges[i] for i in order]
    s, d = n_symbols, n_days
    is_st = np.zeros(s, dtype=bool)
    main = np.flatnonzero(np.asarray([b is Board.MAIN for b in boards]))
    is_st[rng.choice(main, size=max(1, len(main) // 50), replace=False)] = True
    pct = np.asarray([_BULK_LIMIT_PCT[b] for b in boards], dtype=np.int64)
    pct = np.where(is_st, 5, pct)
    fast = np.asarray([b is not Board.MAIN for b in boards])
    sigma = np.where(fast, rng.uniform(0.022, 0.040, s), rng.uniform(0.012, 0.028, s))
    round_lot = np.asarray([b in (Board.MAIN, Board.CHINEXT) for b in boards])
    base_shares = np.exp(rng.uniform(np.log(8e5), np.log(4e7), s))

    # One halt on a tenth of the symbols: 1 to 60 days, anywhere.
    halted = np.zeros((d, s), dtype=bool)
    for i in rng.choice(s, size=max(1, s // 10), replace=False).tolist():
        length = int(rng.integers(1, min(61, d)))
        first = int(rng.integers(0, d - length + 1))
        halted[first : first + length, i] = True
    # About one cash dividend a year per symbol; a bonus issue (10送3) on a few of them.
    ex_day = rng.random((d, s)) < 1 / 250
    ex_day[0] = False
    cash_draw = rng.integers(5, 61, (d, s))
    bonus = np.where(rng.random((d, s)) < 0.05, 3, 0)

    prev = np.maximum(100, np.rint(np.exp(rng.uniform(np.log(4.0), np.log(60.0), s)) * 100)).astype(np.int64)
    adj = np.full(s, MICRO_FACTOR, dtype=np.int64)
    out = {k: np.empty((d, s), dtype=np.int64) for k in ("open", "high", "low", "close", "pre", "shares", "yuan")}
    out_adj = np.empty((d, s), dtype=np.int64)
    for t in range(d):
        returns = sigma * rng.standard_t(4, s) / math.sqrt(2.0)
        gaps = sigma * 0.35 * rng.standard_normal(s)
        wick_up = np.abs(rng.standard_normal(s)) * sigma * 0.6
        wick_down = np.abs(rng.standard_normal(s)) * sigma * 0.6
        pre = prev.copy()
        ex = ex_day[t] & ~halted[t]
        if ex.any():
            cash = np.minimum(cash_draw[t], prev // 20)
            ex &= (cash > 0) | (bonus[t] > 0)
            # Reference price (prev - cash) / (1 + bonus/10), half-up to the fen; the factor grows by prev / ref.
            ref = ((prev - cash) * 10 * 2 + (10 + bonus[t])) // (2 * (10 + bonus[t]))
            ref = np.maximum(ref, 1)
            pre = np.where(ex, ref, prev)
            adj = np.where(ex, (adj * prev * 2 + pre) // (2 * pre), adj)
        up = (pre * (100 + pct) + 50) // 100
        down = (pre * (100 - pct) + 50) // 100
        close = np.clip(np.rint(pre * (1.0 + returns)).astype(np.int64), down, up)
        open_ = np.clip(np.rint(pre * (1.0 + gaps)).astype(np.int64), down, up)
        top, bottom = np.maximum(open_, close), np.minimum(open_, close)
        high = np.minimum(up, np.maximum(top, np.rint(top * (1.0 + wick_up)).astype(np.int64)))
        low = np.maximum(down, np.minimum(bottom, np.rint(bottom * (1.0 - wick_down)).astype(np.int64)))
        low = np.maximum(low, 1)
        shares = (base_shares * rng.lognormal(0.0, 0.45, s) * (1.0 + 8.0 * np.abs(close - pre) / pre)).astype(np.int64)
        shares = np.where(round_lot, np.maximum(100, shares - shares % 100), np.maximum(200, shares))
        vwap = low + ((high - low) * rng.uniform(0.25, 0.75, s)).astype(np.int64)
        out["open"][t], out["high"][t], out["low"][t], out["close"][t], out["pre"][t] = open_, high, low, close, pre
        out["shares"][t], out["yuan"][t] = shares, (shares * vwap + 50) // 100
        out_adj[t] = adj
        prev = np.where(halted[t], prev, close)

    keep = ~halted.T.ravel()  # symbol-major: rows sorted by ts_code, then trade_date

    def flat(a: np.ndarray) -> np.ndarray:
        return a.T.ravel()[keep]

    fen = {k: flat(v) for k, v in out.items()}
    change = fen["close"] - fen["pre"]
    code_index = np.repeat(np.arange(s), d)[keep]
    date_index = np.tile(np.arange(d), s)[keep]
    day_text = np.asarray([x.strftime("%Y%m%d") for x in days], dtype=object)
    daily = pd.DataFrame(
        {
            "ts_code": pd.Categorical.from_codes(code_index, categories=codes),
            "trade_date": pd.Categorical.from_codes(date_index, categories=day_text.tolist()),
            "open": fen["open"] / 100,
            "high": fen["high"] / 100,
            "low": fen["low"] / 100,
            "close": fen["close"] / 100,
            "pre_close": fen["pre"] / 100,
            "change": change / 100,
            "pct_chg": np.round(change / fen["pre"] * 100, 4),
            "vol": fen["shares"] / 100,
            "amount": fen["yuan"] / 1000,
            "adj_factor": flat(out_adj) / MICRO_FACTOR,
        }
    )
    names = [f"基准{i:04d}" if not is_st[i] else f"ST基准{i:04d}" for i in range(s)]
    securities = pd.DataFrame(
        {
            "ts_code": codes,
            "symbol": [c[:6] for c in codes],
            "name": names,
            "area": None,
            "industry": [_INDUSTRY[b][i % len(_INDUSTRY[b])] for i, b in enumerate(boards)],
            "market": None,
            "exchange": [{"SH": "SSE", "SZ": "SZSE", "BJ": "BSE"}[e.value] for e in exchanges],
            "list_status": "L",
            "list_date": "20100104",
            "delist_date": None,
        }
    )
    return BulkMarket(securities, daily, days)


MICRO_FACTOR = 1_000_000
