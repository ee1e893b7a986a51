"""Bars in, panel out: validates a DataFrame in Tushare's daily layout, reports what it had to handle (row order,
suspension gaps), pivots it once into days x symbols arrays (prices in integer fen), computes the daily price limits
and hashes the input canonically. Everything the day loop reads is here, so the loop never touches pandas."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.core.domain.codes import Board, InvalidTsCode, parse_ts_code
from shared.core.market.matching import NO_LIMIT_UP
from shared.core.market.rules import price_limit_ratio
from shared.research.engine.config import BacktestConfig

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

REQUIRED_COLUMNS = ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount")
OPTIONAL_COLUMNS = ("adj_factor", "up_limit", "down_limit", "is_st")
PRICE_COLUMNS = ("open", "high", "low", "close", "pre_close")
BOARDS = (Board.MAIN, Board.STAR, Board.CHINEXT, Board.BSE)
_EPOCH = date(1970, 1, 1)


class BarsError(ValueError):
    """The bars cannot be simulated as given; the message names the column, the rows and the reason."""


@dataclass
class Panel:
    """The run's market data as days x symbols arrays (row = trading day, column = symbol in `codes` order).

    Cells without a bar (suspended, not listed yet, delisted) repeat the symbol's last close in every price array
    (0 before its first bar), with vol and amount 0 and `has_bar` False."""

    dates: list[date]
    codes: tuple[str, ...]
    boards: list[Board]
    open: IntArray
    high: IntArray
    low: IntArray
    close: IntArray
    pre_close: IntArray
    vol: FloatArray  # shares
    amount: FloatArray  # CNY
    has_bar: BoolArray
    up_limit: IntArray  # fen; NO_LIMIT_UP when the day has no limit
    down_limit: IntArray  # fen; 0 when the day has no limit
    adj_factor: FloatArray | None  # forward-filled; None when the bars carry none
    input_sha256: str
    rows: int
    input_sorted: bool
    suspensions: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, FloatArray] = field(default_factory=dict)  # other numeric columns (NaN where no bar)
    ignored_columns: list[str] = field(default_factory=list)  # other non-numeric columns
    data_key: str = ""  # the config fields the panel was loaded with (see `panel_data_key`)

    @property
    def shape(self) -> tuple[int, int]:
        days, symbols = self.close.shape
        return days, symbols


def _rows_named(df: pd.DataFrame, mask: npt.NDArray[np.bool_], what: str) -> BarsError:
    bad = np.flatnonzero(mask)
    examples = ", ".join(f"{df['ts_code'].iat[i]} {df['trade_date'].iat[i]}" for i in bad[:3])
    return BarsError(f"bars: {len(bad)} row(s) {what} (first: {examples})")


def _day_numbers(column: pd.Series) -> IntArray:
    """trade_date as days since 1970-01-01; accepts 'YYYYMMDD' strings, dates and datetimes. Parses each distinct
    value once (a few thousand days against millions of rows)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    distinct = pd.Series(uniques)
    if pd.api.types.is_datetime64_any_dtype(distinct.dtype):
        parsed = distinct
    elif len(distinct) and isinstance(distinct.iat[0], date):
        parsed = pd.to_datetime(distinct, errors="coerce")
    else:
        parsed = pd.to_datetime(distinct.astype(str), format="%Y%m%d", errors="coerce")
    values = parsed.to_numpy(dtype="datetime64[ns]")
    bad_distinct = np.isnat(values)
    if (codes < 0).any() or bad_distinct.any():
        bad = np.flatnonzero((codes < 0) | bad_distinct[np.maximum(codes, 0)])
        raise BarsError(
            f"bars: trade_date must be 'YYYYMMDD' or a date; {len(bad)} row(s) are not "
            f"(first: {column.iat[bad[0]]!r} at row {bad[0]})"
        )
    return values.astype("datetime64[D]").astype(np.int64)[codes]


def _to_date(day_number: int) -> date:
    return date.fromordinal(_EPOCH.toordinal() + int(day_number))


def _float_column(df: pd.DataFrame, name: str) -> FloatArray:
    try:
        return df[name].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise BarsError(f"bars: column {name!r} must be numeric ({exc})") from exc


def _to_fen(values: FloatArray) -> IntArray:
    # CNY prices carry two decimals; x * 100 is within float error of an integer, so rint is the exact fen.
    return np.rint(values * 100.0).astype(np.int64)


def _ffill_index(has_bar: BoolArray) -> IntArray:
    """For each cell, the row of the symbol's latest bar at or before it (0 when there is none yet)."""
    rows = np.where(has_bar, np.arange(has_bar.shape[0], dtype=np.int64)[:, None], 0)
    return np.maximum.accumulate(rows, axis=0)


def limit_prices_fen(pre_close_fen: IntArray, up_bp: IntArray, down_bp: IntArray) -> tuple[IntArray, IntArray]:
    """Limit prices as `shared.core.market.rules.limit_prices` computes them (pre_close x (1 +- ratio), half-up to the
    fen, the lower limit at least one tick), in integers: ratios in basis points, x rounded half-up is
    floor((2 * pre * (10000 +- bp) + 10000) / 20000)."""
    up = (2 * pre_close_fen * (10_000 + up_bp) + 10_000) // 20_000
    down = np.maximum((2 * pre_close_fen * (10_000 - down_bp) + 10_000) // 20_000, 1)
    return up, down


def _ratio_bp(ratio: tuple[Decimal, Decimal] | None) -> tuple[int, int]:
    if ratio is None:
        return -1, -1
    return int(ratio[0] * 10_000), int(ratio[1] * 10_000)


def _computed_limits(
    dates: list[date],
    boards: list[Board],
    codes: tuple[str, ...],
    pre_close: IntArray,
    is_st: BoolArray | None,
    list_dates: dict[str, date],
) -> tuple[IntArray, IntArray]:
    days, n = pre_close.shape
    up = np.empty((days, n), dtype=np.int64)
    down = np.empty((days, n), dtype=np.int64)

    def ratios(board: Board, st: bool) -> tuple[IntArray, IntArray]:
        # one ratio per day from the rules module itself, so the engine cannot drift from it
        pairs = [_ratio_bp(price_limit_ratio(board, day, is_st=st)) for day in dates]
        return np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64)

    def fill(
        rows: npt.NDArray[np.int64] | slice, cols: npt.NDArray[np.int64], up_bp: IntArray, down_bp: IntArray
    ) -> None:
        pre = pre_close[rows, cols] if isinstance(rows, np.ndarray) else pre_close[rows][:, cols]
        u, d = limit_prices_fen(pre, np.maximum(up_bp, 0), np.maximum(down_bp, 0))
        none = np.broadcast_to(up_bp < 0, u.shape)
        u = np.where(none, NO_LIMIT_UP, u)
        d = np.where(none, 0, d)
        if isinstance(rows, np.ndarray):
            up[rows, cols], down[rows, cols] = u, d
        else:
            up[rows, cols], down[rows, cols] = u, d

    board_of = np.array([BOARDS.index(b) for b in boards], dtype=np.int64)
    step = 256  # rows at a time: the integer rounding's temporaries stay small
    for b in np.unique(board_of).tolist():
        cols = np.flatnonzero(board_of == b)
        up_bp, down_bp = ratios(BOARDS[b], False)
        for r0 in range(0, days, step):
            rows = slice(r0, min(r0 + step, days))
            fill(rows, cols, up_bp[rows, None], down_bp[rows, None])
    if is_st is not None and is_st.any():
        for b in np.unique(board_of).tolist():
            mask = is_st & (board_of == b)[None, :]
            if mask.any():
                r, c = np.nonzero(mask)
                up_bp, down_bp = ratios(BOARDS[b], True)
                fill(r, c, up_bp[r], down_bp[r])
    # the first days after listing follow their own rules (no limit on most boards since the 2019-2023 reforms)
    ordinals = np.array([d.toordinal() for d in dates])
    for j, code in enumerate(codes):
        listed = list_dates.get(code)
        if listed is None:
            continue
        first = int(np.searchsorted(ordinals, listed.toordinal()))
        if first >= days or (first == 0 and listed < dates[0]):
            continue  # listed before the run: seasoned by the time it is traded here
        for k in range(min(5, days - first)):
            t = first + k
            st = bool(is_st[t, j]) if is_st is not None else False
            u_bp, d_bp = _ratio_bp(price_limit_ratio(boards[j], dates[t], is_st=st, listing_day=k + 1))
            fill(np.array([t]), np.array([j]), np.array([u_bp]), np.array([d_bp]))
    return up, down


def read_bars(path: str | Path) -> pd.DataFrame:
    """Bars from a CSV or Parquet file in Tushare's daily layout (for the CLI and notebooks). trade_date and ts_code
    are read as text, so '20240102' is not taken for a number."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"ts_code": str, "trade_date": str})
    raise BarsError(f"{path}: bars must be a .csv or .parquet file")


PANEL_CONFIG_FIELDS = ("start", "end", "calendar", "st_codes", "list_dates")


def panel_data_key(config: BacktestConfig) -> str:
    """The config fields that shape a panel: a panel loaded once may serve every run whose key is equal (e.g. the
    points of a parameter search, which differ only in the strategy's parameters)."""
    return repr(
        (
            config.start,
            config.end,
            config.calendar,
            tuple(sorted(config.st_codes)),
            tuple(sorted(config.list_dates.items())),
        )
    )


def load_bars(bars: pd.DataFrame, config: BacktestConfig) -> Panel:
    """Validate and pivot `bars` (Tushare daily layout: vol in lots of 100 shares, amount in thousand CNY).

    Refused with a BarsError naming the problem: a missing column, an unparseable trade_date, a duplicate
    (ts_code, trade_date), a missing or non-positive price, negative or missing vol/amount, a high below the open or
    close (or a low above), a non-positive adj_factor, a bar on a day that is not in `config.calendar`, a code that is
    not an A-share stock. Handled and reported: rows in any order (they are placed by (ts_code, trade_date); the
    result says whether they came sorted), and gaps (a symbol without a bar on a trading day between its first and
    last bar is suspended that day; the result lists those days)."""
    if not isinstance(bars, pd.DataFrame):
        raise BarsError(f"bars must be a pandas DataFrame, got {type(bars).__name__}")
    absent = [c for c in REQUIRED_COLUMNS if c not in bars.columns]
    if absent:
        raise BarsError(f"bars are missing column(s) {', '.join(absent)}; required: {', '.join(REQUIRED_COLUMNS)}")
    if len(bars) == 0:
        raise BarsError("bars: no rows")
    day_number = _day_numbers(bars["trade_date"])
    keep: npt.NDArray[np.bool_] | None = None
    if config.start is not None:
        keep = day_number >= (config.start - _EPOCH).days
    if config.end is not None:
        upto = day_number <= (config.end - _EPOCH).days
        keep = upto if keep is None else keep & upto
    if keep is not None and not keep.all():
        bars = bars.loc[keep].reset_index(drop=True)
        day_number = day_number[keep]
        if len(bars) == 0:
            raise BarsError(f"bars: no rows between {config.start} and {config.end}")

    prices = {name: _float_column(bars, name) for name in PRICE_COLUMNS}
    for name, values in prices.items():
        bad = ~(values > 0)  # NaN compares False, so this catches missing prices too
        if bad.any():
            raise _rows_named(bars, bad, f"have a missing or non-positive {name}")
    for name in ("vol", "amount"):
        values = _float_column(bars, name)
        bad = ~(values >= 0)
        if bad.any():
            raise _rows_named(bars, bad, f"have a missing or negative {name}")
    high, low, open_, close = prices["high"], prices["low"], prices["open"], prices["close"]
    bad = (high < open_) | (high < close) | (low > open_) | (low > close)
    if bad.any():
        raise _rows_named(bars, bad, "have a high below the open/close or a low above it")
    del high, low, open_, close, bad

    codes_idx, uniques = pd.factorize(bars["ts_code"], sort=True)
    codes = tuple(str(c) for c in uniques)
    boards: list[Board] = []
    for code in codes:
        try:
            boards.append(parse_ts_code(code).board)
        except InvalidTsCode as exc:
            raise BarsError(f"bars: ts_code {exc}") from exc
    bar_days = np.unique(day_number)
    if config.calendar is not None:
        calendar = np.array(sorted({(d - _EPOCH).days for d in config.calendar}), dtype=np.int64)
        outside = ~np.isin(bar_days, calendar)
        if outside.any():
            shown = ", ".join(str(_to_date(d)) for d in bar_days[outside][:5])
            raise BarsError(f"bars: {int(outside.sum())} bar date(s) are not trading days of the calendar: {shown}")
        lo = (config.start - _EPOCH).days if config.start else bar_days[0]
        hi = (config.end - _EPOCH).days if config.end else bar_days[-1]
        day_numbers = calendar[(calendar >= lo) & (calendar <= hi)]
    else:
        day_numbers = bar_days
    dates = [_to_date(d) for d in day_numbers]
    di = np.searchsorted(day_numbers, day_number).astype(np.int64)
    si = codes_idx.astype(np.int64)
    n_days, n = len(dates), len(codes)

    key = si * n_days + di  # canonical order: by ts_code, then date
    input_sorted = bool(np.all(key[1:] > key[:-1]))
    order: npt.NDArray[np.int64] | None = None
    if not input_sorted:
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        dup = np.flatnonzero(sorted_key[1:] == sorted_key[:-1])
    else:
        dup = np.empty(0, dtype=np.int64)
    if len(dup):
        assert order is not None
        rows = order[dup[:3] + 1]
        shown = ", ".join(f"{bars['ts_code'].iat[i]} {_to_date(day_number[i])}" for i in rows)
        raise BarsError(f"bars: {len(dup)} duplicate (ts_code, trade_date) row(s): {shown}")

    def grid(values: npt.NDArray[Any], fill: float | int, dtype: type) -> npt.NDArray[Any]:
        out: npt.NDArray[Any] = np.full((n_days, n), fill, dtype=dtype)
        out[di, si] = values
        return out

    has_bar = grid(np.ones(len(di), dtype=np.bool_), False, np.bool_)
    complete = bool(has_bar.all())
    fen: dict[str, IntArray] = {}
    for name in PRICE_COLUMNS:
        # CNY prices carry two decimals: x * 100 is within float error of an integer, so rint gives the exact fen
        scaled = prices.pop(name) * 100.0
        fen[name] = grid(np.rint(scaled, out=scaled), 0, np.int64)
        del scaled
    ff: IntArray | None = None
    columns = np.arange(n)[None, :]
    if not complete:
        ff = _ffill_index(has_bar)
        missing = ~has_bar
        last_close = fen["close"][ff, columns][missing]
        for name in PRICE_COLUMNS:
            fen[name][missing] = last_close
        del last_close, missing
    vol = grid(_float_column(bars, "vol") * 100.0, 0.0, np.float64)  # lots of 100 -> shares
    amount = grid(_float_column(bars, "amount") * 1000.0, 0.0, np.float64)  # thousand CNY -> CNY

    adj: FloatArray | None = None
    if "adj_factor" in bars.columns:
        af = _float_column(bars, "adj_factor")
        bad = ~(af > 0) | ~np.isfinite(af)
        if bad.any():
            raise _rows_named(bars, bad, "have a missing or non-positive adj_factor")
        adj = grid(af, 1.0, np.float64)
        if ff is not None:
            adj = adj[ff, columns]
        first_bar = has_bar.argmax(axis=0)
        before = np.arange(n_days)[:, None] < first_bar[None, :]
        adj = np.where(before, adj[first_bar, np.arange(n)][None, :], adj)

    is_st: BoolArray | None = None
    if "is_st" in bars.columns or config.st_codes:
        is_st = np.zeros((n_days, n), dtype=np.bool_)
        if "is_st" in bars.columns:
            is_st[di, si] = bars["is_st"].fillna(False).to_numpy(dtype=np.bool_)
        for code in config.st_codes:
            if code in codes:
                is_st[:, codes.index(code)] = True
    up, down = _computed_limits(dates, boards, codes, fen["pre_close"], is_st, dict(config.list_dates))
    for name, target in (("up_limit", up), ("down_limit", down)):
        if name in bars.columns:
            given = _float_column(bars, name)
            present = np.isfinite(given)
            if (given[present] <= 0).any():
                raise _rows_named(bars, present & ~(given > 0), f"have a non-positive {name}")
            target[di[present], si[present]] = _to_fen(given[present])

    # other numeric columns (e.g. Tushare daily_basic's pe_ttm, pb, turnover_rate merged in) ride along for
    # strategies to read with ctx.history(name); they are data, not prices: NaN where there is no bar or no value
    extra: dict[str, FloatArray] = {}
    ignored: list[str] = []
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    for name in sorted(str(c) for c in bars.columns if str(c) not in known):
        column = bars[name]
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            extra[name] = grid(column.to_numpy(dtype=np.float64, na_value=np.nan), np.nan, np.float64)
        else:
            ignored.append(name)

    # suspension gaps: no bar on a trading day between a symbol's first and last bar
    suspensions: dict[str, list[str]] = {}
    counts = has_bar.sum(axis=0)
    first = has_bar.argmax(axis=0)
    last = n_days - 1 - has_bar[::-1].argmax(axis=0)
    for j in np.flatnonzero(last - first + 1 > counts):
        span = ~has_bar[first[j] : last[j] + 1, j]
        suspensions[codes[j]] = [dates[first[j] + k].isoformat() for k in np.flatnonzero(span)]

    def kept(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return values if complete else values[has_bar]

    digest = hashlib.sha256()
    digest.update("\n".join(codes).encode())
    digest.update(day_numbers.tobytes())
    digest.update(has_bar.tobytes())  # with the panel's fixed order this is the canonical (ts_code, trade_date) set
    for name in PRICE_COLUMNS:
        digest.update(name.encode())
        digest.update(kept(fen[name]).data)
    for name, values in (("vol", vol), ("amount", amount)):
        digest.update(name.encode())
        digest.update(kept(values).data)
    if adj is not None:
        digest.update(b"adj_factor")
        digest.update(kept(adj).data)
    if is_st is not None:
        digest.update(b"is_st")
        digest.update(kept(is_st).data)
    for name, values in extra.items():
        digest.update(f"extra:{name}".encode())
        digest.update(kept(values).data)
    digest.update(b"limits")
    digest.update(kept(up).data)
    digest.update(kept(down).data)

    return Panel(
        data_key=panel_data_key(config),
        dates=dates,
        codes=codes,
        boards=boards,
        open=fen["open"],
        high=fen["high"],
        low=fen["low"],
        close=fen["close"],
        pre_close=fen["pre_close"],
        vol=vol,
        amount=amount,
        has_bar=has_bar,
        up_limit=up,
        down_limit=down,
        adj_factor=adj,
        input_sha256=digest.hexdigest(),
        rows=len(bars),
        input_sorted=input_sorted,
        suspensions=suspensions,
        extra=extra,
        ignored_columns=ignored,
    )
