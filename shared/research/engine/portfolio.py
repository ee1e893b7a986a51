"""Several strategies side by side on one market, and the portfolio they make together.

`run_portfolio(sleeves, bars, config)` loads the bars once and runs every sleeve (a strategy with its weight and
label) over the same panel, each as an independent sub-account holding `config.initial_cash x weight`. The combined
account is the sum of the sub-accounts, day by day and exact in fen; its metrics come from the same
`compute_metrics` as a single run's. There is no rebalancing between sleeves: capital a sleeve makes or loses stays
with it (a mix rebalanced back to its weights is a different strategy, one that trades between the sleeves). One
strategy with several parameter sets is just several sleeves of the same strategy class. See docs/engine.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.research.engine import (
    BacktestConfig,
    BacktestResult,
    Panel,
    _canonical_config,
    benchmark_returns,
    load_bars,
    panel_data_key,
    run_backtest,
)
from shared.research.engine.metrics import MetricsConfig, compute_metrics
from shared.research.engine.result import yuan
from shared.research.strategy import Strategy

__all__ = [
    "WEIGHT_TOLERANCE",
    "PortfolioError",
    "PortfolioResult",
    "Sleeve",
    "SleeveRun",
    "resolve_sleeves",
    "run_portfolio",
    "split_capital",
]

IntArray = npt.NDArray[np.int64]
Weight = Fraction | Decimal | int | float | str
# Decimal weights such as 0.3333333333 x 3 are accepted: within this of 1 the weights are taken as meant to add up
# to 1 and are normalised by their sum. Exact fractions (Fraction(1, 3) or "1/3") add up to 1 exactly.
WEIGHT_TOLERANCE = Fraction(1, 10**9)


class PortfolioError(ValueError):
    """A portfolio cannot be run as given; `field` names what is wrong (`sleeves[1].weight`) and `loc` is the same
    path as a tuple (`("sleeves", 1, "weight")`) for a service to report as a request field."""

    def __init__(self, loc: tuple[str | int, ...], reason: str) -> None:
        self.loc = loc
        self.field = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(loc))
        self.reason = reason
        super().__init__(f"{self.field}: {reason}")


@dataclass(frozen=True)
class Sleeve:
    """One strategy of a portfolio. `weight`: its share of the initial cash (every sleeve gives one, or none does:
    then the shares are equal). `label`: how reports name it (default: the strategy's name, with `#n` when several
    sleeves run one strategy)."""

    strategy: Strategy
    weight: Weight | None = None
    label: str | None = None


@dataclass(frozen=True)
class SleeveRun:
    """A sleeve as run: its label, its exact weight (normalised to sum to 1), and its own result (initial capital
    `result.initial_cash_fen`)."""

    label: str
    weight: Fraction
    result: BacktestResult


def _as_fraction(value: object, loc: tuple[str | int, ...]) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, Fraction | Decimal | int | float | str):
        raise PortfolioError(loc, f"must be a number or a fraction like '1/3', got {value!r}")
    try:
        # a float through its shortest text form: 0.1 is 1/10, not the binary 0.1000000000000000055...
        weight = Fraction(str(value)) if isinstance(value, float | str) else Fraction(value)
    except (ValueError, ZeroDivisionError, ArithmeticError):
        raise PortfolioError(loc, f"{value!r} is not a finite number") from None
    if weight <= 0:
        raise PortfolioError(loc, f"must be > 0, got {value}")
    return weight


def resolve_sleeves(sleeves: Sequence[Sleeve]) -> list[tuple[str, Fraction]]:
    """The labels and exact weights (adding up to 1) of `sleeves`, validated; raises PortfolioError naming the
    field: no sleeve, a strategy that is not a Strategy or is given twice, some weights missing, a weight <= 0, weights
    not adding up to 1 (within 1e-9), a blank or repeated label."""
    if isinstance(sleeves, Sleeve) or not isinstance(sleeves, Sequence) or len(sleeves) == 0:
        raise PortfolioError(("sleeves",), "give at least one Sleeve")
    seen: dict[int, int] = {}
    for i, sleeve in enumerate(sleeves):
        if not isinstance(sleeve, Sleeve):
            raise PortfolioError(("sleeves", i), f"must be a Sleeve, got {type(sleeve).__name__}")
        if not isinstance(sleeve.strategy, Strategy):
            raise PortfolioError(
                ("sleeves", i, "strategy"), f"must be a Strategy instance, got {type(sleeve.strategy).__name__}"
            )
        if id(sleeve.strategy) in seen:
            # strategies may keep state between bars: one instance cannot be two sub-accounts
            raise PortfolioError(
                ("sleeves", i, "strategy"), f"is the same instance as sleeves[{seen[id(sleeve.strategy)]}]'s"
            )
        seen[id(sleeve.strategy)] = i

    given = [s.weight is not None for s in sleeves]
    if any(given) and not all(given):
        missing = given.index(False)
        raise PortfolioError(("sleeves", missing, "weight"), "give a weight for every sleeve or for none")
    if all(given):
        weights = [_as_fraction(s.weight, ("sleeves", i, "weight")) for i, s in enumerate(sleeves)]
        total = sum(weights, Fraction(0))
        if abs(total - 1) > WEIGHT_TOLERANCE:
            raise PortfolioError(("sleeves",), f"the weights add up to {float(total):.10g}, not 1")
        weights = [w / total for w in weights]
    else:
        weights = [Fraction(1, len(sleeves))] * len(sleeves)

    names = [s.strategy.name or type(s.strategy).__qualname__ for s in sleeves]
    labels: list[str] = []
    for i, sleeve in enumerate(sleeves):
        if sleeve.label is not None:
            label = sleeve.label.strip() if isinstance(sleeve.label, str) else ""
            if not label:
                raise PortfolioError(("sleeves", i, "label"), "must be a non-blank text")
        else:
            label = names[i] if names.count(names[i]) == 1 else f"{names[i]} #{i + 1}"
        if label in labels:
            other = labels.index(label)
            raise PortfolioError(("sleeves", i, "label"), f"{label!r} is the label of sleeves[{other}] too")
        labels.append(label)
    return list(zip(labels, weights, strict=True))


def split_capital(total_fen: int, weights: Sequence[Fraction]) -> list[int]:
    """Whole fen for each weight: floor(total x weight), and the few fen those floors leave over go to the first
    sleeve, so the parts add up to the total exactly. Raises PortfolioError for a part below one fen."""
    parts = [int(total_fen * w) for w in weights]  # int() of a positive Fraction floors it
    parts[0] += total_fen - sum(parts)
    for i, part in enumerate(parts):
        if part <= 0:
            raise PortfolioError(("sleeves", i, "weight"), f"gives no whole fen of {yuan(total_fen)} CNY")
    return parts


@dataclass(frozen=True)
class PortfolioResult:
    """The sleeves' own results and the combined account. Money columns are int64 fen; the combined series are the
    sums over the sleeves, exactly."""

    sleeves: tuple[SleeveRun, ...]
    config: dict[str, Any]  # the portfolio's config (canonical JSON form), its initial_cash the total
    input_sha256: str  # of every sleeve's input hash, label and weight
    code_version: dict[str, str | None]
    dates: list[str]
    codes: tuple[str, ...]
    initial_cash_fen: int
    cash_fen: IntArray
    market_value_fen: IntArray
    traded_fen: IntArray  # per day, value bought + value sold over every sleeve
    metrics: dict[str, float | int | None]

    @property
    def equity_fen(self) -> IntArray:
        return self.cash_fen + self.market_value_fen

    @property
    def final_equity(self) -> str:
        return yuan(int(self.equity_fen[-1]))

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.sleeves]

    @property
    def positions(self) -> IntArray:
        """Days x symbols: the shares every sleeve holds at the close, added up."""
        total = self.sleeves[0].result.positions.copy()
        for sleeve in self.sleeves[1:]:
            total += sleeve.result.positions
        return total

    def equity_frame(self) -> pd.DataFrame:
        """trade_date, the combined cash, market_value and equity (exact CNY strings), then each sleeve's equity in
        a column named by its label."""
        frame = pd.DataFrame(
            {
                "trade_date": self.dates,
                "cash": [yuan(v) for v in self.cash_fen.tolist()],
                "market_value": [yuan(v) for v in self.market_value_fen.tolist()],
                "equity": [yuan(v) for v in self.equity_fen.tolist()],
            }
        )
        for sleeve in self.sleeves:
            frame[sleeve.label] = [yuan(v) for v in sleeve.result.equity_fen.tolist()]
        return frame

    def trades_frame(self) -> pd.DataFrame:
        """Every sleeve's trades with a `sleeve` column (its label): by day, then in sleeve order, then in each
        sleeve's execution order (sells first within a day)."""
        frames = []
        for sleeve in self.sleeves:
            frame = sleeve.result.trades_frame()
            frame.insert(0, "sleeve", sleeve.label)
            frame["_day"] = sleeve.result.trades["day"]
            frames.append(frame)
        merged = pd.concat(frames, ignore_index=True)
        merged = merged.sort_values("_day", kind="stable").drop(columns="_day").reset_index(drop=True)
        return merged

    def orders_frame(self) -> pd.DataFrame:
        """Every sleeve's orders with a `sleeve` column (order ids are per sleeve)."""
        frames = []
        for sleeve in self.sleeves:
            frame = sleeve.result.orders_frame()
            frame.insert(0, "sleeve", sleeve.label)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def sleeve_summaries(self) -> list[dict[str, Any]]:
        """Per sleeve: label, strategy, params, weight (a float, and exactly as a fraction), initial capital, final
        equity, its input hash and its metrics."""
        rows = []
        for sleeve in self.sleeves:
            result = sleeve.result
            rows.append(
                {
                    "label": sleeve.label,
                    "strategy": result.strategy,
                    "params": result.params,
                    "weight": float(sleeve.weight),
                    "weight_fraction": f"{sleeve.weight.numerator}/{sleeve.weight.denominator}",
                    "initial_cash": yuan(result.initial_cash_fen),
                    "final_equity": result.final_equity,
                    "input_sha256": result.input_sha256,
                    "metrics": result.metrics,
                }
            )
        return rows

    def summary(self) -> dict[str, Any]:
        """As BacktestResult.summary() for the combined account (fees, fills and orders added up over the sleeves),
        with `strategy` "portfolio" and the `sleeves` list."""
        fees = trades = orders = 0
        for sleeve in self.sleeves:
            t = sleeve.result.trades
            fees += int((t["commission"] + t["stamp_duty"] + t["transfer_fee"]).sum())
            trades += len(t["qty"])
            orders += len(sleeve.result.orders["id"])
        return {
            "strategy": "portfolio",
            "first_day": self.dates[0],
            "last_day": self.dates[-1],
            "trading_days": len(self.dates),
            "symbols": len(self.codes),
            "initial_cash": yuan(self.initial_cash_fen),
            "final_equity": self.final_equity,
            "fees_paid": yuan(fees),
            "trades": trades,
            "orders": orders,
            "input_sha256": self.input_sha256,
            "sleeves": self.sleeve_summaries(),
        }


def _traded_per_day(result: BacktestResult) -> IntArray:
    traded = np.zeros(len(result.dates), dtype=np.int64)
    np.add.at(traded, result.trades["day"], result.trades["amount"])
    return traded


def _yuan_decimal(fen: int) -> Decimal:
    # Whole yuan as an integer Decimal, as BacktestConfig(initial_cash=250_000) holds it, so a sleeve's config (and
    # input hash) is the one of a run given that capital alone; otherwise the two decimals.
    return Decimal(fen // 100) if fen % 100 == 0 else Decimal(fen).scaleb(-2)


def _sum_rows(series: Sequence[IntArray]) -> IntArray:
    total = np.zeros_like(series[0], dtype=np.int64)
    for values in series:
        total += values
    return total


def _portfolio_sha256(runs: Sequence[SleeveRun], config: BacktestConfig) -> str:
    digest = hashlib.sha256(b"portfolio")
    for run in runs:
        digest.update(b"\x00sleeve\x00")
        digest.update(run.label.encode())
        digest.update(f"{run.weight.numerator}/{run.weight.denominator}".encode())
        digest.update(run.result.input_sha256.encode())
    # the sleeves' hashes cover their own configs; the total is what the split was made from
    digest.update(str(config.initial_cash).encode())
    return digest.hexdigest()


def run_portfolio(
    sleeves: Sequence[Sleeve],
    bars: pd.DataFrame | Panel,
    config: BacktestConfig | None = None,
    *,
    benchmark: pd.DataFrame | pd.Series | None = None,
    progress: Callable[[int, int], None] | None = None,
    code_version: Mapping[str, str | None] | None = None,
) -> PortfolioResult:
    """Run every sleeve over the same bars (loaded once) with its share of `config.initial_cash`, as independent
    sub-accounts, and add them up.

    Capital: sleeve i gets floor(initial_cash_fen x weight_i) fen, and the fen left over by those floors go to the
    first sleeve. Every other setting of `config` applies to every sleeve. The combined cash, market value and equity
    are the sleeves' sums (exact, in fen); the combined metrics are `compute_metrics` of the combined equity with
    the sleeves' realised trade P&L and traded value pooled. Deterministic.

    Raises PortfolioError naming the sleeve field at fault (see `resolve_sleeves`), and whatever `run_backtest`
    raises for bad bars, a bad config or a failing strategy. `progress(days_done, days)` counts over all sleeves
    (sleeves x trading days) and may raise to stop the run. `code_version` is recorded as given, as in
    `run_backtest`."""
    config = config or BacktestConfig()
    resolved = resolve_sleeves(sleeves)
    total_fen = int(config.initial_cash * 100)
    capitals = split_capital(total_fen, [w for _, w in resolved])
    if isinstance(bars, Panel):
        panel = bars
        if panel.data_key != panel_data_key(config):
            raise ValueError(
                "the panel was loaded with other start/end/calendar/st_codes/list_dates than this config; "
                "load it again with this config"
            )
    else:
        panel = load_bars(bars, config)
    days = len(panel.dates)

    runs: list[SleeveRun] = []
    for i, (sleeve, (label, weight), fen) in enumerate(zip(sleeves, resolved, capitals, strict=True)):
        sleeve_config = config.model_copy(update={"initial_cash": _yuan_decimal(fen)})
        sleeve_progress = None
        if progress is not None:
            offset = i * days

            def sleeve_progress(done: int, _days: int, offset: int = offset) -> None:
                progress(offset + done, days * len(sleeves))

        result = run_backtest(
            sleeve.strategy,
            panel,
            sleeve_config,
            benchmark=benchmark,
            progress=sleeve_progress,
            code_version=code_version,
        )
        runs.append(SleeveRun(label=label, weight=weight, result=result))

    cash = _sum_rows([r.result.cash_fen for r in runs])
    market_value = _sum_rows([r.result.market_value_fen for r in runs])
    traded = _sum_rows([_traded_per_day(r.result) for r in runs])
    pnl = np.concatenate([r.result.trades["pnl"][r.result.trades["side"] < 0] for r in runs])
    bench = benchmark_returns(benchmark, panel.dates) if benchmark is not None else None
    metrics = compute_metrics(
        (cash + market_value) / 100.0,
        total_fen / 100.0,
        benchmark_returns=bench,
        trade_pnl=pnl / 100.0,
        traded_value=traded / 100.0,
        config=MetricsConfig(risk_free_rate=config.risk_free_rate, var_level=config.var_level),
    )
    return PortfolioResult(
        sleeves=tuple(runs),
        config=_canonical_config(config),
        input_sha256=_portfolio_sha256(runs, config),
        code_version=dict(code_version or {}),
        dates=[d.isoformat() for d in panel.dates],
        codes=panel.codes,
        initial_cash_fen=total_fen,
        cash_fen=cash,
        market_value_fen=market_value,
        traded_fen=traded,
        metrics=metrics.as_dict(),
    )
