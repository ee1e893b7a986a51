"""`lianghua backtest --report FILE.html`: the run's report written next to the printed summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lianghua.cli import EXIT_OK, main

CSV = """ts_code,trade_date,open,high,low,close,pre_close,vol,amount
600000.SH,20240103,10.00,10.10,9.90,10.00,10.00,1000,1000
600000.SH,20240104,10.20,10.60,10.10,10.50,10.00,1000,1030
600000.SH,20240105,10.50,11.10,10.40,11.00,10.50,1000,1080
"""
INDEX = """ts_code,trade_date,close
000300.SH,20240102,3400.0
000300.SH,20240103,3500.0
000300.SH,20240104,3430.0
000300.SH,20240105,3605.0
"""


def test_backtest_writes_the_html_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bars, index = tmp_path / "bars.csv", tmp_path / "index.csv"
    bars.write_text(CSV)
    index.write_text(INDEX)
    report = tmp_path / "out" / "run.html"
    args = ["backtest", str(bars), "--strategy", "buy_and_hold", "--initial-cash", "100000", "--benchmark", str(index)]
    code = main([*args, "--report", str(report)])
    assert code == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    page = report.read_text(encoding="utf-8")
    assert summary["input_sha256"] in page
    assert "109874.26" in page  # the final equity worked out in test_lianghua_cli.py
    assert '"name":"Benchmark"' in page  # the benchmark curve is drawn: 3500 -> 3605 is +3% on the run's days
    assert "1.03," in page or "1.03]" in page
    assert not list(report.parent.glob("*.partial"))
