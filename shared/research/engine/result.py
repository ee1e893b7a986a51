"""What a run returns: orders with their status and reason, trades with fees broken down, daily cash, market value,
equity and positions, corporate actions applied, the metrics, and the provenance (a SHA-256 of the inputs and the
code version the caller gave). Serialises to JSON deterministically (same inputs, same bytes: money as exact decimal
strings from fen, keys sorted, no timestamps) and to Parquet or CSV tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.core.market.matching import KIND_NAMES, REASONS, STATUS_NAMES

IntArray = npt.NDArray[np.int64]
RESULT_FORMAT = 1


def yuan(fen: int) -> str:
    """Exact CNY string of an amount in fen: 123456 -> '1234.56'."""
    sign = "-" if fen < 0 else ""
    fen = abs(int(fen))
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def _yuan_column(values: IntArray) -> list[str]:
    return [yuan(v) for v in values.tolist()]


@dataclass(frozen=True)
class BacktestResult:
    """A finished run. Money columns are integer fen (`*_fen`); the JSON form turns them into exact CNY strings."""

    strategy: str
    params: dict[str, Any]
    config: dict[str, Any]
    input_sha256: str  # of the bars (canonical order), the benchmark, the params and the config
    code_version: dict[str, str | None]
    dates: list[str]  # ISO trading days
    codes: tuple[str, ...]
    initial_cash_fen: int
    cash_fen: IntArray
    market_value_fen: IntArray
    positions: IntArray  # days x symbols, shares at the close
    close_fen: IntArray  # days x symbols, the marking price (last close while suspended)
    orders: dict[str, npt.NDArray[Any]]
    trades: dict[str, npt.NDArray[Any]]
    corporate_actions: list[dict[str, Any]]
    metrics: dict[str, float | int | None]
    data_report: dict[str, Any]

    @property
    def warnings(self) -> list[str]:
        """What the run had to work around in the data, one line each (e.g. a bar printed outside its limit band,
        naming it); empty when nothing. Kept in `data_report["warnings"]`, so it travels with the data report."""
        return list(self.data_report.get("warnings", []))

    @property
    def equity_fen(self) -> IntArray:
        return self.cash_fen + self.market_value_fen

    @property
    def final_equity(self) -> str:
        return yuan(int(self.equity_fen[-1]))

    # --- tables ------------------------------------------------------------------------------------------------
    def equity_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "trade_date": self.dates,
                "cash": _yuan_column(self.cash_fen),
                "market_value": _yuan_column(self.market_value_fen),
                "equity": _yuan_column(self.equity_fen),
            }
        )

    def positions_frame(self) -> pd.DataFrame:
        """Long form: one row per (day, symbol) held at the close."""
        day, sym = np.nonzero(self.positions)
        qty = self.positions[day, sym]
        value = qty * self.close_fen[day, sym]
        return pd.DataFrame(
            {
                "trade_date": [self.dates[d] for d in day.tolist()],
                "ts_code": [self.codes[s] for s in sym.tolist()],
                "qty": qty,
                "close": _yuan_column(self.close_fen[day, sym]),
                "market_value": _yuan_column(value),
            }
        )

    def trades_frame(self) -> pd.DataFrame:
        t = self.trades
        return pd.DataFrame(
            {
                "trade_date": [self.dates[d] for d in t["day"].tolist()],
                "ts_code": [self.codes[s] for s in t["sym"].tolist()],
                "side": np.where(t["side"] > 0, "buy", "sell"),
                "qty": t["qty"],
                "price": _yuan_column(t["price"]),
                "amount": _yuan_column(t["amount"]),
                "commission": _yuan_column(t["commission"]),
                "stamp_duty": _yuan_column(t["stamp_duty"]),
                "transfer_fee": _yuan_column(t["transfer_fee"]),
                "fees": _yuan_column(t["commission"] + t["stamp_duty"] + t["transfer_fee"]),
                "realised_pnl": pd.Series(  # object dtype: a buy's missing P&L stays None instead of becoming NaN
                    [
                        yuan(p) if side < 0 else None
                        for p, side in zip(t["pnl"].tolist(), t["side"].tolist(), strict=True)
                    ],
                    dtype=object,
                ),
                "order_id": t["order_id"],
            }
        )

    def orders_frame(self) -> pd.DataFrame:
        o = self.orders
        kinds = o["kind"].tolist()
        amounts = o["amount"].tolist()
        # shares orders carry a signed quantity; value orders a signed amount in fen; target orders a value in fen
        requested = [
            str(a) if k == 0 else (yuan(a) if k in (1, 2) else "") for k, a in zip(kinds, amounts, strict=True)
        ]
        return pd.DataFrame(
            {
                "order_id": o["id"],
                "created": [self.dates[d] if d >= 0 else "init" for d in o["created"].tolist()],
                "ts_code": [self.codes[s] for s in o["sym"].tolist()],
                "kind": [KIND_NAMES[k] for k in kinds],
                "requested": requested,
                "status": [STATUS_NAMES[s] for s in o["status"].tolist()],
                "filled_qty": o["filled"],
                "settled": pd.Series([self.dates[d] if d >= 0 else None for d in o["settled"].tolist()], dtype=object),
                "reason": [REASONS[r] for r in o["reason"].tolist()],
            }
        )

    def frames(self) -> dict[str, pd.DataFrame]:
        return {
            "equity": self.equity_frame(),
            "positions": self.positions_frame(),
            "trades": self.trades_frame(),
            "orders": self.orders_frame(),
        }

    def write(self, directory: str | Path, fmt: Literal["parquet", "csv"] = "parquet") -> list[Path]:
        """Write result.json and one table per frame; returns the paths written."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "result.json"]
        paths[0].write_text(self.to_json())
        for name, frame in self.frames().items():
            path = out / f"{name}.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
            paths.append(path)
        return paths

    # --- JSON ----------------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        t = self.trades
        fees = int((t["commission"] + t["stamp_duty"] + t["transfer_fee"]).sum())
        return {
            "strategy": self.strategy,
            "first_day": self.dates[0],
            "last_day": self.dates[-1],
            "trading_days": len(self.dates),
            "symbols": len(self.codes),
            "initial_cash": yuan(self.initial_cash_fen),
            "final_equity": self.final_equity,
            "fees_paid": yuan(fees),
            "trades": len(t["qty"]),
            "orders": len(self.orders["id"]),
            "input_sha256": self.input_sha256,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": RESULT_FORMAT,
            "summary": self.summary(),
            "strategy": self.strategy,
            "params": self.params,
            "config": self.config,
            "input_sha256": self.input_sha256,
            "code_version": self.code_version,
            "metrics": self.metrics,
            "data_report": self.data_report,
            "corporate_actions": self.corporate_actions,
            "equity": _columns(self.equity_frame()),
            "trades": _columns(self.trades_frame()),
            "orders": _columns(self.orders_frame()),
            "positions": self._positions_json(),
        }

    def _positions_json(self) -> dict[str, list[Any]]:
        # qty only: close and value follow from the equity table's inputs and would triple the size of the JSON
        day, sym = np.nonzero(self.positions)
        return {
            "trade_date": [self.dates[d] for d in day.tolist()],
            "ts_code": [self.codes[s] for s in sym.tolist()],
            "qty": self.positions[day, sym].tolist(),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """Column-wise lists of plain Python values (compact, and pandas reads it back with DataFrame(columns))."""
    out: dict[str, list[Any]] = {}
    for name in frame.columns:
        values = frame[name].tolist()
        # pandas stores a missing string as NaN; JSON gets null
        out[str(name)] = [
            None if v is None or (isinstance(v, float) and v != v) else (v.item() if isinstance(v, np.generic) else v)
            for v in values
        ]
    return out
