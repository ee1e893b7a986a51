"""The backtest's implementation of `shared.research.strategy.StrategyContext`: the portfolio view, history and
indicators that
end at the current bar, and the order helpers, which only queue orders (the engine fills them on a later bar).

No look-ahead by construction: every array a strategy gets is a read-only view of rows [0, t] of a days x symbols
panel, so reading row t + 1 is an IndexError. Indicators are computed once over the whole panel and then served
through the same slicing; that is causal because every indicator of `shared.research.strategy.indicators` is (the
value at
row t is computed from rows up to t only; each is documented and tested as such), so the value a strategy reads at
t is the one it would have computed itself from the history it could see."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shared.core.market.matching import KIND_CLOSE, KIND_SHARES, KIND_TARGET, KIND_VALUE
from shared.research.engine.config import BacktestConfig
from shared.research.engine.data import Panel
from shared.research.strategy.context import Amount, Field, FloatArray, IntArray, PriceField, StrategyError, Symbols
from shared.research.strategy.indicators import compute, indicator_info

_PRICE_FIELDS = ("open", "high", "low", "close", "pre_close")


def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


class Book(Protocol):
    """What the context reads and calls: one portfolio of a run. The one-portfolio `Engine` is one; a portfolio of
    `shared.research.engine.batch.BatchEngine` is another (its arrays are rows of the batch's state)."""

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


class PassTooLarge(BaseException):
    """A batch pass needs more memory than its cache budget allows (every entry it holds is in use): the optimiser
    runs its points again in smaller passes. A BaseException so that a strategy's `except Exception` (and the batch
    engine's per-point error capture) lets it through."""


class Store(Protocol):
    """Where a run keeps the whole-panel arrays it computed (a dict, or the optimiser's `SharedCache` shared by the
    runs of one panel): every entry is a function of the panel and `config.adjust_history` only."""

    def __contains__(self, key: object) -> bool: ...

    def __getitem__(self, key: tuple[Any, ...]) -> npt.NDArray[Any]: ...

    def __setitem__(self, key: tuple[Any, ...], value: npt.NDArray[Any]) -> None: ...


class _Visible:
    """One array as a run's strategies see it: a days x symbols buffer the run fills row by row as days arrive
    (rows after today are never written: NaN, 0 or False), and the private source of those rows."""

    __slots__ = ("buffer", "fill", "filled")

    def __init__(self, buffer: npt.NDArray[Any], fill: Callable[[npt.NDArray[Any], int, int], None]) -> None:
        self.buffer = buffer
        self.filled = 0
        self.fill = fill  # fill(buffer, a, b): writes rows [a, b)


class RunHistory:
    """The history of one run (one `Engine`, or one `BatchEngine` pass whose portfolios all stand on the same day).

    Whole-panel arrays (adjusted prices, indicators, cumulative sums) are computed once into `store`, which may be
    shared between runs; strategies never see them. What they get are views of this run's visible buffers, which
    hold the rows up to the current day only, so neither indexing nor a view's `.base` reaches a later bar. A
    visible buffer is never shared between runs: a run that starts later cannot see rows an earlier run filled."""

    def __init__(self, panel: Panel, config: BacktestConfig, store: Store | None = None) -> None:
        self.panel = panel
        self.config = config
        self.store: Store = store if store is not None else {}
        self._visible: dict[tuple[Any, ...], _Visible] = {}
        # a SharedCache counts the visible buffers against its budget (and may stop an oversized batch pass)
        self._reserve: Callable[[int], None] | None = getattr(store, "reserve", None)

    def upto(self, key: tuple[Any, ...], t: int, make: Callable[[], _Visible]) -> npt.NDArray[Any]:
        entry = self._visible.get(key)
        if entry is None:
            entry = make()
            if self._reserve is not None:
                self._reserve(entry.buffer.nbytes)
            self._visible[key] = entry
        if entry.filled <= t:
            buffer = entry.buffer
            buffer.flags.writeable = True
            entry.fill(buffer, entry.filled, t + 1)
            buffer.flags.writeable = False
            entry.filled = t + 1
        return _read_only(entry.buffer[: t + 1])

    @staticmethod
    def copying(full: npt.NDArray[Any], blank: Any) -> _Visible:
        def fill(buffer: npt.NDArray[Any], a: int, b: int) -> None:
            buffer[a:b] = full[a:b]

        return _Visible(_blank(full.shape, full.dtype, blank), fill)

    def cached(self, key: tuple[Any, ...], compute: Callable[[], npt.NDArray[Any]]) -> npt.NDArray[Any]:
        store = self.store
        if key in store:
            return store[key]
        value = _read_only(compute())
        store[key] = value
        return value


def _blank(shape: tuple[int, ...], dtype: Any, value: Any) -> npt.NDArray[Any]:
    # np.zeros for 0/False: fresh zeroed pages (np.empty could hand back a freed array of an earlier run)
    buffer = np.zeros(shape, dtype=dtype) if not value else np.full(shape, value, dtype=dtype)
    buffer.flags.writeable = False
    return buffer


class BacktestContext:
    # The book and the history live in a slot whose attribute is removed from the class below, so `ctx` has no
    # attribute leading to the engine, the panel or the private arrays (docs/engine.md says what remains possible).
    __slots__ = ("__weakref__", "_columns", "_hidden")

    def __init__(self, engine: Book, history: RunHistory | None = None) -> None:
        _set_state(self, (engine, history if history is not None else RunHistory(engine.panel, engine.config)))
        self._columns = {code: j for j, code in enumerate(engine.panel.codes)}

    # --- clock and universe ----------------------------------------------------------------------------------
    @property
    def universe(self) -> tuple[str, ...]:
        return _state(self)[0].panel.codes

    @property
    def today(self) -> date | None:
        e = _state(self)[0]
        t = e.t
        return e.panel.dates[t] if t >= 0 else None

    @property
    def day_index(self) -> int:
        return _state(self)[0].t

    def column(self, ts_code: str) -> int:
        try:
            return self._columns[ts_code]
        except KeyError:
            raise KeyError(f"{ts_code!r} is not in the universe of this run") from None

    # --- portfolio ---------------------------------------------------------------------------------------------
    @property
    def initial_cash(self) -> float:
        return _state(self)[0].initial_cash_fen / 100

    @property
    def cash(self) -> float:
        return _state(self)[0].cash_fen / 100

    @property
    def positions(self) -> IntArray:
        return _read_only(_state(self)[0].positions.copy())

    @property
    def sellable(self) -> IntArray:
        return _read_only(_state(self)[0].sellable())

    @property
    def market_value(self) -> float:
        return _state(self)[0].market_value_fen() / 100

    @property
    def equity(self) -> float:
        e = _state(self)[0]
        return (e.cash_fen + e.market_value_fen()) / 100

    def position(self, symbol: str | int) -> int:
        return int(_state(self)[0].positions[self._one(symbol)])

    def sellable_qty(self, symbol: str | int) -> int:
        return int(_state(self)[0].sellable()[self._one(symbol)])

    # --- history and indicators ----------------------------------------------------------------------------------
    def _adjusted(self, adjusted: bool) -> bool:
        e = _state(self)[0]
        return adjusted and e.config.adjust_history and e.panel.adj_factor is not None

    def history(self, field: Field | str, *, adjusted: bool = True) -> FloatArray:
        e, h = _state(self)
        adj = self._adjusted(adjusted) and field in _PRICE_FIELDS
        return h.upto(("float", field, adj), e.t, lambda: h.copying(_full(h, field, adj), np.nan))

    def history_fen(self, field: PriceField, *, adjusted: bool = True) -> IntArray:
        e, h = _state(self)
        adj = self._adjusted(adjusted)
        return h.upto(("fen", field, adj), e.t, lambda: h.copying(_full_fen(h, field, adj), 0))

    def has_bar_history(self) -> npt.NDArray[np.bool_]:
        """Days x symbols up to today: True where the symbol traded."""
        e, h = _state(self)
        return h.upto(("has_bar",), e.t, lambda: h.copying(h.panel.has_bar, False))

    def rolling_sum_fen(self, n: int, field: PriceField = "close", *, adjusted: bool = True) -> IntArray:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise StrategyError(f"rolling_sum_fen: n must be an integer >= 1, got {n!r}")
        e, h = _state(self)
        adj = self._adjusted(adjusted)
        return h.upto(("sum", int(n), field, adj), e.t, lambda: _rolling_sum(h, int(n), field, adj))

    def indicator(
        self, name: str, *, field: str = "close", output: str | None = None, **params: int | float
    ) -> FloatArray:
        info = indicator_info(name)
        if output is None:
            output = info.outputs[0]
        elif output not in info.outputs:
            raise StrategyError(f"{info.name} has no output {output!r}; its outputs: {', '.join(info.outputs)}")
        e, h = _state(self)
        key = ("ind", info.name, field, output, tuple(sorted(params.items())))

        def make() -> _Visible:
            if key not in h.store:
                _compute_indicator(h, info.name, info.inputs, info.outputs, field, params)
            return h.copying(h.store[key], np.nan)

        return h.upto(key, e.t, make)

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
        ids = _state(self)[0].queue(cols, kind, values)
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


_HIDDEN = BacktestContext.__dict__["_hidden"]
_set_state = _HIDDEN.__set__
del BacktestContext._hidden  # type: ignore[attr-defined]


def _state(ctx: BacktestContext) -> tuple[Book, RunHistory]:
    state: tuple[Book, RunHistory] = _HIDDEN.__get__(ctx, BacktestContext)
    return state


# --- the private whole-panel arrays ------------------------------------------------------------------------------


def _full_fen(h: RunHistory, field: str, adj: bool) -> IntArray:
    if field not in _PRICE_FIELDS:
        raise StrategyError(f"history_fen: {field!r} is not a price field ({', '.join(_PRICE_FIELDS)})")
    panel = h.panel
    raw: IntArray = getattr(panel, field)
    if not adj:
        return raw
    assert panel.adj_factor is not None
    adj_factor = panel.adj_factor
    return h.cached(("fen", field, True), lambda: np.rint(raw * adj_factor).astype(np.int64))


def _full(h: RunHistory, field: str, adj: bool) -> FloatArray:
    panel = h.panel

    def compute() -> FloatArray:
        if field in panel.extra:
            return panel.extra[field]
        if field in ("vol", "amount"):
            return np.asarray(getattr(panel, field), dtype=np.float64)
        if field in _PRICE_FIELDS:
            fen = getattr(panel, field)
            values = fen * panel.adj_factor / 100.0 if adj else fen / 100.0
            return np.where(_listed(h), values, np.nan)
        raise StrategyError(f"history: unknown field {field!r}; fields: {', '.join((*_PRICE_FIELDS, 'vol', 'amount'))}")

    return h.cached(("float", field, adj), compute)


def _listed(h: RunHistory) -> npt.NDArray[np.bool_]:
    return h.cached(("listed",), lambda: np.logical_or.accumulate(h.panel.has_bar, axis=0))


def _first_bar(h: RunHistory) -> IntArray:
    return h.cached(("first",), lambda: h.panel.has_bar.argmax(axis=0).astype(np.int64))


def _rolling_sum(h: RunHistory, n: int, field: str, adj: bool) -> _Visible:
    """Rolling sums of n prices, filled row by row from the cumulative sums of the prices (one private array per
    field, whatever the window): row t is cumsum[t] - cumsum[t - n], 0 until the window is complete (n - 1 rows
    after the symbol's first bar)."""
    prices = _full_fen(h, field, adj)
    running = h.cached(("cumsum", field, adj), lambda: np.cumsum(prices, axis=0, dtype=np.int64))
    complete_from = _first_bar(h) + (n - 1)

    def fill(buffer: IntArray, a: int, b: int) -> None:
        buffer[a:b] = running[a:b]
        lo = max(a, n)
        if lo < b:
            buffer[lo:b] -= running[lo - n : b - n]
        if a < int(complete_from.max()):
            incomplete = np.arange(a, b)[:, None] < complete_from[None, :]
            buffer[a:b][incomplete] = 0

    return _Visible(_blank(prices.shape, np.int64, 0), fill)


def _compute_indicator(
    h: RunHistory, name: str, inputs: list[str], outputs: list[str], field: str, params: dict[str, int | float]
) -> None:
    panel = h.panel
    days, n = panel.shape
    adjusted = h.config.adjust_history and panel.adj_factor is not None

    def source(name_: str) -> FloatArray:
        return _full(h, name_, adjusted and name_ in _PRICE_FIELDS)

    if len(inputs) == 1:
        sources = {inputs[0]: source(field)}
    else:
        sources = {name_: source("vol" if name_ == "volume" else name_) for name_ in inputs}
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
        h.store[("ind", name, field, out, tuple(sorted(params.items())))] = _read_only(values)
