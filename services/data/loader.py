"""From Tushare's layout and units to the store's: prices CNY -> fen, vol lots -> shares, amount thousand CNY -> fen.

Every conversion is exact: a float is taken as the decimal it prints as (`str(19.99)` is '19.99', the decimal it
was parsed from) and scaled with Decimal or integer arithmetic, so 19.99 becomes 1999 fen, never 1998 through
`int(19.99 * 100)`. Bulk frames take a vectorised path that is proven equal to the Decimal one (see exact_scaled).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

from services.data.demo import ADJ_FACTOR_PLACES, DemoMarket, DemoSecurity, generate_demo_market
from services.data.store import CALENDAR_EXCHANGE, DataStore, LoadCounts
from shared.market.calendar import FIRST_YEAR, LAST_YEAR, is_trading_day
from shared.settings import Settings

log = logging.getLogger(__name__)

_HUNDRED = Decimal(100)
_FEN_PER_THOUSAND_CNY = Decimal(100_000)
_ONE = Decimal(1)


class ConversionError(ValueError):
    pass


def _decimal(value: object, what: str) -> Decimal:
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool) or value is None:
        raise ConversionError(f"{what}: {value!r} is not a number")
    else:
        try:
            result = Decimal(str(value))
        except InvalidOperation as exc:
            raise ConversionError(f"{what}: {value!r} is not a number") from exc
    if not result.is_finite():
        raise ConversionError(f"{what}: {value!r} is not a finite number")
    return result


def price_to_fen(value: object, what: str = "price") -> int:
    """A price in CNY (on the 0.01 tick) to integer fen; a price off the tick is bad data and refused."""
    fen = _decimal(value, what) * _HUNDRED
    if fen != fen.to_integral_value():
        raise ConversionError(f"{what}: {value!r} is not on the 0.01 tick")
    return int(fen)


def lots_to_shares(value: object, what: str = "vol") -> int:
    """Tushare's vol (lots of 100 shares, 2 decimals for STAR/BSE odd shares) to whole shares."""
    shares = _decimal(value, what) * _HUNDRED
    if shares != shares.to_integral_value() or shares < 0:
        raise ConversionError(f"{what}: {value!r} lots is not a whole, non-negative number of shares")
    return int(shares)


def thousand_cny_to_fen(value: object, what: str = "amount") -> int:
    """Tushare's amount (thousand CNY, normally 3 decimals) to fen, rounded half-up if it carries more digits."""
    fen = (_decimal(value, what) * _FEN_PER_THOUSAND_CNY).quantize(_ONE, rounding=ROUND_HALF_UP)
    if fen < 0:
        raise ConversionError(f"{what}: {value!r} is negative")
    return int(fen)


def adj_factor_decimal(value: object, what: str = "adj_factor") -> Decimal:
    factor = _decimal(value, what).quantize(ADJ_FACTOR_PLACES, rounding=ROUND_HALF_UP)
    if factor <= 0:
        raise ConversionError(f"{what}: {value!r} must be positive")
    return factor


def tushare_date(text: str) -> date:
    """'YYYYMMDD' (Tushare) to a date."""
    try:
        if len(text) == 8 and text.isdigit():
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        pass
    raise ConversionError(f"trade_date {text!r} is not a date in YYYYMMDD")


def exact_scaled(values: np.ndarray, scale: int) -> tuple[list[int], list[bool]]:
    """`value * scale` as integers for the float values where that product is provably a whole number, with a
    mask saying where it is; other values (NaN, off-grid, non-floats) are left for the Decimal path.

    Why this is exact: if the correctly rounded IEEE quotient n / scale equals x, then x is the double nearest
    the decimal n / scale. Decimals of at most 15 significant digits map to distinct doubles, so that decimal is
    the one `str(x)` prints, and Decimal(str(x)) * scale == n. Products of 1e15 and more are not fast-pathed.
    """
    x = np.asarray(values)
    if x.dtype.kind not in "fi":
        return [0] * len(x), [False] * len(x)
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        n = np.rint(x * scale)
        ok = np.isfinite(n) & (np.abs(n) < 1e15) & (n / scale == x)
    return np.where(ok, n, 0).astype(np.int64).tolist(), ok.tolist()


def _column_ints(
    values: np.ndarray, scale: int, convert: Callable[[object, str], int], label: Callable[[int], str]
) -> list[int]:
    fast, ok = exact_scaled(values, scale)
    if all(ok):
        return fast
    items = values.tolist()
    return [fast[i] if ok[i] else convert(items[i], label(i)) for i in range(len(items))]


def _adj_factor_micro(value: object, what: str) -> int:
    return int(adj_factor_decimal(value, what).scaleb(6))


def daily_bar_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a Tushare `daily` frame with an `adj_factor` column (1 where missing), in storage units.

    Float columns take the vectorised `exact_scaled` path; whatever it cannot prove exact goes through the Decimal
    conversions above (which round amounts half-up and refuse off-tick prices and fractional shares).
    """
    n = len(frame)
    codes = frame["ts_code"].astype(str).tolist()
    texts = frame["trade_date"].astype(str).tolist()
    dates = {text: tushare_date(text) for text in set(texts)}

    def ints(column: str, scale: int, convert: Callable[[object, str], int]) -> list[int]:
        return _column_ints(frame[column].to_numpy(), scale, convert, lambda i: f"{codes[i]} {texts[i]} {column}")

    opens, highs, lows, closes, pre_closes = (
        ints(c, 100, price_to_fen) for c in ("open", "high", "low", "close", "pre_close")
    )
    vols = ints("vol", 100, lots_to_shares)
    amounts = ints("amount", 100_000, thousand_cny_to_fen)
    micro = ints("adj_factor", 1_000_000, _adj_factor_micro) if "adj_factor" in frame.columns else [10**6] * n
    for i in range(n):
        if min(opens[i], highs[i], lows[i], closes[i], pre_closes[i], vols[i], amounts[i]) < 0 or micro[i] <= 0:
            raise ConversionError(f"{codes[i]} {texts[i]}: negative price, vol or amount, or adj_factor <= 0")
    factors = {m: Decimal(m).scaleb(-6) for m in set(micro)}
    return [
        {
            "ts_code": codes[i],
            "trade_date": dates[texts[i]],
            "open": opens[i],
            "high": highs[i],
            "low": lows[i],
            "close": closes[i],
            "pre_close": pre_closes[i],
            "vol": vols[i],
            "amount": amounts[i],
            "adj_factor": factors[micro[i]],
        }
        for i in range(n)
    ]


def security_rows(items: Iterable[DemoSecurity]) -> list[dict[str, Any]]:
    return [
        {
            "ts_code": s.ts_code,
            "symbol": s.symbol,
            "name": s.name,
            "exchange": s.exchange.value,
            "board": s.board.value,
            "is_st": s.is_st,
            "list_date": s.list_date,
            "delist_date": s.delist_date,
        }
        for s in items
    ]


def calendar_rows(first: date, last: date) -> list[dict[str, Any]]:
    """Every calendar day in [first, last] with is_open from the built-in SSE calendar (Tushare trade_cal shape)."""
    rows = []
    day = first
    while day <= last:
        rows.append({"exchange": CALENDAR_EXCHANGE, "cal_date": day, "is_open": is_trading_day(day)})
        day += timedelta(days=1)
    return rows


def demo_calendar_span(trade_days: Sequence[date]) -> tuple[date, date]:
    """Whole years around the demo window, and the next year where the built-in calendar has it, so the day after
    the last bar (the next session of a quote) is in the stored calendar."""
    first_year = max(FIRST_YEAR, trade_days[0].year)
    last_year = min(LAST_YEAR, trade_days[-1].year + 1)
    return date(first_year, 1, 1), date(last_year, 12, 31)


async def load_market(store: DataStore, market: DemoMarket) -> LoadCounts:
    first, last = demo_calendar_span(market.trade_days)
    return await store.load(security_rows(market.securities), calendar_rows(first, last), daily_bar_rows(market.daily))


async def load_demo_market(store: DataStore, settings: Settings) -> LoadCounts:
    """Generate the demo market of `settings` and upsert it (safe to repeat: the same rows are written again)."""
    started = time.perf_counter()
    market = generate_demo_market(settings)
    generated = time.perf_counter()
    counts = await load_market(store, market)
    log.info(
        "demo market loaded",
        extra={
            "securities": counts.securities,
            "bars": counts.bars,
            "calendar_days": counts.calendar_days,
            "generate_s": round(generated - started, 3),
            "load_s": round(time.perf_counter() - generated, 3),
        },
    )
    return counts
