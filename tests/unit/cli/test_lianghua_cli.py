"""The `lianghua` command: a backtest of a CSV file, worked out by hand, and its error exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lianghua.cli import EXIT_BAD_INPUT, EXIT_OK, main

# One SH main-board stock over three days, Tushare units (vol in lots, amount in thousand CNY).
CSV = """ts_code,trade_date,open,high,low,close,pre_close,vol,amount
600000.SH,20240104,10.20,10.60,10.10,10.50,10.00,1000,1030
600000.SH,20240103,10.00,10.10,9.90,10.00,10.00,1000,1000
600000.SH,20240105,10.50,11.10,10.40,11.00,10.50,1000,1080
"""


@pytest.fixture
def bars_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bars.csv"
    path.write_text(CSV)
    return path


def test_backtest_of_a_csv_prints_the_summary_and_writes_the_result(
    bars_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        ["backtest", str(bars_csv), "--strategy", "buy_and_hold", "--initial-cash", "100000", "--out", str(out)]
    )
    assert code == EXIT_OK
    # By hand: the order placed before the first bar fills at the first open, 10.00. 10,000 shares would cost
    # 100,000 + 25 commission + 1 transfer fee > cash, so a lot less: 9,900 shares = 99,000.00,
    # commission 99,000 x 0.025% = 24.75, transfer fee 99,000 x 0.001% = 0.99 -> cash 974.26.
    # Last close 11.00 -> equity 974.26 + 9,900 x 11.00 = 109,874.26.
    summary = json.loads(capsys.readouterr().out)
    assert summary["final_equity"] == "109874.26"
    assert summary["fees_paid"] == "25.74"
    assert summary["trades"] == 1
    written = json.loads((out / "result.json").read_text())
    assert written["summary"]["final_equity"] == "109874.26"
    assert (out / "trades.parquet").is_file()


def test_rows_in_any_order_give_the_same_result(
    bars_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = CSV.strip().splitlines()
    sorted_csv = tmp_path / "sorted.csv"
    sorted_csv.write_text("\n".join([lines[0], lines[2], lines[1], lines[3]]) + "\n")
    assert main(["backtest", str(bars_csv), "--strategy", "buy_and_hold"]) == EXIT_OK
    first = json.loads(capsys.readouterr().out)
    assert main(["backtest", str(sorted_csv), "--strategy", "buy_and_hold"]) == EXIT_OK
    second = json.loads(capsys.readouterr().out)
    assert first == second  # the inputs hash included: rows are put in canonical order before hashing


def test_bad_parameter_names_the_field(bars_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", str(bars_csv), "--strategy", "dual_ma", "--param", "fast=0"])
    assert code == EXIT_BAD_INPUT
    assert "fast" in capsys.readouterr().err


def test_unknown_strategy_and_missing_file_are_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", str(tmp_path / "nope.csv"), "--strategy", "dual_ma"]) == EXIT_BAD_INPUT
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "x.csv").write_text(CSV)
    assert main(["backtest", str(tmp_path / "x.csv"), "--strategy", "no_such"]) == EXIT_BAD_INPUT
    assert "unknown strategy" in capsys.readouterr().err


def test_missing_column_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    rows = [line.split(",") for line in CSV.strip().splitlines()]
    path.write_text("\n".join(",".join(row[:6] + row[7:]) for row in rows) + "\n")  # without column 7, pre_close
    assert main(["backtest", str(path), "--strategy", "buy_and_hold"]) == EXIT_BAD_INPUT
    assert "pre_close" in capsys.readouterr().err
