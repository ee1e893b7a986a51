"""Import from CSV and Parquet files in Tushare's layouts: daily bars (`daily`: prices in CNY, vol in lots, amount in
thousand CNY, optionally with Tushare's `adj_factor`), the trade calendar (`trade_cal`) and the stock list
(`stock_basic`), rows in any order.

A file is validated whole before anything is returned, so a bad file is never half-imported. Every problem names
the file, where it is (CSV: the line, the header being line 1; Parquet: the 1-based row) and the reason. The checks
are vectorised (dates and codes are checked once per distinct value), so a million-row file takes about a second.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from services.data.providers.errors import ProviderDataError
from services.data.providers.port import API_SCHEMAS
from services.data.units import MAX_UNITS, on_grid

KEY_COLUMNS = ("ts_code", "trade_date")
PRICE_COLUMNS = ("open", "high", "low", "close", "pre_close")
# Required: what the store needs. change and pct_chg are Tushare's derived columns (close - pre_close and its
# percentage): checked when present, filled with NaN when a file leaves them out.
REQUIRED_COLUMNS = (*KEY_COLUMNS, *PRICE_COLUMNS, "vol", "amount")
DERIVED_COLUMNS = ("change", "pct_chg")
OPTIONAL_COLUMNS = ("adj_factor",)
DAILY_COLUMNS = tuple(API_SCHEMAS["daily"].fields)  # Tushare's `daily` layout
MAX_REPORTED = 20  # issues listed in the message; all of them are on the exception
MAX_PER_FILE = 5  # issues listed per file when several files are bad
ADJUSTED_HINT = (
    "prices with more than 2 decimals look qfq/hfq-adjusted: the store keeps unadjusted prices and adjusts on read, "
    "so import the unadjusted bars with Tushare's adj_factor instead (an adj_factor column and `import --adj-factor`, "
    "or a factor file and `import-adj-factors`; see docs/data-ingest.md, 'Adjusted prices')"
)
_NO_ADJ_FACTOR = "no adj_factor column (--adj-factor says every file has one)"

_TS_CODE = re.compile(r"^\d{6}\.(SH|SZ|BJ)$")
_YMD = re.compile(r"^\d{8}$")


@dataclass(frozen=True)
class FileIssue:
    """One problem: `line` is the CSV line (header = 1) or the Parquet row (first row = 1); 0 for the file itself."""

    line: int
    column: str | None
    reason: str


class FileImportError(ProviderDataError):
    """A file that cannot be imported, with every issue found (`issues`) and the first ones in the message; `hint`
    says what to do instead when the file looks like something else (adjusted prices)."""

    def __init__(self, path: Path, issues: Sequence[FileIssue], unit: str = "line", *, hint: str | None = None) -> None:
        self.path = path
        self.issues = list(issues)
        self.unit = unit
        self.hint = hint
        super().__init__(f"{self.summary()}" + (f" ({hint})" if hint else ""))

    def summary(self, shown: int = MAX_REPORTED) -> str:
        """The file and its first `shown` issues (without the hint)."""
        described = [self._describe(i) for i in self.issues[:shown]]
        more = len(self.issues) - len(described)
        return f"{self.path}: " + "; ".join(described) + (f"; and {more} more" if more > 0 else "")

    def _describe(self, issue: FileIssue) -> str:
        where = f"{self.unit} {issue.line}: " if issue.line else ""
        column = f"{issue.column}: " if issue.column else ""
        return f"{where}{column}{issue.reason}"


class FilesImportError(ProviderDataError):
    """Files that cannot be imported: `errors` has one `FileImportError` per bad file (every file was read and
    checked), so a user fixing 296 files learns of all of them at once; nothing of any file was imported."""

    def __init__(self, errors: Sequence[FileImportError], total: int) -> None:
        self.errors = list(errors)
        self.total = total
        shown = MAX_REPORTED if len(self.errors) == 1 else MAX_PER_FILE
        lines = [e.summary(shown) for e in self.errors]
        hints = list(dict.fromkeys(e.hint for e in self.errors if e.hint))
        head = f"{len(self.errors)} of {total} files cannot be imported, so none was"
        super().__init__("\n  ".join([head + ":", *lines, *hints]))


def read_files(
    paths: Sequence[str | Path],
    reader: Callable[[str | Path], pd.DataFrame],
    on_file: Callable[[Path], None] | None = None,
) -> list[pd.DataFrame]:
    """`reader` of every path, all of them checked before any is returned: one `FilesImportError` naming each bad
    file (with its lines, columns and reasons) when any is bad. `on_file` is told of each file read (progress)."""
    frames: list[pd.DataFrame] = []
    errors: list[FileImportError] = []
    for path in paths:
        try:
            frames.append(reader(path))
        except FileImportError as exc:
            errors.append(exc)
        if on_file is not None:
            on_file(Path(path))
    if errors:
        raise FilesImportError(errors, len(paths))
    return frames


def read_daily_files(
    paths: Sequence[str | Path],
    *,
    require_adj_factor: bool = False,
    on_file: Callable[[Path], None] | None = None,
) -> list[pd.DataFrame]:
    """`read_daily_file` of every path (see `read_files`). `require_adj_factor`: a file without an adj_factor column
    is bad too."""

    def reader(path: str | Path) -> pd.DataFrame:
        frame = read_daily_file(path)
        if require_adj_factor and "adj_factor" not in frame.columns:
            raise FileImportError(Path(path), [FileIssue(0, "adj_factor", _NO_ADJ_FACTOR)])
        return frame

    return read_files(paths, reader, on_file)


def read_daily_file(path: str | Path) -> pd.DataFrame:
    """The validated bars of a `.csv` or `.parquet` file, sorted by (trade_date, ts_code): ts_code and trade_date
    ('YYYYMMDD') as text, every other column float64; columns in Tushare's daily order, then adj_factor if given."""
    return _validate(*_read_any(path))


def _read_any(path: str | Path) -> tuple[Path, pd.DataFrame, int, str]:
    """The file's rows as read (CSV: all text), the line or row number of its first row, and which it is."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return file, _read_csv(file), 2, "line"
    if suffix in (".parquet", ".pq"):
        return file, _read_parquet(file), 1, "row"
    raise FileImportError(file, [FileIssue(0, None, f"unsupported file type {suffix!r} (use .csv or .parquet)")])


class _Issues:
    """The issues of one file as they are found: (row, column order, column, reason), sorted when raised."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.items: list[tuple[int, int, str | None, str]] = []

    def flag(self, mask: np.ndarray, column: str | None, reason: str, order: int) -> None:
        for row in np.flatnonzero(mask)[: MAX_REPORTED * 5].tolist():
            self.items.append((row, order, column, reason))
        total = int(mask.sum())
        if total > MAX_REPORTED * 5:  # keep the issue count honest without building millions of objects
            self.items.extend((self.n + 1, order, column, reason) for _ in range(total - MAX_REPORTED * 5))

    def file(self, column: str | None, reason: str) -> None:
        """An issue of the file as a whole (line 0)."""
        self.items.append((self.n + 1, 99, column, reason))

    def duplicates(self, keys: pd.DataFrame, ok: np.ndarray, first_line: int, unit: str, what: str) -> None:
        """Rows whose key (the frame's columns) repeats an earlier row's, naming where it was first."""
        dupes = keys.duplicated(keep="first").to_numpy() & ok
        if not dupes.any():
            return
        first_seen = keys[ok].drop_duplicates(keep="first")
        first_row = {tuple(k): i for i, k in zip(first_seen.index, first_seen.itertuples(index=False), strict=True)}
        for row in np.flatnonzero(dupes)[: MAX_REPORTED * 5].tolist():
            key = tuple(keys.iloc[row])
            shown = ", ".join(str(k) for k in key)
            self.items.append((row, -1, None, f"duplicate ({shown}), first at {unit} {first_row[key] + first_line}"))
        extra = int(dupes.sum()) - MAX_REPORTED * 5
        self.items.extend((self.n + 1, -1, None, f"duplicate {what}") for _ in range(max(0, extra)))

    def raise_any(self, file: Path, first_line: int, unit: str, hint: str | None = None) -> None:
        if self.items:
            self.items.sort(key=lambda i: (i[0], i[1]))
            found = [FileIssue(row + first_line if row < self.n else 0, column, reason)
                     for row, _, column, reason in self.items]  # fmt: skip
            raise FileImportError(file, found, unit, hint=hint)
        if self.n == 0:
            raise FileImportError(file, [FileIssue(0, None, "no rows after the header")], unit)


def _check_columns(file: Path, raw: pd.DataFrame, required: Sequence[str], unit: str) -> list[str]:
    """The header's column names (stripped); missing or repeated columns refuse the file."""
    columns = [str(c).strip() for c in raw.columns]
    raw.columns = pd.Index(columns)
    missing = [c for c in required if c not in columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if missing or duplicated:
        reasons = []
        if missing:
            reasons.append(f"missing columns {', '.join(missing)} (required: {', '.join(required)})")
        if duplicated:
            reasons.append(f"columns given twice: {', '.join(duplicated)}")
        header_line = 1 if unit == "line" else 0
        raise FileImportError(file, [FileIssue(header_line, None, r) for r in reasons], unit)
    return columns


def _read_csv(file: Path) -> pd.DataFrame:
    try:
        # Everything as text: "text in a number" must be seen, not coerced. Blank lines are kept (as empty rows)
        # so that row i is always line i + 2 of the file.
        return pd.read_csv(
            file,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
            quoting=csv.QUOTE_MINIMAL,
        )
    except FileNotFoundError:
        raise FileImportError(file, [FileIssue(0, None, "no such file")]) from None
    except UnicodeDecodeError as exc:
        issue = FileIssue(0, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        raise FileImportError(file, [issue]) from None
    except pd.errors.EmptyDataError:
        raise FileImportError(file, [FileIssue(1, None, "the file is empty (no header line)")]) from None
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match:
            expected, line, saw = (int(g) for g in match.groups())
            issue = FileIssue(line, None, f"{saw} fields where the header has {expected}")
        else:
            issue = FileIssue(0, None, f"not a readable CSV file ({exc})")
        raise FileImportError(file, [issue]) from None


def _read_parquet(file: Path) -> pd.DataFrame:
    try:
        table = pq.read_table(file)
    except FileNotFoundError:
        raise FileImportError(file, [FileIssue(0, None, "no such file")], "row") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileImportError(file, [FileIssue(0, None, f"not a readable Parquet file ({exc})")], "row") from None
    return table.to_pandas()


def _validate(file: Path, raw: pd.DataFrame, first_line: int, unit: str) -> pd.DataFrame:
    columns = _check_columns(file, raw, REQUIRED_COLUMNS, unit)
    n = len(raw)
    issues = _Issues(n)
    hint: str | None = None

    codes, dates, key_ok = _keys(raw, issues)
    numbers: dict[str, np.ndarray] = {}
    candidates = (*PRICE_COLUMNS, "vol", "amount", *DERIVED_COLUMNS, *OPTIONAL_COLUMNS)
    numeric_columns = [c for c in candidates if c in columns]
    for order, column in enumerate(numeric_columns, start=2):
        required = column in REQUIRED_COLUMNS or column == "adj_factor"
        numbers[column], off_grid = _number_column(raw[column], column, issues, order, required=required)
        if column in PRICE_COLUMNS and off_grid:
            hint = ADJUSTED_HINT
    if key_ok.any():
        keys = pd.DataFrame({"c": codes, "d": dates})
        issues.duplicates(keys, key_ok, first_line, unit, "(ts_code, trade_date)")
    issues.raise_any(file, first_line, unit, hint)

    data: dict[str, object] = {"ts_code": codes, "trade_date": dates}
    for column in DAILY_COLUMNS[2:]:
        data[column] = numbers[column] if column in numbers else np.full(n, np.nan)
    if "adj_factor" in numbers:
        data["adj_factor"] = numbers["adj_factor"]
    frame = pd.DataFrame(data)
    # Sort on the ranks of the distinct values ('YYYYMMDD' text sorts in date order) rather than on two text
    # columns: the same order, several times faster on a million rows.
    day_rank = pd.factorize(frame["trade_date"], sort=True)[0]
    code_rank = pd.factorize(frame["ts_code"], sort=True)[0]
    rows = np.lexsort((code_rank, day_rank))
    return frame.iloc[rows].reset_index(drop=True)


def _keys(raw: pd.DataFrame, issues: _Issues) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ts_code and trade_date checked (column orders 0 and 1): the codes, the 'YYYYMMDD' dates, where both are good."""
    codes, code_empty = _text(raw["ts_code"])
    issues.flag(code_empty, "ts_code", "empty required field", 0)
    code_values = pd.unique(codes[~code_empty])
    bad_codes = {c for c in code_values.tolist() if not _TS_CODE.match(c)}
    if bad_codes:
        issues.flag(
            np.isin(codes, list(bad_codes)) & ~code_empty,
            "ts_code",
            "bad ts_code format (expected 6 digits and .SH, .SZ or .BJ, e.g. 600000.SH)",
            0,
        )
    dates, date_empty, date_bad = _dates(raw["trade_date"])
    issues.flag(date_empty, "trade_date", "empty required field", 1)
    issues.flag(date_bad, "trade_date", "bad date (expected YYYYMMDD, a real calendar day)", 1)
    return codes, dates, ~(code_empty | date_empty | date_bad)


def _number_column(
    series: pd.Series, column: str, issues: _Issues, order: int, *, required: bool
) -> tuple[np.ndarray, bool]:
    """A numeric column as float64, every value the store would refuse (or round) flagged with its own reason: the
    sign, then the range the store holds, then the decimals its unit has. Also: were any off the unit's grid."""
    values, empty, not_number, not_finite = _numbers(series)
    if required:
        issues.flag(empty, column, "empty required field", order)
    issues.flag(not_number, column, "not a number", order)
    issues.flag(not_finite, column, "not a finite number", order)
    usable = ~(empty | not_number | not_finite)
    rule = _UNIT_RULES.get(column)
    if rule is None:
        return values, False
    scale, negative_reason, decimals_reason = rule
    negative = usable & (values < 0 if column != "adj_factor" else ~(values > 0))
    issues.flag(negative, column, negative_reason, order)
    with np.errstate(over="ignore", invalid="ignore"):
        too_big = usable & ~negative & (np.abs(values) * scale >= MAX_UNITS)
    issues.flag(too_big, column, f"out of range (the store holds at most {_limit(scale)}{_UNIT_NAMES[column]})", order)
    off_grid = usable & ~negative & ~too_big & ~on_grid(values, scale)
    issues.flag(off_grid, column, decimals_reason, order)
    return values, bool(off_grid.any())


# Per stored column: the scale from the file's unit to the store's integer one, the reason for a negative value and
# the reason for more decimals than that unit has (the store would otherwise have to round: it never does silently).
_UNIT_RULES: dict[str, tuple[int, str, str]] = {
    **{c: (100, "negative price", "price not on the 0.01 CNY tick (more than 2 decimals)") for c in PRICE_COLUMNS},
    "vol": (100, "negative volume", "not a whole number of shares (vol is in lots of 100: at most 2 decimals)"),
    "amount": (100_000, "negative amount", "more decimals than the unit allows (amount is in thousand CNY and "
               "stored to the fen: at most 5 decimals)"),
    "adj_factor": (1_000_000, "adj_factor must be above 0", "more decimals than the unit allows (adj_factor is "
                   "stored to 6 decimals)"),
}  # fmt: skip
_UNIT_NAMES = {**{c: " CNY" for c in PRICE_COLUMNS}, "vol": " lots", "amount": " thousand CNY", "adj_factor": ""}


def _limit(scale: int) -> str:
    """The largest value below MAX_UNITS at `scale`, spelled out (10^15 fen -> 9,999,999,999,999.99)."""
    places = len(str(scale)) - 1
    whole = f"{MAX_UNITS // scale - 1:,}" if places else f"{MAX_UNITS - 1:,}"
    return whole + ("." + "9" * places if places else "")


def _text(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Stripped text values and where they are empty."""
    present = series.notna().to_numpy()
    text = series.astype(str).str.strip().to_numpy(dtype=object)
    empty = ~present | (text == "")
    return text, empty


def _dates(series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """'YYYYMMDD' text from text, YYYYMMDD integers, or date/timestamp columns (Parquet); empty and bad masks."""
    present = series.notna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(series):
        text = series.dt.strftime("%Y%m%d").to_numpy(dtype=object)
        return text, ~present, np.zeros(len(series), dtype=bool)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        filled = series.fillna(0)
        whole = present & (filled % 1 == 0).to_numpy()
        text = np.where(whole, filled.astype("int64").astype(str).to_numpy(dtype=object), "").astype(object)
        bad = present & ~whole
    else:
        # Text (or datetime.date objects from a Parquet date32 column): convert each distinct value once.
        distinct = pd.unique(series[present])
        mapping = {value: _date_text(value) for value in distinct.tolist()}
        text = np.full(len(series), "", dtype=object)
        text[present] = series[present].map(mapping).to_numpy(dtype=object)
        bad = np.zeros(len(series), dtype=bool)
    empty = text == ""
    invalid = [d for d in pd.unique(text[~empty]).tolist() if not _valid_day(d)]
    if invalid:
        bad |= np.isin(text, invalid) & ~empty
    return text, empty, bad


def _date_text(value: object) -> str:
    if isinstance(value, (date, datetime)):
        return value.strftime("%Y%m%d")
    return str(value).strip()


def _valid_day(text: str) -> bool:
    if not _YMD.match(text):
        return False
    year, month, day = int(text[:4]), int(text[4:6]), int(text[6:])
    if not 1 <= month <= 12 or day < 1:
        return False
    days_in_month = (31, 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28, 31, 30, 31, 30, 31, 31,
                     30, 31, 30, 31)[month - 1]  # fmt: skip
    return day <= days_in_month


def _numbers(series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float64 values; masks of empty cells, text that is not a number, and inf/nan spelled out."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        empty = np.isnan(values)
        not_finite = np.isinf(values)
        return values, empty, np.zeros(len(values), dtype=bool), not_finite
    text, empty = _text(series)
    values = pd.to_numeric(pd.Series(np.where(empty, "", text)), errors="coerce").to_numpy(dtype="float64")
    unparsed = np.isnan(values) & ~empty
    not_finite = np.isinf(values)
    if unparsed.any():
        # "nan" parses as a float: a file spelling it out is refused like an infinity, not like text.
        rows = np.flatnonzero(unparsed)
        spelled_nan = np.array([str(t).strip().lower().lstrip("+-") == "nan" for t in text[rows]], dtype=bool)
        not_finite[rows[spelled_nan]] = True
        unparsed[rows[spelled_nan]] = False
    return values, empty, unparsed, not_finite


# -- adjustment factors: Tushare's adj_factor --------------------------------------------------------------------

ADJ_FACTOR_REQUIRED = ("ts_code", "trade_date", "adj_factor")


def read_adj_factor_file(path: str | Path) -> pd.DataFrame:
    """Adjustment factors in Tushare's `adj_factor` layout (ts_code, trade_date, adj_factor), validated whole like
    a bars file (a factor above 0, at most 6 decimals, no key twice), sorted by (trade_date, ts_code)."""
    file, raw, first_line, unit = _read_any(path)
    _check_columns(file, raw, ADJ_FACTOR_REQUIRED, unit)
    issues = _Issues(len(raw))
    codes, dates, key_ok = _keys(raw, issues)
    factors, _ = _number_column(raw["adj_factor"], "adj_factor", issues, 2, required=True)
    if key_ok.any():
        issues.duplicates(pd.DataFrame({"c": codes, "d": dates}), key_ok, first_line, unit, "(ts_code, trade_date)")
    issues.raise_any(file, first_line, unit)
    frame = pd.DataFrame({"ts_code": codes, "trade_date": dates, "adj_factor": factors})
    return frame.sort_values(["trade_date", "ts_code"], kind="stable").reset_index(drop=True)


def read_adj_factor_files(paths: Sequence[str | Path]) -> list[pd.DataFrame]:
    return read_files(paths, read_adj_factor_file)


# -- reference data: Tushare's trade_cal and stock_basic -------------------------------------------------------------

CALENDAR_REQUIRED = ("cal_date", "is_open")  # exchange: SSE when absent; pretrade_date: checked when present
CALENDAR_EXCHANGES = ("SSE", "SZSE", "BSE", "CFFEX", "SHFE", "CZCE", "DCE", "INE", "GFEX")  # Tushare's codes
SECURITY_REQUIRED = ("ts_code", "name", "list_date")
# The store's text widths (services/data/store/tables.py, `securities`): longer text is refused, never cut.
SECURITY_TEXT_WIDTHS = {"symbol": 8, "name": 32, "industry": 32, "area": 16, "market": 16}
LIST_STATUSES = ("L", "D", "P")


def read_calendar_file(path: str | Path) -> pd.DataFrame:
    """A trade calendar in Tushare's `trade_cal` layout (exchange, cal_date, is_open, pretrade_date), validated whole
    like a bars file: columns exchange (text), cal_date ('YYYYMMDD'), is_open (0/1), sorted by exchange and day. Each
    exchange's days must be every calendar day from its first to its last (trade_cal lists closed days too: a day
    left out would read as closed)."""
    file, raw, first_line, unit = _read_any(path)
    columns = _check_columns(file, raw, CALENDAR_REQUIRED, unit)
    n = len(raw)
    issues = _Issues(n)
    if "exchange" in columns:
        exchanges, exchange_empty = _text(raw["exchange"])
        issues.flag(exchange_empty, "exchange", "empty required field", 0)
        unknown = ~exchange_empty & ~np.isin(exchanges, CALENDAR_EXCHANGES)
        issues.flag(unknown, "exchange", f"unknown exchange (Tushare's: {', '.join(CALENDAR_EXCHANGES)})", 0)
        exchange_ok = ~(exchange_empty | unknown)
    else:
        exchanges, exchange_ok = np.full(n, "SSE", dtype=object), np.ones(n, dtype=bool)
    days, day_empty, day_bad = _dates(raw["cal_date"])
    issues.flag(day_empty, "cal_date", "empty required field", 1)
    issues.flag(day_bad, "cal_date", "bad date (expected YYYYMMDD, a real calendar day)", 1)
    opens, open_empty, open_bad = _zero_one(raw["is_open"])
    issues.flag(open_empty, "is_open", "empty required field", 2)
    issues.flag(open_bad, "is_open", "is_open must be 0 or 1", 2)
    if "pretrade_date" in columns:
        _, _, before_bad = _dates(raw["pretrade_date"])
        issues.flag(before_bad, "pretrade_date", "bad date (expected YYYYMMDD, a real calendar day, or empty)", 3)
    key_ok = exchange_ok & ~(day_empty | day_bad)
    if key_ok.any():
        keys = pd.DataFrame({"e": exchanges, "d": days})
        issues.duplicates(keys, key_ok, first_line, unit, "(exchange, cal_date)")
        for exchange, group in keys[key_ok].drop_duplicates().groupby("e"):
            stamps = pd.to_datetime(group["d"], format="%Y%m%d")
            first, last = stamps.min(), stamps.max()
            missing = pd.date_range(first, last, freq="D").difference(pd.DatetimeIndex(stamps))
            if len(missing):
                issues.file(
                    "cal_date",
                    f"{exchange}: {len(missing)} calendar day(s) missing between {first:%Y%m%d} and {last:%Y%m%d}, "
                    f"first {missing[0]:%Y%m%d} (trade_cal lists every day, open or not)",
                )
    issues.raise_any(file, first_line, unit)
    frame = pd.DataFrame({"exchange": exchanges, "cal_date": days, "is_open": opens})
    return frame.sort_values(["exchange", "cal_date"], kind="stable").reset_index(drop=True)


def read_calendar_files(paths: Sequence[str | Path]) -> list[pd.DataFrame]:
    return read_files(paths, read_calendar_file)


def read_securities_file(path: str | Path) -> pd.DataFrame:
    """A stock list in Tushare's `stock_basic` layout (ts_code, symbol, name, area, industry, market, list_date,
    delist_date, list_status, ...; other columns are ignored), validated whole like a bars file: the columns
    `DataStore.upsert_securities` takes, text or None, dates as 'YYYYMMDD'."""
    from shared.core.domain.codes import InvalidTsCode, parse_ts_code

    file, raw, first_line, unit = _read_any(path)
    columns = _check_columns(file, raw, SECURITY_REQUIRED, unit)
    n = len(raw)
    issues = _Issues(n)
    codes, code_empty = _text(raw["ts_code"])
    codes = np.asarray([c.upper() for c in codes.tolist()], dtype=object)
    issues.flag(code_empty, "ts_code", "empty required field", 0)
    reasons: dict[str, str] = {}
    for code in pd.unique(codes[~code_empty]).tolist():
        try:
            parse_ts_code(code)
        except InvalidTsCode as exc:
            reasons[code] = f"not an A-share stock code ({exc})"
    for reason in sorted(set(reasons.values())):
        bad = [c for c, r in reasons.items() if r == reason]
        issues.flag(np.isin(codes, bad) & ~code_empty, "ts_code", reason, 0)
    code_ok = ~code_empty & ~np.isin(codes, list(reasons))
    out: dict[str, object] = {"ts_code": codes}
    for order, (column, width) in enumerate(SECURITY_TEXT_WIDTHS.items(), start=1):
        if column not in columns:
            out[column] = np.full(n, None, dtype=object)
            continue
        text, empty = _text(raw[column])
        if column == "name":
            issues.flag(empty, column, "empty required field", order)
        too_long = ~empty & np.asarray([len(t) > width for t in text.tolist()], dtype=bool)
        issues.flag(too_long, column, f"longer than the {width} characters the store holds", order)
        if column == "symbol":
            issues.flag(code_ok & ~empty & (text != np.asarray([c[:6] for c in codes.tolist()], dtype=object)),
                        column, "symbol is not the ts_code's 6 digits", order)  # fmt: skip
        out[column] = _none_where(empty, text)
    listed, listed_empty, listed_bad = _dates(raw["list_date"])
    issues.flag(listed_empty, "list_date", "empty required field", 6)
    issues.flag(listed_bad, "list_date", "bad date (expected YYYYMMDD, a real calendar day)", 6)
    out["list_date"] = listed
    if "delist_date" in columns:
        delisted, delisted_empty, delisted_bad = _dates(raw["delist_date"])
        issues.flag(delisted_bad, "delist_date", "bad date (expected YYYYMMDD, a real calendar day, or empty)", 7)
        both = ~(listed_empty | listed_bad | delisted_empty | delisted_bad)
        issues.flag(both & (delisted < listed), "delist_date", "delist_date before list_date", 7)
        out["delist_date"] = _none_where(delisted_empty, delisted)
    else:
        out["delist_date"] = np.full(n, None, dtype=object)
    if "list_status" in columns:
        statuses, status_empty = _text(raw["list_status"])
        bad_status = ~status_empty & ~np.isin(statuses, LIST_STATUSES)
        issues.flag(bad_status, "list_status", "list_status must be L, D or P (listed, delisted, suspended)", 8)
        out["list_status"] = np.where(status_empty, "L", statuses)
    else:
        out["list_status"] = np.full(n, "L", dtype=object)
    issues.duplicates(pd.DataFrame({"c": codes}), ~code_empty, first_line, unit, "ts_code")
    issues.raise_any(file, first_line, unit)
    return pd.DataFrame(out).sort_values("ts_code", kind="stable").reset_index(drop=True)


def read_securities_files(paths: Sequence[str | Path]) -> list[pd.DataFrame]:
    return read_files(paths, read_securities_file)


def _none_where(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = values.astype(object)
    out[mask] = None
    return out


def _zero_one(series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0/1 flags from text, integers or booleans; empty and bad masks."""
    if pd.api.types.is_bool_dtype(series):
        series = series.astype("float64")
    values, empty, not_number, not_finite = _numbers(series)
    bad = ~empty & (not_number | not_finite | ~np.isin(values, (0.0, 1.0)))
    return np.where(empty | bad, 0, values).astype(np.int64), empty, bad
