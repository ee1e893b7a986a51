"""CSV / Parquet import in Tushare's daily layout: good files come back sorted and typed; bad ones are refused
whole, naming the file, the line (CSV, header = line 1) or row (Parquet) and the reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from services.data.providers import FileImportError, FilesImportError, read_daily_file, read_daily_files

HEADER = "ts_code,trade_date,open,high,low,close,pre_close,change,pct_chg,vol,amount"
GOOD_ROWS = [
    "600000.SH,20240103,7.02,7.08,7.00,7.05,7.03,0.02,0.2845,250000,176000",
    "000001.SZ,20240102,9.39,9.42,9.21,9.21,9.39,-0.18,-1.9169,1158366,1075742.252",
    "600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,301234,211234.567",
    "688981.SH,20240102,52.50,52.75,51.60,51.98,52.60,-0.62,-1.1787,156789.33,815678.9",
]


def write_csv(tmp_path: Path, lines: list[str], name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_good_csv_in_any_order_comes_back_sorted_and_typed(tmp_path: Path) -> None:
    frame = read_daily_file(write_csv(tmp_path, [HEADER, *GOOD_ROWS]))
    assert list(zip(frame["trade_date"], frame["ts_code"], strict=True)) == [
        ("20240102", "000001.SZ"),
        ("20240102", "600000.SH"),
        ("20240102", "688981.SH"),
        ("20240103", "600000.SH"),
    ]
    assert list(frame.columns) == HEADER.split(",")
    star = frame.iloc[2]
    assert (star["vol"], star["amount"], star["close"]) == (156789.33, 815678.9, 51.98)  # units untouched
    assert frame["vol"].dtype == "float64" and frame["open"].dtype == "float64"


def test_optional_adj_factor_and_derived_columns(tmp_path: Path) -> None:
    lines = [
        "ts_code,trade_date,open,high,low,close,pre_close,vol,amount,adj_factor",
        "600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,301234,211234.567,13.123",
    ]
    frame = read_daily_file(write_csv(tmp_path, lines))
    assert frame["adj_factor"].tolist() == [13.123]
    assert frame["change"].isna().all() and frame["pct_chg"].isna().all()  # left out: not invented


def error_of(path: Path) -> FileImportError:
    with pytest.raises(FileImportError) as caught:
        read_daily_file(path)
    assert str(path) in str(caught.value)
    return caught.value


def test_missing_columns_are_named(tmp_path: Path) -> None:
    error = error_of(write_csv(tmp_path, ["ts_code,trade_date,open,high,low,close,vol", GOOD_ROWS[0]]))
    assert "line 1" in str(error)
    assert "missing columns pre_close, amount" in str(error)


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ("600000.SH,2024-01-02,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,301234,211234.567", "trade_date", "bad date"),
        ("600000.SH,20240230,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,301234,211234.567", "trade_date", "bad date"),
        ("600000.SH,20240102,7.05,七点一,6.98,7.03,7.04,-0.01,-0.142,301234,211234.567", "high", "not a number"),
        ("600000.SH,20240102,7.05,7.10,6.98,,7.04,-0.01,-0.142,301234,211234.567", "close", "empty required field"),
        ("600000,20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,301234,211234.567", "ts_code", "bad ts_code format"),
        ("600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,inf,211234.567", "vol", "not a finite number"),
        (",20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,301234,211234.567", "ts_code", "empty required field"),
    ],
)
def test_bad_values_name_line_column_and_reason(tmp_path: Path, row: str, column: str, reason: str) -> None:
    # The bad row is the 4th line of the file: header (1), two good rows (2, 3), then it.
    error = error_of(write_csv(tmp_path, [HEADER, GOOD_ROWS[0], GOOD_ROWS[1], row, GOOD_ROWS[3]]))
    assert f"line 4: {column}: {reason}" in str(error)
    assert [(i.line, i.column) for i in error.issues] == [(4, column)]


def test_duplicates_name_both_lines(tmp_path: Path) -> None:
    error = error_of(write_csv(tmp_path, [HEADER, *GOOD_ROWS, GOOD_ROWS[1]]))
    assert "line 6: duplicate (000001.SZ, 20240102), first at line 3" in str(error)


def test_every_issue_is_collected_in_line_order(tmp_path: Path) -> None:
    rows = [
        HEADER,
        "600000.SH,20240102,x,7.10,6.98,7.03,7.04,-0.01,-0.142,301234,211234.567",
        GOOD_ROWS[1],
        "",  # a blank line still counts as a line, and is empty
        "BAD,20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,301234,211234.567",
    ]
    error = error_of(write_csv(tmp_path, rows))
    lines = [(i.line, i.column) for i in error.issues]
    assert lines[0] == (2, "open")
    assert (4, "ts_code") in lines and (4, "trade_date") in lines
    assert lines[-1] == (5, "ts_code")


def test_a_row_with_too_many_fields_names_its_line(tmp_path: Path) -> None:
    error = error_of(write_csv(tmp_path, [HEADER, GOOD_ROWS[0], GOOD_ROWS[1] + ",extra"]))
    assert "line 3" in str(error)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert "empty" in str(error_of(empty))
    assert "no rows" in str(error_of(write_csv(tmp_path, [HEADER], "header_only.csv")))
    assert "no such file" in str(error_of(tmp_path / "absent.csv"))
    assert "unsupported" in str(error_of(write_csv(tmp_path, [HEADER], "bars.xlsx")))


def parquet_frame() -> pd.DataFrame:
    rows = [r.split(",") for r in GOOD_ROWS]
    frame = pd.DataFrame(rows, columns=HEADER.split(","))
    for column in HEADER.split(",")[2:]:
        frame[column] = frame[column].astype("float64")
    return frame


def test_good_parquet_with_integer_dates(tmp_path: Path) -> None:
    frame = parquet_frame()
    frame["trade_date"] = frame["trade_date"].astype("int64")  # a common export: YYYYMMDD as a number
    frame["adj_factor"] = [13.1, 108.0, 13.1, 4.2]
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    result = read_daily_file(path)
    assert result["trade_date"].tolist() == ["20240102", "20240102", "20240102", "20240103"]
    assert result["ts_code"].tolist()[:3] == ["000001.SZ", "600000.SH", "688981.SH"]
    assert result["adj_factor"].tolist() == [108.0, 13.1, 4.2, 13.1]


def test_bad_parquet_names_the_row(tmp_path: Path) -> None:
    frame = parquet_frame()
    frame.loc[2, "close"] = float("nan")  # 3rd row
    frame.loc[3, "trade_date"] = "20241301"  # 4th row
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    error = error_of(path)
    assert [(i.line, i.column, i.reason) for i in error.issues] == [
        (3, "close", "empty required field"),
        (4, "trade_date", "bad date (expected YYYYMMDD, a real calendar day)"),
    ]
    assert "row 3: close: empty required field" in str(error)


def test_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    path.write_text("ts_code,trade_date\n", encoding="utf-8")
    assert "not a readable Parquet file" in str(error_of(path))


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        # A price between ticks (7.035) cannot be stored in fen.
        ("600000.SH,20240102,7.05,7.10,6.98,7.035,7.04,-0.01,-0.142,301234,211234.567", "close", "0.01 CNY tick"),
        ("600000.SH,20240102,7.05,7.10,-6.98,7.03,7.04,-0.01,-0.142,301234,211234.567", "low", "negative price"),
        ("600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,-5,211234.567", "vol", "negative volume"),
        # 301234.567 lots = 30,123,456.7 shares: not a whole number of shares.
        ("600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,301234.567,211234.567", "vol", "whole number"),
        ("600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,301234,-1", "amount", "negative amount"),
    ],
)
def test_values_the_store_cannot_hold_name_line_column_and_reason(
    tmp_path: Path, row: str, column: str, reason: str
) -> None:
    error = error_of(write_csv(tmp_path, [HEADER, GOOD_ROWS[0], GOOD_ROWS[1], row, GOOD_ROWS[3]]))
    assert f"line 4: {column}: " in str(error) and reason in str(error)
    assert [(i.line, i.column) for i in error.issues] == [(4, column)]


@pytest.mark.parametrize("factor", ["0", "-1.5"])
def test_an_adj_factor_not_above_zero_is_named(tmp_path: Path, factor: str) -> None:
    lines = [
        "ts_code,trade_date,open,high,low,close,pre_close,vol,amount,adj_factor",
        "600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,301234,211234.567,13.123",
        f"600000.SH,20240103,7.03,7.10,6.98,7.03,7.03,301234,211234.567,{factor}",
    ]
    error = error_of(write_csv(tmp_path, lines))
    assert "line 3: adj_factor: adj_factor must be above 0" in str(error)
    assert [(i.line, i.column) for i in error.issues] == [(3, "adj_factor")]


def test_off_tick_prices_in_parquet_name_the_row(tmp_path: Path) -> None:
    frame = pd.read_csv(write_csv(tmp_path, [HEADER, *GOOD_ROWS]), dtype={"trade_date": str})
    frame.loc[2, "high"] = 7.105  # the third row
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    error = error_of(path)
    assert "row 3: high: price not on the 0.01 CNY tick" in str(error)


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        # 1075742.123456 thousand CNY = 107,574,212,345.6 fen: a tenth of a fen the store cannot hold (never rounded).
        ("600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,301234,1075742.123456", "amount",
         "more decimals than the unit allows (amount is in thousand CNY and stored to the fen: at most 5 decimals)"),
        # Absurd sizes are out of range, not "off the tick" / "not a whole number".
        ("600000.SH,20240102,7.05,7.10,6.98,1e15,7.04,-0.01,-0.142,301234,211234.567", "close",
         "out of range (the store holds at most 9,999,999,999,999.99 CNY)"),
        ("600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,1e30,211234.567", "vol",
         "out of range (the store holds at most 9,999,999,999,999.99 lots)"),
        ("600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,-0.01,-0.142,301234,1e12", "amount", "out of range"),
    ],
)  # fmt: skip
def test_values_the_store_would_round_or_overflow_get_their_own_reason(
    tmp_path: Path, row: str, column: str, reason: str
) -> None:
    error = error_of(write_csv(tmp_path, [HEADER, GOOD_ROWS[0], GOOD_ROWS[1], row, GOOD_ROWS[3]]))
    assert f"line 4: {column}: {reason}" in str(error)
    assert [(i.line, i.column) for i in error.issues] == [(4, column)]
    assert "tick" not in str(error) and "whole number" not in str(error)


def test_an_adj_factor_with_more_than_6_decimals_is_refused_not_rounded(tmp_path: Path) -> None:
    lines = [
        "ts_code,trade_date,open,high,low,close,pre_close,vol,amount,adj_factor",
        "600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,301234,211234.567,116.713123",  # 6 decimals: stored as is
        "600000.SH,20240103,7.03,7.10,6.98,7.03,7.03,301234,211234.567,116.7131234",
        "600000.SH,20240104,7.03,7.10,6.98,7.03,7.03,301234,211234.567,1e12",
    ]
    error = error_of(write_csv(tmp_path, lines))
    assert "line 3: adj_factor: more decimals than the unit allows (adj_factor is stored to 6 decimals)" in str(error)
    assert "line 4: adj_factor: out of range (the store holds at most 999,999,999.999999)" in str(error)
    assert [(i.line, i.column) for i in error.issues] == [(3, "adj_factor"), (4, "adj_factor")]


def test_qfq_prices_are_refused_with_the_way_to_import_them(tmp_path: Path) -> None:
    # Forward-adjusted prices as free sources publish them: 4 decimals.
    row = "600000.SH,20240102,6.8712,6.9199,6.8030,6.8517,6.8614,-0.0097,-0.142,301234,211234.567"
    error = error_of(write_csv(tmp_path, [HEADER, GOOD_ROWS[0], row]))
    assert "line 3: open: price not on the 0.01 CNY tick (more than 2 decimals)" in str(error)
    assert error.hint is not None and "qfq/hfq-adjusted" in error.hint
    assert "import the unadjusted bars with Tushare's adj_factor" in str(error)
    assert "docs/data-ingest.md, 'Adjusted prices'" in str(error)
    # An off-tick price among unadjusted ones says so too (the hint is per file, not per line).
    assert [(i.line, i.column) for i in error.issues] == [(3, c) for c in ("open", "high", "low", "close", "pre_close")]


def test_every_bad_file_is_named_and_none_is_returned(tmp_path: Path) -> None:
    good = [write_csv(tmp_path, [HEADER, GOOD_ROWS[i]], f"good{i}.csv") for i in range(2)]
    off_tick = write_csv(tmp_path, [HEADER, GOOD_ROWS[2], GOOD_ROWS[0].replace("7.05,", "7.055,")], "tick.csv")
    text = write_csv(tmp_path, [HEADER, GOOD_ROWS[3].replace("52.75", "abc")], "text.csv")
    missing = tmp_path / "missing.csv"
    paths = [good[0], off_tick, text, good[1], missing]
    with pytest.raises(FilesImportError) as caught:
        read_daily_files(paths)
    error = caught.value
    assert [e.path for e in error.errors] == [off_tick, text, missing]
    assert [[(i.line, i.column, i.reason) for i in e.issues] for e in error.errors] == [
        [(3, "close", "price not on the 0.01 CNY tick (more than 2 decimals)")],
        [(2, "high", "not a number")],
        [(0, None, "no such file")],
    ]
    message = str(error)
    assert message.startswith("3 of 5 files cannot be imported, so none was:")
    assert f"{off_tick}: line 3: close: " in message and f"{text}: line 2: high: not a number" in message
    assert f"{missing}: no such file" in message and "good" not in message
    # Good files alone come back, each validated; --adj-factor makes a file without the column bad too.
    assert [len(f) for f in read_daily_files(good)] == [1, 1]
    with pytest.raises(FilesImportError, match="no adj_factor column"):
        read_daily_files(good, require_adj_factor=True)
