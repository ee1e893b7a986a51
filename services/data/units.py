"""From Tushare's layouts and units to the store's, exactly and in bulk (the conversions and why they are exact:
docs/data.md, "Writing")."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import numpy as np
import pandas as pd

ADJ_FACTOR_PLACES = Decimal("0.000001")  # Tushare publishes adj_factor with up to 6 decimals; stored DECIMAL(20,6)
MICRO = 1_000_000
# The largest magnitude held in an integer unit (fen, shares, millionths): below it the vectorised path is exact and
# int64 arithmetic (adjustment, sums) has room; nothing real comes near it (a price of 10^13 CNY). Beyond it a value
# is refused as out of range, not as "off the tick".
MAX_UNITS = 10**15

_HUNDRED = Decimal(100)
_FEN_PER_THOUSAND_CNY = Decimal(100_000)
_ONE = Decimal(1)
_TS_CODE = re.compile(r"^\d{6}\.(SH|SZ|BJ)$")


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


def _in_range(scaled: Decimal, value: object, what: str) -> Decimal:
    if abs(scaled) >= MAX_UNITS:
        raise ConversionError(f"{what}: {value} is out of range (at most {MAX_UNITS - 1:,} of the stored unit)")
    return scaled


def price_to_fen(value: object, what: str = "price") -> int:
    """A price in CNY (on the 0.01 tick) to integer fen; a price off the tick is bad data and refused."""
    fen = _in_range(_decimal(value, what) * _HUNDRED, value, what)
    if fen != fen.to_integral_value():
        raise ConversionError(f"{what}: {value!r} is not on the 0.01 tick")
    return int(fen)


def lots_to_shares(value: object, what: str = "vol") -> int:
    """Tushare's vol (lots of 100 shares, 2 decimals for STAR/BSE odd shares) to whole shares."""
    shares = _in_range(_decimal(value, what) * _HUNDRED, value, what)
    if shares != shares.to_integral_value() or shares < 0:
        raise ConversionError(f"{what}: {value!r} lots is not a whole, non-negative number of shares")
    return int(shares)


def thousand_cny_to_fen(value: object, what: str = "amount") -> int:
    """Tushare's amount (thousand CNY, normally 3 decimals) to fen, rounded half-up if it carries more digits."""
    fen = _in_range(_decimal(value, what) * _FEN_PER_THOUSAND_CNY, value, what).quantize(_ONE, rounding=ROUND_HALF_UP)
    if fen < 0:
        raise ConversionError(f"{what}: {value!r} is negative")
    return int(fen)


def scaled_half_up(scale: int) -> Callable[[object, str], int]:
    """`value * scale` rounded half-up to an integer (万股 -> shares, 万元 -> fen, index points -> 1/10000)."""
    factor = Decimal(scale)

    def convert(value: object, what: str) -> int:
        return int((_decimal(value, what) * factor).quantize(_ONE, rounding=ROUND_HALF_UP))

    return convert


def adj_factor_decimal(value: object, what: str = "adj_factor") -> Decimal:
    factor = _decimal(value, what).quantize(ADJ_FACTOR_PLACES, rounding=ROUND_HALF_UP)
    if factor <= 0:
        raise ConversionError(f"{what}: {value!r} must be positive")
    return factor


def adj_factor_micro(value: object, what: str) -> int:
    return int(adj_factor_decimal(value, what).scaleb(6))


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
    n, ok = _exact_scaled_array(values, scale)
    return n.tolist(), ok.tolist()


def on_grid(values: np.ndarray, scale: int) -> np.ndarray:
    """Where a float column times `scale` is a whole number, as the store's conversions demand (prices on the
    0.01 tick: scale 100; vol in whole shares: lots x 100). NaN and infinities are not on it."""
    return _exact_scaled_array(values, scale)[1]


def _exact_scaled_array(values: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(values)
    if x.dtype.kind not in "fiu":
        return np.zeros(len(x), dtype=np.int64), np.zeros(len(x), dtype=bool)
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        n = np.rint(x * scale)
        ok = np.isfinite(n) & (np.abs(n) < 1e15) & (n / scale == x)
    return np.where(ok, n, 0).astype(np.int64), ok


def scaled_column(
    frame: pd.DataFrame, column: str, scale: int, convert: Callable[[object, str], int], label: Callable[[int], str]
) -> np.ndarray:
    """A whole column times `scale` as int64, exactly: vectorised where provable, `convert` (which names `label(i)`
    in its error) for the rest. Missing values are refused by `convert`."""
    values = frame[column].to_numpy()
    fast, ok = _exact_scaled_array(values, scale)
    if ok.all():
        return fast
    out = fast.copy()
    for i in np.flatnonzero(~ok).tolist():
        out[i] = convert(values[i], label(i))
    return out


def nullable_scaled_column(frame: pd.DataFrame, column: str, scale: int, label: Callable[[int], str]) -> np.ndarray:
    """Like `scaled_column` for a column that may be empty (daily_basic's share counts of a new listing): an object
    array of ints and None, rounded half-up where the value carries more digits than the unit."""
    series = pd.to_numeric(frame[column], errors="coerce") if frame[column].dtype.kind not in "fiu" else frame[column]
    raw = frame[column].to_numpy()
    missing = series.isna().to_numpy() & pd.isna(frame[column]).to_numpy()
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    fast, ok = _exact_scaled_array(values, scale)
    out = fast.astype(object)
    out[missing] = None
    convert = scaled_half_up(scale)
    for i in np.flatnonzero(~ok & ~missing).tolist():
        out[i] = convert(raw[i], label(i))
    return out


def nullable_floats(frame: pd.DataFrame, column: str, label: Callable[[int], str]) -> np.ndarray:
    """A ratio column (pe, turnover_rate...) as an object array of floats and None (NaN and empty -> None)."""
    raw = frame[column]
    series = pd.to_numeric(raw, errors="coerce")
    bad = series.isna().to_numpy() & ~pd.isna(raw).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConversionError(f"{label(i)}: {raw.iloc[i]!r} is not a number")
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(values[~np.isnan(values)]).all():
        i = int(np.flatnonzero(np.isinf(values))[0])
        raise ConversionError(f"{label(i)}: {raw.iloc[i]!r} is not a finite number")
    out = values.astype(object)
    out[np.isnan(values)] = None
    return out


def date_column(frame: pd.DataFrame, column: str, *, nullable: bool = False) -> np.ndarray:
    """'YYYYMMDD' text (or dates) to an object array of `date` (None where empty, if `nullable`), converting each
    distinct value once: a whole market has thousands of rows per date."""
    codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
    converted: list[date | None] = []
    for value in uniques.tolist():
        if isinstance(value, date):
            converted.append(value)
        else:
            text = str(value).strip()
            try:
                converted.append(tushare_date(text) if text else None)
            except ConversionError:
                row = int(np.flatnonzero(frame[column].to_numpy() == value)[0])
                raise ConversionError(f"row {row}: {column} {text!r} is not a date in YYYYMMDD") from None
    table = np.empty(len(converted) + 1, dtype=object)
    table[:-1] = converted
    table[-1] = None  # codes of -1 (missing) index the last slot
    out = table[codes]
    if not nullable:
        empty = np.flatnonzero(pd.isna(out))
        if len(empty):
            raise ConversionError(f"row {int(empty[0])}: {column} is empty")
    return out


def ts_code_column(frame: pd.DataFrame, column: str = "ts_code") -> np.ndarray:
    """Codes as an object array of str, each distinct code normalised and checked once (NNNNNN.SH|SZ|BJ)."""
    codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
    if (codes < 0).any():
        raise ConversionError(f"row {int(np.flatnonzero(codes < 0)[0])}: {column} is empty")
    normalised = [str(value).strip().upper() for value in uniques.tolist()]
    for value in normalised:
        if not _TS_CODE.match(value):
            raise ConversionError(f"{column} {value!r} is not a code like 600000.SH")
    return np.asarray(normalised, dtype=object)[codes]


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConversionError(f"{what}: missing column(s) {', '.join(missing)}")


def _labeller(codes: np.ndarray, frame: pd.DataFrame, date_col: str) -> Callable[[str], Callable[[int], str]]:
    texts = frame[date_col].to_numpy()

    def for_column(column: str) -> Callable[[int], str]:
        return lambda i: f"{codes[i]} {texts[i]} {column}"

    return for_column


def daily_bar_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A Tushare `daily` frame (+ optional `adj_factor`, 1 where absent) as storage columns: ts_code (str),
    trade_date (date), prices/amount int64 fen, vol int64 shares, adj_factor int64 millionths."""
    require_columns(frame, ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount"),
                    "daily bars")  # fmt: skip
    codes = ts_code_column(frame)
    label = _labeller(codes, frame, "trade_date")
    out: dict[str, np.ndarray] = {"ts_code": codes, "trade_date": date_column(frame, "trade_date")}
    for column in ("open", "high", "low", "close", "pre_close"):
        out[column] = scaled_column(frame, column, 100, price_to_fen, label(column))
    out["vol"] = scaled_column(frame, "vol", 100, lots_to_shares, label("vol"))
    out["amount"] = scaled_column(frame, "amount", 100_000, thousand_cny_to_fen, label("amount"))
    if "adj_factor" in frame.columns:
        out["adj_factor"] = scaled_column(frame, "adj_factor", MICRO, adj_factor_micro, label("adj_factor"))
    else:
        out["adj_factor"] = np.full(len(frame), MICRO, dtype=np.int64)
    for column in ("open", "high", "low", "close", "pre_close", "vol", "amount"):
        negative = out[column] < 0
        if negative.any():
            i = int(np.flatnonzero(negative)[0])
            raise ConversionError(f"{label(column)(i)}: negative")
    bad_factor = out["adj_factor"] <= 0
    if bad_factor.any():
        raise ConversionError(f"{label('adj_factor')(int(np.flatnonzero(bad_factor)[0]))}: must be positive")
    return out


def adj_factor_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    require_columns(frame, ("ts_code", "trade_date", "adj_factor"), "adj factors")
    codes = ts_code_column(frame)
    label = _labeller(codes, frame, "trade_date")
    micro = scaled_column(frame, "adj_factor", MICRO, adj_factor_micro, label("adj_factor"))
    if (micro <= 0).any():
        raise ConversionError(f"{label('adj_factor')(int(np.flatnonzero(micro <= 0)[0]))}: must be positive")
    return {"ts_code": codes, "trade_date": date_column(frame, "trade_date"), "adj_factor": micro}


DAILY_BASIC_RATIOS = (
    "turnover_rate", "turnover_rate_f", "volume_ratio", "pe", "pe_ttm", "pb", "ps", "ps_ttm", "dv_ratio", "dv_ttm",
)  # fmt: skip
DAILY_BASIC_SHARES = ("total_share", "float_share", "free_share")  # Tushare 万股 -> shares
DAILY_BASIC_VALUES = ("total_mv", "circ_mv")  # Tushare 万元 -> fen


def daily_basic_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    require_columns(frame, ("ts_code", "trade_date", *DAILY_BASIC_RATIOS, *DAILY_BASIC_SHARES, *DAILY_BASIC_VALUES),
                    "daily_basic")  # fmt: skip
    codes = ts_code_column(frame)
    label = _labeller(codes, frame, "trade_date")
    out: dict[str, np.ndarray] = {"ts_code": codes, "trade_date": date_column(frame, "trade_date")}
    for column in DAILY_BASIC_RATIOS:
        out[column] = nullable_floats(frame, column, label(column))
    for column in DAILY_BASIC_SHARES:
        out[column] = nullable_scaled_column(frame, column, 10_000, label(column))
    for column in DAILY_BASIC_VALUES:
        out[column] = nullable_scaled_column(frame, column, 1_000_000, label(column))
    return out


def stk_limit_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Tushare `stk_limit` in fen. `pre_close` (the day's reference price) is kept where the frame has the column
    (None where a row has no value); a frame without it leaves the stored pre_close as it is."""
    require_columns(frame, ("ts_code", "trade_date", "up_limit", "down_limit"), "stk_limit")
    codes = ts_code_column(frame)
    label = _labeller(codes, frame, "trade_date")
    out = {
        "ts_code": codes,
        "trade_date": date_column(frame, "trade_date"),
        "up_limit": scaled_column(frame, "up_limit", 100, price_to_fen, label("up_limit")),
        "down_limit": scaled_column(frame, "down_limit", 100, price_to_fen, label("down_limit")),
    }
    if "pre_close" in frame.columns:
        out["pre_close"] = nullable_price_column(frame, "pre_close", label("pre_close"))
    return out


def nullable_price_column(frame: pd.DataFrame, column: str, label: Callable[[int], str]) -> np.ndarray:
    """A price column that may be empty, in fen: an object array of ints and None. A price off the 0.01 tick or not
    positive is refused (never rounded: a reference price the limits are around is exact or it is wrong)."""
    raw = frame[column].to_numpy()
    missing = pd.isna(frame[column]).to_numpy()
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    fast, ok = _exact_scaled_array(values, 100)
    out = fast.astype(object)
    out[missing] = None
    for i in np.flatnonzero(~ok & ~missing).tolist():
        out[i] = price_to_fen(raw[i], label(i))  # off the tick or not a number: refused with the row named
    for i in np.flatnonzero(~missing).tolist():
        if out[i] <= 0:
            raise ConversionError(f"{label(i)}: {raw[i]!r} is not a positive price")
    return out


def _text_column(frame: pd.DataFrame, column: str, *, nullable: bool = True) -> np.ndarray:
    values = frame[column].to_numpy(dtype=object)
    out = np.empty(len(values), dtype=object)
    missing = pd.isna(frame[column]).to_numpy()
    out[:] = [None if m else str(v) for v, m in zip(values.tolist(), missing.tolist(), strict=True)]
    if not nullable and missing.any():
        raise ConversionError(f"row {int(np.flatnonzero(missing)[0])}: {column} is empty")
    return out


def suspension_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    require_columns(frame, ("ts_code", "trade_date", "suspend_type"), "suspend_d")
    kinds = _text_column(frame, "suspend_type", nullable=False)
    for i, kind in enumerate(kinds.tolist()):
        if kind not in ("S", "R"):
            raise ConversionError(f"row {i}: suspend_type {kind!r} is not S or R")
    timing = _text_column(frame, "suspend_timing") if "suspend_timing" in frame.columns else np.full(
        len(frame), None, dtype=object)  # fmt: skip
    return {
        "ts_code": ts_code_column(frame),
        "trade_date": date_column(frame, "trade_date"),
        "suspend_type": kinds,
        "suspend_timing": timing,
    }


def is_st_name(name: str) -> bool:
    """ST, *ST, SST, S*ST names: special treatment (5% limits on the main board before 2020's reforms and after)."""
    return "ST" in name.upper()


def st_period_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The ST rows of a Tushare `namechange` frame (a name under special treatment, from start_date to end_date)."""
    require_columns(frame, ("ts_code", "name", "start_date", "end_date"), "namechange")
    names = frame["name"].astype(str)
    st = frame[names.map(is_st_name).to_numpy(dtype=bool)].reset_index(drop=True)
    return {
        "ts_code": ts_code_column(st),
        "start_date": date_column(st, "start_date"),
        "end_date": date_column(st, "end_date", nullable=True),
        "name": _text_column(st, "name", nullable=False),
        "change_reason": _text_column(st, "change_reason")
        if "change_reason" in st.columns
        else np.full(len(st), None, dtype=object),
    }


def index_bar_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Tushare `index_daily`: points kept as floats (not money: Tushare's 4-decimal values round-trip a DOUBLE
    exactly), vol lots -> shares (rounded half-up: index volumes carry fractional lots), amount thousand CNY -> fen."""
    require_columns(frame, ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount"),
                    "index_daily")  # fmt: skip
    codes = ts_code_column(frame)
    label = _labeller(codes, frame, "trade_date")
    out: dict[str, np.ndarray] = {"ts_code": codes, "trade_date": date_column(frame, "trade_date")}
    for column in ("open", "high", "low", "close", "pre_close"):
        out[column] = nullable_floats(frame, column, label(column))
    out["vol"] = scaled_column(frame, "vol", 100, scaled_half_up(100), label("vol"))
    out["amount"] = scaled_column(frame, "amount", 100_000, thousand_cny_to_fen, label("amount"))
    return out


def index_weight_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Tushare `index_weight`: the weight stays in percent as Tushare gives it (a float, not money)."""
    require_columns(frame, ("index_code", "con_code", "trade_date", "weight"), "index_weight")
    index_codes = ts_code_column(frame, "index_code")
    con_codes = ts_code_column(frame, "con_code")
    texts = frame["trade_date"].to_numpy()
    weights = nullable_floats(frame, "weight", lambda i: f"{index_codes[i]} {con_codes[i]} {texts[i]} weight")
    if any(w is None for w in weights.tolist()):
        raise ConversionError("index_weight: a weight is empty")
    return {
        "index_code": index_codes,
        "con_code": con_codes,
        "trade_date": date_column(frame, "trade_date"),
        "weight": weights,
    }


def security_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Tushare `stock_basic` -> securities: exchange and board from the code, is_st from the current name."""
    from shared.core.domain.codes import InvalidTsCode, parse_ts_code

    require_columns(frame, ("ts_code", "name", "list_date"), "stock_basic")
    codes = ts_code_column(frame)
    exchanges, boards = [], []
    for code in codes.tolist():
        try:
            parsed = parse_ts_code(code)
        except InvalidTsCode as exc:
            raise ConversionError(f"{code}: {exc}") from exc
        exchanges.append(parsed.exchange.value)
        boards.append(parsed.board.value)
    names = _text_column(frame, "name", nullable=False)
    n = len(frame)

    def optional(column: str) -> np.ndarray:
        return _text_column(frame, column) if column in frame.columns else np.full(n, None, dtype=object)

    symbols = optional("symbol")
    symbols = np.asarray([s if s else c[:6] for s, c in zip(symbols.tolist(), codes.tolist(), strict=True)], object)
    statuses = optional("list_status")
    statuses = np.asarray([s or "L" for s in statuses.tolist()], dtype=object)
    return {
        "ts_code": codes,
        "symbol": symbols,
        "name": names,
        "exchange": np.asarray(exchanges, dtype=object),
        "board": np.asarray(boards, dtype=object),
        "is_st": np.asarray([is_st_name(x) for x in names.tolist()], dtype=object),
        "list_date": date_column(frame, "list_date"),
        "delist_date": date_column(frame, "delist_date", nullable=True)
        if "delist_date" in frame.columns
        else np.full(n, None, dtype=object),
        "industry": optional("industry"),
        "area": optional("area"),
        "market": optional("market"),
        "list_status": statuses,
    }


def trade_calendar_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    require_columns(frame, ("cal_date", "is_open"), "trade_cal")
    n = len(frame)
    exchange = _text_column(frame, "exchange", nullable=False) if "exchange" in frame.columns else np.full(
        n, "SSE", dtype=object)  # fmt: skip
    opens = pd.to_numeric(frame["is_open"], errors="coerce")
    if opens.isna().any() or not opens.isin([0, 1]).all():
        i = int(np.flatnonzero(~opens.isin([0, 1]).to_numpy())[0])
        raise ConversionError(f"row {i}: is_open {frame['is_open'].iloc[i]!r} is not 0 or 1")
    return {
        "exchange": exchange,
        "cal_date": date_column(frame, "cal_date"),
        "is_open": np.asarray([bool(v) for v in opens.tolist()], dtype=object),
    }
