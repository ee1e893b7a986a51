"""The backtest's implementation of `shared.strategy.StrategyContext`: the portfolio view, history and indicators that
end at the current bar, and the order helpers, which only queue orders (the engine fills them on a later bar).

No look-ahead by construction: every array a strategy gets is a read-only view of rows [0, t] of a days x symbols
panel, so reading row t + 1 is an IndexError. Indicators are computed once over the whole panel and then served
through the same slicing; that is causal because every indicator of `shared.strategy.indicators` is (the value at
row t is computed from rows up to t only; each is documented and tested as such), so the value a strategy reads at
t is the one it would have computed itself from the history it could see."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shared.engine.config import BacktestConfig
from shared.engine.data import Panel
from shared.strategy.context import Amount, Field, FloatArray, IntArray, PriceField, StrategyError, Symbols
from shared.strategy.indicators import compute, indicator_info

KIND_SHARES, KIND_VALUE, KIND_TARGET, KIND_CLOSE = 0, 1, 2, 3
_PRICE_FIELDS = ("open", "high", "low", "close", "pre_close")


def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


class Book(Protocol):
    """What the context reads and calls: one portfolio of a run. The one-portfolio `Engine` is one; a portfolio of
    `shared.engine.batch.BatchEngine` is another (its arrays are rows of the batch's state)."""

    panel: Panel
    config: BacktestConfig
    positions: IntArray

    @property
    def t(self) -> int: ...

    @property
    def initial_cash_fen(self) -> int: ...

    @property
    def cash_fen(self) -> int: ...

    def sellable(self) -> IntArray: ...

    def market_value_fen(self) -> int: ...

    def queue(self, cols: IntArray, kind: int, amounts: IntArray) -> IntArray: ...


class BacktestContext:
    def __init__(self, engine: Book) -> None:
        self._e = engine
        self._columns = {code: j for j, code in enumerate(engine.panel.codes)}
        self._cache: dict[tuple[Any, ...], npt.NDArray[Any]] = {}

    # --- clock and universe ----------------------------------------------------------------------------------
    @property
    def universe(self) -> tuple[str, ...]:
        return self._e.panel.codes

    @property
    def today(self) -> date | None:
        t = self._e.t
        return self._e.panel.dates[t] if t >= 0 else None

    @property
    def day_index(self) -> int:
        return self._e.t

    def column(self, ts_code: str) -> int:
        try:
            return self._columns[ts_code]
        except KeyError:
            raise KeyError(f"{ts_code!r} is not in the universe of this run") from None

    # --- portfolio ---------------------------------------------------------------------------------------------
    @property
    def initial_cash(self) -> float:
        return self._e.initial_cash_fen / 100

    @property
    def cash(self) -> float:
        return self._e.cash_fen / 100

    @property
    def positions(self) -> IntArray:
        return _read_only(self._e.positions.copy())

    @property
    def sellable(self) -> IntArray:
        return _read_only(self._e.sellable())

    @property
    def market_value(self) -> float:
        return self._e.market_value_fen() / 100

    @property
    def equity(self) -> float:
        return (self._e.cash_fen + self._e.market_value_fen()) / 100

    def position(self, symbol: str | int) -> int:
        return int(self._e.positions[self._one(symbol)])

    def sellable_qty(self, symbol: str | int) -> int:
        return int(self._e.sellable()[self._one(symbol)])

    # --- history and indicators ----------------------------------------------------------------------------------
    def _upto_today(self, full: npt.NDArray[Any]) -> npt.NDArray[Any]:
        # A fresh read-only view of rows 0..t: the next bar is not in it, whatever the strategy does with the view.
        return _read_only(full[: self._e.t + 1])

    def _adjusted(self, adjusted: bool) -> bool:
        return adjusted and self._e.config.adjust_history and self._e.panel.adj_factor is not None

    def _full_fen(self, field: str, adjusted: bool) -> IntArray:
        if field not in _PRICE_FIELDS:
            raise StrategyError(f"history_fen: {field!r} is not a price field ({', '.join(_PRICE_FIELDS)})")
        adj = self._adjusted(adjusted)
        key = ("fen", field, adj)
        if key not in self._cache:
            raw: IntArray = getattr(self._e.panel, field)
            if adj:
                assert self._e.panel.adj_factor is not None
                self._cache[key] = _read_only(np.rint(raw * self._e.panel.adj_factor).astype(np.int64))
            else:
                self._cache[key] = _read_only(raw)
        return self._cache[key]

    def _full(self, field: str, adjusted: bool) -> FloatArray:
        adj = self._adjusted(adjusted) and field in _PRICE_FIELDS
        key = ("float", field, adj)
        if key not in self._cache:
            panel = self._e.panel
            if field in panel.extra:
                values = panel.extra[field]
            elif field in ("vol", "amount"):
                values = np.asarray(getattr(panel, field), dtype=np.float64)
            elif field in _PRICE_FIELDS:
                fen = getattr(panel, field)
                values = fen * panel.adj_factor / 100.0 if adj else fen / 100.0
                values = np.where(self._listed(), values, np.nan)
            else:
                raise StrategyError(
                    f"history: unknown field {field!r}; fields: {', '.join((*_PRICE_FIELDS, 'vol', 'amount'))}"
                )
            self._cache[key] = _read_only(values)
        return self._cache[key]

    def _listed(self) -> npt.NDArray[np.bool_]:
        key = ("listed",)
        if key not in self._cache:
            self._cache[key] = _read_only(np.logical_or.accumulate(self._e.panel.has_bar, axis=0))
        return self._cache[key]

    def history(self, field: Field | str, *, adjusted: bool = True) -> FloatArray:
        return self._upto_today(self._full(field, adjusted))

    def history_fen(self, field: PriceField, *, adjusted: bool = True) -> IntArray:
        return self._upto_today(self._full_fen(field, adjusted))

    def has_bar_history(self) -> npt.NDArray[np.bool_]:
        """Days x symbols up to today: True where the symbol traded."""
        return self._upto_today(self._e.panel.has_bar)

    def rolling_sum_fen(self, n: int, field: PriceField = "close", *, adjusted: bool = True) -> IntArray:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise StrategyError(f"rolling_sum_fen: n must be an integer >= 1, got {n!r}")
        key = ("sum", int(n), field, self._adjusted(adjusted))
        if key not in self._cache:
            prices = self._full_fen(field, adjusted)
            days = prices.shape[0]
            running = np.cumsum(prices, axis=0, dtype=np.int64)
            out = running.copy()
            out[n:] -= running[:-n]
            # a window is complete n - 1 rows after the symbol's first bar; before that the sum is undefined: 0
            first = self._e.panel.has_bar.argmax(axis=0)
            complete = np.arange(days)[:, None] >= (first + n - 1)[None, :]
            out[~complete] = 0
            self._cache[key] = _read_only(out)
        return self._upto_today(self._cache[key])

    def indicator(
        self, name: str, *, field: str = "close", output: str | None = None, **params: int | float
    ) -> FloatArray:
        info = indicator_info(name)
        if output is None:
            output = info.outputs[0]
        elif output not in info.outputs:
            raise StrategyError(f"{info.name} has no output {output!r}; its outputs: {', '.join(info.outputs)}")
        key = ("ind", info.name, field, output, tuple(sorted(params.items())))
        if key not in self._cache:
            self._compute_indicator(info.name, info.inputs, info.outputs, field, params)
        return self._upto_today(self._cache[key])

    def _compute_indicator(
        self, name: str, inputs: list[str], outputs: list[str], field: str, params: dict[str, int | float]
    ) -> None:
        panel = self._e.panel
        days, n = panel.shape
        if len(inputs) == 1:
            sources = {inputs[0]: self._full(field, True)}
        else:
            sources = {name_: self._full("vol" if name_ == "volume" else name_, True) for name_ in inputs}
        first = panel.has_bar.argmax(axis=0)
        listed = panel.has_bar.any(axis=0)
        results = {out: np.full((days, n), np.nan) for out in outputs}
        for j in np.flatnonzero(listed):
            # each symbol from its first bar: suspended days count as bars at the last close (no gaps, no NaN)
            start = int(first[j])
            data = {k: np.ascontiguousarray(v[start:, j]) for k, v in sources.items()}
            for out, values in compute(name, data, **params).items():
                results[out][start:, j] = values
        for out, values in results.items():
            self._cache[("ind", name, field, out, tuple(sorted(params.items())))] = _read_only(values)

    # --- orders --------------------------------------------------------------------------------------------------
    def _one(self, symbol: str | int) -> int:
        if isinstance(symbol, str):
            return self.column(symbol)
        if isinstance(symbol, int | np.integer) and not isinstance(symbol, bool):
            j = int(symbol)
            if 0 <= j < len(self._columns):
                return j
        raise StrategyError(f"{symbol!r} is not a ts_code or a column of the universe")

    def _many(self, symbol: Symbols) -> tuple[IntArray, bool]:
        if isinstance(symbol, np.ndarray):
            if symbol.dtype == np.bool_:
                if symbol.shape != (len(self._columns),):
                    raise StrategyError(f"a symbol mask must have one entry per symbol ({len(self._columns)})")
                return np.flatnonzero(symbol).astype(np.int64), False
            if not np.issubdtype(symbol.dtype, np.integer) or symbol.ndim != 1:
                raise StrategyError("symbols must be a ts_code, a column, an int array of columns or a bool mask")
            cols = symbol.astype(np.int64)
            if cols.size and (cols.min() < 0 or cols.max() >= len(self._columns)):
                raise StrategyError("a column is outside the universe")
            return cols, False
        return np.array([self._one(symbol)], dtype=np.int64), True  # type: ignore[arg-type]

    @staticmethod
    def _amounts(amount: Amount, size: int, what: str) -> npt.NDArray[np.float64]:
        values = np.asarray(amount, dtype=np.float64)
        if values.ndim == 0:
            values = np.full(size, float(values))
        elif values.shape != (size,):
            raise StrategyError(f"{what}: {values.shape[0]} amounts for {size} symbols")
        if not np.isfinite(values).all():
            raise StrategyError(f"{what}: amounts must be finite")
        return values

    def _place(
        self, symbol: Symbols, kind: int, amount: Amount | None, what: str, check: Callable[[FloatArray], None]
    ) -> int | IntArray:
        cols, scalar = self._many(symbol)
        if amount is None:
            values = np.zeros(len(cols), dtype=np.int64)
        else:
            given = np.asarray(amount, dtype=np.float64)
            # one amount for many symbols: validate and convert it once, then broadcast (same numbers, less work)
            broadcast = given.ndim == 0 and len(cols) > 1
            raw = self._amounts(given, 1 if broadcast else len(cols), what)
            check(raw)
            if kind == KIND_SHARES:
                if not (raw == np.floor(raw)).all():
                    raise StrategyError(f"{what}: share quantities must be whole numbers")
                values = raw.astype(np.int64)
            else:
                # CNY to fen, truncated toward zero: a budget cannot spend a fraction of a fen it does not have
                values = np.trunc(raw * 100.0).astype(np.int64)
            if broadcast:
                values = np.repeat(values, len(cols))
        ids = self._e.queue(cols, kind, values)
        return int(ids[0]) if scalar else ids

    def buy(self, symbol: Symbols, qty: Amount) -> int | IntArray:
        def check(q: FloatArray) -> None:
            if (q <= 0).any():
                raise StrategyError("buy: quantities must be positive")

        return self._place(symbol, KIND_SHARES, qty, "buy", check)

    def sell(self, symbol: Symbols, qty: Amount) -> int | IntArray:
        def check(q: FloatArray) -> None:
            if (q <= 0).any():
                raise StrategyError("sell: quantities must be positive")

        qty_array = np.asarray(qty, dtype=np.float64)
        return self._place(symbol, KIND_SHARES, -qty_array, "sell", lambda q: check(-q))

    def order_value(self, symbol: Symbols, value: Amount) -> int | IntArray:
        def check(v: FloatArray) -> None:
            if (v == 0).any():
                raise StrategyError("order_value: a value of 0 orders nothing")

        return self._place(symbol, KIND_VALUE, value, "order_value", check)

    def order_target_value(self, symbol: Symbols, value: Amount) -> int | IntArray:
        def check(v: FloatArray) -> None:
            if (v < 0).any():
                raise StrategyError("order_target_value: targets must be >= 0 (no short selling)")

        return self._place(symbol, KIND_TARGET, value, "order_target_value", check)

    def order_target_percent(self, symbol: Symbols, percent: Amount) -> int | IntArray:
        pct = np.asarray(percent, dtype=np.float64)
        if not np.isfinite(pct).all() or (pct < 0).any():
            raise StrategyError("order_target_percent: percents must be finite and >= 0")
        return self.order_target_value(symbol, pct * self.equity)

    def close_position(self, symbol: Symbols) -> int | IntArray:
        return self._place(symbol, KIND_CLOSE, None, "close_position", lambda _: None)
