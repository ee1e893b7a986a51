"""The `lianghua` command: one entry point for the things a trader runs from a terminal.

    lianghua run                       the platform in standalone mode (as `make run`)
    lianghua strategies                the installed strategies and their parameters
    lianghua backtest BARS --strategy dual_ma --param fast=5 --param slow=20 [--out DIR] [--report FILE.html]
                                       a backtest of a CSV or Parquet file in Tushare's daily layout
    lianghua strategy list|create|start|pause|resume|stop|replay
                                       strategy instances on a running platform (lianghua/strategy_cli.py)
    lianghua data ...                  the data service's commands (backfill, update, import, import-adj-factors,
                                       import-calendar, import-securities, quality, runs)

Exit codes: 0 success, 1 the run failed (the reason on stderr), 2 bad arguments or bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class CliError(Exception):
    """Bad arguments or input: printed without a traceback, exit code 2."""


def parse_param(text: str) -> tuple[str, Any]:
    """`name=value`; the value is read as JSON when it parses (numbers, booleans, lists), else kept as text."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise CliError(f"--param {text!r}: expected name=value")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value


def read_bars_file(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file of bars; trade_date is kept as text so 'YYYYMMDD' is not read as a number."""
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, dtype={"ts_code": str, "trade_date": str})
    except (OSError, ValueError) as exc:
        raise CliError(f"{path}: cannot be read: {exc}") from exc
    raise CliError(f"{path}: expected a .csv or .parquet file")


def _backtest(args: argparse.Namespace) -> int:
    from shared.platform.provenance import code_version
    from shared.research.engine import BacktestConfig, BarsError, EngineError, StrategyError, run_backtest
    from shared.research.strategy.registry import discover_strategies

    strategies = discover_strategies()
    strategy_cls = strategies.get(args.strategy)
    if strategy_cls is None:
        raise CliError(f"unknown strategy {args.strategy!r}; installed: {', '.join(strategies)}")
    raw_params: dict[str, Any] = json.loads(args.params) if args.params else {}
    if not isinstance(raw_params, dict):
        raise CliError("--params must be a JSON object")
    raw_params.update(parse_param(p) for p in args.param)
    raw_config: dict[str, Any] = json.loads(args.config) if args.config else {}
    if not isinstance(raw_config, dict):
        raise CliError("--config must be a JSON object")
    for key in ("start", "end", "initial_cash"):
        value = getattr(args, key)
        if value is not None:
            raw_config[key] = value
    try:
        params = strategy_cls.parse_params(raw_params)
    except ValidationError as exc:
        raise CliError(f"strategy parameters: {_validation_message(exc)}") from exc
    try:
        config = BacktestConfig.model_validate(raw_config)
    except ValidationError as exc:
        raise CliError(f"config: {_validation_message(exc)}") from exc
    bars = read_bars_file(Path(args.bars))
    benchmark = None
    if args.benchmark:
        benchmark = read_bars_file(Path(args.benchmark))
    try:
        result = run_backtest(strategy_cls(params), bars, config, benchmark=benchmark, code_version=code_version())
    except (BarsError, EngineError, StrategyError) as exc:
        raise CliError(f"{args.bars}: {exc}") from exc
    summary = {**result.summary(), "metrics": result.metrics}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        written = result.write(out, fmt=args.format)
        print("written: " + ", ".join(str(p) for p in written), file=sys.stderr)
    if args.report:
        _write_report(result, benchmark, Path(args.report))
    return EXIT_OK


def _write_report(result: Any, benchmark: pd.DataFrame | None, path: Path) -> None:
    """The run's HTML report (docs/reports.md), written whole or not at all."""
    from shared.research.report import ReportInputError, render_html, report_from_result

    try:
        page = render_html(report_from_result(result, benchmark))
    except ReportInputError as exc:
        raise CliError(f"report: {exc}") from exc
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(page, encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise CliError(f"--report {path}: cannot be written: {exc}") from exc
    print(f"report: {path}", file=sys.stderr)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'parameters'}: {e['msg']}" for e in exc.errors())


def _strategies(args: argparse.Namespace) -> int:
    from shared.research.strategy.registry import describe_all, discover_strategies

    infos = describe_all(discover_strategies())
    if args.json:
        print(json.dumps([i.model_dump() for i in infos], indent=2, ensure_ascii=False))
        return EXIT_OK
    for info in infos:
        params = info.parameters.get("properties", {})
        print(f"{info.name:16} {info.title}")
        for name, schema in params.items():
            default = schema.get("default", "(required)")
            print(f"    {name} = {default!r}  {schema.get('description', '')}")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from lianghua import standalone

    sys.argv = ["lianghua run", *args.rest]
    standalone.main()
    return EXIT_OK


def _data(args: argparse.Namespace) -> int:
    import services.data.cli as data_cli

    return int(data_cli.main(list(args.rest)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lianghua", description="LiangHua (量化): A-share quant platform")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the platform in standalone mode with demo data (as `make run`)")
    run.add_argument("rest", nargs=argparse.REMAINDER, help="--host / --port")
    run.set_defaults(handler=_run)

    strategies = sub.add_parser("strategies", help="list the installed strategies and their parameters")
    strategies.add_argument("--json", action="store_true", help="the parameter schemas as JSON")
    strategies.set_defaults(handler=_strategies)

    bt = sub.add_parser("backtest", help="backtest a strategy on a CSV or Parquet file of daily bars")
    bt.add_argument("bars", help="bars in Tushare's daily layout (.csv or .parquet)")
    bt.add_argument("--strategy", required=True, help="strategy name (see `lianghua strategies`)")
    bt.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a strategy parameter")
    bt.add_argument("--params", help="strategy parameters as a JSON object")
    bt.add_argument("--config", help="engine configuration as a JSON object (see docs/engine.md)")
    bt.add_argument("--start", help="first day (YYYY-MM-DD)")
    bt.add_argument("--end", help="last day (YYYY-MM-DD)")
    bt.add_argument("--initial-cash", dest="initial_cash", help="CNY")
    bt.add_argument("--benchmark", help="benchmark bars (e.g. 000300.SH index_daily) as .csv or .parquet")
    bt.add_argument("--out", help="directory for result.json and the tables")
    bt.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="format of the tables")
    bt.add_argument("--report", metavar="FILE.html", help="write the run's self-contained HTML report there")
    bt.set_defaults(handler=_backtest)

    from lianghua import strategy_cli

    strategy_cli.add_parser(sub)

    data = sub.add_parser(
        "data",
        help="data service commands: backfill, update, import, import-adj-factors, import-calendar, "
        "import-securities, quality, runs",
    )
    data.add_argument("rest", nargs=argparse.REMAINDER)
    data.set_defaults(handler=_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CliError as exc:
        print(f"lianghua: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except json.JSONDecodeError as exc:
        print(f"lianghua: bad JSON argument: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
